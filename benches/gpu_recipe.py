"""The user-facing figure of issue 21: wall time of ``pgc-fast generate`` from process start to the last output,
split into startup, load, compile, steps, export, turntable and report (the run's ``metrics.json``), for

* ``--recipe A``: the original's command A (SDXL + depth ControlNet + PGC) with the original's 4 views per step
  on one GPU (``--bs 4``), ``--model sdxl-random``, N iterations, and its projection to the recipe's 1,200;
* ``--recipe fast``: the ``texture-fast`` preset (SD 1.5 + depth ControlNet at 512², 200 iterations) with
  ``--model sd15-random``, whole runs (its figure is the run itself).

Each run is a fresh process (``python -m pgc_fast.cli generate …``), timed from outside. ``--runs 2`` runs it twice:
with ``--fresh-cache`` (default) the compile caches — inductor's (``$PGC_FAST_CACHE_DIR``), Triton's and the
nvdiffrast extension build (``$TORCH_EXTENSIONS_DIR``) — start empty in a new directory, so run 1 is a fresh
machine's first run and run 2 a second run on the same machine. ``--flags`` adds generate flags to every run
(e.g. ``--guidance.fp8``). ``--weights-dir DIR`` loads the model from local safetensors, as a user with downloaded
weights does: the built-in model is first written there by ``save_builtin_weights.py`` (in its own process, page
cache dropped) unless DIR holds it already, and every run loads it through the real loading path.

    python benches/gpu_recipe.py --recipe A --iters 60 --runs 2 --out DIR
    python benches/gpu_recipe.py --recipe fast --runs 2 --out DIR
    python benches/gpu_recipe.py --recipe A --iters 1200 --runs 1 --weights-dir /tmp/weights
    python benches/gpu_recipe.py --recipe A --device cpu --model tiny-sdxl --iters 3 --runs 1 \\
        --flags "--res_fine 64 --output.turntable_frames 2 --output.turntable_resolution 32 \\
                 --texture.export_resolution 64"                                       # CPU smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from _gpu_common import COMMAND_A, commit, emit, out_file, panda_argv

RECIPE_ITERS = 1200  # command A's iterations (the original's README)


def generate_argv(a, workspace: str, weight_flags: list[str] | tuple[str, ...] = ()) -> list[str]:
    if a.recipe == "A":
        base = [*COMMAND_A, "--bs", "4", "--iters", str(a.iters)]
    else:
        base = ["--preset", "texture-fast"] + (["--iters", str(a.iters)] if a.iters else [])
    extra = shlex.split(a.flags) + list(weight_flags)
    return panda_argv(base, mesh=a.mesh, model=a.model, device=a.device, workspace=workspace, extra=extra)


def resolved(argv: list[str]):
    """The run configuration ``argv`` resolves to (no model is loaded)."""
    from pgc_fast.cli import build_parser
    from pgc_fast.cli.generate import resolve_generate

    cfg, _notes = resolve_generate(build_parser().parse_args(argv))
    return cfg


def run_once(a, argv: list[str], env: dict[str, str], log: str) -> dict:
    """One generate process; returns its metrics.json plus the outside wall time."""
    cmd = [sys.executable, "-m", "pgc_fast.cli", *argv]
    t0 = time.perf_counter()
    try:
        with open(log, "w") as f:
            rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=a.run_timeout).returncode
    except subprocess.TimeoutExpired:  # the child is killed; say where it was
        with open(log) as f:
            tail = f.read()[-2000:]
        msg = f"gpu_recipe.py: generate ran past --run-timeout {a.run_timeout} s; its output ends:\n{tail}"
        raise SystemExit(msg) from None
    wall = time.perf_counter() - t0
    if rc != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"gpu_recipe.py: generate exited with {rc}; the end of its output:\n{tail}")
    cfg = resolved(argv)
    with open(os.path.join(cfg.workspace_path, "metrics.json")) as f:
        m = json.load(f)
    m["wall_s"] = wall
    return m


def _counts(cfg, iters: int) -> tuple[int, int]:
    """(validations, checkpoints) the loop writes in ``iters`` steps (trainer.fit's schedule)."""
    out = cfg.output
    val = sum(1 for d in range(1, iters) if out.val_every and d % out.val_every == 0)
    ckpt = sum(1 for d in range(1, iters + 1) if (out.ckpt_every and d % out.ckpt_every == 0) or d == iters)
    return val, ckpt


def projection(m: dict, cfg, iters: int, target: int) -> float:
    """Wall time of the same run with ``target`` iterations: the steady step time (steps phase over the steps
    after the first) for the extra steps, and the validation images and checkpoints the longer run writes (each
    costed at this run's mean, a validation at the final views' time when this run wrote none)."""
    ph = m["phases_s"]
    per_step = ph.get("steps", 0.0) / max(1, iters - 1)
    v_now, c_now = _counts(cfg, iters)
    v_then, c_then = _counts(cfg, target)
    per_val = ph.get("validation", 0.0) / v_now if v_now else ph.get("final_views", 0.0)
    per_ckpt = ph.get("checkpoint", 0.0) / max(1, c_now)
    extra = (target - iters) * per_step + (v_then - v_now) * per_val + (c_then - c_now) * per_ckpt
    return m["wall_s"] + extra


def row(name: str, m: dict, iters: int) -> str:
    g, ph = m["phases_grouped_s"], m["phases_s"]
    per_step = ph.get("steps", 0.0) / max(1, iters - 1)
    peak = m["memory"].get("gpu_peak_allocated_mib", 0.0) / 1024
    startup = m.get("startup_s") or 0.0
    other = m["wall_s"] - startup - sum(g.values())
    return (
        f"| {name} | {m['wall_s']:.1f} | {startup:.1f} | {g['load']:.1f} | {g['compile']:.1f} | "
        f"{g['steps']:.1f} ({1e3 * per_step:.0f} ms/it) | {g['export']:.1f} | {g['turntable']:.1f} | "
        f"{g['report']:.1f} | {other:.1f} | {peak:.1f} |"
    )


def local_weights(a) -> list[str]:
    """Write ``a.model`` under ``a.weights_dir`` (unless there already) in a process of its own; the flags that
    load it."""
    from save_builtin_weights import local_flags

    kinds = list(resolved(generate_argv(a, tempfile.gettempdir())).guidance.controlnets)
    if not os.path.isfile(os.path.join(a.weights_dir, "base", "model_index.json")):
        dtype = "fp16" if a.device == "cuda" else "fp32"
        here = os.path.dirname(os.path.abspath(__file__))
        cmd = [sys.executable, os.path.join(here, "save_builtin_weights.py"), "--model", a.model, "--device", a.device]
        cmd += ["--dtype", dtype, "--controlnets", ",".join(kinds), "--out", a.weights_dir]
        rc = subprocess.run(cmd).returncode
        if rc != 0:
            raise SystemExit(f"gpu_recipe.py: save_builtin_weights.py exited with {rc} (its message is above)")
    return local_flags(a.weights_dir, kinds)


def fresh_env(a) -> dict[str, str]:
    env = dict(os.environ)
    if a.fresh_cache:
        root = tempfile.mkdtemp(prefix="pgc_cache_")
        env["PGC_FAST_CACHE_DIR"] = root
        env["TRITON_CACHE_DIR"] = os.path.join(root, "triton")
        env["TORCH_EXTENSIONS_DIR"] = os.path.join(root, "torch_extensions")
        env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=["A", "fast"], default="A")
    ap.add_argument("--iters", type=int, default=None, help="A: default 60; fast: the preset's (200)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--model", default=None, help="default sdxl-random (A) or sd15-random (fast)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--mesh", default=os.environ.get("PGC_PANDA", "../shared/data/panda_spear_shield.obj"))
    ap.add_argument("--flags", default="", help="extra generate flags for every run (one string)")
    ap.add_argument("--fresh-cache", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--run-timeout", type=float, default=600.0, help="seconds one generate run may take")
    ap.add_argument("--weights-dir", default=None, help="load the model from local safetensors written here")
    ap.add_argument("--results", default=None)
    ap.add_argument("--out", default=None, help="directory: gpu_recipe_<recipe>.md and each run's metrics.json")
    a = ap.parse_args(argv)
    a.model = a.model or ("sdxl-random" if a.recipe == "A" else "sd15-random")
    if a.recipe == "A" and a.iters is None:
        a.iters = 60
    a.mesh = os.path.abspath(a.mesh)
    weight_flags = local_weights(a) if a.weights_dir else []
    env, tmp = fresh_env(a), tempfile.mkdtemp(prefix="pgc_recipe_")
    rows, projections = [], []
    for i in range(a.runs):
        argv_i = generate_argv(a, os.path.join(tmp, f"run{i + 1}"), weight_flags)
        cfg = resolved(argv_i)
        m = run_once(a, argv_i, env, os.path.join(tmp, f"run{i + 1}.log"))
        iters = cfg.optim.iters
        label = ("cold: fresh caches" if i == 0 else "warm: second run") if a.fresh_cache else f"run {i + 1}"
        rows.append(row(f"{label}, {iters} it", m, iters))
        print(rows[-1], flush=True)
        if a.recipe == "A":
            projections.append((label, projection(m, cfg, iters, RECIPE_ITERS)))
        if a.out:
            with open(out_file(a.out, f"metrics_{a.recipe}_run{i + 1}.json"), "w") as f:
                json.dump(m, f, indent=1)
    text = report(a, rows, projections)
    emit(text, a.results)
    if a.out:
        emit(text, out_file(a.out, f"gpu_recipe_{a.recipe}.md"), quiet=True)
    return 0


def report(a, rows: list[str], projections: list[tuple[str, float]]) -> str:
    import torch

    dev = torch.cuda.get_device_name() if a.device == "cuda" and torch.cuda.is_available() else a.device
    what = "command A, 4 views per step (`--bs 4`)" if a.recipe == "A" else "the `texture-fast` preset"
    if a.weights_dir:
        what += ", weights from local safetensors"
    lines = [
        f"### `pgc-fast generate`, {what}, `{a.model}` — {dev}, torch {torch.__version__}, commit {commit()}, "
        f"{datetime.date.today()} (`python benches/gpu_recipe.py --recipe {a.recipe}"
        f"{f' --iters {a.iters}' if a.iters else ''} --runs {a.runs}{f' --flags {a.flags!r}' if a.flags else ''}"
        f"{f' --weights-dir {a.weights_dir}' if a.weights_dir else ''}`)",
        "",
        "| run | wall s (process start → exit) | startup | load | compile (1st step) | steps | export | turntable | "
        "report | other | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "startup = interpreter, imports and argument parsing before the run starts; load = mesh (with the "
        "rasteriser's build) and models; export = final validation views and the baked mesh; other = the rest of "
        "the wall time (workspace, config and metrics files, interpreter exit).",
    ]
    for label, wall in projections:
        lines.append(
            f"Projected {RECIPE_ITERS}-iteration recipe ({label}): **{wall / 60:.2f} min** "
            f"({'meets' if wall <= 300 else 'misses'} the 5-min target)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
