"""Fused score-distillation gradient (CFG, optional CFG rescale, residual, weight, clamp, pixel clip, NaN→0)
and the :func:`sds_loss` surrogate that injects it.

Public: :func:`sds_grad`, :func:`sds_loss`. Torch twin: :func:`pgc_kernels.reference.sds_grad_reference`.
"""

from __future__ import annotations

from typing import Any

import torch

from ._backend import HAS_TRITON, tl, triton, use_triton
from ._checks import check_sds_grad_args, check_tensor
from .reference import sds_grad_reference

_FLT_MAX = 3.4028234663852886e38

# Launch configurations, tuned on an H100 (benches/gpu_kernels.py --sweep-only, commit 83aa632: flat 4.07 µs on
# [8,4,128,128] fp32 vs 4.46 for the tiled kernel; evict-first loads gain ~0.2 µs, the persistent grid is noise):
# "sds": the channel-tiled kernel (CFG rescale, pixel clip, or C·N with no power-of-two block):
#   (elements = pixels × padded channels per program, warps);
# "flat": the element-wise kernel (the common case: no rescale, no clip): (elements per program, warps,
#   evict-first loads, persistent programs per SM or 0 for one program per block).
CONFIG = {"sds": (4096, 16), "flat": (1024, 8, True, 2)}
_FLAT_MIN_BLOCK = 512  # below this the flat kernel's blocks get too small: use the tiled kernel
_SM_COUNT: dict[int | None, int] = {}


def _sm_count(dev: torch.device) -> int:
    if dev.type != "cuda":
        return 4
    n = _SM_COUNT.get(dev.index)
    if n is None:
        n = _SM_COUNT[dev.index] = torch.cuda.get_device_properties(dev).multi_processor_count
    return n


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


if HAS_TRITON:

    @triton.jit
    def _cfg(ec, eu, s, DIFFUSERS: tl.constexpr):
        if DIFFUSERS:
            return eu + s * (ec - eu)
        return ec + s * (ec - eu)

    @triton.jit
    def _sds_flat_kernel(
        ec_ptr,
        eu_ptr,
        tg_ptr,
        w_ptr,
        out_ptr,
        s,
        w_scalar,
        clamp,
        total,
        CN,
        n_blocks,
        DIFFUSERS: tl.constexpr,
        CLAMP: tl.constexpr,
        W_PTR: tl.constexpr,
        EVICT: tl.constexpr,
        PERSIST: tl.constexpr,
        USE_I64: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """g = clamp(nan_to_num(w_b·(ε̂ − target))) over flat runs of BLOCK elements (no CFG rescale, no pixel clip:
        purely element-wise, so fully vectorised and free of the channel tiling). CN = C·N elements per sample is a
        multiple of BLOCK, so each block lies in one sample b = start // CN and loads w_b once. PERSIST: a grid of
        fewer programs strides over the n_blocks blocks. EVICT: the streamed inputs are marked evict-first."""
        pid = tl.program_id(0)
        if PERSIST:
            step = tl.num_programs(0)
        else:
            step = n_blocks
        for blk in range(pid, n_blocks, step):
            if USE_I64:
                start = tl.cast(blk, tl.int64) * BLOCK
            else:
                start = blk * BLOCK
            e = start + tl.arange(0, BLOCK)
            m = e < total
            if EVICT:
                ec = tl.load(ec_ptr + e, mask=m, other=0.0, eviction_policy="evict_first").to(tl.float32)
                eu = tl.load(eu_ptr + e, mask=m, other=0.0, eviction_policy="evict_first").to(tl.float32)
                tg = tl.load(tg_ptr + e, mask=m, other=0.0, eviction_policy="evict_first").to(tl.float32)
            else:
                ec = tl.load(ec_ptr + e, mask=m, other=0.0).to(tl.float32)
                eu = tl.load(eu_ptr + e, mask=m, other=0.0).to(tl.float32)
                tg = tl.load(tg_ptr + e, mask=m, other=0.0).to(tl.float32)
            if W_PTR:
                w = tl.load(w_ptr + start // CN)
            else:
                w = w_scalar
            g = w * (_cfg(ec, eu, s, DIFFUSERS) - tg)
            g = tl.where(g != g, 0.0, g)  # nan_to_num: NaN → 0, ±inf → ±float32 max
            g = tl.minimum(tl.maximum(g, -3.4028234663852886e38), 3.4028234663852886e38)
            if CLAMP:
                g = tl.minimum(tl.maximum(g, -clamp), clamp)
            tl.store(out_ptr + e, g, mask=m)

    @triton.jit
    def _sds_stats_kernel(
        ec_ptr,
        eu_ptr,
        part_ptr,
        s,
        N,
        n_blocks,
        C,
        DIFFUSERS: tl.constexpr,
        C_PAD: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """Phase 1 of CFG rescale: per tile of one sample, (k, mean ε_c, M2 ε_c, mean ε̂, M2 ε̂) with
        M2 = Σ (x − mean)² over the tile's k elements (centred per tile, so the later combination is
        Chan's parallel variance, free of the E[x²] − E[x]² cancellation)."""
        pid = tl.program_id(0)
        b = pid // n_blocks
        blk = pid - b * n_blocks
        i = blk * BLOCK + tl.arange(0, BLOCK)
        c = tl.arange(0, C_PAD)
        mask = (c[:, None] < C) & (i < N)[None, :]
        off = b.to(tl.int64) * C * N + c[:, None] * N + i[None, :]
        ec = tl.load(ec_ptr + off, mask=mask, other=0.0).to(tl.float32)
        eu = tl.load(eu_ptr + off, mask=mask, other=0.0).to(tl.float32)
        eh = _cfg(ec, eu, s, DIFFUSERS)
        k = tl.sum(tl.sum(mask.to(tl.float32), axis=1), axis=0)
        # Correctly rounded divisions (CUDA's default '/' is approximate): a constant sample's mean is then exact,
        # so its M2 is exactly 0 and "std = 0 → no rescale" holds on the GPU as in torch.
        mc = tl.div_rn(tl.sum(tl.sum(ec, axis=1), axis=0), k)
        mh = tl.div_rn(tl.sum(tl.sum(eh, axis=1), axis=0), k)
        dc = tl.where(mask, ec - mc, 0.0)
        dh = tl.where(mask, eh - mh, 0.0)
        tl.store(part_ptr + pid * 5 + 0, k)
        tl.store(part_ptr + pid * 5 + 1, mc)
        tl.store(part_ptr + pid * 5 + 2, tl.sum(tl.sum(dc * dc, axis=1), axis=0))
        tl.store(part_ptr + pid * 5 + 3, mh)
        tl.store(part_ptr + pid * 5 + 4, tl.sum(tl.sum(dh * dh, axis=1), axis=0))

    @triton.jit
    def _sds_grad_kernel(
        ec_ptr,
        eu_ptr,
        tg_ptr,
        w_ptr,
        part_ptr,
        out_ptr,
        s,
        w_scalar,
        phi,
        clamp,
        clip,
        N,
        n_blocks,
        C,
        DIFFUSERS: tl.constexpr,
        RESCALE: tl.constexpr,
        CLAMP: tl.constexpr,
        CLIP: tl.constexpr,
        W_PTR: tl.constexpr,
        C_PAD: tl.constexpr,
        BLOCK: tl.constexpr,
        RB: tl.constexpr,
    ):
        """g = clip_τ(clamp(nan_to_num(w_b·(f_b·ε̂ − target)))) on a [C_PAD, BLOCK] tile of sample b, where
        ε̂ = ε_c + s(ε_c − ε_u) ("pgc") or ε_u + s(ε_c − ε_u) ("diffusers"), f_b = φ·std(ε_c)/std(ε̂) + 1 − φ
        (1 without RESCALE or when std(ε̂) = 0), clip_τ(g)_p = g_p·min(1, τ/max_c |g_pc|)."""
        pid = tl.program_id(0)
        b = pid // n_blocks
        blk = pid - b * n_blocks
        i = blk * BLOCK + tl.arange(0, BLOCK)
        c = tl.arange(0, C_PAD)
        mask = (c[:, None] < C) & (i < N)[None, :]
        off = b.to(tl.int64) * C * N + c[:, None] * N + i[None, :]
        ec = tl.load(ec_ptr + off, mask=mask, other=0.0).to(tl.float32)
        eu = tl.load(eu_ptr + off, mask=mask, other=0.0).to(tl.float32)
        tg = tl.load(tg_ptr + off, mask=mask, other=0.0).to(tl.float32)
        eh = _cfg(ec, eu, s, DIFFUSERS)
        if RESCALE:
            # Phase 2: combine this sample's tile statistics (Chan et al.): mean = Σ k·m / K,
            # M2 = Σ M2_t + Σ k·(m_t − mean)², var = M2 / (K − 1) (unbiased, as torch.std).
            r = tl.arange(0, RB)
            sk = tl.zeros([RB], dtype=tl.float32)
            smc = tl.zeros([RB], dtype=tl.float32)
            smh = tl.zeros([RB], dtype=tl.float32)
            for j in range(0, n_blocks, RB):
                q = j + r
                m = q < n_blocks
                base = part_ptr + (b * n_blocks + q) * 5
                kk = tl.load(base + 0, mask=m, other=0.0)
                sk += kk
                smc += kk * tl.load(base + 1, mask=m, other=0.0)
                smh += kk * tl.load(base + 3, mask=m, other=0.0)
            K = tl.sum(sk, axis=0)
            mean_c = tl.div_rn(tl.sum(smc, axis=0), K)  # correctly rounded, as in phase 1
            mean_h = tl.div_rn(tl.sum(smh, axis=0), K)
            m2c = tl.zeros([RB], dtype=tl.float32)
            m2h = tl.zeros([RB], dtype=tl.float32)
            for j in range(0, n_blocks, RB):
                q = j + r
                m = q < n_blocks
                base = part_ptr + (b * n_blocks + q) * 5
                kk = tl.load(base + 0, mask=m, other=0.0)
                dc = tl.load(base + 1, mask=m, other=0.0) - mean_c
                dh = tl.load(base + 3, mask=m, other=0.0) - mean_h
                m2c += tl.load(base + 2, mask=m, other=0.0) + kk * dc * dc
                m2h += tl.load(base + 4, mask=m, other=0.0) + kk * dh * dh
            std_c = tl.sqrt_rn(tl.div_rn(tl.sum(m2c, axis=0), K - 1.0))
            std_h = tl.sqrt_rn(tl.div_rn(tl.sum(m2h, axis=0), K - 1.0))
            ok = std_h > 0  # False for 0 and NaN (one element per sample): no rescale
            f = tl.where(ok, phi * tl.div_rn(std_c, tl.where(ok, std_h, 1.0)) + (1.0 - phi), 1.0)
            eh = eh * f
        if W_PTR:
            w = tl.load(w_ptr + b)
        else:
            w = w_scalar
        g = w * (eh - tg)
        g = tl.where(g != g, 0.0, g)  # nan_to_num: NaN → 0, ±inf → ±float32 max
        g = tl.minimum(tl.maximum(g, -3.4028234663852886e38), 3.4028234663852886e38)
        if CLAMP:
            g = tl.minimum(tl.maximum(g, -clamp), clamp)
        if CLIP:
            n = tl.max(tl.abs(g), axis=0)
            f2 = tl.where(n > clip, clip / tl.where(n > clip, n, 1.0), 1.0)
            g = g * f2[None, :]
        tl.store(out_ptr + off, g, mask=mask)


def _sds_grad_triton(
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    target: torch.Tensor,
    w: torch.Tensor | float,
    s: float,
    convention: str,
    phi: float,
    clamp: float | None,
    clip: float | None,
    config: dict[str, tuple] | None = None,
) -> torch.Tensor:
    """Launch the fused kernel(s). ``w``: float32 [B] tensor or a python float (no device tensor to build)."""
    ec = eps_cond.contiguous()  # no-ops for contiguous inputs; the kernels index densely
    eu = eps_uncond.contiguous()
    tg = target.contiguous()
    shape = ec.shape
    out = torch.empty(shape, dtype=torch.float32, device=ec.device)
    total = out.numel()
    if total == 0:
        return out
    cfg = config or CONFIG
    B = shape[0]
    CN = total // B
    w_ptr = isinstance(w, torch.Tensor)
    w_arg, w_scalar = (w, 0.0) if w_ptr else (out, float(w))
    diffusers = convention == "diffusers"
    if phi == 0 and clip is None:
        block, warps, evict, persist = cfg["flat"]
        block = min(block, CN & -CN)  # a power of two dividing C·N: a block never straddles two samples
        if block >= _FLAT_MIN_BLOCK:
            n_blocks = total // block
            grid = min(n_blocks, persist * _sm_count(ec.device)) if persist else n_blocks
            _sds_flat_kernel[(grid,)](
                ec,
                eu,
                tg,
                w_arg,
                out,
                s,
                w_scalar,
                clamp or 0.0,
                total,
                CN,
                n_blocks,
                DIFFUSERS=diffusers,
                CLAMP=clamp is not None,
                W_PTR=w_ptr,
                EVICT=bool(evict),
                PERSIST=bool(persist),
                USE_I64=total + block >= 2**31 - 1,
                BLOCK=block,
                num_warps=warps,
            )
            return out
    C = shape[1]
    N = CN // C
    c_pad = _next_pow2(C)
    elems, warps = cfg["sds"]
    block = max(16, elems // c_pad)
    n_blocks = -(-N // block)
    grid = (B * n_blocks,)
    part = out  # unused unless rescaling
    if phi > 0:
        part = torch.empty((B * n_blocks, 5), dtype=torch.float32, device=ec.device)
        _sds_stats_kernel[grid](
            ec, eu, part, s, N, n_blocks, C, DIFFUSERS=diffusers, C_PAD=c_pad, BLOCK=block, num_warps=warps
        )
    _sds_grad_kernel[grid](
        ec,
        eu,
        tg,
        w_arg,
        part,
        out,
        s,
        w_scalar,
        phi,
        clamp or 0.0,
        clip or 0.0,
        N,
        n_blocks,
        C,
        DIFFUSERS=diffusers,
        RESCALE=phi > 0,
        CLAMP=clamp is not None,
        CLIP=clip is not None,
        W_PTR=w_ptr,
        C_PAD=c_pad,
        BLOCK=block,
        RB=128,
        num_warps=warps,
    )
    return out


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
        op,
        eps_cond,
        eps_uncond,
        target,
        weight,
        guidance_scale,
        convention,
        cfg_rescale,
        clamp,
        clip,
        backend,
        weight_tensor=False,
    )
    if use_triton(op, backend, eps_cond):
        return _sds_grad_triton(eps_cond, eps_uncond, target, w, s, convention, phi, clamp, clip)
    if not isinstance(w, torch.Tensor):
        w = torch.full((eps_cond.shape[0],), w, dtype=torch.float32, device=eps_cond.device)
    return sds_grad_reference(
        eps_cond, eps_uncond, target, w, s, convention=convention, cfg_rescale=phi, clamp=clamp, clip=clip
    )


class _SDSLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grad)
        ctx.latent_dtype = latents.dtype
        g = grad.detach().to(torch.float32)
        return 0.5 * (g * g).sum() / latents.shape[0]

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:
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
    check_tensor(
        op, "latents", latents, dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64), min_rank=1
    )
    check_tensor(
        op,
        "grad",
        grad,
        dtypes=(torch.float32, torch.float16, torch.bfloat16, torch.float64),
        shape=latents.shape,
        device=latents.device,
    )
    return _SDSLoss.apply(latents, grad.detach())
