"""Pixel-wise gradient clipping (PGC): fused single-pass Triton kernel, autograd identity and hook.

Public: :func:`pixel_clip`, :func:`pgc`, :func:`attach_pgc`. Torch twin: :func:`pgc_kernels.reference.pixel_clip_reference`.
"""
from __future__ import annotations

from typing import Any

import torch

from ._backend import use_triton
from ._checks import check_pixel_clip_args
from ._types import PixelClipStats
from .reference import pixel_clip_reference


def _pixel_clip_triton(grad, tau, variant, norm, d, scale, return_stats):
    # Placeholder until the Triton kernel lands: the reference computes the same function.
    return pixel_clip_reference(grad, tau, variant=variant, norm=norm, channel_dim=d, scale=scale, return_stats=return_stats)


def pixel_clip(
    grad: torch.Tensor,
    tau: float,
    *,
    variant: str = "clip",
    norm: str = "linf",
    channel_dim: int = 1,
    scale: float | torch.Tensor | None = None,
    backend: str = "auto",
    return_stats: bool = False,
):
    """Clip a gradient pixel by pixel (PGC-3D's pixel-wise gradient clipping), in one pass over memory.

    Args:
        grad: float32/float16/bfloat16 tensor, rank ≥ 2, any device, channels (1..16) at ``channel_dim``
            (1 for NCHW, -1 for NHWC; any axis works, and any strides, e.g. ``channels_last``).
        tau: threshold τ > 0 in unscaled gradient units.
        variant: ``"clip"`` (the paper's method: g_p·min(1, τ'/‖g_p‖), direction preserved), ``"value"``,
            ``"global"``, ``"sigmoid"``, ``"soft"``, ``"soft_pixel"`` — the original's grad_suppress_type
            0–5; formulas in :func:`pgc_kernels.reference.pixel_clip_reference`.
        norm: pixel norm over channels for "clip"/"soft_pixel" (and the stats): ``"linf"`` (max_c |g_c|,
            the original) or ``"l2"``.
        scale: GradScaler scale S (python float, or a 1-element device tensor such as
            ``scaler._get_scale_async()``, read on the device without a host sync): the threshold becomes
            τ' = τ·S, which clips the unscaled gradient at τ and keeps the result scaled, as the original.
        backend: ``"auto"`` (Triton on CUDA, the reference elsewhere), ``"triton"``, ``"torch"``.
        return_stats: also return a :class:`PixelClipStats` (fraction clipped, max and mean pixel norm),
            computed in the same pass.

    Returns:
        A new tensor of ``grad``'s dtype, shape and strides; with ``return_stats`` a tuple ``(out, stats)``.

    All arithmetic is float32. A pixel whose gradient is all zero stays exactly zero. NaN/±inf are never
    hidden (so GradScaler still detects overflow): the affected pixel (pixel-wise variants) or element
    (element-wise ones) becomes NaN; with ``"global"`` the whole output does. pixel_clip itself is not
    differentiable (it transforms gradients); use :func:`pgc` to apply it in a backward pass.
    """
    op = "pixel_clip"
    tau, d, scale = check_pixel_clip_args(op, grad, tau, variant, norm, channel_dim, scale, backend, return_stats)
    if use_triton(op, backend, grad):
        return _pixel_clip_triton(grad, tau, variant, norm, d, scale, return_stats)
    return pixel_clip_reference(grad, tau, variant=variant, norm=norm, channel_dim=d, scale=scale, return_stats=return_stats)


def _resolve_scale(op: str, scaler: Any, scale: Any):
    """The scale to clip with: from a GradScaler (its device tensor, no sync), or ``scale`` as given."""
    if scaler is None:
        return scale
    if scale is not None:
        raise ValueError(f"{op}(): pass either scaler or scale, got both")
    if isinstance(scaler, (float, int, torch.Tensor)) and not isinstance(scaler, bool):
        return scaler
    if not (hasattr(scaler, "is_enabled") and hasattr(scaler, "_get_scale_async")):
        raise TypeError(f"{op}(): scaler must be a torch.amp.GradScaler, a float or a tensor, got {type(scaler).__name__}")
    if not scaler.is_enabled():
        return None
    # The scaler's scale tensor exists once scaler.scale(loss) ran, i.e. before any backward it drives.
    return scaler._get_scale_async()


class _PGCFunction(torch.autograd.Function):
    """Identity forward; the backward clips the incoming gradient with :func:`pixel_clip`."""

    @staticmethod
    def forward(ctx, x, tau, scaler, opts):
        ctx.tau, ctx.scaler, ctx.opts = tau, scaler, opts
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        opts = dict(ctx.opts)
        opts["scale"] = _resolve_scale("pgc", ctx.scaler, opts.get("scale"))
        return pixel_clip(g, ctx.tau, **opts), None, None, None


def _check_opts(op: str, x: torch.Tensor, tau: float, opts: dict) -> dict:
    allowed = {"variant", "norm", "channel_dim", "scale", "backend"}
    bad = set(opts) - allowed
    if "return_stats" in bad:
        raise ValueError(f"{op}(): return_stats is not available here, got return_stats; use attach_pgc(..., return_stats=True) and read hook.stats")
    if bad:
        raise TypeError(f"{op}(): unexpected keyword argument(s) {sorted(bad)}; allowed: {sorted(allowed)}")
    # Validate now, so a bad option fails at the call and not deep inside backward.
    scale = opts.get("scale")
    probe = {k: v for k, v in opts.items() if k != "scale"}
    check_pixel_clip_args(op, x, tau, probe.get("variant", "clip"), probe.get("norm", "linf"), probe.get("channel_dim", 1),
                          scale if not isinstance(scale, torch.Tensor) else None, probe.get("backend", "auto"), False)
    return opts


def pgc(x: torch.Tensor, tau: float, *, scaler: Any = None, **opts) -> torch.Tensor:
    """Autograd identity whose backward applies :func:`pixel_clip` to the incoming gradient (PGC as an op).

    ``y = pgc(rendered_rgb, 0.1)``: forward returns ``x`` (a view, same dtype/device/shape); in backward the
    gradient reaching ``x`` is ``pixel_clip(dL/dy, tau, **opts)``. ``opts`` are pixel_clip's keywords
    (variant, norm, channel_dim, scale, backend). ``scaler``: a ``torch.amp.GradScaler`` whose current
    scale (device tensor, no sync) is used as ``scale`` when it is enabled.
    """
    opts = _check_opts("pgc", x, tau, opts)
    return _PGCFunction.apply(x, tau, scaler, opts)


class PGCHook:
    """Handle returned by :func:`attach_pgc`: ``.remove()`` detaches the hook; ``.stats`` holds the
    :class:`PixelClipStats` of the latest backward when ``return_stats=True`` (else None)."""

    def __init__(self) -> None:
        self.stats: PixelClipStats | None = None
        self._handle = None

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def attach_pgc(tensor: torch.Tensor, tau: float, scaler: Any = None, *, return_stats: bool = False, **opts) -> PGCHook:
    """Register a backward hook on ``tensor`` that clips its gradient with :func:`pixel_clip` (the original's hook).

    ``tensor`` must require grad (e.g. the rendered image). ``scaler``: a ``torch.amp.GradScaler`` (its scale
    is read as a device tensor at backward time, no sync; ignored when disabled), a float, a tensor, or None.
    ``opts``: pixel_clip's keywords (variant, norm, channel_dim, scale, backend). Returns a :class:`PGCHook`.
    """
    op = "attach_pgc"
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{op}(): tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.requires_grad:
        raise ValueError(f"{op}(): tensor must require grad (a hook on it would never run), got requires_grad=False")
    if not isinstance(return_stats, bool):
        raise TypeError(f"{op}(): return_stats must be a bool, got {type(return_stats).__name__}")
    opts = _check_opts(op, tensor, tau, opts)
    hook = PGCHook()

    def _hook(g: torch.Tensor) -> torch.Tensor:
        o = dict(opts)
        o["scale"] = _resolve_scale(op, scaler, o.get("scale"))
        if return_stats:
            out, hook.stats = pixel_clip(g, tau, return_stats=True, **o)
            return out
        return pixel_clip(g, tau, **o)

    hook._handle = tensor.register_hook(_hook)
    return hook
