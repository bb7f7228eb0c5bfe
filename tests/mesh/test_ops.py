"""Mesh operations: weld, degenerate/unreferenced removal, angle-weighted normals, components, normalise."""
from __future__ import annotations

import numpy as np
import pytest

from pgc_fast.mesh import (
    Mesh,
    connected_components,
    normalize,
    remove_degenerate,
    remove_small_components,
    remove_unreferenced,
    vertex_normals,
    weld,
)


def soup_cube() -> Mesh:
    """Cube as a triangle soup (every face has its own 3 vertices)."""
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return Mesh(v[f.reshape(-1)] + np.float32(1e-7), np.arange(36).reshape(12, 3))


def angle_weighted_reference(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    n = np.zeros_like(v)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    for k in range(3):
        a, b, c = v[f[:, k]], v[f[:, (k + 1) % 3]], v[f[:, (k + 2) % 3]]
        e1, e2 = b - a, c - a
        cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
        np.add.at(n, f[:, k], fn * np.arccos(np.clip(cos, -1, 1))[:, None])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_weld_then_clean_gives_a_closed_cube():
    m = weld(soup_cube(), eps=1e-5)
    assert m.num_vertices == 8 and m.num_faces == 12
    edges = np.sort(np.concatenate([m.faces[:, [0, 1]], m.faces[:, [1, 2]], m.faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # watertight
    n = vertex_normals(m)
    c = m.vertices - 0.5
    np.testing.assert_allclose(n, c / np.linalg.norm(c, axis=1, keepdims=True), atol=1e-5)


def test_weld_keeps_far_vertices_and_attributes():
    m = soup_cube()
    m.colors = np.random.default_rng(0).random((36, 3)).astype(np.float32)
    w = weld(m, eps=0.0)  # exact duplicates only; our +1e-7 offset is uniform so all still merge
    assert w.num_vertices == 8
    assert w.colors.shape == (8, 3)
    first = {tuple(v): i for i, v in reversed(list(enumerate(m.vertices)))}
    for i, v in enumerate(w.vertices):
        np.testing.assert_array_equal(w.colors[i], m.colors[first[tuple(v)]])
    with pytest.raises(ValueError, match=r"weld\(\): eps"):
        weld(m, eps=-1)


def test_remove_degenerate_and_unreferenced_keep_uvs_in_sync():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [9, 9, 9]], np.float32)
    f = np.array([[0, 1, 2], [0, 1, 3], [1, 1, 2], [2, 1, 0]])  # [0,1,3] collinear, [1,1,2] repeated
    uvs = np.random.default_rng(0).random((12, 2)).astype(np.float32)
    uvf = np.arange(12).reshape(4, 3)
    m = Mesh(v, f, uvs, uvf, colors=np.eye(5, 3, dtype=np.float32))
    d = remove_degenerate(m)
    np.testing.assert_array_equal(d.faces, [[0, 1, 2], [2, 1, 0]])
    np.testing.assert_array_equal(d.uv_faces, [[0, 1, 2], [9, 10, 11]])
    u = remove_unreferenced(d)
    assert u.num_vertices == 3 and u.uvs.shape == (6, 2)
    np.testing.assert_array_equal(u.uvs[u.uv_faces], uvs[d.uv_faces])
    np.testing.assert_array_equal(u.vertices[u.faces], v[d.faces])
    np.testing.assert_array_equal(u.colors, np.eye(5, 3)[:3])


def test_vertex_normals_match_numpy_reference():
    trimesh = pytest.importorskip("trimesh")
    s = trimesh.creation.icosphere(subdivisions=2)
    v = np.asarray(s.vertices * [1.0, 0.5, 2.0], np.float32)
    f = np.asarray(s.faces)
    np.testing.assert_allclose(vertex_normals(v, f), angle_weighted_reference(v, f), atol=1e-5)


def test_components_and_floater_removal():
    trimesh = pytest.importorskip("trimesh")
    big = trimesh.creation.icosphere(subdivisions=2)  # 320 faces
    small = trimesh.creation.icosphere(subdivisions=0)  # 20 faces
    v = np.concatenate([small.vertices + 3, big.vertices]).astype(np.float32)
    f = np.concatenate([small.faces, big.faces + len(small.vertices)])
    m = Mesh(v, f)
    labels, sizes = connected_components(m)
    np.testing.assert_array_equal(sizes, [320, 20])
    assert (labels[:20] == 1).all() and (labels[20:] == 0).all()
    r = remove_small_components(m, min_fraction=0.1)
    assert r.num_faces == 320 and r.num_vertices == len(big.vertices)
    assert remove_small_components(m, min_fraction=0.01).num_faces == 340


def test_normalize_round_trip():
    rng = np.random.default_rng(0)
    v = (rng.random((50, 3)) * [10, 2, 4] + [100, -5, 3]).astype(np.float32)
    m = Mesh(v, np.array([[0, 1, 2]]))
    n, t = normalize(m)
    assert np.abs(n.vertices).max() == pytest.approx(0.8, rel=1e-6)
    np.testing.assert_allclose((n.vertices.min(0) + n.vertices.max(0)) / 2, 0, atol=1e-6)
    np.testing.assert_allclose(t.invert(n.vertices), v, rtol=1e-6, atol=1e-5)
    h = np.c_[v.astype(np.float64), np.ones(50)] @ t.matrix.T
    np.testing.assert_allclose(h[:, :3], n.vertices, atol=1e-6)
