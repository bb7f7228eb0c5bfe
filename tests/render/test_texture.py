"""Texture representations: the UV pyramid, seam dilation, baking a field into an atlas, vertex-colour init."""

from __future__ import annotations

import math

import pytest
import torch

from pgc_fast.render.backends import CpuBackend
from pgc_fast.render.camera import orbit_cameras
from pgc_fast.render.renderer import MeshRenderer, RenderMesh
from pgc_fast.render.textures import (
    FieldTexture,
    UVTexture,
    VertexColorTexture,
    bake_field_to_uv,
    dilate_seams,
    fit_field_to_vertex_colors,
    init_texture,
    sample_surface,
)
from render_helpers import icosphere, reference_rasterize, uv_cube

BE = CpuBackend(reference_rasterize)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a.detach() - b.detach()) ** 2).mean()))


def test_pyramid_levels_export_and_sampling_agree():
    t = UVTexture(64, min_resolution=8, init=[0.2, 0.5, 0.7])
    assert t.sizes == [8, 16, 32, 64]
    assert torch.allclose(t.export(), torch.tensor([0.2, 0.5, 0.7]).expand(64, 64, 3), atol=1e-6)
    with torch.no_grad():
        for p in t.levels:
            p.normal_()
    # sampling at texel centres == the exported (materialised) texture
    c = (torch.arange(64) + 0.5) / 64
    uv = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).flip(-1)[None]
    assert torch.allclose(t.sample(BE, uv)[0], t.export(), atol=1e-5)
    img = torch.rand(64, 64, 3) * 0.9 + 0.05
    t.set_image(img)
    assert torch.allclose(t.export(), img, atol=1e-5)
    raw = UVTexture(16, channels=4, min_resolution=4, init=0.0, activation="none")
    assert raw.export().shape == (16, 16, 4)
    with pytest.raises(ValueError, match="init"):
        UVTexture(16, init=1.5)


def _fit(tex: UVTexture, uv: torch.Tensor, target: torch.Tensor, steps: int) -> None:
    opt = torch.optim.Adam(tex.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        ((tex.sample(BE, uv) - target) ** 2).mean().backward()
        opt.step()


def test_pyramid_forms_coarse_structure_first():
    """Fitting a smooth texture from 2 % of its texels: after a few steps the pyramid is close everywhere,
    while a single-level texture of the same resolution has only learnt the observed texels."""
    R = 64
    c = (torch.arange(R) + 0.5) / R
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    full = torch.stack(
        [0.5 + 0.4 * torch.sin(2 * math.pi * xx), 0.5 + 0.4 * torch.cos(2 * math.pi * yy), 0.2 + 0.6 * xx * yy], -1
    )
    g = torch.Generator().manual_seed(0)
    uv = torch.rand(1, 1, 80, 2, generator=g)
    target = BE.texture(full[None], uv, boundary_mode="clamp")
    pyr = UVTexture(R, min_resolution=4)
    flat = UVTexture(R, min_resolution=R)
    assert len(flat.levels) == 1
    _fit(pyr, uv, target, 40)
    _fit(flat, uv, target, 40)
    assert psnr(pyr.export(), full) > psnr(flat.export(), full) + 6
    assert psnr(pyr.export(), full) > 17


def test_dilate_seams():
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(32, 32, 3, generator=g)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:14, 5:20] = True
    mask[20:30, 22:30] = True
    out = dilate_seams(tex * mask[..., None], mask, pixels=2, fill=True)
    assert torch.equal(out[mask], tex[mask])  # covered texels untouched
    assert (out.sum(-1) > 0).all()  # everything filled (pull-push beyond the 2 rings)
    # a texel right next to a covered one takes the mean of its covered neighbours
    assert torch.allclose(out[7, 10], tex[8, 9:12].mean(0), atol=1e-6)
    out2 = dilate_seams(tex * mask[..., None], mask, pixels=1, fill=False)
    ring = torch.nn.functional.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0].bool()
    assert (out2.sum(-1)[ring] > 0).all() and (out2.sum(-1)[~ring] == 0).all()
    with pytest.raises(ValueError):
        dilate_seams(tex, mask[:4])


class LinearField(torch.nn.Module):
    """colour = (p / 0.5 + 1) / 2 — exactly representable by a bilinear texture on planar charts."""

    bound = 1.0

    def forward(self, p):
        return ((p / 0.5 + 1) / 2).clamp(0, 1)


def test_bake_field_to_uv_and_render_back():
    cube = uv_cube()
    mesh = RenderMesh(cube["vertices"], cube["faces"], uvs=cube["uvs"])
    field = FieldTexture(LinearField())
    assert field.input_range == "world"
    baked = bake_field_to_uv(field, mesh.vertices, mesh.faces, BE, uvs=mesh.uvs, resolution=64, dilate_pixels=4)
    assert baked.texture.shape == (64, 64, 3) and baked.mask.float().mean() > 0.5
    # covered texels hold the field at their surface point: check through the UV -> position map
    assert (baked.texture.sum(-1) > 0).all()
    uvt = UVTexture(64, min_resolution=64)
    uvt.set_image(baked.texture.clamp(0, 1))
    assert torch.allclose(uvt.export_image(), baked.image().clamp(1e-4, 1 - 1e-4), atol=1e-5)
    cams = orbit_cameras(2.4, [60.0, 75.0], [30.0, 215.0], 30.0, 32)
    r = MeshRenderer(BE)
    a = r.render(mesh, cams, field, background=0.0, antialias=False)
    b = r.render(mesh, cams, uvt, background=0.0, antialias=False)
    assert psnr(a.image, b.image) > 35


def test_bake_with_unwrap_when_available():
    pytest.importorskip("pgc_fast.mesh.uv")
    V, Fc = icosphere(1)
    field = FieldTexture(LinearField())
    try:
        baked = bake_field_to_uv(field, V, Fc, BE, resolution=64, padding=2)
    except ImportError:
        pytest.skip("the Rust extension with unwrap is not built")
    assert baked.vmapping is not None and baked.uvs.shape[0] == baked.vmapping.shape[0]
    assert torch.equal(baked.vmapping[baked.uv_faces], Fc)
    assert torch.equal(baked.image(), baked.texture.flip(0))


def test_hash_grid_texture_field_renders_and_learns():
    """The default field (pgc_fast.fields.TextureField) behind FieldTexture: output range, gradients to its table."""
    pytest.importorskip("pgc_kernels")
    cube = uv_cube()
    mesh = RenderMesh(cube["vertices"], cube["faces"], uvs=cube["uvs"])
    torch.manual_seed(0)
    tex = FieldTexture(bound=1.0)
    assert tex.input_range == "world"
    out = MeshRenderer(BE).render(mesh, orbit_cameras(2.4, 60.0, 30.0, 30.0, 16), tex, background=1.0)
    cov = out.mask[:, 0] > 0.999
    alb = out.albedo.permute(0, 2, 3, 1)[cov]
    assert ((alb >= 0.05 - 1e-6) & (alb <= 0.95 + 1e-6)).all()
    out.image.mean().backward()
    grads = [p.grad for p in tex.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_init_texture_from_vertex_colors():
    cube = uv_cube()
    cols = (cube["vertices"] / 0.5 + 1) / 2 * 0.8 + 0.1
    mesh = RenderMesh(cube["vertices"], cube["faces"], uvs=cube["uvs"], colors=cols)
    uvt = UVTexture(64, min_resolution=8)
    assert init_texture(uvt, mesh, BE)
    r = MeshRenderer(BE)
    cams = orbit_cameras(2.4, 60.0, 40.0, 30.0, 32)
    ref = r.render(mesh, cams, cols, background=0.0, antialias=False).image
    assert psnr(r.render(mesh, cams, uvt, background=0.0, antialias=False).image, ref) > 35
    vc = VertexColorTexture(torch.zeros(24, 3), learnable=True)
    assert init_texture(vc, mesh, BE) and torch.allclose(vc.colors(), cols, atol=1e-4)
    torch.manual_seed(0)
    field = FieldTexture(
        torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3), torch.nn.Sigmoid()),
        input_range="world",
    )
    before = fit_field_to_vertex_colors(field, mesh, steps=1, n_points=256, generator=torch.Generator().manual_seed(0))
    after = fit_field_to_vertex_colors(field, mesh, steps=100, n_points=256, generator=torch.Generator().manual_seed(0))
    assert after < 0.3 * before
    assert not init_texture(uvt, RenderMesh(cube["vertices"], cube["faces"], uvs=cube["uvs"]), BE)  # no colours


def test_sample_surface_is_area_uniform():
    V, Fc = icosphere(2)
    pts, fid, bary = sample_surface(V, Fc, 4000, torch.Generator().manual_seed(0))
    assert pts.shape == (4000, 3) and (bary >= 0).all() and torch.allclose(bary.sum(-1), torch.ones(4000))
    assert (pts[:, 1] > 0).float().mean().sub(0.5).abs() < 0.05


def test_uv_convention_matches_pgc_fast_mesh():
    """Our atlas (row 0 = v = 0) flipped equals pgc_fast.mesh's (row 0 = image top, OBJ v up) for the same UVs:
    bake_vertex_colors_to_uv(...).flip(0) vs pgc_fast.mesh.bake_vertex_colors, and RenderMesh.from_mesh."""
    mesh_mod = pytest.importorskip("pgc_fast.mesh")
    if not hasattr(mesh_mod, "bake_vertex_colors"):
        pytest.skip("pgc_fast.mesh without bake_vertex_colors")
    cube = uv_cube()
    cols = (cube["vertices"] / 0.5 + 1) / 2
    m = mesh_mod.Mesh(
        vertices=cube["vertices"].numpy(),
        faces=cube["faces"].numpy(),
        uvs=cube["uvs"].numpy(),
        uv_faces=cube["faces"].numpy(),
        colors=cols.numpy(),
    )
    rm = RenderMesh.from_mesh(m)
    assert torch.equal(rm.uv_faces, cube["faces"]) and torch.allclose(rm.colors, cols)
    theirs = torch.as_tensor(mesh_mod.bake_vertex_colors(m, 64, padding=0))
    from pgc_fast.render.textures import bake_vertex_colors_to_uv

    ours = bake_vertex_colors_to_uv(rm, BE, 64, dilate_pixels=0).flip(0)
    covered = (theirs.sum(-1) > 0) & (ours.sum(-1) > 0)
    assert covered.float().mean() > 0.5
    assert torch.allclose(ours[covered], theirs[covered], atol=1e-4)
