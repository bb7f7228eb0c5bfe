"""Benchmark and acceptance table: pgc_fast.mesh.uv.unwrap against PyPI xatlas, same process, same machine.

For every acceptance mesh (benches/uv_meshes.py) both unwrappers run at the same target resolution and
padding, and both layouts are measured by the same `uv_metrics` (exact overlaps, flips, utilisation at the
resolution, Sander L2/L∞ stretch, charts, seams). The bar (issue 4): 0 overlaps, 0 flips, utilisation >=
xatlas - 0.03, L2 stretch <= 1.1 x xatlas, >= 3x faster than xatlas, and a 1M-face mesh in < 60 s.

    PYTHONPATH=$PWD/kernels:$PWD/python .venv/bin/python benches/bench_unwrap.py [--quick] [--no-1m]

Prints the table and replaces the `bench_unwrap` section of benches/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import uv_meshes as M  # noqa: E402
from pgc_fast.mesh.uv import unwrap, uv_metrics  # noqa: E402

RES, PAD = 2048, 2
NOTES = (
    "\nOther processes share this 2-core machine and add time to both unwrappers, most to xatlas' thread "
    "pool (its panda time ranged 9–23 s within one session); times are best-of-n, so read the speed-ups "
    "as approximate. The rough sphere (noise amplitude above the edge length) is a stress row beyond the "
    "issue's corpus.\n"
)


def run_ours(v, f):
    t = time.perf_counter()
    vmap, nf, uv = unwrap(v, f, resolution=RES, padding=PAD)
    return time.perf_counter() - t, (vmap, nf, uv)


def run_xatlas(v, f):
    import xatlas

    t = time.perf_counter()
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f.astype(np.uint32))
    po = xatlas.PackOptions()
    po.resolution, po.padding = RES, PAD
    atlas.generate(pack_options=po)  # default chart options, as xatlas.parametrize uses
    vmap, nf, uv = atlas[0]
    dt = time.perf_counter() - t
    return dt, (vmap.astype(np.int64), nf.astype(np.int64), uv), atlas.atlas_count


def cases(quick: bool, one_million: bool, stress: bool):
    yield "panda (seed)", lambda: M.load_panda(0), True
    yield "UV sphere 128x256", lambda: M.uv_sphere(128, 256), True
    yield "torus 256x128", lambda: M.torus(256, 128), True
    yield "noisy sphere (ico6, ±0.005)", lambda: M.noisy_sphere(6, 0.005), True
    yield "rough sphere (ico5, ±0.02)", lambda: M.noisy_sphere(5, 0.02), True
    yield "marching tets (Kuhn 64³)", lambda: M.marching_tets_blob(64), True
    if not quick:
        yield "panda subdivided x1", lambda: M.load_panda(1), True
    if stress:  # noise amplitude above the edge length: both unwrappers cut thousands of charts (minutes)
        yield "very rough sphere (ico6, ±0.02)", lambda: M.noisy_sphere(6, 0.02), True
    if one_million:
        yield "panda subdivided x2 (1M)", lambda: M.load_panda(2), False  # xatlas: hours (issue 4)


def fmt(x, p=3):
    return "—" if x is None else (f"{x:.{p}f}" if isinstance(x, float) else str(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 250k-face mesh")
    ap.add_argument("--no-1m", action="store_true", help="skip the 1M-face mesh (ours only)")
    ap.add_argument("--stress", action="store_true", help="add the very rough sphere (minutes for both)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of ours per mesh below 300k faces")
    ap.add_argument("--xatlas-repeats", type=int, default=2, help="timed runs of xatlas per mesh below 100k faces")
    ap.add_argument("--no-write", action="store_true", help="do not update benches/RESULTS.md")
    args = ap.parse_args()

    tiny_v, tiny_f = M.torus(16, 8)
    unwrap(tiny_v, tiny_f, resolution=256)  # warm-up: thread pool start

    rows = []
    for name, make, with_xatlas in cases(args.quick, not args.no_1m, args.stress):
        v, f = make()
        n = 1 if len(f) > 300_000 else args.repeats
        times, out = [], None
        for _ in range(n):
            dt, out = run_ours(v, f)
            times.append(dt)
        t_ours = min(times)
        mo = uv_metrics(v, f, out[2], out[1], RES)
        np.testing.assert_array_equal(out[0][out[1]], f)
        t_x, mx, pages = None, None, None
        if with_xatlas:
            # Best of n for both: other processes on a shared 2-core machine only ever add time, and
            # xatlas' own thread pool suffers most from them (9-23 s for the panda in one session).
            xs = [run_xatlas(v, f) for _ in range(args.xatlas_repeats if len(f) < 100_000 else 1)]
            t_x, xo, pages = min(xs, key=lambda r: r[0])
            mx = uv_metrics(v, f, xo[2], xo[1], RES)
        row = dict(name=name, faces=len(f), t_ours=t_ours, t_x=t_x, mo=mo, mx=mx, pages=pages)
        if mx is not None:
            row["ok"] = {
                "overlaps": mo["overlapping_pairs"] == 0,
                "flips": mo["flipped"] == 0,
                "util": mo["utilisation"] >= mx["utilisation"] - 0.03,
                "L2": mo["l2_stretch"] <= 1.1 * mx["l2_stretch"],
                "3x": t_x >= 3 * t_ours,
            }
        else:
            row["ok"] = {
                "overlaps": mo["overlapping_pairs"] == 0,
                "flips": mo["flipped"] == 0,
                "<60s": t_ours < 60,
            }
        rows.append(row)
        print_row(row)
        sys.stdout.flush()

    table = render(rows)
    print()
    print(table)
    if not args.no_write:
        write_results(table)


def print_row(r):
    mo, mx = r["mo"], r["mx"] or {}
    speed = f"{r['t_x'] / r['t_ours']:.1f}x" if r["t_x"] else "—"
    print(
        f"{r['name']:<30} F={r['faces']:>8}  ours {r['t_ours']:7.2f}s  xatlas {fmt(r['t_x'], 2):>7}s  {speed:>6}  "
        f"ovl {mo['overlapping_pairs']}/{fmt(mx.get('overlapping_pairs'))}  flip "
        f"{mo['flipped']}/{fmt(mx.get('flipped'))}  "
        f"util {mo['utilisation']:.3f}/{fmt(mx.get('utilisation'))}  L2 "
        f"{mo['l2_stretch']:.3f}/{fmt(mx.get('l2_stretch'))}  "
        f"charts {mo['chart_count']}/{fmt(mx.get('chart_count'))}  "
        + " ".join(f"{k}:{'ok' if v else 'FAIL'}" for k, v in r["ok"].items())
    )


def render(rows) -> str:
    head = (
        "| mesh | faces | ours s | xatlas s | speed-up | overlaps ours/xa | flips ours/xa | utilisation ours/xa "
        "| L2 stretch ours/xa | L∞ stretch ours/xa | charts ours/xa | seam edges ours/xa | bar |\n"
        "|---|---:|---:|---:|---:|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        mo, mx = r["mo"], r["mx"] or {}
        speed = f"**{r['t_x'] / r['t_ours']:.1f}×**" if r["t_x"] else "—"
        failed = [k for k, v in r["ok"].items() if not v]
        bar = "met" if not failed else "**not met: " + ", ".join(failed) + "**"
        lines.append(
            f"| {r['name']} | {r['faces']:,} | {r['t_ours']:.2f} | {fmt(r['t_x'], 2)} | {speed} | "
            f"{mo['overlapping_pairs']} / {fmt(mx.get('overlapping_pairs'))} | {mo['flipped']} / "
            f"{fmt(mx.get('flipped'))} | "
            f"{mo['utilisation']:.3f} / {fmt(mx.get('utilisation'))} | {mo['l2_stretch']:.3f} / "
            f"{fmt(mx.get('l2_stretch'))} | "
            f"{mo['linf_stretch']:.2f} / {fmt(mx.get('linf_stretch'), 2)} | {mo['chart_count']} / "
            f"{fmt(mx.get('chart_count'))} | "
            f"{mo['seam_edge_count']} / {fmt(mx.get('seam_edge_count'))} | {bar} |"
        )
    return head + "\n".join(lines) + "\n"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} (load average at the end of the run: {load:.1f})"


def write_results(table: str) -> None:
    import xatlas  # noqa: F401

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "unknown"
    from importlib.metadata import version

    section = (
        "<!-- bench_unwrap:start -->\n"
        "## UV unwrapping: `pgc_fast.mesh.uv.unwrap` vs PyPI `xatlas` (CPU)\n\n"
        f"`benches/bench_unwrap.py`, commit `{commit}`, {datetime.date.today().isoformat()}, machine: {machine()}, "
        f"xatlas {version('xatlas')}. Both at resolution {RES}, padding {PAD}, in one process; xatlas with "
        "default chart options (as `xatlas.parametrize`). xatlas leaves whole charts mirrored (its flip count "
        "includes them; `fix_winding=True` does not remove them either). Times are the best of 3 runs for ours (1 "
        "above 300k faces) and of 2 "
        "for xatlas (1 above 100k faces). Metrics of both layouts by `uv_metrics` at the same resolution (overlaps: "
        "exact "
        "interior-intersecting UV triangle pairs; utilisation: covered texel centres / all texels). "
        "Bar per row: 0 overlaps, 0 flips, utilisation ≥ xatlas − 0.03, L2 ≤ 1.1 × xatlas, ≥ 3× faster "
        "(the 1M row: < 60 s; xatlas is not run there, it takes hours).\n\n"
        + table
        + NOTES
        + "<!-- bench_unwrap:end -->\n"
    )
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    start, end = "<!-- bench_unwrap:start -->", "<!-- bench_unwrap:end -->\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
