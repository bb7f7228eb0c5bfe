"""Backend choice shared by every op: "triton", "torch" (the reference) or "auto"; the one guarded triton import.

pgc_kernels imports, and every op runs through its torch twin, where triton cannot be imported (e.g. macOS, or a
CPU-only torch build). Each op module defines its ``@triton.jit`` kernels inside ``if HAS_TRITON:`` with the
``triton``/``tl`` names imported from here, and launches them only where :func:`use_triton` says so.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None

HAS_TRITON: bool = triton is not None


def interpret_mode() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1`` set before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(op: str, backend: str, t: torch.Tensor) -> bool:
    """Whether ``op`` should launch its Triton kernel on tensor ``t`` under ``backend``.

    "auto": Triton for CUDA tensors when triton is importable, the reference otherwise. "triton": CUDA tensors,
    or CPU tensors under ``TRITON_INTERPRET=1``; a ``ValueError`` for anything else, and always when triton
    cannot be imported (``op(): backend must be 'auto' or 'torch' when triton is not installed, got 'triton'``).
    "torch": never.
    """
    if backend == "torch":
        return False
    if backend == "auto":
        return HAS_TRITON and t.is_cuda
    if not HAS_TRITON:
        raise ValueError(f"{op}(): backend must be 'auto' or 'torch' when triton is not installed, got 'triton'")
    if t.is_cuda or (t.device.type == "cpu" and interpret_mode()):
        return True
    raise ValueError(
        f"{op}(): backend='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before "
        f"importing triton), got a tensor on {t.device}"
    )
