"""pgc-kernels: Triton kernels for PGC-3D with pure-torch twins in :mod:`pgc_kernels.reference`.

Depends only on torch and triton. ``backend="auto"`` picks Triton for CUDA tensors and the torch
reference elsewhere; ``backend="triton"`` also runs on CPU tensors under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
from .hash_grid_encode import hash_grid_encode  # noqa: E402,F401  (hashgrid)
