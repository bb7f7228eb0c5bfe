"""Mesh regularisers for DMTet shape refinement, with pytorch3d's semantics (pytorch3d cannot be installed here):

* :func:`normal_consistency` — pytorch3d's ``mesh_normal_consistency`` (pytorch3d/loss/mesh_normal_consistency.py):
  for every edge e = (v0, v1), v0 < v1, and every pair of faces sharing it, 1 − cos(n0, n1) with
  n0 = (v1 − v0) × (a − v0), n1 = −(v1 − v0) × (b − v0) (a, b the faces' vertices opposite e), averaged
  over all pairs. The face winding does not enter: two faces folded onto each other score 2, coplanar
  neighbours 0 whichever way they are wound.
* :func:`laplacian_smoothing` — pytorch3d's ``mesh_laplacian_smoothing(method="uniform")``
  (pytorch3d/loss/mesh_laplacian_smoothing.py with ``pytorch3d.ops.laplacian``): the mean over vertices of
  ‖(1/deg i)·Σ_{j∈N(i)} v_j − v_i‖ over the mesh's unique edges (Desbrun et al. 1999,
  https://doi.org/10.1145/311535.311576).
* :func:`smoothness_loss` — the regulariser term exactly as the original adds it to the step's loss.

Both regularisers are vectorised (sort + scatter, no python loop over faces; differentiable w.r.t. the
vertices, any device) and have a brute-force loop twin (``*_reference``, numpy float64) for the tests.

May import: numpy, torch. Never render, guidance or train.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "normal_consistency",
    "normal_consistency_reference",
    "laplacian_smoothing",
    "laplacian_smoothing_reference",
    "smoothing_active",
    "smoothness_loss",
]


def _check_mesh(op: str, vertices: Any, faces: Any) -> None:
    if not isinstance(vertices, torch.Tensor) or not vertices.is_floating_point() or vertices.ndim != 2:
        raise TypeError(f"{op}(): vertices must be a float torch.Tensor [V,3], got {_describe(vertices)}")
    if vertices.shape[1] != 3:
        raise ValueError(f"{op}(): vertices must be [V,3], got {list(vertices.shape)}")
    if not isinstance(faces, torch.Tensor) or faces.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}(): faces must be an int32|int64 torch.Tensor [F,3], got {_describe(faces)}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{op}(): faces must be [F,3], got {list(faces.shape)}")
    if faces.device != vertices.device:
        raise ValueError(f"{op}(): faces must be on the vertices' device {vertices.device}, got {faces.device}")
    if faces.numel() and not bool(((faces >= 0) & (faces < vertices.shape[0])).all()):
        raise ValueError(f"{op}(): faces must index vertices in [0, {vertices.shape[0]}), got an index outside")


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} {list(x.shape)}"
    return type(x).__name__


def _zero(vertices: torch.Tensor) -> torch.Tensor:
    """A 0-d zero still attached to the vertices' graph (so ``backward`` works on a loss made only of it)."""
    return vertices[:0].sum()


def _face_edges(faces: torch.Tensor, num_vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per face and local edge k (opposite vertex k, pytorch3d's ``faces_packed_to_edges_packed`` columns
    e12, e20, e01): the sorted endpoints ``[F, 3, 2]`` (v0 < v1) and the edge key v0·V + v1 ``[F, 3]``."""
    f = faces.long()
    a, b = f[:, [1, 2, 0]], f[:, [2, 0, 1]]
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    return torch.stack((lo, hi), -1), lo * num_vertices + hi


def _edge_face_pairs(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (p, q) of entries (flat f·3 + k) sharing an edge, enumerated as pytorch3d does for an edge with
    entries e[0..n−1]: (e[i], e[j]) for i < n−1, 1 ≤ j < n, i ≠ j — every unordered pair once, plus the
    pairs among e[1..n−2] a second time (n ≥ 4). Entries of an edge are in (face, k) order: a stable sort,
    where pytorch3d's ``sort()`` is unstable, so for edges with ≥ 4 faces its duplicated pairs may differ."""
    sk, order = torch.sort(keys.reshape(-1), stable=True)
    new = torch.ones_like(sk, dtype=torch.bool)
    new[1:] = sk[1:] != sk[:-1]
    first = torch.nonzero(new).squeeze(1)  # [G] first sorted position of each edge
    n = torch.diff(first, append=first.new_tensor([sk.shape[0]]))  # faces per edge
    m = (n - 1) ** 2  # the (i, j) grid of each edge, i ∈ [0, n−2], j ∈ [1, n−1]
    g = torch.repeat_interleave(torch.arange(n.shape[0], device=keys.device), m)
    q = torch.arange(g.shape[0], device=keys.device) - (torch.cumsum(m, 0) - m)[g]
    w = n[g] - 1
    i, j = q // w, q % w + 1
    keep = i != j
    p0, p1 = first[g] + i, first[g] + j
    return order[p0[keep]], order[p1[keep]]


def normal_consistency(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """pytorch3d's ``mesh_normal_consistency`` for one mesh: mean over face pairs sharing an edge of
    1 − cos(n0, n1) (module docstring), vectorised; the loss the original adds during its smoothing window
    (``Rasterizer_MLP.forward(smooth=True)``, nerf/fine/rasterizer.py).

    Args:
        vertices: float [V, 3] (any device; differentiable).
        faces: int32|int64 [F, 3] on the same device.

    Returns:
        0-d tensor in the vertices' dtype; 0 when no edge has two faces (pytorch3d raises there). Boundary
        edges add nothing; an edge with n faces adds pytorch3d's (n−1)² − max(n−2, 0) pairs. Degenerate
        faces (zero normal) score 1 against every neighbour (``torch.cosine_similarity``'s eps).
    """
    _check_mesh("normal_consistency", vertices, faces)
    with torch.no_grad():
        ends, keys = _face_edges(faces, vertices.shape[0])
        pa, pb = _edge_face_pairs(keys)
    if pa.numel() == 0:
        return _zero(vertices)
    ends = ends.reshape(-1, 2)
    opp = faces.long().reshape(-1)  # vertex opposite each entry's edge
    used = torch.cat((pa, pb))
    i0, i1, ia = ends[:, 0][used], ends[:, 1][used], opp[used]
    # index_select: its backward (index_add) is much cheaper on the CPU than x[idx]'s (index_put)
    v0, v1, a = (vertices.index_select(0, i) for i in (i0, i1, ia))
    # A face with a repeated index has an exactly zero normal (an FMA cross product of parallel vectors
    # leaves ~1e-16 residue, which would make its cosine 1e-8 instead of 0 on some devices only).
    n = torch.linalg.cross(v1 - v0, a - v0) * ((ia != i0) & (ia != i1) & (i0 != i1)).unsqueeze(1)
    n0, n1 = n[: pa.shape[0]], -n[pa.shape[0] :]
    return (1 - torch.cosine_similarity(n0, n1, dim=1)).mean()


def normal_consistency_reference(vertices: Any, faces: Any) -> float:
    """Brute-force twin of :func:`normal_consistency` (python loops, numpy float64): pytorch3d's algorithm
    with a dict of edges in face order; cosine as ``torch.cosine_similarity`` (norms clamped to 1e-8)."""
    v = np.asarray(vertices, np.float64)
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for f in np.asarray(faces, np.int64).tolist():
        for k, (x, y) in enumerate(((f[1], f[2]), (f[2], f[0]), (f[0], f[1]))):
            groups.setdefault((min(x, y), max(x, y)), []).append((k, f[k]))
    losses = []
    for (i0, i1), e in sorted(groups.items()):
        normals = [np.cross(v[i1] - v[i0], v[opp] - v[i0]) for _, opp in e]
        for i in range(len(e) - 1):
            for j in range(1, len(e)):
                if i != j:
                    a, b = normals[i], -normals[j]
                    cos = (a / max(np.linalg.norm(a), 1e-8)) @ (b / max(np.linalg.norm(b), 1e-8))
                    losses.append(1.0 - cos)
    return float(np.mean(losses)) if losses else 0.0


def _unique_edges(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """pytorch3d's ``edges_packed``: the unique sorted edges [E, 2] of the faces (self-loops of degenerate
    faces included), without ``torch.unique`` (sort + first-occurrence mask)."""
    _, keys = _face_edges(faces, num_vertices)
    sk = torch.sort(keys.reshape(-1)).values
    new = torch.ones_like(sk, dtype=torch.bool)
    new[1:] = sk[1:] != sk[:-1]
    u = sk[new]
    return torch.stack((u // num_vertices, u % num_vertices), 1)


def laplacian_smoothing(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """pytorch3d's ``mesh_laplacian_smoothing(meshes, method="uniform")`` for one mesh, vectorised.

    L·V[i] = Σ_{j∈N(i)} v_j / deg(i) − v_i over the unique edges (a self-loop of a degenerate face counts
    twice, as in ``pytorch3d.ops.laplacian``), the loss the mean over all V vertices of ‖L·V[i]‖. As in
    pytorch3d an unreferenced vertex has L·V[i] = −v_i. Gradients flow through the vertices only (the
    weights depend on the topology alone). Commented out in the original (``Rasterizer_MLP.forward``,
    nerf/fine/rasterizer.py); offered for threestudio-style refinement.

    Args:
        vertices: float [V, 3]; faces: int32|int64 [F, 3], same device.

    Returns:
        0-d tensor in the vertices' dtype (0 for V = 0).
    """
    _check_mesh("laplacian_smoothing", vertices, faces)
    nv = vertices.shape[0]
    if nv == 0:
        return _zero(vertices)
    with torch.no_grad():
        e = _unique_edges(faces, nv)
        src, dst = torch.cat((e[:, 0], e[:, 1])), torch.cat((e[:, 1], e[:, 0]))
        deg = torch.bincount(src, minlength=nv).to(vertices.dtype)
        inv = torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
    lv = torch.zeros_like(vertices).index_add(0, src, vertices.index_select(0, dst) * inv[src, None]) - vertices
    return lv.norm(dim=1).mean()


def laplacian_smoothing_reference(vertices: Any, faces: Any) -> float:
    """Brute-force twin of :func:`laplacian_smoothing` (python loops over vertices and edges, numpy float64)."""
    v = np.asarray(vertices, np.float64)
    edges = set()
    for f in np.asarray(faces, np.int64).tolist():
        for x, y in ((f[1], f[2]), (f[2], f[0]), (f[0], f[1])):
            edges.add((min(x, y), max(x, y)))
    nbrs: list[list[int]] = [[] for _ in range(len(v))]
    for x, y in edges:
        nbrs[x].append(y)
        nbrs[y].append(x)
    total = 0.0
    for i in range(len(v)):
        mean = sum((v[j] for j in nbrs[i]), np.zeros(3)) / len(nbrs[i]) if nbrs[i] else np.zeros(3)
        total += float(np.linalg.norm(mean - v[i]))
    return total / len(v) if len(v) else 0.0


def smoothing_active(step: int, *, iters: int, smooth_iters: int, lambda_smooth: float) -> bool:
    """The original's smoothing window (``Trainer.train_step`` in nerf/fine/trainer.py):
    ``lambda_smooth > 0 and global_step > iters − smooth_iters`` with its 1-based ``global_step``; here
    ``step`` is 0-based (pgc_fast.train), so the window is step ≥ iters − smooth_iters: the last
    ``smooth_iters`` steps (all of them under -O3, where smooth_iters = iters; none under SDXL, where 0)."""
    return lambda_smooth > 0 and step + 1 > iters - smooth_iters


def smoothness_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    step: int,
    *,
    iters: int,
    smooth_iters: int,
    lambda_smooth: float,
    lambda_laplacian: float = 0.0,
) -> torch.Tensor | None:
    """The regulariser term exactly as the original adds it to a DMTet step's loss
    (``Trainer.train_step``, nerf/fine/trainer.py: ``loss += lambda_smooth · mesh_normal_consistency(mesh)``
    inside :func:`smoothing_active`'s window), on the mesh extracted this step. ``lambda_laplacian`` adds
    λ · :func:`laplacian_smoothing` in the same window (0 = the original, whose Laplacian term is commented
    out). Defaults of the original: lambda_smooth 2e6 (1e6 under -O3), smooth_iters 1000.

    Returns:
        0-d tensor, or None outside the window (add nothing, skip the computation).
    """
    if not smoothing_active(step, iters=iters, smooth_iters=smooth_iters, lambda_smooth=lambda_smooth):
        return None
    loss = lambda_smooth * normal_consistency(vertices, faces)
    if lambda_laplacian > 0:
        loss = loss + lambda_laplacian * laplacian_smoothing(vertices, faces)
    return loss
