"""GroupNorm with an optional fused SiLU, forward and backward in Triton, for NCHW and channels-last tensors.

Why: in the SDXL VAE encoder's forward+backward (4 × 1024², H100) PyTorch's GroupNorm statistics, its
elementwise apply/backward and the separate SiLU take ~100 ms, and cuDNN spends another ~38 ms converting
NCHW ↔ NHWC around every convolution (benches/gpu_profile_vae.py). PyTorch's own channels-last GroupNorm
is slower still. These kernels make GroupNorm+SiLU a few memory passes in either layout, so the whole VAE
can run channels-last and the convolutions need no layout conversion.

Formula, for x [B, C, *spatial] with G groups, per (b, g) over its N = (C/G)·HW elements:

    μ = mean(x),  σ² = mean((x − μ)²),  r = (σ² + eps)^-½
    a = (x − μ)·r·γ_c + β_c,      y = silu(a) = a·sigmoid(a)   (or y = a without SiLU)

written as y = f(x·A_bc + B_bc) with A = r·γ, B = β − μ·A. Backward, with ĝ = dy·f'(a) (f' = s(1 + a(1 − s))
for SiLU, s = sigmoid(a)) and per-group sums S₁ = Σ γ_c ĝ, S₂ = Σ γ_c ĝ x̂ (x̂ = (x − μ)r):

    dx = A·ĝ − r·S₁/N − x̂·r·S₂/N = A·ĝ + x·P_bg + Q_bg,    dγ_c = Σ_b,p ĝ x̂,   dβ_c = Σ_b,p ĝ

Kernels (each reads a [BLOCK_P, all C] tile per program, coalesced in both layouts):
  _gn_stats_kernel   per-(b, split, c) sums of (x − shift_c) and (x − shift_c)² (shift = the split's first
                     pixel, which removes the E[x²] − E[x]² cancellation); combined per group in float64.
  _gn_apply_kernel   y = f(x·A + B).
  _gn_bwd_sums_kernel  per-(b, split, c) sums of ĝ and ĝ·x.
  _gn_bwd_apply_kernel dx = A·ĝ + x·P + Q.
The tiny [B, splits, C] combinations run as torch ops.
"""

from __future__ import annotations

from typing import Any

import torch

from ._backend import HAS_TRITON, tl, triton, use_triton

__all__ = ["group_norm_silu", "GroupNormSiLU"]


if HAS_TRITON:

    @triton.jit
    def _load_tile(X, b, p0, C, HW, sB, sP, sC, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        offs_c = tl.arange(0, BLOCK_C)
        mask = (offs_p[:, None] < HW) & (offs_c[None, :] < C)
        ptrs = X + b * sB + offs_p[:, None] * sP + offs_c[None, :] * sC
        return ptrs, mask, offs_c

    @triton.jit
    def _gn_stats_kernel(
        X, SHIFT, S1, S2, C, HW, sB, sP, sC, PIX_PER_SPLIT, n_splits, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr
    ):
        b = tl.program_id(0).to(tl.int64)
        split = tl.program_id(1)
        start = split * PIX_PER_SPLIT
        offs_c = tl.arange(0, BLOCK_C)
        cmask = offs_c < C
        shift = tl.load(X + b * sB + start * sP + offs_c * sC, mask=cmask, other=0.0).to(tl.float32)
        # Tile-shaped accumulators, reduced once at the end (a cross-warp reduction per tile is slow).
        acc1 = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
        acc2 = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
        for p0 in range(start, start + PIX_PER_SPLIT, BLOCK_P):
            ptrs, mask, _ = _load_tile(X, b, p0, C, HW, sB, sP, sC, BLOCK_P, BLOCK_C)
            mask = mask & ((p0 + tl.arange(0, BLOCK_P))[:, None] < start + PIX_PER_SPLIT)
            x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            d = tl.where(mask, x - shift[None, :], 0.0)
            acc1 += d
            acc2 += d * d
        out = (b * n_splits + split) * C + offs_c
        tl.store(SHIFT + out, shift, mask=cmask)
        tl.store(S1 + out, tl.sum(acc1, axis=0), mask=cmask)
        tl.store(S2 + out, tl.sum(acc2, axis=0), mask=cmask)

    @triton.jit
    def _load_bc(V, b, C, offs_c):
        """Row b of a float32 [B, C] per-(sample, channel) table, over the channel block offs_c."""
        return tl.load(V + b * C + offs_c, mask=offs_c < C, other=0.0)

    @triton.jit
    def _gn_apply_kernel(
        X, Y, A, Bc, C, HW, sB, sP, sC, yB, yP, yC, SILU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr
    ):
        b = tl.program_id(0).to(tl.int64)
        p0 = tl.program_id(1) * BLOCK_P
        ptrs, mask, offs_c = _load_tile(X, b, p0, C, HW, sB, sP, sC, BLOCK_P, BLOCK_C)
        a_c = _load_bc(A, b, C, offs_c)
        b_c = _load_bc(Bc, b, C, offs_c)
        x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
        a = x * a_c[None, :] + b_c[None, :]
        if SILU:
            a = a * tl.sigmoid(a)
        offs_p = p0 + tl.arange(0, BLOCK_P)
        yptrs = Y + b * yB + offs_p[:, None] * yP + offs_c[None, :] * yC
        tl.store(yptrs, a.to(Y.dtype.element_ty), mask=mask)

    @triton.jit
    def _gn_grad_act(x, dy, a_c, b_c, SILU: tl.constexpr):
        if SILU:
            a = x * a_c[None, :] + b_c[None, :]
            s = tl.sigmoid(a)
            return dy * (s * (1.0 + a * (1.0 - s)))
        else:
            return dy

    @triton.jit
    def _gn_bwd_sums_kernel(
        X,
        DY,
        A,
        Bc,
        T1,
        T2,
        C,
        HW,
        sB,
        sP,
        sC,
        dB,
        dP,
        dC,
        PIX_PER_SPLIT,
        n_splits,
        SILU: tl.constexpr,
        BLOCK_P: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        b = tl.program_id(0).to(tl.int64)
        split = tl.program_id(1)
        start = split * PIX_PER_SPLIT
        offs_c = tl.arange(0, BLOCK_C)
        cmask = offs_c < C
        a_c = _load_bc(A, b, C, offs_c)
        b_c = _load_bc(Bc, b, C, offs_c)
        acc1 = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
        acc2 = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
        for p0 in range(start, start + PIX_PER_SPLIT, BLOCK_P):
            ptrs, mask, _ = _load_tile(X, b, p0, C, HW, sB, sP, sC, BLOCK_P, BLOCK_C)
            offs_p = p0 + tl.arange(0, BLOCK_P)
            mask = mask & (offs_p[:, None] < start + PIX_PER_SPLIT)
            x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + b * dB + offs_p[:, None] * dP + offs_c[None, :] * dC, mask=mask, other=0.0).to(tl.float32)
            g = tl.where(mask, _gn_grad_act(x, dy, a_c, b_c, SILU), 0.0)
            acc1 += g
            acc2 += g * x
        out = (b * n_splits + split) * C + offs_c
        tl.store(T1 + out, tl.sum(acc1, axis=0), mask=cmask)
        tl.store(T2 + out, tl.sum(acc2, axis=0), mask=cmask)

    @triton.jit
    def _gn_bwd_apply_kernel(
        X,
        DY,
        DX,
        A,
        Bc,
        Pc,
        Qc,
        C,
        HW,
        sB,
        sP,
        sC,
        dB,
        dP,
        dC,
        oB,
        oP,
        oC,
        SILU: tl.constexpr,
        BLOCK_P: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        b = tl.program_id(0).to(tl.int64)
        p0 = tl.program_id(1) * BLOCK_P
        ptrs, mask, offs_c = _load_tile(X, b, p0, C, HW, sB, sP, sC, BLOCK_P, BLOCK_C)
        a_c = _load_bc(A, b, C, offs_c)
        b_c = _load_bc(Bc, b, C, offs_c)
        p_c = _load_bc(Pc, b, C, offs_c)
        q_c = _load_bc(Qc, b, C, offs_c)
        offs_p = p0 + tl.arange(0, BLOCK_P)
        x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + b * dB + offs_p[:, None] * dP + offs_c[None, :] * dC, mask=mask, other=0.0).to(tl.float32)
        g = _gn_grad_act(x, dy, a_c, b_c, SILU)
        dx = g * a_c[None, :] + x * p_c[None, :] + q_c[None, :]
        tl.store(DX + b * oB + offs_p[:, None] * oP + offs_c[None, :] * oC, dx.to(DX.dtype.element_ty), mask=mask)


def _flat_strides(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, pixel, channel) strides of a [B, C, *spatial] tensor whose spatial dims flatten to one
    index (true for NCHW-contiguous and channels-last tensors)."""
    return t.stride(0), t.stride(-1), t.stride(1)


def _launch_cfg(c: int, hw: int) -> tuple[int, int, int]:
    block_c = triton.next_power_of_2(c)
    block_p = max(1, min(triton.next_power_of_2(hw), 4096 // block_c))
    pix_per_split = block_p * max(1, min(32, triton.cdiv(hw, block_p * 64)))
    return block_c, block_p, pix_per_split


def _group_reduce(t: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, C] → [B, G] sums over each group's channels."""
    b, c = t.shape
    return t.view(b, groups, c // groups).sum(-1)


def _per_channel(t: torch.Tensor, cpg: int) -> torch.Tensor:
    """[B, G] → [B, G·cpg], each group's value repeated over its channels. (``repeat_interleave`` would
    synchronise with the host on CUDA to size its output.)"""
    b, g = t.shape
    return t[:, :, None].expand(b, g, cpg).reshape(b, g * cpg)


class GroupNormSiLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        groups: int,
        eps: float,
        silu: bool,
    ) -> torch.Tensor:
        b, c = x.shape[:2]
        hw = x[0, 0].numel()
        block_c, block_p, pps = _launch_cfg(c, hw)
        n_splits = triton.cdiv(hw, pps)
        sx = _flat_strides(x)
        shift = torch.empty((b, n_splits, c), dtype=torch.float32, device=x.device)
        s1 = torch.empty_like(shift)
        s2 = torch.empty_like(shift)
        _gn_stats_kernel[(b, n_splits)](
            x, shift, s1, s2, c, hw, *sx, pps, n_splits, BLOCK_P=block_p, BLOCK_C=block_c, num_warps=8
        )
        # Combine per-split, per-channel shifted sums into per-group mean/var in float64 (tiny tensors):
        # Σ(x − m)² = Σ_k [S2_k + 2(s_k − m)·S1_k + n_k(s_k − m)²] over the (split, channel) pieces k.
        cpg = c // groups
        n_k = torch.full((n_splits,), float(pps), dtype=torch.float64, device=x.device)
        # fill_ a slice, not `n_k[-1] = v`: that copies a CPU scalar tensor into device memory, a host sync per call
        # (22 per SD VAE encoder step in benches/gpu_guidance.py's sync count; benches/RESULTS.md, issue 21).
        n_k[-1:].fill_(float(hw - pps * (n_splits - 1)))
        sh, t1, t2 = shift.double(), s1.double(), s2.double()
        n_group = float(hw * cpg)
        tot = (t1 + n_k[None, :, None] * sh).sum(1)  # [B, C]
        mean = _group_reduce(tot, groups) / n_group  # [B, G]
        m_c = _per_channel(mean, cpg)[:, None, :]  # [B, 1, C]
        m2 = (t2 + 2 * (sh - m_c) * t1 + n_k[None, :, None] * (sh - m_c) ** 2).sum(1)
        var = (_group_reduce(m2, groups) / n_group).clamp_min(0)
        rstd = torch.rsqrt(var + eps)  # [B, G]
        gamma = weight.double() if weight is not None else torch.ones(c, dtype=torch.float64, device=x.device)
        beta = bias.double() if bias is not None else torch.zeros(c, dtype=torch.float64, device=x.device)
        a = _per_channel(rstd, cpg) * gamma[None, :]
        bb = beta[None, :] - _per_channel(mean, cpg) * a
        a32, b32 = a.float().contiguous(), bb.float().contiguous()
        y = torch.empty_like(x)  # same memory format as x
        _gn_apply_kernel[(b, triton.cdiv(hw, block_p))](
            x, y, a32, b32, c, hw, *sx, *_flat_strides(y), SILU=silu, BLOCK_P=block_p, BLOCK_C=block_c, num_warps=8
        )
        ctx.save_for_backward(x, weight, a32, b32, mean, rstd)
        ctx.cfg = (groups, silu, block_c, block_p, pps, n_splits)
        return y

    @staticmethod
    def backward(
        ctx: Any, dy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, None, None, None]:
        x, weight, a32, b32, mean, rstd = ctx.saved_tensors
        groups, silu, block_c, block_p, pps, n_splits = ctx.cfg
        if not _layout_ok(dy):  # e.g. an expanded (zero-stride) gradient: gather it once
            dy = dy.contiguous(
                memory_format=torch.channels_last if x.stride(1) == 1 and x.ndim == 4 else torch.contiguous_format
            )
        b, c = x.shape[:2]
        hw = x[0, 0].numel()
        cpg = c // groups
        sx = _flat_strides(x)
        sd = _flat_strides(dy)
        t1 = torch.empty((b, n_splits, c), dtype=torch.float32, device=x.device)
        t2 = torch.empty_like(t1)
        _gn_bwd_sums_kernel[(b, n_splits)](
            x,
            dy,
            a32,
            b32,
            t1,
            t2,
            c,
            hw,
            *sx,
            *sd,
            pps,
            n_splits,
            SILU=silu,
            BLOCK_P=block_p,
            BLOCK_C=block_c,
            num_warps=8,
        )
        sum_g = t1.double().sum(1)  # [B, C]: Σ ĝ
        sum_gx = t2.double().sum(1)  # [B, C]: Σ ĝ·x
        gamma = weight.double() if weight is not None else torch.ones(c, dtype=torch.float64, device=x.device)
        mean_c = _per_channel(mean, cpg)
        rstd_c = _per_channel(rstd, cpg)
        sum_gxhat = (sum_gx - mean_c * sum_g) * rstd_c  # [B, C]: Σ ĝ·x̂
        n = float(hw * cpg)
        s1 = _per_channel(_group_reduce(gamma[None, :] * sum_g, groups), cpg)
        s2 = _per_channel(_group_reduce(gamma[None, :] * sum_gxhat, groups), cpg)
        p = -(rstd_c**2) * s2 / n
        q = mean_c * rstd_c**2 * s2 / n - rstd_c * s1 / n
        dx = torch.empty_like(x)
        _gn_bwd_apply_kernel[(b, triton.cdiv(hw, block_p))](
            x,
            dy,
            dx,
            a32,
            b32,
            p.float().contiguous(),
            q.float().contiguous(),
            c,
            hw,
            *sx,
            *sd,
            *_flat_strides(dx),
            SILU=silu,
            BLOCK_P=block_p,
            BLOCK_C=block_c,
            num_warps=8,
        )
        dw = sum_gxhat.sum(0).to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        db = sum_g.sum(0).to(weight.dtype if weight is not None else x.dtype) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None


def _layout_ok(x: torch.Tensor) -> bool:
    return x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last))


def group_norm_silu(
    x: torch.Tensor,  # [B, C, *spatial]
    num_groups: int,
    weight: torch.Tensor | None = None,  # [C]
    bias: torch.Tensor | None = None,  # [C]
    eps: float = 1e-5,
    *,
    silu: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """``silu(group_norm(x))`` (or plain GroupNorm with ``silu=False``) with the formulas of the module docstring.

    Args:
        x: float32/float16/bfloat16 [B, C, *spatial], NCHW-contiguous or channels-last; the output has the
            same memory format. Statistics and arithmetic are float32 (group combination in float64).
        num_groups: G, dividing C.
        weight, bias: optional affine parameters [C] (any float dtype); gradients flow to them.
        eps: added to the variance.
        silu: apply SiLU after the affine transform.
        backend: ``"triton"`` (CUDA, or CPU under ``TRITON_INTERPRET=1``; ``ValueError`` elsewhere and where triton
            cannot be imported), ``"torch"`` (the twin :func:`pgc_kernels.reference.group_norm_silu_reference`),
            ``"auto"`` (Triton for CUDA tensors when triton is installed, the twin otherwise).
    """
    op = "group_norm_silu()"
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"{op}: backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        got = f"{x.dtype} {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{op}: x must be a float32|float16|bfloat16 tensor [B,C,*spatial], got {got}")
    c = x.shape[1]
    if not isinstance(num_groups, int) or num_groups < 1 or c % num_groups:
        raise ValueError(f"{op}: num_groups must be a positive int dividing C={c}, got {num_groups!r}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (not isinstance(t, torch.Tensor) or t.shape != (c,) or t.device != x.device):
            got = f"{list(t.shape)} on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{op}: {name} must be None or a [{c}] tensor on {x.device}, got {got}")
    if not use_triton("group_norm_silu", backend, x) or x.numel() == 0:
        from pgc_kernels.reference import group_norm_silu_reference

        return group_norm_silu_reference(x, num_groups, weight, bias, eps, silu=silu)
    if not _layout_ok(x):
        x = x.contiguous()  # documented copy: arbitrary strides are gathered once
    if x.ndim != 4:
        shape = x.shape
        x4 = x.reshape(shape[0], c, -1, 1)  # flatten spatial dims (x is NC*-contiguous here), restored below
        return GroupNormSiLUFunction.apply(x4, weight, bias, num_groups, float(eps), bool(silu)).reshape(shape)
    return GroupNormSiLUFunction.apply(x, weight, bias, num_groups, float(eps), bool(silu))


class GroupNormSiLU(torch.nn.GroupNorm):
    """Drop-in ``nn.GroupNorm`` (same parameters and state dict) that optionally fuses the following SiLU
    and runs :func:`group_norm_silu`. Build one from an existing module with :meth:`from_group_norm`."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        silu: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(num_groups, num_channels, eps, affine, device=device, dtype=dtype)
        self.silu = silu
        self.backend = backend

    @classmethod
    def from_group_norm(cls, gn: torch.nn.GroupNorm, silu: bool, backend: str = "auto") -> GroupNormSiLU:
        new = cls(
            gn.num_groups,
            gn.num_channels,
            gn.eps,
            gn.affine,
            silu=silu,
            backend=backend,
            device=gn.weight.device if gn.affine else None,
            dtype=gn.weight.dtype if gn.affine else None,
        )
        if gn.affine:
            new.weight = gn.weight
            new.bias = gn.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm_silu(
            x, self.num_groups, self.weight, self.bias, self.eps, silu=self.silu, backend=self.backend
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", silu={self.silu}"
