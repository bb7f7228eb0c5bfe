"""Surface sampling and the SDF fitting targets of DMTet initialisation (issue 17).

The original (``Rasterizer_MLP.init_geometry``, nerf/fine/rasterizer.py) draws n = 10⁶/nprocs points uniformly
on the canonicalised input mesh (open3d ``sample_points_uniformly``: a face with probability ∝ its area, a
uniform point in it), jitters them by N(0, 0.04²) ("near"), jitters a copy of those by a further N(0, 0.4²)
("far", to keep floaters away), and fits the geometry field to the signed distance at the 2n points (open3d
``RaycastingScene.compute_signed_distance``, negative inside; its ray-parity sign needs a watertight mesh).
Here the distance is :func:`pgc_fast.mesh.sdf.signed_distance` (Rust BVH, generalised-winding-number sign,
so open meshes get a sensible inside too), same sign convention.

Everything draws from a ``torch.Generator`` (CPU), so a seed gives the same points on every machine.

May import: numpy, torch, the Rust core (through mesh.sdf).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pgc_fast.mesh.sdf import signed_distance

__all__ = ["sample_surface", "sdf_init_points", "sdf_init_samples", "SIGMA_NEAR", "SIGMA_FAR"]

SIGMA_NEAR = 0.04
"""Std of the near jitter (the original's ``np.random.normal(0, 1, ...) * 0.04``)."""
SIGMA_FAR = 0.4
"""Std of the extra jitter of the far copy (added to the near points: total std √(0.04² + 0.4²))."""


def _mesh_tensors(op: str, vertices: Any, faces: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 [V, 3] and int64 [F, 3] CPU tensors after the checks (numpy or torch input)."""
    v = torch.as_tensor(vertices.detach().cpu() if isinstance(vertices, torch.Tensor) else np.asarray(vertices))
    f = torch.as_tensor(faces.detach().cpu() if isinstance(faces, torch.Tensor) else np.asarray(faces))
    if v.ndim != 2 or v.shape[1] != 3 or not (v.is_floating_point() or v.dtype == torch.int64):
        raise ValueError(f"{op}(): vertices must be a float array [V,3], got {v.dtype} {list(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3 or f.is_floating_point() or f.dtype == torch.bool:
        raise ValueError(f"{op}(): faces must be an int array [F,3], got {f.dtype} {list(f.shape)}")
    if f.shape[0] == 0:
        raise ValueError(f"{op}(): faces must hold at least one triangle, got 0")
    v, f = v.to(torch.float64), f.to(torch.int64)
    if int(f.min()) < 0 or int(f.max()) >= v.shape[0]:
        raise ValueError(
            f"{op}(): faces must index vertices in [0, {v.shape[0]}), got [{int(f.min())}, {int(f.max())}]"
        )
    bad = ~torch.isfinite(v).all(1)
    if bool(bad.any()):
        raise ValueError(f"{op}(): vertices must be finite, got a non-finite value at row {int(bad.nonzero()[0])}")
    return v, f


def _check_count(op: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{op}(): n must be a positive int, got {n!r}")
    return int(n)


def sample_surface(
    vertices: Any, faces: Any, n: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """n points uniformly distributed over the mesh's area (open3d's ``sample_points_uniformly``, which the
    original's ``Rasterizer_MLP.init_geometry`` calls): a face with probability ∝ its area (inverse CDF of
    the cumulative areas, float64; zero-area faces are never drawn), then barycentric (1 − √r₁, √r₁(1 − r₂),
    √r₁·r₂) with r₁, r₂ ~ U[0, 1) (Osada et al. 2002, https://doi.org/10.1145/571647.571648, eq. 1).

    Args:
        vertices: float [V, 3], faces: int [F, 3] (numpy or torch, any device; read on the CPU).
        n: number of points (≥ 1).
        generator: CPU ``torch.Generator`` (default: a fresh one seeded 0). Draws: n uniforms for the faces,
            then n×2 for the barycentrics.

    Returns:
        ``(points float64 [n, 3], face int64 [n])`` on the CPU.

    Raises:
        ValueError: bad shapes, no faces, indices out of range, non-finite vertices, zero total area, n < 1.
    """
    op = "sample_surface"
    v, f = _mesh_tensors(op, vertices, faces)
    n = _check_count(op, n)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    tri = v[f]  # [F, 3, 3]
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1)
    cdf = torch.cumsum(area, 0)
    if not float(cdf[-1]) > 0:
        raise ValueError(f"{op}(): the mesh must have a positive area, got {float(cdf[-1])}")
    u = torch.rand(n, generator=g, dtype=torch.float64) * cdf[-1]
    face = torch.searchsorted(cdf, u, right=True).clamp_(max=f.shape[0] - 1)
    r = torch.rand(n, 2, generator=g, dtype=torch.float64)
    s1 = r[:, 0].sqrt()
    w = torch.stack((1 - s1, s1 * (1 - r[:, 1]), s1 * r[:, 1]), 1)  # [n, 3]
    return (tri[face] * w.unsqueeze(2)).sum(1), face


def sdf_init_points(
    vertices: Any,
    faces: Any,
    n: int,
    *,
    generator: torch.Generator | None = None,
    sigma_near: float = SIGMA_NEAR,
    sigma_far: float = SIGMA_FAR,
) -> torch.Tensor:
    """The original's 2n SDF-fitting query points (``Rasterizer_MLP.init_geometry``): surface samples
    (:func:`sample_surface`) + N(0, σ_near²) per axis, then a copy of those + N(0, σ_far²).

    Args:
        vertices, faces: the (canonicalised) mesh, as :func:`sample_surface`.
        n: surface samples (the original: 10⁶ per GPU process); 2n points come back.
        generator: CPU ``torch.Generator`` (default seeded 0); draws after :func:`sample_surface`'s, n×3
            normals for the near jitter, then n×3 for the far one.
        sigma_near, sigma_far: jitter stds (≥ 0).

    Returns:
        float32 [2n, 3] on the CPU: rows [0, n) near, [n, 2n) far (row n + i is row i jittered again).
    """
    op = "sdf_init_points"
    for name, s in (("sigma_near", sigma_near), ("sigma_far", sigma_far)):
        if not (isinstance(s, (int, float)) and not isinstance(s, bool) and np.isfinite(s) and s >= 0):
            raise ValueError(f"{op}(): {name} must be a finite number ≥ 0, got {s!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    p, _ = sample_surface(vertices, faces, n, generator=g)
    near = p + sigma_near * torch.randn(p.shape, generator=g, dtype=torch.float64)
    far = near + sigma_far * torch.randn(p.shape, generator=g, dtype=torch.float64)
    return torch.cat((near, far)).to(torch.float32)


def sdf_init_samples(
    vertices: Any, faces: Any, n: int, *, generator: torch.Generator | None = None, beta: float = 2.0, **jitter: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query points and targets for fitting the DMTet SDF to a mesh (the original's ``init_geometry``
    return values ``points, sdf``): :func:`sdf_init_points` and their signed distance to the mesh
    (:func:`pgc_fast.mesh.sdf.signed_distance`, negative inside, parallel Rust, GIL released).

    Args:
        vertices, faces, n, generator: as :func:`sdf_init_points`.
        beta: winding-number accuracy, as :func:`~pgc_fast.mesh.sdf.signed_distance`.
        jitter: ``sigma_near`` / ``sigma_far``, passed to :func:`sdf_init_points` (defaults :data:`SIGMA_NEAR`,
            :data:`SIGMA_FAR`).

    Returns:
        ``(points float32 [2n, 3], sdf float32 [2n])`` on the CPU.
    """
    points = sdf_init_points(vertices, faces, n, generator=generator, **jitter)
    v, f = _mesh_tensors("sdf_init_samples", vertices, faces)
    return points, signed_distance(v.numpy(), f.numpy(), points, beta=beta)
