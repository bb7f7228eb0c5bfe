"""DMTet geometry (Shen et al. 2021, arXiv 2111.04276): the shape a run optimises as a signed distance on a
tetrahedral grid, extracted as a triangle mesh every step — the original's Rasterizer_MLP (fudan-zvg/PGC-3D,
nerf/fine/rasterizer.py), Magic3D / Fantasia3D's stage 2.

Per step (:meth:`DMTetGeometry.render_mesh`)::

    [s, δ] = SDFField(grid vertices)                       # hash grid + MLP 64→32→32→4 (pgc_fast.fields.sdf)
    v'     = v + (1.8 / (2·res))·tanh(δ)                   # the original's deformation
    mesh   = marching_tets_torch(v', s + s₀, tets)         # pgc_fast.mesh.tets: no torch.unique, differentiable
    normals = area-weighted vertex normals                 # outward: s < 0 inside, positively oriented tets

The grid is :func:`pgc_fast.mesh.tets.tet_grid` scaled to [−1, 1]³ (the original's ``--bound 1``); ``s₀`` is zero
unless the direct initialisation put the input's signed distance there.

Initialisation (``mesh.sdf_init``):

* ``fit`` (the original's, its Trainer.train_initsdf): Adam over the field (grids lr 1e-2, MLPs 1e-3) fitting
  ``s`` to the input mesh's signed distance (pgc_fast.mesh.signed_distance: winding-number sign, so open meshes
  work, where the original's ray-cast sign needed a watertight one) at surface samples jittered by N(0, 0.04²)
  and, once more, by N(0, 0.4²) (:mod:`pgc_fast.mesh.sampling`); jointly with the texture field on the same
  points when ``--init_texture`` (colour targets clamped to [1e-3, 1 − 1e-3], near-black → 0.2, near-white →
  0.8, as the original). The deformation is left free. The training optimiser is built afterwards, so its
  learning rates and state start fresh (the original reset both). On CUDA: ``mesh.sdf_init_iters`` steps over
  one batch of ``mesh.sdf_init_points`` surface samples (the original: 500 × 10⁶); on the CPU fewer, fresh
  samples per step (:func:`sdf_fit_schedule`).
* ``direct``: ``s₀`` = the signed distance at the grid vertices minus the field's initial answer there, so the
  first extraction is the input at grid resolution; no fitting (one signed-distance query per grid vertex).

Regularisers (:meth:`DMTetGeometry.regularizer`, :mod:`pgc_fast.mesh.regularizers`), in the last
``mesh.smooth_iters`` steps as the original: ``lambda_smooth`` × normal consistency (pytorch3d's
``mesh_normal_consistency``) and ``lambda_laplacian`` × the uniform Laplacian (the original had it commented out:
0 by default).

Export: the final surface is extracted once (:meth:`DMTetGeometry.finalize`), floaters are removed with the
original's rule (:func:`pgc_fast.mesh.floaters.remove_floaters`: components below the 99.9th percentile of the
component sizes), and the mesh is returned in the input's frame and units.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pgc_fast import config as C
from pgc_fast.config.validate import TET_RES_RANGE
from pgc_fast.fields.sdf import SDFField
from pgc_fast.mesh import Mesh, Normalization, vertex_normals
from pgc_fast.mesh.floaters import remove_floaters
from pgc_fast.mesh.regularizers import smoothness_loss
from pgc_fast.mesh.sampling import sdf_init_points
from pgc_fast.mesh.sdf import signed_distance
from pgc_fast.mesh.tets import marching_tets_torch, tet_edges, tet_grid
from pgc_fast.render.renderer import RenderMesh

__all__ = [
    "BOUND",
    "TET_RES_RANGE",
    "DMTetGeometry",
    "EmptySurfaceError",
    "SDFFitPlan",
    "check_source_mesh",
    "fit_sdf",
    "grid_cell",
    "outward_normal_map",
    "sdf_fit_schedule",
]

BOUND = 1.0
"""The tet grid and the geometry field cover [−BOUND, BOUND]³ (the original's --bound, 1)."""
DEFORM_SCALE = 1.8
"""The original's dmtet_scale: vertex offsets are at most DEFORM_SCALE / (2·res)."""
FLOATER_PERCENTILE = 99.9
"""Export keeps the edge-connected components with at least the 99.9th percentile of the component sizes (in
faces), the original's rule (pgc_fast.mesh.floaters.remove_floaters)."""


class EmptySurfaceError(RuntimeError):
    """The DMTet surface is empty (no zero crossing on the grid): after the initialisation or during training."""


def grid_cell(resolution: int, bound: float = BOUND) -> float:
    """Edge length of one cube of the tet grid of ``resolution`` in world units: 2·bound / (resolution // 2)."""
    return 2.0 * bound / (int(resolution) // 2)


def check_source_mesh(mesh: Mesh, norm: Normalization, resolution: int) -> None:
    """ValueError (one line) when ``mesh`` cannot seed a DMTet grid: non-finite vertices, no faces, a training frame
    outside the grid, or a mesh too small to cross a grid cell."""
    v = np.asarray(mesh.vertices, np.float64)
    if not np.isfinite(v).all():
        bad = np.nonzero(~np.isfinite(v).all(1))[0][:5].tolist()
        raise ValueError(f"DMTet needs finite vertex positions, got NaN/inf at vertices {bad}")
    if len(mesh.faces) == 0:
        raise ValueError("DMTet needs a mesh with faces (its signed distance seeds the grid), got 0 faces")
    t = norm.apply(v)
    reach = float(np.abs(t).max())
    if reach >= BOUND:
        raise ValueError(
            f"DMTet's grid covers [-{BOUND:g}, {BOUND:g}]^3 but the mesh reaches {reach:.3g} in the training frame; "
            "add --canonicalize (mesh.canonicalize) to centre and scale it"
        )
    size = float((t.max(0) - t.min(0)).max())
    if size < 2 * grid_cell(resolution):
        raise ValueError(
            f"the mesh spans {size:.3g} in the training frame, less than two cells of the {resolution} tet grid "
            f"({grid_cell(resolution):.3g} each); raise mesh.tet_res or add --canonicalize"
        )


@dataclass(frozen=True)
class SDFFitPlan:
    """How the fit initialisation runs: :func:`fit_sdf`'s arguments of the same names."""

    steps: int
    n_points: int
    resample: bool


CPU_FIT_POINTS = 1 << 12
"""Surface samples per step of the CPU fit (twice as many queries: near and far copies), drawn afresh each step."""
CPU_STEP_FRACTION = 0.2
"""Steps of the CPU fit, as a fraction of ``mesh.sdf_init_iters``: 100 of the default 500. Measured on the demo
vase at grid 64 (8-level field, one thread): 50 steps give a symmetric Chamfer distance of 0.056 to the input,
100 steps 0.019, a third of a grid cell (0.0625)."""


def sdf_fit_schedule(device: torch.device | str, iters: int, points: int) -> SDFFitPlan:
    """The fit initialisation's plan: on CUDA the original's (``iters`` full-batch steps over ``points`` surface
    samples, drawn once); on the CPU, where a step over 10⁶ samples takes seconds, CPU_STEP_FRACTION of the steps
    over CPU_FIT_POINTS fresh samples each (fresh samples generalise between them, as for the texture pre-fit of
    render/textures/field.py)."""
    if torch.device(device).type == "cuda" or iters == 0:
        return SDFFitPlan(iters, points, False)
    return SDFFitPlan(max(1, math.ceil(iters * CPU_STEP_FRACTION)), min(points, CPU_FIT_POINTS), True)


# ------------------------------------------------------------------------------------------------ samples
def sdf_samples(
    source: RenderMesh, n: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Query points [2n, 3] (the original's: n surface samples + N(0, 0.04²), then those + N(0, 0.4²):
    :func:`pgc_fast.mesh.sampling.sdf_init_points`), their signed distance to ``source`` [2n] and, when it has
    vertex colours, the colour targets [2n, 3]: the colour at each point's closest surface point (the original
    averaged the 4 nearest vertices' colours), clamped to [1e-3, 1 − 1e-3], near-black → 0.2 and near-white → 0.8
    (the original's rule: black would not change in training, white would read as background)."""
    v, f = source.vertices.detach().cpu().numpy(), source.faces.cpu().numpy()
    q = sdf_init_points(v, f, n, generator=generator)
    if source.colors is None:
        d = signed_distance(v, f, q)
        return q.to(source.device), d.to(source.device), None
    d, face, closest = signed_distance(v, f, q, return_closest=True)
    c = _surface_colors(source, face.to(source.device), closest.to(source.device)).clamp(1e-3, 1 - 1e-3)
    s = c.sum(-1, keepdim=True)
    c = torch.where(s < 0.5, torch.full_like(c, 0.2), torch.where(s > 2.5, torch.full_like(c, 0.8), c))
    return q.to(source.device), d.to(source.device), c


def _surface_colors(mesh: RenderMesh, face: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Vertex colours interpolated at ``points`` [N, 3] lying on faces ``face`` [N] (barycentric; a degenerate
    face gives its vertices' mean)."""
    assert mesh.colors is not None
    tri = mesh.vertices[mesh.faces[face]].double()  # [N, 3, 3]
    e0, e1, ep = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], points.double() - tri[:, 0]
    d00, d01, d11 = (e0 * e0).sum(-1), (e0 * e1).sum(-1), (e1 * e1).sum(-1)
    d20, d21 = (ep * e0).sum(-1), (ep * e1).sum(-1)
    den = d00 * d11 - d01 * d01
    ok = den > 1e-30
    safe = torch.where(ok, den, torch.ones_like(den))
    b1 = torch.where(ok, (d11 * d20 - d01 * d21) / safe, torch.full_like(den, 1 / 3)).clamp(0, 1)
    b2 = torch.where(ok, (d00 * d21 - d01 * d20) / safe, torch.full_like(den, 1 / 3)).clamp(0, 1)
    w = torch.stack([(1 - b1 - b2).clamp_min(0), b1, b2], -1)
    w = w / w.sum(-1, keepdim=True)
    return (mesh.colors[mesh.faces[face]].double() * w[..., None]).sum(1).float()


def fit_sdf(
    field: SDFField,
    source: RenderMesh,
    *,
    steps: int,
    n_points: int,
    resample: bool = False,
    texture: nn.Module | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int, torch.Tensor], None] | None = None,
) -> float:
    """The original's SDF initialisation (its Trainer.train_initsdf): ``steps`` Adam steps (grids lr 1e-2, MLPs
    1e-3, betas (0.9, 0.99), eps 1e-15) of ``mean (s − sdf)²`` (+ ``mean Σ_c (c − colour)²`` for ``texture``) over
    :func:`sdf_samples`, in float32. Returns the last loss."""
    groups = field.param_groups(1e-3, 10.0)
    if texture is not None:
        groups += texture.param_groups(1e-3, 10.0)  # type: ignore[operator]
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    q, d, col = sdf_samples(source, n_points, generator)
    loss = torch.zeros(())
    with torch.autocast(source.device.type, enabled=False):
        for i in range(steps):
            if resample and i:
                q, d, col = sdf_samples(source, n_points, generator)
            opt.zero_grad(set_to_none=True)
            loss = ((field.sdf(q) - d) ** 2).mean()
            if texture is not None and col is not None:
                loss = loss + ((texture(q).float() - col) ** 2).sum(-1).mean()
            loss.backward()
            opt.step()
            if progress is not None:
                progress(i + 1, steps, loss.detach())
    return float(loss.detach())


# ------------------------------------------------------------------------------------------------ renders
def outward_normal_map(backend: Any, mesh: RenderMesh, rast: torch.Tensor) -> torch.Tensor:
    """The normal-SDS input: ``(n + 1)/2`` of the unit outward world normal interpolated from ``mesh.normals`` at
    every covered pixel, 0.5 grey where no triangle is (the original's background), [B, 3, H, W] float32.
    Differentiable w.r.t. the vertices (through the normals). The original fed unnormalised interpolated
    normals (its bug 18); these are normalised."""
    assert mesh.normals is not None
    n = backend.interpolate(mesh.normals.contiguous(), rast, mesh.faces)
    cov = (rast[..., 3:] > 0).to(n.dtype)
    n = F.normalize(n, dim=-1, eps=1e-20) * cov
    return ((n + 1) * 0.5).permute(0, 3, 1, 2).contiguous()


class _CudaElapsed:
    """Milliseconds between two CUDA events, read when converted to float: the loop converts its step statistics
    after reading them back, so this costs no extra host synchronisation."""

    def __init__(self, start: Any, end: Any) -> None:
        self.start, self.end = start, end

    def __float__(self) -> float:
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


class _ExtractTimer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.t0: Any = torch.cuda.Event(enable_timing=True)
            self.t0.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> Any:
        if not self.cuda:
            return (time.perf_counter() - self.t0) * 1000.0
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        return _CudaElapsed(self.t0, end)


# ------------------------------------------------------------------------------------------------ the geometry
class DMTetGeometry(nn.Module):
    """The DMTet shape behind the Geometry protocol of train/geometry.py (module docstring).

    Args:
        mesh_in: the input mesh (input frame); norm: its training-frame transform.
        device: where the grid, the field and the extracted meshes live.
        cfg: the run configuration (mesh.tet_res, sdf_init*, lambda_smooth, smooth_iters, lambda_laplacian; the
            geometry field uses the texture field's hash-grid size, as the original).
    """

    grid_vertices: torch.Tensor
    tets: torch.Tensor
    edges: torch.Tensor
    tet_edges: torch.Tensor
    sdf_base: torch.Tensor

    def __init__(self, mesh_in: Mesh, norm: Normalization, device: torch.device, cfg: C.RunConfig) -> None:
        super().__init__()
        self.device = torch.device(device)
        m, t = cfg.mesh, cfg.texture
        res = m.tet_res
        if not TET_RES_RANGE[0] <= res <= TET_RES_RANGE[1]:
            raise ValueError(f"DMTetGeometry(): mesh.tet_res must be in {list(TET_RES_RANGE)}, got {res}")
        check_source_mesh(mesh_in, norm, res)
        self.mesh_in, self.norm, self.cfg, self.resolution = mesh_in, norm, cfg, res
        colors = None if mesh_in.colors is None else torch.from_numpy(np.asarray(mesh_in.colors, np.float32))
        self._source = RenderMesh(
            vertices=torch.from_numpy(norm.apply(mesh_in.vertices)),
            faces=torch.from_numpy(np.asarray(mesh_in.faces, np.int64)),
            colors=colors,
        ).to(device)
        verts, tets = tet_grid(res)
        edges, tedges = tet_edges(tets, verts.shape[0])
        for name, arr in (("grid_vertices", verts * (2 * BOUND)), ("tets", tets), ("edges", edges)):
            self.register_buffer(name, torch.from_numpy(arr).to(device), persistent=False)
        self.register_buffer("tet_edges", torch.from_numpy(tedges).to(device), persistent=False)
        self.register_buffer("sdf_base", torch.zeros(verts.shape[0], device=device))
        self.field = SDFField(
            deform_scale=DEFORM_SCALE / (2 * res),
            bound=BOUND,
            num_levels=t.field_levels,
            log2_table_size=t.field_log2_table_size,
            finest_resolution=t.field_finest_resolution,
        ).to(device)
        self._cache: tuple[Any, RenderMesh] | None = None
        self._generation = 0
        self._frozen: RenderMesh | None = None
        self.last_stats: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------ Geometry protocol
    def source_mesh(self) -> RenderMesh:
        """The input mesh in the training frame, with its vertex colours (texture initialisation)."""
        return self._source

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        """The geometry field's groups (the original's: grid at grid_lr_scale × lr, MLP at lr)."""
        groups = self.field.param_groups(lr, grid_lr_scale)
        for g in groups:
            g["name"] = f"geometry_{g['name']}"
        return groups

    def new_step(self) -> None:
        """The next :meth:`render_mesh` extracts afresh (a training step: the previous step's graph is gone, even
        when a skipped optimiser step left the parameters as they were)."""
        self._generation += 1

    def render_mesh(self) -> RenderMesh:
        """The current surface (training frame): extracted once per step, parameter update and grad mode."""
        if self._frozen is not None:
            return self._frozen
        versions = (self.sdf_base._version, *(p._version for p in self.parameters()))
        key = (torch.is_grad_enabled(), self._generation, *versions)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        timer = _ExtractTimer(self.device)
        verts, faces = self.extract()
        if faces.shape[0] == 0:
            raise EmptySurfaceError(
                "training stopped: the DMTet surface vanished (its signed distance no longer crosses zero on the "
                "grid); lower the geometry learning rate (optim.lr_geometry) and resume from an earlier checkpoint"
            )
        mesh = RenderMesh(vertices=verts, faces=faces)
        self.last_stats = {"mesh_vertices": verts.shape[0], "mesh_faces": faces.shape[0], "extract_ms": timer.stop()}
        self._cache = (key, mesh)
        return mesh

    def step_stats(self) -> dict[str, Any]:
        """The last extraction's vertex and face counts and time in ms (a float, or on CUDA an object read as one
        when the loop converts its step statistics)."""
        return dict(self.last_stats)

    def extract(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(vertices float32 [K, 3], faces int64 [F, 3]) of the zero level set, differentiable when grad is on."""
        s, offset = self.field(self.grid_vertices)
        return marching_tets_torch(
            self.grid_vertices + offset.float(), s.float() + self.sdf_base, self.tets, self.edges, self.tet_edges
        )

    def regularizer(self, step: int, iters: int) -> torch.Tensor | None:
        """The shape regularisers of step ``step`` (0-based) of a run of ``iters`` steps, or None outside the
        original's window (:func:`pgc_fast.mesh.regularizers.smoothness_loss`: ``lambda_smooth`` × normal
        consistency, + ``lambda_laplacian`` × the uniform Laplacian, in the last ``smooth_iters`` steps)."""
        m = self.cfg.mesh
        if m.lambda_smooth <= 0 or step + 1 <= iters - m.smooth_iters:
            return None
        mesh = self.render_mesh()
        return smoothness_loss(
            mesh.vertices,
            mesh.faces,
            step,
            iters=iters,
            smooth_iters=m.smooth_iters,
            lambda_smooth=m.lambda_smooth,
            lambda_laplacian=m.lambda_laplacian,
        )

    @torch.no_grad()
    def finalize(self) -> None:
        """Fix the final surface for exports and final renders: one extraction, floaters removed."""
        self._frozen = None
        verts, faces, _ = remove_floaters(*self.extract(), percentile=FLOATER_PERCENTILE)
        self._frozen = RenderMesh(vertices=verts, faces=faces)

    def export_mesh(self) -> Mesh:
        """The final surface in the input's frame and units (after :meth:`finalize`, which it calls if needed)."""
        if self._frozen is None:
            self.finalize()
        assert self._frozen is not None
        v = self._frozen.vertices.detach().cpu().numpy()
        f = self._frozen.faces.cpu().numpy()
        return Mesh(vertices=self.norm.invert(v), faces=f, normals=vertex_normals(v, f))

    # ------------------------------------------------------------------------------------ initialisation
    def initialize(
        self,
        *,
        texture: nn.Module | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> bool:
        """Initialise from the input mesh (``mesh.sdf_init``); with ``texture`` the fit initialisation fits it to
        the vertex colours on the same points. Returns whether the texture was fitted."""
        m = self.cfg.mesh
        if m.sdf_init == "direct":
            self._init_direct()
            return False
        plan = sdf_fit_schedule(self.device, m.sdf_init_iters, m.sdf_init_points)
        joint = texture if texture is not None and self._source.colors is not None else None
        fit_sdf(
            self.field,
            self._source,
            steps=plan.steps,
            n_points=plan.n_points,
            resample=plan.resample,
            texture=joint,
            generator=generator,
            progress=progress,
        )
        self._cache = None
        with torch.no_grad():
            if self.extract()[1].shape[0] == 0:
                raise EmptySurfaceError(
                    f"training stopped: the DMTet initialisation left no surface after {plan.steps} fitting steps "
                    "(the signed distance does not cross zero on the grid yet); raise mesh.sdf_init_iters or use "
                    "mesh.sdf_init=direct"
                )
        return joint is not None

    @torch.no_grad()
    def _init_direct(self) -> None:
        """s₀ = (signed distance − the field's initial answer) at the grid vertices: the first extraction is the
        input at grid resolution (up to the initial offsets, under a tenth of the largest one), while every layer
        of the field keeps its usual initialisation and gets gradients from the first step."""
        src = self._source
        d = signed_distance(src.vertices.cpu().numpy(), src.faces.cpu().numpy(), self.grid_vertices.cpu().numpy())
        with torch.autocast(self.device.type, enabled=False):
            s0 = self.field.sdf(self.grid_vertices).float()
        self.sdf_base.copy_(torch.from_numpy(np.asarray(d, np.float32)).to(self.device) - s0)
        self._cache = None


def progress_printer(what: str, lines: int = 10) -> Callable[[int, int, torch.Tensor], None]:
    """``progress(step, total, loss)`` printing about ``lines`` lines to stderr (each reads the loss: one sync)."""
    t0 = time.perf_counter()

    def progress(step: int, total: int, loss: torch.Tensor) -> None:
        if step == total or step % max(1, total // lines) == 0:
            print(
                f"{what}: {step}/{total} steps, loss {float(loss):.6f}, {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    return progress
