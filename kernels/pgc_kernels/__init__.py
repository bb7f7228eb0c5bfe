"""pgc-kernels: Triton kernels for PGC-3D with pure-torch twins in :mod:`pgc_kernels.reference`.

Depends only on torch and triton. ``backend="auto"`` picks Triton for CUDA tensors and the torch
reference elsewhere; ``backend="triton"`` also runs on CPU tensors under ``TRITON_INTERPRET=1``.
Where triton cannot be imported (e.g. macOS) the package still imports, ``"auto"`` runs the torch twins
everywhere, and ``backend="triton"`` raises ``ValueError`` (``op(): backend must be 'auto' or 'torch' when
triton is not installed, got 'triton'``).

- :func:`pixel_clip`: pixel-wise gradient clipping (all six variants of the original), one pass.
- :func:`pgc`: autograd identity whose backward applies :func:`pixel_clip`; :class:`PGCHook` / :func:`attach_pgc`:
  the hook form (reusable across steps; enable/disable, τ, statistics per pass and summed, removal).
- :func:`sds_grad`: fused CFG + rescale + residual + weight + clamp + pixel clip + NaN→0 (float32 out).
- :func:`sds_loss`: injects a gradient into the latents, returns 0.5·‖grad‖²/B.
- :func:`chunked_attention`: exact attention for head dims > 256 (the SDXL VAE's 512) at GEMM speed.
- :func:`group_norm_silu` / :class:`GroupNormSiLU`: GroupNorm (+ fused SiLU), NCHW or channels-last.
- :func:`bias_add`: per-channel bias (+ residual) add in one pass, NCHW or channels-last.
- :func:`hash_grid_encode`: Instant-NGP multi-resolution hash-grid encoding (the original's texture field).
"""

from __future__ import annotations

from . import reference
from ._types import PixelClipStats
from .bias_add import bias_add
from .chunked_attention import chunked_attention
from .group_norm_silu import GroupNormSiLU, group_norm_silu
from .hash_grid_encode import hash_grid_encode
from .pixel_clip import PGCHook, attach_pgc, pgc, pixel_clip
from .sds_grad import sds_grad, sds_loss

__version__ = "0.1.0"

__all__ = [
    "GroupNormSiLU",
    "PGCHook",
    "PixelClipStats",
    "__version__",
    "attach_pgc",
    "bias_add",
    "chunked_attention",
    "group_norm_silu",
    "hash_grid_encode",
    "pgc",
    "pixel_clip",
    "reference",
    "sds_grad",
    "sds_loss",
]
