"""Chamfer distance helpers (issue 17): point clouds against the loop twin, meshes against the brute-force
twin, known values (a shifted plane, concentric spheres), symmetry, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgc_fast.mesh.chamfer import (
    chamfer_distance,
    chamfer_distance_reference,
    mesh_chamfer_distance,
    mesh_chamfer_distance_reference,
    nearest_distances,
)
from pgc_fast.mesh.tets import marching_tets, tet_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def sphere(radius: float, res: int = 24) -> tuple[np.ndarray, np.ndarray]:
    v, t = tet_grid(res)
    v = v * 2
    verts, faces = marching_tets(v, (np.linalg.norm(v, axis=1) - radius).astype(np.float32), t)
    return verts.astype(np.float64), faces


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("sizes", [(1, 1), (7, 300), (500, 90)])
def test_point_clouds_match_twin(sizes, squared):
    g = torch.Generator().manual_seed(sum(sizes))
    a = torch.randn(sizes[0], 3, generator=g, dtype=torch.float64)
    b = torch.randn(sizes[1], 3, generator=g, dtype=torch.float64) + 0.3
    got = chamfer_distance(a, b, squared=squared, chunk=64)
    assert math.isclose(float(got), chamfer_distance_reference(a.numpy(), b.numpy(), squared=squared), rel_tol=1e-12)
    assert math.isclose(float(got), float(chamfer_distance(b, a, squared=squared)), rel_tol=1e-12)
    assert float(chamfer_distance(a, a)) == 0.0
    f32 = chamfer_distance(a.float(), b.float())
    assert f32.dtype == torch.float32 and math.isclose(float(f32), float(chamfer_distance(a, b)), rel_tol=1e-5)


def test_point_cloud_gradients():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(30, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: chamfer_distance(x, y, chunk=7), (a, b))


def test_meshes_match_twin_and_known_values():
    va, fa = sphere(0.5)
    vb, fb = sphere(0.6)
    small = (*sphere(0.5, 12), *sphere(0.6, 16))
    got = mesh_chamfer_distance(*small, num_samples=400, seed=3)
    assert math.isclose(got, mesh_chamfer_distance_reference(*small, num_samples=400, seed=3), rel_tol=1e-9)
    assert abs(mesh_chamfer_distance(va, fa, vb, fb, num_samples=20_000) - 0.1) < 0.01  # concentric: ≈ 0.1
    assert mesh_chamfer_distance(va, fa, va, fa, num_samples=2000) < 1e-9  # samples lie on the other surface
    shifted = va + np.array([0.0, 0.0, 0.05])
    assert math.isclose(
        mesh_chamfer_distance(va, fa, shifted, fa, num_samples=5000),
        mesh_chamfer_distance(shifted, fa, va, fa, num_samples=5000),
        rel_tol=0.05,
    )


def test_mesh_chamfer_of_planes_is_the_offset():
    quad = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    d = mesh_chamfer_distance(quad, f, quad + [0, 0, 0.25], f, num_samples=1000)
    assert d == pytest.approx(0.25, abs=1e-12)
    assert mesh_chamfer_distance(torch.from_numpy(quad), torch.from_numpy(f), quad, f, seed=1) < 1e-15
    a = mesh_chamfer_distance(quad, f, quad + [0.3, 0, 0], f, num_samples=500, seed=5)
    assert a == mesh_chamfer_distance(quad, f, quad + [0.3, 0, 0], f, num_samples=500, seed=5)
    assert a != mesh_chamfer_distance(quad, f, quad + [0.3, 0, 0], f, num_samples=500, seed=6)


def test_bad_input():
    a = torch.rand(4, 3)
    with pytest.raises(ValueError, match=r"nearest_distances\(\): b must hold at least one point"):
        nearest_distances(a, torch.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"nearest_distances\(\): a must be finite"):
        nearest_distances(torch.full((2, 3), float("nan")), a)
    with pytest.raises(ValueError, match=r"a and b must share device and dtype"):
        chamfer_distance(a, a.double())
    with pytest.raises(ValueError, match=r"b must be a float torch.Tensor \[N,3\]"):
        chamfer_distance(a, a[:, :2])
    quad = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]], np.float64)
    with pytest.raises(ValueError, match=r"mesh_chamfer_distance\(\): faces must hold at least one triangle"):
        mesh_chamfer_distance(quad, np.zeros((0, 3), np.int64), quad, np.array([[0, 1, 2]]))
