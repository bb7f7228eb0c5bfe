"""The PBR material in a run (texture.material = pbr, the original's ``--pbr``): building it from the configuration,
how the scene renders it (lit in training and evaluation, base colour only during the albedo warm-up), its kd
smoothness regulariser with the original's ramp, and its export. The scene (train/geometry.py) calls these; the
material itself lives in render/textures/pbr.py, the light in render/envlight.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.export.pbr import export_pbr_mesh
from pgc_fast.fields import MaterialField
from pgc_fast.render.envlight import EnvironmentLight
from pgc_fast.render.textures import PBRMaterial

__all__ = ["PROBE_HEIGHT", "export_material", "is_pbr", "make_material", "material_regularizers", "render_kwargs"]

PROBE_HEIGHT = 512
"""probe.hdr is 512 × 1024, the original's."""
KD_SMOOTH_STD = 0.01
"""Standard deviation of the kd smoothness probe offset (the original's)."""


def is_pbr(cfg: C.RunConfig) -> bool:
    return cfg.texture.material == "pbr"


def make_material(cfg: C.RunConfig) -> PBRMaterial:
    """The material field (the texture section's hash-grid size) and its light (the pbr section)."""
    b, t = cfg.pbr, cfg.texture
    field = MaterialField(
        kd_range=b.kd_range,
        ks_min=b.ks_min,
        ks_max=b.ks_max,
        bound=1.0,
        num_levels=t.field_levels,
        log2_table_size=t.field_log2_table_size,
        finest_resolution=t.field_finest_resolution,
    )
    light = EnvironmentLight.from_file(b.env_path, b.env_resolution, b.env_scale, learnable=b.learn_light)
    # The original's light rate: lr_fine[1] with the fixed mesh, a tenth of it with DMTet (its Trainer).
    scale = 0.1 if cfg.mesh.shape == "dmtet" else 1.0
    return PBRMaterial(field, light, perturbed_normal=b.perturbed_normal, light_lr_scale=scale)


def render_kwargs(cfg: C.RunConfig, material: Any, train: bool, step: int) -> dict[str, Any]:
    """``MeshRenderer.render`` arguments for the material: lit (``pbr``) with the configured tone mapping in
    training, base colour only in the first ``render.albedo_iters`` steps (the original's albedo warm-up);
    evaluation renders (validation, turntable) lit and sRGB-encoded for display whatever the training mapping."""
    if train and step < cfg.render.albedo_iters:
        return {"shading": "albedo", "tonemap": cfg.pbr.tonemap}
    return {"shading": "pbr", "light": material.light, "tonemap": cfg.pbr.tonemap if train else "srgb"}


def material_regularizers(
    cfg: C.RunConfig, material: Any, render: Any, step: int, iters: int, generator: torch.Generator | None
) -> dict[str, torch.Tensor]:
    """The kd smoothness term ``λ·min(1, step / (iters/10))·mean(|kd(x+ε) − kd(x)|·alpha)`` (λ = 0.03, the
    original's), as {"kd_smooth": weighted term} (empty when λ = 0)."""
    lam = cfg.pbr.lambda_kd_smooth
    if lam == 0 or render.material is None:
        return {}
    ramp = min(1.0, step / max(iters / 10, 1e-12))
    return {"kd_smooth": lam * ramp * material.kd_smoothness(render, generator, KD_SMOOTH_STD)}


def export_material(ws: Path, cfg: C.RunConfig, scene: Any) -> dict[str, Path]:
    """Bake the material at ``texture.export_resolution`` on the render mesh's atlas and write the GLB, the
    original's OBJ set and probe.hdr (export/pbr.py), geometry in the input's frame with the normals the
    material was shaded with."""
    t = cfg.texture
    mesh = scene.geometry.export_mesh()  # first: a shape geometry fixes its final surface here (DMTet's floaters)
    rmesh = scene.rmesh
    baked = scene.texture.bake(rmesh, scene.renderer.backend, t.export_resolution, t.dilation)
    maps = baked.texture.float().cpu().numpy()[::-1].copy()  # renderer rows → image rows (top first)
    if mesh.num_vertices != rmesh.vertices.shape[0] or not np.array_equal(mesh.faces, rmesh.faces.cpu().numpy()):
        raise ValueError("export_material(): the geometry's export mesh does not match the mesh it rendered")
    assert rmesh.normals is not None
    mesh.normals = rmesh.normals.detach().cpu().numpy().astype(np.float32)  # directions: frame-independent
    uvs = baked.uvs.cpu().numpy().astype(np.float32)
    uv_faces = baked.uv_faces.cpu().numpy().astype(np.int64)
    probe = scene.texture.light.latlong(PROBE_HEIGHT)
    return export_pbr_mesh(Path(ws), mesh, maps, uvs, uv_faces, probe, normal_map=cfg.pbr.perturbed_normal)
