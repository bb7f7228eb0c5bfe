"""Benchmark of chunked_attention: ours vs its torch twin (``pgc_kernels.reference.chunked_attention_reference``,
SDPA with the math backend) in one process, at the SDXL VAE encoder's mid-block attention (one head, head dim 512).
On a CPU machine the pytest-benchmark cases time the chunked PyTorch-op path (backend="auto") on a small shape; on
CUDA the Triton-fused softmax path. The GPU table (ms, ratio) comes from running this file as a script:

    PYTHONPATH=kernels python -m pytest benches/bench_chunked_attention.py --benchmark-enable
    PYTHONPATH=kernels python benches/bench_chunked_attention.py      # GPU: 4 × 16384 tokens, head dim 512

benches/gpu_attention.py compares against PyTorch's default SDPA kernels and the VAE end to end.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

import pgc_kernels as pk
from _gpu_common import bench_against_twin, gpu_table
from pgc_kernels.reference import chunked_attention_reference

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (4, 1, 16384, 512) if DEV == "cuda" else (1, 1, 1024, 512)  # [B, H, N, D], keys = queries
DTYPE = torch.float16 if DEV == "cuda" else torch.float32


def _inputs(shape, dtype, grad):
    gen = torch.Generator(device=DEV).manual_seed(0)
    q, k, v = (torch.randn(shape, device=DEV, dtype=dtype, generator=gen).requires_grad_(grad) for _ in range(3))
    go = torch.randn(shape, device=DEV, dtype=dtype, generator=gen)
    return q, k, v, go


def _step(fn, q, k, v, go, mode):
    """Forward (no graph) or forward + backward of ``fn``; returns the output and the gradients."""
    if mode == "fwd":
        with torch.no_grad():
            return fn(q, k, v), ()
    out = fn(q, k, v)
    return out, torch.autograd.grad(out, (q, k, v), go)


IMPLS = {"ours": pk.chunked_attention, "twin": chunked_attention_reference}


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", ["ours", "twin"])
def test_bench_chunked_attention(benchmark, impl, mode):
    q, k, v, go = _inputs(SHAPE, DTYPE, mode != "fwd")
    benchmark.group = f"chunked_attention {list(SHAPE)} {mode}"
    tol = dict(rtol=2e-2, atol=2e-2) if DTYPE == torch.float16 else dict(rtol=1e-4, atol=1e-5)
    ours = partial(_step, IMPLS[impl], q, k, v, go, mode)
    bench_against_twin(benchmark, ours, partial(_step, chunked_attention_reference, q, k, v, go, mode), **tol)


def main():
    from triton.testing import do_bench

    gpu_table("case", "ours ms", "twin ms", "speed-up vs twin")
    for shape in [(4, 1, 16384, 512), (1, 1, 4096, 512)]:
        q, k, v, go = _inputs(shape, torch.float16, True)
        for mode in ("fwd", "fwd+bwd"):
            ms = {}
            for impl, fn in IMPLS.items():
                try:
                    ms[impl] = do_bench(partial(_step, fn, q, k, v, go, mode), warmup=5, rep=50, return_mode="median")
                except torch.OutOfMemoryError:
                    ms[impl] = float("nan")
                torch.cuda.empty_cache()
            print(
                f"| {list(shape)} fp16 {mode} | {ms['ours']:.2f} | {ms['twin']:.2f} | {ms['twin'] / ms['ours']:.2f}× |",
                flush=True,
            )


if __name__ == "__main__":
    main()
