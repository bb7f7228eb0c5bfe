"""benches/gpu_dmtet_step.py (issue 17, item 7) runs on the CPU at a tiny size: ours and the original's-way twin
step on the same initialised geometry and print the table the H100 run records in benches/RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parents[2] / "benches"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_dmtet_step_bench_smoke(vase, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHES))
    import gpu_dmtet_step as bench

    argv = ["--device", "cpu", "--model", "tiny-sdxl", "--res", "32", "--tet-res", "32", "--views", "1"]
    argv += ["--iters", "1", "--warmup", "0", "--sdf-init", "direct", "--no-compile", "--mesh", str(vase)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "| ours |" in out and "| original's way |" in out and "ratio (original / ours)" in out
    assert "% of our step" in out and "tet grid 32" in out
    # the original's per-GPU share: 2 views as two 1-view passes with gradients accumulated
    argv[argv.index("--views") + 1] = "2"
    assert bench.main([*argv, "--ref-views", "1"]) == 0
    assert "| original's way, 1 views per pass, gradients accumulated |" in capsys.readouterr().out
    sys.modules.pop("gpu_dmtet_step", None)
