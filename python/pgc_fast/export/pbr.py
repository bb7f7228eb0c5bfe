"""The PBR material out: ``mesh.glb`` with glTF metallic-roughness maps, the original's OBJ/MTL/PNG set, and the
environment as ``probe.hdr``.

GLB (glTF 2.0 core, what Blender, three.js and game engines read): ``baseColorTexture`` = sRGB-encoded kd (glTF
base colour textures are sRGB), ``metallicRoughnessTexture`` linear with G = roughness, B = metallic (and R = the
occlusion, the usual ORM packing), ``occlusionTexture`` R = 1 − the original's occlusion term (glTF: 1 = fully
lit), ``normalTexture`` tangent space, +Y (OpenGL) with the ``TANGENT`` attribute the normal map was baked against
(rust_mesh/src/tangent.rs), factors 1 so the textures are the values.

OBJ as the original writes it (nvdiffrec's render/material.py ``save_mtl``): ``mesh.obj`` (v, vt, vn) with
``mesh.mtl``: ``newmtl defaultMat``, ``bsdf pbr``, ``map_Kd texture_kd.png`` (sRGB-encoded kd), ``map_Ks
texture_ks.png`` (occlusion, roughness, metallic as R, G, B, linear) and ``bump texture_n.png`` ((n + 1)/2) unless
the normal perturbation is off; also ``texture_kd_rgb.png`` (linear kd). Unlike the original, geometry is written
in the input mesh's own frame (not the canonicalised one).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from pgc_fast.export.files import commit, temp_name
from pgc_fast.mesh import Material, Mesh, save_mesh, write_hdr
from pgc_fast.render.shading import srgb_encode

__all__ = ["export_pbr_mesh", "pbr_gltf_material"]

MTL = "newmtl defaultMat\nbsdf   pbr\nmap_Kd texture_kd.png\nmap_Ks texture_ks.png\n"


def _srgb(x: np.ndarray) -> np.ndarray:
    return srgb_encode(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def pbr_gltf_material(maps: np.ndarray, normal_map: bool = True) -> Material:
    """The glTF material of baked maps float32 [R, R, 9] (kd, ks = occlusion, roughness, metallic, tangent-space
    normal in [−1, 1]; row 0 = top) — module docstring for the channel layout."""
    kd, ks, n = maps[..., 0:3], maps[..., 3:6], maps[..., 6:9]
    occ = np.clip(1.0 - ks[..., 0:1], 0, 1)
    mr = np.concatenate([occ, ks[..., 1:2], ks[..., 2:3]], axis=-1)
    return Material(
        name="pgc_fast_pbr",
        base_color_factor=(1.0, 1.0, 1.0, 1.0),
        metallic_factor=1.0,
        roughness_factor=1.0,
        base_color_texture=_srgb(kd).astype(np.float32),
        metallic_roughness_texture=np.clip(mr, 0, 1).astype(np.float32),
        normal_texture=(np.clip(n, -1, 1) * 0.5 + 0.5).astype(np.float32) if normal_map else None,
        occlusion_texture=occ.astype(np.float32),
    )


def _write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    a = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(a if a.shape[-1] != 1 else a[..., 0]).save(path)


def _write_obj_set(stage: Path, mesh: Mesh, maps: np.ndarray, normal_map: bool) -> list[str]:
    """mesh.obj + the original's mesh.mtl and PNGs into ``stage``; returns the file names."""
    save_mesh(dataclasses.replace(mesh, material=Material(name="defaultMat")), stage / "mesh.obj")
    kd, ks, n = maps[..., 0:3], maps[..., 3:6], maps[..., 6:9]
    _write_png(stage / "texture_kd.png", _srgb(kd))
    _write_png(stage / "texture_kd_rgb.png", kd)
    _write_png(stage / "texture_ks.png", ks)
    names = ["texture_kd.png", "texture_kd_rgb.png", "texture_ks.png"]
    mtl = "# written by pgc-fast: the original's PBR material (map_Ks = occlusion, roughness, metallic)\n" + MTL
    if normal_map:
        _write_png(stage / "texture_n.png", np.clip(n, -1, 1) * 0.5 + 0.5)
        names.append("texture_n.png")
        mtl += "bump   texture_n.png\n"
    (stage / "mesh.mtl").write_text(mtl)
    return [*names, "mesh.mtl", "mesh.obj"]


def export_pbr_mesh(
    ws: Path,
    mesh: Mesh,
    maps: np.ndarray,
    uvs: np.ndarray,
    uv_faces: np.ndarray,
    probe: np.ndarray | None,
    normal_map: bool = True,
) -> dict[str, Path]:
    """Write the PBR result of ``mesh`` (input frame, with the vertex normals it was shaded with) into ``ws``:
    maps float32 [R, R, 9] (row 0 = top) on ``uvs`` / ``uv_faces``; ``probe`` float32 [H, 2H, 3] lat-long
    radiance or None. Staged in a hidden directory, then each file flushed and renamed into place (as
    export/mesh.py), so a kill leaves every file complete, old or new."""
    if maps.ndim != 3 or maps.shape[-1] != 9:
        raise ValueError(f"export_pbr_mesh(): maps must be [R,R,9], got {list(maps.shape)}")
    out = dataclasses.replace(mesh, uvs=uvs, uv_faces=uv_faces, material=None)
    stage = temp_name(ws / "export")
    if stage.exists():  # left by a kill during an earlier export
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    names = _write_obj_set(stage, out, maps, normal_map)
    save_mesh(dataclasses.replace(out, material=pbr_gltf_material(maps, normal_map)), stage / "mesh.glb")
    names.append("mesh.glb")
    if probe is not None:
        write_hdr(stage / "probe.hdr", probe)
        names.append("probe.hdr")
    for leftover in stage.glob("mesh_*.png"):  # pgc_fast.mesh's own OBJ texture names: unused here
        os.remove(leftover)
    files = {_key(name): ws / name for name in names}
    for name in names:
        commit(stage / name, ws / name)
    shutil.rmtree(stage)
    return files


def _key(name: str) -> str:
    """The RunResult.files key of an output file: mesh.glb → mesh_glb, texture_kd.png → texture_kd."""
    stem, ext = os.path.splitext(name)
    return stem.replace(".", "_") + ("_" + ext[1:] if stem == "mesh" else "")
