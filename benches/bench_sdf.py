"""CPU benchmarks for the Rust signed distance (issue 17, item 1), pytest-benchmark style.

    PYTHONPATH=$PWD/kernels:$PWD/python .venv/bin/python -m pytest benches/bench_sdf.py --benchmark-enable
    PYTHONPATH=$PWD/kernels:$PWD/python .venv/bin/python benches/bench_sdf.py   # ratio table (one process)
    ... benches/bench_sdf.py --no-baselines                                     # ours only

Target: 1M points on the seed's 62k-face panda in ≤ 3 s on the 2-core machine. Baseline:
``trimesh.proximity.signed_distance`` (needs ``rtree``; its sign is positive inside, ours negative), timed
on a subset because it is slow; the ratio compares per-point times. The brute-force numpy twin
(:func:`pgc_fast.mesh.sdf.signed_distance_reference`) is timed on a smaller subset.

Query points follow the original's SDF initialisation (surface samples + N(0, 0.04²) jitter, and a second
copy + N(0, 0.4²), the mesh canonicalised to max |coordinate| 0.8); a second set is uniform in [−1, 1]³
(the DMTet grid's domain).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np
import pytest

from pgc_fast.mesh import load_mesh, normalize
from pgc_fast.mesh.sdf import signed_distance, signed_distance_reference, winding_number

PANDA = Path(__file__).resolve().parents[2] / "shared" / "data" / "panda_spear_shield.obj"
if not PANDA.exists():
    PANDA = Path("/work/shared/data/panda_spear_shield.obj")


def panda() -> tuple[np.ndarray, np.ndarray]:
    if not PANDA.exists():
        pytest.skip(f"{PANDA} is absent")
    m, _ = normalize(load_mesh(PANDA), 0.8)
    return m.vertices, m.faces


def original_points(v: np.ndarray, f: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n points as the original's SDF init draws them: half near (σ 0.04), half far (σ 0.4), float32."""
    rng = np.random.default_rng(seed)
    tri = v[f].astype(np.float64)
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face = rng.choice(len(f), n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    p = (tri[face] * w[:, :, None]).sum(1)
    sigma = np.where(np.arange(n) < n // 2, 0.04, 0.4)[:, None]
    return (p + sigma * rng.standard_normal((n, 3))).astype(np.float32)


def uniform_points(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def mesh():
    return panda()


def test_sdf_panda_1m(benchmark, mesh):
    v, f = mesh
    p = original_points(v, f, 1_000_000)
    d = benchmark.pedantic(signed_distance, (v, f, p), rounds=2)
    assert d.shape == (1_000_000,)


def test_sdf_panda_1m_unsigned(benchmark, mesh):
    v, f = mesh
    p = original_points(v, f, 1_000_000)
    benchmark.pedantic(signed_distance, (v, f, p), {"signed": False}, rounds=2)


def test_sdf_panda_10k_trimesh(benchmark, mesh):
    trimesh = pytest.importorskip("trimesh")
    pytest.importorskip("rtree")
    v, f = mesh
    tm = trimesh.Trimesh(v, f, process=False)
    p = original_points(v, f, 10_000)
    benchmark.pedantic(trimesh.proximity.signed_distance, (tm, p), rounds=1)


def _timed(fn, *args, repeat: int = 3, **kw):
    """(best wall s, CPU s of that run (all threads), result)."""
    best = (float("inf"), 0.0, None)
    for _ in range(repeat):
        c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = fn(*args, **kw)
        t, c1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        if t < best[0]:
            best = (t, cpu, out)
    return best


def _holed(v: np.ndarray, f: np.ndarray, radius: float) -> np.ndarray:
    """Faces minus those whose centroid lies within ``radius`` of face 0's centroid (one hole)."""
    c = v[f].mean(1)
    return f[np.linalg.norm(c - c[0], axis=1) >= radius]


def main() -> None:
    import argparse

    import trimesh

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--trimesh-points", type=int, default=10_000)
    ap.add_argument("--twin-points", type=int, default=200)
    ap.add_argument("--no-baselines", action="store_true", help="time ours only")
    a = ap.parse_args()
    v, f = panda()
    n = a.points
    sets = {"original (near σ .04 + far σ .4)": original_points(v, f, n), "uniform [-1,1]³": uniform_points(n)}
    rows: list[tuple[str, int, float, float, float, float]] = []  # case, points, wall, CPU, ratio wall, ratio CPU
    nan = float("nan")
    t, cpu, _ = _timed(signed_distance, v, f, sets["uniform [-1,1]³"][:1], repeat=5)
    rows.append(("build only (BVH, moments, boundary; 1 query)", 1, t, cpu, nan, nan))
    tm = trimesh.Trimesh(v, f, process=False)
    for name, p in sets.items():
        t, cpu, d = _timed(signed_distance, v, f, p)
        rows.append((f"ours, {name}", n, t, cpu, nan, nan))
        t_u, cpu_u, _ = _timed(signed_distance, v, f, p, signed=False)
        rows.append((f"ours unsigned, {name}", n, t_u, cpu_u, nan, nan))
        if a.no_baselines:
            continue
        k = a.trimesh_points
        t_tm, cpu_tm, d_tm = _timed(trimesh.proximity.signed_distance, tm, p[:k], repeat=1)
        rows.append(
            (f"trimesh.proximity.signed_distance, {name}", k, t_tm, cpu_tm, t_tm / k * n / t, cpu_tm / k * n / cpu)
        )
        # trimesh is positive inside (and on points within its merge tolerance of the surface); ours negative.
        err = np.abs(np.abs(d[:k]) - np.abs(d_tm)).max()
        agree = np.mean(np.sign(d[:k]) == -np.sign(d_tm))
        print(f"{name}: max ||ours| − |trimesh|| = {err:.2e}, sign agreement with trimesh {agree * 100:.2f} %")
        k = a.twin_points
        t_r, cpu_r, d_r = _timed(signed_distance_reference, v, f, p[:k], repeat=1)
        rows.append((f"numpy twin (exact), {name}", k, t_r, cpu_r, t_r / k * n / t, cpu_r / k * n / cpu))
        print(f"{name}: max |ours − twin| = {np.abs(d[:k] - d_r).max():.2e} (float32 output)")
    p = sets["original (near σ .04 + far σ .4)"]
    for label, ff in (
        ("one hole, r = 0.05", _holed(v, f, 0.05)),
        ("every 10th face removed", f[np.arange(len(f)) % 10 != 0]),
    ):
        t, cpu, d = _timed(signed_distance, v, ff, p, repeat=2)
        rows.append(
            (f"ours, open panda ({label}, {len(f) - len(ff)} faces fewer), original points", n, t, cpu, nan, nan)
        )
        print(f"open panda ({label}): {np.mean(d < 0) * 100:.1f} % of the points inside")
    t, cpu, _ = _timed(winding_number, v, f, p, repeat=2)
    rows.append(("winding_number alone (every point evaluated), original points", n, t, cpu, nan, nan))
    threads = os.environ.get("RAYON_NUM_THREADS", "unset")
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()}, RAYON_NUM_THREADS={threads}")
    print("| case | points | wall (s) | CPU (s) | µs/point (wall) | baseline/ours per point: wall, CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, k, t, cpu, rw, rc in rows:
        ratio = "" if np.isnan(rw) else f"{rw:.0f}×, {rc:.0f}×"
        per_point = f"{t / k * 1e6:.2f}" if k > 1 else ""
        print(f"| {name} | {k:,} | {t:.3f} | {cpu:.3f} | {per_point} | {ratio} |")


if __name__ == "__main__":
    main()
