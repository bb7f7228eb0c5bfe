"""Checkpoints run no code from data and are checked before use: a planted pickle is refused, a damaged checkpoint
falls back to the one before with a note; --resume extends a run, resumes a moved workspace, and a run that
stopped before its first checkpoint restarts without --force (tests/pipeline/test_kill_resume.py kills runs)."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

import pipeline_support as S
from pgc_fast import config as C
from pgc_fast.train.checkpoint import CheckpointError, checkpoint_files, read_latest_checkpoint
from pgc_fast.train.state_file import DamagedCheckpointError, dumps, loads
from pgc_fast.train.trainer import run
from pgc_fast.train.workspace import WorkspaceExistsError

pytestmark = pytest.mark.usefixtures("one_thread")


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_state_file_round_trips_a_training_state_exactly():
    p = torch.nn.Parameter(torch.randn(3, 4))
    opt = torch.optim.Adam([p], lr=1e-2, betas=(0.9, 0.99))
    p.grad = torch.randn(3, 4)
    opt.step()
    random.seed(3)
    np.random.seed(4)
    gen = torch.Generator().manual_seed(5)
    state = {
        "step": 7,
        "optimizer": opt.state_dict(),  # int keys, a 0-d step tensor, a betas tuple
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "gen": gen.get_state(),
        "tensors": [torch.zeros(0), torch.tensor(True), torch.arange(5, dtype=torch.int64)[1:4], torch.ones(2).half()],
        "bf16": torch.randn(2, 3).bfloat16().t(),  # non-contiguous view
        "shared": [gen.get_state(), (x := torch.arange(6.0)), x, x[2:]],  # one storage, several entries
        "floats": [float("nan"), float("inf"), -0.0, 0.1 + 0.2, 1e-310],
        "tagged_keys": {"__tensor__": "not a reference", "x": None},
        "nested": ({"a": (1, "b")}, [2**62, False]),
    }
    back = loads(dumps(state))
    assert _equal(state, back)
    # the restored RNG states continue the same streams
    random.setstate(back["python"])
    np.random.set_state(back["numpy"])
    assert random.random() == (random.seed(3), random.random())[1]
    assert np.random.rand() == (np.random.seed(4), np.random.rand())[1]
    with pytest.raises(TypeError, match=r"state\.bad"):
        dumps({"bad": torch.float32})  # refused when writing, not discovered when resuming
    with pytest.raises(DamagedCheckpointError, match="checksum"):
        data = bytearray(dumps(state))
        data[-3] ^= 0x10
        loads(bytes(data))


def test_a_planted_pickle_is_refused_and_runs_nothing(tmp_path, tiny_config, mse_objective, capsys):
    marker = tmp_path / "pwned"
    # the payload is live: unpickling it the old way runs its code
    (tmp_path / "probe.pth").write_bytes(S.malicious_pickle(marker))
    torch.load(tmp_path / "probe.pth", weights_only=False)
    assert marker.exists()
    marker.unlink()
    cfg = tiny_config(tmp_path, "ws", "uv", **{"output.ckpt_every": 2})
    run(cfg, objective=mse_objective(), quiet=True, stop_after=2)
    ckpts = tmp_path / "ws" / "checkpoints"
    resume = C.override(cfg, **{"output.resume": True})
    for name, zip_format in (("step0000099.pth", True), ("step0000099.safetensors", False)):
        (ckpts / name).write_bytes(S.malicious_pickle(marker, zip_format))
        with pytest.raises(CheckpointError, match="pickle") as ei:
            run(resume, objective=mse_objective(), quiet=True)
        assert "\n" not in str(ei.value) and name in str(ei.value)
        assert not marker.exists()
        (ckpts / name).unlink()
    # the CLI: one line, exit status 2, before any model is loaded
    from pgc_fast import cli
    from pgc_fast.export.files import write_text_atomic
    from pgc_fast.train.workspace import run_config_yaml

    (ckpts / "step0000099.pth").write_bytes(S.malicious_pickle(marker))
    as_cli = C.override(cfg, **{"optim.objective": "guidance", **S.TINY_GUIDANCE, "optim.iters": 6})
    write_text_atomic(tmp_path / "cli.yaml", run_config_yaml(as_cli))
    capsys.readouterr()
    assert cli.main(["generate", "--config", str(tmp_path / "cli.yaml"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickle" in err[0] and "Traceback" not in err[0]
    assert not marker.exists()
    assert [p.name for p in checkpoint_files(ckpts)] == ["step0000002.safetensors"]  # nothing was written


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x04
    return bytes(b)


DAMAGE = {
    "bit flip in tensor data": lambda d: _flip(d, len(d) - 40),
    "bit flip in the JSON state": lambda d: _flip(d, 8 + int.from_bytes(d[:8], "little") // 2),
    "truncated": lambda d: d[: len(d) * 2 // 3],
    "empty": lambda d: b"",
    "garbage": lambda d: bytes(range(256)) * 4,
}


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_config, mse_objective, capsys):
    full = run(tiny_config(tmp_path, "full", "uv", **{"output.ckpt_every": 2}), objective=mse_objective(), quiet=True)
    assert [p.name for p in checkpoint_files(full.workspace / "checkpoints")] == [
        "step0000004.safetensors",
        "step0000006.safetensors",
    ]  # the latest two are kept
    part = tiny_config(tmp_path, "part", "uv", **{"output.ckpt_every": 2})
    run(part, objective=mse_objective(), quiet=True, stop_after=4)
    for i, (what, damage) in enumerate(DAMAGE.items()):
        ws = tmp_path / f"copy{i}"
        shutil.copytree(part.workspace_path, ws)  # a copied workspace resumes too
        newest = ws / "checkpoints" / "step0000004.safetensors"
        newest.write_bytes(damage(newest.read_bytes()))
        capsys.readouterr()
        res = run(
            C.override(part, **{"output.resume": True, "output.workspace": str(ws)}),
            objective=mse_objective(),
            quiet=True,
        )
        err = capsys.readouterr().err
        assert "step0000004.safetensors" in err and "resuming from step0000002.safetensors" in err, (what, err)
        assert res.metrics["resumed_from"] == 2, what
        for k, v in full.texture.state_dict().items():
            assert torch.equal(v, res.texture.state_dict()[k]), (what, k)
    # every checkpoint damaged: one clear error, nothing started
    for p in checkpoint_files(tmp_path / "part" / "checkpoints"):
        p.write_bytes(DAMAGE["bit flip in tensor data"](p.read_bytes()))
    with pytest.raises(CheckpointError, match="no intact checkpoint.*step0000004.*checksum.*step0000002.*checksum"):
        run(C.override(part, **{"output.resume": True}), objective=mse_objective(), quiet=True)


def test_resume_extends_a_finished_run_and_refuses_to_shorten_it(tmp_path, tiny_config, mse_objective, capsys):
    """The MSE objective has no schedule over the run length, so 4 steps extended to 6 equal 6 steps."""
    six = run(tiny_config(tmp_path, "six", "uv"), objective=mse_objective(), quiet=True)
    four = tiny_config(tmp_path, "four", "uv", **{"optim.iters": 4})
    run(four, objective=mse_objective(), quiet=True)
    with pytest.raises(C.ConfigError, match="optim.iters: 4 -> 3"):
        run(C.override(four, **{"output.resume": True, "optim.iters": 3}), objective=mse_objective(), quiet=True)
    capsys.readouterr()
    ext = run(C.override(four, **{"output.resume": True, "optim.iters": 6}), objective=mse_objective(), quiet=True)
    assert "extends the run from optim.iters 4 to 6" in capsys.readouterr().err
    assert ext.step == 6 and ext.metrics["history"]["step"] == list(range(1, 7))
    for k, v in six.texture.state_dict().items():
        assert torch.equal(v, ext.texture.state_dict()[k]), k
    state, _ = read_latest_checkpoint(ext.workspace / "checkpoints")
    assert state is not None and state["step"] == 6 and state["schedule_iters"] == 4  # schedules keep 4 steps


def test_schedules_of_an_extended_run_hold_their_final_values():
    from pgc_fast.train.objectives import focal_stage_range

    cfg = C.override(C.RunConfig(), **{"optim.iters": 10, "render.zoom_stages": True})
    fine = cfg.render.focal_range_fine
    assert focal_stage_range(cfg, 9, 10) == fine
    assert [focal_stage_range(cfg, s, 10) for s in (10, 15, 19)] == [fine] * 3  # past the length it started with
    assert focal_stage_range(cfg, 0, 10) == cfg.render.focal_range


def test_a_moved_workspace_resumes(tmp_path, tiny_config, mse_objective, capsys):
    full = run(tiny_config(tmp_path, "full", "uv"), objective=mse_objective(), quiet=True)
    cfg = tiny_config(tmp_path, "before", "uv", **{"output.ckpt_every": 2})
    run(cfg, objective=mse_objective(), quiet=True, stop_after=4)
    shutil.move(tmp_path / "before", tmp_path / "elsewhere" / "after")
    moved = C.override(
        cfg, **{"output.resume": True, "output.workspace": "after", "output.root": str(tmp_path / "elsewhere")}
    )
    capsys.readouterr()
    res = run(moved, objective=mse_objective(), quiet=True)
    assert "moved or copied" in capsys.readouterr().err and res.metrics["resumed_from"] == 4
    for k, v in full.texture.state_dict().items():
        assert torch.equal(v, res.texture.state_dict()[k]), k


def test_a_run_stopped_before_its_first_checkpoint_restarts_without_force(tmp_path, tiny_config, mse_objective, capsys):
    cfg = tiny_config(tmp_path, "ws", "uv")
    ws = tmp_path / "ws"
    (ws / "validation").mkdir(parents=True)  # what a run killed before its first checkpoint leaves
    (ws / "config.yaml").write_text("config: {}\n")
    (ws / "validation" / "step0000002_rgb.png").write_bytes(b"\x89PNG")
    (ws / "checkpoints").mkdir()
    (ws / "checkpoints" / ".step0000002.tmp.safetensors").write_bytes(b"torn")
    capsys.readouterr()
    res = run(cfg, objective=mse_objective(), quiet=True)
    assert "nothing to lose" in capsys.readouterr().err and res.step == 6
    assert not (ws / "checkpoints" / ".step0000002.tmp.safetensors").exists()
    # --resume of a workspace with no checkpoint yet starts its run too
    res = run(
        C.override(cfg, **{"output.resume": True, "output.workspace": str(tmp_path / "new")}),
        objective=mse_objective(),
        quiet=True,
    )
    assert res.step == 6 and "holds no run yet" in capsys.readouterr().err
    # a workspace holding a run's checkpoint, or files a run does not write, still needs --force
    with pytest.raises(WorkspaceExistsError, match="--force"):
        run(cfg, objective=mse_objective(), quiet=True)
    other = tmp_path / "other"
    (other / "validation").mkdir(parents=True)
    (other / "thesis.tex").write_text("x")
    with pytest.raises(WorkspaceExistsError, match="--force"):
        run(C.override(cfg, **{"output.workspace": str(other)}), objective=mse_objective(), quiet=True)
    assert (other / "thesis.tex").read_text() == "x"


def test_user_images_are_plain_raster_formats(tmp_path, tiny_config):
    """A reference or background image in a format whose Pillow reader runs another program (EPS: Ghostscript)
    is refused by validation, before anything loads it."""
    from PIL import Image

    eps = tmp_path / "ref.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    with Image.open(eps) as im:
        assert im.format == "EPS"  # what Pillow would do with it unrestricted
    png = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(png)
    for key, extra in (("guidance.ref_path", {}), ("render.bg_image", {"render.background": "scenery"})):
        C.validate(tiny_config(tmp_path, "ws", "uv", **{key: str(png), **extra}))
        with pytest.raises(C.ConfigError, match=f"{key} .*: .* is not a PNG, JPEG, WEBP, BMP image"):
            C.validate(tiny_config(tmp_path, "ws", "uv", **{key: str(eps), **extra}))


def test_a_checkpoint_whose_first_byte_is_0x80_loads():
    # The first byte of a checkpoint is the low byte of its header length; 0x80 is also a pickle's first byte, and
    # one header length in 256 gives it (CI met one): such a checkpoint is not refused as a pickle.
    seen = set()
    for pad in range(300):
        state = {"step": 3, "note": "x" * pad, "w": torch.arange(5.0)}
        data = dumps(state)
        seen.add(data[0])
        if data[0] == 0x80:
            back = loads(data)
            assert back["note"] == state["note"] and torch.equal(back["w"], state["w"])
            return
    pytest.fail(f"no padding gave a header length ending in 0x80 (first bytes seen: {sorted(seen)[:10]}…)")
