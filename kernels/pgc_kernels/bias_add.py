"""Per-channel bias add with an optional residual, in one memory pass, for NCHW and channels-last tensors.

Why: cuDNN runs a convolution without its bias and PyTorch adds the bias afterwards in a broadcast kernel. For
channels-last activations that kernel takes PyTorch's generic (non-vectorised) elementwise path: in the SDXL VAE
encoder's forward (4 × 1024², bf16, H100) the bias adds cost 1.6 ms per 1 GiB activation (~1.3 TB/s) and ~14 ms
in all (benches/gpu_profile_vae.py). Here the add is a flat, vectorised pass over the tensor's storage, and a
ResNet block's residual add can take the second convolution's bias with it (one pass instead of two).

Formula, for x [B, C, *spatial] and bias [C] (residual optional, same shape and memory layout as x):

    y[b, c, p] = x[b, c, p] + bias[c] (+ residual[b, c, p])      computed in float32, rounded once to x.dtype

The kernel walks the storage in order (any dense layout whose channel index is (i // inner) % C: contiguous NCHW
has inner = H·W, channels-last inner = 1) and gathers bias[c] (C floats, L1-resident).
Backward: dx = dy, dresidual = dy, dbias = Σ_{b,p} dy (only when bias requires grad).
"""

from __future__ import annotations

from typing import Any

import torch

from ._backend import HAS_TRITON, tl, triton, use_triton

__all__ = ["bias_add"]

_BLOCK = 4096
_WARPS = 8


if HAS_TRITON:

    @triton.jit
    def _bias_add_kernel(X, BIAS, R, Y, n, C, inner, HAS_RES: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        c = (offs // inner) % C
        acc = tl.load(X + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        acc += tl.load(BIAS + c, mask=mask, other=0.0).to(tl.float32)
        if HAS_RES:
            acc += tl.load(R + offs, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
        tl.store(Y + offs, acc.to(Y.dtype.element_ty), mask=mask)


def _layout_inner(x: torch.Tensor) -> int | None:
    """Storage stride between consecutive channels' runs: H·W for contiguous NCHW, 1 for channels-last, None for
    any other layout (the caller falls back to the reference)."""
    if x.dim() < 2:
        return None
    if x.is_contiguous():
        inner = 1
        for s in x.shape[2:]:
            inner *= s
        return inner
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return 1
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return 1
    return None


def _check(x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError(
            f"bias_add(): x must be a floating tensor [B, C, ...], got "
            f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
        )
    if not torch.is_tensor(bias) or bias.dim() != 1 or bias.shape[0] != x.shape[1]:
        raise ValueError(
            f"bias_add(): bias must be a 1-D tensor of C={x.shape[1]} values, got "
            f"{tuple(bias.shape) if torch.is_tensor(bias) else type(bias).__name__}"
        )
    if bias.device != x.device:
        raise ValueError(f"bias_add(): bias must be on {x.device}, got {bias.device}")
    if residual is not None:
        if not torch.is_tensor(residual) or residual.shape != x.shape:
            raise ValueError(
                f"bias_add(): residual must have x's shape {tuple(x.shape)}, got "
                f"{tuple(residual.shape) if torch.is_tensor(residual) else type(residual).__name__}"
            )
        if residual.device != x.device:
            raise ValueError(f"bias_add(): residual must be on {x.device}, got {residual.device}")


def _launch(x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor | None:
    """The Triton pass, or None when the layouts do not allow the flat walk (then the caller uses torch)."""
    inner = _layout_inner(x)
    if (
        inner is None
        or x.numel() == 0
        or (residual is not None and (residual.stride() != x.stride() or residual.dtype != x.dtype))
    ):
        return None
    y = torch.empty_like(x)  # preserve_format: same strides as x
    n = x.numel()
    b = bias.contiguous()
    _bias_add_kernel[((n + _BLOCK - 1) // _BLOCK,)](
        x,
        b,
        residual if residual is not None else x,
        y,
        n,
        x.shape[1],
        inner,
        HAS_RES=residual is not None,
        BLOCK=_BLOCK,
        num_warps=_WARPS,
    )
    return y


def _torch(x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    from .reference import bias_add_reference

    return bias_add_reference(x, bias, residual, backend="torch")


class _BiasAddFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        ctx.has_res = residual is not None
        ctx.bias_reduce = (0, *range(2, x.dim()))
        y = _launch(x, bias, residual)
        return y if y is not None else _torch(x, bias, residual)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        gx = g if ctx.needs_input_grad[0] else None
        gb = g.float().sum(ctx.bias_reduce) if ctx.needs_input_grad[1] else None
        gr = g if ctx.has_res and ctx.needs_input_grad[2] else None
        return gx, gb, gr


def bias_add(
    x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None = None, *, backend: str = "auto"
) -> torch.Tensor:
    """``x + bias[None, :, None, …] (+ residual)`` in one pass (module docstring), differentiable.

    Args:
        x: float tensor [B, C, *spatial] (fp32/fp16/bf16), any device; Triton needs contiguous NCHW or
            channels-last storage (other layouts take the torch path).
        bias: [C] (any float dtype; added in float32).
        residual: optional tensor of x's shape, dtype-compatible, same strides as x for the fused path.
        backend: "auto" (Triton on CUDA), "triton", "torch".
    Returns:
        A new tensor of x's shape, dtype and memory layout.
    """
    _check(x, bias, residual)
    if not use_triton("bias_add", backend, x):
        return _torch(x, bias, residual)
    return _BiasAddFunction.apply(x, bias, residual)
