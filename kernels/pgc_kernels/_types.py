"""Small result types shared by the Triton ops and their torch twins."""

from __future__ import annotations

from typing import NamedTuple

import torch


class PixelClipStats(NamedTuple):
    """What one :func:`pgc_kernels.pixel_clip` call did, as 0-d float32 tensors on the gradient's device.

    They are never read on the host by pgc_kernels (no sync); call ``.item()`` yourself when logging.

    - ``fraction_clipped``: fraction of pixels whose norm (per ``norm``) exceeds the threshold τ·scale,
      i.e. the pixels ``variant="clip"`` rescales. Pixels holding NaN/inf count as clipped.
    - ``max_norm``: largest pixel norm of the *input* gradient, in the input's units (still multiplied by
      the GradScaler scale if one was passed: divide by it for unscaled values). ``inf`` if any pixel holds NaN/inf.
    - ``mean_norm``: mean pixel norm of the input gradient, same units; ``inf`` if any pixel holds NaN/inf.
    """

    fraction_clipped: torch.Tensor
    max_norm: torch.Tensor
    mean_norm: torch.Tensor
