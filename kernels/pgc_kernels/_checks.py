"""Input validation shared by every pgc_kernels op.

Every error reads ``op(): arg must be …, got …`` so a user sees which call and which argument was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, overload

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

VARIANTS = ("clip", "value", "global", "sigmoid", "soft", "soft_pixel")
NORMS = ("linf", "l2")
BACKENDS = ("auto", "triton", "torch")
CONVENTIONS = ("pgc", "diffusers")
MAX_CHANNELS = 16


def _dtype_names(dtypes: Iterable[torch.dtype]) -> str:
    return "/".join(str(d).removeprefix("torch.") for d in dtypes)


def check_tensor(
    op: str,
    name: str,
    t: object,
    *,
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
    min_rank: int = 0,
    shape: tuple[int, ...] | torch.Size | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Check that ``t`` is a tensor of an allowed dtype, rank, shape and device; return it unchanged.

    Raises ``TypeError`` for a non-tensor or a wrong dtype and ``ValueError`` for a wrong rank,
    shape or device, in the form ``op(): name must be …, got …``.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}(): {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{op}(): {name} must have dtype {_dtype_names(dtypes)}, got {t.dtype}")
    if t.dim() < min_rank:
        raise ValueError(f"{op}(): {name} must have rank >= {min_rank}, got shape {tuple(t.shape)}")
    if shape is not None and t.shape != shape and tuple(t.shape) != tuple(shape):  # fast path: Size == Size
        raise ValueError(f"{op}(): {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"{op}(): {name} must be on {device} (like the first tensor argument), got {t.device}")
    return t


def check_choice(op: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{op}(): {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@overload
def check_positive_float(
    op: str, name: str, value: object, *, allow_none: Literal[False] = False, allow_zero: bool = False
) -> float: ...


@overload
def check_positive_float(
    op: str, name: str, value: object, *, allow_none: bool, allow_zero: bool = False
) -> float | None: ...


def check_positive_float(
    op: str, name: str, value: object, *, allow_none: bool = False, allow_zero: bool = False
) -> float | None:
    """A finite python number > 0 (>= 0 with ``allow_zero``), returned as float."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "a float or None" if allow_none else "a float"
        raise TypeError(f"{op}(): {name} must be {what}, got {type(value).__name__}")
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{op}(): {name} must be a finite number {bound}, got {value!r}")
    return v


def check_channel_dim(op: str, channel_dim: object, t: torch.Tensor) -> int:
    """Normalise ``channel_dim`` to a non-negative axis of ``t`` with 1..16 channels."""
    if isinstance(channel_dim, bool) or not isinstance(channel_dim, int):
        raise TypeError(f"{op}(): channel_dim must be an int, got {type(channel_dim).__name__}")
    rank = t.dim()
    if not -rank <= channel_dim < rank:
        raise ValueError(
            f"{op}(): channel_dim must be in [{-rank}, {rank - 1}] for a rank-{rank} tensor, got {channel_dim}"
        )
    d = channel_dim % rank
    c = t.shape[d]
    if not 1 <= c <= MAX_CHANNELS:
        raise ValueError(
            f"{op}(): grad must have 1..{MAX_CHANNELS} channels at channel_dim={channel_dim}, "
            f"got {c} (shape {tuple(t.shape)})"
        )
    return d


def check_scale(op: str, scale: object, t: torch.Tensor) -> float | torch.Tensor | None:
    """``scale`` is None, a finite float > 0, or a 1-element floating tensor on ``t``'s device (never read on the
    host)."""
    if scale is None:
        return None
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1:
            raise ValueError(f"{op}(): scale must be a 0-d (or 1-element) tensor, got shape {tuple(scale.shape)}")
        if not scale.is_floating_point():
            raise TypeError(f"{op}(): scale must be a floating tensor, got {scale.dtype}")
        if scale.device != t.device:
            raise ValueError(f"{op}(): scale must be on {t.device} (like grad), got {scale.device}")
        return scale
    return check_positive_float(op, "scale", scale)


def check_backend(op: str, backend: object) -> str:
    return check_choice(op, "backend", backend, BACKENDS)


def check_pixel_clip_args(
    op: str,
    grad: object,
    tau: object,
    variant: object,
    norm: object,
    channel_dim: object,
    scale: object,
    backend: object,
    return_stats: object,
) -> tuple[float, int, float | torch.Tensor | None]:
    """Validate :func:`pgc_kernels.pixel_clip`'s arguments; return ``(tau, channel_dim, scale)`` normalised."""
    g = check_tensor(op, "grad", grad, min_rank=2)
    t = check_positive_float(op, "tau", tau)
    check_choice(op, "variant", variant, VARIANTS)
    check_choice(op, "norm", norm, NORMS)
    d = check_channel_dim(op, channel_dim, g)
    s = check_scale(op, scale, g)
    check_backend(op, backend)
    if not isinstance(return_stats, bool):
        raise TypeError(f"{op}(): return_stats must be a bool, got {type(return_stats).__name__}")
    return t, d, s


def check_sds_grad_args(
    op: str,
    eps_cond: object,
    eps_uncond: object,
    target: object,
    weight: object,
    guidance_scale: object,
    convention: object,
    cfg_rescale: object,
    clamp: object,
    clip: object,
    backend: object,
    *,
    weight_tensor: bool = True,
) -> tuple[torch.Tensor | float, float, float, float | None, float | None]:
    """Validate :func:`pgc_kernels.sds_grad`'s arguments; return ``(weight, guidance_scale, cfg_rescale, clamp, clip)``.

    ``weight`` comes back as a float32 tensor of shape [B] on the inputs' device; a python number stays a float
    when ``weight_tensor`` is False (the Triton path passes it as a kernel scalar: no device tensor to build).
    """
    eps_cond = check_tensor(op, "eps_cond", eps_cond, min_rank=2)
    dev = eps_cond.device
    check_tensor(op, "eps_uncond", eps_uncond, shape=eps_cond.shape, device=dev)
    check_tensor(op, "target", target, shape=eps_cond.shape, device=dev)
    b, c = eps_cond.shape[0], eps_cond.shape[1]
    if not 1 <= c <= MAX_CHANNELS:
        raise ValueError(
            f"{op}(): eps_cond must have 1..{MAX_CHANNELS} channels at dim 1, got {c} (shape {tuple(eps_cond.shape)})"
        )
    if isinstance(weight, torch.Tensor):
        check_tensor(op, "weight", weight, dtypes=FLOAT_DTYPES + (torch.float64,), device=dev)
        if weight.numel() == 1:
            weight = weight.reshape(1).expand(b)
        elif tuple(weight.shape) != (b,) and not (weight.numel() == b and all(s == 1 for s in weight.shape[1:])):
            raise ValueError(f"{op}(): weight must have shape [B]=[{b}] (or one element), got {tuple(weight.shape)}")
        if weight.dtype != torch.float32 or weight.dim() != 1 or weight.stride(0) != 1:
            weight = weight.reshape(b).to(torch.float32).contiguous()
    elif isinstance(weight, (int, float)) and not isinstance(weight, bool):
        if not math.isfinite(float(weight)):
            raise ValueError(f"{op}(): weight must be finite, got {weight!r}")
        weight = torch.full((b,), float(weight), dtype=torch.float32, device=dev) if weight_tensor else float(weight)
    else:
        raise TypeError(f"{op}(): weight must be a tensor of shape [B] or a float, got {type(weight).__name__}")
    if (
        isinstance(guidance_scale, bool)
        or not isinstance(guidance_scale, (int, float))
        or not math.isfinite(float(guidance_scale))
    ):
        raise TypeError(f"{op}(): guidance_scale must be a finite float, got {guidance_scale!r}")
    check_choice(op, "convention", convention, CONVENTIONS)
    phi = check_positive_float(op, "cfg_rescale", cfg_rescale, allow_zero=True)
    if phi > 1.0:
        raise ValueError(f"{op}(): cfg_rescale must be in [0, 1], got {cfg_rescale!r}")
    clamp_v = check_positive_float(op, "clamp", clamp, allow_none=True)
    clip_v = check_positive_float(op, "clip", clip, allow_none=True)
    check_backend(op, backend)
    return weight, float(guidance_scale), phi, clamp_v, clip_v
