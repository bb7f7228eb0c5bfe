"""Every flag of the original main.py is accounted for (config/original_flags.py): mapped onto the configuration
(and each mapped flag changes it), an action (--test, --ckpt), dead in the original (ignored with a note that says
why), or deliberately not reproduced (refused with the reason, in --help-all and in the error)."""

from __future__ import annotations

import re

import pytest

from pgc_fast import cli
from pgc_fast.config import schema as C
from pgc_fast.config.original_flags import (
    DEAD_FLAGS,
    NOT_REPRODUCED,
    ORIGINAL_FLAGS,
    apply_original_presets,
    config_from_flags,
    default_original_options,
    original_to_config,
)

# The original's argparse flags (its main.py at 14b9653), all of them.
ORIGINAL_MAIN_PY = """text negative O0 O1 O2 O3 O4 test test_mesh save_mesh eval_interval workspace guidance guidance_o
guidance_scale control_type control_scale sd_version load_finetuned seed mesh_name mesh_type from_coarse mesh_path
canonicalize optimizer scheduler use_refiner fp16 no_normal no_MLP only_normal zero123 left ref_path lambda_ref
dreamtime init_time pbr no_perturbed_nrm ks_min ks_max fix_mesh init_texture pos_perturb latent vsd bgt csd ssd ssd_M
cfg_rescale
bg_color bg_scenery reconstruction data_root lambda_entropy lambda_opacity lambda_orient lambda_mask lambda_smooth
lambda_saturation iters warmup_iters smooth_iters refine_iters lr lr_fine ckpt ckpt_fine albedo albedo_iters
uniform_sphere_rate weight_choice grad_clip grad_clip_rgb grad_clip_latent grad_suppress_type local_rank gpus bs port w
h jitter_pose res_fine tet_res bound dt_gamma min_near radius_range fovy_range focal_range focal_range_fine dir_text
suppress_face angle_overhead angle_front n_targets local_prob ls_all single_stage""".split()

# Mapped flags that change no configuration field on their own, and why (each is tested where it acts).
NO_FIELD = {
    "O0": "a preset (tests/pipeline/test_cli.py)",
    "O1": "a preset",
    "O2": "a preset",
    "O3": "a preset",
    "O4": "a preset",
    "test": "an action (tests/pipeline/test_render_only.py)",
    "ckpt": "picks the checkpoint of --test",
    "save_mesh": "pgc-fast always exports",
    "sd_version": "only the SDXL family reads it (test below)",
    "albedo_iters": "only DMTet's shading reads it; -O1 is refused until DMTet exists",
    "n_targets": "values > 0 are refused until GMM part cameras exist",
}
_STR = {
    "text": "a vase",
    "negative": "blurry",
    "workspace": "elsewhere",
    "guidance": "stable-diffusion-xl",
    "mesh_path": "other.obj",
    "optimizer": "adamw",
    "scheduler": "ddim",
    "ref_path": "ref.png",
    "guidance_o": "clip",  # the only value that acts: the CLIP reference loss
    "gpus": "0,1",
}
_LISTS = {
    "control_type": ["normal"],
    "control_scale": [0.5],
    "lr_fine": [2e-5, 2e-3],
    "radius_range": [1.0, 1.5],
    "focal_range": [0.8, 1.0],
    "focal_range_fine": [1.2, 1.4],
    "ks_min": [0.0, 0.2, 0.1],
    "ks_max": [0.0, 0.9, 0.8],
}


def test_every_flag_of_the_original_is_accounted_for_once():
    groups = [set(ORIGINAL_FLAGS), set(DEAD_FLAGS), set(NOT_REPRODUCED)]
    assert sum(len(g) for g in groups) == len(set().union(*groups))  # disjoint
    assert set().union(*groups) == set(ORIGINAL_MAIN_PY)


def _value(name: str, default, kind: str):
    """A value of the flag other than its default."""
    if kind == "bool":
        return True
    if kind == "str":
        return _STR[name]
    if kind == "int":
        return 1 if name == "grad_suppress_type" else default + 3
    if kind == "float":
        return 0.5 if default <= 0 else default * 0.5
    return _LISTS[name]


def _changed(value_of: dict, name: str, value) -> bool:
    """Whether setting ``name`` changes the resolved config from the plain or the -O0 -O2 baseline."""
    for presets in ((), ("O0", "O2")):
        opt = default_original_options()
        for p in presets:
            setattr(opt, p, True)
        setattr(opt, name, value)
        if C.to_dict(original_to_config(apply_original_presets(opt))) != value_of[presets]:
            return True
    return False


def test_every_mapped_flag_changes_the_configuration():
    value_of = {}
    for presets in ((), ("O0", "O2")):
        base = default_original_options()
        for p in presets:
            setattr(base, p, True)
        value_of[presets] = C.to_dict(original_to_config(apply_original_presets(base)))
    inert = []
    for name, (default, kind) in ORIGINAL_FLAGS.items():
        if name in NO_FIELD:
            continue
        if not _changed(value_of, name, _value(name, default, kind)):
            inert.append(name)
    assert not inert, f"flags mapped to nothing: {inert}"
    assert config_from_flags("O4", sd_version="xl-0.9").guidance.model == "stabilityai/stable-diffusion-xl-base-0.9"


def test_view_prompt_flags_map_onto_the_guidance():
    g = config_from_flags("O2", left=True, angle_front=60.0, angle_overhead=20.0, ssd_M=50).guidance
    assert (g.front_azimuth, g.angle_front, g.angle_overhead, g.ssd_m) == (180.0, 60.0, 20.0, 50)


@pytest.mark.parametrize("name", sorted(NOT_REPRODUCED))
def test_flags_not_reproduced_are_refused_with_their_reason(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    kind, neutral, why = NOT_REPRODUCED[name]
    common = ["generate", "--dry-run", "-O2", "--text", "a vase", "--mesh_path", "m.obj"]
    value = {"bool": [], "str": ["something"], "float": ["2.0"]}[kind]
    assert cli.main([*common, f"--{name}", *value]) == 2
    err = capsys.readouterr().err
    assert f"--{name} is not reproduced by pgc-fast: {why}" in err and len(err.strip().splitlines()) == 1
    if kind != "bool":  # at the value where it did nothing, it is accepted with a note
        assert cli.main([*common, f"--{name}", str(neutral)]) == 0
        assert f"--{name} {neutral} is ignored" in capsys.readouterr().err


def test_dead_flags_say_why_they_are_ignored(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    argv = ["generate", "--dry-run", "-O2", "--text", "a vase", "--mesh_path", "m.obj", "--port", "7000", "--w", "5"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "--port is ignored (torchrun picks the rendezvous port" in err
    assert "--w is ignored (it had no effect in the original either)" in err


def test_help_all_gives_each_refusal_its_reason(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help-all"])
    flat = " ".join(capsys.readouterr().out.split())
    for name, (_, _, why) in NOT_REPRODUCED.items():
        assert re.search(rf"--{name}( {name.upper()})? not reproduced: " + re.escape(why[:40]), flat), name
