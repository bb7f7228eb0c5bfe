"""Score Distillation Sampling (DreamFusion, arXiv 2209.14988, eq. 3), as PGC-3D uses it.

g_z = w(t) [eps_hat(z_t; y, t) - eps] with eps_hat the classifier-free-guided prediction (either convention,
optional CFG rescale), then NaN → 0, optional element clamp (grad_clip_latent) and per-latent-pixel clip —
all in one fused pass (``pgc_kernels.sds_grad``). The gradient is injected into the latents with
``pgc_kernels.sds_loss`` (sum over the batch, no 1/B: the original's convention, which the PGC threshold was
tuned for).
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
    """SDS latent gradient. eps_*: [B, 4, h, w] (UNet dtype); noise: same shape; weight: [B] float32 (already
    times grad_scale); t: [B] (unused, uniform signature). Returns float32 [B, 4, h, w]."""
    del t
    return sds_grad(
        eps_cond,
        eps_uncond,
        noise,
        weight,
        scale,
        convention=convention,
        cfg_rescale=cfg.cfg_rescale,
        clamp=cfg.latent_clamp,
        clip=cfg.latent_clip,
    )
