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
    ``relative_angles()``), ``OrbitSampler`` (the original's radius / θ ∈ [45°,100°] / φ / focal ranges,
    uniform-sphere rate, jitter; deterministic with a ``torch.Generator``), ``orbit_cameras``, ``turntable``,
    ``look_at``, ``perspective``. The view bins of the prompts live in :func:`pgc_fast.guidance.prompts.view_ids`.
Renderer (:mod:`pgc_fast.render.renderer`):
    ``RenderMesh`` (vertices [V,3], faces [F,3], normals, uvs + uv_faces, colors; ``from_mesh(pgc_fast.mesh.Mesh)``),
    ``MeshRenderer(backend).render(mesh, cameras, texture, background=, shading="albedo"|"lambertian"|"normal"|
    "random", generator=, antialias=True, ssaa=1)`` → ``RenderOutput`` (image [B,C,H,W], mask, depth = camera z,
    position, normal, albedo; channels-first, row 0 = top); normals are ``pgc_fast.mesh.vertex_normals``.
Textures (:mod:`pgc_fast.render.textures`):
    ``Texture`` (the protocol every kind implements), ``FieldTexture`` (hash-grid ``TextureField`` at surface points),
    ``UVTexture`` (multi-resolution pyramid,
    ``export()`` / ``set_image()``), ``VertexColorTexture``; ``init_texture`` (from vertex colours),
    ``bake_field_to_uv`` (unwrap + UV rasterisation + ``dilate_seams``) → ``BakedTexture``.

Typical use::

    from pgc_fast.render import MeshRenderer, OrbitSampler, RenderMesh, UVTexture
    mesh = RenderMesh.from_mesh(load_mesh("panda.obj"), device="cuda")
    renderer = MeshRenderer("auto", device="cuda")
    cams = OrbitSampler(height=512).sample(4, generator=torch.Generator().manual_seed(0), device="cuda")
    out = renderer.render(mesh, cams, texture, shading="random", generator=gen)   # out.image [4,3,512,512]
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
    Cameras,
    OrbitSampler,
    look_at,
    orbit_cameras,
    perspective,
    turntable,
)
from pgc_fast.render.renderer import MeshRenderer, RenderMesh, RenderOutput
from pgc_fast.render.textures import (
    BakedTexture,
    FieldTexture,
    UVTexture,
    VertexColorTexture,
    bake_field_to_uv,
    dilate_seams,
    init_texture,
)

__all__ = [
    "CpuBackend",
    "NvdiffrastBackend",
    "RasterBackend",
    "get_backend",
    "load_nvdiffrast",
    "Cameras",
    "OrbitSampler",
    "look_at",
    "orbit_cameras",
    "perspective",
    "turntable",
    "MeshRenderer",
    "RenderMesh",
    "RenderOutput",
    "BakedTexture",
    "FieldTexture",
    "UVTexture",
    "VertexColorTexture",
    "bake_field_to_uv",
    "dilate_seams",
    "init_texture",
]
