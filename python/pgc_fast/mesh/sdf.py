"""Signed distance and generalised winding number to a triangle mesh (Rust core: BVH closest point, hierarchical
winding-number sign, so meshes that are not watertight still get a sensible inside/outside), with brute-force twins.

May import: numpy, torch, the Rust core.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pgc_fast import _rust_mesh
from pgc_fast.mesh.model import _as_array, _as_index
from pgc_fast.mesh.raster import _is_torch

__all__ = ["signed_distance", "signed_distance_reference", "winding_number", "winding_number_reference"]


def _sdf_inputs(vertices: Any, faces: Any, points: Any, beta: float, op: str) -> tuple[np.ndarray, ...]:
    """float64 [V,3] vertices, int64 [F,3] faces, float32|float64 [N,3] points (float32 kept, anything
    else converted to float64), after the shape/range/beta checks (finiteness is checked in Rust)."""
    v = _as_array(vertices, np.float64, (None, 3), op, "vertices")
    f = _as_index(faces, v.shape[0], op, "faces")
    if f.shape[0] == 0:
        raise ValueError(f"{op}(): faces must hold at least one triangle, got 0")
    p_in = points.detach().cpu().numpy() if _is_torch(points) else np.asarray(points)
    dtype = np.float32 if p_in.dtype == np.float32 else np.float64
    p = _as_array(p_in, dtype, (None, 3), op, "points")
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)) or not beta > 1:
        raise ValueError(f"{op}(): beta must be a number > 1 (inf = exact), got {beta!r}")
    return v, f, p


def _like_points(points: Any, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    if not _is_torch(points):
        return arrays
    import torch

    return tuple(None if a is None else torch.from_numpy(a).to(points.device) for a in arrays)


def signed_distance(
    vertices: Any,
    faces: Any,
    points: Any,
    *,
    signed: bool = True,
    beta: float = 2.0,
    return_closest: bool = False,
) -> Any:
    """Distance from every point to a triangle mesh, negative inside (open3d's convention, which the original
    uses for its DMTet initialisation; trimesh's ``signed_distance`` is positive inside).

    The distance is exact (f64, BVH + closest point on triangle). A point is inside when the generalised
    winding number w > 0.5: on a closed, outward-oriented mesh w is 1 inside and 0 outside; on a mesh with
    holes, flipped patches or self-intersections it varies smoothly, so the sign stays sensible away from
    the defects (a ray-parity test flips whole regions). Degenerate faces (repeated or collinear vertices)
    count by their edges for the distance and add nothing to w. Runs in parallel with the GIL released.

    Args:
        vertices: float [V, 3] (converted to float64); numpy or torch.
        faces: int [F, 3] indices into ``vertices``; at least one face.
        points: float32 or float64 [N, 3] query points, all finite (other dtypes are converted to float64);
            numpy or torch (then the results are torch tensors on ``points``' device).
        signed: False skips the winding numbers and returns unsigned distances (faster).
        beta: accuracy of the hierarchical winding number (> 1): clusters farther than ``beta`` times
            their radius use a 3rd-order expansion. At 2, |w − w_exact| stayed below 1e-2 in the tests
            (worst next to the surface); ``float("inf")`` sums every triangle exactly. A sign is carried
            from a neighbouring query only where that is certified (no surface between them, and the
            drift of w bounded by the mesh's boundary edges, zero for a closed mesh) and |w − 0.5| > 0.05,
            so carrying never decides a sign the per-point winding number would not.
        return_closest: also return the closest face and closest surface point.

    Returns:
        ``distance [N]`` in the points' dtype; with ``return_closest``, ``(distance [N], face int64 [N],
        closest [N, 3])``.

    Raises:
        ValueError: bad shapes, face indices out of range, no faces, non-finite vertices or points (the
            message names the first bad row), ``beta`` ≤ 1.
    """
    op = "signed_distance"
    v, f, p = _sdf_inputs(vertices, faces, points, beta, op)
    d, face, closest = _rust_mesh.signed_distance(v, f, p, float(beta), bool(signed), bool(return_closest))
    out = _like_points(points, (d, face, closest))
    return out if return_closest else out[0]


def winding_number(vertices: Any, faces: Any, points: Any, *, beta: float = 2.0) -> Any:
    """Generalised winding number of a triangle mesh at every point (≈ 1 inside a closed, outward-oriented
    mesh, ≈ 0 outside). Arguments and errors as :func:`signed_distance`; returns [N] in the points' dtype."""
    op = "winding_number"
    v, f, p = _sdf_inputs(vertices, faces, points, beta, op)
    return _like_points(points, (_rust_mesh.winding_number(v, f, p, float(beta)),))[0]


def _closest_on_segments(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    l2 = (ab * ab).sum(-1, keepdims=True)
    t = np.where(l2 > 0, ((p - a) * ab).sum(-1, keepdims=True) / np.where(l2 > 0, l2, 1.0), 0.0)
    return a + np.clip(t, 0.0, 1.0) * ab


def _closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Closest points [P, F, 3] of triangles ``tri`` [F, 3, 3] to points ``p`` [P, 1, 3], by projection onto
    the plane when it falls inside (barycentric test), else the nearest point of the three edges.
    Triangles whose height is below 1e-12 of their longest edge count by their edges only."""
    a, b, c = tri[None, :, 0], tri[None, :, 1], tri[None, :, 2]
    e = [_closest_on_segments(p, x, y) for x, y in ((a, b), (b, c), (c, a))]
    d2 = np.stack([((x - p) ** 2).sum(-1) for x in e])  # [3, P, F]
    best = np.take_along_axis(np.stack(e), d2.argmin(0)[None, ..., None], 0)[0]
    v0, v1, v2 = b - a, c - a, p - a
    n = np.cross(v0, v1)
    longest = np.maximum(np.maximum((v0 * v0).sum(-1), (v1 * v1).sum(-1)), ((c - b) ** 2).sum(-1))
    flat = (n * n).sum(-1) <= 1e-24 * longest * longest
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = np.where(flat, 1.0, d00 * d11 - d01 * d01)
    bv, bw = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    inside = ~flat & (bv >= 0) & (bw >= 0) & (bv + bw <= 1)
    proj = a + bv[..., None] * v0 + bw[..., None] * v1
    return np.where(inside[..., None], proj, best)


def winding_number_reference(vertices: Any, faces: Any, points: Any) -> np.ndarray:
    """Exact generalised winding number, float64 [N]: Σ_t Ω_t / 4π over every triangle, with the solid angle
    tan(Ω/2) = det[a b c] / (|a||b||c| + (a·b)|c| + (b·c)|a| + (c·a)|b|) (van Oosterom & Strackee 1983)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]  # [F, 3, 3]
    p = np.asarray(points, np.float64)
    out = np.zeros(len(p))
    step = max(1, (1 << 20) // max(1, len(tri)))
    for s in range(0, len(p), step):
        a, b, c = (tri[None, :, k] - p[s : s + step, None] for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        det = (a * np.cross(b, c)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[s : s + step] = 2 * np.arctan2(det, den).sum(-1) / (4 * np.pi)
    return out


def signed_distance_reference(
    vertices: Any, faces: Any, points: Any, *, signed: bool = True, return_closest: bool = False
) -> Any:
    """Brute-force twin of :func:`signed_distance` (numpy, float64, every triangle, exact winding number);
    same arguments (no ``beta``: exact) and returns, float64. Test oracle and benchmark baseline."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    p = np.asarray(points, np.float64)
    dist, face, closest = np.zeros(len(p)), np.zeros(len(p), np.int64), np.zeros((len(p), 3))
    step = max(1, (1 << 18) // max(1, len(tri)))
    for s in range(0, len(p), step):
        q = p[s : s + step, None]
        c = _closest_on_triangles(q, tri)
        d2 = ((c - q) ** 2).sum(-1)
        k = d2.argmin(1)
        rows = np.arange(len(k))
        dist[s : s + step], face[s : s + step], closest[s : s + step] = np.sqrt(d2[rows, k]), k, c[rows, k]
    if signed:
        dist = np.where(winding_number_reference(vertices, faces, p) > 0.5, -dist, dist)
    return (dist, face, closest) if return_closest else dist
