"""CPU rasterisers: nvdiffrast's convention checked analytically and against the pure-torch reference
(`pgc_fast.mesh.rasterize_reference`) on random triangles, incl. vertices behind the camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgc_fast.mesh import Mesh, bake_vertex_colors, dilate, rasterize, rasterize_reference, rasterize_uv
from tolerances import MESH_TOLERANCES

TOL = MESH_TOLERANCES


def test_convention_single_triangle():
    # Triangle covering the lower-left half of NDC, w = 1: pixel centres ((c+.5)/W*2-1, (r+.5)/H*2-1).
    clip = np.array([[-1, -1, 0.5, 1], [1, -1, 0.5, 1], [-1, 1, 0.5, 1]], np.float32)
    out = rasterize(clip, np.array([[0, 1, 2]]), (4, 8))
    assert out.shape == (1, 4, 8, 4) and out.dtype == np.float32
    r, c = 0, 1  # row 0 is y = -1 (bottom in clip space)
    x, y = (c + 0.5) / 8 * 2 - 1, (r + 0.5) / 4 * 2 - 1
    # point = u*p0 + v*p1 + (1-u-v)*p2  →  solve for u, v
    v_ = (x + 1) / 2
    w_ = (y + 1) / 2
    np.testing.assert_allclose(out[0, r, c], [1 - v_ - w_, v_, 0.5, 1], atol=1e-6)
    # top-right pixel is outside (x + y > 0): all zeros
    np.testing.assert_array_equal(out[0, 3, 7], 0)


def test_perspective_correct_barycentrics():
    # Vertices at different w: interpolating clip-space attributes with (u, v) must reproduce the pixel's
    # own NDC position after perspective division.
    clip = np.array([[-2, -2, 0, 2], [0.5, -0.5, 0, 0.5], [-1, 3, 0.5, 3]], np.float32)
    out = rasterize(clip, np.array([[0, 1, 2]]), 32)[0]
    mask = out[..., 3] > 0
    assert mask.sum() > 50
    u, v = out[..., 0], out[..., 1]
    p = u[..., None] * clip[0] + v[..., None] * clip[1] + (1 - u - v)[..., None] * clip[2]
    ndc = p[..., :2] / p[..., 3:]
    ys, xs = np.meshgrid((np.arange(32) + 0.5) / 32 * 2 - 1, (np.arange(32) + 0.5) / 32 * 2 - 1, indexing="ij")
    np.testing.assert_allclose(ndc[mask], np.stack([xs, ys], -1)[mask], atol=1e-5)
    np.testing.assert_allclose(out[..., 2][mask], (p[..., 2] / p[..., 3])[mask], atol=1e-6)


def test_depth_test_nearest_wins_and_torch_io():
    near = [[-1, -1, -0.5, 1], [3, -1, -0.5, 1], [-1, 3, -0.5, 1]]
    far = [[-1, -1, 0.5, 1], [3, -1, 0.5, 1], [-1, 3, 0.5, 1]]
    clip = torch.tensor([far + near], dtype=torch.float32)
    out = rasterize(clip, torch.tensor([[0, 1, 2], [3, 4, 5]]), 8)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 8, 8, 4)
    assert (out[..., 3] == 2).all() and torch.allclose(out[..., 2], torch.tensor(-0.5))


def test_near_far_clipping():
    # z/w outside [-1, 1] is clipped per pixel: this triangle spans z/w from -2 to 2 along x.
    clip = np.array([[-1, -1, -2, 1], [1, -1, 2, 1], [-1, 1, -2, 1]], np.float32)
    out = rasterize(clip, np.array([[0, 1, 2]]), 64)[0]
    z = out[..., 2][out[..., 3] > 0]
    assert z.min() >= -1 and z.max() <= 1 and len(z) > 100


def random_scene(seed: int, n_tri: int, b: int, behind: bool):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-1.2, 1.2, (b, n_tri * 3, 4)).astype(np.float32)
    pos[..., 3] = rng.uniform(0.5, 2.0, (b, n_tri * 3))
    pos[..., :3] *= pos[..., 3:]
    if behind:  # a few vertices behind the camera (w < 0)
        k = rng.random((b, n_tri * 3)) < 0.1
        pos[..., 3][k] *= -0.5
    faces = np.arange(n_tri * 3).reshape(n_tri, 3)
    return pos, faces


@pytest.mark.parametrize(
    "seed,n_tri,b,res,behind", [(0, 12, 2, (24, 32), False), (1, 20, 1, (33, 17), True), (2, 6, 3, 16, True)]
)
def test_matches_torch_reference(seed, n_tri, b, res, behind):
    pos, faces = random_scene(seed, n_tri, b, behind)
    got = torch.from_numpy(rasterize(pos, faces, res))
    ref = rasterize_reference(pos, faces, res)
    covered = (ref[..., 3] > 0) | (got[..., 3] > 0)
    same = got[..., 3] == ref[..., 3]
    mismatch = (~same & covered).sum().item() / max(covered.sum().item(), 1)
    assert mismatch <= TOL["raster_mismatch_frac"], mismatch
    s = same & (ref[..., 3] > 0)
    assert s.sum() > 20
    torch.testing.assert_close(got[..., :2][s], ref[..., :2][s], atol=TOL["raster_bary_atol"], rtol=0)
    torch.testing.assert_close(got[..., 2][s], ref[..., 2][s], atol=TOL["raster_depth_atol"], rtol=0)


def test_watertight_shared_edges():
    # Two triangles forming a full-screen quad leave no holes.
    clip = np.array([[-1, -1, 0, 1], [1, -1, 0, 1], [1, 1, 0, 1], [-1, 1, 0, 1]], np.float32)
    out = rasterize(clip * 1.0001, np.array([[0, 1, 2], [0, 2, 3]]), 37)
    assert (out[..., 3] > 0).all()


def test_bad_arguments():
    clip = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"rasterize\(\): faces must index 0..2"):
        rasterize(clip, np.array([[0, 1, 3]]), 8)
    with pytest.raises(ValueError, match=r"rasterize\(\): clip_pos must have shape"):
        rasterize(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]]), 8)
    with pytest.raises(ValueError, match="resolution must be positive"):
        rasterize(clip, np.array([[0, 1, 2]]), 0)


def test_rasterize_uv_and_bake():
    # Two UV triangles tiling the unit square; texel centres follow v = 1 - (r+.5)/H.
    uvs = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    uvf = np.array([[0, 1, 2], [0, 2, 3]])
    fid, bary = rasterize_uv(uvs, uvf, (8, 8))
    assert (fid >= 0).all()
    r, c = 1, 6
    u, v = (c + 0.5) / 8, 1 - (r + 0.5) / 8
    f = fid[r, c]
    p = (bary[r, c, :, None] * uvs[uvf[f]]).sum(0)
    np.testing.assert_allclose(p, [u, v], atol=1e-6)
    np.testing.assert_allclose(bary.sum(-1), 1, atol=1e-6)
    colors = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)  # colour = (u, v, 0)
    mesh = Mesh(np.c_[uvs, np.zeros(4, np.float32)], uvf, uvs, uvf, colors=colors)
    tex = bake_vertex_colors(mesh, 8)
    vv, uu = np.meshgrid(1 - (np.arange(8) + 0.5) / 8, (np.arange(8) + 0.5) / 8, indexing="ij")
    np.testing.assert_allclose(tex[..., 0], uu, atol=1e-6)
    np.testing.assert_allclose(tex[..., 1], vv, atol=1e-6)


def test_dilate():
    tex = np.zeros((5, 5, 2), np.float32)
    mask = np.zeros((5, 5), bool)
    tex[2, 2] = [1, 2]
    mask[2, 2] = True
    t1, m1 = dilate(tex, mask, 1)
    assert m1.sum() == 9 and np.allclose(t1[m1], [1, 2])
    t2, m2 = dilate(tex, mask, 2)
    assert m2.all()
    t0, m0 = dilate(tex, mask, 0)
    np.testing.assert_array_equal(t0, tex)
    with pytest.raises(ValueError, match=r"dilate\(\): mask must be"):
        dilate(tex, mask[:4], 1)


def test_attach_grad_matches_and_is_differentiable():
    from pgc_fast.mesh import rasterize_attach_grad

    pos, faces = random_scene(3, 8, 2, behind=False)
    rast = rasterize(pos, faces, 16)
    p64 = torch.tensor(pos, dtype=torch.float64, requires_grad=True)
    out = rasterize_attach_grad(p64, faces, torch.from_numpy(rast).double())
    torch.testing.assert_close(out.float(), torch.from_numpy(rast), atol=1e-5, rtol=0)
    assert (out[..., 3] > 0).sum() > 30
    torch.autograd.gradcheck(
        lambda q: rasterize_attach_grad(q, faces, torch.from_numpy(rast).double())[..., :3], (p64,)
    )


def test_rasterize_db_matches_finite_differences():
    from pgc_fast.mesh import rasterize_db

    # One large perspective triangle; compare analytic d(u,v)/d(pixel) with central differences of the
    # barycentrics evaluated by the rasteriser at neighbouring pixels (interior pixels only).
    clip = np.array([[-2, -2, 0, 2], [0.5, -0.5, 0, 0.5], [-1, 3, 0.5, 3]], np.float32)
    faces = np.array([[0, 1, 2]])
    rast = rasterize(clip, faces, 48)
    db = rasterize_db(torch.tensor(clip, dtype=torch.float64), faces, torch.from_numpy(rast).double())[0].numpy()
    r = rast[0].astype(np.float64)
    cov = r[..., 3] > 0
    inner = cov.copy()
    inner[1:-1, 1:-1] &= cov[:-2, 1:-1] & cov[2:, 1:-1] & cov[1:-1, :-2] & cov[1:-1, 2:]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    assert inner.sum() > 100
    du_dx = (np.roll(r[..., 0], -1, 1) - np.roll(r[..., 0], 1, 1)) / 2
    du_dy = (np.roll(r[..., 0], -1, 0) - np.roll(r[..., 0], 1, 0)) / 2
    dv_dx = (np.roll(r[..., 1], -1, 1) - np.roll(r[..., 1], 1, 1)) / 2
    dv_dy = (np.roll(r[..., 1], -1, 0) - np.roll(r[..., 1], 1, 0)) / 2
    fd = np.stack([du_dx, du_dy, dv_dx, dv_dy], -1)
    np.testing.assert_allclose(db[inner], fd[inner], atol=TOL["raster_db_fd_atol"], rtol=TOL["raster_db_fd_rtol"])
    assert (db[~cov] == 0).all()
