"""Express a strided tensor as [outer, C, inner] with one stride per axis, without copying."""

from __future__ import annotations

import torch


def _merge(sizes: list[int], strides: list[int]) -> tuple[int, int] | None:
    """(size, stride) of the dims ``sizes``/``strides`` merged into one axis, or None if they cannot be.

    Dims of size 1 carry no stride information and are skipped; consecutive dims a, b merge when
    stride_a == stride_b · size_b (row-major order among themselves).
    """
    pairs = [(s, st) for s, st in zip(sizes, strides, strict=True) if s != 1]
    if not pairs:
        return 1, 0
    size, stride = pairs[-1]
    for s, st in reversed(pairs[:-1]):
        if st != stride * size:
            return None
        size *= s
    return size, stride


def three_axis(t: torch.Tensor, d: int) -> tuple[int, int, int, int, int, int] | None:
    """``(outer, C, inner, s_outer, s_c, s_inner)`` such that element (o, c, i) of ``t`` viewed as
    [prod(shape[:d]), shape[d], prod(shape[d+1:])] lies at ``o·s_outer + c·s_c + i·s_inner``; None if the
    strides do not allow it (then the caller copies to contiguous)."""
    shape, strides = list(t.shape), list(t.stride())
    lo = _merge(shape[:d], strides[:d])
    hi = _merge(shape[d + 1 :], strides[d + 1 :])
    if lo is None or hi is None:
        return None
    return lo[0], shape[d], hi[0], lo[1], strides[d], hi[1]
