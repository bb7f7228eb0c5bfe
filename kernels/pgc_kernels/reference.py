"""Pure-torch twins of every pgc_kernels op: same signatures, run anywhere (CPU included).

They are the CPU fallback (``backend="torch"``), the oracle the tests compare the Triton kernels
against, and the baseline the benchmarks time. They compute in float32 whatever the input dtype and
cast the result back, exactly like the kernels. ``backend`` is accepted (and ignored) so the twins
keep the public functions' signatures.
"""
from __future__ import annotations

import torch

from ._checks import check_pixel_clip_args, check_sds_grad_args
from ._types import PixelClipStats

_FLT_MAX = torch.finfo(torch.float32).max


def _threshold(tau: float, scale: float | torch.Tensor | None, device: torch.device) -> torch.Tensor | float:
    """τ·scale: a python float, or a 0-d float32 device tensor when scale is a tensor (no host sync)."""
    if scale is None:
        return tau
    if isinstance(scale, torch.Tensor):
        return scale.detach().reshape(()).to(torch.float32) * tau
    return tau * scale


def _pixel_norm(g: torch.Tensor, norm: str, d: int) -> torch.Tensor:
    """Per-pixel norm over the channel axis ``d`` (keepdim): max_c |g_c| for "linf", sqrt(Σ_c g_c²) for "l2"."""
    if norm == "linf":
        return g.abs().amax(dim=d, keepdim=True)
    return (g * g).sum(dim=d, keepdim=True).sqrt()


def pixel_clip_reference(
    grad: torch.Tensor,
    tau: float,
    *,
    variant: str = "clip",
    norm: str = "linf",
    channel_dim: int = 1,
    scale: float | torch.Tensor | None = None,
    backend: str = "torch",
    return_stats: bool = False,
):
    """Pixel-wise gradient clipping (PGC) in plain torch. See :func:`pgc_kernels.pixel_clip` for the contract.

    ``grad``: float32/float16/bfloat16, any device, rank ≥ 2, 1..16 channels at ``channel_dim``.
    Returns a tensor of ``grad``'s dtype, shape and device (and a :class:`PixelClipStats` when
    ``return_stats``). With τ' = τ·scale and n_p the pixel norm (``norm``) over channels:

    - ``"clip"``:       g_p · min(1, τ'/n_p)          (original type 0 with norm="linf")
    - ``"value"``:      clamp(g, −τ', τ')             (type 1)
    - ``"global"``:     g · τ'/max|g|, 0 if max|g|=0  (type 2)
    - ``"sigmoid"``:    (sigmoid(g) − 0.5)·τ'         (type 3)
    - ``"soft"``:       τ'·g/(|g| + τ')               (type 4, element-wise)
    - ``"soft_pixel"``: τ'·g_p/(n_p + τ')             (type 5)

    Non-finite input is never hidden (so GradScaler still sees overflow and skips the step): for the
    pixel-wise variants ("clip", "soft_pixel") every channel of a pixel holding NaN/±inf becomes NaN; for
    the element-wise ones ("value", "sigmoid", "soft") each NaN/±inf element becomes NaN; for "global" one
    NaN/±inf anywhere makes the whole output NaN.
    """
    op = "pixel_clip_reference"
    tau, d, scale = check_pixel_clip_args(op, grad, tau, variant, norm, channel_dim, scale, backend, return_stats)
    g = grad.detach().to(torch.float32)
    thr = _threshold(tau, scale, g.device)
    nan = torch.tensor(float("nan"), dtype=torch.float32, device=g.device)
    finite = torch.isfinite(g)
    pix_finite = finite.all(dim=d, keepdim=True)
    n = _pixel_norm(g, norm, d)

    if variant == "clip":
        # where(n > τ', τ'/n, 1): n = 0 never divides, so zero pixels stay zero.
        f = torch.where(n > thr, thr / torch.where(n > thr, n, torch.ones_like(n)), torch.ones_like(n))
        out = torch.where(pix_finite, g * f, nan)
    elif variant == "value":
        out = torch.where(finite, torch.minimum(torch.maximum(g, -torch.as_tensor(thr)), torch.as_tensor(thr)), nan)
    elif variant == "global":
        m = g.abs().amax() if g.numel() else torch.zeros((), device=g.device)
        all_finite = finite.all()
        f = torch.where(m > 0, thr / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))
        out = torch.where(all_finite, g * f, nan)
    elif variant == "sigmoid":
        out = torch.where(finite, (torch.sigmoid(g) - 0.5) * thr, nan)
    elif variant == "soft":
        out = torch.where(finite, g * (thr / (g.abs() + thr)), nan)
    else:  # soft_pixel
        out = torch.where(pix_finite, g * (thr / (n + thr)), nan)
    out = out.to(grad.dtype)
    if not return_stats:
        return out

    n_stat = torch.where(pix_finite, n, torch.full_like(n, float("inf")))
    if n_stat.numel() == 0:
        z = torch.zeros((), dtype=torch.float32, device=g.device)
        return out, PixelClipStats(z, z.clone(), z.clone())
    frac = (n_stat > thr).to(torch.float32).mean()
    return out, PixelClipStats(frac, n_stat.amax(), n_stat.mean())


def sds_grad_reference(
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
    backend: str = "torch",
) -> torch.Tensor:
    """Score-distillation gradient w.r.t. the latents, in plain torch. See :func:`pgc_kernels.sds_grad`.

    ``eps_cond``, ``eps_uncond``, ``target``: same shape [B, C, ...] (C = 1..16), float32/16/bf16, one
    device. ``weight``: [B] tensor or float. Returns a contiguous float32 tensor of that shape:

    1. ε̂ = ε_c + s(ε_c − ε_u) (``"pgc"``, the original's) or ε_u + s(ε_c − ε_u) (``"diffusers"``)
    2. if φ = ``cfg_rescale`` > 0: ε̂ ← (φ·std(ε_c)/std(ε̂) + 1 − φ)·ε̂, std per sample over all
       non-batch dims, unbiased (torch's default, as the original); the factor is 1 where std(ε̂) = 0
    3. g = weight[b]·(ε̂ − target), then NaN → 0 and ±inf → ±float32 max (torch.nan_to_num)
    4. if ``clamp``: g = clamp(g, −clamp, clamp) (the original's grad_clip_latent)
    5. if ``clip`` = τ: per latent pixel g_p ← g_p·min(1, τ/max_c |g_{p,c}|)
    """
    op = "sds_grad_reference"
    w, s, phi, clamp, clip = check_sds_grad_args(
        op, eps_cond, eps_uncond, target, weight, guidance_scale, convention, cfg_rescale, clamp, clip, backend
    )
    ec = eps_cond.detach().to(torch.float32)
    eu = eps_uncond.detach().to(torch.float32)
    tg = target.detach().to(torch.float32)
    bshape = (-1,) + (1,) * (ec.dim() - 1)
    diff = ec - eu
    eh = ec + s * diff if convention == "pgc" else eu + s * diff
    if phi > 0:
        std_c = ec.flatten(1).std(dim=1)
        std_h = eh.flatten(1).std(dim=1)
        ok = std_h > 0
        f = torch.where(ok, phi * std_c / torch.where(ok, std_h, torch.ones_like(std_h)) + (1.0 - phi), torch.ones_like(std_h))
        eh = eh * f.reshape(bshape)
    g = w.reshape(bshape) * (eh - tg)
    g = torch.nan_to_num(g, nan=0.0, posinf=_FLT_MAX, neginf=-_FLT_MAX)
    if clamp is not None:
        g = g.clamp(-clamp, clamp)
    if clip is not None:
        n = g.abs().amax(dim=1, keepdim=True)
        g = g * torch.where(n > clip, clip / torch.where(n > clip, n, torch.ones_like(n)), torch.ones_like(n))
    return g.contiguous()
