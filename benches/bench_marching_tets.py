"""Marching tets per training step (issue 17): ours (:func:`pgc_fast.mesh.tets.marching_tets_torch`: precomputed
unique-edge table + cumsum/scatter compaction, one host sync) against Kaolin's algorithm written in torch
(:func:`marching_tets_kaolin_torch`: ``torch.unique(dim=0)`` over the valid tets' edges every call) on the
same device, and the numpy twin (:func:`marching_tets_reference`, CPU) — one process, outputs checked equal.

    PYTHONPATH=$PWD/kernels:$PWD/python .venv/bin/python benches/bench_marching_tets.py            # CPU, grid 64
    PYTHONPATH=$PWD/kernels:$PWD/python python benches/bench_marching_tets.py --device cuda --res 256 \\
        --results benches/RESULTS.md                                                              # the H100

Each row times extraction alone (``fwd``, no grad, as at export) and extraction + backward of a random
cotangent into the sdf and the deformed grid (``fwd+bwd``, as in a training step). The sdf is a sphere of
radius 0.3 with N(0, 0.01²) noise on the grid deformed as DMTet does (v + (1.8/(2·res))·tanh(δ)), so the
surface has the size of a shape being refined. Times are p20/p50/p80 over ``--repeat`` calls after a warm-up
(device-synchronised); the headline is speedup = twin p50 / ours p50 (> 1: ours is faster), with peak device
memory on CUDA.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from _gpu_common import commit, emit, sync
from pgc_fast.mesh.tets import (
    marching_tets_kaolin_torch,
    marching_tets_reference,
    marching_tets_torch,
    tet_edges,
    tet_grid,
)


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> tuple[list[float], float]:
    """(p20, p50, p80) in ms after one warm-up call, and peak device MiB above the start (0 on the CPU)."""
    fn()
    sync(device)
    base = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else 0.0
    return [q[1], statistics.median(times), q[7]], peak


def problem(res: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v, t = tet_grid(res)
    e, t2e = tet_edges(t)
    vt = torch.from_numpy(v)
    delta = torch.randn(vt.shape, generator=g)
    s = vt.norm(dim=1) - 0.3 + 0.01 * torch.randn(vt.shape[0], generator=g)
    out = {"v": vt, "delta": delta, "sdf": s, "t": torch.from_numpy(t), "e": torch.from_numpy(e)}
    out["t2e"] = torch.from_numpy(t2e)
    return {k: x.to(device) for k, x in out.items()}


def step_fns(p: dict[str, torch.Tensor], res: int) -> dict[str, Callable[[bool], object]]:
    """name → fn(backward) running one extraction (and its backward) with that implementation."""

    def run(extract: Callable[[torch.Tensor, torch.Tensor], tuple], backward: bool) -> object:
        delta = p["delta"].detach().requires_grad_(backward)
        sdf = p["sdf"].detach().requires_grad_(backward)
        with torch.set_grad_enabled(backward):
            verts, faces = extract(p["v"] + (1.8 / (2 * res)) * torch.tanh(delta), sdf)
            if backward:
                torch.autograd.grad(verts, (sdf, delta), torch.ones_like(verts))
        return faces

    ours = lambda vd, s: marching_tets_torch(vd, s, p["t"], p["e"], p["t2e"])
    kaolin = lambda vd, s: marching_tets_kaolin_torch(vd, s, p["t"])
    return {"ours": lambda b: run(ours, b), "kaolin_torch": lambda b: run(kaolin, b)}


def check_equal(p: dict[str, torch.Tensor], res: int) -> int:
    vd = p["v"] + (1.8 / (2 * res)) * torch.tanh(p["delta"])
    a = marching_tets_torch(vd, p["sdf"], p["t"], p["e"], p["t2e"])
    b = marching_tets_kaolin_torch(vd, p["sdf"], p["t"])
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y), "ours and the Kaolin twin differ"
    return int(a[1].shape[0])


def numpy_row(p: dict[str, torch.Tensor], res: int, repeat: int) -> tuple[list[float], float]:
    vd = (p["v"] + (1.8 / (2 * res)) * torch.tanh(p["delta"])).cpu().numpy()
    s, t = p["sdf"].cpu().numpy(), p["t"].cpu().numpy()
    return timed(lambda: marching_tets_reference(vd, s, t), torch.device("cpu"), max(1, repeat // 4))


def table(rows: list[tuple[str, str, list[float], float]], header: str) -> str:
    ours = {mode: q[1] for name, mode, q, _ in rows if name == "ours"}
    lines = [header, "", "| impl | mode | p20 ms | p50 ms | p80 ms | peak MiB | speedup (twin p50 / ours p50) |"]
    lines.append("|---|---|---|---|---|---|---|")
    for name, mode, q, peak in rows:
        sp = "1.00× (ours)" if name == "ours" else f"{q[1] / ours[mode]:.2f}×"
        lines.append(f"| {name} | {mode} | {q[0]:.2f} | {q[1]:.2f} | {q[2]:.2f} | {peak:.0f} | {sp} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--res", type=int, default=64, help="tet grid resolution (the original's is 256)")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy twin (slow at res 256)")
    ap.add_argument("--results", default=None, help="append the table to this markdown file")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    p = problem(a.res, device)
    faces = check_equal(p, a.res)
    rows = []
    for name, fn in step_fns(p, a.res).items():
        for mode, bwd in (("fwd", False), ("fwd+bwd", True)):
            q, peak = timed(lambda fn=fn, bwd=bwd: fn(bwd), device, a.repeat)
            rows.append((name, mode, q, peak))
    if not a.no_numpy:
        q, _ = numpy_row(p, a.res, a.repeat)
        rows.append(("numpy_reference (CPU)", "fwd", q, 0.0))
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    header = (
        f"### marching tets, grid {a.res} ({p['v'].shape[0]:,} vertices, {p['t'].shape[0]:,} tets, "
        f"{faces:,} faces) on {dev}, torch {torch.__version__}, commit {commit()}, {datetime.date.today()}"
    )
    emit(table(rows, header), a.results)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
