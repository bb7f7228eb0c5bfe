"""Tetrahedral grids and marching tetrahedra for DMTet (Shen et al. 2021, arXiv 2111.04276).

* :func:`tet_grid` generates a regular, positively oriented Kuhn grid over [−0.5, 0.5]³ (no precomputed
  file); :func:`tet_edges` precomputes its unique edges and the tet→edge table once.
* :func:`marching_tets` (Rust, CPU) and :func:`marching_tets_torch` (torch, any device, differentiable
  w.r.t. vertices and sdf) reproduce Kaolin's ``marching_tetrahedra`` exactly (same vertex order, same
  faces); :func:`marching_tets_reference` is a numpy transcription of Kaolin's algorithm
  (kaolin/ops/conversions/tetmesh.py) used as the test oracle and benchmark baseline, and
  :func:`marching_tets_kaolin_torch` the same algorithm in torch (``torch.unique`` per call), the
  on-device baseline.

Convention (Kaolin's): occupancy is ``sdf > 0``; with positively oriented tets, an SDF that is negative
inside gives outward-facing (counter-clockwise) triangles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pgc_fast import _rust_mesh
from pgc_fast.mesh.model import _as_array
from pgc_fast.mesh.raster import _is_torch

__all__ = [
    "BASE_TET_EDGES",
    "NUM_TRIANGLES_TABLE",
    "TRIANGLE_TABLE",
    "tet_grid",
    "tet_edges",
    "marching_tets",
    "marching_tets_torch",
    "marching_tets_kaolin_torch",
    "marching_tets_reference",
]

BASE_TET_EDGES = np.array([0, 1, 0, 2, 0, 3, 1, 2, 1, 3, 2, 3], dtype=np.int64)
NUM_TRIANGLES_TABLE = np.array([0, 1, 1, 2, 1, 2, 2, 1, 1, 2, 2, 1, 2, 1, 1, 0], dtype=np.int64)
TRIANGLE_TABLE = np.array(
    [
        [-1, -1, -1, -1, -1, -1],
        [1, 0, 2, -1, -1, -1],
        [4, 0, 3, -1, -1, -1],
        [1, 4, 2, 1, 3, 4],
        [3, 1, 5, -1, -1, -1],
        [2, 3, 0, 2, 5, 3],
        [1, 4, 0, 1, 5, 4],
        [4, 2, 5, -1, -1, -1],
        [4, 5, 2, -1, -1, -1],
        [4, 1, 0, 4, 5, 1],
        [3, 2, 0, 3, 5, 2],
        [1, 3, 5, -1, -1, -1],
        [4, 1, 2, 4, 3, 1],
        [3, 0, 4, -1, -1, -1],
        [2, 0, 1, -1, -1, -1],
        [-1, -1, -1, -1, -1, -1],
    ],
    dtype=np.int64,
)


def tet_grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Regular tetrahedral grid covering [−0.5, 0.5]³.

    ``resolution`` follows the original's grid names (quartet files ``32_tets``, ``64_tets``, ...): the grid
    has ``n = resolution // 2`` cubes per axis, each split into 6 Kuhn tets around its main diagonal, which
    matches the originals' sizes (32 → 4,913 vertices / 24,576 tets vs 5,034 / 24,444; 64 → 35,937 /
    196,608 vs 36,562 / 192,492; 256 → 2,146,689 / 12,582,912). The topology differs from the BCC grids,
    so results are not bit-comparable with the papers' grids.

    Returns:
        ``(vertices float32 [(n+1)³, 3], tets int64 [6n³, 4])``; vertex (i, j, k) has index
        (i·(n+1) + j)·(n+1) + k; every tet has positive signed volume (p1−p0)·((p2−p0)×(p3−p0)).
    """
    if not isinstance(resolution, (int, np.integer)) or not 2 <= resolution <= 513:
        raise ValueError(f"tet_grid(): resolution must be an int in [2, 513], got {resolution!r}")
    return _rust_mesh.kuhn_grid(int(resolution) // 2)


def tet_edges(tets: Any, num_vertices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Static topology for :func:`marching_tets_torch`, computed once per grid.

    Args:
        tets: int64 [T, 4]; num_vertices: vertex count (default ``tets.max() + 1``).

    Returns:
        ``(edges int64 [E, 2], tet_edges int64 [T, 6])``: the unique edges (a < b) in lexicographic order and,
        per tet, the edge id of its local edges (v0v1, v0v2, v0v3, v1v2, v1v3, v2v3).
    """
    t = _as_array(tets, np.int64, (None, 4), "tet_edges", "tets")
    if num_vertices is None:
        num_vertices = int(t.max()) + 1 if t.size else 0
    return _rust_mesh.tet_edges(t, int(num_vertices))


def marching_tets(vertices: Any, sdf: Any, tets: Any, return_tet_idx: bool = False) -> tuple[Any, ...]:
    """Marching tetrahedra on the CPU (Rust), identical to Kaolin's ``marching_tetrahedra`` (unbatched).

    Args:
        vertices: float32 [N, 3]; sdf: float32 [N] (occupied where ``sdf > 0``); tets: int64 [T, 4].
            numpy arrays or torch tensors (copied to the host; not differentiable: use
            :func:`marching_tets_torch` for gradients).
        return_tet_idx: also return the source tet of each face.

    Returns:
        ``(vertices float32 [K, 3], faces int64 [F, 3])`` (+ ``tet_idx int64 [F]``), torch tensors on the
        input's device if ``vertices`` is a tensor, else numpy.
    """
    op = "marching_tets"
    torch_in = _is_torch(vertices)
    device = vertices.device if torch_in else None
    v = _as_array(vertices, np.float32, (None, 3), op, "vertices")
    s = _as_array(sdf, np.float32, (v.shape[0],), op, "sdf")
    t = _as_array(tets, np.int64, (None, 4), op, "tets")
    verts, faces, _edges, tet_idx = _rust_mesh.marching_tets(v, s, t)
    out: tuple[Any, ...] = (verts, faces, tet_idx) if return_tet_idx else (verts, faces)
    if torch_in:
        import torch

        out = tuple(torch.from_numpy(x).to(device) for x in out)
    return out


_TORCH_TABLES: dict[Any, tuple[Any, Any, Any]] = {}


def _tables(device: Any) -> tuple[Any, Any, Any]:
    """(num_triangles [16], triangle table [16, 6], case weights [4] uint8) on ``device``, built once."""
    import torch

    if device not in _TORCH_TABLES:
        _TORCH_TABLES[device] = (
            torch.as_tensor(NUM_TRIANGLES_TABLE, device=device),
            torch.as_tensor(TRIANGLE_TABLE, device=device),
            torch.tensor([1, 2, 4, 8], dtype=torch.uint8, device=device),
        )
    return _TORCH_TABLES[device]


def _check_torch_inputs(op: str, vertices: Any, sdf: Any, tets: Any, edges: Any, tet_edges: Any) -> None:
    import torch

    for name, x in (("vertices", vertices), ("sdf", sdf), ("tets", tets), ("edges", edges), ("tet_edges", tet_edges)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{op}(): {name} must be a torch.Tensor, got {type(x).__name__}")
    if vertices.ndim != 2 or vertices.shape[1] != 3 or sdf.shape != (vertices.shape[0],):
        raise ValueError(
            f"{op}(): vertices must be [N,3] and sdf [N], got {list(vertices.shape)} and {list(sdf.shape)}"
        )
    if tets.ndim != 2 or tets.shape[1] != 4 or tet_edges.shape != (tets.shape[0], 6) or edges.ndim != 2:
        raise ValueError(
            f"{op}(): tets must be [T,4], tet_edges [T,6], edges [E,2], got {list(tets.shape)}, "
            f"{list(tet_edges.shape)}, {list(edges.shape)}"
        )
    if edges.shape[1] != 2:
        raise ValueError(f"{op}(): edges must be [E,2], got {list(edges.shape)}")
    devices = {x.device for x in (vertices, sdf, tets, edges, tet_edges)}
    if len(devices) != 1:
        raise ValueError(f"{op}(): all tensors must be on one device, got {sorted(map(str, devices))}")


def _compact(mask: Any, count: int) -> Any:
    """Ascending indices of the True entries of ``mask`` [M] (``count`` of them, known): a scatter through
    the running count (cumsum), so no host sync (``torch.nonzero`` syncs to size its output)."""
    import torch

    pos = torch.where(mask, torch.cumsum(mask, 0) - 1, count)  # rejects go to a spare slot at ``count``
    out = torch.empty(count + 1, dtype=torch.long, device=mask.device)
    out.scatter_(0, pos, torch.arange(mask.shape[0], device=mask.device))
    return out[:count]


def _interpolate_crossings(vertices: Any, sdf: Any, interp_v: Any) -> Any:
    """Zero crossing on each edge (a, b): p_a·(−s_b)/(s_a − s_b) + p_b·s_a/(s_a − s_b), in Kaolin's exact
    operation order (bit-identical float32 results); the only differentiable part of marching tets."""
    import torch

    p = vertices[interp_v.reshape(-1)].reshape(-1, 2, 3)
    s = sdf[interp_v.reshape(-1)].reshape(-1, 2, 1)
    s = torch.cat((s[:, :1], -s[:, 1:]), dim=1)
    den = s.sum(1, keepdim=True)
    w = torch.flip(s, [1]) / den
    return (p * w).sum(1)


def _tet_faces(cid: Any, tet_edges: Any, case: Any, tri_table: Any, tet_ids: Any, width: int) -> Any:
    """Faces [len(tet_ids)·width/3, 3] of the tets ``tet_ids``: table row of each tet's case gathered from
    the output vertex ids of its six edges (Kaolin's ``torch.gather(idx_map, 1, triangle_table[...])``)."""
    import torch

    idx = cid.index_select(0, tet_edges.index_select(0, tet_ids).reshape(-1)).view(-1, 6)
    rows = tri_table.index_select(0, case.index_select(0, tet_ids))[:, :width]
    return torch.gather(idx, 1, rows).reshape(-1, 3)


def marching_tets_torch(
    vertices: Any, sdf: Any, tets: Any, edges: Any, tet_edges: Any, return_tet_idx: bool = False
) -> tuple[Any, ...]:
    """Differentiable marching tetrahedra in torch on any device; output identical to Kaolin's.

    Per call: occupancy, crossing mask over the precomputed unique edges (:func:`tet_edges`, so no
    ``torch.unique``), cumsum compaction, table gathers, and the zero-crossing interpolation
    ``p = p_a·(−s_b)/(s_a − s_b) + p_b·s_a/(s_a − s_b)`` (the only differentiable op; gradients flow to
    ``vertices`` and ``sdf``). One host sync per call (the three output sizes, read together).

    Args:
        vertices: float [N, 3] (e.g. the deformed grid); sdf: float [N]; tets: int64 [T, 4]; edges,
            tet_edges: from :func:`tet_edges` (int64 [E, 2], [T, 6]), all on one device.
        return_tet_idx: also return the source tet id of each face.

    Returns:
        ``(vertices [K, 3], faces int64 [F, 3])`` (+ ``tet_idx int64 [F]``): Kaolin's vertex order (crossing
        edges in lexicographic order) and face order (one-triangle tets, then two-triangle tets, each in tet
        order).
    """
    import torch

    _check_torch_inputs("marching_tets_torch", vertices, sdf, tets, edges, tet_edges)
    num_tri, tri_table, weights = _tables(vertices.device)
    with torch.no_grad():
        # index_select rather than x[idx]: same values, several times faster on the CPU (aten::index).
        occ = (sdf > 0).to(torch.uint8)  # [N]
        occ_e = occ.index_select(0, edges.reshape(-1)).view(-1, 2)  # [E, 2]
        crossing = occ_e[:, 0] != occ_e[:, 1]  # [E]
        cid = torch.cumsum(crossing, 0) - 1  # output vertex id of each crossing edge
        o = occ.index_select(0, tets.reshape(-1)).view(-1, 4)  # [T, 4]
        case = (o[:, 0] | (o[:, 1] << 1) | (o[:, 2] << 2) | (o[:, 3] << 3)).to(torch.int32)  # [T] case 0..15
        nt = num_tri.index_select(0, case)
        one, two = nt == 1, nt == 2
        k, n1, n2 = torch.stack((crossing.sum(), one.sum(), two.sum())).tolist()  # the one host sync
        interp_v = edges.index_select(0, _compact(crossing, k))  # [K, 2], lexicographic == Kaolin's interp_v
        t1, t2 = _compact(one, n1), _compact(two, n2)  # tets with one / two triangles, in tet order
        faces = torch.cat(
            (_tet_faces(cid, tet_edges, case, tri_table, t1, 3), _tet_faces(cid, tet_edges, case, tri_table, t2, 6))
        )
    verts = _interpolate_crossings(vertices, sdf, interp_v)
    if return_tet_idx:
        return verts, faces, torch.cat((t1, t2.repeat_interleave(2)))
    return verts, faces


def marching_tets_kaolin_torch(vertices: Any, sdf: Any, tets: Any, return_tet_idx: bool = False) -> tuple[Any, ...]:
    """Torch transcription of Kaolin's ``_unbatched_marching_tetrahedra`` (kaolin/ops/conversions/tetmesh.py):
    edges of the valid tets deduplicated by ``torch.unique(dim=0)`` on every call. The on-device baseline
    twin of :func:`marching_tets_torch` (benches/bench_marching_tets.py); same outputs, same gradients."""
    import torch

    num_tri, tri_table, weights = _tables(vertices.device)
    with torch.no_grad():
        occ_n = sdf > 0
        occ_fx4 = occ_n[tets.reshape(-1)].reshape(-1, 4)
        occ_sum = occ_fx4.sum(-1)
        valid = (occ_sum > 0) & (occ_sum < 4)
        all_edges = tets[valid][:, torch.as_tensor(BASE_TET_EDGES, device=tets.device)].reshape(-1, 2)
        all_edges = torch.sort(all_edges, dim=1).values
        unique_edges, idx_map = torch.unique(all_edges, dim=0, return_inverse=True)
        mask_edges = occ_n[unique_edges.reshape(-1)].reshape(-1, 2).sum(-1) == 1
        mapping = torch.full((unique_edges.shape[0],), -1, dtype=torch.long, device=tets.device)
        mapping[mask_edges] = torch.arange(int(mask_edges.sum()), device=tets.device)
        idx_map = mapping[idx_map].reshape(-1, 6)
        interp_v = unique_edges[mask_edges]
        tetindex = (occ_fx4[valid].to(torch.uint8) * weights).sum(-1)
        nt = num_tri[tetindex]
        faces = torch.cat(
            (
                torch.gather(idx_map[nt == 1], 1, tri_table[tetindex[nt == 1]][:, :3]).reshape(-1, 3),
                torch.gather(idx_map[nt == 2], 1, tri_table[tetindex[nt == 2]][:, :6]).reshape(-1, 3),
            ),
            dim=0,
        )
    verts = _interpolate_crossings(vertices, sdf, interp_v)
    if return_tet_idx:
        tid = torch.arange(tets.shape[0], device=tets.device)[valid]
        return verts, faces, torch.cat((tid[nt == 1], tid[nt == 2].repeat_interleave(2)))
    return verts, faces


def marching_tets_reference(vertices: np.ndarray, sdf: np.ndarray, tets: np.ndarray, return_tet_idx: bool = False):
    """Numpy transcription of Kaolin's ``_unbatched_marching_tetrahedra`` (valid-tet edges, ``np.unique``
    per call). Same arguments/returns as :func:`marching_tets` (numpy only). Test oracle and baseline."""
    vertices = np.asarray(vertices, np.float32)
    sdf = np.asarray(sdf, np.float32)
    tets = np.asarray(tets, np.int64)
    occ_n = sdf > 0
    occ_fx4 = occ_n[tets]
    occ_sum = occ_fx4.sum(-1)
    valid = (occ_sum > 0) & (occ_sum < 4)
    all_edges = tets[valid][:, BASE_TET_EDGES].reshape(-1, 2)
    all_edges = np.sort(all_edges, axis=1)
    if all_edges.shape[0]:
        unique_edges, idx_map = np.unique(all_edges, axis=0, return_inverse=True)
    else:
        unique_edges, idx_map = np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    unique_edges = unique_edges.astype(np.int64)
    mask_edges = occ_n[unique_edges].sum(-1) == 1
    mapping = -np.ones(unique_edges.shape[0], np.int64)
    mapping[mask_edges] = np.arange(mask_edges.sum())
    idx_map = mapping[idx_map.reshape(-1)]
    interp_v = unique_edges[mask_edges]
    p = vertices[interp_v.reshape(-1)].reshape(-1, 2, 3)
    s = sdf[interp_v.reshape(-1)].reshape(-1, 2, 1).copy()
    s[:, -1] *= -1
    den = s.sum(1, keepdims=True)
    w = np.flip(s, 1) / den
    verts = (p * w).sum(1).astype(np.float32)
    idx_map = idx_map.reshape(-1, 6)
    tetindex = (occ_fx4[valid] * np.array([1, 2, 4, 8])).sum(-1)
    nt = NUM_TRIANGLES_TABLE[tetindex]
    faces = np.concatenate(
        (
            np.take_along_axis(idx_map[nt == 1], TRIANGLE_TABLE[tetindex[nt == 1]][:, :3], 1).reshape(-1, 3),
            np.take_along_axis(idx_map[nt == 2], TRIANGLE_TABLE[tetindex[nt == 2]][:, :6], 1).reshape(-1, 3),
        ),
        0,
    ).astype(np.int64)
    if return_tet_idx:
        tid = np.arange(tets.shape[0])[valid]
        return verts, faces, np.concatenate((tid[nt == 1], np.repeat(tid[nt == 2], 2)))
    return verts, faces
