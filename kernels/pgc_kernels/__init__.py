"""pgc-kernels: Triton kernels for PGC-3D with pure-torch twins in :mod:`pgc_kernels.reference`.

Depends only on torch and triton. ``backend="auto"`` picks Triton for CUDA tensors and the torch
reference elsewhere; ``backend="triton"`` also runs on CPU tensors under ``TRITON_INTERPRET=1``.

- :func:`pixel_clip`: pixel-wise gradient clipping (all six variants of the original), one pass.
- :func:`pgc`: autograd identity whose backward applies :func:`pixel_clip`; :func:`attach_pgc`: the hook form.
- :func:`sds_grad`: fused CFG + rescale + residual + weight + clamp + pixel clip + NaN→0 (float32 out).
- :func:`sds_loss`: injects a gradient into the latents, returns 0.5·‖grad‖²/B.
"""
from __future__ import annotations

from . import reference
from ._types import PixelClipStats
from .pixel_clip import PGCHook, attach_pgc, pgc, pixel_clip
from .sds_grad import sds_grad, sds_loss

__version__ = "0.1.0"

__all__ = [
    "PGCHook",
    "PixelClipStats",
    "__version__",
    "attach_pgc",
    "pgc",
    "pixel_clip",
    "reference",
    "sds_grad",
    "sds_loss",
    "hash_grid_encode",
]
from .hash_grid_encode import hash_grid_encode  # noqa: E402  (hashgrid)
