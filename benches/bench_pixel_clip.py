"""pytest-benchmark for pixel_clip. On a CPU machine it times the torch reference (backend="auto");
on CUDA it times the Triton kernel. GPU tables with µs/GB/s come from benches/gpu_kernels.py.

    PYTHONPATH=kernels python -m pytest benches/bench_pixel_clip.py --benchmark-enable
"""

from __future__ import annotations

import pytest
import torch

import pgc_kernels as pk

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (4, 3, 1024, 1024) if DEV == "cuda" else (2, 3, 256, 256)


def _sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("variant", ["clip", "soft_pixel", "global"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_bench_pixel_clip(benchmark, variant, layout):
    g = torch.randn(SHAPE, device=DEV) * 0.1
    cd = 1
    if layout == "nhwc":
        g, cd = g.permute(0, 2, 3, 1).contiguous(), -1

    def run():
        out = pk.pixel_clip(g, 0.1, variant=variant, channel_dim=cd)
        _sync()
        return out

    out = benchmark(run)
    assert out.shape == g.shape


def test_bench_original_hook(benchmark):
    """The original's eager hook arithmetic, for comparison."""
    g = torch.randn(SHAPE, device=DEV) * 0.1

    def run():
        ratio = 0.1 / torch.abs(g)
        ratio[ratio > 1] = 1
        out = g * torch.amin(ratio, dim=1, keepdim=True)
        _sync()
        return out

    benchmark(run)
