"""Benchmark of bias_add: ours vs PyTorch's own bias add (what ``F.conv2d(..., bias)`` + a residual add do) and vs
the float32 torch twin (``pgc_kernels.reference.bias_add_reference``), in one process. On a CPU machine the
pytest-benchmark cases time the torch path (backend="auto"); on CUDA the
Triton kernel. The GPU table (µs, GB/s, ratio) comes from running this file as a script:

    PYTHONPATH=kernels python -m pytest benches/bench_bias_add.py --benchmark-enable
    PYTHONPATH=kernels python benches/bench_bias_add.py          # GPU: the SDXL VAE encoder's 1024² activations
"""

from __future__ import annotations

import pytest
import torch

import pgc_kernels as pk
from _gpu_common import gpu_table

DEV = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (4, 128, 1024, 1024) if DEV == "cuda" else (2, 32, 64, 64)


def _inputs(shape, dtype, residual):
    x = torch.randn(shape, device=DEV, dtype=dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(shape[1], device=DEV, dtype=dtype)
    r = torch.randn_like(x) if residual else None
    return x, b, r


def _eager(x, b, r):
    y = x + b.view(1, -1, 1, 1)  # PyTorch's broadcast bias add (the generic kernel for channels-last)
    return y if r is None else y + r


@pytest.mark.parametrize("residual", [False, True], ids=["bias", "bias+residual"])
def test_bench_bias_add(benchmark, residual):
    x, b, r = _inputs(SHAPE, torch.bfloat16 if DEV == "cuda" else torch.float32, residual)

    def run():
        out = pk.bias_add(x, b, r)
        if DEV == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark(run)
    torch.testing.assert_close(out.float(), _eager(x, b, r).float(), rtol=1e-2, atol=1e-2)


def main():
    from triton.testing import do_bench

    from pgc_kernels.reference import bias_add_reference

    gpu_table("case", "ours µs", "eager µs", "twin µs", "ours GB/s", "speed-up vs eager")
    for shape in [(4, 128, 1024, 1024), (4, 256, 512, 512)]:
        for residual in (False, True):
            x, b, r = _inputs(shape, torch.bfloat16, residual)
            ours = do_bench(lambda: pk.bias_add(x, b, r), warmup=10, rep=100, return_mode="median") * 1e3
            eager = do_bench(lambda: _eager(x, b, r), warmup=10, rep=100, return_mode="median") * 1e3
            twin = do_bench(lambda: bias_add_reference(x, b, r), warmup=10, rep=100, return_mode="median") * 1e3
            nbytes = x.numel() * x.element_size() * (3 if residual else 2)
            print(
                f"| {list(shape)} bf16 channels-last{' + residual' if residual else ''} | {ours:.0f} | {eager:.0f} | "
                f"{twin:.0f} | {nbytes / ours / 1e3:.0f} | {eager / ours:.2f}× |",
                flush=True,
            )


if __name__ == "__main__":
    main()
