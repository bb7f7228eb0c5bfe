"""Data-parallel runs on the CPU (issue 10): torchrun + gloo, 2 processes.

One torchrun job (this file run as a script, see ``worker``) trains in 2 processes × 2 views:
  * MSE fits (UV pyramid and hash-grid field) → must equal 1 process × 4 views with the same seed, within float
    reduction order (the global view g of a step is the same whatever the number of processes);
  * an MSE fit stopped after 3 steps and resumed → bit-equal to the uninterrupted 2-process run;
  * tiny-sd score distillation with PGC, stopped and resumed → bit-equal: every rank's noise generator is in the
    checkpoint, and ranks draw different noise (the original's seed + rank).
Then ``pgc-fast generate --gpus 0,1 --device cpu`` relaunches itself through torchrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pipeline_support as S
from pgc_fast import config as C
from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.mesh import save_mesh
from pgc_fast.train import distributed as D
from pgc_fast.train.checkpoint import read_latest_checkpoint
from pgc_fast.train.objectives import MSEObjective
from pgc_fast.train.trainer import run
from tolerances import DIST_TOLERANCES

PER_RANK = 2  # views per process per step
WORLD = 2


def tiny_cfg(root: Path, ws: str, kind: str, views: int, **over) -> C.RunConfig:
    """tests/pipeline_support.py's tiny run with ``views`` per process, unlit, no AA, no jitter (exact equality)."""
    return S.tiny_config(
        root,
        ws,
        kind,
        **{
            "render.shading": "albedo",
            "render.antialias": False,
            "texture.pos_perturb": False,
            "optim.batch_size": views,
            **over,
        },
    )


def objective() -> MSEObjective:
    """8 known views (random targets): a global batch of 4 views is 4 distinct views."""
    return S.mse_objective(8)


GUIDANCE = {**S.TINY_GUIDANCE, "render.shading": "random"}


def worker(root: Path) -> None:
    """Body of every torchrun worker: runs share the process group; each rank saves what it trained."""
    dist = D.env_info()
    out: dict[str, dict[str, torch.Tensor]] = {}
    for kind in ("uv", "field"):
        res = run(tiny_cfg(root, f"full_{kind}", kind, PER_RANK), objective=objective(), quiet=True)
        out[f"full_{kind}"] = res.texture.state_dict()
    part = tiny_cfg(root, "part_uv", "uv", PER_RANK)
    assert run(part, objective=objective(), quiet=True, stop_after=3).step == 3
    res = run(C.override(part, **{"output.resume": True}), objective=objective(), quiet=True)
    out["resumed_uv"] = res.texture.state_dict()
    res = run(tiny_cfg(root, "full_sds", "uv", 1, **GUIDANCE), quiet=True)
    out["full_sds"] = res.texture.state_dict()
    out["sds_loss"] = {"loss": torch.tensor(res.metrics.get("history", {}).get("loss", []) if dist.is_main else [])}
    part = tiny_cfg(root, "part_sds", "uv", 1, **GUIDANCE)
    run(part, quiet=True, stop_after=2)
    res = run(C.override(part, **{"output.resume": True}), quiet=True)
    out["resumed_sds"] = res.texture.state_dict()
    out["sds_loss_resumed"] = {
        "loss": torch.tensor(res.metrics.get("history", {}).get("loss", []) if dist.is_main else [])
    }
    out["collectives"] = collectives(dist.rank)
    errors = []
    for call in (
        lambda: run(tiny_cfg(root, "full_uv", "uv", PER_RANK), objective=objective(), quiet=True),
        lambda: D.rank0_call(lambda: (_ for _ in ()).throw(C.ConfigError(["a", "b"]))),
    ):
        try:
            call()
        except Exception as e:  # noqa: BLE001 - recorded for the test
            errors.append(f"{type(e).__name__}: {e}")
    out["errors"] = errors  # type: ignore[assignment]
    torch.save(out, root / f"rank{dist.rank}.pt")
    D.finish(exit_code=0)


def collectives(rank: int) -> dict[str, torch.Tensor | None]:
    """all_reduce_grads on hand-made gradients: averaged; missing on one rank = zeros there; missing on all
    ranks = stays None; an inf on one rank reaches every rank (GradScalers skip the same steps); float64 too."""
    ps = {
        n: torch.nn.Parameter(torch.zeros(k, dtype=dt))
        for n, k, dt in (
            ("used", 3, torch.float32),
            ("some", 2, torch.float32),
            ("none", 1, torch.float32),
            ("inf", 2, torch.float32),
            ("f64", 2, torch.float64),
        )
    }
    ps["used"].grad = torch.full((3,), rank + 1.0)
    ps["some"].grad = torch.full((2,), 4.0) if rank == 1 else None
    ps["inf"].grad = torch.tensor([float("inf") if rank == 1 else 0.0, 1.0])
    ps["f64"].grad = torch.full((2,), 2.0 * rank, dtype=torch.float64)
    D.all_reduce_grads(ps.values())
    res: dict[str, torch.Tensor | None] = {n: p.grad for n, p in ps.items()}
    res["stats"] = torch.tensor(list(D.average_floats({"b": float(rank), "a": 10.0 * rank}).values()))
    return res


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run ``worker`` under torchrun with 2 gloo processes; return its directory."""
    root = tmp_path_factory.mktemp("dist")
    tests = str(Path(__file__).resolve().parents[1])  # for `tolerances` in the workers
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([tests, *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={WORLD}",
        __file__,
        "worker",
        str(root),
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-8000:]
    return root


def load(root: Path, rank: int) -> dict:
    return torch.load(root / f"rank{rank}.pt", weights_only=False)


@pytest.mark.parametrize("kind", ["uv", "field"])
def test_two_processes_equal_one_with_twice_the_views(job, tmp_path, kind):
    ranks = [load(job, r) for r in range(WORLD)]
    for k, v in ranks[0][f"full_{kind}"].items():  # all ranks hold the same texture
        assert torch.equal(v, ranks[1][f"full_{kind}"][k]), k
    one = run(tiny_cfg(tmp_path, "one", kind, WORLD * PER_RANK), objective=objective(), quiet=True)
    tol = DIST_TOLERANCES["texture"]
    for k, v in one.texture.state_dict().items():
        torch.testing.assert_close(ranks[0][f"full_{kind}"][k], v, **tol, msg=k)
    # the texture moved (the comparison is not between two untrained initialisations)
    init = run(tiny_cfg(tmp_path, "init", kind, 1), objective=objective(), quiet=True, stop_after=0)
    moved = max(float((v - init.texture.state_dict()[k]).abs().max()) for k, v in one.texture.state_dict().items())
    assert moved > 100 * tol["atol"]
    # the logged loss is the mean over all 4 views, as in one process
    m2 = json.loads((job / f"full_{kind}" / "metrics.json").read_text())
    torch.testing.assert_close(
        torch.tensor(m2["history"]["loss"]), torch.tensor(one.metrics["history"]["loss"]), **DIST_TOLERANCES["loss"]
    )
    assert (m2["world_size"], m2["views_per_step"], m2["views_per_rank"]) == (WORLD, WORLD * PER_RANK, PER_RANK)
    assert len(m2["ranks"]) == WORLD and all("memory" in r for r in m2["ranks"])


def test_resume_is_exact_across_processes(job):
    r0 = load(job, 0)
    for key_full, key_res in (("full_uv", "resumed_uv"), ("full_sds", "resumed_sds")):
        for k, v in r0[key_full].items():
            assert torch.equal(v, r0[key_res][k]), (key_res, k)  # bit for bit
    assert r0["sds_loss"]["loss"].numel() == 4
    assert torch.equal(r0["sds_loss"]["loss"], r0["sds_loss_resumed"]["loss"])
    ckpt, _ = read_latest_checkpoint(job / "part_sds" / "checkpoints")
    assert ckpt is not None
    assert ckpt["world_size"] == WORLD and len(ckpt["ranks"]) == WORLD
    g0, g1 = (r["objective"]["guidance"]["generator"] for r in ckpt["ranks"])
    assert not torch.equal(g0, g1)  # each rank its own noise stream


def test_collectives(job):
    for r in range(WORLD):
        got = load(job, r)["collectives"]
        assert torch.equal(got["used"], torch.full((3,), 1.5))
        assert torch.equal(got["some"], torch.full((2,), 2.0))
        assert got["none"] is None
        assert got["inf"][0] == float("inf") and got["inf"][1] == 1.0
        assert got["f64"].dtype == torch.float64 and torch.equal(got["f64"], torch.ones(2, dtype=torch.float64))
        assert torch.equal(got["stats"], torch.tensor([5.0, 0.5]))  # keys sorted: a, b


def test_errors_reach_every_rank(job):
    """An error on rank 0 (workspace exists; a config error) is raised on every rank: no rank hangs."""
    e0, e1 = load(job, 0)["errors"], load(job, 1)["errors"]
    assert e0[0].startswith("WorkspaceExistsError") and e1[0] == e0[0] and "--force" in e0[0]
    assert e0[1].startswith("ConfigError") and e1[1].startswith("RankZeroError: rank 0: ConfigError")


def test_resume_with_another_process_count_is_refused(job):
    cfg = tiny_cfg(job, "part_uv", "uv", PER_RANK, **{"output.resume": True})
    with pytest.raises(C.ConfigError, match="1 process\\(es\\) but the checkpoint was written by 2"):
        run(cfg, objective=objective(), quiet=True)


def test_rank0_alone_writes(job):
    ws = job / "full_uv"
    assert sorted(p.name for p in (ws / "validation").iterdir()) == [f"step{s:07d}_rgb.png" for s in (2, 4, 6)]
    assert (ws / "metrics.json").exists() and (ws / "config.yaml").exists()
    assert len(list((ws / "checkpoints").glob("*.safetensors"))) == 1


def test_seed_streams():
    # a function of the keys only; nearby keys give unrelated numbers
    a = torch.rand(4, generator=D.step_generator(0, 5, D.STREAM_CAMERAS))
    assert torch.equal(a, torch.rand(4, generator=D.step_generator(0, 5, D.STREAM_CAMERAS)))
    for other in (
        D.step_generator(0, 6, D.STREAM_CAMERAS),
        D.step_generator(1, 5, D.STREAM_CAMERAS),
        D.step_generator(0, 5, D.STREAM_RENDER),
        D.step_generator(0, 5, D.STREAM_CAMERAS, rank=1),
    ):
        assert not torch.equal(a, torch.rand(4, generator=other))
    assert D.DistInfo(1, 2).view_slice(3) == slice(3, 6) and D.SINGLE.view_slice(3) == slice(0, 3)
    with pytest.raises(ValueError, match="relaunch\\(\\): gpus"):
        D.relaunch(["generate"], "0")


def test_cli_gpus_relaunches_through_torchrun(tmp_path, capfd):
    from pgc_fast import cli

    mesh = tmp_path / "vase.ply"
    save_mesh(make_demo_mesh(12, 6), mesh)
    ws = tmp_path / "cli"
    argv = [
        "generate",
        "--preset",
        "demo",
        "--mesh.path",
        str(mesh),
        "--output.root",
        "",
        "--output.workspace",
        str(ws),
        "--gpus",
        "0,1",
        "--device",
        "cpu",
        "--optim.iters",
        "2",
        "--render.resolution",
        "32",
        "--no-texture.init_from_vertex_colors",
        "--output.turntable_frames",
        "0",
        "--output.val_every",
        "0",
        "--no-output.save_mesh",
    ]
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        assert cli.main(argv) == 0
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = old
    err = capfd.readouterr().err
    assert "launching 2 CPU processes (gloo: --device cpu) with torchrun (2 views each, 4 per step)" in err
    m = json.loads((ws / "metrics.json").read_text())
    assert (m["world_size"], m["views_per_step"], m["steps"]) == (2, 4, 2)
    assert "(2 processes)" in (ws / "report.html").read_text()
    # the workspace check runs before any worker starts
    assert cli.main(argv) == 2 and "--force" in capfd.readouterr().err


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(Path(sys.argv[2]))
