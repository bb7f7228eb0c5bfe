"""Checkpoints + --resume continue exactly as if never stopped; the workspace is never overwritten silently."""
from __future__ import annotations

import json

import pytest
import torch

from pgc_fast import config as C
from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.mesh import save_mesh
from pgc_fast.render import orbit_cameras
from pgc_fast.train.objectives import MSEObjective
from pgc_fast.train.workspace import WorkspaceExistsError
from pgc_fast.train.trainer import run


def tiny_cfg(tmp_path, ws: str, kind: str, **over) -> C.RunConfig:
    mesh = tmp_path / "vase.ply"
    if not mesh.exists():
        save_mesh(make_demo_mesh(12, 6), mesh)
    base = {
        "mesh.path": str(mesh), "mesh.canonicalize": True, "texture.kind": kind, "texture.uv_resolution": 32,
        "texture.uv_levels": 2, "texture.export_resolution": 32, "render.resolution": 16, "render.backend": "cpu",
        "render.shading": "random", "texture.pos_perturb": kind == "field", "optim.objective": "mse",
        "optim.iters": 6, "optim.batch_size": 2, "optim.lr_texture": 1e-2, "output.root": "",
        "output.workspace": str(tmp_path / ws), "output.val_every": 2, "output.ckpt_every": 0,
        "output.turntable_frames": 0, "output.save_mesh": False, "output.report": False, "runtime.device": "cpu",
        "texture.field_levels": 8, "texture.field_log2_table_size": 12,
    }
    base.update(over)
    return C.override(C.RunConfig(), **base)


def objective() -> MSEObjective:
    cams = orbit_cameras(2.2, [60.0, 70.0, 80.0, 90.0], [0.0, 90.0, 180.0, 270.0], 18.0, 16)
    g = torch.Generator().manual_seed(1)
    return MSEObjective(torch.rand(4, 3, 16, 16, generator=g), cams)


@pytest.mark.parametrize("kind", ["uv", "field"])
def test_resume_equals_uninterrupted(tmp_path, kind):
    full = run(tiny_cfg(tmp_path, "full", kind), objective=objective(), quiet=True)
    part_cfg = tiny_cfg(tmp_path, "part", kind)
    first = run(part_cfg, objective=objective(), quiet=True, stop_after=3)
    assert first.step == 3 and not (first.workspace / "metrics.json").exists()
    assert len(list((first.workspace / "checkpoints").glob("*.pth"))) == 1
    resumed = run(C.override(part_cfg, **{"output.resume": True}), objective=objective(), quiet=True)
    assert resumed.step == full.step == 6
    a, b = full.texture.state_dict(), resumed.texture.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit
    ha = json.loads((full.workspace / "metrics.json").read_text())["history"]
    hb = json.loads((resumed.workspace / "metrics.json").read_text())["history"]
    assert ha["loss"] == hb["loss"] and ha["step"] == hb["step"] == list(range(1, 7))
    assert resumed.metrics["resumed_from"] == 3


def test_resume_equals_uninterrupted_with_guidance(tmp_path):
    """The same with score distillation from the built-in tiny-sd model, PGC on: the guidance's noise generator
    is checkpointed with everything else."""
    over = {"optim.objective": "guidance", "guidance.text": "a striped vase", "guidance.model": "tiny-sd",
            "guidance.guidance_scale": 7.5, "guidance.pgc_tau": 0.01, "render.resolution": 32,
            "optim.iters": 4, "render.shading": "albedo"}
    full = run(tiny_cfg(tmp_path, "full", "uv", **over), quiet=True)
    part_cfg = tiny_cfg(tmp_path, "part", "uv", **over)
    run(part_cfg, quiet=True, stop_after=2)
    resumed = run(C.override(part_cfg, **{"output.resume": True}), quiet=True)
    for k, v in full.texture.state_dict().items():
        assert torch.equal(v, resumed.texture.state_dict()[k]), k
    assert full.metrics["history"]["loss"] == resumed.metrics["history"]["loss"]
    assert full.metrics["clip"]["enabled"] and full.metrics["history"]["clip_frac"] == resumed.metrics["history"]["clip_frac"]


def test_resume_refuses_a_different_config(tmp_path):
    cfg = tiny_cfg(tmp_path, "ws", "uv")
    run(cfg, objective=objective(), quiet=True, stop_after=2)
    changed = C.override(cfg, **{"output.resume": True, "optim.lr_texture": 0.5})
    with pytest.raises(C.ConfigError, match="optim.lr_texture"):
        run(changed, objective=objective(), quiet=True)


def test_workspace_overwrite_protection(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, "ws", "uv", **{"optim.iters": 1})
    run(cfg, objective=objective(), quiet=True)
    marker = cfg.workspace_path + "/keep.txt"
    open(marker, "w").write("x")
    with pytest.raises(WorkspaceExistsError, match="--force"):
        run(cfg, objective=objective(), quiet=True)
    assert open(marker).read() == "x"  # nothing was touched
    run(C.override(cfg, **{"output.force": True}), objective=objective(), quiet=True)
    assert not (tmp_path / "ws" / "keep.txt").exists()
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        run(C.override(cfg, **{"output.resume": True, "output.workspace": str(tmp_path / "empty")}),
            objective=objective(), quiet=True)
    # the CLI says so too, with exit status 2
    from pgc_fast import cli

    rc = cli.main(["generate", "--preset", "demo", "--mesh.path", cfg.mesh.path, "--output.root", "",
                   "--output.workspace", cfg.workspace_path])
    assert rc == 2 and "--force" in capsys.readouterr().err


def test_steady_seconds_per_step_skips_the_first_read_back():
    """history times are stamped at each stats read-back (every _STATS_EVERY steps); the steady rate starts after
    the first group, which pays torch.compile / Triton JIT."""
    import math

    from pgc_fast.train.metrics import _STATS_EVERY, _steady_s_per_it

    n = 10 * _STATS_EVERY
    # group g is read back at 90 s (the first group: compile) + 0.25 s per step after it
    times = [90.0 + 0.25 * _STATS_EVERY * (math.ceil(k / _STATS_EVERY) - 1) for k in range(1, n + 1)]
    h = {"step": list(range(1, n + 1)), "time": times}
    assert abs(_steady_s_per_it(h, n) - 0.25) < 1e-9
    assert _steady_s_per_it(h, _STATS_EVERY) is None
