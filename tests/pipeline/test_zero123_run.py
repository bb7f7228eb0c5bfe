"""``-O3`` (Zero123 image-to-3D) from the original's command line: its flags map as the original's presets and
trainer meant them, and a 2-step run with tiny-zero123 (+ tiny-sd for the text term) on the seed's panda and
panda_reference.png writes every output. Plain ``-O3`` optimises DMTet (tests/pipeline/test_dmtet_commands.py)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml

from pgc_fast import cli
from pgc_fast.config.original_flags import config_from_flags
from pipeline_support import stopped_and_resumed

SEED_DATA = Path(os.environ.get("PGC_SEED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
REF = SEED_DATA / "panda_reference.png"
MESH = SEED_DATA / "panda_spear_shield.obj"
needs_seed = pytest.mark.skipif(not (REF.exists() and MESH.exists()), reason="seed data (../shared/data) absent")
PROMPT = ["--text", "A panda is dressed in armor, holding a spear in one hand and a shield in the other"]


def test_o3_flags_mean_what_the_original_ran():
    cfg = config_from_flags("O3", ref_path="data/panda_reference.png")
    g, r = cfg.guidance, cfg.render
    assert (g.zero123, g.zero123_loss, g.zero123_guidance_scale, g.zero123_model) == (True, "bgt", 100.0, "zero123-xl")
    assert (g.loss, g.grad_scale, g.dir_text, g.normal_sds) == ("sds", 0.01, True, False)  # the text term: SDS × 0.01
    assert (r.radius_range, r.focal_range, r.focal_range_fine) == ((1.0, 1.5), (1.025, 1.025), (1.025, 1.025))
    assert cfg.mesh.shape == "dmtet" and cfg.mesh.smooth_iters == cfg.optim.iters and cfg.mesh.lambda_smooth == 1e6
    assert (g.clip_reference, config_from_flags("O3", guidance_o="clip").guidance.clip_reference) == (0.0, 1.0)
    z2 = config_from_flags("O2", zero123=True).guidance  # --zero123 without --bgt: Zero123 SDS, ControlNet text
    assert (z2.zero123, z2.zero123_loss, z2.loss, z2.controlnets, z2.grad_scale) == (
        True,
        "sds",
        "sds",
        ("depth",),
        0.01,
    )
    assert config_from_flags("O2", bgt=True).guidance.loss == "bgt"  # without Zero123 --bgt is the text loss


def test_o3_needs_a_reference_and_says_how_to_run_today(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert cli.main(["generate", "-O3", *PROMPT, "--mesh_path", "m.obj", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "guidance.zero123 (-O3 / --zero123) needs a reference image" in err
    assert "adding --fix_mesh keeps the -O3 image guidance" in err or "DMTet" not in err


@needs_seed
def test_o3_runs_two_steps_and_writes_every_output(tmp_path, capsys):
    ws = tmp_path / "panda_o3"
    argv = [
        "generate",
        "-O3",
        "--fix_mesh",
        *PROMPT,
        "--ref_path",
        str(REF),
        "--mesh_path",
        str(MESH),
        "--workspace",
        str(ws),
        "--output.root",
        "",
        "--model",
        "tiny-sd",
        "--guidance.zero123_model",
        "tiny-zero123",
        "--device",
        "cpu",
        "--iters",
        "2",
        "--bs",
        "2",
        "--res_fine",
        "64",
        "--output.turntable_frames",
        "4",
        "--output.turntable_resolution",
        "64",
        "--texture.export_resolution",
        "128",
        "--texture.field_levels",
        "8",
        "--texture.field_log2_table_size",
        "12",
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    for name in (
        "mesh.obj",
        "mesh.mtl",
        "texture.png",
        "mesh.glb",
        "turntable.mp4",
        "config.yaml",
        "metrics.json",
        "report.html",
    ):
        assert (ws / name).is_file(), name
    assert list((ws / "validation").glob("*_rgb.png")) and list((ws / "checkpoints").glob("*.safetensors"))
    m = json.loads((ws / "metrics.json").read_text())
    assert m["steps"] == 2 and math.isfinite(m["final_loss"])
    g = yaml.safe_load((ws / "config.yaml").read_text())["config"]["guidance"]
    assert (g["zero123"], g["zero123_loss"], g["grad_scale"], g["ref_path"]) == (True, "bgt", 0.01, str(REF))


def test_image_guidance_resumes_exactly(tmp_path, tiny_config, tiny_guidance):
    """Zero123 BGT+ + the text term + the CLIP reference loss (tiny models) on the vase, stopped after step 2 and
    resumed: the shared noise generator is checkpointed, so the result is the uninterrupted run's, bit for bit."""
    import numpy as np
    import torch
    from PIL import Image

    from pgc_fast.train.trainer import run

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[8:32, 10:30] = (200, 60, 40, 255)
    Image.fromarray(rgba).save(tmp_path / "ref.png")
    over = {
        **tiny_guidance,
        "render.shading": "albedo",
        "guidance.zero123": True,
        "guidance.zero123_model": "tiny-zero123",
        "guidance.zero123_loss": "bgt",
        "guidance.grad_scale": 0.01,
        "guidance.ref_path": str(tmp_path / "ref.png"),
        "guidance.clip_reference": 1.0,
        "guidance.clip_model": "tiny-clip",
    }
    full = run(tiny_config(tmp_path, "full", "uv", **over), quiet=True)
    resumed = stopped_and_resumed(tiny_config(tmp_path, "part", "uv", **over))
    for k, v in full.texture.state_dict().items():
        assert torch.equal(v, resumed.texture.state_dict()[k]), k
    assert full.metrics["history"]["loss"] == resumed.metrics["history"]["loss"]
    assert all(math.isfinite(x) for x in full.metrics["history"]["loss"])
