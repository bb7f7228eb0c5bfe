"""Multi-GPU scaling of ``pgc-fast generate`` (issue 10): the seed recipe with ``sdxl-random`` for 50 iterations
on 1, 2 and 4 GPUs through torchrun (one process per GPU, NCCL, NVLink multicast off).

    python benches/gpu_multi.py --mesh /path/to/panda_spear_shield.obj [--gpus 1,2,4] [--results benches/RESULTS.md]

Each count N runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m pgc_fast.cli generate -O0 -O2
-O4 --guidance controlnet --text "A panda …" --mesh_path MESH --model sdxl-random --device cuda --iters 50`` (the
seed's command: SDXL rule → 2 views per GPU at 1024², so N GPUs train 2N views per step) and reads the run's
``metrics.json``: steady-state s/iteration (steps 11 … 50; the first 10 hold warm-up and autotuning), views/s,
weak-scaling efficiency ``s/it(1 GPU) / s/it(N GPUs)`` (per-GPU work is constant; goal ≥ 85 % at 2 GPUs) and
peak memory of every GPU. Exports are skipped (rank 0 alone would do them; they are not what scales).

``--smoke`` runs the same path on the CPU with gloo, ``tiny-sd`` and the demo mesh at 32² (checks the script; its
timings mean nothing). Not a pytest file: tests/pipeline/test_distributed.py covers the code on the CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _gpu_common import COMMAND_A, emit, panda_argv

WARMUP_STEPS = 10


def generate_argv(a: argparse.Namespace, ws: str) -> list[str]:
    common = [
        "--output.root",
        "",
        "--workspace",
        ws,
        "--force",
        "--output.turntable_frames",
        "0",
        "--no-output.save_mesh",
        "--no-output.report",
        "--output.val_every",
        "0",
        "--output.ckpt_every",
        "0",
    ]
    if a.smoke:
        return [
            "generate",
            "--preset",
            "demo",
            "--mesh.path",
            a.mesh,
            "--device",
            "cpu",
            "--optim.iters",
            str(a.iters),
            "--render.resolution",
            "32",
            "--no-texture.init_from_vertex_colors",
            *common,
        ]
    extra = ["--iters", str(a.iters), *common]
    return panda_argv(COMMAND_A, mesh=a.mesh, model=a.model, device="cuda", extra=extra)


def run_one(a: argparse.Namespace, n: int, root: Path) -> dict:
    """One torchrun job of n processes; its metrics.json plus wall time."""
    ws = str(root / f"gpus{n}")
    env = dict(os.environ)
    env.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off (KINDS.md)
    if not a.smoke:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
    else:
        env.setdefault("OMP_NUM_THREADS", "1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={n}",
        "-m",
        "pgc_fast.cli",
        *generate_argv(a, ws),
    ]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-6000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"gpu_multi: the {n}-process run failed (exit {p.returncode})")
    m = json.loads((Path(ws) / "metrics.json").read_text())
    m["_wall_s"] = wall
    return m


def summarise(n: int, m: dict) -> dict:
    t = m["history"]["time"]  # seconds since run start after each step
    k = min(WARMUP_STEPS, len(t) - 2)
    steady = (t[-1] - t[k - 1]) / (len(t) - k) if k >= 1 else m["s_per_it"]
    ranks = m.get("ranks") or [{"memory": m["memory"], "device": m["device"]}]
    peaks = [r["memory"].get("gpu_peak_allocated_mib", float("nan")) / 1024 for r in ranks]
    return {
        "n": n,
        "s_it": steady,
        "s_it_all": m["s_per_it"],
        "views": m["views_per_step"],
        "views_s": m["views_per_step"] / steady,
        "peaks": peaks,
        "load_s": m["phases_s"].get("load_model"),
        "wall": m["_wall_s"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", default=os.environ.get("PGC_PANDA", "../shared/data/panda_spear_shield.obj"))
    ap.add_argument("--gpus", default="1,2,4", help="process counts to run (those above the GPU count are skipped)")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--model", default="sdxl-random")
    ap.add_argument("--results", default=None, help="append the table to this file")
    ap.add_argument("--smoke", action="store_true", help="CPU + gloo + tiny-sd on the demo mesh (script check)")
    a = ap.parse_args(argv)
    import torch

    root = Path(tempfile.mkdtemp(prefix="gpu_multi_"))
    if a.smoke:
        from pgc_fast.apps.demo import make_demo_mesh
        from pgc_fast.mesh import save_mesh

        a.mesh = str(root / "vase.ply")
        save_mesh(make_demo_mesh(12, 6), a.mesh)
        a.iters = min(a.iters, 12)
        avail = os.cpu_count() or 1
        dev = "cpu (gloo, smoke run: timings meaningless)"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_multi: needs CUDA GPUs (or --smoke)")
        avail = torch.cuda.device_count()
        dev = f"{avail}× {torch.cuda.get_device_name(0)}"
    counts = [int(x) for x in a.gpus.split(",") if x.strip()]
    skipped = [n for n in counts if n > avail]
    counts = [n for n in counts if n <= avail]
    if not counts:
        raise SystemExit(f"gpu_multi: no count in {a.gpus!r} fits {avail} device(s)")
    rows = []
    for n in counts:
        s = summarise(n, run_one(a, n, root))
        rows.append(s)
        print(
            f"{n} GPU(s): {s['s_it']:.3f} s/it steady, peaks {', '.join(f'{p:.1f}' for p in s['peaks'])} GiB",
            flush=True,
        )
    base = next((r for r in rows if r["n"] == 1), None)
    lines = [
        f"### Multi-GPU `pgc-fast generate` (seed recipe, `{a.model if not a.smoke else 'tiny-sd'}`, {a.iters} "
        f"iterations) — {dev}, torch {torch.__version__}, commit {os.environ.get('PGC_COMMIT', 'unknown')}, "
        f"{datetime.date.today()} (`python benches/gpu_multi.py --gpus {a.gpus}`)",
        "",
        f"| GPUs | views / step | s / iteration (steps {WARMUP_STEPS + 1}-{a.iters}) | s / it (all) | views / s | "
        "scaling efficiency | peak GiB per GPU | model load s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eff = f"{100 * base['s_it'] / r['s_it']:.0f} %" if base else "n/a"
        lines.append(
            f"| {r['n']} | {r['views']} | {r['s_it']:.3f} | {r['s_it_all']:.3f} | {r['views_s']:.2f} | "
            f"{eff} | {' / '.join(f'{p:.1f}' for p in r['peaks'])} | {r['load_s'] or float('nan'):.1f} |"
        )
    lines += [
        "",
        "Scaling efficiency = s/it on 1 GPU ÷ s/it on N GPUs (each GPU renders the same 2 views; "
        "ideal 100 %)." + (f" Skipped (not enough devices): {skipped}." if skipped else ""),
        "",
    ]
    emit("\n".join(lines), a.results)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
