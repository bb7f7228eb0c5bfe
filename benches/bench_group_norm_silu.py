"""Benchmark of group_norm_silu: ours vs its torch twin (``pgc_kernels.reference.group_norm_silu_reference``,
``F.silu(F.group_norm(x))`` as diffusers' ResnetBlock2D computes it) in one process. On a CPU machine the
pytest-benchmark cases time the torch path (backend="auto") on a small shape; on CUDA the Triton kernels. The GPU
table (µs, ratio) comes from running this file as a script:

    PYTHONPATH=kernels python -m pytest benches/bench_group_norm_silu.py --benchmark-enable
    PYTHONPATH=kernels python benches/bench_group_norm_silu.py      # GPU: the SDXL VAE encoder's 1024² activations
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

import pgc_kernels as pk
from _gpu_common import bench_against_twin, gpu_table
from pgc_kernels.reference import group_norm_silu_reference

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (4, 128, 1024, 1024) if DEV == "cuda" else (2, 64, 64, 64)
GROUPS = 32  # the SDXL VAE's GroupNorm


def _inputs(shape, dtype, layout, grad):
    gen = torch.Generator(device=DEV).manual_seed(0)
    x = torch.randn(shape, device=DEV, dtype=dtype, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(shape[1], device=DEV, dtype=dtype, generator=gen)
    b = torch.randn(shape[1], device=DEV, dtype=dtype, generator=gen)
    go = torch.randn_like(x)
    return x.requires_grad_(grad), w.requires_grad_(grad), b.requires_grad_(grad), go


def _step(fn, x, w, b, go, mode):
    """Forward (no graph) or forward + backward of ``fn``; returns the output and the gradients."""
    if mode == "fwd":
        with torch.no_grad():
            return fn(x, GROUPS, w, b), ()
    out = fn(x, GROUPS, w, b)
    return out, torch.autograd.grad(out, (x, w, b), go)


IMPLS = {"ours": pk.group_norm_silu, "twin": group_norm_silu_reference}


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("impl", ["ours", "twin"])
def test_bench_group_norm_silu(benchmark, impl, layout, mode):
    dtype = torch.bfloat16 if DEV == "cuda" else torch.float32
    x, w, b, go = _inputs(SHAPE, dtype, layout, mode != "fwd")
    benchmark.group = f"group_norm_silu {list(SHAPE)} {layout} {mode}"
    # bf16 outputs: 1 ulp (2^-8 relative); the weight/bias gradients are sums over B·H·W elements.
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-4)
    ours = partial(_step, IMPLS[impl], x, w, b, go, mode)
    bench_against_twin(benchmark, ours, partial(_step, group_norm_silu_reference, x, w, b, go, mode), **tol)


def main():
    from triton.testing import do_bench

    gpu_table("case", "ours µs", "twin µs", "speed-up vs twin")
    for shape in [(4, 128, 1024, 1024), (4, 512, 256, 256)]:
        for layout in ("nchw", "channels_last"):
            x, w, b, go = _inputs(shape, torch.bfloat16, layout, True)
            for mode in ("fwd", "fwd+bwd"):
                step = {impl: partial(_step, fn, x, w, b, go, mode) for impl, fn in IMPLS.items()}
                us = {impl: do_bench(f, warmup=10, rep=100, return_mode="median") * 1e3 for impl, f in step.items()}
                print(
                    f"| {list(shape)} bf16 {layout} {mode} | {us['ours']:.0f} | {us['twin']:.0f} | "
                    f"{us['twin'] / us['ours']:.2f}× |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
