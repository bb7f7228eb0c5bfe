"""--test (the original's test mode; train/test_render.py, cli/generate_test.py): reload a workspace's checkpoint and
render the turntable frames, videos, poses and validation view and re-export, without training; the validation
image is the run's, byte for byte; checkpoints are never written; a workspace without a checkpoint is one line."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pgc_fast import cli
from pgc_fast.render import turntable
from pgc_fast.train import run

pytestmark = pytest.mark.usefixtures("one_thread")

OVER = {"output.ckpt_every": 2, "output.save_mesh": True, "render.shading": "albedo", "texture.pos_perturb": False}


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _test(ws, *extra):
    return cli.main(["generate", "--workspace", str(ws), "--output.root", "", "--test", *extra])


@pytest.fixture()
def trained(tmp_path, tiny_config, mse_objective):
    cfg = tiny_config(tmp_path, "ws", "field", **OVER)
    return cfg, run(cfg, objective=mse_objective(), quiet=True)


def test_test_renders_frames_videos_poses_and_the_runs_validation_image(trained, capsys):
    cfg, res = trained
    ws = res.workspace
    before = {d: _snapshot(ws / d) for d in ("checkpoints", "validation")}
    assert _test(ws, "--output.turntable_frames", "5", "--output.turntable_resolution", "24") == 0
    out = capsys.readouterr()
    assert "done:" in out.out and "(step 6)" in out.out
    results = ws / "results"
    val = results / "validation" / "step0000006_rgb.png"
    assert val.read_bytes() == (ws / "validation" / "step0000006_rgb.png").read_bytes()
    assert {d: _snapshot(ws / d) for d in before} == before  # nothing trained, no checkpoint written
    for kind in ("rgb", "depth", "normal"):
        frames = sorted((results / kind).iterdir())
        assert [p.name for p in frames] == [f"{i:04d}.png" for i in range(5)]
        assert np.asarray(Image.open(frames[0])).shape[:2] == (24, 24)
        if importlib.util.find_spec("imageio_ffmpeg"):
            assert (results / f"step0000006_{kind}.mp4").stat().st_size > 0
    depth = np.asarray(Image.open(results / "depth" / "0000.png"))
    assert depth.ndim == 2 and depth[0, 0] == 0 and depth.max() == 255  # per-frame min-max, background 0
    normal = np.asarray(Image.open(results / "normal" / "0000.png"))
    assert (normal[0, 0] == 255).all() and normal[12, 12].std() > 0
    poses = np.load(results / "poses.npy")
    want = turntable(5, height=24, radius=2.25, focal_ratio=sum(cfg.render.focal_range) / 2).c2w.numpy()
    assert poses.shape == (5, 4, 4) and poses.dtype == np.float32 and np.allclose(poses, want)
    assert (ws / "texture.png").read_bytes() == res.files["texture"].read_bytes()  # the same bake, re-exported
    assert not [p for p in ws.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_test_of_an_interrupted_run_and_an_older_checkpoint(tmp_path, tiny_config, mse_objective, capsys):
    cfg = tiny_config(tmp_path, "part", "field", **OVER)
    run(cfg, objective=mse_objective(), stop_after=4, quiet=True)
    ws = tmp_path / "part"
    assert not (ws / "mesh.glb").exists()
    assert _test(ws, "--output.turntable_frames", "1", "--output.turntable_resolution", "16") == 0
    for step in (4,):
        got = (ws / "results" / "validation" / f"step{step:07d}_rgb.png").read_bytes()
        assert got == (ws / "validation" / f"step{step:07d}_rgb.png").read_bytes()
    assert (ws / "mesh.glb").is_file() and (ws / "texture.png").is_file()  # exported from the checkpoint
    argv = ["--output.turntable_frames", "0", "--ckpt", "step0000002.safetensors"]
    assert _test(ws, *argv) == 0
    assert [p.name for p in (ws / "results" / "validation").iterdir()] == ["step0000002_rgb.png"]
    assert (ws / "results" / "validation" / "step0000002_rgb.png").read_bytes() == (
        ws / "validation" / "step0000002_rgb.png"
    ).read_bytes()
    assert not (ws / "results" / "rgb").exists()  # the previous results were replaced whole
    capsys.readouterr()
    assert _test(ws, "--ckpt", "step0000099.safetensors") == 2
    assert "no such pgc-fast checkpoint" in capsys.readouterr().err


def test_test_without_a_checkpoint_is_one_line_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "never"
    assert _test(missing) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no checkpoint to render" in err
    assert not missing.exists()
    stopped = tmp_path / "stopped"
    (stopped / "validation").mkdir(parents=True)
    (stopped / "config.yaml").write_text("config: {}\n")
    before = sorted(os.listdir(stopped))
    assert _test(stopped) == 2
    assert "has no checkpoint to render" in capsys.readouterr().err
    assert sorted(os.listdir(stopped)) == before


def test_test_keeps_the_trained_configuration(trained, capsys):
    cfg, res = trained
    ws = res.workspace
    argv = ["--text", "something else", "-O0", "--render.resolution", "64", "--output.turntable_frames", "0"]
    assert _test(ws, *argv) == 0
    err = capsys.readouterr().err
    assert "ignored: --render.resolution --text -O0" in err
    assert (ws / "results" / "validation" / "step0000006_rgb.png").read_bytes() == res.files[
        "validation_last"
    ].read_bytes()
    assert _test(ws, "--resume") == 2
    assert "never trains" in capsys.readouterr().err
    assert _test(ws, "--dry-run") == 0
    captured = capsys.readouterr()
    assert "would render step 6" in captured.err and "workspace:" in captured.out


def test_test_refuses_a_pickle_checkpoint(trained, capsys):
    _, res = trained
    ckpts = res.workspace / "checkpoints"
    torch.save({"step": 9}, ckpts / "step0000009.pth")
    assert _test(res.workspace) == 2
    assert "pickle" in capsys.readouterr().err
