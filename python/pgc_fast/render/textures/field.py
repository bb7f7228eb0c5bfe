"""FieldTexture: a texture queried at surface points (wraps a fields/ colour field), its vertex-colour pre-fit."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from pgc_fast.mesh.uv import atlas
from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.renderer import RenderMesh
from pgc_fast.render.textures.bake import BakedTexture, bake_field_to_uv


# ------------------------------------------------------------------------------------------------- textures
class FieldTexture(nn.Module):
    """A colour field queried at world positions: ``forward(points float32 [N,3]) → [N,C]``.

    field: an ``nn.Module`` mapping [N,3] → [N,C]; default ``pgc_fast.fields.TextureField(**field_kwargs)``.
    input_range: ``"world"`` passes world coordinates unchanged (for fields that map [−bound, bound]
    themselves); ``"unit"`` maps [−bound, bound]³ → [0, 1]³ first (for fields defined on the unit cube);
    ``"auto"`` (default) is ``"world"`` when the field has a ``bound`` attribute, else ``"unit"``.
    """

    domain = "position"
    needs_uvs = False

    def __init__(
        self, field: nn.Module | None = None, *, bound: float = 1.0, input_range: str = "auto", **field_kwargs: Any
    ) -> None:
        super().__init__()
        if field is None:
            from pgc_fast.fields import TextureField  # the hash-grid field (issue 6)

            field = TextureField(bound=bound, **field_kwargs)
        if input_range not in ("auto", "world", "unit"):
            raise ValueError(f"FieldTexture(): input_range must be auto|world|unit, got {input_range!r}")
        if input_range == "auto":
            input_range = "world" if hasattr(field, "bound") else "unit"
        self.field = field
        self.bound = float(bound)
        self.input_range = input_range

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 2 or points.shape[-1] != 3:
            raise ValueError(f"FieldTexture(): points must be [N,3], got {list(points.shape)}")
        x = points if self.input_range == "world" else (points + self.bound) / (2 * self.bound)
        return self.field(x)

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        """The field's groups: hash grid at grid_lr_scale × lr, MLP at lr (the original's)."""
        groups = getattr(self.field, "param_groups", None)
        if groups is None:
            raise TypeError(
                f"FieldTexture.param_groups(): field {type(self.field).__name__} has no param_groups(lr, grid_lr_scale)"
            )
        return groups(lr, grid_lr_scale)

    def jittered(
        self, generator: torch.Generator | None, amount: float = 1e-3
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Queries at points + U(−amount, amount)³ (the original's ``--pos_perturb`` drew a biased U[0, 2e-3))."""

        def query(points: torch.Tensor) -> torch.Tensor:
            return self(points + (torch.rand(points.shape, generator=generator).to(points) * 2 - 1) * amount)

        return query

    def init_from_vertex_colors(
        self, mesh: RenderMesh, backend: RasterBackend, *, steps: int = 500, **kwargs: Any
    ) -> bool:
        """:func:`fit_field_to_vertex_colors` on :func:`fit_schedule`'s plan for ``steps`` configured steps on the
        mesh's device (kwargs: generator, progress, or any of the fit's arguments, which win over the plan)."""
        plan = dataclasses.asdict(fit_schedule(mesh.device, steps))
        fit_field_to_vertex_colors(self, mesh, **{**plan, **kwargs})
        return True

    def bake(self, mesh: RenderMesh, backend: RasterBackend, resolution: int, dilation: int) -> BakedTexture:
        """Unwrap the mesh (``pgc_fast.mesh.uv.atlas``) and bake the field at every covered texel's surface point."""
        uvs, uv_faces = atlas(mesh.vertices.cpu().numpy(), mesh.faces.cpu().numpy(), resolution)
        return bake_field_to_uv(
            self,
            mesh.vertices,
            mesh.faces,
            backend,
            uvs=uvs.to(mesh.device),
            uv_faces=uv_faces.to(mesh.device),
            resolution=resolution,
            dilate_pixels=max(dilation, 1),
        )


# ------------------------------------------------------------------------------------------- initialisation
def sample_surface(
    vertices: torch.Tensor, faces: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Area-uniform surface samples: (points float32 [n,3], face ids int64 [n], barycentrics float32 [n,3])."""
    f = faces.long()
    v0, v1, v2 = vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]]
    area = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1).norm(dim=-1).float().cpu()
    if float(area.sum()) <= 0:
        raise ValueError("sample_surface(): the mesh has zero area")
    fid = torch.multinomial(area, n, replacement=True, generator=generator)
    r = torch.rand(n, 2, generator=generator)
    s = r[:, 0].sqrt()
    bary = torch.stack([1 - s, s * (1 - r[:, 1]), s * r[:, 1]], dim=-1)
    fid, bary = fid.to(vertices.device), bary.to(vertices.device)
    fv = f[fid]
    pts = (vertices[fv] * bary[..., None]).sum(1)
    return pts.float(), fid, bary


GPU_FIT_POINTS = 1 << 16
"""Surface points of the pre-fit on CUDA: one fixed batch for every step, as the original's init_texture."""
CPU_FIT_POINTS = 1 << 12
"""Surface points per step of the pre-fit on the CPU, drawn afresh every step (see :func:`fit_schedule`)."""
CPU_STEP_FRACTION = 0.5
"""Steps of the CPU pre-fit, as a fraction of the configured ``texture.init_iters`` (see :func:`fit_schedule`)."""
CPU_FIT_LR = 3e-2
"""Adam learning rate of the CPU pre-fit (the original's: 1e-2)."""


@dataclass(frozen=True)
class FitPlan:
    """How the vertex-colour pre-fit runs: :func:`fit_field_to_vertex_colors`'s arguments of the same names."""

    steps: int
    n_points: int
    resample: bool
    lr: float


def fit_schedule(device: torch.device | str, iters: int) -> FitPlan:
    """The vertex-colour pre-fit's plan for ``iters`` configured steps (``texture.init_iters``) on ``device``.

    CUDA keeps the original's schedule: ``iters`` Adam steps (lr 1e-2) over one batch of 2^16 surface points
    (500 steps by default; about a second on an H100). On the CPU a step over 2^16 points (2^17 queries of the
    hash grid's torch twin: 16 levels x 8 corners of gathers and scatter-adds) takes seconds; over 2^12 it costs
    ~8x less, and drawing fresh points each step covers the surface as well as the one big batch did. With
    half the steps at lr 3e-2 the fit reaches the surface PSNR of the original schedule
    (benches/cpu_field_fit.py measures both, numbers in benches/RESULTS.md): ~16x less work."""
    if torch.device(device).type == "cuda" or iters == 0:
        return FitPlan(iters, GPU_FIT_POINTS, False, 1e-2)
    return FitPlan(max(1, math.ceil(iters * CPU_STEP_FRACTION)), CPU_FIT_POINTS, True, CPU_FIT_LR)


def fit_field_to_vertex_colors(
    texture: FieldTexture,
    mesh: RenderMesh,
    *,
    steps: int = 500,
    n_points: int = GPU_FIT_POINTS,
    resample: bool = False,
    lr: float = 1e-2,
    near_std: float = 0.04,
    far_std: float = 0.4,
    clamp: tuple[float, float] = (0.03, 0.97),
    generator: torch.Generator | None = None,
    progress: Callable[[int, int, torch.Tensor], None] | None = None,
) -> float:
    """Fit a position field to the mesh's vertex colours (the original's ``init_texture``): targets are the
    colours at ``n_points`` random surface points, queried at the points + N(0, near_std²) and at a second copy
    + N(0, far_std²); loss = Σ_channels mean_points (c − target)²; Adam for ``steps`` steps, over one batch
    (the original) or, with ``resample``, a fresh batch every step (:func:`fit_schedule` picks per device).
    ``progress(step, steps, loss)`` is called after every step with the loss as a 0-d device tensor (reading it
    is the caller's choice: it costs a host sync on CUDA). Returns the final loss. The caller resets its
    optimiser state afterwards (the original did)."""
    if mesh.colors is None:
        raise ValueError("fit_field_to_vertex_colors(): the mesh has no vertex colours")
    x, y = _fit_batch(mesh, n_points, near_std, far_std, clamp, generator)
    opt = torch.optim.Adam([p for p in texture.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99), eps=1e-15)
    loss = torch.zeros(())
    for i in range(steps):
        if resample and i:
            x, y = _fit_batch(mesh, n_points, near_std, far_std, clamp, generator)
        opt.zero_grad(set_to_none=True)
        loss = ((texture(x).float() - y) ** 2).mean(0).sum()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(i + 1, steps, loss.detach())
    return float(loss.detach())


def _fit_batch(
    mesh: RenderMesh,
    n: int,
    near_std: float,
    far_std: float,
    clamp: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query points [2n, 3] (near and far copies of n surface samples) and their target colours [2n, 3]."""
    dev = mesh.device
    pts, fid, bary = sample_surface(mesh.vertices, mesh.faces, n, generator)
    assert mesh.colors is not None
    target = (mesh.colors[mesh.faces[fid]] * bary[..., None]).sum(1).clamp(*clamp)
    near = pts + torch.randn(pts.shape, generator=generator).to(dev) * near_std
    far = pts + torch.randn(pts.shape, generator=generator).to(dev) * far_std
    return torch.cat([near, far]), torch.cat([target, target])


@torch.no_grad()
def vertex_color_psnr(
    texture: nn.Module, mesh: RenderMesh, n_points: int = 1 << 15, generator: torch.Generator | None = None
) -> float:
    """Quality of a pre-fit: PSNR (dB) of the field at fresh surface points against the interpolated vertex colours
    (clamped as the fit's targets), the measure :func:`fit_schedule` was tuned with."""
    if mesh.colors is None:
        raise ValueError("vertex_color_psnr(): the mesh has no vertex colours")
    pts, fid, bary = sample_surface(mesh.vertices, mesh.faces, n_points, generator)
    target = (mesh.colors[mesh.faces[fid]] * bary[..., None]).sum(1).clamp(0.03, 0.97)
    mse = float(((texture(pts).float() - target) ** 2).mean())
    return -10.0 * math.log10(max(mse, 1e-12))
