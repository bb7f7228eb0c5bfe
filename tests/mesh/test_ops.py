"""Mesh operations: weld, degenerate/unreferenced removal, angle-weighted normals, components, normalise."""

from __future__ import annotations

import numpy as np
import pytest
from shapes import cube

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
    v, f = cube()
    return Mesh(v[f.reshape(-1)] + np.float32(1e-7), np.arange(36).reshape(12, 3))


def area_weighted_reference(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Brute force: every face adds its (unnormalised) cross product to its three vertices."""
    v = v.astype(np.float64)
    n = np.zeros_like(v)
    for tri in f:
        c = np.cross(v[tri[1]] - v[tri[0]], v[tri[2]] - v[tri[0]])
        for i in tri:
            n[i] += c
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_weld_then_clean_gives_a_closed_cube():
    m = weld(soup_cube(), eps=1e-5)
    assert m.num_vertices == 8 and m.num_faces == 12
    edges = np.sort(np.concatenate([m.faces[:, [0, 1]], m.faces[:, [1, 2]], m.faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # watertight
    n = vertex_normals(m)
    np.testing.assert_allclose(n, area_weighted_reference(m.vertices, m.faces), atol=1e-6)
    c = m.vertices - 0.5
    assert ((n * c).sum(1) > 0.5).all()  # outward at every corner


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
    np.testing.assert_allclose(vertex_normals(v, f), area_weighted_reference(v, f), atol=1e-5)
    # area-weighted, not angle-weighted: a fan of one large and two thin faces leans toward the large one
    fan_v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0.1], [0, 0.1, 0.1]], np.float32)
    fan_f = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 4]])
    np.testing.assert_allclose(vertex_normals(fan_v, fan_f), area_weighted_reference(fan_v, fan_f), atol=1e-6)


def test_vertex_normals_torch_and_numpy_agree_and_differentiate():
    import torch

    trimesh = pytest.importorskip("trimesh")
    s = trimesh.creation.icosphere(subdivisions=1)
    v = torch.tensor(np.asarray(s.vertices * [1.0, 0.5, 2.0]), dtype=torch.float64, requires_grad=True)
    f = torch.from_numpy(np.asarray(s.faces))
    n = vertex_normals(v, f)
    np.testing.assert_allclose(
        n.detach().numpy(), vertex_normals(v.detach().numpy().astype(np.float32), f.numpy()), atol=1e-6
    )
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, f), (v,))


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
