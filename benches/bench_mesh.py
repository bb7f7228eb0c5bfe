"""CPU benchmarks for the Rust mesh core (issue 3 targets), pytest-benchmark style.

    PYTHONPATH=$PWD/kernels:$PWD/python .venv/bin/python -m pytest benches/bench_mesh.py --benchmark-enable
    PYTHONPATH=$PWD/kernels:$PWD/python .venv/bin/python benches/bench_mesh.py   # ratio table (one process)

Targets: panda load ≥ 10× faster than ``trimesh.load(process=False)``; rasterising the panda at 4 × 1024² in
< 100 ms on 2 cores; CPU marching tets on the 128 grid ≥ 5× faster than the numpy (Kaolin) reference;
``tet_grid(256)`` in < 5 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pgc_fast.mesh import load_mesh, rasterize
from pgc_fast.mesh.tets import marching_tets, marching_tets_reference, tet_edges, tet_grid

PANDA = Path(__file__).resolve().parents[2] / "shared" / "data" / "panda_spear_shield.obj"
if not PANDA.exists():
    PANDA = Path("/work/shared/data/panda_spear_shield.obj")


def panda_clip(batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Panda normalised into the view volume, orthographic-like clip positions, ``batch`` copies."""
    m = load_mesh(PANDA)
    v = m.vertices - (m.vertices.min(0) + m.vertices.max(0)) / 2
    v = v / np.abs(v).max() * 0.8
    clip = np.concatenate([v, np.ones((len(v), 1), np.float32)], 1)
    clip[:, 2] *= 0.5
    return np.ascontiguousarray(np.stack([clip] * batch)), m.faces


@pytest.fixture(scope="module")
def grid128():
    v, t = tet_grid(128)
    sdf = (np.linalg.norm(v, axis=1) - 0.35).astype(np.float32)
    return v, sdf, t


def test_load_panda(benchmark):
    m = benchmark(load_mesh, PANDA)
    assert m.faces.shape == (62134, 3)


def test_load_panda_trimesh(benchmark):
    trimesh = pytest.importorskip("trimesh")
    benchmark(trimesh.load, PANDA, process=False)


def test_rasterize_panda_4x1024(benchmark):
    clip, faces = panda_clip(4)
    out = benchmark(rasterize, clip, faces, 1024)
    assert out.shape == (4, 1024, 1024, 4)


def test_marching_tets_128(benchmark, grid128):
    v, sdf, t = grid128
    benchmark(marching_tets, v, sdf, t)


def test_marching_tets_128_reference(benchmark, grid128):
    v, sdf, t = grid128
    benchmark.pedantic(marching_tets_reference, (v, sdf, t), rounds=2)


def test_tet_grid_256(benchmark):
    benchmark.pedantic(tet_grid, (256,), rounds=1)


def _best(fn, *args, repeat: int = 5, **kw) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args, **kw)
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    import os

    import trimesh

    rows = []
    ours = _best(load_mesh, PANDA, repeat=20)
    ref = _best(trimesh.load, PANDA, process=False, repeat=5)
    rows.append(("load panda OBJ (62k faces)", ours, "trimesh.load(process=False)", ref, "≥ 10×"))
    clip, faces = panda_clip(4)
    t_r = _best(rasterize, clip, faces, 1024, repeat=5)
    rows.append(("rasterize panda 4×1024²", t_r, "target", 0.1, "< 100 ms"))
    v, t = tet_grid(128)
    sdf = (np.linalg.norm(v, axis=1) - 0.35).astype(np.float32)
    ours = _best(marching_tets, v, sdf, t, repeat=5)
    ref = _best(marching_tets_reference, v, sdf, t, repeat=2)
    rows.append(("marching_tets 128 grid (Rust)", ours, "numpy Kaolin reference", ref, "≥ 5×"))
    t_e = _best(tet_edges, t, repeat=2)
    rows.append(("tet_edges 128 grid (once per grid)", t_e, "-", float("nan"), "-"))
    del v, t, sdf
    t_g = _best(tet_grid, 256, repeat=1)
    rows.append(("tet_grid(256) (2.1M verts, 12.6M tets)", t_g, "target", 5.0, "< 5 s"))
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()}")
    print("| op | ours (ms) | baseline | baseline (ms) | ratio | target |")
    print("|---|---|---|---|---|---|")
    for name, a, bname, b, target in rows:
        ratio = b / a if b == b else float("nan")
        print(f"| {name} | {a * 1e3:.1f} | {bname} | {b * 1e3:.1f} | {ratio:.1f}× | {target} |")


if __name__ == "__main__":
    main()
