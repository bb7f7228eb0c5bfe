"""The PBR material (issue 18, items 1-3): field ranges, the normal perturbation and its frames, lit renders with
gradients on the CPU backend, baking into export-frame tangent space, and the kd smoothness regulariser."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.fields import MaterialField
from pgc_fast.mesh.uv import atlas
from pgc_fast.render import MeshRenderer, RenderMesh, orbit_cameras
from pgc_fast.render.envlight import EnvironmentLight
from pgc_fast.render.shading import perturb_normal, srgb_decode, srgb_encode, tangent_frame, tonemap
from pgc_fast.render.textures import PBRMaterial, with_tangents


@pytest.fixture(scope="module")
def light():
    lt = EnvironmentLight.from_file(None, 64)
    lt.ensure_built()
    return lt


@pytest.fixture(scope="module")
def vase():
    m = make_demo_mesh(24, 12)
    v, f = torch.from_numpy(m.vertices) * 0.8, torch.from_numpy(m.faces)
    uv, uvf = atlas(m.vertices, m.faces, 256)
    return with_tangents(RenderMesh(vertices=v, faces=f, uvs=uv, uv_faces=uvf), "vase")


def _small_field(**kw) -> MaterialField:
    return MaterialField(num_levels=4, log2_table_size=10, finest_resolution=64, **kw)


def test_material_field_maps_each_channel_to_its_range():
    f = _small_field(kd_range=(0.03, 0.97), ks_min=(0.0, 0.1, 0.0), ks_max=(0.0, 0.98, 0.5))
    with torch.no_grad():
        f.layers[-1].weight.zero_()
        f.layers[-1].bias.copy_(torch.tensor([-50.0, 50.0, 0.0] + [50.0] * 3 + [-50.0, 50.0, 0.0]))
    out = f(torch.rand(7, 3) * 2 - 1)
    want = torch.tensor([0.03, 0.97, 0.5, 0.0, 0.98, 0.5, -1.0, 1.0, 0.5])
    torch.testing.assert_close(out, want.expand(7, 9), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="ks_min <= ks_max"):
        _small_field(ks_min=(0.0, 0.5, 0.0), ks_max=(0.0, 0.4, 0.0))
    assert "lo" not in f.state_dict()  # ranges come from the configuration


def test_switching_off_the_perturbation_gives_the_flat_normal(light):
    mat = PBRMaterial(_small_field(), light, perturbed_normal=False)
    out = mat(torch.rand(5, 3))
    torch.testing.assert_close(out[:, 6:], torch.tensor([0.0, 0.0, 1.0]).expand(5, 3))


def test_perturbation_follows_the_tangent_frame_and_never_faces_away():
    n = torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3)
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, -1.0], [1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]])
    view = torch.tensor([[0.0, 0.0, 1.0]] * 3 + [[0.0, 0.0, -1.0]])
    p = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    s, n2 = perturb_normal(p, n, t, view)
    r2 = 1 / math.sqrt(2)
    torch.testing.assert_close(s[0], torch.tensor([0.0, r2, r2]))  # +v = n × t with w = +1 (OpenGL, +Y up)
    torch.testing.assert_close(s[1], torch.tensor([0.0, -r2, r2]))  # mirrored UVs: w = -1
    torch.testing.assert_close(s[2], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(n2[3], torch.tensor([0.0, 0.0, -1.0]))  # seen from behind: turned to the viewer
    assert float((s * view).sum(-1).min()) >= -1e-6
    # A perturbation pointing away from a grazing viewer is bent back towards the normal.
    g = torch.tensor([[1.0, 0.0, 0.05]])
    sg, _ = perturb_normal(torch.tensor([[-1.0, 0.0, 0.2]]), n[:1], t[:1], F.normalize(g, dim=-1))
    assert float((sg * F.normalize(g, dim=-1)).sum()) >= 0
    # Without tangents (a mesh without UVs, e.g. DMTet's) the frame is a right-handed basis of n.
    nn_ = F.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    tt, bb = tangent_frame(nn_, None)
    torch.testing.assert_close(torch.linalg.cross(tt, bb, dim=-1), nn_, atol=1e-5, rtol=0)


def test_srgb_encoding_round_trips_and_tonemap_modes():
    x = torch.linspace(0, 1, 101)
    torch.testing.assert_close(srgb_decode(srgb_encode(x)), x, atol=1e-6, rtol=0)
    assert float(srgb_encode(torch.tensor(0.5))) == pytest.approx(0.7354, abs=1e-4)
    torch.testing.assert_close(tonemap(torch.tensor([2.0, -1.0]), "srgb"), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(tonemap(torch.tensor([2.0, -1.0]), "none"), torch.tensor([2.0, -1.0]))
    with pytest.raises(ValueError, match="srgb|none"):
        tonemap(x, "aces")


def test_lit_render_on_the_cpu_backend_carries_gradients_to_the_material(light, vase):
    mat = PBRMaterial(_small_field(ks_max=(0.0, 0.98, 1.0)), light)
    cams = orbit_cameras(2.2, [60.0, 100.0], [0.0, 200.0], 40.0, 32)
    r = MeshRenderer("cpu")
    out = r.render(vase, cams, mat, shading="pbr", light=light)
    assert out.image.shape == (2, 3, 32, 32) and bool(torch.isfinite(out.image).all())
    assert out.material is not None and out.material.shape == (2, 9, 32, 32) and out.shading_normal is not None
    cov = out.rast[..., 3] > 0
    assert float(out.image.detach().permute(0, 2, 3, 1)[cov].std()) > 0.02  # shaded, not flat
    out.image.mean().backward()
    grads = [p.grad for p in mat.field.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert float(mat.field.encoding.table.grad.abs().sum()) > 0
    lin = r.render(vase, cams, mat, shading="pbr", light=light, tonemap="none", antialias=False)
    srgb = r.render(vase, cams, mat, shading="pbr", light=light, antialias=False)
    sel = cov[..., None].expand(-1, -1, -1, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(srgb.image[sel], srgb_encode(lin.image[sel]), atol=2e-6, rtol=0)
    kd_only = r.render(vase, cams, mat, shading="albedo", antialias=False)  # the albedo warm-up: base colour only
    torch.testing.assert_close(kd_only.image[sel], srgb_encode(out.albedo.detach())[sel], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="needs a PBR material"):
        r.render(vase, cams, mat, shading="pbr")


def test_bake_expresses_the_perturbed_normal_in_the_export_tangent_space(light, vase):
    """Baked normal-map texels, read back in the export frames as a glTF viewer does (T, w·(n×T), n from the
    GLB's TANGENT), give the world normal the training frame produced — with the fixed mesh's own atlas and
    for a mesh without UVs (DMTet's case: UV-free training frame, fresh atlas at export)."""
    torch.manual_seed(0)
    mat = PBRMaterial(_small_field(), light)
    with torch.no_grad():
        mat.field.layers[-1].bias[6:8] = torch.tensor([1.5, -1.0])  # a strong, varying perturbation
    be = MeshRenderer("cpu").backend
    no_uv = RenderMesh(vertices=vase.vertices, faces=vase.faces)
    for mesh in (vase, no_uv):
        baked = mat.bake(mesh, be, 64, 2)
        from pgc_fast.render.textures.bake import _uv_raster
        from pgc_fast.render.textures.pbr import _atlas_tangents

        rast = _uv_raster(be, baked.uvs, baked.uv_faces, 64)
        m = baked.mask
        pos = be.interpolate(mesh.vertices, rast, mesh.faces)[0][m]
        nrm = F.normalize(be.interpolate(mesh.normals, rast, mesh.faces)[0][m], dim=-1)
        te = _atlas_tangents(mesh, baked.uvs, baked.uv_faces, rast, be)[m]
        t, b = tangent_frame(nrm, te)
        nts = baked.texture[m][:, 6:9]
        world_from_map = F.normalize(t * nts[:, :1] + b * nts[:, 1:2] + nrm * nts[:, 2:3], dim=-1)
        train_t = None if mesh.tangents is None else be.interpolate(mesh.tangents, rast, mesh.tangent_faces)[0][m]
        t0, b0 = tangent_frame(nrm, train_t)
        with torch.no_grad():
            p = mat(pos)[:, 6:9]
        world = F.normalize(t0 * p[:, :1] + b0 * p[:, 1:2] + nrm * p[:, 2:3].clamp_min(0), dim=-1)
        assert float((world_from_map * world).sum(-1).min()) > 0.9999
        assert float(nts[:, 2].min()) > 0  # the map's z: facing out


def test_kd_smoothness_vanishes_for_a_constant_base_colour_and_ramps_in(light, vase):
    cams = orbit_cameras(2.2, [60.0], [0.0], 40.0, 24)
    r = MeshRenderer("cpu")
    mat = PBRMaterial(_small_field(), light)
    with torch.no_grad():
        mat.field.layers[-1].weight[:3].zero_()  # kd independent of position
    out = r.render(vase, cams, mat, shading="pbr", light=light)
    assert float(mat.kd_smoothness(out, torch.Generator().manual_seed(0)).detach()) < 1e-7
    noisy = PBRMaterial(_small_field(), light)
    with torch.no_grad():
        noisy.field.encoding.table.uniform_(-3, 3)
    out = r.render(vase, cams, noisy, shading="pbr", light=light)
    reg = noisy.kd_smoothness(out, torch.Generator().manual_seed(0))
    assert float(reg.detach()) > 1e-3
    reg.backward()
    assert float(noisy.field.encoding.table.grad.abs().sum()) > 0


def test_a_mesh_without_uvs_is_shaded_in_the_uv_free_frame(light, vase):
    """DMTet's per-step surface has no UVs: the material still renders, with finite gradients."""
    bare = RenderMesh(vertices=vase.vertices, faces=vase.faces)
    mat = PBRMaterial(_small_field(), light)
    with torch.no_grad():
        mat.field.layers[-1].bias[6:8] = torch.tensor([1.0, -0.5])
    out = MeshRenderer("cpu").render(
        bare, orbit_cameras(2.2, [70.0], [40.0], 40.0, 24), mat, shading="pbr", light=light
    )
    out.image.sum().backward()
    assert bool(torch.isfinite(out.image).all()) and bool(torch.isfinite(mat.field.encoding.table.grad).all())


def test_vertex_colour_init_fits_the_base_colour():
    m = make_demo_mesh(16, 8)
    rm = RenderMesh(
        vertices=torch.from_numpy(m.vertices) * 0.8,
        faces=torch.from_numpy(m.faces),
        colors=torch.from_numpy(m.colors),
    )
    mat = PBRMaterial(_small_field(), EnvironmentLight(torch.ones(6, 64, 64, 3)))
    before = float((mat(rm.vertices)[:, :3] - rm.colors).abs().mean().detach())
    mat.init_from_vertex_colors(rm, MeshRenderer("cpu").backend, steps=60, generator=torch.Generator().manual_seed(0))
    after = float((mat(rm.vertices)[:, :3] - rm.colors.clamp(0.03, 0.97)).abs().mean().detach())
    assert after < 0.5 * before and after < 0.08, (before, after)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA and nvdiffrast")
def test_nvdiffrast_pbr_render_matches_the_cpu_backend(vase):
    """The lit render on CUDA (nvdiffrast rasteriser and cube lookups, light prefiltered through them) against the
    CPU backend (the torch twins): ≥ 35 dB (rasterisation differs at triangle edges, filtering at cube seams)."""
    cams = orbit_cameras(2.2, [60.0, 100.0], [0.0, 200.0], 80.0, 64)
    out = {}
    for name, dev in (("cpu", "cpu"), ("nvdiffrast", "cuda")):
        torch.manual_seed(0)
        lt = EnvironmentLight.from_file(None, 64).to(dev)
        mat = PBRMaterial(_small_field(ks_max=(0.0, 0.98, 1.0)), lt).to(dev)
        with torch.no_grad():
            r = MeshRenderer(name, device=dev).render(
                vase.to(dev), cams.to(dev), mat, shading="pbr", light=lt, antialias=False
            )
        out[name] = r.image.cpu()
    mse = float(((out["cpu"] - out["nvdiffrast"]) ** 2).mean())
    assert -10 * math.log10(max(mse, 1e-12)) >= 35.0, mse
