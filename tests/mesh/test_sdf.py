"""signed_distance / winding_number (Rust) against their brute-force numpy twins: distances on random meshes
with degenerate faces, signs away from w = 0.5 on closed, open and soup meshes, dtypes, torch, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgc_fast.mesh.sdf import signed_distance, signed_distance_reference, winding_number, winding_number_reference
from tolerances import MESH_TOLERANCES as TOL


def uv_sphere(nlat: int = 12, nlon: int = 24, hole_z: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit latitude-longitude sphere with outward faces; ``hole_z`` drops faces with a vertex at z ≥ it."""
    th = np.pi * np.arange(1, nlat) / nlat
    ph = 2 * np.pi * np.arange(nlon) / nlon
    ring = np.stack(
        [
            np.outer(np.sin(th), np.cos(ph)),
            np.outer(np.sin(th), np.sin(ph)),
            np.repeat(np.cos(th), nlon).reshape(nlat - 1, nlon),
        ],
        -1,
    )
    v = np.concatenate([[[0, 0, 1]], ring.reshape(-1, 3), [[0, 0, -1]]])

    def idx(i: int, j: int) -> int:
        return 1 + (i - 1) * nlon + j % nlon

    south = len(v) - 1
    f = []
    for j in range(nlon):
        f += [[0, idx(1, j), idx(1, j + 1)], [idx(nlat - 1, j), south, idx(nlat - 1, j + 1)]]
        for i in range(1, nlat - 1):
            f += [[idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)], [idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)]]
    f = np.array(f, np.int64)
    if hole_z is not None:
        f = f[(v[f][:, :, 2] < hole_z).all(1)]
    return v, f


def soup(seed: int, nv: int = 30, nf: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Random triangles plus degenerate ones: a repeated index, all three equal, three collinear vertices."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-1, 1, (nv, 3))
    v = np.concatenate([v, [[0.1, -0.2, 0.3], [0.6, 0.05, 0.175], [1.6, 0.55, -0.075]]])  # p0 + t·d, t = 0, 1, 3
    f = rng.integers(0, nv, (nf, 3))
    f[:5, 1] = f[:5, 0]
    f[5:8] = f[5:8, :1]
    f[8] = [nv, nv + 1, nv + 2]
    return v, f


@pytest.mark.parametrize("seed", range(4))
def test_distance_matches_twin(seed):
    v, f = soup(seed)
    p = np.random.default_rng(100 + seed).uniform(-1.5, 1.5, (500, 3))
    d, face, c = signed_distance(v, f, p, signed=False, return_closest=True)
    dr = signed_distance_reference(v, f, p, signed=False)
    assert d.dtype == np.float64 and face.dtype == np.int64 and c.shape == (500, 3)
    np.testing.assert_allclose(d, dr, rtol=0, atol=TOL["sdf_f64_atol"])
    # The closest point lies on the reported face, at the reported distance.
    np.testing.assert_allclose(np.linalg.norm(c - p, axis=1), d, rtol=0, atol=TOL["sdf_f64_atol"])
    own = [signed_distance_reference(v, f[k : k + 1], c[i : i + 1], signed=False)[0] for i, k in enumerate(face)]
    assert max(own) < TOL["sdf_f64_atol"]


def test_float32_points_give_float32_results():
    v, f = uv_sphere()
    p = np.random.default_rng(1).uniform(-1.3, 1.3, (400, 3)).astype(np.float32)
    d = signed_distance(v.astype(np.float32), f.astype(np.int32), p)
    assert d.dtype == np.float32
    dr = signed_distance_reference(v.astype(np.float32), f, p)
    np.testing.assert_allclose(d, dr, rtol=TOL["sdf_f32_rtol"], atol=1e-12)
    assert signed_distance(v, f, p.astype(np.int64)).dtype == np.float64  # other dtypes → float64


@pytest.mark.parametrize(
    "mesh",
    [uv_sphere(), uv_sphere(hole_z=0.8), soup(7, 25, 50), soup(8, 40, 120)],
    ids=["closed sphere", "sphere with a hole", "soup", "bigger soup"],
)
def test_sign_follows_exact_winding_number(mesh):
    v, f = mesh
    p = np.random.default_rng(3).uniform(-1.4, 1.4, (3000, 3))
    d = signed_distance(v, f, p)
    w = winding_number_reference(v, f, p)
    dr = signed_distance_reference(v, f, p, signed=False)
    np.testing.assert_allclose(np.abs(d), dr, rtol=0, atol=TOL["sdf_f64_atol"])
    clear = np.abs(w - 0.5) > TOL["winding_sign_margin"]
    assert clear.mean() > 0.5
    np.testing.assert_array_equal((d < 0)[clear], (w > 0.5)[clear])


def test_open_mesh_keeps_a_sensible_inside():
    # A hole of ~37° half-angle: any ray-parity sign is wrong for the rays through it, w stays ≈ 1 inside.
    v, f = uv_sphere(24, 48, hole_z=0.8)
    p = np.array([[0, 0, 0], [0.3, -0.2, -0.4], [0, 0, -0.95], [0, 0, 0.5], [1.5, 0, 0], [0, 0, 1.5], [0.2, 0.1, 2.0]])
    d = signed_distance(v, f, p)
    np.testing.assert_array_equal(d < 0, [True, True, True, True, False, False, False])
    w = winding_number(v, f, p)
    assert w[0] > 0.8 and w[4] < 0.2


def test_winding_number_matches_twin():
    v, f = uv_sphere(16, 32, hole_z=0.9)
    p = np.random.default_rng(4).uniform(-1.3, 1.3, (2000, 3))
    wr = winding_number_reference(v, f, p)
    np.testing.assert_allclose(winding_number(v, f, p), wr, rtol=0, atol=TOL["winding_atol"])
    np.testing.assert_allclose(winding_number(v, f, p, beta=float("inf")), wr, rtol=0, atol=1e-9)


def test_torch_in_torch_out_and_empty_points():
    v, f = uv_sphere(6, 12)
    p = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float32)
    d, face, c = signed_distance(torch.from_numpy(v), torch.from_numpy(f), p, return_closest=True)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float32 and face.dtype == torch.int64 and c.shape == (2, 3)
    assert d[0] < 0 and abs(float(d[1]) - 1.0) < 1e-6
    assert signed_distance(v, f, np.zeros((0, 3))).shape == (0,)
    assert winding_number(v, f, np.zeros((0, 3), np.float32)).dtype == np.float32


def test_bad_input():
    v, f = uv_sphere(6, 12)
    p = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"signed_distance\(\): faces must hold at least one triangle, got 0"):
        signed_distance(v, np.zeros((0, 3), np.int64), p)
    bad = p.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"signed_distance\(\): points must be finite, got NaN in row 2"):
        signed_distance(v, f, bad)
    vi = v.copy()
    vi[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"winding_number\(\): vertices must be finite, got inf in row 5"):
        winding_number(vi, f, p)
    with pytest.raises(ValueError, match=r"signed_distance\(\): points must have shape \[N,3\], got \[4, 2\]"):
        signed_distance(v, f, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"signed_distance\(\): faces must index"):
        signed_distance(v, f + len(v), p)
    for beta in (1.0, 0.5, float("nan"), "2", True):
        with pytest.raises(ValueError, match=r"signed_distance\(\): beta must be a number > 1"):
            signed_distance(v, f, p, beta=beta)
    with pytest.raises(TypeError, match=r"signed_distance\(\): points must be a numeric array"):
        signed_distance(v, f, np.array([["a", "b", "c"]]))


def test_matches_trimesh_on_a_closed_mesh():
    trimesh = pytest.importorskip("trimesh")
    pytest.importorskip("rtree")  # trimesh.proximity needs rtree and scipy
    pytest.importorskip("scipy")
    m = trimesh.creation.icosphere(subdivisions=3)
    p = np.random.default_rng(5).uniform(-1.5, 1.5, (300, 3))
    d = signed_distance(m.vertices, m.faces, p)
    dt = trimesh.proximity.signed_distance(m, p)  # positive inside
    np.testing.assert_allclose(d, -dt, rtol=0, atol=1e-9)
