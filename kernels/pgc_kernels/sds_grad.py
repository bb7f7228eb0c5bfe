"""Fused score-distillation gradient (CFG, optional CFG rescale, residual, weight, clamp, pixel clip, NaN→0)
and the :func:`sds_loss` surrogate that injects it.

Public: :func:`sds_grad`, :func:`sds_loss`. Torch twin: :func:`pgc_kernels.reference.sds_grad_reference`.
"""
from __future__ import annotations

import torch

from ._backend import use_triton
from ._checks import check_sds_grad_args, check_tensor
from .reference import sds_grad_reference


def _sds_grad_triton(eps_cond, eps_uncond, target, w, s, convention, phi, clamp, clip):
    # Placeholder until the Triton kernel lands: the reference computes the same function.
    return sds_grad_reference(eps_cond, eps_uncond, target, w, s, convention=convention, cfg_rescale=phi, clamp=clamp, clip=clip)


def sds_grad(
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | float,
    guidance_scale: float,
    *,
    convention: str = "pgc",
    cfg_rescale: float = 0.0,
    clamp: float | None = None,
    clip: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Score-distillation gradient w.r.t. the latents in one fused kernel (two with ``cfg_rescale``).

    Args:
        eps_cond, eps_uncond: the UNet's conditional/unconditional noise predictions, [B, C, ...] with
            C = 1..16 at dim 1, float32/float16/bfloat16, one device.
        target: same shape: the noise ε for SDS, the LoRA prediction for VSD, ε_u for CSD.
        weight: w(t) per sample, a [B] tensor (any float dtype) or a float.
        guidance_scale: s.
        convention: ``"pgc"``: ε̂ = ε_c + s(ε_c − ε_u) (the original's SDS; s=100 ⇔ diffusers 101), or
            ``"diffusers"``: ε̂ = ε_u + s(ε_c − ε_u).
        cfg_rescale: φ ∈ [0, 1]; > 0 rescales ε̂ by φ·std(ε_c)/std(ε̂) + 1 − φ per sample (the original's
            SDXL-ControlNet rescale, applied to ε).
        clamp: element clamp of the gradient (the original's grad_clip_latent), or None.
        clip: per-latent-pixel L∞ clip τ: g_p ← g_p·min(1, τ/max_c |g_{p,c}|), or None.
        backend: ``"auto"``, ``"triton"``, ``"torch"``.

    Returns:
        Contiguous float32 tensor of ``eps_cond``'s shape: weight·(ε̂ − target), NaN → 0, ±inf → ±float32 max,
        then clamp, then clip (exact order and formulas in :func:`pgc_kernels.reference.sds_grad_reference`).
    """
    op = "sds_grad"
    w, s, phi, clamp, clip = check_sds_grad_args(
        op, eps_cond, eps_uncond, target, weight, guidance_scale, convention, cfg_rescale, clamp, clip, backend
    )
    if use_triton(op, backend, eps_cond):
        return _sds_grad_triton(eps_cond, eps_uncond, target, w, s, convention, phi, clamp, clip)
    return sds_grad_reference(eps_cond, eps_uncond, target, w, s, convention=convention, cfg_rescale=phi, clamp=clamp, clip=clip)


class _SDSLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, latents, grad):
        ctx.save_for_backward(grad)
        ctx.latent_dtype = latents.dtype
        g = grad.detach().to(torch.float32)
        return 0.5 * (g * g).sum() / latents.shape[0]

    @staticmethod
    def backward(ctx, upstream):
        (grad,) = ctx.saved_tensors
        # upstream is the GradScaler scale S (or 1): the injected gradient is S·grad, as the original's SpecifyGradient.
        return (grad * upstream).to(ctx.latent_dtype), None


def sds_loss(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Surrogate loss that injects ``grad`` as dL/d``latents``; returns the 0-d float32 value 0.5·‖grad‖²/B.

    ``latents``: [B, ...] float tensor requiring grad; ``grad``: same shape, any float dtype, same device
    (typically :func:`sds_grad`'s output). Backward adds exactly ``grad`` (times the upstream gradient, e.g. the
    GradScaler scale) to the latents' gradient — the original's sum convention, no 1/B. The returned value is
    the per-sample mean of 0.5·‖grad‖², i.e. 0.5·‖z − sg(z − grad)‖²/B: a loss you can log, unlike the
    original's constant 1.
    """
    op = "sds_loss"
    check_tensor(op, "latents", latents, dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64), min_rank=1)
    check_tensor(op, "grad", grad, dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64),
                 shape=latents.shape, device=latents.device)
    return _SDSLoss.apply(latents, grad.detach())
