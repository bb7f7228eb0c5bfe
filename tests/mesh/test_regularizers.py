"""Normal consistency and the uniform Laplacian (issue 17): vectorised torch versions against loop twins on
random meshes with boundary, non-manifold and degenerate edges, known values, gradients, the original's
smoothing window, and pytorch3d itself when importable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgc_fast.mesh.regularizers import (
    laplacian_smoothing,
    laplacian_smoothing_reference,
    normal_consistency,
    normal_consistency_reference,
    smoothing_active,
    smoothness_loss,
)
from pgc_fast.mesh.tets import marching_tets_torch, tet_edges, tet_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def grid_patch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An open, bumpy n×n quad patch split into triangles (boundary edges; mixed diagonals)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.3 * rng.standard_normal(x.size)], 1).astype(np.float64)
    faces = []
    for i in range(n):
        for j in range(n):
            a, b, c, d = i * (n + 1) + j, (i + 1) * (n + 1) + j, (i + 1) * (n + 1) + j + 1, i * (n + 1) + j + 1
            faces += [[a, b, c], [a, c, d]] if rng.random() < 0.5 else [[a, b, d], [b, c, d]]
    return v, np.array(faces, np.int64)


def nonmanifold(seed: int, fins: tuple[int, ...] = (1, 2, 3), extras: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A patch plus fins on interior edges (by default 3, 4 and 5 faces per edge), and with ``extras`` a
    duplicated face, a flipped face, degenerate faces (repeated index, collinear), an unreferenced vertex."""
    v, f = grid_patch(4, seed)
    rng = np.random.default_rng(seed + 100)
    extra_v, extra_f = [], []
    edges = ((f[3, 0], f[3, 1]), (f[7, 1], f[7, 2]), (f[12, 0], f[12, 2]))
    for edge, count in zip(edges, fins, strict=False):
        for _ in range(count):
            extra_v.append(rng.standard_normal(3) + [2, 2, 0])
            extra_f.append([edge[0], edge[1], len(v) + len(extra_v) - 1])
    if not extras:
        return np.concatenate([v, np.array(extra_v)]), np.concatenate([f, np.array(extra_f, np.int64)])
    extra_v += [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [9.0, 9.0, 9.0]]  # collinear + unreferenced
    n = len(v) + len(extra_v)
    extra_f += [list(f[5]), list(f[6][::-1]), [f[0, 0], f[0, 0], f[0, 1]], [n - 4, n - 3, n - 2]]
    return np.concatenate([v, np.array(extra_v)]), np.concatenate([f, np.array(extra_f, np.int64)])


def soup(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random faces over 9 vertices: edges with up to ~10 faces, repeated indices."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((9, 3)), rng.integers(0, 9, (30, 3))


def closed_blob() -> tuple[np.ndarray, np.ndarray]:
    v, t = tet_grid(10)
    e, t2e = tet_edges(t)
    vt = torch.from_numpy(v).double()
    s = vt.norm(dim=1) - 0.3 + 0.05 * torch.sin(9 * vt[:, 0])
    verts, faces = marching_tets_torch(vt, s, *(torch.from_numpy(x) for x in (t, e, t2e)))
    return verts.numpy(), faces.numpy()


MESHES = {
    "patch": lambda: grid_patch(5, 0),
    "nonmanifold0": lambda: nonmanifold(0),
    "nonmanifold1": lambda: nonmanifold(1),
    "soup0": lambda: soup(0),
    "soup1": lambda: soup(1),
    "closed": closed_blob,
}


@pytest.mark.parametrize("name", list(MESHES))
def test_match_loop_twins(name):
    v, f = MESHES[name]()
    vt, ft = torch.from_numpy(v), torch.from_numpy(f)
    assert math.isclose(float(normal_consistency(vt, ft)), normal_consistency_reference(v, f), rel_tol=1e-12)
    assert math.isclose(float(laplacian_smoothing(vt, ft)), laplacian_smoothing_reference(v, f), rel_tol=1e-12)
    nc32 = normal_consistency(vt.float(), ft.int())
    assert nc32.dtype == torch.float32
    assert math.isclose(float(nc32), normal_consistency_reference(v, f), rel_tol=1e-5)


def test_pair_count_follows_pytorch3d():
    """One edge shared by n faces (a fan of n fins): pytorch3d enumerates (n−1)² − max(n−2, 0) pairs, the
    middle ones twice. Fins at angles θ_k around the edge give the loss in closed form."""
    for n in range(1, 7):
        ang = np.linspace(0.3, 2.9, n)
        v = np.array([[0, 0, 0], [1, 0, 0]] + [[0.5, math.cos(a), math.sin(a)] for a in ang], np.float64)
        f = np.array([[0, 1, 2 + k] for k in range(n)], np.int64)
        pairs = [(i, j) for i in range(n - 1) for j in range(1, n) if i != j]
        assert len(pairs) == (n - 1) ** 2 - max(n - 2, 0)
        # n0 = e × (a − v0) is the fin direction turned by 90° about e; n1 = −(that of b): 1 − cos = 1 + cos(Δθ)
        want = float(np.mean([1 + math.cos(ang[i] - ang[j]) for i, j in pairs])) if pairs else 0.0
        got = float(normal_consistency(torch.from_numpy(v), torch.from_numpy(f)))
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15), n


def test_known_values():
    flat = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    assert float(normal_consistency(flat, f)) == pytest.approx(0.0, abs=1e-15)
    # the winding does not enter (pytorch3d's normals come from the edge and the opposite vertices)
    assert float(normal_consistency(flat, torch.tensor([[0, 1, 2], [0, 3, 2]]))) == pytest.approx(0.0, abs=1e-15)
    folded = flat.clone()
    folded[3] = torch.tensor([2.0, 1.0, 0.0])  # on the same side of the shared diagonal as vertex 1
    assert float(normal_consistency(folded, f)) == pytest.approx(2.0)
    bent = flat.clone()
    bent[3] = torch.tensor([0.5, 0.5, 1 / math.sqrt(2)])  # 90° about the diagonal
    assert float(normal_consistency(bent, f)) == pytest.approx(1.0)
    tet = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    tf = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    assert float(normal_consistency(tet, tf)) == pytest.approx(4 / 3)  # 1 − cos(180° − 70.53°)
    # Laplacian of a regular hexagonal fan: 0 at the centre; a rim vertex's neighbours (centre and the two
    # rim neighbours) average to p/3, so ‖L·V‖ = 2/3 there: mean 6·(2/3)/7
    ring = [[math.cos(a), math.sin(a), 0.0] for a in np.linspace(0, 2 * math.pi, 7)[:-1]]
    fan = torch.tensor([[0.0, 0.0, 0.0], *ring], dtype=torch.float64)
    ff = torch.tensor([[0, 1 + k, 1 + (k + 1) % 6] for k in range(6)])
    assert float(laplacian_smoothing(fan, ff)) == pytest.approx(4 / 7)


def test_empty_and_boundary_only():
    v = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    one = torch.tensor([[0, 1, 2]])
    nc = normal_consistency(v, one)  # no edge has two faces (pytorch3d raises here)
    assert float(nc.detach()) == 0.0
    nc.backward()  # still attached to the graph
    assert float(normal_consistency(v, torch.zeros((0, 3), dtype=torch.long)).detach()) == 0.0
    # no faces: every vertex is isolated, L·V = −v (pytorch3d's convention)
    lap = laplacian_smoothing(v, torch.zeros((0, 3), dtype=torch.long)).detach()
    assert float(lap) == pytest.approx(float(v.detach().norm(dim=1).mean()))
    assert float(laplacian_smoothing(torch.zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long))) == 0.0


@pytest.mark.parametrize("fn", [normal_consistency, laplacian_smoothing])
def test_gradcheck(fn):
    v, f = nonmanifold(2)
    v = v[: f.max() + 1]  # the gradcheck is over referenced vertices only
    keep = [i for i, x in enumerate(f.tolist()) if len(set(x)) == 3]  # no zero normals: smooth everywhere
    vt = torch.from_numpy(v).requires_grad_(True)
    ft = torch.from_numpy(f[keep])
    assert torch.autograd.gradcheck(lambda x: fn(x, ft), (vt,))


def test_smoothing_window():
    """nerf/fine/trainer.py: smooth when global_step (1-based) > iters − smooth_iters and lambda_smooth > 0."""
    kw = {"iters": 2000, "smooth_iters": 1000, "lambda_smooth": 2e6}
    assert not smoothing_active(998, **kw) and not smoothing_active(999, **kw)  # global steps 999, 1000
    assert smoothing_active(1000, **kw) and smoothing_active(1999, **kw)  # 1001 … 2000
    assert not any(smoothing_active(s, iters=1200, smooth_iters=0, lambda_smooth=2e6) for s in range(1200))
    assert smoothing_active(0, iters=2000, smooth_iters=2000, lambda_smooth=1e6)  # -O3
    assert not smoothing_active(1999, iters=2000, smooth_iters=1000, lambda_smooth=0.0)
    v, f = (torch.from_numpy(x) for x in closed_blob())
    assert smoothness_loss(v, f, 999, **kw) is None
    got = smoothness_loss(v, f, 1000, **kw)
    assert got is not None and float(got) == pytest.approx(2e6 * float(normal_consistency(v, f)))
    both = smoothness_loss(v, f, 1000, lambda_laplacian=3.0, **kw)
    assert both is not None
    assert float(both) == pytest.approx(float(got) + 3.0 * float(laplacian_smoothing(v, f)))


def test_bad_input():
    v, f = torch.rand(4, 3), torch.tensor([[0, 1, 2]])
    with pytest.raises(TypeError, match=r"normal_consistency\(\): vertices must be a float torch.Tensor"):
        normal_consistency(v.numpy(), f)
    with pytest.raises(ValueError, match=r"laplacian_smoothing\(\): vertices must be \[V,3\]"):
        laplacian_smoothing(torch.rand(4, 2), f)
    with pytest.raises(TypeError, match=r"faces must be an int32\|int64"):
        normal_consistency(v, f.float())
    with pytest.raises(ValueError, match=r"faces must index vertices in \[0, 4\)"):
        normal_consistency(v, torch.tensor([[0, 1, 4]]))
    with pytest.raises(ValueError, match=r"faces must be \[F,3\]"):
        laplacian_smoothing(v, torch.tensor([[0, 1]]))


@pytest.mark.parametrize("name", ["patch", "nonmanifold0", "closed"])
def test_against_pytorch3d(name):
    p3d = pytest.importorskip("pytorch3d")
    from pytorch3d.loss import mesh_laplacian_smoothing, mesh_normal_consistency
    from pytorch3d.structures import Meshes

    del p3d
    # pytorch3d's unstable sort makes its pairs on ≥ 4-face edges order-dependent: 3-face edges at most
    v, f = nonmanifold(0, fins=(1, 1, 1), extras=False) if name == "nonmanifold0" else MESHES[name]()
    vt, ft = torch.from_numpy(v).float(), torch.from_numpy(f)
    mesh = Meshes(verts=[vt], faces=[ft])
    torch.testing.assert_close(normal_consistency(vt, ft), mesh_normal_consistency(mesh).reshape(()))
    torch.testing.assert_close(laplacian_smoothing(vt, ft), mesh_laplacian_smoothing(mesh, "uniform").reshape(()))
