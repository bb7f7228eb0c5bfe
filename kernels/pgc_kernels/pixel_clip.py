"""Pixel-wise gradient clipping (PGC): fused single-pass Triton kernel, autograd identity and hook.

Public: :func:`pixel_clip`, :func:`pgc`, :class:`PGCHook` / :func:`attach_pgc`.
Torch twin: :func:`pgc_kernels.reference.pixel_clip_reference`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, overload

import torch
from torch.utils.hooks import RemovableHandle

from ._backend import HAS_TRITON, interpret_mode, tl, triton, use_triton
from ._checks import check_pixel_clip_args, check_positive_float
from ._layout import three_axis
from ._types import PixelClipStats
from .reference import pixel_clip_reference

_VARIANT_ID = {"clip": 0, "value": 1, "global": 2, "sigmoid": 3, "soft": 4, "soft_pixel": 5}

# Launch configuration per memory order and element size: (elements per program, warps).
# "pixel_major": pixels of one channel are contiguous (NCHW): each program loads a [C_PAD, BLOCK] tile, each row
#   a vectorised run of one channel, and reduces over the channel axis in registers.
# Packed channel-last tensors (NHWC, channels_last: channels of a pixel contiguous, pixels packed):
# "staged" (the default for the pixel-wise variants): the tensor is read as 32/64-bit words, G pixels = W ≤ 4
#   words per group (bf16 RGB: 4 pixels in 3 int64 words); a [groups, 4] tile with lanes along the words keeps
#   every warp access one contiguous run, and the compiler moves each group into one thread through shared memory,
#   where the norms and per-pixel factors stay in registers (bf16 NHWC: 95 % of copy bandwidth on the H100).
# "words": the same without the staging (lanes W words apart: each access uses 1/W of the sectors it touches,
#   52 % of copy at bf16 RGB).
# "packed": a flat, fully vectorised run of elements; the pixel norm re-reads the C channel-mates of each element
#   (L1 hits): one read and one write of memory, but C gathered loads per element (bf16 RGB: 47 %). Runs the
#   element-wise variants (no channel-mates needed: at copy speed) and the C with no word plan.
# "strided": anything else the [outer, C, inner] view describes (channel stride 1 with gaps between pixels).
# Tuned on an H100 with benches/gpu_kernels.py --sweep / --sweep-only (see benches/RESULTS.md).
CONFIG = {
    ("pixel_major", 4): (4096, 4),
    ("pixel_major", 2): (4096, 4),
    ("packed", 4): (4096, 16),
    ("packed", 2): (2048, 4),
    ("strided", 4): (4096, 4),
    ("strided", 2): (4096, 4),
    # "words" / "staged": (pixel groups per program, warps, word bits)
    ("words", 4): (512, 4, 64),
    ("words", 2): (512, 4, 64),
    ("staged", 4): (512, 4, 64),
    ("staged", 2): (256, 2, 64),
}
# Which kernel runs the pixel-wise variants ("clip", "soft_pixel") and stats on a packed channel-last tensor, per
# element size: "staged" or "words" (both fall back to "packed" where C has no plan of ≤ 4 words per group, or on
# misaligned storage), "packed" or "strided". The element-wise variants on packed tensors always use "packed" (no
# channel-mate reads). H100, [4,1024,1024,3], clip/linf, device µs (benches/gpu_kernels.py, commits 83aa632 and
# 2cf00ad; floor 33.6 µs fp32, 16.8 µs 16-bit): fp32 staged 35.9 / strided 37.2 / packed 37.8 / words 58.2;
# bf16 staged 17.6 / words 32.3 / strided 32.7 / packed 36.1; fp16 staged 17.6 / words 30.6. A "lanes" kernel
# (one word per lane, pixel norms by warp shuffles) ran at 31–53 % of copy bandwidth and was dropped.
PACKED_PIXEL_KERNEL = {4: "staged", 2: "staged"}


if HAS_TRITON:

    @triton.jit
    def _round_to_bf16(y):
        """fp32 → the fp32 value of the nearest-even bfloat16 (NaN and ±inf kept)."""
        u = y.to(tl.uint32, bitcast=True)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
        return tl.where(y != y, y, u.to(tl.float32, bitcast=True))

    @triton.jit
    def _pgc_apply(x, a, fin, n, pfin, thr, gmax_ptr, VARIANT: tl.constexpr):
        """y for one variant, all fp32: x the elements, a = |x|, fin = isfinite(x); n, pfin the pixel norm and
        pixel-all-finite flag broadcast to x's shape (unused by the element-wise variants)."""
        nan = float("nan")
        if VARIANT == 0:
            # Divide only where n > τ' (> 0): zero pixels stay exactly zero, no 0/0.
            y = tl.where(pfin, x * tl.where(n > thr, thr / tl.where(n > thr, n, 1.0), 1.0), nan)
        elif VARIANT == 1:
            y = tl.where(fin, tl.minimum(tl.maximum(x, -thr), thr), nan)
        elif VARIANT == 2:
            gm = tl.load(gmax_ptr)  # max|x| over the tensor, inf if any element is non-finite
            f = tl.where(gm > 0, thr / tl.where(gm > 0, gm, 1.0), 0.0)  # all-zero input stays zero
            y = tl.where(gm < float("inf"), x * f, nan)
        elif VARIANT == 3:
            y = tl.where(fin, (1.0 / (1.0 + tl.exp(-x)) - 0.5) * thr, nan)
        elif VARIANT == 4:
            y = tl.where(fin, x * (thr / (a + thr)), nan)
        else:
            y = tl.where(pfin, x * (thr / (n + thr)), nan)
        return y

    @triton.jit
    def _pixel_clip_kernel(
        x_ptr,
        y_ptr,
        scale_ptr,
        gmax_ptr,
        part_ptr,
        tau,
        inner,
        n_inner_blocks,
        C,
        sxo,
        sxc,
        sxi,
        syo,
        syc,
        syi,
        VARIANT: tl.constexpr,
        NORM_L2: tl.constexpr,
        HAS_SCALE_PTR: tl.constexpr,
        STATS: tl.constexpr,
        USE_I64: tl.constexpr,
        ROUND_BF16: tl.constexpr,
        C_PAD: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """One pass: y = PGC(x) over a tile of BLOCK pixels × C channels of the [outer, C, inner] view.

        τ' = τ·scale; n_p = max_c |x_pc| (L∞) or sqrt(Σ_c x_pc²) (L2). Variants (VARIANT):
        0 clip x·min(1, τ'/n_p) · 1 value clamp(x, ±τ') · 2 global x·τ'/max|x| · 3 sigmoid (σ(x) − ½)·τ'
        · 4 soft τ'x/(|x| + τ') · 5 soft_pixel τ'x/(n_p + τ'). Non-finite input → NaN (pixel-wise for 0/5,
        element-wise for 1/3/4, whole tensor for 2). STATS: per-program (count of n_p > τ', Σ n_p, max n_p).
        """
        pid = tl.program_id(0)
        o = pid // n_inner_blocks
        ib = pid - o * n_inner_blocks
        i = ib * BLOCK + tl.arange(0, BLOCK)
        c = tl.arange(0, C_PAD)
        if USE_I64:
            o = o.to(tl.int64)
            i = i.to(tl.int64)
        pmask = i < inner
        mask = (c[:, None] < C) & pmask[None, :]
        xoff = o * sxo + c[:, None] * sxc + i[None, :] * sxi
        x = tl.load(x_ptr + xoff, mask=mask, other=0.0).to(tl.float32)

        thr = tau
        if HAS_SCALE_PTR:
            thr = tl.load(scale_ptr).to(tl.float32) * tau
        a = tl.abs(x)
        fin = a < float("inf")  # False for ±inf and NaN
        if NORM_L2:
            n = tl.sqrt(tl.sum(x * x, axis=0))
        else:
            n = tl.max(a, axis=0)
        # Masked lanes load 0, which is finite: only real non-finite elements clear a pixel.
        pfin = tl.sum((~fin).to(tl.int32), axis=0) == 0
        y = _pgc_apply(x, a, fin, n[None, :], pfin[None, :], thr, gmax_ptr, VARIANT)

        yoff = o * syo + c[:, None] * syc + i[None, :] * syi
        if ROUND_BF16:  # interpreter only: its fp32 → bf16 cast truncates; the GPU's rounds to nearest even
            y = _round_to_bf16(y)
        tl.store(y_ptr + yoff, y.to(y_ptr.dtype.element_ty), mask=mask)

        if STATS:
            ns = tl.where(pfin, n, float("inf"))
            cnt = tl.sum(tl.where(pmask & (ns > thr), 1.0, 0.0), axis=0)
            tot = tl.sum(tl.where(pmask, ns, 0.0), axis=0)
            mx = tl.max(tl.where(pmask, ns, 0.0), axis=0)
            tl.store(part_ptr + pid * 3 + 0, cnt)
            tl.store(part_ptr + pid * 3 + 1, tot)
            tl.store(part_ptr + pid * 3 + 2, mx)

    @triton.jit
    def _pixel_clip_packed_kernel(
        x_ptr,
        y_ptr,
        scale_ptr,
        gmax_ptr,
        part_ptr,
        tau,
        total,
        C: tl.constexpr,
        VARIANT: tl.constexpr,
        NORM_L2: tl.constexpr,
        HAS_SCALE_PTR: tl.constexpr,
        STATS: tl.constexpr,
        USE_I64: tl.constexpr,
        ROUND_BF16: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """Same maths as _pixel_clip_kernel on a packed channel-last tensor (element e = pixel·C + channel),
        processed as a flat run of BLOCK elements: vectorised load/store of x, and for the pixel-wise variants
        (and stats) the C channel-mates of each element are re-read (cache hits) to form n_p. A pixel's stats are
        counted by the program holding its channel 0."""
        pid = tl.program_id(0)
        if USE_I64:
            e = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        else:
            e = pid * BLOCK + tl.arange(0, BLOCK)
        m = e < total
        x = tl.load(x_ptr + e, mask=m, other=0.0).to(tl.float32)
        thr = tau
        if HAS_SCALE_PTR:
            thr = tl.load(scale_ptr).to(tl.float32) * tau
        a = tl.abs(x)
        fin = a < float("inf")
        NEED_PIXEL: tl.constexpr = VARIANT == 0 or VARIANT == 5 or STATS
        if NEED_PIXEL:
            base = (e // C) * C
            acc = tl.zeros([BLOCK], dtype=tl.float32)
            nbad = tl.zeros([BLOCK], dtype=tl.int32)
            for k in tl.static_range(C):
                v = tl.load(x_ptr + base + k, mask=m, other=0.0).to(tl.float32)
                av = tl.abs(v)
                if NORM_L2:
                    acc += v * v
                else:
                    acc = tl.maximum(acc, av)
                nbad += (av < float("inf")) == 0
            if NORM_L2:
                n = tl.sqrt(acc)
            else:
                n = acc
            pfin = nbad == 0

        if not NEED_PIXEL:
            n = x
            pfin = fin
        y = _pgc_apply(x, a, fin, n, pfin, thr, gmax_ptr, VARIANT)
        if ROUND_BF16:
            y = _round_to_bf16(y)
        tl.store(y_ptr + e, y.to(y_ptr.dtype.element_ty), mask=m)

        if STATS:
            first = m & (e == base)
            ns = tl.where(pfin, n, float("inf"))
            tl.store(part_ptr + pid * 3 + 0, tl.sum(tl.where(first & (ns > thr), 1.0, 0.0), axis=0))
            tl.store(part_ptr + pid * 3 + 1, tl.sum(tl.where(first, ns, 0.0), axis=0))
            tl.store(part_ptr + pid * 3 + 2, tl.max(tl.where(first, ns, 0.0), axis=0))

    @triton.jit
    def _pick4(a, b, c, d, K: tl.constexpr):
        """The K-th of four values (K a compile-time constant): a static "array" of up to four tensors."""
        if K == 0:
            r = a
        elif K == 1:
            r = b
        elif K == 2:
            r = c
        else:
            r = d
        return r

    @triton.jit
    def _acc(n, t, NORM_L2: tl.constexpr):
        """Pixel-norm accumulation: Σ x² (L2) or max |x| (L∞)."""
        if NORM_L2:
            r = n + t
        else:
            r = tl.maximum(n, t)
        return r

    @triton.jit
    def _pixel_factor(nz, thr, VARIANT: tl.constexpr, FAST_DIV: tl.constexpr):
        """Per-pixel factor from nz = n_p + z_p (NaN for a non-finite pixel): "clip" min(1, τ'/n) (1 for a zero
        pixel, no 0/0), "soft_pixel" τ'/(n + τ'); NaN propagates from nz; 1 for the other variants."""
        if VARIANT == 0:
            d = nz
        else:
            d = nz + thr
        if FAST_DIV:
            q = tl.math.fdiv(thr, d)
        else:
            q = thr / d
        if VARIANT == 0:
            f = tl.where(nz <= thr, 1.0, q)
        elif VARIANT == 5:
            f = q
        else:
            f = tl.full(nz.shape, 1.0, tl.float32)
        return f

    @triton.jit
    def _unpack(w, LANE: tl.constexpr, ELEM: tl.constexpr):
        """Element LANE (little-endian) of the int32/int64 word w as fp32; ELEM 0 = fp32, 1 = fp16, 2 = bf16."""
        if ELEM == 0:
            if w.dtype == tl.int32:
                v = w.to(tl.float32, bitcast=True)
            else:
                v = (w >> (32 * LANE)).to(tl.int32).to(tl.float32, bitcast=True)
        else:
            bits = (w >> (16 * LANE)).to(tl.int32) & 0xFFFF
            if ELEM == 2:
                v = (bits << 16).to(tl.float32, bitcast=True)
            else:
                v = bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        return v

    @triton.jit
    def _pack(y, WT: tl.constexpr, LANE: tl.constexpr, ELEM: tl.constexpr):
        """fp32 y rounded to the element type, as bits at lane LANE of a word of type WT (other bits 0)."""
        if ELEM == 0:
            bits = y.to(tl.uint32, bitcast=True)
            if WT == tl.int32:
                r = bits.to(tl.int32, bitcast=True)
            else:
                r = bits.to(tl.int64) << (32 * LANE)  # uint32 → int64 zero-extends
        else:
            if ELEM == 2:
                h = y.to(tl.bfloat16).to(tl.uint16, bitcast=True)
            else:
                h = y.to(tl.float16).to(tl.uint16, bitcast=True)
            r = h.to(WT) << (16 * LANE)  # uint16 → wider zero-extends
        return r

    @triton.jit
    def _pixel_clip_words_kernel(
        xw_ptr,
        yw_ptr,
        scale_ptr,
        gmax_ptr,
        part_ptr,
        tau,
        ngroups,
        C: tl.constexpr,
        EPW: tl.constexpr,
        G: tl.constexpr,
        W: tl.constexpr,
        ELEM: tl.constexpr,
        VARIANT: tl.constexpr,
        NORM_L2: tl.constexpr,
        HAS_SCALE_PTR: tl.constexpr,
        STATS: tl.constexpr,
        USE_I64: tl.constexpr,
        ROUND_BF16: tl.constexpr,
        BLOCK: tl.constexpr,
        STAGED: tl.constexpr = False,
    ):
        """Same maths as _pixel_clip_kernel on a packed channel-last tensor read as 32/64-bit words: a group of
        G pixels (G·C elements) fills exactly W ≤ 4 words of EPW elements each, so every element is loaded and
        stored once, with W word-sized loads per G pixels (bf16 RGB in int64 words: 3 loads per 4 pixels instead
        of the packed kernel's 4 loads per element). Each program handles BLOCK groups; the channel loop is
        unrolled at compile time, so pixel norms and factors stay in registers.

        STAGED (W > 1): the words move through a [BLOCK, 2 or 4] tile whose lanes run along a group's words, so
        each warp load/store is one contiguous run (coalesced like a copy); the split into per-group words (and
        the join back) is a register-layout change the compiler does through shared memory. Unstaged, lanes are W
        words apart and every access covers only 1/W of the bytes it touches (H100, bf16 RGB: 52 % of copy
        bandwidth unstaged, 95 % staged). With W = 1 a lane's word is contiguous with its neighbours' already."""
        pid = tl.program_id(0)
        if USE_I64:
            q = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        else:
            q = pid * BLOCK + tl.arange(0, BLOCK)
        m = q < ngroups
        woff = q * W
        TILE: tl.constexpr = STAGED and W > 1  # one word per group is contiguous already
        if TILE:
            WP: tl.constexpr = 2 if W == 2 else 4
            rw = tl.arange(0, WP)
            mt = m[:, None] & (rw < W)[None, :]
            toff = woff[:, None] + rw[None, :]
            tile = tl.load(xw_ptr + toff, mask=mt, other=0)
            if WP == 2:
                w0, w1 = tl.split(tile)
                w2 = w0
                w3 = w0
            else:
                a, b = tl.split(tl.reshape(tile, [BLOCK, 2, 2]))  # a: words 0, 2; b: words 1, 3
                w0, w2 = tl.split(a)
                w1, w3 = tl.split(b)
        else:
            w0 = tl.load(xw_ptr + woff, mask=m, other=0)
            w1 = w0
            w2 = w0
            w3 = w0
            if W > 1:
                w1 = tl.load(xw_ptr + woff + 1, mask=m, other=0)
            if W > 2:
                w2 = tl.load(xw_ptr + woff + 2, mask=m, other=0)
            if W > 3:
                w3 = tl.load(xw_ptr + woff + 3, mask=m, other=0)
        thr = tau
        if HAS_SCALE_PTR:
            thr = tl.load(scale_ptr).to(tl.float32) * tau
        # Pixel norms n_p of the G pixels (p = element // C), and z_p = Σ_c 0·x_pc: 0 when the pixel is finite,
        # NaN when it holds a NaN or ±inf (one FMA per element instead of a compare-and-count).
        zf = tl.zeros([BLOCK], dtype=tl.float32)
        n0 = zf
        n1 = zf
        n2 = zf
        n3 = zf
        z0 = zf
        z1 = zf
        z2 = zf
        z3 = zf
        NEED_PIXEL: tl.constexpr = VARIANT == 0 or VARIANT == 5 or STATS
        if NEED_PIXEL:
            for k in tl.static_range(G * C):
                v = _unpack(_pick4(w0, w1, w2, w3, k // EPW), k % EPW, ELEM)
                if NORM_L2:
                    t = v * v
                else:
                    t = tl.abs(v)
                if k // C == 0:
                    n0 = _acc(n0, t, NORM_L2)
                    z0 += v * 0.0
                elif k // C == 1:
                    n1 = _acc(n1, t, NORM_L2)
                    z1 += v * 0.0
                elif k // C == 2:
                    n2 = _acc(n2, t, NORM_L2)
                    z2 += v * 0.0
                else:
                    n3 = _acc(n3, t, NORM_L2)
                    z3 += v * 0.0
            if NORM_L2:
                n0 = tl.sqrt(n0)
                n1 = tl.sqrt(n1)
                n2 = tl.sqrt(n2)
                n3 = tl.sqrt(n3)
        # "clip"/"soft_pixel": one factor per pixel (NaN for a pixel with a non-finite element), so each element
        # costs one multiply: y = x·f_p. 16-bit outputs use the fast (2-ulp) division: far below their rounding.
        f0 = _pixel_factor(n0 + z0, thr, VARIANT, ELEM != 0)
        f1 = _pixel_factor(n1 + z1, thr, VARIANT, ELEM != 0)
        f2 = _pixel_factor(n2 + z2, thr, VARIANT, ELEM != 0)
        f3 = _pixel_factor(n3 + z3, thr, VARIANT, ELEM != 0)
        WT: tl.constexpr = xw_ptr.dtype.element_ty
        o0 = tl.zeros([BLOCK], dtype=WT)
        o1 = o0
        o2 = o0
        o3 = o0
        for r in tl.static_range(W):
            out = tl.zeros([BLOCK], dtype=WT)
            for lane in tl.static_range(EPW):
                x = _unpack(_pick4(w0, w1, w2, w3, r), lane, ELEM)
                if VARIANT == 0 or VARIANT == 5:
                    y = x * _pick4(f0, f1, f2, f3, (r * EPW + lane) // C)
                else:
                    a = tl.abs(x)
                    y = _pgc_apply(x, a, a < float("inf"), x, x == x, thr, gmax_ptr, VARIANT)
                if ROUND_BF16:
                    y = _round_to_bf16(y)
                out = out | _pack(y, WT, lane, ELEM)
            if TILE:
                if r == 0:
                    o0 = out
                elif r == 1:
                    o1 = out
                elif r == 2:
                    o2 = out
                else:
                    o3 = out
            else:
                tl.store(yw_ptr + woff + r, out, mask=m)
        if TILE:
            if WP == 2:
                ot = tl.join(o0, o1)
            else:
                ot = tl.reshape(tl.join(tl.join(o0, o2), tl.join(o1, o3)), [BLOCK, 4])
            tl.store(yw_ptr + toff, ot, mask=mt)

        if STATS:
            cnt = zf
            tot = zf
            mx = zf
            for pg in tl.static_range(G):
                ns = tl.where(_pick4(z0, z1, z2, z3, pg) == 0, _pick4(n0, n1, n2, n3, pg), float("inf"))
                cnt += tl.where(m & (ns > thr), 1.0, 0.0)
                tot += tl.where(m, ns, 0.0)
                mx = tl.maximum(mx, tl.where(m, ns, 0.0))
            tl.store(part_ptr + pid * 3 + 0, tl.sum(cnt, axis=0))
            tl.store(part_ptr + pid * 3 + 1, tl.sum(tot, axis=0))
            tl.store(part_ptr + pid * 3 + 2, tl.max(mx, axis=0))

    @triton.jit
    def _absmax_kernel(
        x_ptr,
        gmax_ptr,
        inner,
        n_inner_blocks,
        C,
        sxo,
        sxc,
        sxi,
        USE_I64: tl.constexpr,
        C_PAD: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        """gmax = max(gmax, max |x| over the tile), with NaN/±inf counted as +inf ("global" variant, pass 1)."""
        pid = tl.program_id(0)
        o = pid // n_inner_blocks
        ib = pid - o * n_inner_blocks
        i = ib * BLOCK + tl.arange(0, BLOCK)
        c = tl.arange(0, C_PAD)
        if USE_I64:
            o = o.to(tl.int64)
            i = i.to(tl.int64)
        mask = (c[:, None] < C) & (i < inner)[None, :]
        x = tl.load(x_ptr + o * sxo + c[:, None] * sxc + i[None, :] * sxi, mask=mask, other=0.0).to(tl.float32)
        a = tl.abs(x)
        a = tl.where(a < float("inf"), a, float("inf"))
        tl.atomic_max(gmax_ptr, tl.max(tl.max(a, axis=1), axis=0))

    @triton.jit
    def _stats_finalize_kernel(part_ptr, out_ptr, nprog, inv_npix, RB: tl.constexpr):
        """stats = (Σ count / P, max n, Σ n / P) from the per-program partials [nprog, 3]; one program."""
        r = tl.arange(0, RB)
        acc_c = tl.zeros([RB], dtype=tl.float32)
        acc_s = tl.zeros([RB], dtype=tl.float32)
        acc_m = tl.zeros([RB], dtype=tl.float32)
        for k in range(0, nprog, RB):
            idx = k + r
            m = idx < nprog
            acc_c += tl.load(part_ptr + idx * 3 + 0, mask=m, other=0.0)
            acc_s += tl.load(part_ptr + idx * 3 + 1, mask=m, other=0.0)
            acc_m = tl.maximum(acc_m, tl.load(part_ptr + idx * 3 + 2, mask=m, other=0.0))
        tl.store(out_ptr + 0, tl.sum(acc_c, axis=0) * inv_npix)
        tl.store(out_ptr + 1, tl.max(acc_m, axis=0))
        tl.store(out_ptr + 2, tl.sum(acc_s, axis=0) * inv_npix)


View3 = tuple[int, int, int, int, int, int]  # outer, C, inner, stride_outer, stride_c, stride_inner
# (kernel name, grid, region of x/y it gets, int args, constexpr/launch kwargs)
Launch = tuple[str, int, Any, tuple[int, ...], dict[str, Any]]
Plan = tuple[bool, bool, tuple[Launch, ...], int]  # (copy x to contiguous?, y like x?, launches, pixels)


def _view3(t: torch.Tensor, d: int) -> View3 | None:
    """[outer, C, inner] strides of ``t`` with the pixel axis ("inner") the one the tile runs along."""
    v = three_axis(t, d)
    if v is None:
        return None
    outer, c, inner, so, sc, si = v
    if inner == 1 and outer > 1:  # NHWC-like: the pixels are the outer axis; run the tile along it.
        outer, inner, so, si = 1, outer, 0, so
    return outer, c, inner, so, sc, si


def _word_plan(c: int, esize: int, word_bits: int) -> tuple[int, int, int] | None:
    """(elements per word, pixels per group, words per group) for reading a packed C-channel tensor of
    ``esize``-byte elements as ``word_bits``-bit words, or None when a group would need more than 4 words."""
    epw = word_bits // (8 * esize)
    if epw < 1:
        return None
    g = epw // math.gcd(c, epw)
    w = g * c // epw
    return (epw, g, w) if w <= 4 else None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


# Launch plans by (shape, strides, dtype, device, data_ptr % 16, options): everything pixel_clip derives from a
# tensor's metadata, so a training loop's repeated calls skip the layout analysis (host time per call). Cleared
# when it grows past _PLANS_MAX, and by benches that change CONFIG / PACKED_PIXEL_KERNEL (call _PLANS.clear()).
_PLANS: dict[tuple, Plan] = {}
_PLANS_MAX = 256


def _plan_views(x: torch.Tensor, d: int) -> tuple[torch.Tensor, bool, bool, tuple[int, ...], tuple[int, ...]]:
    """(x or its contiguous copy, copied?, output laid out like x?, x's and y's [outer, C, inner] views with
    strides). y is only metadata here: the op allocates it like x when x is dense, else contiguous."""
    vx = _view3(x, d)
    x_contig = vx is None  # strides that no single [outer, C, inner] view describes: copy once
    if x_contig:
        x = x.contiguous()
        vx = _view3(x, d)
    assert vx is not None  # a contiguous tensor always has the 3-axis view
    y = torch.empty_like(x, device="meta")  # same strides as x when x is dense, else contiguous
    vy = _view3(y, d)
    y_like = not (vy is None or vy[0] != vx[0] or vy[2] != vx[2])
    if not y_like:
        x_contig = True
        x = x.contiguous()
        y = torch.empty(x.shape, dtype=x.dtype, device="meta")
        vx, vy = _view3(x, d), _view3(y, d)
    assert vx is not None and vy is not None
    return x, x_contig, y_like, vx, vy


def _make_plan(
    x: torch.Tensor,
    d: int,
    variant: str,
    norm: str,
    return_stats: bool,
    has_scale_ptr: bool,
    cfg: dict[tuple[str, int], tuple[int, ...]],
    packed_kernel: str | None,
) -> Plan:
    """The launches for ``x`` (metadata only): (copy x to contiguous?, y like x?, launches, npix), each launch a
    (kernel name, grid, region, int args, constexpr kwargs) tuple; region says which view of x/y it gets."""
    x, x_contig, y_like, vx, vy = _plan_views(x, d)
    outer, C, inner, sxo, sxc, sxi = vx
    _, _, _, syo, syc, syi = vy
    npix = outer * inner
    esize = 4 if x.element_size() >= 4 else 2
    packed = (
        C > 1
        and sxc == 1
        and sxi == C
        and (outer == 1 or sxo == inner * C)
        and syc == 1
        and syi == C
        and (outer == 1 or syo == inner * C)
    )
    need_pixel = variant in ("clip", "soft_pixel") or return_stats
    kernel = "tile"
    if packed:
        kernel = (packed_kernel or PACKED_PIXEL_KERNEL[esize]) if need_pixel else "packed"
    plan = None
    if kernel in ("words", "staged"):
        wbits = cfg[(kernel, esize)][2]
        plan = _word_plan(C, esize, wbits)
        # Word loads need word-aligned storage (y is a fresh allocation, aligned; x may be an offset view).
        if plan is None or x.data_ptr() % (wbits // 8) or npix < plan[1]:
            kernel = "packed"
    layout = "packed" if kernel == "packed" else ("strided" if sxc == 1 and C > 1 else "pixel_major")
    c_pad = _next_pow2(C)
    elems, warps = cfg[(layout, esize)][:2]
    block = max(16, elems // c_pad)
    n_inner_blocks = _cdiv(inner, block) if inner else 0
    nprog_tile = outer * n_inner_blocks
    span = max(abs(sxo) * (outer - 1) + abs(sxc) * (C - 1) + abs(sxi) * (inner + block), 1)
    span = max(span, abs(syo) * (outer - 1) + abs(syc) * (C - 1) + abs(syi) * (inner + block), elems + npix * C)
    use_i64 = span >= 2**31 - 1
    common = dict(
        VARIANT=_VARIANT_ID[variant],
        NORM_L2=norm == "l2",
        HAS_SCALE_PTR=has_scale_ptr,
        STATS=return_stats,
        ROUND_BF16=interpret_mode() and x.dtype == torch.bfloat16,
    )
    launches: list[Launch] = []
    if variant == "global" and nprog_tile:
        launches.append(
            (
                "absmax",
                nprog_tile,
                "xy",
                (inner, n_inner_blocks, C, sxo, sxc, sxi),
                dict(USE_I64=use_i64, C_PAD=c_pad, BLOCK=block, num_warps=warps),
            )
        )
    if kernel in ("words", "staged"):
        assert plan is not None  # kernel falls back to "packed" where there is no word plan
        epw, g, w = plan
        gblock, wwarps, wbits = cfg[(kernel, esize)]
        ngroups = npix // g
        ne = ngroups * g * C  # elements the word kernel covers; the < g tail pixels go to the packed kernel
        wdt = torch.int32 if wbits == 32 else torch.int64
        nprog_w = _cdiv(ngroups, gblock)
        kw = dict(
            C=C,
            EPW=epw,
            G=g,
            W=w,
            ELEM=0 if esize == 4 else (2 if x.dtype == torch.bfloat16 else 1),
            USE_I64=(ngroups + gblock) * w >= 2**31 - 1,
            BLOCK=gblock,
            num_warps=wwarps,
            **common,
        )
        if kernel == "staged":
            kw["STAGED"] = True
        launches.append((kernel, nprog_w, ("words", ne, wdt), (ngroups,), kw))
        if npix * C > ne:
            launches.append(
                (
                    "packed",
                    _cdiv(npix * C - ne, elems),
                    ("tail", ne, npix * C),
                    (npix * C - ne,),
                    dict(C=C, USE_I64=False, BLOCK=elems, num_warps=warps, **common),
                )
            )
    elif kernel == "packed":
        if npix * C:
            launches.append(
                (
                    "packed",
                    _cdiv(npix * C, elems),
                    ("flat", npix * C),
                    (npix * C,),
                    dict(C=C, USE_I64=use_i64, BLOCK=elems, num_warps=warps, **common),
                )
            )
    elif nprog_tile:
        launches.append(
            (
                "tile",
                nprog_tile,
                "xy",
                (inner, n_inner_blocks, C, sxo, sxc, sxi, syo, syc, syi),
                dict(USE_I64=use_i64, C_PAD=c_pad, BLOCK=block, num_warps=warps, **common),
            )
        )
    return x_contig, y_like, tuple(launches), npix


def _pixel_clip_triton(
    grad: torch.Tensor,
    tau: float,
    variant: str,
    norm: str,
    d: int,
    scale: float | torch.Tensor | None,
    return_stats: bool,
    config: dict[tuple[str, int], tuple[int, ...]] | None = None,
    packed_kernel: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, PixelClipStats]:
    x = grad.detach()
    has_scale_ptr = isinstance(scale, torch.Tensor)
    key = None
    if config is None and packed_kernel is None:
        key = (x.shape, x.stride(), x.dtype, x.device, x.data_ptr() % 16, d, variant, norm, return_stats, has_scale_ptr)
        p = _PLANS.get(key)
    else:
        p = None
    if p is None:
        p = _make_plan(x, d, variant, norm, return_stats, has_scale_ptr, config or CONFIG, packed_kernel)
        if key is not None:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()
            _PLANS[key] = p
    x_contig, y_like, launches, npix = p
    if x_contig:
        x = x.contiguous()
    y = torch.empty_like(x) if y_like else torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if isinstance(scale, torch.Tensor):
        scale_arg, tau_arg = scale.detach().reshape(1), float(tau)
    else:
        scale_arg, tau_arg = x, float(tau) * (1.0 if scale is None else float(scale))
    # Unused pointer arguments (no stats / not "global") get y: never dereferenced under those constexprs.
    gmax = torch.zeros(1, dtype=torch.float32, device=x.device) if variant == "global" else y
    nprog = sum(lc[1] for lc in launches if lc[0] != "absmax")
    part = torch.empty((max(nprog, 1), 3), dtype=torch.float32, device=x.device) if return_stats else y
    row = 0  # first row of part for the next launch
    for name, grid, region, ints, kw in launches:
        if name == "absmax":
            _absmax_kernel[(grid,)](x, gmax, *ints, **kw)
            continue
        prt = part[row:] if return_stats else y
        row += grid
        if name == "tile":
            _pixel_clip_kernel[(grid,)](x, y, scale_arg, gmax, prt, tau_arg, *ints, **kw)
            continue
        n_all = npix * kw["C"]
        x_flat = x.as_strided((n_all,), (1,))  # the packed storage region, element e = pixel·C + channel
        y_flat = y.as_strided((n_all,), (1,))
        if name in ("words", "staged"):
            _, ne, wdt = region
            _pixel_clip_words_kernel[(grid,)](
                x_flat[:ne].view(wdt), y_flat[:ne].view(wdt), scale_arg, gmax, prt, tau_arg, *ints, **kw
            )
        else:
            lo = region[1] if region[0] == "tail" else 0
            _pixel_clip_packed_kernel[(grid,)](x_flat[lo:], y_flat[lo:], scale_arg, gmax, prt, tau_arg, *ints, **kw)
    if not return_stats:
        return y
    if nprog:
        stats = torch.empty(3, dtype=torch.float32, device=x.device)
        _stats_finalize_kernel[(1,)](part, stats, nprog, 1.0 / npix, RB=1024, num_warps=4)
    else:
        stats = torch.zeros(3, dtype=torch.float32, device=x.device)
    return y, PixelClipStats(stats[0], stats[1], stats[2])


@overload
def pixel_clip(
    grad: torch.Tensor,
    tau: float,
    *,
    variant: str = ...,
    norm: str = ...,
    channel_dim: int = ...,
    scale: float | torch.Tensor | None = ...,
    backend: str = ...,
    return_stats: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def pixel_clip(
    grad: torch.Tensor,
    tau: float,
    *,
    variant: str = ...,
    norm: str = ...,
    channel_dim: int = ...,
    scale: float | torch.Tensor | None = ...,
    backend: str = ...,
    return_stats: Literal[True],
) -> tuple[torch.Tensor, PixelClipStats]: ...


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
) -> torch.Tensor | tuple[torch.Tensor, PixelClipStats]:
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
    return pixel_clip_reference(
        grad, tau, variant=variant, norm=norm, channel_dim=d, scale=scale, return_stats=return_stats
    )


def _resolve_scale(op: str, scaler: Any, scale: Any) -> Any:
    """The scale to clip with: from a GradScaler (its device tensor, no sync), or ``scale`` as given."""
    if scaler is None:
        return scale
    if scale is not None:
        raise ValueError(f"{op}(): pass either scaler or scale, got both")
    if isinstance(scaler, (float, int, torch.Tensor)) and not isinstance(scaler, bool):
        return scaler
    if not (hasattr(scaler, "is_enabled") and hasattr(scaler, "_get_scale_async")):
        raise TypeError(
            f"{op}(): scaler must be a torch.amp.GradScaler, a float or a tensor, got {type(scaler).__name__}"
        )
    if not scaler.is_enabled():
        return None
    # The scaler's scale tensor exists once scaler.scale(loss) ran, i.e. before any backward it drives.
    return scaler._get_scale_async()


class _PGCFunction(torch.autograd.Function):
    """Identity forward; the backward clips the incoming gradient with :func:`pixel_clip`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, tau: float, scaler: Any, opts: dict[str, Any]) -> torch.Tensor:
        ctx.tau, ctx.scaler, ctx.opts = tau, scaler, opts
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        opts = dict(ctx.opts)
        opts["scale"] = _resolve_scale("pgc", ctx.scaler, opts.get("scale"))
        return pixel_clip(g, ctx.tau, **opts), None, None, None


_OPTS = ("backend", "channel_dim", "norm", "scale", "variant")


def _check_opt_names(op: str, opts: dict[str, Any]) -> None:
    bad = set(opts) - set(_OPTS)
    if "return_stats" in bad:
        raise ValueError(
            f"{op}(): return_stats is not available here, got return_stats; "
            "use attach_pgc(..., return_stats=True) and read hook.stats"
        )
    if bad:
        raise TypeError(f"{op}(): unexpected keyword argument(s) {sorted(bad)}; allowed: {sorted(_OPTS)}")


def _check_opts(op: str, x: torch.Tensor, tau: float, opts: dict[str, Any]) -> dict[str, Any]:
    _check_opt_names(op, opts)
    # Validate now, so a bad option fails at the call and not deep inside backward.
    scale = opts.get("scale")
    probe = {k: v for k, v in opts.items() if k != "scale"}
    check_pixel_clip_args(
        op,
        x,
        tau,
        probe.get("variant", "clip"),
        probe.get("norm", "linf"),
        probe.get("channel_dim", 1),
        scale if not isinstance(scale, torch.Tensor) else None,
        probe.get("backend", "auto"),
        False,
    )
    use_triton(op, probe.get("backend", "auto"), x)  # backend="triton" without triton / on plain CPU: fail here
    return opts


def pgc(x: torch.Tensor, tau: float, *, scaler: Any = None, **opts: Any) -> torch.Tensor:
    """Autograd identity whose backward applies :func:`pixel_clip` to the incoming gradient (PGC as an op).

    ``y = pgc(rendered_rgb, 0.1)``: forward returns ``x`` (a view, same dtype/device/shape); in backward the
    gradient reaching ``x`` is ``pixel_clip(dL/dy, tau, **opts)``. ``opts`` are pixel_clip's keywords
    (variant, norm, channel_dim, scale, backend). ``scaler``: a ``torch.amp.GradScaler`` whose current
    scale (device tensor, no sync) is used as ``scale`` when it is enabled.
    """
    opts = _check_opts("pgc", x, tau, opts)
    return _PGCFunction.apply(x, tau, scaler, opts)


class PGCHook:
    """Pixel-wise gradient clipping as a tensor hook (the original's ``img.register_hook``), reusable across steps.

    ``hook = PGCHook(tau, scaler, return_stats=True)`` once, then ``hook.attach(image)`` on each step's rendered
    image (or use :func:`attach_pgc`, which builds the hook and attaches it). In backward the gradient reaching an
    attached tensor becomes ``pixel_clip(g, tau, scale=<scaler's scale>, **opts)``.

    Attributes, read at backward time (change them between steps freely):

    - ``tau``: the threshold τ > 0, in unscaled gradient units; ``None`` turns clipping off (``attach`` still
      registers, so setting ``tau`` later takes effect on the tensors already attached).
    - ``enabled``: False passes gradients through unchanged and records no statistics.
    - ``scaler``: a ``torch.amp.GradScaler`` (its scale read as a device tensor, no sync; ignored when disabled),
      a float, a tensor, or None.
    - ``stats``: the :class:`PixelClipStats` of the latest backward (``return_stats=True``; else None), as
      :func:`pixel_clip` returns them (norms multiplied by the scaler's scale).

    With ``return_stats`` the hook also keeps running sums on the device: :meth:`pop_stats` returns their summary
    since the previous pop, in unscaled units; ``on_stats``, if given, is called with each backward's stats.
    Nothing here reads a device value on the host.
    """

    def __init__(
        self,
        tau: float | None,
        scaler: Any = None,
        *,
        return_stats: bool = False,
        on_stats: Callable[[PixelClipStats], None] | None = None,
        enabled: bool = True,
        **opts: Any,
    ) -> None:
        op = "PGCHook"
        if tau is not None:
            check_positive_float(op, "tau", tau)
        if not isinstance(return_stats, bool):
            raise TypeError(f"{op}(): return_stats must be a bool, got {type(return_stats).__name__}")
        if not isinstance(enabled, bool):
            raise TypeError(f"{op}(): enabled must be a bool, got {type(enabled).__name__}")
        if on_stats is not None and not callable(on_stats):
            raise TypeError(f"{op}(): on_stats must be callable or None, got {type(on_stats).__name__}")
        if on_stats is not None and not return_stats:
            raise ValueError(f"{op}(): on_stats needs return_stats=True, got return_stats=False")
        _check_opt_names(op, opts)
        if scaler is not None and opts.get("scale") is not None:
            raise ValueError(f"{op}(): pass either scaler or scale, got both")
        self.tau = tau
        self.scaler = scaler
        self.enabled = enabled
        self.return_stats = return_stats
        self.on_stats = on_stats
        self.opts = opts
        self.stats: PixelClipStats | None = None
        self._handles: list[RemovableHandle] = []
        self._acc: list[torch.Tensor] | None = None  # running [Σ fraction, max norm, Σ mean norm] since pop_stats
        self._count = 0

    def attach(self, tensor: torch.Tensor) -> PGCHook:
        """Clip ``tensor``'s gradient from now on (in addition to the tensors attached before); returns self.

        ``tensor`` must require grad. Its options are validated here, so a bad one fails at the call."""
        op = "PGCHook.attach"
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{op}(): tensor must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.requires_grad:
            raise ValueError(
                f"{op}(): tensor must require grad (a hook on it would never run), got requires_grad=False"
            )
        _check_opts(op, tensor, self.tau if self.tau is not None else 1.0, self.opts)
        # Registrations on tensors that are gone (their autograd graph freed) are dropped, so a hook attached to
        # every step's image holds only the live ones.
        self._handles = [h for h in self._handles if h.hooks_dict_ref() is not None]
        self._handles.append(tensor.register_hook(self._hook))
        return self

    def remove(self) -> None:
        """Detach from every tensor attached so far (statistics are kept)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def pop_stats(self) -> PixelClipStats | None:
        """Summary of the backward passes since the previous call (None if there was none), then reset.

        ``fraction_clipped`` and ``mean_norm`` are means over the passes (each pass weighted equally), ``max_norm``
        the maximum; the norms are divided by each pass's scale (unscaled gradient units), unlike :attr:`stats`.
        0-d float32 device tensors; call ``.item()`` when logging."""
        if self._acc is None:
            return None
        frac, mx, mean = self._acc
        n = self._count
        self._acc, self._count = None, 0
        return PixelClipStats(frac / n, mx, mean / n)

    def _record(self, st: PixelClipStats, scale: float | torch.Tensor | None) -> None:
        self.stats = st
        mx, mean = st.max_norm, st.mean_norm
        if isinstance(scale, torch.Tensor):
            scale = scale.detach().reshape(())  # GradScaler's scale has shape [1]; the stats stay 0-d
        if scale is not None:
            mx, mean = mx / scale, mean / scale
        if self._acc is None:
            self._acc = [st.fraction_clipped.clone(), mx.clone(), mean.clone()]
        else:
            self._acc = [self._acc[0] + st.fraction_clipped, torch.maximum(self._acc[1], mx), self._acc[2] + mean]
        self._count += 1
        if self.on_stats is not None:
            self.on_stats(st)

    def _hook(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.enabled or self.tau is None:
            return None  # gradient unchanged
        o = dict(self.opts)
        o["scale"] = _resolve_scale("PGCHook", self.scaler, o.get("scale"))
        if not self.return_stats:
            return pixel_clip(g, self.tau, **o)
        out, st = pixel_clip(g, self.tau, return_stats=True, **o)
        self._record(st, o["scale"])
        return out


def attach_pgc(
    tensor: torch.Tensor,
    tau: float | None,
    scaler: Any = None,
    *,
    return_stats: bool = False,
    on_stats: Callable[[PixelClipStats], None] | None = None,
    enabled: bool = True,
    **opts: Any,
) -> PGCHook:
    """Register a backward hook on ``tensor`` that clips its gradient with :func:`pixel_clip` (the original's hook).

    ``tensor`` must require grad (e.g. the rendered image). ``scaler``: a ``torch.amp.GradScaler`` (its scale
    is read as a device tensor at backward time, no sync; ignored when disabled), a float, a tensor, or None.
    ``opts``: pixel_clip's keywords (variant, norm, channel_dim, scale, backend). Same as
    ``PGCHook(tau, scaler, return_stats=…, on_stats=…, enabled=…, **opts).attach(tensor)``: the returned
    :class:`PGCHook` can be re-attached to later tensors, switched off (``enabled``), re-tuned (``tau``) and
    removed (``remove()``); ``stats`` / ``pop_stats()`` give its statistics.
    """
    op = "attach_pgc"
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{op}(): tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.requires_grad:
        raise ValueError(f"{op}(): tensor must require grad (a hook on it would never run), got requires_grad=False")
    if tau is not None:
        check_positive_float(op, "tau", tau)
    if not isinstance(return_stats, bool):
        raise TypeError(f"{op}(): return_stats must be a bool, got {type(return_stats).__name__}")
    _check_opts(op, tensor, tau if tau is not None else 1.0, opts)
    if scaler is not None and opts.get("scale") is not None:
        raise ValueError(f"{op}(): pass either scaler or scale, got both")
    hook = PGCHook(tau, scaler, return_stats=return_stats, on_stats=on_stats, enabled=enabled, **opts)
    return hook.attach(tensor)
