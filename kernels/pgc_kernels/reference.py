"""Pure-torch twins of every pgc_kernels op: same signatures, run anywhere (CPU included).

They are the CPU fallback (``backend="torch"``), the oracle the tests compare the Triton kernels
against, and the baseline the benchmarks time.
"""
from __future__ import annotations
