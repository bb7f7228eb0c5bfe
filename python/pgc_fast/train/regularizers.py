"""Image regularisers added to the guidance loss (the original's Trainer.train_step)."""

from __future__ import annotations

import torch

__all__ = ["SATURATION_THRESHOLD", "saturation_penalty"]

SATURATION_THRESHOLD = 0.5
"""The mean saturation above which the penalty acts (the original's)."""


def saturation_penalty(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The original's saturation penalty (``--lambda_saturation``), before its weight: ``s̄²`` when the mean HSV
    saturation ``s̄`` of the covered pixels exceeds :data:`SATURATION_THRESHOLD`, else 0 (0-d, differentiable).

    Per pixel ``s = (max_c − min_c) / (max_c + 1e-7)`` (0 where max_c = 0); ``s̄`` = mask-weighted mean over the
    batch. image float [B, 3, H, W] in [0, 1]; mask float [B, 1, H, W] in [0, 1]. Two bugs of the original fixed:
    it mapped the image as if it were in [−1, 1] first (0.5·x + 0.5, so every saturation it measured was of an
    image squeezed into [0.5, 1]), and it indexed an [B, H, W] mask against the [B, C, H, W] image. No host sync:
    the threshold is a ``torch.where``."""
    if image.dim() != 4 or image.shape[1] != 3 or mask.shape != (image.shape[0], 1, *image.shape[2:]):
        raise ValueError(
            f"saturation_penalty(): image must be [B,3,H,W] and mask [B,1,H,W], got {list(image.shape)}, "
            f"{list(mask.shape)}"
        )
    x = image.float()
    hi, lo = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    sat = torch.where(hi > 0, (hi - lo) / (hi + 1e-7), torch.zeros_like(hi))
    m = mask.float()
    mean = (sat * m).sum() / m.sum().clamp_min(1e-12)
    return torch.where(mean > SATURATION_THRESHOLD, mean**2, torch.zeros_like(mean))
