"""Acceptance meshes for UV unwrapping (benches/bench_unwrap.py, tests/mesh/test_unwrap.py).

All are generated here with numpy (and trimesh for loading/subdividing the seed panda), so the corpus
needs no downloads: a UV sphere, a torus, a noisy icosphere, a marching-tetrahedra isosurface on a
Kuhn-split cube grid (the kind of mesh DMTet produces: many slivers), and the seed panda with optional
midpoint subdivisions (x4 faces each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PANDA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "panda_spear_shield.obj"


def panda_path() -> Path:
    """The seed panda: /work/shared/data or, in a CI clone, ../shared/data beside the repository."""
    for p in (Path("/work/shared/data/panda_spear_shield.obj"), PANDA.resolve()):
        if p.exists():
            return p
    raise FileNotFoundError("panda_spear_shield.obj not found in /work/shared/data or ../shared/data")


def uv_sphere(rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude/longitude sphere of radius 1: float32 [V,3], int64 [F,3], outward winding."""
    th = np.pi * np.arange(1, rings) / rings
    ph = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack(
        [np.sin(th)[:, None] * np.cos(ph), np.sin(th)[:, None] * np.sin(ph), np.cos(th)[:, None] + 0 * ph], -1
    ).reshape(-1, 3)
    v = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]).astype(np.float32)
    south = len(v) - 1
    idx = lambda i, j: 1 + (i - 1) * segments + (j % segments)
    j = np.arange(segments)
    f = [np.stack([np.zeros_like(j), idx(1, j), idx(1, j + 1)], 1)]
    f.append(np.stack([np.full_like(j, south), idx(rings - 1, j + 1), idx(rings - 1, j)], 1))
    for i in range(1, rings - 1):
        a, b, c, d = idx(i, j), idx(i + 1, j), idx(i + 1, j + 1), idx(i, j + 1)
        f += [np.stack([a, b, c], 1), np.stack([a, c, d], 1)]
    return v, np.concatenate(f).astype(np.int64)


def torus(n_major: int, n_minor: int, r_major: float = 1.0, r_minor: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """Closed torus (genus 1): float32 [n_major·n_minor, 3], int64 [2·n_major·n_minor, 3]."""
    u = 2 * np.pi * np.arange(n_major) / n_major
    w = 2 * np.pi * np.arange(n_minor) / n_minor
    uu, ww = np.meshgrid(u, w, indexing="ij")
    rr = r_major + r_minor * np.cos(ww)
    v = np.stack([rr * np.cos(uu), rr * np.sin(uu), r_minor * np.sin(ww)], -1).reshape(-1, 3).astype(np.float32)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a = i * n_minor + j
    b = ((i + 1) % n_major) * n_minor + j
    c = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
    d = i * n_minor + (j + 1) % n_minor
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return v, f.astype(np.int64)


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere by repeated midpoint subdivision: 20·4^s faces."""
    t = (1 + 5**0.5) / 2
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], np.float64)  # fmt: skip
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], np.int64)  # fmt: skip
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        v, f = subdivide(v, f)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32), f


def noisy_sphere(subdivisions: int, amplitude: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere with seeded radial noise (every vertex moved by up to ±amplitude along its normal)."""
    v, f = icosphere(subdivisions)
    r = 1 + amplitude * np.random.default_rng(seed).uniform(-1, 1, len(v))
    return (v * r[:, None]).astype(np.float32), f


def subdivide(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One 1-to-4 midpoint subdivision (shared edge midpoints), keeping winding."""
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = np.sort(e, axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    mid = (v[uniq[:, 0]] + v[uniq[:, 1]]) / 2
    m = inv.reshape(3, -1).T + len(v)  # midpoint ids of edges 01, 12, 20
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    m01, m12, m20 = m[:, 0], m[:, 1], m[:, 2]
    nf = np.concatenate([np.stack(x, 1) for x in ([a, m01, m20], [b, m12, m01], [c, m20, m12], [m01, m12, m20])])
    return np.concatenate([v, mid]).astype(v.dtype), nf.astype(np.int64)


# Marching-tetrahedra tables (kaolin / nvdiffrec; kaolin / nvdiffrec).
_TET_EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
_NUM_TRIS = np.array([0, 1, 1, 2, 1, 2, 2, 1, 1, 2, 2, 1, 2, 1, 1, 0])
_TRI_TABLE = np.array(
    [[-1] * 6, [1, 0, 2, -1, -1, -1], [4, 0, 3, -1, -1, -1], [1, 4, 2, 1, 3, 4], [3, 1, 5, -1, -1, -1],
     [2, 3, 0, 2, 5, 3], [1, 4, 0, 1, 5, 4], [4, 2, 5, -1, -1, -1], [4, 5, 2, -1, -1, -1], [4, 1, 0, 4, 5, 1],
     [3, 2, 0, 3, 5, 2], [1, 3, 5, -1, -1, -1], [4, 1, 2, 4, 3, 1], [3, 0, 4, -1, -1, -1],
     [2, 0, 1, -1, -1, -1], [-1] * 6])  # fmt: skip


def kuhn_tet_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cube [-1, 1]³ split into n³ cells of 6 positively oriented Kuhn tetrahedra each."""
    ax = np.linspace(-1, 1, n + 1)
    pos = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    i, j, k = (x.ravel() for x in np.meshgrid(*[np.arange(n)] * 3, indexing="ij"))
    vid = lambda di, dj, dk: ((i + di) * (n + 1) + (j + dj)) * (n + 1) + (k + dk)
    tets = []
    for perm in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
        step = np.zeros(3, int)
        path = [vid(0, 0, 0)]
        for a in perm[:2]:
            step[a] = 1
            path.append(vid(*step))
        path.append(vid(1, 1, 1))
        tets.append(np.stack(path, 1))
    t = np.concatenate(tets)
    p = pos[t]
    vol = np.einsum("ij,ij->i", np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), p[:, 3] - p[:, 0])
    t[vol < 0] = t[vol < 0][:, [1, 0, 2, 3]]
    return pos, t


def marching_tets(pos: np.ndarray, tets: np.ndarray, sdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of `sdf` (negative inside) as kaolin's marching tetrahedra: float32 [V,3], int64 [F,3]."""
    occ = sdf > 0
    occ4 = occ[tets]
    valid = (occ4.sum(1) > 0) & (occ4.sum(1) < 4)
    vt = tets[valid]
    edges = np.sort(vt[:, _TET_EDGES].reshape(-1, 2), axis=1)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    cross = occ[uniq].sum(1) == 1
    mapping = np.full(len(uniq), -1)
    mapping[cross] = np.arange(cross.sum())
    idx = mapping[inv.ravel()].reshape(-1, 6)
    iv = uniq[cross]
    sa, sb = sdf[iv[:, 0]][:, None], sdf[iv[:, 1]][:, None]
    verts = (pos[iv[:, 0]] * -sb + pos[iv[:, 1]] * sa) / (sa - sb)
    case = (occ4[valid] * np.array([1, 2, 4, 8])).sum(1)
    nt = _NUM_TRIS[case]
    one = np.take_along_axis(idx[nt == 1], _TRI_TABLE[case[nt == 1]][:, :3], 1)
    two = np.take_along_axis(idx[nt == 2], _TRI_TABLE[case[nt == 2]][:, :6], 1).reshape(-1, 3)
    return verts.astype(np.float32), np.concatenate([one, two]).astype(np.int64)


def marching_tets_blob(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Isosurface of a sphere smoothly unioned with a torus and cut by a gyroid ripple, on an n³ Kuhn grid."""
    pos, tets = kuhn_tet_grid(n)
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    sphere = np.sqrt(x**2 + y**2 + z**2) - 0.55
    tor = np.sqrt((np.sqrt(x**2 + z**2) - 0.6) ** 2 + y**2) - 0.18
    k = 0.1
    h = np.clip(0.5 + 0.5 * (tor - sphere) / k, 0, 1)
    sdf = tor * (1 - h) + sphere * h - k * h * (1 - h)
    sdf = sdf + 0.03 * np.sin(9 * x) * np.cos(9 * y) * np.sin(9 * z)
    # Nudge exact zeros so every crossing edge has a strictly positive and a non-positive end.
    sdf = np.where(sdf == 0, 1e-9, sdf)
    return marching_tets(pos, tets, sdf)


def load_panda(subdivisions: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The seed panda (62,134 faces) with `subdivisions` midpoint subdivisions."""
    import trimesh

    m = trimesh.load(panda_path(), force="mesh", process=False)
    v, f = np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)
    for _ in range(subdivisions):
        v, f = subdivide(v, f)
    return v.astype(np.float32), f
