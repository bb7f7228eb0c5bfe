"""PBR through the generation loop, without diffusion weights (issue 18, items 3-5).

Material recovery: the vase with a known base colour, roughness and metallic (occlusion pinned to 0, as the
original's default) is rendered under the default environment from 16 views above and below it; a material field
from a random start is fitted to those images with MSEObjective through ``run`` (lit renders, sRGB tone mapping,
the kd smoothness regulariser: the generation loop); then baked and compared with the known material on the texels
of faces the views saw. The normal perturbation is off there: it can absorb shading (with it on, the fit reaches kd
0.019 and roughness 0.057, the images no better). A short run with it on exports everything, and a third-party
reader (trimesh) reads the GLB back.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgc_fast import config as C
from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.config.original_flags import config_from_flags
from pgc_fast.mesh import load_mesh, read_hdr, save_mesh
from pgc_fast.render import orbit_cameras
from pgc_fast.render.shading import srgb_encode
from pgc_fast.render.textures.bake import _uv_raster
from pgc_fast.train.geometry import Scene
from pgc_fast.train.objectives import MSEObjective
from pgc_fast.train.preflight import PreflightError, preflight
from pgc_fast.train.trainer import run
from pipeline_support import stopped_and_resumed

RES, VIEWS, ITERS, EXPORT = 32, 16, 150, 64


def known_material(p: torch.Tensor) -> torch.Tensor:
    """kd, roughness and metallic as smooth functions of the training-frame position; occlusion 0; flat normal."""
    x, y, z = p.unbind(-1)
    kd = torch.stack(
        [
            0.5 + 0.3 * torch.sin(2 * y + 1),
            0.45 + 0.3 * torch.cos(2 * x + 1.5 * z),
            0.4 + 0.25 * torch.sin(1.5 * z - y),
        ],
        -1,
    )
    rough = (0.45 + 0.25 * torch.sin(1.5 * y + 0.5 * x))[:, None]
    metal = (0.35 + 0.25 * torch.cos(1.2 * y - 0.8 * z))[:, None]
    zero = torch.zeros_like(rough)
    return torch.cat([kd, zero, rough, metal, zero, zero, torch.ones_like(rough)], -1)


class _Known:
    domain = "position"
    is_material = True

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        return known_material(p)


def _config(root, **over) -> C.RunConfig:
    base = {
        "mesh.path": str(root / "vase.ply"),
        "mesh.canonicalize": True,
        "texture.material": "pbr",
        "texture.field_levels": 8,
        "texture.field_log2_table_size": 12,
        "texture.field_finest_resolution": 256,
        "texture.export_resolution": EXPORT,
        "pbr.env_resolution": 64,
        "render.resolution": RES,
        "render.backend": "cpu",
        "render.antialias": False,  # the renderer's concern (tests/render); costly on the CPU
        "optim.objective": "mse",
        "optim.iters": ITERS,
        "optim.batch_size": 4,
        "optim.lr_texture": 2e-2,
        "output.root": "",
        "output.workspace": str(root / "ws"),
        "output.val_every": 0,
        "output.ckpt_every": 0,
        "output.turntable_frames": 2,
        "output.turntable_resolution": 32,
        "output.report": True,
        "runtime.device": "cpu",
    }
    base.update(over)
    return C.override(C.RunConfig(), **base)


@pytest.fixture(scope="module")
def recovered(tmp_path_factory):
    root = tmp_path_factory.mktemp("pbr")
    save_mesh(make_demo_mesh(32, 16), root / "vase.ply")
    over = {"pbr.perturbed_normal": False, "pbr.ks_max": (0.0, 0.98, 1.0)}  # metallic free, occlusion pinned
    cfg = _config(root, **over, **{"output.save_mesh": False, "output.turntable_frames": 0})
    scene = Scene.from_config(cfg, torch.device("cpu"))
    theta = [40.0 + 100.0 * ((i * 7) % VIEWS) / (VIEWS - 1) for i in range(VIEWS)]
    cams = orbit_cameras(2.3, theta, [360.0 * i / VIEWS for i in range(VIEWS)], 1.1 * RES, RES)
    with torch.no_grad():
        target = scene.renderer.render(
            scene.rmesh, cams, _Known(), shading="pbr", light=scene.texture.light, antialias=False
        )
    result = run(cfg, objective=MSEObjective(target.image, cams), quiet=True)
    seen = torch.zeros(scene.rmesh.faces.shape[0], dtype=torch.bool)
    ids = target.rast[..., 3].long()
    seen[(ids[ids > 0] - 1).unique()] = True
    return scene, result, seen


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mse_objective_module):
    """A short PBR run with the normal perturbation on and every output: (scene, result)."""
    root = tmp_path_factory.mktemp("pbr_export")
    save_mesh(make_demo_mesh(32, 16), root / "vase.ply")
    cfg = _config(root, **{"render.resolution": 16, "optim.iters": 3})
    return Scene.from_config(cfg, torch.device("cpu")), run(cfg, objective=mse_objective_module, quiet=True)


@pytest.fixture(scope="module")
def mse_objective_module():
    import pipeline_support as S

    return S.mse_objective(4)


@pytest.mark.slow
def test_material_recovery_through_the_loop(recovered):
    """Mean absolute error on the texels of faces seen by the training views: kd ≤ 0.03, roughness ≤ 0.05 (the
    issue's bars), metallic ≤ 0.05 (measured on the shared 2-core machine: 0.010, 0.026, 0.017)."""
    scene, result, seen = recovered
    be = scene.renderer.backend
    with torch.no_grad():
        baked = result.texture.bake(scene.rmesh, be, 128, 2)
        rast = _uv_raster(be, baked.uvs, baked.uv_faces, 128)
        fid = rast[0, ..., 3].long()
        covered = fid > 0
        covered[covered.clone()] = seen[fid[fid > 0] - 1]
        pos = be.interpolate(scene.rmesh.vertices, rast, scene.rmesh.faces)[0][covered]
        want, got = known_material(pos), baked.texture[covered]
    kd_err = float((got[:, :3] - want[:, :3]).abs().mean())
    rough_err = float((got[:, 4] - want[:, 4]).abs().mean())
    metal_err = float((got[:, 5] - want[:, 5]).abs().mean())
    assert int(covered.sum()) > 5000
    assert kd_err <= 0.03 and rough_err <= 0.05 and metal_err <= 0.05, (kd_err, rough_err, metal_err)
    assert float(got[:, 3].abs().max()) == 0  # occlusion pinned by ks_min = ks_max = 0


def test_the_run_writes_the_maps_the_glb_and_the_probe(exported):
    _, result = exported
    ws = result.workspace
    for name in ("mesh.glb", "mesh.obj", "mesh.mtl", "texture_kd.png", "texture_kd_rgb.png", "texture_ks.png"):
        assert (ws / name).is_file(), name
    for name in ("texture_n.png", "probe.hdr", "turntable_maps.gif", "report.html"):
        assert (ws / name).is_file(), name
    assert any(p.name.endswith("_maps.png") for p in (ws / "validation").glob("*.png"))
    mtl = (ws / "mesh.mtl").read_text().splitlines()
    assert mtl[1:] == [
        "newmtl defaultMat",
        "bsdf   pbr",
        "map_Kd texture_kd.png",
        "map_Ks texture_ks.png",
        "bump   texture_n.png",
    ]
    probe = read_hdr(ws / "probe.hdr")
    assert probe.shape == (512, 1024, 3) and float(probe.max()) > 100  # the sun, ×2
    obj = load_mesh(ws / "mesh.obj")
    assert obj.uvs is not None and obj.normals is not None and obj.num_faces == 2 * 32 * 15 + 2 * 32


def _image(tex) -> np.ndarray:
    return np.asarray(tex.convert("RGB"), np.float32) / 255.0


def test_a_third_party_reader_gets_the_same_maps_and_factors(exported):
    """trimesh reads mesh.glb: base colour = the sRGB-encoded baked kd, metallicRoughness G = roughness and
    B = metallic, occlusion R = 1 − the original's term, the normal map, the factors (all 1), and the geometry
    in the input's frame."""
    trimesh = pytest.importorskip("trimesh")
    scene, result = exported
    ws = result.workspace
    glb = trimesh.load(ws / "mesh.glb", force="mesh")
    mat = glb.visual.material
    with torch.no_grad():
        baked = result.texture.bake(scene.rmesh, scene.renderer.backend, EXPORT, scene.cfg.texture.dilation)
    maps = baked.texture.numpy()[::-1]
    kd, ks = torch.from_numpy(maps[..., :3].copy()), maps[..., 3:6]
    tol = 1 / 255 + 1e-6
    np.testing.assert_allclose(_image(mat.baseColorTexture), srgb_encode(kd).numpy(), atol=tol)
    mr = _image(mat.metallicRoughnessTexture)
    np.testing.assert_allclose(mr[..., 1], ks[..., 1], atol=tol)
    np.testing.assert_allclose(mr[..., 2], ks[..., 2], atol=tol)
    np.testing.assert_allclose(_image(mat.occlusionTexture)[..., 0], 1 - ks[..., 0], atol=tol)
    np.testing.assert_allclose(_image(mat.normalTexture), np.clip(maps[..., 6:9], -1, 1) * 0.5 + 0.5, atol=tol)
    assert mat.metallicFactor == 1.0 and mat.roughnessFactor == 1.0
    np.testing.assert_allclose(
        np.asarray(mat.baseColorFactor, np.float32)[:3] / (255 if mat.baseColorFactor.max() > 1 else 1), 1.0
    )
    src = load_mesh(scene.cfg.mesh.path)
    np.testing.assert_allclose(
        np.sort(glb.vertices, axis=0)[[0, -1]], np.sort(src.vertices, axis=0)[[0, -1]], atol=1e-6
    )


def test_command_b_maps_onto_the_pbr_material():
    cfg = config_from_flags("O0", "O2", "O4", pbr=True, guidance="controlnet")
    assert cfg.texture.material == "pbr" and cfg.mesh.shape == "fixed" and cfg.guidance.family == "sdxl"
    assert cfg.pbr.ks_min == (0.0, 0.1, 0.0) and cfg.pbr.ks_max == (0.0, 0.98, 0.0) and cfg.pbr.perturbed_normal
    off = config_from_flags("O2", pbr=True, no_perturbed_nrm=True, ks_max=[0.0, 0.9, 1.0], albedo_iters=50)
    assert not off.pbr.perturbed_normal and off.pbr.ks_max == (0.0, 0.9, 1.0) and off.render.albedo_iters == 50
    assert C.PRESETS["texture-sdxl-controlnet-pbr-pgc"] == cfg
    C.validate(C.override(cfg, **{"guidance.text": "a panda", "mesh.path": "x.obj"}), check_files=False)


def test_bad_pbr_inputs_are_refused_in_one_line(tmp_path):
    from PIL import Image

    from pgc_fast.mesh import Mesh, write_hdr

    save_mesh(make_demo_mesh(8, 4), tmp_path / "vase.ply")
    cfg = _config(tmp_path, **{"output.turntable_frames": 0})
    with pytest.raises(C.ConfigError, match=r"needs texture.kind=field"):
        C.validate(C.override(cfg, **{"texture.kind": "uv"}))
    with pytest.raises(C.ConfigError, match=r"pbr.env_path.*'sky.png' is not a Radiance \.hdr or OpenEXR \.exr"):
        C.validate(C.override(cfg, **{"pbr.env_path": "sky.png"}))
    with pytest.raises(C.ConfigError, match=r"power of two in \[64, 2048\]"):
        C.validate(C.override(cfg, **{"pbr.env_resolution": 100}))
    Image.new("RGB", (8, 4)).save(tmp_path / "fake.png")
    (tmp_path / "fake.png").rename(tmp_path / "fake.hdr")
    with pytest.raises(PreflightError, match=r"pbr.env_path \(--env_path\): cannot use .*fake\.hdr.*not a high-dyn"):
        preflight(C.override(cfg, **{"pbr.env_path": str(tmp_path / "fake.hdr")}))
    write_hdr(tmp_path / "square.hdr", np.ones((8, 8, 3), np.float32))
    with pytest.raises(PreflightError, match=r"square\.hdr.*2:1 lat-long"):
        preflight(C.override(cfg, **{"pbr.env_path": str(tmp_path / "square.hdr")}))
    m = make_demo_mesh(8, 4)
    save_mesh(Mesh(m.vertices, m.faces, np.zeros((1, 2), np.float32), np.zeros_like(m.faces)), tmp_path / "flat.obj")
    with pytest.raises(PreflightError, match=r"flat\.obj.*degenerate UVs"):
        preflight(C.override(cfg, **{"mesh.path": str(tmp_path / "flat.obj")}))


def test_pbr_resumes_to_the_same_material(tmp_path, mse_objective):
    """A stopped PBR run continues from its checkpoint to the same material as an uninterrupted one (the frozen
    environment is not in the checkpoint: the configuration names it)."""
    save_mesh(make_demo_mesh(8, 4), tmp_path / "vase.ply")
    over = {"render.resolution": 16, "optim.iters": 4, "output.save_mesh": False, "output.turntable_frames": 0}
    cfg = _config(tmp_path, **over, **{"output.report": False, "output.ckpt_every": 2})
    whole = run(cfg, objective=mse_objective(4), quiet=True)
    part = C.override(cfg, **{"output.workspace": str(tmp_path / "ws2")})
    resumed = stopped_and_resumed(part, objective=lambda: mse_objective(4))
    a, b = whole.texture.state_dict(), resumed.texture.state_dict()
    assert "light.base" not in a and set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert math.isfinite(whole.metrics["final_loss"])


def test_a_learnable_light_moves_and_is_checkpointed(tmp_path, mse_objective, monkeypatch):
    """--learn_light: the environment is a parameter, prefiltered again (differentiably) every step."""
    import pgc_fast.render.envlight as E

    monkeypatch.setattr(E, "level_samples", lambda samples, level: 4)  # the accuracy is tested elsewhere
    save_mesh(make_demo_mesh(8, 4), tmp_path / "vase.ply")
    over = {"render.resolution": 16, "optim.iters": 1, "output.save_mesh": False, "output.turntable_frames": 0}
    cfg = _config(tmp_path, **over, **{"output.report": False, "pbr.learn_light": True})
    result = run(cfg, objective=mse_objective(4), quiet=True)
    state = result.texture.state_dict()
    start = Scene.from_config(cfg, torch.device("cpu")).texture.light.base
    assert "light.base" in state and float((state["light.base"] - start).detach().abs().max()) > 0


def test_dmtet_with_pbr_runs_as_written(tmp_path):
    """DMTet + PBR (``-O0 -O4 --pbr --guidance controlnet``: the original's Rasterizer_pbr, whose validation
    crashed) runs on the CPU: the material shades DMTet's UV-less surface in the UV-free tangent frame, the export
    bakes on a fresh atlas of the final surface with its own tangents."""
    import test_dmtet_commands as T

    save_mesh(make_demo_mesh(16, 8), tmp_path / "vase.ply")
    flags = ["-O0", "-O4", "--pbr", "--guidance", "controlnet"]
    code, ws = T._generate(tmp_path, "dmtet_pbr", flags, ["--pbr.env_resolution", "64"])
    assert code == 0
    for name in ("mesh.glb", "texture_kd.png", "texture_ks.png", "texture_n.png", "probe.hdr", "turntable_maps.gif"):
        assert (ws / name).is_file(), name
    assert any(p.name.endswith("_maps.png") for p in (ws / "validation").glob("*.png"))
    assert any(p.name.endswith("_normal.png") for p in (ws / "validation").glob("*.png"))
    glb = load_mesh(ws / "mesh.glb")
    assert glb.material is not None and glb.material.normal_texture is not None and glb.uvs is not None
    cfg = C.from_dict(__import__("yaml").safe_load((ws / "config.yaml").read_text())["config"])
    assert cfg.mesh.shape == "dmtet" and cfg.texture.material == "pbr"


def test_test_mode_renders_and_reexports_a_pbr_run(tmp_path, mse_objective):
    """--test on a PBR workspace: the checkpoint's material, lit; the maps and probe exported again."""
    from pgc_fast import cli

    save_mesh(make_demo_mesh(8, 4), tmp_path / "vase.ply")
    over = {"render.resolution": 16, "optim.iters": 2, "output.ckpt_every": 2, "output.turntable_frames": 0}
    result = run(_config(tmp_path, **over), objective=mse_objective(4), quiet=True)
    ws = result.workspace
    argv = ["generate", "--workspace", str(ws), "--output.root", "", "--test", "--output.turntable_frames", "2"]
    assert cli.main([*argv, "--output.turntable_resolution", "16"]) == 0
    assert (ws / "results" / "validation").is_dir() and (ws / "mesh.glb").is_file() and (ws / "probe.hdr").is_file()
