"""Honest on every input (issue 22): the original's commands run from any directory, every refusal comes before
anything is loaded, in one line, without a traceback (--debug shows it) and without leaving a workspace; nothing
the user passes is silently ignored; every number is checked; a run that turns non-finite stops and exports
nothing; mistyped names get a suggestion; --help fits on a screen."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path

import pytest
import torch

from pgc_fast import cli
from pgc_fast import config as C
from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.cli.generate_help import ORIGINAL_HELP, short_help
from pgc_fast.config.original_flags import NOT_REPRODUCED, ORIGINAL_FLAGS
from pgc_fast.mesh import save_mesh

PROMPT = ["--text", "a panda in armour"]


@pytest.fixture()
def fresh_dir(tmp_path, monkeypatch):
    """A directory with nothing of the original's layout (no data/), as a user's own; my.glb is a small mesh."""
    monkeypatch.chdir(tmp_path)
    save_mesh(make_demo_mesh(12, 6), tmp_path / "my.glb")
    return tmp_path


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_refusal(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("pgc-fast generate: ") and needle in lines[0], err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------- item 4: from any directory
def test_readme_preset_example_and_command_a_from_a_fresh_directory(fresh_dir, capsys):
    readme = ["generate", "--preset", "texture-sdxl-controlnet-pgc", "--text", "…", "--mesh_path", "my.glb"]
    code, out, err = _main([*readme, "--model", "sdxl-random", "--dry-run"], capsys)
    assert code == 0, err
    assert "background: scenery" in out and "bg_image: null" in out
    code, _, err = _main(["generate", "-O0", "-O2", "-O4", "--guidance", "controlnet", *PROMPT, "--mesh_path", "my.glb",
                          "--dry-run"], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = _main([*readme, "--render.bg_image", "data/background.png", "--dry-run"], capsys)
    _one_line_refusal(code, err, "--render.bg_image")


# ------------------------------------------------------------------- item 6: refusals before anything, one line
@pytest.mark.parametrize(
    "text",
    ["", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n"],
    ids=["empty", "no-faces", "degenerate"],
)
def test_mesh_without_usable_faces_refused_before_the_workspace(fresh_dir, capsys, text):
    (fresh_dir / "e.obj").write_text(text)
    argv = ["generate", "-O2", *PROMPT, "--mesh_path", "e.obj", "--model", "tiny-sd", "--device", "cpu"]
    code, _, err = _main(argv, capsys)
    _one_line_refusal(code, err, "e.obj")
    assert not (fresh_dir / "exp").exists()


def test_mesh_extension_and_malformed_mesh_refused_in_one_line_without_workspace(fresh_dir, capsys):
    (fresh_dir / "m.stl").write_text("solid x\nendsolid x\n")
    code, _, err = _main(["generate", "-O2", *PROMPT, "--mesh_path", "m.stl", "--model", "tiny-sd"], capsys)
    _one_line_refusal(code, err, "unknown mesh format '.stl'")
    (fresh_dir / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    for dry in ([], ["--dry-run"]):
        argv = ["generate", "-O2", *PROMPT, "--mesh_path", "bad.obj", "--model", "tiny-sd", "--device", "cpu", *dry]
        code, _, err = _main(argv, capsys)
        _one_line_refusal(code, err, "bad.obj")
    assert not (fresh_dir / "exp").exists()  # nothing created
    from pgc_fast.train.preflight import PreflightError

    with pytest.raises(PreflightError) as e:  # --debug: the exception itself, traceback and all
        cli.main(["generate", "-O2", *PROMPT, "--mesh_path", "bad.obj", "--model", "tiny-sd", "--debug"])
    assert isinstance(e.value.__cause__, ValueError)


def test_missing_model_weights_leave_no_workspace(fresh_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(fresh_dir / "cache"))
    argv = ["generate", "-O2", *PROMPT, "--mesh_path", "my.glb", "--model", "no-org/no-model", "--device", "cpu"]
    code, _, err = _main([*argv, "--res_fine", "32", "--iters", "1"], capsys)
    assert code == 2 and "diffusion model weights are missing" in err and "Traceback" not in err, err
    assert not (fresh_dir / "exp").exists()  # the run had created exp/workspace; nothing was written into it


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_and_gpu_count_refused_without_cuda(fresh_dir, capsys):
    base = ["generate", "-O2", *PROMPT, "--mesh_path", "my.glb", "--model", "tiny-sd"]
    code, _, err = _main([*base, "--device", "cuda"], capsys)
    _one_line_refusal(code, err, "--device cuda")
    code, _, err = _main([*base, "--gpus", "0,1"], capsys)
    _one_line_refusal(code, err, "--gpus 0,1 asks for 2 GPUs but torch sees no CUDA device")
    assert not (fresh_dir / "exp").exists()
    code, _, err = _main([*base, "--gpus", "0,1", "--dry-run"], capsys)  # another machine's config: a note
    assert code == 0 and "note: on this machine the run would be refused: --gpus 0,1" in err


def test_fp8_refused_where_it_cannot_run(fresh_dir, capsys):
    """--guidance.fp8 needs a GPU of compute capability 9.0 (preflight) and cannot train VSD's LoRA (validation)."""
    base = ["generate", "-O2", *PROMPT, "--mesh_path", "my.glb", "--model", "tiny-sd", "--guidance.fp8"]
    code, _, err = _main([*base, "--device", "cpu"], capsys)
    _one_line_refusal(code, err, "guidance.fp8 (--guidance.fp8) needs a CUDA GPU of compute capability 9.0")
    assert not (fresh_dir / "exp").exists()
    code, _, err = _main([*base, "-O4", "--vsd", "--device", "cpu", "--dry-run"], capsys)
    assert code == 2 and "guidance.fp8 cannot be combined with loss=vsd" in err, err


def test_control_type_normal_is_accepted_or_refused_at_validation(fresh_dir, capsys):
    argv = ["generate", "-O2", *PROMPT, "--mesh_path", "my.glb", "--control_type", "normal", "--dry-run"]
    code, _, err = _main(argv, capsys)
    assert code == 0, err  # SD 1.5 has a normal ControlNet (the original's fusing/...-normal)
    code, _, err = _main([*argv[:-1], "-O4", "--guidance", "controlnet", "--dry-run"], capsys)
    _one_line_refusal(code, err, "no default 'normal' ControlNet for the sdxl family")


# ------------------------------------------------------------------------- nothing silently ignored
@pytest.mark.parametrize(
    "argv, note",
    [
        (["-O0", "-O2", "--grad_suppress_type", "3"], "--grad_suppress_type 3 kept"),
        (["-O0", "-O2", "--grad_clip_rgb", "0.2"], "--grad_clip_rgb 0.2 kept"),
        (["-O2", "--guidance", "stable-diffusion"], "--guidance stable-diffusion overridden"),
        (["-O2", "--guidance_o", "stable-diffusion"], "--guidance_o stable-diffusion is ignored"),
        (["-O2", "-O4", "--control_type", "depth"], "--control_type is ignored"),
        (["-O2", "--sd_version", "xl-0.9"], "--sd_version is ignored"),
        (["-O2", "--albedo_iters", "5"], "--albedo_iters is ignored"),
        (["-O2", "--lr", "3"], "--lr is ignored"),
    ],
)
def test_every_override_is_announced(fresh_dir, capsys, argv, note):
    code, _, err = _main(["generate", *argv, *PROMPT, "--mesh_path", "my.glb", "--dry-run"], capsys)
    assert code == 0, err
    assert f"note: {note}" in err


def test_explicit_pgc_variant_wins_over_o0():
    args = cli.build_parser().parse_args(["generate", "-O0", "-O2", "--grad_suppress_type", "3", *PROMPT])
    cfg, _ = cli.generate.resolve_generate(args)
    assert (cfg.guidance.pgc_variant, cfg.guidance.pgc_tau) == ("sigmoid", 0.1)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["-O2", "--guidance_o", "clip"], "--guidance_o clip"),
        (["-O0", "-O4", "--vsd"], "its VSD guidance has no normal-map step"),
    ],
)
def test_refused_flags_say_so_and_advice_is_right(fresh_dir, capsys, argv, needle):
    code, _, err = _main(["generate", *argv, *PROMPT, "--mesh_path", "my.glb", "--dry-run"], capsys)
    assert code == 2 and needle in err and "add -O2" not in err, err


def test_elif_chain_skips_are_announced(fresh_dir, capsys):
    code, _, err = _main(["generate", "-O1", "-O4", *PROMPT, "--mesh_path", "my.glb", "--dry-run"], capsys)
    assert code == 0 and "note: -O4 is ignored" in err  # -O1 alone: a DMTet run (issue 17)


# ------------------------------------------------------------------------------- every number is checked
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--lr_fine", "1e-5", "nan"], "--lr_fine must be a finite number, got 1e-05 nan"),
        (["--guidance_scale", "nan"], "--guidance_scale must be a finite number"),
        (["-O0", "--grad_clip_rgb", "nan"], "--grad_clip_rgb must be a finite number"),
        (["--grad_clip", "inf"], "--grad_clip must be a finite number"),
        (["--optim.lr_texture", "nan"], "optim.lr_texture must be finite"),
        (["--guidance.guidance_scale", "nan"], "guidance.guidance_scale must be finite"),
        (["--guidance.pgc_tau", "nan"], "guidance.pgc_tau must be finite"),
        (["--optim.grad_clip", "inf"], "optim.grad_clip must be finite"),
        (["--seed", str(2**70)], "optim.seed (--seed) must be an integer in [0, 2^32 - 1]"),
        (["--seed", "-1"], "optim.seed"),
        (["--guidance.t_range", "nan", "0.5"], "guidance.t_range must be finite"),
        (["--render.radius_range", "-1", "2"], "render.radius_range"),
        (["--optim.eps", "0"], "optim.eps must be > 0"),
        (["--guidance.grad_scale", "0"], "guidance.grad_scale must be > 0"),
        (["--model", "tiny-sdxxl"], "did you mean 'tiny-sdxl'?"),
        (["--model", "./no/such/dir"], "no such directory"),
    ],
)
def test_numbers_and_names_refused_at_validation(fresh_dir, capsys, argv, needle):
    code, _, err = _main(["generate", "-O2", *PROMPT, "--mesh_path", "my.glb", *argv, "--dry-run"], capsys)
    _one_line_refusal(code, err, needle)


def test_bad_config_files_are_one_line(fresh_dir, capsys):
    (fresh_dir / "list.yaml").write_text("- 1\n- 2\n")
    (fresh_dir / "bad.yaml").write_text("config: {optim: [\n")
    (fresh_dir / "types.yaml").write_text("config:\n  optim:\n    iters: many\n  guidance:\n    text: x\n")
    for name, needle in (
        ("list.yaml", "expected a config.yaml"),
        ("bad.yaml", "not valid YAML"),
        ("missing.yaml", "cannot read it"),
        ("types.yaml", "optim.iters must be of type int, got 'many'"),
    ):
        code, _, err = _main(["generate", "--config", name, "--mesh.path", "my.glb", "--dry-run"], capsys)
        assert code == 2 and needle in err and "Traceback" not in err, err


def test_every_float_field_is_checked_for_finiteness():
    """Not a list kept by hand: each float (or tuple-of-float) field set to nan is refused by name."""
    for sec in C.SECTIONS:
        cls = type(getattr(C.RunConfig(), sec))
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            args = typing.get_args(hint)
            if hint is float or (hint == (float | None)):
                bad = math.nan
            elif typing.get_origin(hint) is tuple and args and args[0] is float:
                n = len(args) if args[-1] is not Ellipsis else 1
                bad = (math.nan,) * n
            else:
                continue
            cfg = C.override(C.RunConfig(), **{f"{sec}.{f.name}": bad, "guidance.text": "x", "mesh.path": "m.obj"})
            with pytest.raises(C.ConfigError) as e:
                C.validate(cfg, check_files=False)
            assert any(p.startswith(f"{sec}.{f.name} must be finite") for p in e.value.problems), (sec, f.name)


def test_wrong_types_from_a_config_file_are_refused_not_crashed():
    cfg = C.override(C.RunConfig(), **{"optim.iters": "many", "render.resolution": 2.5, "guidance.text": "x"})
    with pytest.raises(C.ConfigError) as e:
        C.validate(cfg, check_files=False)
    assert {p.split(" ")[0] for p in e.value.problems} >= {"optim.iters", "render.resolution"}


# ------------------------------------------------------------------------------ non-finite training stops
class _TurnsNaN:
    """An MSE objective whose loss becomes NaN from step ``at`` (as a diverging run would)."""

    def __init__(self, inner, at: int) -> None:
        self.inner, self.at = inner, at

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def loss(self, step, render, cameras, ctx):
        out = self.inner.loss(step, render, cameras, ctx)
        if step + 1 >= self.at:
            out.loss = out.loss * float("nan")
        return out


def test_non_finite_loss_stops_naming_the_step_keeps_checkpoint_exports_nothing(tmp_path, tiny_config, mse_objective):
    from pgc_fast.train.metrics import NonFiniteError
    from pgc_fast.train.trainer import run

    over = {"optim.iters": 30, "output.ckpt_every": 10, "output.save_mesh": True, "output.val_every": 0}
    cfg = tiny_config(tmp_path, "ws", "uv", **over)
    with pytest.raises(NonFiniteError, match=r"the loss became nan at step 14 .*last good checkpoint is kept"):
        run(cfg, objective=_TurnsNaN(mse_objective(), at=14), quiet=True)
    ws = Path(cfg.workspace_path)
    ckpts = sorted(p.name for p in (ws / "checkpoints").iterdir())
    assert ckpts and all("20" not in n for n in ckpts), ckpts  # step 10's checkpoint only
    assert not (ws / "texture.png").exists() and not (ws / "mesh.glb").exists()


def test_non_finite_parameters_stop_too(tmp_path, tiny_config, mse_objective):
    from pgc_fast.train.metrics import NonFiniteError
    from pgc_fast.train.trainer import run

    class PoisonAfterStep(_TurnsNaN):
        def loss(self, step, render, cameras, ctx):  # a finite loss, NaN gradients from step ``at``
            out = self.inner.loss(step, render, cameras, ctx)
            if step + 1 >= self.at:
                out.loss = out.loss + 0.0 * torch.sqrt(-(render.image.sum() ** 2) - 1)
            return out

    cfg = tiny_config(tmp_path, "ws", "uv", **{"optim.iters": 12, "output.save_mesh": True, "output.val_every": 0})
    with pytest.raises(NonFiniteError, match="not a finite number"):
        run(cfg, objective=PoisonAfterStep(mse_objective(), at=5), quiet=True)
    assert not (Path(cfg.workspace_path) / "texture.png").exists()


# ---------------------------------------------------------------------------- item 7/8: typos and help
def test_mistyped_flag_and_choice_get_a_suggestion(capsys):
    for argv, hint in (
        (["generate", "--guidance_scal", "3"], "did you mean --guidance_scale?"),
        (["generate", "--optim.iter", "3"], "did you mean --optim.iters?"),
        (["generate", "--preset", "texture-sdxl-controlnet"], "did you mean 'texture-sdxl-controlnet-pgc'?"),
        (["generat"], "did you mean 'generate'?"),
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and hint in err, err
        if argv[0] == "generate":
            assert err.startswith("usage: pgc-fast generate")


def test_help_is_short_plain_and_marks_refused_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    out = capsys.readouterr().out
    assert out == short_help()
    assert len(out.splitlines()) <= 80
    assert not re.search(r"``|:func:|:class:|reference_spec", out)
    for needle in ("--text", "--mesh_path", "--preset", "texture-sdxl-controlnet-pgc", "-O0", "-O4", "--help-all"):
        assert needle in out, needle
    assert "refused (not supported yet): --n_targets > 0" in out and "--pbr" in out  # PBR runs (issue 18)


def test_help_all_lists_every_option_once_with_a_description(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help-all"])
    out = capsys.readouterr().out
    assert not re.search(r"``|:func:|:class:|reference_spec", out)
    assert set(ORIGINAL_HELP) == set(ORIGINAL_FLAGS) and all(ORIGINAL_HELP.values())
    for name in ORIGINAL_FLAGS:
        assert re.search(rf"^\s+-{{1,2}}{name}\b", out, re.M), name
    flat = " ".join(out.split())
    for name in NOT_REPRODUCED:
        assert re.search(rf"--{name} {name.upper()} not reproduced: |--{name} not reproduced: ", flat), name
    assert "--[no-]render.antialias" in out and "--no-render.antialias" not in out
