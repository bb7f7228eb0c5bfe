"""Blender reads our PBR GLB as we do (issue 18, item 5): Blender's own glTF importer renders the exported mesh's
base colour pass (tests/pipeline/blender_base_color.py) and it matches our render of the same GLB's base colour
from the same camera, PSNR ≥ 25 dB over the object. Skipped where Blender is not installed (Debian: ``apt-get
install blender python3-numpy``); the measured PSNR is recorded in benches/RESULTS.md.

The GLB comes from the PBR exporter (export/pbr.py) with maps baked from a known material whose base colour has
stripes and gradients, so UV layout, orientation, v flip and sRGB handling all show in the comparison.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.export.mesh import load_textured_mesh_for_render
from pgc_fast.export.pbr import export_pbr_mesh
from pgc_fast.mesh import vertex_normals
from pgc_fast.render import MeshRenderer, orbit_cameras
from pgc_fast.render.textures import bake_field_to_uv

BLENDER = shutil.which("blender")
RES, TEX = 128, 512
SCRIPT = Path(__file__).with_name("blender_base_color.py")


def striped_material(p: torch.Tensor) -> torch.Tensor:
    """A 9-channel material in the input frame: striped, graded base colour; roughness, metallic; flat normal."""
    x, y, z = p.unbind(-1)
    stripes = 0.5 + 0.45 * torch.sign(torch.sin(9 * y + 2 * x))
    kd = torch.stack([0.15 + 0.7 * stripes, 0.2 + 0.6 * (y + 1) / 2, 0.5 + 0.4 * torch.sin(3 * z + x)], -1)
    one = torch.ones_like(x)[:, None]
    return torch.cat([kd.clamp(0, 1), 0 * one, 0.5 * one, 0.2 * one, 0 * one, 0 * one, one], -1)


def _export(ws: Path) -> Path:
    m = make_demo_mesh(48, 24)
    be = MeshRenderer("cpu").backend
    baked = bake_field_to_uv(
        striped_material, torch.from_numpy(m.vertices), torch.from_numpy(m.faces), be, resolution=TEX, padding=4
    )
    assert baked.vmapping is not None
    vmap = baked.vmapping.numpy()
    mesh = type(m)(vertices=m.vertices[vmap], faces=baked.uv_faces.numpy())
    mesh.normals = vertex_normals(mesh.vertices, mesh.faces)
    maps = baked.texture.numpy()[::-1].copy()  # renderer rows → image rows
    export_pbr_mesh(ws, mesh, maps, baked.uvs.numpy(), baked.uv_faces.numpy(), probe=None)
    return ws / "mesh.glb"


def _ours(glb: Path, cams) -> tuple[np.ndarray, np.ndarray]:
    """Our render of the GLB's base colour texture (4x supersampled): (rgb [H, W, 3], coverage [H, W])."""
    rm, tex = load_textured_mesh_for_render(glb)
    with torch.no_grad():
        out = MeshRenderer("cpu").render(rm, cams, tex, shading="albedo", background=0.0, ssaa=4, antialias=False)
    return out.image[0].permute(1, 2, 0).numpy(), out.mask[0, 0].numpy()


def psnr_over(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean(-1)[mask].mean())
    return -10 * math.log10(max(mse, 1e-12))


@pytest.mark.skipif(BLENDER is None, reason="Blender is not installed (apt-get install blender python3-numpy)")
@pytest.mark.parametrize("theta,phi", [(60.0, 30.0), (100.0, 210.0)])
def test_blender_renders_our_glb_base_colour_as_we_do(tmp_path, theta, phi):
    from PIL import Image

    glb = _export(tmp_path)
    cams = orbit_cameras(3.2, theta, phi, 1.2 * RES, RES)
    spec = {"c2w": cams.c2w[0].tolist(), "focal": float(cams.focal[0]), "resolution": RES}
    (tmp_path / "cam.json").write_text(json.dumps(spec))
    out = tmp_path / "blender.png"
    cmd = [
        BLENDER,
        "-b",
        "--factory-startup",
        "--python",
        str(SCRIPT),
        "--",
        str(glb),
        str(out),
        str(tmp_path / "cam.json"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and out.is_file(), r.stdout[-2000:] + r.stderr[-2000:]
    rgba = np.asarray(Image.open(out).convert("RGBA"), np.float32) / 255
    theirs, their_alpha = rgba[..., :3] * rgba[..., 3:], rgba[..., 3]
    ours, our_mask = _ours(glb, cams)
    both = (their_alpha > 0.99) & (our_mask > 0.99)  # interiors: silhouettes are filtered differently
    assert both.sum() > 0.2 * RES * RES
    assert abs(float(their_alpha.mean()) - float(our_mask.mean())) < 0.01  # the same silhouette
    value = psnr_over(theirs, ours, both)
    print(f"Blender vs pgc-fast base colour, theta {theta} phi {phi}: PSNR {value:.2f} dB over {int(both.sum())} px")
    assert value >= 25.0, value
