"""The original PGC-3D commands parse with the same meaning (the original's main.py, its argparse flags and -O preset
block); unsupported features
fail with a clear message; generated --section.field flags; validate() collects every problem."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import numpy as np
import pytest

from pgc_fast import cli
from pgc_fast import config as C
from pgc_fast.config.original_flags import apply_original_presets, config_from_flags, default_original_options

SEED_DATA = Path(os.environ.get("PGC_SEED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture()
def original_layout(tmp_path, monkeypatch):
    """cwd = a temp dir holding data/panda_spear_shield.obj, data/background.png, data/panda_reference.png.

    Uses the seed files when available (../shared/data), else small stand-ins generated here."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("panda_spear_shield.obj", "background.png", "panda_reference.png"):
        src = SEED_DATA / name
        if src.exists():
            os.symlink(src, data / name)
    if not (data / "panda_spear_shield.obj").exists():
        from pgc_fast.apps.demo import make_demo_mesh
        from pgc_fast.mesh import save_mesh

        save_mesh(make_demo_mesh(16, 8), data / "panda_spear_shield.obj")
    for name in ("background.png", "panda_reference.png"):
        if not (data / name).exists():
            from PIL import Image

            Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(data / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


PROMPT = "A panda is dressed in armor, holding a spear in one hand and a shield in the other, realistic"
COMMON = ["--text", PROMPT, "--gpus", "0,1", "--mesh_path", "data/panda_spear_shield.obj"]

# The README's 8 sample commands (the original's README sample commands), as written after `python main.py`.
SAMPLES = {
    "A": ["-O0", "-O2", "-O4", "--guidance", "controlnet", "--workspace", "panda/sdxl"],
    "B": ["-O0", "-O2", "-O4", "--pbr", "--guidance", "controlnet", "--workspace", "panda/pbr"],
    "C": ["-O0", "-O2", "-O4", "--vsd", "--guidance_scale", "7.5", "--workspace", "panda/vsd"],
    "D": ["-O0", "-O4", "--only_normal", "--workspace", "panda/normal_sds"],
    "E": ["-O0", "-O4", "--only_normal", "--guidance", "controlnet", "--workspace", "panda/normal_sds"],
    "F": ["-O0", "-O4", "--no_normal", "--guidance", "controlnet", "--workspace", "panda/rgb_sds"],
    "G": ["-O0", "-O4", "--guidance", "controlnet", "--workspace", "panda/nrm_rgb_sds"],
    "H": [
        "-O0",
        "-O2",
        "--ref_path",
        "data/panda_reference.png",
        "--control_type",
        "depth",
        "shuffle",
        "--control_scale",
        "0.7",
        "0.3",
        "--workspace",
        "panda/sd_depth_shuffle",
    ],
}


def resolve(argv: list[str]) -> C.RunConfig:
    args = cli.build_parser().parse_args(["generate", *argv])
    cfg, _notes = cli.generate.resolve_generate(args)
    return cfg


def test_sample_A_sdxl_controlnet_texture(original_layout, capsys):
    cfg = resolve(SAMPLES["A"] + COMMON)
    g, o = cfg.guidance, cfg.optim
    assert (g.family, g.controlnets, g.control_scales, g.loss) == ("sdxl", ("depth",), (1.0,), "sds")
    assert (
        C.resolved_model(g) == "stabilityai/stable-diffusion-xl-base-1.0"
    )  # the original fell back to 0.9 here: fixed
    assert (g.pgc_tau, g.pgc_variant, g.guidance_scale, g.dir_text, g.normal_sds, g.rgb_sds) == (
        0.1,
        "clip",
        100.0,
        True,
        False,
        True,
    )
    assert (cfg.mesh.shape, cfg.mesh.canonicalize, cfg.texture.material) == ("fixed", True, "albedo")
    assert (o.batch_size, o.iters, o.precision, o.optimizer) == (2, 1200, "auto", "adam")
    assert (cfg.render.resolution, cfg.render.background, cfg.render.zoom_stages) == (1024, "scenery", False)
    assert g.scheduler == "dpm" and o.lr_geometry == pytest.approx(1e-5 / 20) and o.lr_texture == 1e-3
    assert cfg.runtime.gpus == "0,1" and cfg.n_gpus == 2 and cfg.views_per_step == 2  # per process (torchrun)
    assert cfg.workspace_path == "exp/panda/sdxl"
    assert cli.main(["generate", "--dry-run", *SAMPLES["A"], *COMMON]) == 0
    out = capsys.readouterr().out
    assert "family: sdxl" in out and "pgc_tau: 0.1" in out


def test_sample_C_vsd(original_layout):
    cfg = resolve(SAMPLES["C"] + COMMON)
    g = cfg.guidance
    assert (g.family, g.loss, g.controlnets, g.guidance_scale) == ("sdxl", "vsd", (), 7.5)
    assert (cfg.optim.batch_size, cfg.optim.iters) == (1, 2400)  # VSD knock-on rule
    assert cfg.mesh.shape == "fixed"
    assert cli.main(["generate", "--dry-run", *SAMPLES["C"], *COMMON]) == 0


def test_sample_B_pbr(original_layout):
    cfg = resolve(SAMPLES["B"] + COMMON)
    g = cfg.guidance
    assert cfg.texture.material == "pbr" and cfg.mesh.shape == "fixed" and cfg.pbr.perturbed_normal
    assert (g.family, g.controlnets, cfg.optim.batch_size, cfg.optim.iters) == ("sdxl", ("depth",), 2, 1200)
    assert cli.main(["generate", "--dry-run", *SAMPLES["B"], *COMMON]) == 0


def test_sample_H_sd15_multi_controlnet(original_layout):
    cfg = resolve(SAMPLES["H"] + COMMON)
    g, r = cfg.guidance, cfg.render
    assert (g.family, g.controlnets, g.control_scales) == ("sd", ("depth", "shuffle"), (0.7, 0.3))
    assert C.resolved_model(g) == C.DEFAULT_MODELS["sd-controlnet"]  # SD 1.5, as the original's SDControlNet
    assert g.ref_path == "data/panda_reference.png" and g.lambda_ref == 0.1
    assert r.focal_range == r.focal_range_fine == (1.025, 1.025)
    assert (r.resolution, r.background, cfg.optim.batch_size, cfg.optim.iters) == (512, "color", 4, 2000)
    assert r.zoom_stages  # 10 epochs → 3 stages (focal fixed anyway)
    assert cli.main(["generate", "--dry-run", *SAMPLES["H"], *COMMON]) == 0


@pytest.mark.parametrize("name", ["D", "E", "F", "G"])
def test_shape_samples_validate(original_layout, name):
    """The DMTet samples (issue 17) are accepted as written; tests/pipeline/test_dmtet_commands.py runs them."""
    C.validate(resolve(SAMPLES[name] + COMMON))
    assert cli.main(["generate", "--dry-run", *SAMPLES[name], *COMMON]) == 0


def test_dmtet_samples_keep_their_meaning(original_layout):
    d, f, g = (resolve(SAMPLES[k] + COMMON) for k in "DFG")
    assert d.mesh.shape == f.mesh.shape == g.mesh.shape == "dmtet"
    assert (d.guidance.rgb_sds, d.guidance.normal_sds, d.optim.batch_size, d.optim.iters) == (False, True, 2, 1200)
    assert (f.guidance.rgb_sds, f.guidance.normal_sds, f.guidance.controlnets) == (True, False, ("depth",))
    assert f.optim.lr_geometry == pytest.approx(5e-7)
    assert (g.guidance.rgb_sds, g.guidance.normal_sds, g.optim.batch_size, g.optim.iters) == (True, True, 1, 2400)
    assert d.render.shading == "random"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["-O2", "--n_targets", "2"], "--n_targets"),
    ],
)
def test_other_unsupported_options(original_layout, capsys, argv, needle):
    assert cli.main(["generate", "--dry-run", *argv, *COMMON]) == 2
    err = capsys.readouterr().err
    assert C.UNSUPPORTED_MESSAGE in err and needle in err


def test_elif_chain_and_guidance_override():
    # -O2 forces --guidance controlnet (SD 1.5) unless -O4; -O1 -O4 does not enable SDXL (elif chain).
    assert config_from_flags("O2", guidance="stable-diffusion-xl").guidance.controlnets == ("depth",)
    assert config_from_flags("O2", guidance="stable-diffusion-xl").guidance.family == "sd"
    assert config_from_flags("O1", "O4").guidance.family == "sd"
    opt = apply_original_presets(default_original_options())
    assert (opt.fp16, opt.grad_clip_rgb, opt.bs, opt.iters) == (False, -1.0, 4, 2000)
    latent = config_from_flags("O2", "O4", latent=True)
    assert latent.render.resolution == 256


def test_new_flags_and_generated_flags(original_layout):
    cfg = resolve(
        [
            "-O0",
            "-O2",
            *COMMON,
            "--model",
            "tiny-sd",
            "--device",
            "cpu",
            "--texture",
            "uv",
            "--force",
            "--optim.iters",
            "7",
            "--guidance.pgc_tau",
            "none",
            "--render.antialias",
            "--no-render.jitter_pose",
            "--guidance.t_range",
            "0.1",
            "0.9",
        ]
    )
    assert (cfg.guidance.model, cfg.runtime.device, cfg.texture.kind, cfg.output.force) == (
        "tiny-sd",
        "cpu",
        "uv",
        True,
    )
    assert (cfg.optim.iters, cfg.guidance.pgc_tau, cfg.guidance.t_range) == (7, None, (0.1, 0.9))
    # an explicit --bs survives the SDXL knock-on rule (a bug of the original), with a note
    args = cli.build_parser().parse_args(["generate", "-O0", "-O2", "-O4", "--bs", "3", *COMMON])
    cfg, notes = cli.generate.resolve_generate(args)
    assert cfg.optim.batch_size == 3 and any("--bs 3 kept" in n for n in notes)
    # presets
    cfg = resolve(["--preset", "texture-sdxl-controlnet-pgc", "--text", "x", "--mesh_path", "m.obj"])
    assert cfg == C.override(
        config_from_flags("O0", "O2", "O4", guidance="controlnet"), **{"guidance.text": "x", "mesh.path": "m.obj"}
    )


def test_guidance_engine_knobs_are_run_flags(original_layout):
    """The guidance engine's own knobs are fields of the run config's guidance section, hence --guidance.* flags."""
    cfg = resolve(
        [
            "-O0",
            "-O2",
            *COMMON,
            "--guidance.t_range_end",
            "0.02",
            "0.3",
            "--guidance.resolution",
            "none",
            "--guidance.depth_convention",
            "original",
            "--no-guidance.vae_sample",
            "--guidance.ssd_m",
            "50",
        ]
    )
    g = cfg.guidance
    assert (g.t_range_end, g.resolution, g.depth_convention, g.vae_sample, g.ssd_m) == (
        (0.02, 0.3),
        None,
        "original",
        False,
        50,
    )
    bad = C.override(
        cfg,
        **{
            "guidance.t_range_end": (0.5, 0.1),
            "guidance.vsd_t_range": (0.2, 1.5),
            "guidance.resolution": 4,
            "guidance.angle_front": 0.0,
            "guidance.vsd_camera_dropout": 2.0,
            "guidance.depth_convention": "far_bright",
        },
    )
    with pytest.raises(C.ConfigError) as e:
        C.validate(bad, check_files=False)
    joined = "\n".join(e.value.problems)
    for needle in (
        "t_range_end",
        "vsd_t_range",
        "guidance.resolution",
        "angle_front",
        "vsd_camera_dropout",
        "depth_convention",
    ):
        assert needle in joined, needle


def test_every_config_field_has_a_flag_and_a_docstring():
    parser = cli.build_parser()
    gen = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("generate"))
    opts = {s for a in gen._actions for s in a.option_strings}
    for sec in C.SECTIONS:
        cls = type(getattr(C.RunConfig(), sec))
        docs = C.field_docs(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f"--{sec}.{f.name}" in opts
            assert docs.get(f.name), f"{sec}.{f.name} has no docstring"
            if typing.get_origin(hints[f.name]) is typing.Literal:
                assert getattr(getattr(C.RunConfig(), sec), f.name) in typing.get_args(hints[f.name])


def test_validate_reports_every_problem_at_once(tmp_path):
    cfg = C.override(
        C.RunConfig(),
        **{
            "guidance.text": "",
            "guidance.controlnets": ("depth", "bogus"),
            "guidance.control_scales": (1.0,),
            "guidance.t_range": (0.6, 0.2),
            "render.resolution": 2,
            "optim.iters": 0,
            "optim.batch_size": 0,
            "mesh.path": str(tmp_path / "missing.obj"),
            "pbr.env_resolution": 100,
            "runtime.gpus": "a,b",
            "optim.precision": "fp8",
        },
    )
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg)
    probs = e.value.problems
    joined = "\n".join(probs)
    for needle in (
        "guidance.text",
        "bogus",
        "control_scales",
        "t_range",
        "render.resolution",
        "optim.iters",
        "optim.batch_size",
        "no such file",
        "pbr",
        "runtime.gpus",
        "optim.precision",
    ):
        assert needle in joined, needle
    assert len(probs) >= 11
    assert isinstance(e.value, ValueError)


def test_config_dict_roundtrip():
    for cfg in C.PRESETS.values():
        assert C.from_dict(C.to_dict(cfg)) == cfg
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"optim": {"iterz": 1}, "nope": {}})
    assert len(e.value.problems) == 2


def test_config_yaml_roundtrip_through_cli(original_layout, capsys):
    cfg = resolve(SAMPLES["A"] + COMMON)
    import yaml

    (original_layout / "config.yaml").write_text(yaml.safe_dump({"config": C.to_dict(cfg)}))
    again = resolve(["--config", "config.yaml", "--optim.iters", "5"])
    assert again == C.override(cfg, **{"optim.iters": 5})
    assert cli.main(["generate", "--dry-run", "--config", "config.yaml"]) == 0
