"""``pgc-fast bench``: runs the scripts of a source checkout's benches/ folder in subprocesses."""

from __future__ import annotations

import argparse
import os
import sys

# Benchmark suites of `pgc-fast bench`: (script in benches/, whether it takes --results FILE). They need CUDA; on a
# CPU the pytest-benchmark files (torch twins) run instead.
BENCH_SUITES = {
    "kernels": ("gpu_kernels.py", False),
    "attention": ("gpu_attention.py", True),
    "vae": ("gpu_vae_levers.py", True),
    "unet": ("gpu_unet_levers.py", True),
    "guidance": ("gpu_guidance.py", False),
    "hashgrid": ("gpu_hash_grid.py", False),
    "step": ("bench_step.py", True),
    "dmtet": ("gpu_dmtet_step.py", True),
    "parity": ("gpu_step_parity.py", True),
    "zero123": ("gpu_zero123.py", True),
    "recipe": ("gpu_recipe.py", True),
    "all": ("", False),
}


# Arguments a suite always gets: the step benchmark times the pipeline as `pgc-fast generate` runs it by default
# (regional compile on); pass `-- --help` to see a script's own flags.
BENCH_DEFAULT_ARGS = {"step": ["--compile"]}


def cmd_bench(args: argparse.Namespace) -> int:
    """Run benches/ scripts in a subprocess (each prints its table with device, versions and commit)."""
    import subprocess
    from pathlib import Path

    import torch

    root = Path(__file__).resolve().parents[3]
    benches = root / "benches"
    if not (benches / "bench_step.py").is_file():
        print(
            f"pgc-fast bench: the benchmarks live in a source checkout's benches/ folder; none next to {root}.\n"
            "Clone the repository and install it with `bash .ci/setup` (an editable install).",
            file=sys.stderr,
        )
        return 2
    extra = list(getattr(args, "extra", []))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(root / "kernels"), str(root / "python"), os.environ.get("PYTHONPATH", "")]),
    )
    if not torch.cuda.is_available():
        print("pgc-fast bench: no CUDA device; running the CPU pytest-benchmark files (torch twins).", flush=True)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--benchmark-enable",
            "-p",
            "no:cacheprovider",
            *[str(p) for p in sorted(benches.glob("bench_*.py")) if p.name != "bench_step.py"],
            *extra,
        ]
        return subprocess.call(cmd, cwd=root, env=env)
    suites = [k for k in BENCH_SUITES if k != "all"] if args.suite == "all" else [args.suite]
    rc = 0
    for name in suites:
        script, takes_results = BENCH_SUITES[name]
        cmd = [sys.executable, str(benches / script), *BENCH_DEFAULT_ARGS.get(name, []), *extra]
        if args.results and takes_results:
            cmd += ["--results", args.results]
        print(f"== pgc-fast bench {name}: {' '.join(cmd[1:])}", flush=True)
        rc = max(rc, subprocess.call(cmd, cwd=root, env=env))
    return rc
