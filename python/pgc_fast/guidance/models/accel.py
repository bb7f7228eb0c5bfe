"""Speed levers for the diffusion models that are exact (same function, same outputs up to rounding).

:func:`use_chunked_attention` swaps the attention processor of every diffusers ``Attention`` module whose
head dimension is above what PyTorch's flash/cuDNN SDPA kernels support (256) — in SDXL/SD that is the VAE
encoder's and decoder's single-head, head-dim-512 mid-block attention — for one that calls
:func:`pgc_kernels.chunked_attention` (GEMM-speed forward and backward, bounded memory). Other attention
modules keep PyTorch SDPA (flash attention).

:func:`use_fused_group_norm` swaps GroupNorm + SiLU pairs for :func:`pgc_kernels.group_norm_silu` (Triton
forward and backward, NCHW or channels-last), which lets the VAE run channels-last without PyTorch's slow
channels-last GroupNorm, so cuDNN's NCHW↔NHWC conversions around every convolution disappear.

:func:`use_frozen_convs` makes every frozen ``nn.Conv2d`` (weights with ``requires_grad=False``, as in SDS
where only the pixels need a gradient) save only its weight for backward, not its input activation: the
input gradient of a convolution needs the weight alone. This halves the VAE encoder's saved activations at
no extra compute.

:func:`compile_blocks` is regional compilation: ``torch.compile`` of each repeated block (ResNet blocks and
transformer blocks) instead of the whole UNet, so blocks of one shape share one compiled graph and the compile
takes a fraction of a whole-model compile while fusing the same elementwise chains (GroupNorm + SiLU, residual
adds, GEGLU). Same function; inductor's fused kernels round differently from eager (ulp-level).
:func:`persistent_compile_cache` keeps inductor's and Triton's on-disk caches in the user's cache directory
(not /tmp), so a later run's compile is mostly cache reads.

:func:`use_sdpa_backend` pins the attention of every diffusers ``Attention`` module that uses PyTorch SDPA to one
SDPA backend (cuDNN, flash, memory-efficient or math): all compute the same function (exact up to rounding).

:func:`use_fp8` (from :mod:`pgc_fast.guidance.models.fp8`) is the one lossy lever here: FP8 matrix products for
the frozen UNet and ControlNets.
"""

from __future__ import annotations

from typing import TypeGuard

import torch

from pgc_fast.guidance.models.fp8 import use_fp8
from pgc_kernels.chunked_attention import chunked_attention

__all__ = [
    "ChunkedAttnProcessor",
    "FrozenConv2dFunction",
    "PinnedSDPAProcessor",
    "compile_blocks",
    "persistent_compile_cache",
    "use_chunked_attention",
    "use_fp8",
    "use_frozen_convs",
    "use_fused_group_norm",
    "use_sdpa_backend",
]

# PyTorch's flash-attention and cuDNN SDPA kernels take head dims up to 256.
FLASH_MAX_HEAD_DIM = 256


class ChunkedAttnProcessor:
    """diffusers attention processor equivalent to ``AttnProcessor2_0`` for self-attention without a mask,
    computing the softmax attention with :func:`pgc_kernels.chunked_attention`.

    Inputs follow diffusers: hidden_states [B, C, H, W] (4-D, as in the VAE) or [B, N, C]; returns the same
    shape and dtype. Masks and cross-attention fall back to the stock SDPA path.
    """

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        if encoder_hidden_states is not None or attention_mask is not None:
            from diffusers.models.attention_processor import AttnProcessor2_0

            return AttnProcessor2_0()(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        b, n, _ = hidden_states.shape
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(b, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = chunked_attention(query, key, value, scale=attn.scale)
        hidden_states = hidden_states.transpose(1, 2).reshape(b, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def use_chunked_attention(model: torch.nn.Module, min_head_dim: int = FLASH_MAX_HEAD_DIM + 1) -> int:
    """Install :class:`ChunkedAttnProcessor` on every self-attention module of ``model`` with head dim
    ≥ ``min_head_dim``. Returns how many modules were changed."""
    from diffusers.models.attention_processor import Attention

    changed = 0
    for module in model.modules():
        if isinstance(module, Attention) and not module.is_cross_attention:
            head_dim = module.inner_dim // module.heads
            if head_dim >= min_head_dim:
                # diffusers annotates `processor` as AttnProcessor, yet takes any callable with its signature.
                module.set_processor(ChunkedAttnProcessor())  # type: ignore[arg-type]
                changed += 1
    return changed


def _fused_resnet_forward(self, input_tensor, temb=None, *args, **kwargs):
    """``ResnetBlock2D.forward`` (time_embedding_norm "default", SiLU) with ``norm1``/``norm2`` fused with
    their SiLU: the same function with one memory pass fewer per norm. The time embedding keeps its own SiLU."""
    hidden_states = self.norm1(input_tensor)  # GroupNorm + SiLU
    if self.upsample is not None:
        if hidden_states.shape[0] >= 64:
            input_tensor = input_tensor.contiguous()
            hidden_states = hidden_states.contiguous()
        input_tensor = self.upsample(input_tensor)
        hidden_states = self.upsample(hidden_states)
    elif self.downsample is not None:
        input_tensor = self.downsample(input_tensor)
        hidden_states = self.downsample(hidden_states)
    hidden_states = self.conv1(hidden_states)
    if self.time_emb_proj is not None and temb is not None:
        if not self.skip_time_act:
            temb = torch.nn.functional.silu(temb)
        hidden_states = hidden_states + self.time_emb_proj(temb)[:, :, None, None]
    hidden_states = self.norm2(hidden_states)  # GroupNorm + SiLU
    hidden_states = self.dropout(hidden_states)
    if self.conv_shortcut is not None:
        input_tensor = self.conv_shortcut(input_tensor.contiguous() if self.training else input_tensor)
    if getattr(self.conv2, "_pgc_frozen_conv", False) and self.output_scale_factor == 1.0:
        # conv2's bias and the residual go in one pass (pgc_kernels.bias_add) instead of two.
        return self.conv2(hidden_states, residual=input_tensor)
    hidden_states = self.conv2(hidden_states)
    out = input_tensor + hidden_states
    # Dividing by 1.0 (every SD/SDXL VAE and UNet block) is the identity, yet costs a full pass over the block's
    # output forward and another over its gradient backward (1 GiB each at 4 × 1024² × 128 channels, bf16).
    return out if self.output_scale_factor == 1.0 else out / self.output_scale_factor


def use_fused_group_norm(model: torch.nn.Module, backend: str = "auto") -> int:
    """Replace GroupNorm(+SiLU) pairs in diffusers blocks by :class:`pgc_kernels.GroupNormSiLU` (same
    parameters, so state dicts and weights are shared):

    * ``ResnetBlock2D`` with SiLU and no time embedding or ``time_embedding_norm="default"`` (VAE, UNet,
      ControlNet): ``norm1`` and
      ``norm2`` fused with their SiLU, forward :func:`_fused_resnet_forward` (a time embedding keeps its SiLU;
      the identity division by ``output_scale_factor == 1`` is skipped);
    * ``conv_norm_out`` + ``conv_act`` (VAE encoder/decoder, UNet);
    * attention ``group_norm`` and ``Transformer2DModel.norm`` (GroupNorm without SiLU).

    Returns the number of GroupNorms replaced. ``backend`` is passed to :func:`pgc_kernels.group_norm_silu`."""
    import types

    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    from pgc_kernels.group_norm_silu import GroupNormSiLU

    def plain_gn(m: object) -> TypeGuard[torch.nn.GroupNorm]:
        return type(m) is torch.nn.GroupNorm

    changed = 0
    for module in model.modules():
        if (
            isinstance(module, ResnetBlock2D)
            and isinstance(module.nonlinearity, torch.nn.SiLU)
            and (module.time_emb_proj is None or module.time_embedding_norm == "default")
            and plain_gn(module.norm1)
            and plain_gn(module.norm2)
        ):
            module.norm1 = GroupNormSiLU.from_group_norm(module.norm1, True, backend)
            module.norm2 = GroupNormSiLU.from_group_norm(module.norm2, True, backend)
            if module.time_emb_proj is None:
                module.nonlinearity = torch.nn.Identity()
            module.forward = types.MethodType(_fused_resnet_forward, module)  # type: ignore[method-assign]
            changed += 2
        elif isinstance(module, Attention) and plain_gn(getattr(module, "group_norm", None)):
            module.group_norm = GroupNormSiLU.from_group_norm(module.group_norm, False, backend)
            changed += 1
        elif isinstance(module, Transformer2DModel) and plain_gn(getattr(module, "norm", None)):
            module.norm = GroupNormSiLU.from_group_norm(module.norm, False, backend)
            changed += 1
        if plain_gn(gn := getattr(module, "conv_norm_out", None)) and isinstance(
            getattr(module, "conv_act", None), torch.nn.SiLU
        ):
            module.conv_norm_out = GroupNormSiLU.from_group_norm(gn, True, backend)
            module.conv_act = torch.nn.Identity()
            changed += 1
    return changed


# Tests set this (with TRITON_INTERPRET=1) to run the Triton bias pass on CPU tensors.
_TRITON_BIAS_ON_CPU = False


def _conv_bias_res(x, weight, bias, stride, padding, dilation, groups, residual=None):
    """``conv2d(x, weight, bias) (+ residual)``. On CUDA the bias (and the residual) are added by
    :func:`pgc_kernels.bias_add`'s single vectorised pass: PyTorch adds a cuDNN convolution's bias in a separate
    broadcast kernel that takes the generic, non-vectorised path for channels-last activations (~1.6 ms per
    1 GiB activation on an H100), and the residual add would be one more pass."""
    if bias is not None and (x.is_cuda or _TRITON_BIAS_ON_CPU):
        from pgc_kernels.bias_add import _launch

        y = torch.nn.functional.conv2d(x, weight, None, stride, padding, dilation, groups)
        out = _launch(y, bias, residual)
        if out is not None:
            return out
        y = y + bias.view(1, -1, 1, 1).to(y.dtype)
    else:
        y = torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return y if residual is None else y + residual


class FrozenConv2dFunction(torch.autograd.Function):
    """``F.conv2d(x, w, b, …) (+ residual)`` whose backward returns only dL/dx (and dL/dresidual = dL/dy; w and b
    frozen), so it saves the weight and not the input activation. dL/dx comes from ``aten.convolution_backward``
    with output mask (x only); the input it is handed is an uninitialised stand-in of the right size and memory
    format (cuDNN reads only its shape and layout, and a layout mismatch would cost NCHW↔NHWC conversions),
    allocated for the duration of that one call."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, residual=None):
        ctx.save_for_backward(weight)
        cl = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        ctx.conf = (x.shape, x.dtype, cl, stride, padding, dilation, groups, residual is not None)
        return _conv_bias_res(x, weight, bias, stride, padding, dilation, groups, residual)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        shape, dtype, cl, stride, padding, dilation, groups, has_res = ctx.conf
        fmt = torch.channels_last if cl else torch.contiguous_format
        stand_in = torch.empty(shape, dtype=dtype, device=grad_out.device, memory_format=fmt)
        gx, _, _ = torch.ops.aten.convolution_backward(
            grad_out.contiguous(memory_format=fmt),
            stand_in,
            weight,
            None,
            list(stride),
            list(padding),
            list(dilation),
            False,
            [0, 0],
            groups,
            [True, False, False],
        )
        return gx, None, None, None, None, None, None, (grad_out if has_res else None)


def _frozen_conv_forward(self, x, residual=None):
    """Forward of a frozen ``nn.Conv2d`` (:func:`use_frozen_convs`); ``residual`` (optional, x-shaped output)
    is added in the bias's pass."""

    def stock():
        y = torch.nn.Conv2d.forward(self, x)
        return y if residual is None else y + residual

    if self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad) or self.padding_mode != "zeros":
        return stock()  # trainable (or non-zero padding mode)
    padding = self.padding
    if isinstance(padding, str):  # "same"/"valid": resolve to explicit numbers for the backward
        if padding == "valid":
            padding = (0, 0)
        else:
            padding = tuple(d * (k - 1) // 2 for k, d in zip(self.kernel_size, self.dilation, strict=False))
            if any(d * (k - 1) % 2 for k, d in zip(self.kernel_size, self.dilation, strict=False)):
                return stock()  # asymmetric "same"
    if not torch.is_grad_enabled() or not (x.requires_grad or (residual is not None and residual.requires_grad)):
        return _conv_bias_res(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups, residual)
    return FrozenConv2dFunction.apply(
        x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups, residual
    )


class _PadRBFunction(torch.autograd.Function):
    """``F.pad(x, (0, 1, 0, 1))`` (the diffusers encoder's downsampling pad) whose backward hands back a dense
    gradient in x's memory layout. Autograd's own pad backward returns a strided view of the padded gradient, and
    every consumer then pays for it (a layout copy before cuDNN, PyTorch's generic kernels for the residual adds)."""

    @staticmethod
    def forward(ctx, x):
        ctx.cl = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        ctx.hw = x.shape[-2:]
        return torch.nn.functional.pad(x, (0, 1, 0, 1))

    @staticmethod
    def backward(ctx, g):
        h, w = ctx.hw
        return g[..., :h, :w].contiguous(memory_format=torch.channels_last if ctx.cl else torch.contiguous_format)


def _downsample_forward(self, hidden_states, *args, **kwargs):
    """``Downsample2D.forward`` for the encoder's conv downsampler with padding 0 (pad right/bottom, stride-2
    conv), with :class:`_PadRBFunction` as the pad. Same function."""
    if torch.is_grad_enabled() and hidden_states.requires_grad:
        hidden_states = _PadRBFunction.apply(hidden_states)
    else:
        hidden_states = torch.nn.functional.pad(hidden_states, (0, 1, 0, 1))
    return self.conv(hidden_states)


def use_frozen_convs(model: torch.nn.Module) -> int:
    """Route every ``nn.Conv2d`` of ``model`` through :class:`FrozenConv2dFunction` while its parameters
    are frozen (checked at each call, so unfreezing later restores the stock path). Returns the count."""
    import types

    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Conv2d:
            module.forward = types.MethodType(_frozen_conv_forward, module)  # type: ignore[method-assign]
            # forward takes residual= (see _fused_resnet_forward); torch types module attributes as Tensor | Module.
            module._pgc_frozen_conv = True  # type: ignore[assignment]
            n += 1
        elif (
            type(module).__name__ == "Downsample2D"
            and getattr(module, "use_conv", False)
            and getattr(module, "padding", None) == 0
            and getattr(module, "norm", None) is None
            and type(getattr(module, "conv", None)) is torch.nn.Conv2d
        ):
            module.forward = types.MethodType(_downsample_forward, module)
    return n


# Class names of the blocks :func:`compile_blocks` compiles (diffusers' UNet2DConditionModel, ControlNetModel,
# AutoencoderKL): the repeated units that hold the elementwise chains worth fusing.
COMPILE_BLOCK_CLASSES = ("ResnetBlock2D", "BasicTransformerBlock")


def compile_blocks(model: torch.nn.Module, classes: tuple[str, ...] = COMPILE_BLOCK_CLASSES, **compile_kwargs) -> int:
    """Regional compilation: ``module.compile(dynamic=False, **compile_kwargs)`` on every submodule of ``model``
    whose class name is in ``classes``; returns how many were compiled (0 leaves ``model`` as it was).

    Dynamo keys compiled code on the block's ``forward`` and guards on shapes and module attributes, so every
    block of one shape reuses one graph: SDXL's UNet + ControlNet hold ~70 transformer blocks of 2 shapes and
    ~40 ResNet blocks of ~15 (in, out, size) combinations. The process-wide recompile limit is raised so those
    variants are not dropped back to eager after the default 8. The first call of each shape pays the compile
    (seconds each; cached on disk by inductor for later processes)."""
    import torch._dynamo.config as dcfg

    blocks = [m for m in model.modules() if type(m).__name__ in classes]
    if not blocks:
        return 0
    for name in ("recompile_limit", "cache_size_limit"):  # renamed across torch versions
        if hasattr(dcfg, name):
            setattr(dcfg, name, max(getattr(dcfg, name), 64))
            break
    if hasattr(dcfg, "accumulated_recompile_limit"):
        dcfg.accumulated_recompile_limit = max(dcfg.accumulated_recompile_limit, 1024)
    compile_kwargs.setdefault("dynamic", False)
    for m in blocks:
        m.compile(**compile_kwargs)
    return len(blocks)


def persistent_compile_cache(root: str | None = None) -> str | None:
    """Point inductor's on-disk caches (FX graphs, AOT autograd, autotuning, and the Triton kernels it builds) at
    ``root/inductor`` — ``root`` default ``$PGC_FAST_CACHE_DIR``, else ``$XDG_CACHE_HOME/pgc-fast`` (i.e.
    ``~/.cache/pgc-fast``) — unless the user set ``TORCHINDUCTOR_CACHE_DIR``, and turn those caches on. PyTorch's
    default directory is under /tmp, which a reboot or a fresh container empties. Returns the directory in force
    (None: PyTorch's default, when the wanted one cannot be written). Call before the first compile; calling
    again changes nothing."""
    import os

    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        if root is None:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            root = os.environ.get("PGC_FAST_CACHE_DIR") or os.path.join(base, "pgc-fast")
        path = os.path.join(root, "inductor")
        try:
            os.makedirs(path, exist_ok=True)
            if os.access(path, os.W_OK):
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
        except OSError:  # read-only home or the like: PyTorch's default stays
            pass
    import torch._functorch.config as fcfg
    import torch._inductor.config as icfg

    icfg.fx_graph_cache = True
    icfg.autotune_local_cache = True
    if hasattr(fcfg, "enable_autograd_cache"):
        fcfg.enable_autograd_cache = True
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR")


# SDPA backend names of GuidanceConfig.attention → torch's enum member names.
SDPA_BACKENDS = {
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}


class PinnedSDPAProcessor:
    """diffusers' ``AttnProcessor2_0`` with ``F.scaled_dot_product_attention`` restricted to one backend
    (``torch.nn.attention.sdpa_kernel``; torch.compile traces the context manager). A shape the backend cannot
    run raises PyTorch's "no available kernel" error rather than silently taking another backend."""

    def __init__(self, backend: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0
        from torch.nn.attention import SDPBackend

        if backend not in SDPA_BACKENDS:
            raise ValueError(f"PinnedSDPAProcessor(): backend must be {'|'.join(SDPA_BACKENDS)}, got {backend!r}")
        self.backend = backend
        self._sdp = getattr(SDPBackend, SDPA_BACKENDS[backend])
        self._inner = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, *args, **kwargs):
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(self._sdp):
            return self._inner(attn, hidden_states, *args, **kwargs)


def use_sdpa_backend(model: torch.nn.Module, backend: str) -> int:
    """Pin every ``Attention`` module of ``model`` that runs diffusers' stock SDPA processor to ``backend``
    (:data:`SDPA_BACKENDS`; ``"auto"`` changes nothing). Other processors (the VAE's chunked attention, VSD's
    LoRA) are left alone. Returns how many modules were changed. Apply before ``torch.compile``."""
    if backend == "auto":
        return 0
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    proc = PinnedSDPAProcessor(backend)
    n = 0
    for module in model.modules():
        if isinstance(module, Attention) and type(module.processor) in (AttnProcessor2_0, PinnedSDPAProcessor):
            module.set_processor(proc)  # type: ignore[arg-type]
            n += 1
    return n
