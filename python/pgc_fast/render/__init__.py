"""Differentiable mesh rendering for pgc-fast: backends, cameras, the mesh renderer and texture representations.

Public API (details in each submodule's docstring)
--------------------------------------------------
Backends (:mod:`pgc_fast.render.backends`) — one interface, nvdiffrast's conventions:
    ``get_backend("auto" | "cpu" | "nvdiffrast", device)`` → object with ``rasterize(clip_pos [B,V,4] f32,
    faces [F,3] int, (H,W)) → rast [B,H,W,4]`` (u, v, z/w, triangle id + 1; row 0 = clip y = −1),
    ``interpolate(attr, rast, faces)``, ``texture(tex, uv, filter_mode, boundary_mode)``,
    ``antialias(color, rast, clip_pos, faces)``. ``CpuBackend`` (``pgc_fast.mesh.rasterize`` + torch,
    differentiable w.r.t. attributes, textures and vertex positions), ``NvdiffrastBackend`` (CUDA; registry build
    ``diffrp-nvdiffrast`` with the torch ≥ 2 loader fix, or an NVlabs build), ``load_nvdiffrast()``.
Cameras (:mod:`pgc_fast.render.camera`) — right-handed OpenCV-style look-at (det R = +1, not mirrored):
    ``Cameras`` (c2w [B,4,4], focal [B] px, H, W; ``mvp()``, ``to_clip(points)``, ``project(points)``,
    ``view_ids()``, ``relative_angles()``), ``OrbitSampler`` (the original's radius / θ ∈ [45°,100°] / φ /
    focal ranges, uniform-sphere rate, jitter; deterministic with a ``torch.Generator``), ``orbit_cameras``,
    ``turntable``, ``look_at``, ``perspective``, ``view_direction_ids`` + ``VIEW_DIRECTIONS``.
"""
from __future__ import annotations

from pgc_fast.render.backends import (
    CpuBackend,
    NvdiffrastBackend,
    RasterBackend,
    get_backend,
    load_nvdiffrast,
)
from pgc_fast.render.camera import (
    VIEW_DIRECTIONS,
    Cameras,
    OrbitSampler,
    look_at,
    orbit_cameras,
    perspective,
    turntable,
    view_direction_ids,
)

__all__ = [
    "CpuBackend",
    "NvdiffrastBackend",
    "RasterBackend",
    "get_backend",
    "load_nvdiffrast",
    "VIEW_DIRECTIONS",
    "Cameras",
    "OrbitSampler",
    "look_at",
    "orbit_cameras",
    "perspective",
    "turntable",
    "view_direction_ids",
]
