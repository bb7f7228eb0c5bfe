"""Backend choice shared by every op: "triton", "torch" (the reference) or "auto"."""
from __future__ import annotations

import os

import torch

try:  # pgc_kernels must import (and fall back to the reference) where triton is missing, e.g. macOS.
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:  # pragma: no cover - triton ships with Linux torch wheels
    HAS_TRITON = False


def interpret_mode() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1`` set before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(op: str, backend: str, t: torch.Tensor) -> bool:
    """Whether ``op`` should launch its Triton kernel on tensor ``t`` under ``backend``.

    "auto": Triton for CUDA tensors, the reference elsewhere. "triton": CUDA tensors, or CPU tensors under
    ``TRITON_INTERPRET=1``; anything else is a ``ValueError``. "torch": never.
    """
    if backend == "torch":
        return False
    if backend == "auto":
        return HAS_TRITON and t.is_cuda
    if not HAS_TRITON:
        raise ValueError(f"{op}(): backend must be 'torch' or 'auto' when triton is not installed, got 'triton'")
    if t.is_cuda or (t.device.type == "cpu" and interpret_mode()):
        return True
    raise ValueError(
        f"{op}(): backend='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before "
        f"importing triton), got a tensor on {t.device}"
    )
