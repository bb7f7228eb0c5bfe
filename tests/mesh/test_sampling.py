"""Surface sampling and the SDF-initialisation targets (issue 17): area weighting, uniformity within a face,
points on the surface, the original's jitter (σ 0.04, then a further 0.4 on a copy), determinism, signs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgc_fast.mesh.sampling import sample_surface, sdf_init_points, sdf_init_samples
from pgc_fast.mesh.sdf import signed_distance, signed_distance_reference
from pgc_fast.mesh.tets import marching_tets, tet_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sphere():
    v, t = tet_grid(24)
    verts, faces = marching_tets(v * 2, (np.linalg.norm(v * 2, axis=1) - 0.5).astype(np.float32), t)
    return verts.astype(np.float64), faces


def test_area_weighting_and_zero_area_faces():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 0, 1], [4, 0, 1], [3, 2, 1], [9, 9, 9]], np.float64)
    f = np.array([[0, 1, 2], [6, 6, 6], [3, 4, 5], [0, 0, 1]])  # areas 0.5, 0, 1.0, 0 (degenerate)
    n = 60_000
    p, face = sample_surface(v, f, n, generator=gen(0))
    counts = np.bincount(face.numpy(), minlength=4)
    assert counts[1] == 0 and counts[3] == 0
    sd = math.sqrt(n * (1 / 3) * (2 / 3))
    assert abs(counts[0] - n / 3) < 5 * sd
    on_face = np.where(face.numpy()[:, None] == 0, p.numpy(), 0)
    assert np.all(np.abs(on_face[:, 2]) < 1e-12)  # face 0 lies in z = 0


def test_uniform_within_a_face():
    """The midpoint subdivision of a triangle has four equal-area parts: each gets a quarter."""
    v = np.array([[0, 0, 0], [2, 0, 0], [0.5, 1.5, 0]], np.float64)
    n = 40_000
    p, _ = sample_surface(v, np.array([[0, 1, 2]]), n, generator=gen(1))
    a, b, c = v
    # barycentric coordinates of the samples: the corner parts are where one coordinate exceeds 1/2
    m = np.linalg.lstsq(np.stack([b - a, c - a], 1)[:2], (p.numpy() - a)[:, :2].T, rcond=None)[0].T
    bary = np.stack([1 - m.sum(1), m[:, 0], m[:, 1]], 1)
    assert bary.min() > -1e-9 and bary.max() < 1 + 1e-9
    parts = np.bincount(np.where(bary.max(1) > 0.5, bary.argmax(1), 3), minlength=4)
    sd = math.sqrt(n * 0.25 * 0.75)
    assert np.all(np.abs(parts - n / 4) < 5 * sd), parts


def test_samples_lie_on_the_surface(sphere):
    v, f = sphere
    p, face = sample_surface(torch.from_numpy(v), torch.from_numpy(f), 5000, generator=gen(2))
    assert p.dtype == torch.float64 and face.dtype == torch.int64
    assert signed_distance(v, f, p.numpy(), signed=False).max() < 1e-9


def test_jitter_follows_the_original():
    """Rasterizer_MLP.init_geometry (nerf/fine/rasterizer.py): near = surface + N(0, 0.04²), far = near +
    N(0, 0.4²). On a large plane z = 0 the heights show both stds and the pairing of row i and row n + i."""
    v = np.array([[-50, -50, 0], [50, -50, 0], [50, 50, 0], [-50, 50, 0]], np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    n = 20_000
    pts = sdf_init_points(v, f, n, generator=gen(3))
    assert pts.shape == (2 * n, 3) and pts.dtype == torch.float32
    near, far = pts[:n].double(), pts[n:].double()
    tol = 4 / math.sqrt(2 * n)  # relative standard error of a std estimate, 4σ
    assert abs(near[:, 2].std().item() / 0.04 - 1) < tol
    assert abs((far - near).std(0) / 0.4 - 1).max().item() < tol
    assert abs(far[:, 2].std().item() / math.hypot(0.04, 0.4) - 1) < tol
    assert abs(near[:, 2].mean().item()) < 4 * 0.04 / math.sqrt(n)


def test_deterministic_per_seed(sphere):
    v, f = sphere
    a = sdf_init_points(v, f, 1000, generator=gen(7))
    b = sdf_init_points(torch.from_numpy(v).float(), torch.from_numpy(f).int(), 1000, generator=gen(7))
    c = sdf_init_points(v, f, 1000, generator=gen(8))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # float32 vertices: rounding only
    assert torch.equal(a, sdf_init_points(v, f, 1000, generator=gen(7)))
    assert not torch.equal(a, c)
    assert torch.equal(sdf_init_points(v, f, 10), sdf_init_points(v, f, 10))  # default generator: seed 0


def test_sdf_targets_on_a_sphere(sphere):
    """Targets are the signed distance to the mesh, negative inside (the original's open3d convention):
    equal to the brute-force twin, and signed as |p| − 0.5 away from the (polygonised) sphere."""
    v, f = sphere
    pts, sdf = sdf_init_samples(v, f, 4000, generator=gen(4))
    assert pts.shape == (8000, 3) and sdf.shape == (8000,) and sdf.dtype == torch.float32
    sub = torch.arange(0, 8000, 16)
    ref = signed_distance_reference(v, f, pts[sub].double().numpy())
    np.testing.assert_allclose(sdf[sub].numpy(), ref, rtol=0, atol=1e-6)
    exact = pts.double().norm(dim=1) - 0.5
    away = exact.abs() > 0.03  # beyond the chord error of a 12-cells-per-axis sphere
    assert torch.equal(sdf[away] < 0, exact[away] < 0)
    assert (sdf < 0).float().mean() > 0.2  # near points straddle the surface


def test_open_mesh_gets_a_sign(sphere):
    """A sphere with a hole still has an inside (winding number), where ray parity would fail."""
    v, f = sphere
    c = v[f].mean(1)
    keep = ~((c[:, 2] > 0.45) & (np.hypot(c[:, 0], c[:, 1]) < 0.15))
    assert (~keep).sum() > 3
    pts, sdf = sdf_init_samples(v, f[keep], 2000, generator=gen(5))
    exact = pts.double().norm(dim=1) - 0.5
    away = (exact.abs() > 0.05) & (pts[:, 2] < 0.3)  # away from the hole
    assert torch.equal(sdf[away] < 0, exact[away] < 0)


def test_bad_input():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float64)
    f = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match=r"sample_surface\(\): faces must hold at least one triangle"):
        sample_surface(v, np.zeros((0, 3), np.int64), 5)
    with pytest.raises(ValueError, match=r"sample_surface\(\): n must be a positive int"):
        sample_surface(v, f, 0)
    with pytest.raises(ValueError, match=r"vertices must be finite, got a non-finite value at row 1"):
        sample_surface(np.array([[0, 0, 0], [np.nan, 0, 0], [0, 1, 0]]), f, 5)
    with pytest.raises(ValueError, match=r"faces must index vertices in \[0, 3\)"):
        sample_surface(v, np.array([[0, 1, 3]]), 5)
    with pytest.raises(ValueError, match=r"positive area"):
        sample_surface(v, np.array([[0, 1, 1]]), 5)
    with pytest.raises(ValueError, match=r"vertices must be a float array \[V,3\]"):
        sample_surface(v[:, :2], f, 5)
    with pytest.raises(ValueError, match=r"sdf_init_points\(\): sigma_far must be a finite number"):
        sdf_init_points(v, f, 5, sigma_far=-1.0)
