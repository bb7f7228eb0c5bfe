"""Stable Score Distillation (SSD, arXiv 2312.09305) with the original's bugs fixed (a bug of the original).

h = w(t)(eps_c - eps_u). For t <= M the gradient is the "mode-disengaging" term: the part of eps_c orthogonal
to the noise, eps~ = eps_c - (<eps_c, eps>_b / ||eps||_b^2) eps, rescaled to ||h||_b; for t > M it is h. All
projections are per sample (the original used ||eps|| instead of ||eps||^2, a batch-global dot product, and
broadcast [B] against the width axis, which crashed for B > 1).
"""

from __future__ import annotations

import torch

from pgc_fast.config.schema import GuidanceConfig
from pgc_fast.guidance import schedule
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
    """SSD latent gradient, float32 [B, 4, h, w]; any batch size."""
    del scale, convention
    h = sds_grad(eps_cond, eps_uncond, eps_uncond, weight, 0.0, convention="pgc")
    g = schedule.ssd_grad(h, eps_cond, noise, t, cfg.ssd_m)
    if cfg.latent_clamp is not None:
        g = g.clamp(-cfg.latent_clamp, cfg.latent_clamp)
    if cfg.latent_clip is not None:
        n = g.abs().amax(dim=1, keepdim=True)
        g = g * torch.clamp(cfg.latent_clip / n.clamp_min(1e-30), max=1.0)
    return g
