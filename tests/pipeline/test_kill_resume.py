"""SIGKILL a CPU run at any moment, then continue it: the final texture.png and mesh.glb (and mesh.obj, mesh.mtl,
turntable.gif) are byte-identical to an uninterrupted run's, and no file a kill interrupted is left cut short.

Each case runs this file as a child process (``python test_kill_resume.py child …``): a tiny run (6 steps,
checkpoints every 2, every export on) whose atomic writes (pgc_fast.export.files.commit) sleep WRITE_DELAY first,
which widens the windows in which a kill lands inside a write, and log what the run is doing. Some cases kill the
child from inside at a chosen write (the temporary file cut to half its length first: a kill in the middle of
writing it); the others kill it from outside at seeded moments of its run. The test process then continues the run
(``--resume``, or a plain rerun when nothing was checkpointed) and compares bytes with an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipeline_support as S
from pgc_fast import config as C
from pgc_fast.export.files import is_temp_name

EXPORTS = ("texture.png", "mesh.glb", "mesh.obj", "mesh.mtl", "turntable.gif")
WRITE_DELAY = 0.08
SEED = 22
RANDOM_KILLS = 3
# (name, rule): kill inside the first write whose target name contains rule, its temporary file cut in half
INSIDE_WRITES = [
    ("before the first checkpoint (validation image)", "step0000002_rgb.png"),
    ("during a checkpoint write", "step0000004.safetensors"),
    ("during the final checkpoint write", "step0000006.safetensors"),
    ("during export, after the OBJ, in the GLB", "mesh.glb"),
    ("during export, in the turntable GIF", "turntable.gif"),
]

pytestmark = pytest.mark.usefixtures("one_thread")


def kill_config(root: Path, ws: str, kind: str = "uv") -> C.RunConfig:
    return S.tiny_config(
        root,
        ws,
        kind,
        **{
            "output.ckpt_every": 2,
            "output.save_mesh": True,
            "output.turntable_frames": 4,
            "output.turntable_resolution": 16,
            "output.report": True,
        },
    )


@contextlib.contextmanager
def instrumented(log: Path | None = None, kill_in: str | None = None):
    """Every atomic write sleeps WRITE_DELAY and is logged; with ``kill_in``, the process kills itself inside the
    first write whose target name contains it, after cutting the temporary file to half its length."""
    from pgc_fast.export import files as F
    from pgc_fast.export import mesh as M
    from pgc_fast.train import trainer as T

    real_commit, real_step = F.commit, T.train_step
    events = open(log, "a", buffering=1) if log else None

    def note(what: str) -> None:
        if events:
            events.write(f"{time.time():.4f} {what}\n")

    def commit(tmp: Path, path: Path) -> None:
        note(f"write {path.name}")
        time.sleep(WRITE_DELAY)
        if kill_in and kill_in in path.name:
            os.truncate(tmp, tmp.stat().st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        real_commit(tmp, path)
        note(f"wrote {path.name}")

    def train_step(step, *args, **kw):
        note(f"step {step + 1}")
        return real_step(step, *args, **kw)

    F.commit = M.commit = commit
    T.train_step = train_step
    try:
        yield
    finally:
        F.commit = M.commit = real_commit
        T.train_step = real_step
        if events:
            events.close()


def child(root: str, ws: str, log: str, kill_in: str, kind: str) -> None:
    import torch

    from pgc_fast.train.trainer import run

    torch.set_num_threads(1)
    with instrumented(Path(log), kill_in or None):
        run(kill_config(Path(root), ws, kind), objective=S.mse_objective(), quiet=True)


def spawn(root: Path, ws: str, kill_in: str = "", kind: str = "uv") -> tuple[subprocess.Popen, Path]:
    log = root / f"{ws}.log"
    tests = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, __file__, "child", str(root), ws, str(log), kill_in, kind]
    with open(root / f"{ws}.err", "w") as err:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env), log


def landed(log: Path) -> str:
    """Where the kill landed, from the child's log."""
    lines = log.read_text().splitlines() if log.exists() else []
    if not lines:
        return "before the first step"
    last = lines[-1].split(maxsplit=1)[1]
    if last.startswith("write "):
        return f"inside the write of {last[6:]}"
    return f"after {last}" if not last.startswith("step") else f"in training {last}"


def wait_for_first_event(p: subprocess.Popen, log: Path) -> float:
    """Block until the child logs its first event (its first step, or its first write); returns that time."""
    while not (log.exists() and log.stat().st_size) and p.poll() is None:
        time.sleep(0.005)
    return time.perf_counter()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    """An uninterrupted run (same instrumentation): its bytes, and the seconds from its first logged event (its
    first step) to its end, the span the seeded kills are drawn from (before it: loading, nothing written)."""
    from pgc_fast.train.trainer import run

    root = tmp_path_factory.mktemp("kill")
    log = root / "reference.log"
    with instrumented(log):
        run(kill_config(root, "reference"), objective=S.mse_objective(), quiet=True)
        end = time.time()
    seconds = end - float(log.read_text().split(maxsplit=1)[0])
    files = {n: (root / "reference" / n).read_bytes() for n in EXPORTS}
    return root, files, seconds


def check_and_resume(
    root: Path, ws: str, files: dict[str, bytes], resume: bool = True, moved: bool = False, kind: str = "uv"
) -> None:
    from pgc_fast.train.trainer import run

    path = root / ws
    for n in EXPORTS:  # a file the kill left is complete: the only export written is the final one
        if (path / n).exists():
            assert (path / n).read_bytes() == files[n], f"{n} left cut short or wrong"
    cfg = kill_config(root, ws, kind)
    if moved and path.exists():
        shutil.move(path, root / f"{ws}-moved")
        cfg, path = C.override(cfg, **{"output.workspace": str(root / f"{ws}-moved")}), root / f"{ws}-moved"
    run(C.override(cfg, **{"output.resume": resume}), objective=S.mse_objective(), quiet=True)
    for n in EXPORTS:
        assert (path / n).read_bytes() == files[n], f"{n} differs from the uninterrupted run's"
    assert not [p for p in path.rglob("*") if is_temp_name(p.name)], "temporary files left behind"


@pytest.mark.parametrize("case", range(len(INSIDE_WRITES)), ids=[w for w, _ in INSIDE_WRITES])
def test_kill_inside_a_write_then_resume_is_exact(reference, case):
    root, files, _ = reference
    what, kill_in = INSIDE_WRITES[case]
    ws = f"inside{case}"
    p, log = spawn(root, ws, kill_in)
    p.wait(timeout=300)
    assert p.returncode == -signal.SIGKILL, (root / f"{ws}.err").read_text()[-3000:]
    assert landed(log) == f"inside the write of {kill_in}", landed(log)
    # the first case had no checkpoint yet: rerun without --resume and without --force; one case moves the workspace
    check_and_resume(root, ws, files, resume=case != 0, moved=case == 1)


def test_kill_at_seeded_moments_then_resume_is_exact(reference, capsys):
    root, files, seconds = reference
    rng = random.Random(SEED)
    where = []
    for i in range(RANDOM_KILLS):
        at = rng.uniform(0.0, seconds)
        p, log = spawn(root, f"random{i}")
        t0 = wait_for_first_event(p, log)
        time.sleep(max(0.0, at - (time.perf_counter() - t0)))
        p.kill()
        p.wait(timeout=300)
        where.append(f"+{at:.2f} s of {seconds:.2f} s: {landed(log)}")
        check_and_resume(root, f"random{i}", files)
    with capsys.disabled():
        print("\nkills: " + "; ".join(where))


def test_field_texture_kill_then_resume_is_exact(tmp_path):
    """The hash-grid field texture too: its CPU backward is bitwise repeatable (pgc_kernels.hash_grid_encode's
    twin gathers instead of scattering with float atomics), so a resumed CPU run matches to the byte."""
    from pgc_fast.train.trainer import run

    run(kill_config(tmp_path, "reference", "field"), objective=S.mse_objective(), quiet=True)
    files = {n: (tmp_path / "reference" / n).read_bytes() for n in EXPORTS}
    p, log = spawn(tmp_path, "killed", "step0000004.safetensors", "field")
    p.wait(timeout=300)
    assert landed(log) == "inside the write of step0000004.safetensors", (tmp_path / "killed.err").read_text()[-3000:]
    check_and_resume(tmp_path, "killed", files, kind="field")


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child(*sys.argv[2:7])
