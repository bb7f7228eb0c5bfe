"""pytest-benchmark for sds_grad. On a CPU machine it times the torch reference (backend="auto");
on CUDA it times the Triton kernel. GPU tables with µs/GB/s come from benches/gpu_kernels.py.

    PYTHONPATH=kernels python -m pytest benches/bench_sds_grad.py --benchmark-enable
"""

from __future__ import annotations

import pytest
import torch

import pgc_kernels as pk

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (8, 4, 128, 128) if DEV == "cuda" else (4, 4, 64, 64)


@pytest.mark.parametrize(
    "opts", [{}, {"cfg_rescale": 0.5, "clamp": 1.0, "clip": 0.5}], ids=["plain", "rescale_clamp_clip"]
)
def test_bench_sds_grad(benchmark, opts):
    ec, eu, noise = (torch.randn(SHAPE, device=DEV) for _ in range(3))
    w = torch.rand(SHAPE[0], device=DEV)

    def run():
        out = pk.sds_grad(ec, eu, noise, w, 100.0, **opts)
        if DEV == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark(run)
    assert out.dtype == torch.float32
