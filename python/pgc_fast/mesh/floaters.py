"""Floater removal for meshes extracted from DMTet, on any device (issue 17).

The original (``Rasterizer_MLP.export_mesh`` and its test path in ``Rasterizer_MLP.forward``,
nerf/fine/rasterizer.py) clusters triangles connected through shared edges (open3d
``cluster_connected_triangles``) and removes every cluster with fewer triangles than the 99.9th percentile of
the cluster sizes (``np.percentile``, linear interpolation over one value per cluster): in practice the
largest component (or the few largest when there are thousands of clusters) survives.
:func:`remove_floaters` does that, vectorised in torch, and also offers threestudio's rule (components below a
fraction of the largest go, ``min_fraction``) and area instead of triangle count as the size.

:func:`face_components` labels the edge-connected components by hooking and pointer jumping (Shiloach &
Vishkin 1982, https://doi.org/10.1016/0196-6774(82)90008-6): O(log F) rounds of whole-array ops, no python
loop over faces. :func:`face_components_reference` is a union-find loop twin.

May import: numpy, torch.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

__all__ = ["face_components", "face_components_reference", "remove_floaters"]


def _check(op: str, vertices: torch.Tensor | None, faces: Any, num_vertices: int) -> None:
    if not isinstance(faces, torch.Tensor) or faces.dtype not in (torch.int32, torch.int64):
        got = f"{faces.dtype} {list(faces.shape)}" if isinstance(faces, torch.Tensor) else type(faces).__name__
        raise TypeError(f"{op}(): faces must be an int32|int64 torch.Tensor [F,3], got {got}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{op}(): faces must be [F,3], got {list(faces.shape)}")
    if vertices is not None and (
        not isinstance(vertices, torch.Tensor)
        or not vertices.is_floating_point()
        or vertices.ndim != 2
        or vertices.shape[1:] != (3,)
    ):
        got = (
            f"{vertices.dtype} {list(vertices.shape)}"
            if isinstance(vertices, torch.Tensor)
            else type(vertices).__name__
        )
        raise ValueError(f"{op}(): vertices must be a float torch.Tensor [V,3], got {got}")
    if vertices is not None and vertices.device != faces.device:
        raise ValueError(f"{op}(): faces must be on the vertices' device {vertices.device}, got {faces.device}")
    if faces.numel() and not bool(((faces >= 0) & (faces < num_vertices)).all()):
        raise ValueError(f"{op}(): faces must index vertices in [0, {num_vertices}), got an index outside")


def _edge_links(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of faces sharing an edge (each face linked to the next face of every edge, which is enough
    for connectivity): sort the 3F undirected edge keys, link neighbours with equal keys."""
    f = faces.long()
    a, b = f[:, [1, 2, 0]], f[:, [2, 0, 1]]
    nv = int(f.max()) + 1 if f.numel() else 1
    keys = (torch.minimum(a, b) * nv + torch.maximum(a, b)).reshape(-1)
    sk, order = torch.sort(keys)
    same = sk[1:] == sk[:-1]
    face_of = order // 3
    return face_of[:-1][same], face_of[1:][same]


def _components_by_size(root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Component labels from roots: 0 = the most faces, ties by smallest face index (the root)."""
    count = torch.bincount(root, minlength=root.shape[0])
    roots = torch.nonzero(count).squeeze(1)  # ascending root index
    rank = torch.argsort(-count[roots], stable=True)
    label_of_root = torch.empty_like(count)
    label_of_root[roots[rank]] = torch.arange(roots.shape[0], device=root.device)
    return label_of_root[root], count[roots[rank]]


def face_components(faces: torch.Tensor, num_vertices: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Components of faces connected through shared edges (open3d's ``cluster_connected_triangles``; an
    edge with more than two faces joins them all; faces sharing only a vertex stay apart).

    Args:
        faces: int32|int64 [F, 3] on any device.
        num_vertices: for the index check (default: ``faces.max() + 1``).

    Returns:
        ``(labels int64 [F], sizes int64 [C])`` on the faces' device: component id per face, numbered by
        decreasing face count (0 = the largest; ties by the smallest face index), and face count per component.
    """
    nv = num_vertices if num_vertices is not None else (int(faces.max()) + 1 if faces.numel() else 0)
    _check("face_components", None, faces, nv)
    nf = faces.shape[0]
    parent = torch.arange(nf, device=faces.device)
    if nf == 0:
        return parent, parent.clone()
    u, v = _edge_links(faces)
    while True:
        while True:  # pointer jumping: every face points at its tree's root
            nxt = parent[parent]
            if torch.equal(nxt, parent):
                break
            parent = nxt
        ru, rv = parent[u], parent[v]
        cross = ru != rv
        if not bool(cross.any()):
            break
        # hook: every root linked to a smaller root points at the smallest of them; each root graph at
        # least halves per round (a local minimum is hooked onto by all its neighbours)
        lo, hi = torch.minimum(ru, rv)[cross], torch.maximum(ru, rv)[cross]
        parent = parent.scatter_reduce(0, hi, lo, reduce="amin")
    return _components_by_size(parent)


def face_components_reference(faces: Any) -> tuple[np.ndarray, np.ndarray]:
    """Loop twin of :func:`face_components` (union-find over an edge → faces dict, numpy); same numbering."""
    f = np.asarray(faces, np.int64)
    parent = list(range(len(f)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first: dict[tuple[int, int], int] = {}
    for i, (a, b, c) in enumerate(f.tolist()):
        for x, y in ((b, c), (c, a), (a, b)):
            j = first.setdefault((min(x, y), max(x, y)), i)
            ri, rj = find(i), find(j)
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(i) for i in range(len(f))], np.int64)
    uniq, inv, count = np.unique(roots, return_inverse=True, return_counts=True)
    rank = np.argsort(-count, kind="stable")
    label = np.empty(len(uniq), np.int64)
    label[rank] = np.arange(len(uniq))
    return label[inv], count[rank].astype(np.int64)


def _face_areas(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = vertices.detach().double()[faces.long()]
    return 0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1)


def remove_floaters(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    *,
    percentile: float = 99.9,
    min_fraction: float = 0.0,
    size: Literal["faces", "area"] = "faces",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Removes small edge-connected components (the original's export rule by default; module docstring).

    A component survives when its size ≥ max(P, ``min_fraction`` · largest), P the ``percentile``-th
    percentile (linear interpolation, as ``np.percentile``) of the component sizes. ``percentile=0``,
    ``min_fraction=0.01`` is threestudio's rule (``isosurface_remove_outliers``). Vertices no kept face uses
    are dropped (the original kept them in the file).

    Args:
        vertices: float [V, 3]; faces: int32|int64 [F, 3], same device (any).
        percentile: in [0, 100]; 99.9 as the original (``Rasterizer_MLP.threshold``).
        min_fraction: in [0, 1].
        size: ``"faces"`` (triangle count, the original) or ``"area"`` (surface area).

    Returns:
        ``(vertices [V', 3], faces int64 [F', 3], vertex_ids int64 [V'])`` on the input device: the kept mesh
        (faces in their original order, re-indexed) and, per kept vertex, its index in the input (to carry
        per-vertex attributes along). Differentiable w.r.t. ``vertices`` (a gather).
    """
    op = "remove_floaters"
    _check(op, vertices, faces, vertices.shape[0] if isinstance(vertices, torch.Tensor) else 0)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"{op}(): percentile must be in [0, 100], got {percentile!r}")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"{op}(): min_fraction must be in [0, 1], got {min_fraction!r}")
    if size not in ("faces", "area"):
        raise ValueError(f"{op}(): size must be 'faces' or 'area', got {size!r}")
    with torch.no_grad():
        labels, counts = face_components(faces, vertices.shape[0])
        sizes = counts.double()
        if size == "area" and faces.shape[0]:
            sizes = torch.zeros_like(sizes).index_add_(0, labels, _face_areas(vertices, faces))
        keep = _kept_faces(labels, sizes, percentile, min_fraction)
        kept = faces.long()[keep]
        used = torch.zeros(vertices.shape[0], dtype=torch.bool, device=faces.device)
        used[kept.reshape(-1)] = True
        new_id = torch.cumsum(used, 0) - 1
        vertex_ids = torch.nonzero(used).squeeze(1)
    return vertices[vertex_ids], new_id[kept], vertex_ids


def _kept_faces(labels: torch.Tensor, sizes: torch.Tensor, percentile: float, min_fraction: float) -> torch.Tensor:
    if sizes.numel() == 0:
        return torch.zeros_like(labels, dtype=torch.bool)
    threshold = max(torch.quantile(sizes, percentile / 100.0).item(), min_fraction * sizes.max().item())
    return sizes[labels] >= threshold
