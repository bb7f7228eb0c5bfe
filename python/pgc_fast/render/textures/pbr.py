"""PBRMaterial: the original's ``--pbr`` material — a hash-grid field of base colour, roughness, metallic, occlusion
and a tangent-space normal perturbation (``fields.MaterialField``) queried at surface points, with the environment
light it is seen under (``render.envlight.EnvironmentLight``); its kd smoothness regulariser and its baking into
glTF-ready maps.

The material takes only what the renderer gives it (surface points; normals and tangents for shading), so it
composes with any geometry: the fixed mesh carries a UV atlas and MikkTSpace-style tangents
(``pgc_fast.mesh.vertex_tangents``); a mesh without UVs (DMTet's per-step surface) is shaded in the UV-free frame
of ``render.shading.tangent_frame``. Baking re-expresses the perturbed normal in the tangent frames of the export
atlas, so the exported normal map is right whichever frame training used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pgc_fast.fields.material import KD, NORMAL, MaterialField
from pgc_fast.mesh import Mesh, vertex_tangents
from pgc_fast.mesh.uv import atlas
from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.envlight import EnvironmentLight
from pgc_fast.render.renderer import RenderMesh, RenderOutput
from pgc_fast.render.shading import tangent_frame
from pgc_fast.render.textures.bake import BakedTexture, _uv_raster, dilate_seams
from pgc_fast.render.textures.field import fit_field_to_vertex_colors, fit_schedule

__all__ = ["PBRMaterial", "with_tangents"]

FLAT = (0.0, 0.0, 1.0)
"""The tangent-space perturbation of an unperturbed normal."""


class _KdView(nn.Module):
    """The material's base colour alone, for the vertex-colour fits (which fit a 3-channel field: the pre-fit of
    render/textures/field.py, DMTet's joint initialisation in train/dmtet.py)."""

    def __init__(self, material: PBRMaterial) -> None:
        super().__init__()
        self.material = material

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.material(points)[:, KD]

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        return self.material.param_groups(lr, grid_lr_scale)


class PBRMaterial(nn.Module):
    """A PBR material field and its light, behind the ``Texture`` protocol (render/textures/base.py).

    ``forward(points float32 [N,3]) → [N,9]``: kd (linear base colour), ks = (occlusion, roughness, metallic) and
    the tangent-space normal perturbation, (0, 0, 1) when ``perturbed_normal`` is off (``--no_perturbed_nrm``).
    The renderer recognises it by ``is_material`` and shades it with ``light`` (``shading="pbr"``).

    ``light_lr_scale``: the light's learning rate relative to the material's when learnable (the original: 1 for
    the fixed mesh, 0.1 with DMTet).
    """

    domain = "position"
    needs_uvs = True
    is_material = True

    def __init__(
        self,
        field: MaterialField | None = None,
        light: EnvironmentLight | None = None,
        *,
        perturbed_normal: bool = True,
        light_lr_scale: float = 1.0,
        **field_kwargs: Any,
    ) -> None:
        super().__init__()
        self.field = field if field is not None else MaterialField(**field_kwargs)
        self.light = light if light is not None else EnvironmentLight.from_file(None, 64)
        self.perturbed_normal = bool(perturbed_normal)
        self.light_lr_scale = float(light_lr_scale)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 2 or points.shape[-1] != 3:
            raise ValueError(f"PBRMaterial(): points must be [N,3], got {list(points.shape)}")
        m = self.field(points)
        if self.perturbed_normal:
            return m
        flat = torch.tensor(FLAT, dtype=m.dtype, device=m.device).expand(m.shape[0], 3)
        return torch.cat([m[:, :6], flat], dim=-1)

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        """The original's PBR groups: the material (grid and MLP) at ``lr``; the light at ``light_lr_scale`` ×
        ``lr`` when learnable. ``grid_lr_scale`` (the albedo field's ×10) does not apply: the original's PBR
        optimiser had no separate grid rate."""
        return self.field.param_groups(lr, 1.0) + self.light.param_groups(lr * self.light_lr_scale)

    def jittered(self, generator: torch.Generator | None, amount: float = 1e-3) -> Callable[[torch.Tensor], Any]:
        """Queries at points + U(−amount, amount)³ (``texture.pos_perturb``); keeps the material's flags."""
        material = self

        class _Jittered:
            domain = "position"
            is_material = True

            def __call__(self, points: torch.Tensor) -> torch.Tensor:
                noise = (torch.rand(points.shape, generator=generator).to(points) * 2 - 1) * amount
                return material(points + noise)

        return _Jittered()

    def init_from_vertex_colors(
        self, mesh: RenderMesh, backend: RasterBackend, *, steps: int = 500, **kwargs: Any
    ) -> bool:
        """Fit the base colour kd to the mesh's vertex colours (the original's ``--init_texture``), as
        ``FieldTexture`` does (render/textures/field.py, its plan per device)."""
        plan = dataclasses.asdict(fit_schedule(mesh.device, steps))
        fit_field_to_vertex_colors(self.base_colour(), mesh, **{**plan, **kwargs})  # type: ignore[arg-type]
        return True

    def base_colour(self) -> nn.Module:
        """The base colour kd alone as a 3-channel field (``points [N,3] → [N,3]``) sharing this material's
        parameters: what a vertex-colour fit trains."""
        return _KdView(self)

    def kd_smoothness(self, render: RenderOutput, generator: torch.Generator | None, std: float = 0.01) -> Any:
        """The original's kd smoothness term ``mean(mean_c |kd(x + ε) − kd(x)| · alpha)``, ε ~ N(0, std²) per
        covered pixel, the mean over every pixel of the batch (alpha = the antialiased coverage). A 0-d tensor."""
        if render.material is None:
            raise ValueError("PBRMaterial.kd_smoothness(): the render has no material channels")
        sel = render.rast[..., 3] > 0  # [B,H,W]
        pos = render.position.permute(0, 2, 3, 1)[sel]
        kd = render.material.permute(0, 2, 3, 1)[sel][:, KD]
        eps = torch.randn(pos.shape, generator=generator).to(pos) * std
        diff = (self(pos + eps)[:, KD].float() - kd.float()).abs().mean(-1)
        alpha = render.mask.permute(0, 2, 3, 1)[sel][:, 0]
        return (diff * alpha).sum() / sel.numel()

    @torch.no_grad()
    def bake(self, mesh: RenderMesh, backend: RasterBackend, resolution: int, dilation: int) -> BakedTexture:
        """The material as maps on the mesh's UV atlas (its own, else ``pgc_fast.mesh.uv.atlas``): texture
        [R, R, 9] = kd, ks, and the normal in the tangent space of the atlas's vertex tangents (the frames a
        glTF viewer builds from the GLB's TANGENT attribute), unit, z ≥ 0 where the shading normal faces out.
        Rows follow the renderer (row 0 = v = 0); seams dilated by ``dilation`` texels, the rest pulled in."""
        dev = mesh.device
        uvs, uv_faces = mesh.uvs, mesh.uv_faces
        if uvs is None or uv_faces is None:
            u, f = atlas(mesh.vertices.cpu().numpy(), mesh.faces.cpu().numpy(), resolution)
            uvs, uv_faces = u.to(dev), f.to(dev)
        rast = _uv_raster(backend, uvs, uv_faces, resolution)
        mask = rast[0, ..., 3] > 0
        assert mesh.normals is not None
        pos = backend.interpolate(mesh.vertices.contiguous(), rast, mesh.faces)[0][mask]
        nrm = F.normalize(backend.interpolate(mesh.normals.contiguous(), rast, mesh.faces)[0][mask], dim=-1)
        train_t = None
        if mesh.tangents is not None and mesh.tangent_faces is not None:
            train_t = backend.interpolate(mesh.tangents.contiguous(), rast, mesh.tangent_faces)[0][mask]
        if mesh.uvs is not None and train_t is not None:
            export_t = train_t  # trained on this atlas's own frames
        else:
            export_t = _atlas_tangents(mesh, uvs, uv_faces, rast, backend)[mask]
        vals = torch.cat([self._bake_texels(pos[i : i + (1 << 18)]) for i in range(0, pos.shape[0], 1 << 18)])
        n_ts = _retangent(vals[:, NORMAL], nrm, train_t, export_t)
        tex = torch.zeros(resolution, resolution, 9, device=dev)
        tex[mask] = torch.cat([vals[:, :6], n_ts], dim=-1)
        tex = dilate_seams(tex, mask, max(dilation, 1))
        return BakedTexture(texture=tex, mask=mask, uvs=uvs, uv_faces=uv_faces, vmapping=None)

    def _bake_texels(self, pts: torch.Tensor) -> torch.Tensor:
        return self(pts).float()


def _retangent(
    perturbation: torch.Tensor, normal: torch.Tensor, train_t: torch.Tensor | None, export_t: torch.Tensor | None
) -> torch.Tensor:
    """The perturbed normal (built in the training frame) in the export frame's tangent space, unit [N, 3]."""
    t, b = tangent_frame(normal, train_t)
    p = perturbation
    world = F.normalize(t * p[:, 0:1] + b * p[:, 1:2] + normal * p[:, 2:3].clamp_min(0), dim=-1, eps=1e-20)
    te, be = tangent_frame(normal, export_t)
    local = torch.stack([(world * te).sum(-1), (world * be).sum(-1), (world * normal).sum(-1)], dim=-1)
    return F.normalize(local, dim=-1, eps=1e-20)


def _atlas_tangents(
    mesh: RenderMesh, uvs: torch.Tensor, uv_faces: torch.Tensor, rast: torch.Tensor, backend: RasterBackend
) -> torch.Tensor:
    """Vertex tangents of a fresh atlas, interpolated over its texels [R, R, 4]."""
    m = with_tangents(dataclasses.replace(mesh, uvs=uvs, uv_faces=uv_faces, tangents=None, tangent_faces=None))
    assert m.tangents is not None and m.tangent_faces is not None
    return backend.interpolate(m.tangents.contiguous(), rast, m.tangent_faces)[0]


def with_tangents(mesh: RenderMesh, where: str = "mesh") -> RenderMesh:
    """``mesh`` (which must have UVs) with its vertex tangents (``pgc_fast.mesh.vertex_tangents``; ``where`` names
    the mesh, its file, in the error a degenerate UV layout raises)."""
    if mesh.uvs is None or mesh.uv_faces is None:
        raise ValueError(f"with_tangents(): {where} has no UVs")
    assert mesh.normals is not None
    cpu = Mesh(
        vertices=mesh.vertices.detach().cpu().numpy(),
        faces=mesh.faces.cpu().numpy(),
        uvs=mesh.uvs.detach().cpu().numpy(),
        uv_faces=mesh.uv_faces.cpu().numpy(),
        normals=mesh.normals.detach().cpu().numpy().astype(np.float32),
    )
    fr = vertex_tangents(cpu, where)
    dev = mesh.device
    return dataclasses.replace(
        mesh, tangents=torch.from_numpy(fr.tangents).to(dev), tangent_faces=torch.from_numpy(fr.faces).to(dev)
    )
