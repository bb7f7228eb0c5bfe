"""Classifier Score Distillation (CSD, arXiv 2310.17590): g_z = w(t) (eps_c - eps_u).

Only the classifier score: no guidance-scale factor and no noise residual, as the original. Computed by the
fused ``pgc_kernels.sds_grad`` with target = eps_u and s = 0 in the pgc convention (eps_hat = eps_c).
"""

from __future__ import annotations

import torch

from pgc_fast.config.schema import GuidanceConfig
from pgc_kernels import sds_grad


def grad(
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    noise: torch.Tensor,
    weight: torch.Tensor,
    t: torch.Tensor,
    scale: float,
    cfg: GuidanceConfig,
    convention: str,
) -> torch.Tensor:
    """CSD latent gradient, float32 [B, 4, h, w]. ``noise``, ``scale`` and ``convention`` are unused."""
    del noise, t, scale, convention
    return sds_grad(
        eps_cond, eps_uncond, eps_uncond, weight, 0.0, convention="pgc", clamp=cfg.latent_clamp, clip=cfg.latent_clip
    )
