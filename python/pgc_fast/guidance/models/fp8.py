"""FP8 (e4m3) matrix products for the frozen UNet and ControlNet forward (a lossy speed lever, opt-in).

Score distillation runs the UNet and ControlNets forward only (no gradient flows through them), so their weights
and activations can be stored and multiplied in FP8 on Hopper, whose tensor cores do FP8 at twice the bf16 rate.

The quantisation, shared by the fast path and its twin:

* weights, once, per output channel: ``s_w[n] = max_k |W[n, k]| / 448``, ``W_q = e4m3(W / s_w)``;
* activations, at each call, per row (one token, or one pixel of a convolution): ``s_x[m] = max_k |x[m, k]| / 448``
  (``act_scale="tensor"``: one scale for the whole input), ``x_q = e4m3(x / s_x)``;
* ``y = s_x ⊙ (x_q W_qᵀ) ⊙ s_w + b``: the products accumulate in float32, the scales apply after the sum.

448 is e4m3's largest finite value; values are saturated to ±448 before the cast (PyTorch's cast to e4m3 gives
NaN above it, and the division can round a row's maximum just past it). A row whose maximum is below
:data:`MIN_AMAX` gets that floor as its maximum (its entries quantise to zero or subnormals: an output error
below ``MIN_AMAX · Σ|w|``), so an all-zero row gives exactly ``b``. A row holding inf or NaN gets a non-finite
scale and gives a non-finite output row, as the bf16 product would; other rows are unaffected.

Each quantised entry is within 2⁻⁴ of its value relative (3 mantissa bits, round to nearest) where ``|x| / s``
is at least 2⁻⁶ (e4m3's smallest normal), and within 2⁻¹⁰ ``s`` absolute below that (half the subnormal
spacing), so ``|y − y_exact| ≤ (2·2⁻⁴ + 2⁻⁸) (|x| |W|ᵀ) + (subnormal terms)`` elementwise; in practice the
relative error of a GEMM output is ~3 % (errors of independent entries average out).

On CUDA the product is ``torch._scaled_mm`` with row-wise scales (cuBLASLt/CUTLASS, compute capability ≥ 9.0);
:func:`fp8_linear_reference` is the twin: the same quantisation, then a float32 matmul of the dequantised
values (``emulate=True`` runs the modules through it, which is how the CPU tests run them). Under
``torch.compile`` (the regional compile of :func:`pgc_fast.guidance.models.accel.compile_blocks`) inductor fuses
each activation quantisation into one pass; outside it the quantiser is compiled on its own on CUDA.

What is replaced (:func:`use_fp8`): ``nn.Linear`` layers inside ``Transformer2DModel`` (attention projections,
GEGLU feed-forward, SDXL's linear ``proj_in``/``proj_out``) and, per ``convs``, ``nn.Conv2d`` layers inside ResNet
blocks, transformers, down/up-samplers and the ControlNet's zero convolutions: ``"1x1"`` (1×1 convolutions as
GEMMs over pixels), ``"all"`` (k×k ones too, through an im2col of k² shifted slices: k² times the input bytes, so
it pays only where the GEMM dominates), ``"none"``. Layers whose reduction or output size is not a multiple of
16 (``_scaled_mm``'s rule) stay as they are, as do the time/class embeddings (a few rows each: nothing to gain)
and the ControlNet's full-resolution condition embedding.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "E4M3_MAX",
    "FP8Conv2d",
    "FP8Linear",
    "MIN_AMAX",
    "check_fp8_device",
    "fp8_linear",
    "fp8_linear_reference",
    "fp8_supported",
    "quantize_rows",
    "use_fp8",
]

ActScale = Literal["row", "tensor"]
ConvScope = Literal["none", "1x1", "all"]

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0
"""Largest finite float8_e4m3fn value."""
MIN_AMAX = 1e-12
"""Floor of a row's max |x| (see the module docstring: zero rows)."""

# Modules under which layers are quantised (class names of diffusers' UNet2DConditionModel / ControlNetModel),
# and the ControlNet's zero convolutions (1x1, one per residual) by attribute name.
LINEAR_SCOPES = ("Transformer2DModel",)
CONV_SCOPES = ("ResnetBlock2D", "Transformer2DModel", "Downsample2D", "Upsample2D")
CONV_NAME_PREFIXES = ("controlnet_down_blocks", "controlnet_mid_block")


def fp8_supported(device: torch.device | str) -> bool:
    """Whether ``device`` runs :func:`torch._scaled_mm` with row-wise scales (a CUDA GPU of capability ≥ 9.0)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (9, 0)


def check_fp8_device(op: str, device: torch.device | str) -> None:
    """One-line ValueError unless ``device`` supports the FP8 fast path."""
    device = torch.device(device)
    if fp8_supported(device):
        return
    if device.type == "cuda" and torch.cuda.is_available():
        got = f"{torch.cuda.get_device_name(device)} (compute capability {torch.cuda.get_device_capability(device)})"
    else:
        got = f"device {device}"
    raise ValueError(
        f"{op}: FP8 matrix products need an NVIDIA GPU of compute capability 9.0 or newer (Hopper), got {got}"
    )


def quantize_rows(x: torch.Tensor, act_scale: ActScale = "row") -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] (any float dtype) → (x_q [M, K] float8_e4m3fn, scale [M, 1] float32) with x ≈ x_q · scale; one
    scale per row (``"row"``) or one for the whole tensor (``"tensor"``, returned as [1, 1]). See the module
    docstring for zero and non-finite rows."""
    xf = x.float()
    if act_scale == "row":
        amax = xf.abs().amax(dim=-1, keepdim=True)
    else:
        amax = xf.abs().amax().reshape(1, 1)
    scale = amax.clamp_min(MIN_AMAX) / E4M3_MAX
    q = (xf / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return q, scale


@functools.cache
def _compiled_quantizer():
    """:func:`quantize_rows` compiled on its own (one fused pass) for calls outside a compiled region; one graph
    per input shape (a UNet has ~10), so dynamo's recompile limit (8 by default) is raised as compile_blocks does."""
    import torch._dynamo.config as dcfg

    for name in ("recompile_limit", "cache_size_limit"):  # renamed across torch versions
        if hasattr(dcfg, name):
            setattr(dcfg, name, max(getattr(dcfg, name), 64))
            break
    return torch.compile(quantize_rows, dynamic=False)


def _quantize(x: torch.Tensor, act_scale: ActScale) -> tuple[torch.Tensor, torch.Tensor]:
    if x.is_cuda and not torch.compiler.is_compiling():
        return _compiled_quantizer()(x, act_scale)
    return quantize_rows(x, act_scale)


def _dequant_mm(xq, xs, wq, ws, bias) -> torch.Tensor:
    """The twin's product: float32 matmul of the quantised values, scales after the sum (as _scaled_mm)."""
    y = (xq.float() @ wq.float().t()) * xs * ws
    return y if bias is None else y + bias.float()


def fp8_linear_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, act_scale: ActScale = "row"
) -> torch.Tensor:
    """The twin of :func:`fp8_linear` from unquantised weights: quantise ``weight`` per output channel and ``x``
    per row (or per tensor), multiply the dequantised values in float32. x [..., K], weight [N, K] → float32
    [..., N]. Runs anywhere."""
    wq, ws = quantize_rows(weight)
    xq, xs = quantize_rows(x.reshape(-1, x.shape[-1]), act_scale)
    return _dequant_mm(xq, xs, wq, ws.view(1, -1), bias).reshape(*x.shape[:-1], weight.shape[0])


def fp8_linear(
    x: torch.Tensor,
    weight_fp8: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    act_scale: ActScale = "row",
    fast_accum: bool = False,
    emulate: bool = False,
) -> torch.Tensor:
    """``x @ Wᵀ + b`` with the weight pre-quantised (``weight_fp8`` [N, K] e4m3, ``weight_scale`` [1, N] float32,
    from :func:`quantize_rows`) and x quantised here. x [..., K] → [..., N] in x's dtype. CUDA: ``_scaled_mm``
    (bf16 out); ``emulate``: the float32 twin."""
    k, n = weight_fp8.shape[1], weight_fp8.shape[0]
    x2 = x.reshape(-1, k)
    xq, xs = _quantize(x2, act_scale)
    if emulate or not x.is_cuda:
        y = _dequant_mm(xq, xs, weight_fp8, weight_scale, bias)
    else:
        if xs.shape[0] != xq.shape[0]:  # per-tensor: _scaled_mm takes row-wise scales with row-wise weights
            xs = xs.expand(xq.shape[0], 1).contiguous()
        y = torch._scaled_mm(
            xq,
            weight_fp8.t(),
            scale_a=xs,
            scale_b=weight_scale,
            bias=None if bias is None else bias.to(torch.bfloat16),
            out_dtype=torch.bfloat16,
            use_fast_accum=fast_accum,
        )
    return y.to(x.dtype).reshape(*x.shape[:-1], n)


class _FP8Base(torch.nn.Module):
    """Holds a quantised weight matrix [N, K] (buffers, not parameters: frozen, and ``model.parameters()``
    keeps reporting the model's own dtype) and the product options."""

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None

    def _init_weight(self, w2d: torch.Tensor, bias: torch.Tensor | None, act_scale, fast_accum, emulate) -> None:
        wq, ws = quantize_rows(w2d.detach())
        self.register_buffer("weight_fp8", wq)
        self.register_buffer("weight_scale", ws.view(1, -1).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.act_scale, self.fast_accum, self.emulate = act_scale, fast_accum, emulate

    def _mm(self, rows: torch.Tensor) -> torch.Tensor:
        return fp8_linear(
            rows,
            self.weight_fp8,
            self.weight_scale,
            self.bias,
            act_scale=self.act_scale,
            fast_accum=self.fast_accum,
            emulate=self.emulate,
        )


class FP8Linear(_FP8Base):
    """A frozen ``nn.Linear`` whose product runs in FP8 (:func:`fp8_linear`)."""

    def __init__(
        self, linear: torch.nn.Linear, *, act_scale: ActScale = "row", fast_accum: bool = False, emulate: bool = False
    ):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._init_weight(linear.weight, linear.bias, act_scale, fast_accum, emulate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mm(x)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, act_scale={self.act_scale}"


def _im2col_nhwc(xh: torch.Tensor, kernel, stride, padding, dilation) -> torch.Tensor:
    """[B, H, W, C] → [B, Ho, Wo, kh·kw·C]: the k² zero-padded shifted slices side by side, (i, j, c) order."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    b, h, w, _ = xh.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = F.pad(xh, (0, 0, pw, pw, ph, ph))
    cols = [
        xp[:, i * dh : i * dh + (ho - 1) * sh + 1 : sh, j * dw : j * dw + (wo - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]
    return cols[0] if len(cols) == 1 else torch.cat(cols, dim=-1)


class FP8Conv2d(_FP8Base):
    """A frozen ``nn.Conv2d`` (groups 1, zero padding given as numbers) as an FP8 GEMM over output pixels: 1×1
    convolutions directly on the pixels' channel vectors, k×k ones through an im2col. The output keeps the
    input's memory format (channels_last or NCHW)."""

    def __init__(
        self, conv: torch.nn.Conv2d, *, act_scale: ActScale = "row", fast_accum: bool = False, emulate: bool = False
    ):
        super().__init__()
        n, c, kh, kw = conv.weight.shape
        self.in_channels, self.out_channels = c, n
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation = tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation)
        self._pointwise = (kh, kw) == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)
        w2d = conv.weight.detach().permute(0, 2, 3, 1).reshape(n, kh * kw * c)  # (i, j, c) order, as the im2col
        self._init_weight(w2d, conv.bias, act_scale, fast_accum, emulate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        xh = x.permute(0, 2, 3, 1)
        if self._pointwise:
            ho, wo = x.shape[2], x.shape[3]
            rows = xh.reshape(-1, self.in_channels)
        else:
            cols = _im2col_nhwc(xh, self.kernel_size, self.stride, self.padding, self.dilation)
            ho, wo = cols.shape[1], cols.shape[2]
            rows = cols.reshape(-1, cols.shape[-1])
        y = self._mm(rows).view(b, ho, wo, self.out_channels).permute(0, 3, 1, 2)
        return y.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, act_scale={self.act_scale}"
        )


def _linear_ok(m: torch.nn.Module) -> bool:
    return type(m) is torch.nn.Linear and m.in_features % 16 == 0 and m.out_features % 16 == 0


def _conv_ok(m: torch.nn.Module, convs: ConvScope) -> bool:
    if type(m) is not torch.nn.Conv2d or convs == "none":
        return False
    assert isinstance(m, torch.nn.Conv2d)
    n, c, kh, kw = m.weight.shape
    if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return False
    if convs == "1x1" and not ((kh, kw) == (1, 1) and tuple(m.stride) == (1, 1) and tuple(m.padding) == (0, 0)):
        return False
    return (c * kh * kw) % 16 == 0 and n % 16 == 0


def _targets(model: torch.nn.Module, convs: ConvScope) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """(parent, attribute, layer) of every layer :func:`use_fp8` replaces (see the module docstring)."""
    out = []

    def walk(module: torch.nn.Module, lin_scope: bool, conv_scope: bool) -> None:
        for name, child in module.named_children():
            named = name.startswith(CONV_NAME_PREFIXES)
            if (lin_scope and _linear_ok(child)) or ((conv_scope or named) and _conv_ok(child, convs)):
                out.append((module, name, child))
                continue
            cls = type(child).__name__
            walk(child, lin_scope or cls in LINEAR_SCOPES, conv_scope or named or cls in CONV_SCOPES)

    walk(model, False, False)
    return out


def use_fp8(
    model: torch.nn.Module,
    *,
    convs: ConvScope = "1x1",
    act_scale: ActScale = "row",
    fast_accum: bool = False,
    emulate: bool = False,
) -> int:
    """Replace ``model``'s frozen Linear (and, per ``convs``, Conv2d) layers by :class:`FP8Linear` /
    :class:`FP8Conv2d` in place; returns how many. ``emulate`` runs them through the float32 twin (any device:
    the CPU tests); otherwise the model must be on a GPU that supports FP8 (ValueError if not). Apply before
    ``torch.compile``; the replaced layers' bf16 weights are freed (FP8 stores half the bytes)."""
    if convs not in ("none", "1x1", "all"):
        raise ValueError(f"use_fp8(): convs must be none|1x1|all, got {convs!r}")
    if act_scale not in ("row", "tensor"):
        raise ValueError(f"use_fp8(): act_scale must be row|tensor, got {act_scale!r}")
    param = next(model.parameters(), None)
    if param is None:
        return 0
    if not emulate:
        check_fp8_device("use_fp8()", param.device)
    targets = _targets(model, convs)
    for parent, name, layer in targets:
        if any(p.requires_grad for p in layer.parameters()):
            raise ValueError(f"use_fp8(): layers must be frozen (requires_grad=False), got a trainable {name}")
        new: torch.nn.Module
        if isinstance(layer, torch.nn.Linear):
            new = FP8Linear(layer, act_scale=act_scale, fast_accum=fast_accum, emulate=emulate)
        else:
            assert isinstance(layer, torch.nn.Conv2d)
            new = FP8Conv2d(layer, act_scale=act_scale, fast_accum=fast_accum, emulate=emulate)
        setattr(parent, name, new)
    return len(targets)
