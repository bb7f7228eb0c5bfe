"""Mesh renderer outputs (image, mask, depth, positions, normals, background, shading) and gradients."""

from __future__ import annotations

import pytest
import torch

from pgc_fast.mesh import vertex_normals
from pgc_fast.render.backends import CpuBackend
from pgc_fast.render.camera import orbit_cameras
from pgc_fast.render.renderer import MeshRenderer, RenderMesh
from pgc_fast.render.textures import FieldTexture, UVTexture, VertexColorTexture
from render_helpers import icosphere, reference_rasterize, uv_cube


@pytest.fixture(scope="module")
def setup():
    V, Fc = icosphere(1)
    mesh = RenderMesh(V, Fc, colors=(V / 0.8 + 1) / 2)
    cams = orbit_cameras([2.5, 2.3], [60.0, 85.0], [10.0, 200.0], 30.0, 32)
    return mesh, cams, MeshRenderer(CpuBackend(reference_rasterize))


def test_vertex_normals_outward():
    V, Fc = icosphere(1)
    n = vertex_normals(V, Fc)
    assert torch.allclose(n, torch.nn.functional.normalize(V, dim=-1), atol=0.05)


def test_geometry_buffers_are_consistent(setup):
    mesh, cams, r = setup
    out = r.render(mesh, cams, mesh.colors, background=0.0, antialias=False)
    B, H, W = 2, 32, 32
    assert out.image.shape == (B, 3, H, W) and out.mask.shape == (B, 1, H, W) and out.depth.shape == (B, 1, H, W)
    cov = out.mask[:, 0] > 0
    assert 0.2 < cov.float().mean() < 0.9
    # world positions re-project onto their own pixel centres
    pos = out.position.permute(0, 2, 3, 1)
    for b in range(B):
        p = pos[b][cov[b]]
        px = cams[b].project(p)[0]
        ys, xs = torch.nonzero(cov[b], as_tuple=True)
        assert torch.allclose(px[:, 0], xs.float() + 0.5, atol=1e-3)
        assert torch.allclose(px[:, 1], ys.float() + 0.5, atol=1e-3)
        # depth = camera-space z of the same points
        z = cams[b].to_camera(p)[0, :, 2]
        assert torch.allclose(out.depth[b, 0][cov[b]], z, atol=1e-4)
        assert ((p.norm(dim=-1) > 0.6) & (p.norm(dim=-1) <= 0.8 + 1e-4)).all()
    n = out.normal.permute(0, 2, 3, 1)[cov]
    assert torch.allclose(n.norm(dim=-1), torch.ones(n.shape[0]), atol=1e-4)
    view = pos[cov] - cams.position[torch.nonzero(cov, as_tuple=True)[0]]
    assert ((n * view).sum(-1) <= 1e-6).all()  # normals face the camera
    # empty pixels are zero in every geometry buffer
    assert (out.depth[:, 0][~cov] == 0).all() and (out.position.permute(0, 2, 3, 1)[~cov] == 0).all()
    # vertex colours: the albedo is the interpolated colour = (p/0.8+1)/2 (linear in position)
    alb = out.albedo.permute(0, 2, 3, 1)[cov]
    assert torch.allclose(alb, (pos[cov] / 0.8 + 1) / 2, atol=1e-4)
    assert torch.equal(out.image, out.albedo)  # background 0, albedo shading, no AA


def test_background_colour_and_image(setup):
    mesh, cams, r = setup
    out = r.render(mesh, cams, mesh.colors, background=[0.1, 0.2, 0.3], antialias=False)
    empty = out.mask[:, 0] == 0
    assert torch.allclose(
        out.image.permute(0, 2, 3, 1)[empty], torch.tensor([0.1, 0.2, 0.3]).expand(int(empty.sum()), 3)
    )
    bg = torch.rand(3, 64, 64)
    out2 = r.render(mesh, cams, mesh.colors, background=bg, antialias=True)
    small = torch.nn.functional.interpolate(
        bg[None], size=(32, 32), mode="bilinear", align_corners=False, antialias=True
    )[0]
    far = out2.mask[:, 0] == 0
    far[:, 1:] &= out2.mask[:, 0, :-1] == 0
    far[:, :-1] &= out2.mask[:, 0, 1:] == 0
    assert torch.allclose(out2.image[0].permute(1, 2, 0)[far[0]], small.permute(1, 2, 0)[far[0]], atol=1e-5)
    with pytest.raises(ValueError, match="background"):
        r.render(mesh, cams, mesh.colors, background=torch.zeros(4, 8, 8))


def test_shading_modes_and_determinism(setup):
    mesh, cams, r = setup
    a = r.render(mesh, cams, mesh.colors, shading="lambertian", generator=torch.Generator().manual_seed(1))
    b = r.render(mesh, cams, mesh.colors, shading="lambertian", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.image, b.image)
    cov = a.mask > 0.999
    ratio = (a.image / a.albedo.clamp_min(1e-6))[cov.expand_as(a.image)]
    assert ratio.min() >= 0.1 - 1e-4 and ratio.max() <= 1 + 1e-4  # ambient 0.1 .. fully lit
    used = [
        r.render(
            mesh, cams[:1], mesh.colors, shading="random", generator=torch.Generator().manual_seed(s), resolution=(4, 4)
        ).shading
        for s in range(40)
    ]
    frac = used.count("albedo") / len(used)
    assert 0.05 < frac < 0.45 and set(used) == {"albedo", "lambertian"}
    nrm = r.render(mesh, cams, mesh.colors, shading="normal", background=0.0, antialias=False)
    assert torch.allclose(nrm.image, ((nrm.normal + 1) / 2) * (nrm.mask > 0), atol=1e-6)


def test_gradients_reach_textures_and_vertices():
    cube = uv_cube()
    V = cube["vertices"].clone().requires_grad_(True)
    cams = orbit_cameras(2.4, 60.0, 35.0, 28.0, 24)
    r = MeshRenderer(CpuBackend(reference_rasterize))
    uvt = UVTexture(32, min_resolution=4, init=0.4)
    field = FieldTexture(
        torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3), torch.nn.Sigmoid()),
        input_range="world",
    )
    vc = VertexColorTexture(torch.rand(24, 3), learnable=True)
    target = torch.rand(1, 3, 24, 24)
    for tex in (uvt, field, vc):
        mesh = RenderMesh(V, cube["faces"], uvs=cube["uvs"])  # normals are recomputed from V: part of the graph
        out = r.render(
            mesh, cams, tex, background=0.5, shading="lambertian", generator=torch.Generator().manual_seed(0)
        )
        loss = ((out.image - target) ** 2).mean()
        V.grad = None
        loss.backward()
        params = list(tex.parameters())
        assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params), type(tex).__name__
        assert V.grad is not None and V.grad.abs().sum() > 0
    # the coarsest pyramid level receives gradient from every covered pixel
    assert uvt.levels[0].grad.abs().sum() > 0 and uvt.levels[-1].grad.abs().sum() > 0


def test_vertex_gradient_matches_finite_differences():
    """d loss / d vertices (through barycentrics, interpolation and antialiasing) against central differences
    along random directions. A sphere with smooth vertex colours over a constant background; the step is the
    largest that leaves every pixel's triangle id unchanged (the loss is smooth there), so the comparison is
    tight; with antialiasing the silhouette pixels' values move continuously with the vertices."""
    V0, Fc = icosphere(1)
    cams = orbit_cameras(2.4, 62.0, 33.0, 26.0, 20)
    r = MeshRenderer(CpuBackend(reference_rasterize))
    g = torch.Generator().manual_seed(5)
    target = torch.rand(1, 3, 20, 20, generator=g, dtype=torch.float64)
    cols = (V0 / 0.8 + 1) / 2

    def loss_fn(V):
        out = r.render(RenderMesh(V, Fc), cams, cols, background=0.3)
        return ((out.image.double() - target) ** 2).sum(), out.rast[..., 3]

    V = V0.clone().requires_grad_(True)
    loss_fn(V)[0].backward()
    checked = 0
    for trial in range(4):
        d = torch.randn(V.shape, generator=g)
        analytic = float((V.grad * d).sum())
        for eps in (1e-3, 3e-4, 1e-4):
            (lp, ip), (lm, im) = loss_fn(V0 + eps * d), loss_fn(V0 - eps * d)
            if torch.equal(ip, im):
                numeric = (float(lp) - float(lm)) / (2 * eps)
                assert abs(analytic - numeric) <= 0.03 * abs(numeric) + 0.2, (trial, eps, analytic, numeric)
                checked += 1
                break
    assert checked >= 2


def test_render_mesh_validation():
    V, Fc = icosphere(0)
    with pytest.raises(ValueError, match="faces must index"):
        RenderMesh(V, Fc + 100)
    with pytest.raises(ValueError, match="vertices"):
        RenderMesh(V[:, :2], Fc)
    r = MeshRenderer(CpuBackend(reference_rasterize))
    with pytest.raises(ValueError, match="needs mesh.uvs"):
        r.render(RenderMesh(V, Fc), orbit_cameras(2.5, 60, 0, 20, 8), UVTexture(8, min_resolution=8))
    with pytest.raises(ValueError, match="shading"):
        r.render(RenderMesh(V, Fc), orbit_cameras(2.5, 60, 0, 20, 8), torch.rand(12, 3), shading="phong")


def test_ssaa(setup):
    mesh, cams, r = setup
    one = r.render(mesh, cams, mesh.colors, background=0.0, antialias=False)
    ss = r.render(mesh, cams, mesh.colors, background=0.0, antialias=False, ssaa=2)
    assert ss.image.shape == one.image.shape and ss.rast.shape[1:3] == (64, 64)
    partial = (ss.mask > 0) & (ss.mask < 1)
    assert partial.any() and ((ss.mask >= 0) & (ss.mask <= 1)).all()
    inner = (ss.mask == 1) & (one.mask == 1)
    assert (ss.image - one.image).abs()[inner.expand_as(one.image)].max() < 0.05  # same smooth colours inside
    with pytest.raises(ValueError, match="ssaa"):
        r.render(mesh, cams, mesh.colors, ssaa=0)
