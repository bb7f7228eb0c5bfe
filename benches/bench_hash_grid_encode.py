"""pytest-benchmark of hash_grid_encode: the torch twin on the CPU (forward, forward + backward), and the Triton
kernel too when a CUDA device is present. The original's configuration (L=16, F=4, T=2^16, 16 → 4096); the CPU uses
16k points. The full GPU comparison (1M–8M points, torch.compile) is benches/gpu_hash_grid.py.

    PYTHONPATH=kernels python -m pytest benches/bench_hash_grid_encode.py --benchmark-enable
"""

from __future__ import annotations

import pytest
import torch

from pgc_kernels import hash_grid_encode
from pgc_kernels.reference import hash_grid_encode_reference

CFG = dict(base_resolution=16, finest_resolution=4096)
L, T, F = 16, 2**16, 4


def _setup(device: str, n: int, dtype: torch.dtype):
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, 3, device=device, generator=gen)
    table = ((torch.rand(L, T, F, device=device, generator=gen) * 2 - 1) * 1e-4).to(dtype)
    g = torch.randn(n, L * F, device=device, generator=gen).to(dtype)
    return x, table, g


def _run(benchmark, encode, x, table, g, mode, sync):
    if mode == "fwd":

        def fn():
            with torch.no_grad():
                encode(x, table)
            sync()
    else:
        table.requires_grad_(True)

        def fn():
            table.grad = None
            encode(x, table).backward(g)
            sync()

    benchmark(fn)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bench_twin_cpu(benchmark, mode, dtype):
    x, table, g = _setup("cpu", 2**14, dtype)
    benchmark.group = f"hash_grid_encode cpu {mode}"
    _run(benchmark, lambda a, b: hash_grid_encode_reference(a, b, **CFG), x, table, g, mode, lambda: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("provider", ["triton", "torch"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_bench_cuda(benchmark, provider, mode):
    x, table, g = _setup("cuda", 2**20, torch.float16)
    benchmark.group = f"hash_grid_encode cuda 1M {mode}"
    _run(
        benchmark,
        lambda a, b: hash_grid_encode(a, b, backend=provider, **CFG),
        x,
        table,
        g,
        mode,
        torch.cuda.synchronize,
    )
