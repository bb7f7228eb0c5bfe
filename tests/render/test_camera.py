"""Camera conventions: right-handed (det R = +1), known points land on known pixels, not mirrored, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from pgc_fast.render.backends import CpuBackend
from pgc_fast.render.camera import (
    Cameras,
    OrbitSampler,
    look_at,
    orbit_cameras,
    turntable,
)


def test_sampled_rotations_are_right_handed_and_orthonormal():
    g = torch.Generator().manual_seed(0)
    for jitter, usr in ((False, 0.0), (True, 0.0), (True, 1.0)):
        cams = OrbitSampler(height=64, jitter=jitter, uniform_sphere_rate=usr).sample(16, generator=g)
        R = cams.c2w[:, :3, :3]
        assert torch.allclose(torch.det(R), torch.ones(16), atol=1e-5)
        assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(16, 3, 3), atol=1e-5)
        assert torch.allclose(cams.c2w @ cams.w2c(), torch.eye(4).expand(16, 4, 4), atol=1e-5)


def test_known_points_land_on_expected_pixels():
    # Camera on +Z (phi = 0, theta = 90°) at distance 2 looking at the origin, 64x64, focal 40 px.
    cams = orbit_cameras(2.0, 90.0, 0.0, 40.0, 64)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    px = cams.project(pts)[0]
    assert torch.allclose(px[0], torch.tensor([32.0, 32.0]), atol=1e-4)
    assert torch.allclose(px[1], torch.tensor([32.0 + 40 * 0.25, 32.0]), atol=1e-4)  # +X is image right
    assert torch.allclose(px[2], torch.tensor([32.0, 32.0 - 40 * 0.25]), atol=1e-4)  # +Y is image up (row 0 top)
    # clip space agrees with project(): ndc = px/W*2-1, and w = camera depth
    clip = cams.to_clip(pts)[0]
    ndc = clip[:, :2] / clip[:, 3:]
    assert torch.allclose((ndc + 1) / 2 * 64, px, atol=1e-4)
    assert torch.allclose(clip[:, 3], torch.tensor([2.0, 2.0, 2.0, 1.0]), atol=1e-5)
    zw = clip[:, 2] / clip[:, 3]
    assert ((zw > 0) & (zw < 1)).all()
    # azimuth 90° puts the camera on +X; then world -Z is on the image right
    side = orbit_cameras(2.0, 90.0, 90.0, 40.0, 64)
    assert torch.allclose(side.position[0], torch.tensor([2.0, 0.0, 0.0]), atol=1e-5)
    assert side.project(torch.tensor([[0.0, 0.0, -0.5]]))[0, 0, 0] > 32 + 5


def test_render_is_not_mirrored(ref_raster):
    """A small triangle at world +X, +Y shows up in the top-right quadrant of the rasterised image."""
    V = torch.tensor([[0.4, 0.4, 0.0], [0.6, 0.4, 0.0], [0.5, 0.6, 0.0]])
    Fc = torch.tensor([[0, 1, 2]])
    cams = orbit_cameras(2.0, 90.0, 0.0, 40.0, 32)
    rast = CpuBackend(ref_raster).rasterize(cams.to_clip(V), Fc, (32, 32))
    ys, xs = torch.nonzero(rast[0, ..., 3] > 0, as_tuple=True)
    assert len(ys) > 0
    assert xs.float().mean() > 16 and ys.float().mean() < 16
    # the pixel holding the projection of vertex 0 region: rows increase downward with world -Y
    proj = cams.project(V)[0]
    assert proj[2, 1] < proj[0, 1]  # the higher vertex has the smaller row


def test_sampler_ranges_and_determinism():
    s = OrbitSampler(height=128, focal_range=(0.7, 1.35))
    a = s.sample(64, generator=torch.Generator().manual_seed(3))
    b = s.sample(64, generator=torch.Generator().manual_seed(3))
    c = s.sample(64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.c2w, b.c2w) and torch.equal(a.focal, b.focal)
    assert not torch.equal(a.c2w, c.c2w)
    assert ((a.radius >= 2.0) & (a.radius <= 2.5)).all()
    th = torch.rad2deg(a.theta)
    assert ((th >= 45) & (th <= 100)).all()
    assert ((a.focal >= 0.7 * 128) & (a.focal <= 1.35 * 128)).all() and (a.focal == a.focal[0]).all()
    assert torch.allclose(a.position.norm(dim=-1), a.radius, atol=1e-5)
    # looks at the origin without jitter
    assert torch.allclose(a.forward, -torch.nn.functional.normalize(a.position, dim=-1), atol=1e-5)
    u = OrbitSampler(height=32, uniform_sphere_rate=1.0).sample(256, generator=torch.Generator().manual_seed(0))
    assert (u.theta <= math.pi / 2 + 1e-6).all() and u.theta.min() < math.radians(30)
    j = OrbitSampler(height=32, jitter=True).sample(8, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(j.forward, -torch.nn.functional.normalize(j.position, dim=-1), atol=1e-3)
    with pytest.raises(ValueError, match="radius_range"):
        OrbitSampler(radius_range=(3.0, 2.0))


def test_relative_angles():
    cams = orbit_cameras(2.0, 60.0, [0.0, 180.0, 200.0], 50.0, 32)
    ang = cams.relative_angles()
    assert torch.allclose(ang["azimuth"], torch.tensor([0.0, 180.0, -160.0]), atol=1e-4)
    assert torch.allclose(ang["elevation"], torch.full((3,), 30.0), atol=1e-4)


def test_turntable_and_look_at_edge_cases():
    t = turntable(8, height=32)
    assert len(t) == 8 and torch.allclose(torch.rad2deg(t.phi), torch.arange(8) * 45.0, atol=1e-4)
    assert torch.allclose(t.focal, torch.full((8,), 1.025 * 32))
    top = look_at(torch.tensor([[0.0, 2.0, 0.0]]))  # straight above: no NaN
    assert torch.isfinite(top).all() and abs(float(torch.det(top[0, :3, :3])) - 1) < 1e-5
    with pytest.raises(ValueError):
        Cameras(c2w=torch.eye(4)[None], focal=torch.ones(2), height=8, width=8)
