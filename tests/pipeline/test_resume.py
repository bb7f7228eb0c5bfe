"""Checkpoints + --resume continue exactly as if never stopped; the workspace is never overwritten silently."""

from __future__ import annotations

import json

import pytest
import torch

from pgc_fast import config as C
from pgc_fast.train.trainer import run
from pgc_fast.train.workspace import WorkspaceExistsError
from pipeline_support import stopped_and_resumed


@pytest.mark.parametrize("kind", ["uv", "field"])
def test_resume_equals_uninterrupted(tmp_path, kind, tiny_config, mse_objective):
    full = run(tiny_config(tmp_path, "full", kind), objective=mse_objective(), quiet=True)
    part_cfg = tiny_config(tmp_path, "part", kind)
    first = run(part_cfg, objective=mse_objective(), quiet=True, stop_after=3)
    assert first.step == 3 and not (first.workspace / "metrics.json").exists()
    assert len(list((first.workspace / "checkpoints").glob("*.safetensors"))) == 1
    resumed = run(C.override(part_cfg, **{"output.resume": True}), objective=mse_objective(), quiet=True)
    assert resumed.step == full.step == 6
    a, b = full.texture.state_dict(), resumed.texture.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit
    ha = json.loads((full.workspace / "metrics.json").read_text())["history"]
    hb = json.loads((resumed.workspace / "metrics.json").read_text())["history"]
    assert ha["loss"] == hb["loss"] and ha["step"] == hb["step"] == list(range(1, 7))
    assert resumed.metrics["resumed_from"] == 3


def test_resume_equals_uninterrupted_with_guidance(tmp_path, tiny_config, tiny_guidance):
    """The same with score distillation from the built-in tiny-sd model, PGC on: the guidance's noise generator
    is checkpointed with everything else."""
    over = {**tiny_guidance, "render.shading": "albedo"}
    full = run(tiny_config(tmp_path, "full", "uv", **over), quiet=True)
    resumed = stopped_and_resumed(tiny_config(tmp_path, "part", "uv", **over))
    for k, v in full.texture.state_dict().items():
        assert torch.equal(v, resumed.texture.state_dict()[k]), k
    assert full.metrics["history"]["loss"] == resumed.metrics["history"]["loss"]
    assert (
        full.metrics["clip"]["enabled"]
        and full.metrics["history"]["clip_frac"] == resumed.metrics["history"]["clip_frac"]
    )


def test_resume_refuses_a_different_config(tmp_path, tiny_config, mse_objective):
    cfg = tiny_config(tmp_path, "ws", "uv")
    run(cfg, objective=mse_objective(), quiet=True, stop_after=2)
    changed = C.override(cfg, **{"output.resume": True, "optim.lr_texture": 0.5})
    with pytest.raises(C.ConfigError, match="optim.lr_texture"):
        run(changed, objective=mse_objective(), quiet=True)


def test_workspace_overwrite_protection(tmp_path, capsys, tiny_config, mse_objective):
    cfg = tiny_config(tmp_path, "ws", "uv", **{"optim.iters": 1})
    run(cfg, objective=mse_objective(), quiet=True)
    marker = cfg.workspace_path + "/keep.txt"
    open(marker, "w").write("x")
    with pytest.raises(WorkspaceExistsError, match="--force"):
        run(cfg, objective=mse_objective(), quiet=True)
    assert open(marker).read() == "x"  # nothing was touched
    run(C.override(cfg, **{"output.force": True}), objective=mse_objective(), quiet=True)
    assert not (tmp_path / "ws" / "keep.txt").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")  # not a run's file: --resume does not take it over
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(
            C.override(cfg, **{"output.resume": True, "output.workspace": str(tmp_path / "other")}),
            objective=mse_objective(),
            quiet=True,
        )
    assert (tmp_path / "other" / "notes.txt").read_text() == "x"
    # the CLI says so too, with exit status 2
    from pgc_fast import cli

    rc = cli.main(
        [
            "generate",
            "--preset",
            "demo",
            "--mesh.path",
            cfg.mesh.path,
            "--output.root",
            "",
            "--output.workspace",
            cfg.workspace_path,
        ]
    )
    assert rc == 2 and "--force" in capsys.readouterr().err


def test_steady_seconds_per_step_skips_the_first_read_back():
    """history times are stamped at each stats read-back (every STATS_EVERY steps); the steady rate starts after
    the first group, which pays torch.compile / Triton JIT."""
    import math

    from pgc_fast.train.metrics import STATS_EVERY, steady_s_per_it

    n = 10 * STATS_EVERY
    # group g is read back at 90 s (the first group: compile) + 0.25 s per step after it
    times = [90.0 + 0.25 * STATS_EVERY * (math.ceil(k / STATS_EVERY) - 1) for k in range(1, n + 1)]
    h = {"step": list(range(1, n + 1)), "time": times}
    assert abs(steady_s_per_it(h, n) - 0.25) < 1e-9
    assert steady_s_per_it(h, STATS_EVERY) is None
