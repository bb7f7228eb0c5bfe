"""Tet grids and marching tetrahedra: exact agreement with the numpy transcription of Kaolin's
algorithm (vertex order, values, faces), torch path equality and gradients, orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgc_fast.mesh.tets import marching_tets, marching_tets_reference, marching_tets_torch, tet_edges, tet_grid


@pytest.fixture(scope="module")
def grid16():
    v, t = tet_grid(16)
    e, t2e = tet_edges(t)
    return v, t, e, t2e


def signed_volumes(v, t):
    p = v[t].astype(np.float64)
    return np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))


@pytest.mark.parametrize("res", [2, 8, 17])
def test_tet_grid(res):
    v, t = tet_grid(res)
    n = res // 2
    assert v.shape == ((n + 1) ** 3, 3) and t.shape == (6 * n**3, 4)
    assert v.dtype == np.float32 and t.dtype == np.int64
    vol = signed_volumes(v, t)
    assert (vol > 0).all()
    assert vol.sum() / 6 == pytest.approx(1.0)
    assert v.min() == -0.5 and v.max() == 0.5


def test_tet_edges_match_numpy_unique(grid16):
    v, t, e, t2e = grid16
    all_e = np.sort(t[:, [0, 1, 0, 2, 0, 3, 1, 2, 1, 3, 2, 3]].reshape(-1, 2), axis=1)
    ue, inv = np.unique(all_e, axis=0, return_inverse=True)
    np.testing.assert_array_equal(e, ue)
    np.testing.assert_array_equal(t2e.reshape(-1), inv.reshape(-1))


def random_sdf(v, seed):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-0.15, 0.15, 3)
    s = np.linalg.norm(v - c, axis=1) - rng.uniform(0.15, 0.35)
    s += 0.05 * rng.standard_normal(len(v))  # noise: many small components and odd cases
    if seed % 2:
        s[rng.random(len(v)) < 0.05] = 0.0  # exact zeros: sdf > 0 is strict
    return s.astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_cpu_and_torch_match_kaolin_reference_exactly(grid16, seed):
    v, t, e, t2e = grid16
    sdf = random_sdf(v, seed)
    ref = marching_tets_reference(v, sdf, t, return_tet_idx=True)
    got = marching_tets(v, sdf, t, return_tet_idx=True)
    assert ref[1].shape[0] > 100
    for a, b in zip(got, ref, strict=False):
        np.testing.assert_array_equal(a, b)
    tt = marching_tets_torch(*(torch.from_numpy(x) for x in (v, sdf, t, e, t2e)), return_tet_idx=True)
    for a, b in zip(tt, ref, strict=False):
        np.testing.assert_array_equal(a.numpy(), b)


def test_kaolin_docstring_example():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    t = np.array([[0, 1, 2, 3]])
    sdf = np.array([-1.0, -1.0, 0.5, 0.5], np.float32)
    verts, faces = marching_tets(v, sdf, t)
    np.testing.assert_allclose(
        verts, [[0, 0.6667, 0], [0, 0, 0.6667], [0.3333, 0.6667, 0], [0.3333, 0, 0.6667]], atol=1e-4
    )
    np.testing.assert_array_equal(faces, [[3, 0, 1], [3, 2, 0]])


def test_outward_winding_for_negative_inside_sdf(grid16):
    v, t, _, _ = grid16
    sdf = (np.linalg.norm(v, axis=1) - 0.3).astype(np.float32)  # negative inside
    verts, faces = marching_tets(v, sdf, t)
    p = verts[faces].astype(np.float64)
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    assert ((n * p.mean(1)).sum(1) > 0).all()


def test_torch_gradients(grid16):
    v, t, e, t2e = grid16
    sdf = random_sdf(v, 5).astype(np.float64)
    vt = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    st = torch.tensor(sdf, dtype=torch.float64, requires_grad=True)
    tt, et, t2et = (torch.from_numpy(x) for x in (t, e, t2e))
    verts, faces = marching_tets_torch(vt, st, tt, et, t2et)
    assert verts.requires_grad and faces.dtype == torch.long
    verts.sum().backward()
    assert vt.grad.abs().sum() > 0 and st.grad.abs().sum() > 0

    # gradcheck (fp64) on two tets that the surface crosses
    sdf_small = np.array([-1.0, -0.5, 0.25, 0.7, -0.3], np.float64)
    vs = torch.tensor(np.random.default_rng(0).random((5, 3)), requires_grad=True)
    ss = torch.tensor(sdf_small, requires_grad=True)
    ts = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    es, t2es = (torch.from_numpy(x) for x in tet_edges(ts.numpy(), 5))
    torch.autograd.gradcheck(lambda a, b: marching_tets_torch(a, b, ts, es, t2es)[0], (vs, ss))


def test_bad_input():
    v, t = tet_grid(4)
    with pytest.raises(ValueError, match=r"marching_tets\(\): sdf must have shape"):
        marching_tets(v, np.zeros(3, np.float32), t)
    bad = t.copy()
    bad[0, 0] = 10**6
    with pytest.raises(ValueError, match=r"marching_tets\(\): tets must index"):
        marching_tets(v, np.zeros(len(v), np.float32), bad)
    with pytest.raises(ValueError, match="tet_grid"):
        tet_grid(1)
