"""Marching tets on device (issue 17): the single-sync torch path against Kaolin's algorithm (numpy twin and
the torch.unique transcription), odd inputs, gradcheck w.r.t. the sdf and the deformed grid positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgc_fast.mesh.tets import (
    marching_tets_kaolin_torch,
    marching_tets_reference,
    marching_tets_torch,
    tet_edges,
    tet_grid,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _grid(res: int):
    v, t = tet_grid(res)
    e, t2e = tet_edges(t)
    return tuple(torch.from_numpy(x) for x in (v, t, e, t2e))


def _sorted_faces(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces as sorted rows of vertex coordinates (order-free comparison)."""
    tri = np.sort(verts[faces].reshape(len(faces), -1).view([("", verts.dtype)] * 9).ravel())
    return tri.view(verts.dtype).reshape(-1, 9)


def _sdf(v: torch.Tensor, case: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if case == "sphere":
        return v.norm(dim=1) - 0.3
    if case == "noise":  # many tiny components, every marching case
        return torch.randn(v.shape[0], generator=g)
    if case == "zeros":  # exact zeros count as outside (sdf > 0 is strict)
        s = v.norm(dim=1) - 0.25
        s[torch.rand(v.shape[0], generator=g) < 0.2] = 0.0
        return s
    if case == "all_inside":
        return torch.full((v.shape[0],), -1.0)
    return torch.full((v.shape[0],), 1.0)  # all_outside


@pytest.mark.parametrize("case", ["sphere", "noise", "zeros", "all_inside", "all_outside"])
@pytest.mark.parametrize("res", [6, 13])
def test_torch_matches_kaolin_twins_exactly(case, res):
    v, t, e, t2e = _grid(res)
    s = _sdf(v, case, res)
    ours = marching_tets_torch(v, s, t, e, t2e, return_tet_idx=True)
    ref = marching_tets_reference(v.numpy(), s.numpy(), t.numpy(), return_tet_idx=True)
    kao = marching_tets_kaolin_torch(v, s, t, return_tet_idx=True)
    if case.startswith("all"):
        assert ours[0].shape == (0, 3) and ours[1].shape == (0, 3) and ours[2].shape == (0,)
    for a, b, c in zip(ours, ref, kao, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
        np.testing.assert_array_equal(c.numpy(), b)
    if ref[1].size:
        np.testing.assert_array_equal(_sorted_faces(ours[0].numpy(), ours[1].numpy()), _sorted_faces(ref[0], ref[1]))


def test_deformed_grid_and_float64():
    v, t, e, t2e = _grid(12)
    g = torch.Generator().manual_seed(3)
    vd = v.double() + (1.8 / 24) * torch.tanh(torch.randn(v.shape, generator=g, dtype=torch.float64))
    s = (vd.norm(dim=1) - 0.3) + 0.02 * torch.randn(v.shape[0], generator=g, dtype=torch.float64)
    ours = marching_tets_torch(vd, s, t, e, t2e)
    ref = marching_tets_reference(vd.float().numpy(), s.float().numpy(), t.numpy())
    assert ours[0].dtype == torch.float64
    np.testing.assert_array_equal(ours[1].numpy(), ref[1])
    np.testing.assert_allclose(ours[0].numpy(), ref[0], rtol=1e-5, atol=1e-6)


def test_gradients_match_kaolin_twin():
    v, t, e, t2e = _grid(10)
    s = _sdf(v, "sphere", 0) + 0.03 * torch.randn(v.shape[0], generator=torch.Generator().manual_seed(1))
    grads = []
    for fn in (lambda a, b: marching_tets_torch(a, b, t, e, t2e), lambda a, b: marching_tets_kaolin_torch(a, b, t)):
        a, b = v.clone().requires_grad_(True), s.clone().requires_grad_(True)
        verts, _ = fn(a, b)
        cot = torch.randn(verts.shape, generator=torch.Generator().manual_seed(2))
        grads.append(torch.autograd.grad(verts, (a, b), cot))
    for x, y in zip(*grads, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_gradcheck_sdf_and_deformation():
    """fp64 gradcheck through the original's deformation v' = v + (1.8/(2·res))·tanh(δ) (Rasterizer_MLP.
    get_geometry_prediction in nerf/fine/rasterizer.py) on a 3³-cube grid; the sdf stays away from 0 so the
    topology is locally constant under the finite differences."""
    v, t, e, t2e = _grid(6)
    v = v.double()
    g = torch.Generator().manual_seed(0)
    s0 = v.norm(dim=1) - 0.3
    s0 = torch.where(s0.abs() < 0.05, s0.sign() * 0.05 + s0, s0).requires_grad_(True)
    delta = (0.5 * torch.randn(v.shape, generator=g, dtype=torch.float64)).requires_grad_(True)

    def extract(sdf: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        verts, faces = marching_tets_torch(v + (1.8 / 12) * torch.tanh(d), sdf, t, e, t2e)
        assert faces.shape[0] > 20
        return verts

    assert torch.autograd.gradcheck(extract, (s0, delta))


def test_bad_input():
    v, t, e, t2e = _grid(4)
    s = torch.zeros(v.shape[0])
    with pytest.raises(TypeError, match=r"marching_tets_torch\(\): sdf must be a torch.Tensor"):
        marching_tets_torch(v, s.numpy(), t, e, t2e)
    with pytest.raises(ValueError, match=r"marching_tets_torch\(\): vertices must be \[N,3\] and sdf \[N\]"):
        marching_tets_torch(v, s[:-1], t, e, t2e)
    with pytest.raises(ValueError, match=r"tet_edges \[T,6\]"):
        marching_tets_torch(v, s, t, e, t2e[:-1])
    with pytest.raises(ValueError, match=r"edges must be \[E,2\]"):
        marching_tets_torch(v, s, t, e[:, :1], t2e)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="one device"):
            marching_tets_torch(v.cuda(), s.cuda(), t, e, t2e)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    """The same extraction, gradients and regularisers on the GPU (skipped without CUDA)."""
    from pgc_fast.mesh.floaters import remove_floaters
    from pgc_fast.mesh.regularizers import laplacian_smoothing, normal_consistency

    v, t, e, t2e = _grid(32)
    s = _sdf(v, "sphere", 0) + 0.02 * torch.randn(v.shape[0], generator=torch.Generator().manual_seed(0))
    outs = []
    for dev in ("cpu", "cuda"):
        a = v.to(dev).requires_grad_(True)
        verts, faces = marching_tets_torch(a, s.to(dev), *(x.to(dev) for x in (t, e, t2e)))
        loss = normal_consistency(verts, faces) + laplacian_smoothing(verts, faces)
        (grad,) = torch.autograd.grad(loss, a)
        kept = remove_floaters(verts.detach(), faces)[1]
        outs.append([x.cpu() for x in (verts.detach(), faces, loss.detach(), grad, kept)])
    for x, y in zip(*outs, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
