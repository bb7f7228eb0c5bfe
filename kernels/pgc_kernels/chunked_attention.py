"""Exact attention for large head dimensions (e.g. the SDXL VAE encoder's single-head, head-dim-512
mid-block attention), forward and backward, at GEMM speed and bounded memory.

Why: PyTorch's flash and cuDNN SDPA kernels stop at head dim 256, so head dim 512 falls to the CUTLASS
"memory-efficient" kernel, whose backward takes ~160 ms for 4 × 16384 tokens on an H100 (the floors in
benches/RESULTS.md),
while the FLOPs are ~8 TFLOP (~10-15 ms at cuBLAS speed). The math backend is fast but materialises the
whole [N, N] probability matrix for backward (+17 GB).

What this computes, for q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv], scale s (default D^-1/2):

    S = s · q kᵀ,   P = softmax_rows(S),   O = P v

blockwise over query rows (a chunk of C rows at a time), so only a [B·H,C,M] slab of S/P exists at once.
Every product is one cuBLAS GEMM (scores with a float32 output, never rounded to 16 bits); the softmax and
its backward are PyTorch's fused single-pass row kernels. Backward recomputes each slab (flash style):

    P_c  = softmax(s · q_c kᵀ)                      (recomputed)
    dV  += P_cᵀ dO_c
    dP_c = dO_c vᵀ
    dS_c = P_c ⊙ (dP_c − rowsum(dP_c ⊙ P_c))          (aten._softmax_backward_data, one pass)
    dq_c = s · dS_c k,     dk += s · dS_cᵀ q_c

rowsum(dP ⊙ P) equals rowsum(dO ⊙ O), the flash-attention "D" term, so nothing beyond O is saved.
dk/dv accumulate in fp32 when the inputs are fp16/bf16 (cast back at the end).

The reference twin is :func:`pgc_kernels.reference.chunked_attention_reference` (PyTorch SDPA, math).
"""

from __future__ import annotations

from typing import Any

import torch

from ._backend import HAS_TRITON, tl, triton, use_triton

__all__ = ["chunked_attention"]


if HAS_TRITON:

    @triton.jit
    def _softmax_rows_fwd_kernel(S, P, LSE, M, scale, BLOCK: tl.constexpr):
        """Row softmax of raw float32 scores: lse = log Σ_j exp(scale·S_j) (online, pass 1);
        P_j = exp(scale·S_j − lse) stored in P's dtype (pass 2). One program per row."""
        row = tl.program_id(0).to(tl.int64)
        base = row * M
        offs = tl.arange(0, BLOCK)
        m_i = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), axis=0)
        l_i = tl.sum(tl.zeros([BLOCK], tl.float32), axis=0)
        for start in range(0, M, BLOCK):
            mask = start + offs < M
            x = tl.load(S + base + start + offs, mask=mask, other=float("-inf")) * scale
            m_new = tl.maximum(m_i, tl.max(x, axis=0))
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
            m_i = m_new
        lse = m_i + tl.log(l_i)
        for start in range(0, M, BLOCK):
            mask = start + offs < M
            x = tl.load(S + base + start + offs, mask=mask, other=0.0) * scale
            tl.store(P + base + start + offs, tl.exp(x - lse).to(P.dtype.element_ty), mask=mask)
        tl.store(LSE + row, lse)

    @triton.jit
    def _softmax_rows_bwd_kernel(S, DP, LSE, D, P, DS, M, scale, BLOCK: tl.constexpr):
        """Elementwise, per row r:  P = exp(scale·S − lse_r),  dS = scale · P ⊙ (dP − D_r)  with
        D_r = Σ_j dO_rj O_rj (= Σ_j dP_rj P_rj). Both stored in P's/DS's dtype. Grid (rows, ⌈M/BLOCK⌉)."""
        row = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        lse = tl.load(LSE + row)
        d = tl.load(D + row)
        s = tl.load(S + row * M + offs, mask=mask, other=0.0)
        dp = tl.load(DP + row * M + offs, mask=mask, other=0.0)
        p = tl.exp(s * scale - lse)
        tl.store(P + row * M + offs, p.to(P.dtype.element_ty), mask=mask)
        tl.store(DS + row * M + offs, (p * (dp - d) * scale).to(DS.dtype.element_ty), mask=mask)


# Elements of one [B·H, C, M] slab. Scores are float32: 2^27 elements = 512 MiB per slab and backward
# holds ~3 slabs at once. Large enough that each GEMM fills an H100.
_SLAB_ELEMENTS = 1 << 27


def _chunk_rows(b: int, h: int, n: int, m: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, min(int(chunk_size), n))
    rows = max(1, _SLAB_ELEMENTS // max(1, b * h * m))
    return min(n, rows)


def _scores_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [G,C,D] @ b [G,D,M] → float32 [G,C,M]. On CUDA with fp16/bf16 inputs this is ONE tensor-core GEMM
    with an fp32 output (`out_dtype`), so the scores are never rounded to 16 bits (the softmax of a 16-bit
    score has ~2^-11·|S| absolute error, visible at head dim 512). Elsewhere: a float32 GEMM."""
    if a.is_cuda and a.dtype in (torch.float16, torch.bfloat16):
        return torch.bmm(a, b, out_dtype=torch.float32)
    return torch.bmm(a.float(), b.float()) if a.dtype != torch.float64 else torch.bmm(a, b)


Grads3 = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None, None]


class ChunkedAttentionFunction(torch.autograd.Function):
    """Autograd Function for :func:`chunked_attention` on [G, N, D] tensors (G = B·H); formulas in the
    module docstring. Scores and probabilities are float32 (float64 for float64 inputs); the GEMM operands
    that multiply them are cast back to the input dtype (as flash attention does with P)."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, chunk: int) -> torch.Tensor:
        n = q.shape[1]
        out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
        kt = k.transpose(1, 2)
        for i in range(0, n, chunk):
            s = _scores_f32(q[:, i : i + chunk], kt)
            p = torch.softmax(s.mul_(scale), dim=-1).to(q.dtype)
            del s
            out[:, i : i + chunk] = torch.bmm(p, v)
            del p
        ctx.save_for_backward(q, k, v)
        ctx.scale = scale
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Grads3:
        q, k, v = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        n = q.shape[1]
        acc = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        grad_out = grad_out.contiguous()
        dq = torch.empty_like(q) if ctx.needs_input_grad[0] else None
        dk = torch.zeros(k.shape, dtype=acc, device=k.device) if ctx.needs_input_grad[1] else None
        dv = torch.zeros(v.shape, dtype=acc, device=v.device) if ctx.needs_input_grad[2] else None
        kt = k.transpose(1, 2)
        vt = v.transpose(1, 2)
        for i in range(0, n, chunk):
            qc = q[:, i : i + chunk]
            doc = grad_out[:, i : i + chunk]
            p = torch.softmax(_scores_f32(qc, kt).mul_(scale), dim=-1)  # recomputed, float32
            if dv is not None:
                dv += torch.bmm(p.to(q.dtype).transpose(1, 2), doc).to(acc)
            if dq is None and dk is None:
                continue
            dp = _scores_f32(doc, vt)
            ds = torch.ops.aten._softmax_backward_data(dp, p, -1, p.dtype).mul_(scale).to(q.dtype)
            del dp, p
            if dq is not None:
                dq[:, i : i + chunk] = torch.bmm(ds, k)
            if dk is not None:
                dk += torch.bmm(ds.transpose(1, 2), qc).to(acc)
            del ds
        return (
            dq,
            dk.to(k.dtype) if dk is not None else None,
            dv.to(v.dtype) if dv is not None else None,
            None,
            None,
        )


class ChunkedAttentionTritonFunction(torch.autograd.Function):
    """Same maths as :class:`ChunkedAttentionFunction`, with the softmax passes fused in Triton: the forward
    writes P (input dtype) and the row log-sum-exp in one kernel; the backward turns the float32 slabs
    S = q_c kᵀ and dP = dO_c vᵀ into P and dS (input dtype) in ONE elementwise pass, using the saved lse and
    D = rowsum(dO ⊙ O). Bytes per score element: forward 4 (S) + 4 + 2, backward 4 + 4 (S, dP) + 8 + 4."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, chunk: int) -> torch.Tensor:
        g, n, _ = q.shape
        m = k.shape[1]
        out = torch.empty((g, n, v.shape[-1]), dtype=q.dtype, device=q.device)
        lse = torch.empty((g, n), dtype=torch.float32, device=q.device)
        kt = k.transpose(1, 2)
        block = min(4096, triton.next_power_of_2(m))
        for i in range(0, n, chunk):
            c = min(chunk, n - i)
            s = _scores_f32(q[:, i : i + c], kt)
            p = torch.empty(s.shape, dtype=q.dtype, device=q.device)
            lse_c = torch.empty((g, c), dtype=torch.float32, device=q.device)
            _softmax_rows_fwd_kernel[(g * c,)](s, p, lse_c, m, scale, BLOCK=block, num_warps=8)
            del s
            lse[:, i : i + c] = lse_c
            out[:, i : i + c] = torch.bmm(p, v)
            del p
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale = scale
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Grads3:
        q, k, v, out, lse = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        g, n, _ = q.shape
        m = k.shape[1]
        grad_out = grad_out.contiguous()
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
        dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
        d_all = (grad_out.float() * out.float()).sum(-1)  # [G, N]: flash attention's D term
        kt = k.transpose(1, 2)
        vt = v.transpose(1, 2)
        block = min(2048, triton.next_power_of_2(m))
        for i in range(0, n, chunk):
            c = min(chunk, n - i)
            qc = q[:, i : i + c]
            doc = grad_out[:, i : i + c]
            s = _scores_f32(qc, kt)
            dp = _scores_f32(doc, vt)
            p = torch.empty(s.shape, dtype=q.dtype, device=q.device)
            ds = torch.empty(s.shape, dtype=q.dtype, device=q.device)
            _softmax_rows_bwd_kernel[(g * c, triton.cdiv(m, block))](
                s,
                dp,
                lse[:, i : i + c].contiguous(),
                d_all[:, i : i + c].contiguous(),
                p,
                ds,
                m,
                scale,
                BLOCK=block,
                num_warps=4,
            )
            del s, dp
            dv += _mm_acc(p.transpose(1, 2), doc)
            dq[:, i : i + c] = torch.bmm(ds, k)
            dk += _mm_acc(ds.transpose(1, 2), qc)
            del p, ds
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None


def _mm_acc(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with a float32 result (one GEMM with fp32 output on CUDA for 16-bit inputs)."""
    if a.dtype == torch.float32 or a.dtype == torch.float64:
        return torch.bmm(a, b)
    return _scores_f32(a, b)


def chunked_attention(
    q: torch.Tensor,  # [B, H, N, D]
    k: torch.Tensor,  # [B, H, M, D]
    v: torch.Tensor,  # [B, H, M, Dv]
    *,
    scale: float | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Exact softmax attention ``softmax(scale · q kᵀ) v`` computed in query chunks (no mask, no dropout).

    Args:
        q: float16/bfloat16/float32 tensor [B, H, N, D], any device.
        k: same dtype and device, [B, H, M, D].
        v: same dtype and device, [B, H, M, Dv].
        scale: softmax scale; default ``D ** -0.5`` (as ``F.scaled_dot_product_attention``).
        chunk_size: query rows per slab; default keeps a [B, H, C, M] slab at 2^27 elements.
        backend: ``"triton"`` (chunked, softmax passes fused in Triton: CUDA, or CPU under
            ``TRITON_INTERPRET=1``), ``"chunked"`` (chunked, softmax passes as PyTorch ops), ``"torch"`` (the
            reference: SDPA, math backend), or ``"auto"`` (``"triton"`` for CUDA float16/bfloat16/float32
            inputs when triton is installed, ``"chunked"`` otherwise). ``"triton"`` raises ``ValueError`` on CPU
            tensors without the interpreter and where triton cannot be imported.

    Returns:
        [B, H, N, Dv] tensor in the input dtype. Differentiable w.r.t. q, k and v.
    """
    op = "chunked_attention()"
    if backend not in ("auto", "triton", "chunked", "torch"):
        raise ValueError(f"{op}: backend must be one of 'auto', 'triton', 'chunked', 'torch', got {backend!r}")
    dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.dtype not in dtypes:
            got = f"{t.dtype} {list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{op}: {name} must be a float16|bfloat16|float32|float64 tensor [B,H,N,D], got {got}")
        if t.dtype != q.dtype or t.device != q.device:
            raise ValueError(
                f"{op}: {name} must match q's dtype and device ({q.dtype}, {q.device}), got {t.dtype}, {t.device}"
            )
    if (
        k.shape[:2] != q.shape[:2]
        or v.shape[:2] != q.shape[:2]
        or k.shape[-1] != q.shape[-1]
        or v.shape[-2] != k.shape[-2]
        or k.shape[-2] == 0
    ):
        raise ValueError(
            f"{op}: shapes must be q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv], got "
            f"q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)} (M >= 1)"
        )
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{op}: chunk_size must be a positive int or None, got {chunk_size!r}")
    s = float(scale) if scale is not None else q.shape[-1] ** -0.5
    if backend == "triton":
        use_triton("chunked_attention", backend, q)  # ValueError without triton, or on CPU without the interpreter
    if backend == "torch":
        from pgc_kernels.reference import chunked_attention_reference

        return chunked_attention_reference(q, k, v, scale=s)
    if q.numel() == 0:
        return q.new_zeros(q.shape[:-1] + (v.shape[-1],))
    b, h, n, _ = q.shape
    chunk = _chunk_rows(b, h, n, k.shape[2], chunk_size)
    flat = [t.reshape(b * h, t.shape[2], t.shape[3]).contiguous() for t in (q, k, v)]
    if backend == "auto":
        backend = "triton" if use_triton("chunked_attention", "auto", q) and q.dtype != torch.float64 else "chunked"
    fn = ChunkedAttentionTritonFunction if backend == "triton" else ChunkedAttentionFunction
    out = fn.apply(*flat, s, chunk)
    return out.view(b, h, n, v.shape[-1])
