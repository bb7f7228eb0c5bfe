"""The textured mesh out: GLB and OBJ/MTL/PNG in the input mesh's frame, and re-loading an export for rendering."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pgc_fast.export.files import commit, temp_name
from pgc_fast.mesh import Material, Mesh, save_mesh

if TYPE_CHECKING:
    from pgc_fast.mesh import Normalization


def export_textured_mesh(
    ws: Path, mesh: Mesh, image: np.ndarray, uvs: np.ndarray, uv_faces: np.ndarray
) -> dict[str, Path]:
    """Write ``mesh.glb`` and ``mesh.obj`` + ``mesh.mtl`` + ``texture.png`` of ``mesh`` (input frame) with the base
    colour ``image`` float32 [R,R,3] (row 0 = top) on ``uvs`` / ``uv_faces``.

    Atomically, file by file: everything is written into a hidden staging directory beside them, then each file is
    flushed and renamed into place (texture, material, OBJ, GLB), so a kill at any moment leaves each file either
    complete and old or complete and new, never cut short."""
    out = dataclasses.replace(
        mesh,
        uvs=uvs,
        uv_faces=uv_faces,
        material=Material(name="pgc_fast", base_color_texture=image.astype(np.float32)),
    )
    stage = temp_name(ws / "export")
    if stage.exists():  # left by a kill during an earlier export
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    save_mesh(out, stage / "mesh.glb")
    save_mesh(out, stage / "mesh.obj")
    _rename_obj_texture(stage / "mesh.mtl", stage / "texture.png")
    files = {"texture": ws / "texture.png", "mesh_mtl": ws / "mesh.mtl", "mesh_obj": ws / "mesh.obj"}
    files["mesh_glb"] = ws / "mesh.glb"
    for path in files.values():
        commit(stage / path.name, path)
    shutil.rmtree(stage)
    return files


def _rename_obj_texture(mtl: Path, target: Path) -> Path:
    """pgc_fast.mesh names the OBJ's base-colour map ``<stem>_kd.png``; the workspace promises ``texture.png``.
    Rename the file and point ``map_Kd`` at it."""
    lines = mtl.read_text().splitlines()
    out = []
    for line in lines:
        parts = line.strip().split(maxsplit=1)
        if parts and parts[0] == "map_Kd" and len(parts) == 2:
            src = mtl.parent / parts[1]
            if src.exists() and src != target:
                os.replace(src, target)
            line = f"map_Kd {target.name}"
        out.append(line)
    mtl.write_text("\n".join(out) + "\n")
    return target


def load_textured_mesh_for_render(
    path: str | os.PathLike, device: torch.device | str = "cpu", normalisation: Normalization | None = None
) -> tuple[Any, Any]:
    """Load an exported mesh (GLB/OBJ) as (RenderMesh, UVTexture) for re-rendering, e.g. to check an export.

    The texture image (mesh convention, row 0 = top) is flipped back to the renderer's (row 0 = v = 0) and held
    exactly by a single-level UVTexture; ``normalisation`` maps the file's (input) frame to the training frame.
    """
    from pgc_fast.mesh import load_mesh
    from pgc_fast.render.renderer import RenderMesh
    from pgc_fast.render.textures import UVTexture

    m = load_mesh(path)
    if m.material is None or m.material.base_color_texture is None or m.uvs is None:
        raise ValueError(f"load_textured_mesh_for_render(): {path} has no UVs and base-colour texture")
    v = np.asarray(m.vertices, np.float32)
    if normalisation is not None:
        v = normalisation.apply(v)
    img = np.asarray(m.material.base_color_texture, np.float32)[::-1, :, :3].copy()
    rm = RenderMesh(
        vertices=torch.from_numpy(v),
        faces=torch.from_numpy(np.asarray(m.faces, np.int64)),
        uvs=torch.from_numpy(np.asarray(m.uvs, np.float32)),
        uv_faces=torch.from_numpy(np.asarray(m.uv_faces, np.int64)),
    ).to(device)
    h, w = img.shape[:2]
    if h != w:
        raise ValueError(f"load_textured_mesh_for_render(): texture must be square, got {h}x{w}")
    tex = UVTexture(h, 3, min_resolution=h, activation="none").to(device)
    tex.set_image(torch.from_numpy(img).to(device))
    return rm, tex
