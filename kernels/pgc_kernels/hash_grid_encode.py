"""Multi-resolution hash-grid encoding (Instant-NGP, Müller et al. 2022, https://arxiv.org/abs/2201.05989) in Triton.

PGC-3D's texture, SDF and material fields (the original's Rasterizer_mesh) query torch-ngp's ``gridencoder``
(a compiled CUDA extension) at the rasterised surface point. This is the same encoding in Triton: no compile
step, one code path for every GPU Triton supports, and a pure-torch twin
(:func:`pgc_kernels.reference.hash_grid_encode_reference`) for the CPU.

The encoding, per level ``l`` of ``L`` (torch-ngp conventions, ``align_corners=False``)::

    b        = log2(finest_resolution / base_resolution) / (L - 1)      # 8/15 for 16 -> 4096, L=16
    scale_l  = fp32(base_resolution * 2**(l*b) - 1)                        # 15, 21.16, ..., 4095
    res_l    = ceil(scale_l) + 1                                           # grid vertices per axis: res_l + 1
    p        = clamp(x, 0, 1) * scale_l + 0.5                              # fp32, no fused multiply-add
    g, t     = floor(p), p - floor(p)                                      # cell corner, fraction in [0, 1)
    out[n, l*F:(l+1)*F] = sum_{c in {0,1}^3} w_c(t) * table[l, idx_l(g + c), :]
    w_c(t)   = prod_d (c_d ? s(t_d) : 1 - s(t_d)),   s(t) = t ("linear") or t^2 (3 - 2t) ("smoothstep")
    idx_l(v) = v_x + v_y (res_l+1) + v_z (res_l+1)^2                        if (res_l+1)^3 <= T   (dense)
             = (v_x * 1  XOR  v_y * 2654435761  XOR  v_z * 805459861) mod 2^32 mod T   otherwise (hashed)

Backward: d table[l, i, f] = sum over (n, c) with idx = i of w_c * dout[n, l*F + f] (a scatter-add, by
float32 atomics or, in deterministic mode, by int64 fixed-point atomics whose sum does not depend on order);
d x_d = sum_l scale_l * sum_c (d w_c / d t_d) * <dout[n, l], table[l, idx_c]>, zero where x_d was clamped.

Segmented scatter (coherent points). Rasterised surface points arrive in pixel order, so at the coarse levels runs
of consecutive points (~1280/res_l pixels for a 1024² view) fall in one cell and send their atomics to the same 8
rows, where they serialise. Per (block of points, level) the backward counts the segments (maximal runs of equal
cell; start flag = cell(n) != cell(n-1)); with few segments it forms per segment and corner
    S_c = sum_{n in segment} w_c(n) · dout[n, l*F:(l+1)*F]
by an inclusive segmented scan (associative operator on (start flag, value) pairs) and lets only the last point of
each segment issue the 8 atomics; otherwise one atomic per point and corner as before. The sum is the same up to
float32 summation order (bitwise the same in deterministic mode, whose int64 quanta the scan adds exactly).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from ._backend import HAS_TRITON, tl, triton, use_triton
from .reference import _HASH_GRID_INTERPOLATIONS, _hash_grid_check, _hash_grid_levels, hash_grid_encode_reference

__all__ = ["HashGridEncodeFunction", "hash_grid_encode"]

_BACKENDS = ("auto", "triton", "torch")
_INTERP_CODE = {"linear": 0, "smoothstep": 1}
# Deterministic backward: contributions are rounded to multiples of bound / 2**_FIXED_POINT_BITS, bound >= the
# largest |sum| any table entry can receive, so the int64 accumulator (|value| < 2**63) cannot overflow.
_FIXED_POINT_BITS = 61


if HAS_TRITON:

    @triton.jit
    def _interp_weights(t, INTERP: tl.constexpr):
        # s(t) and ds/dt: linear (s = t) or smoothstep (s = t^2 (3 - 2t), s' = 6 t (1 - t)).
        if INTERP == 0:
            s = t
            ds = tl.full(t.shape, 1.0, tl.float32)
        else:
            s = t * t * (3.0 - 2.0 * t)
            ds = 6.0 * t * (1.0 - t)
        return s, ds

    @triton.jit
    def _corner_index(gx, gy, gz, cx: tl.constexpr, cy: tl.constexpr, cz: tl.constexpr, stride, dense, T: tl.constexpr):
        # Index of grid vertex (gx+cx, gy+cy, gz+cz) inside one level's table of T rows (see the module docstring).
        vx = (gx + cx).to(tl.uint32)
        vy = (gy + cy).to(tl.uint32)
        vz = (gz + cz).to(tl.uint32)
        if dense:
            idx = vx + vy * stride + vz * (stride * stride)
        else:
            # uint32 products wrap mod 2^32, as in Instant-NGP / torch-ngp's fast_hash.
            idx = (vx ^ (vy * 2654435761) ^ (vz * 805459861)) % T
        return idx.to(tl.int32)

    @triton.jit
    def _corner(gx, gy, gz, sx, sy, sz, c: tl.constexpr, stride, dense, T: tl.constexpr):
        """Row index and trilinear weight of cell corner c (bits: x, y, z) for every point of the block."""
        cx: tl.constexpr = c & 1
        cy: tl.constexpr = (c >> 1) & 1
        cz: tl.constexpr = (c >> 2) & 1
        idx = _corner_index(gx, gy, gz, cx, cy, cz, stride, dense, T)
        wx = sx if cx else 1.0 - sx
        wy = sy if cy else 1.0 - sy
        wz = sz if cz else 1.0 - sz
        return idx, wx * wy * wz

    @triton.jit
    def _feature_mask(mask, f, F: tl.constexpr, F_P2: tl.constexpr):
        # [BLOCK, F_P2] mask. When F is a power of two the row mask alone is broadcast: its constancy along the
        # feature axis lets the compiler issue one vector load/store per row (8 B for 4 fp16) instead of F scalar ones.
        if F == F_P2:
            return mask[:, None] & tl.full((1, F_P2), 1, tl.int1)
        else:
            return mask[:, None] & (f < F)[None, :]

    @triton.jit
    def _level_setup(x_ptr, offs, mask, scale_ptr, res_ptr, lvl, INTERP: tl.constexpr):
        # Per level: clamped position -> integer cell corner g and interpolation fractions t (and their weights).
        scale = tl.load(scale_ptr + lvl)
        res = tl.load(res_ptr + lvl)
        xs = tl.load(x_ptr + offs * 3 + 0, mask=mask, other=0.0)
        ys = tl.load(x_ptr + offs * 3 + 1, mask=mask, other=0.0)
        zs = tl.load(x_ptr + offs * 3 + 2, mask=mask, other=0.0)
        # NaN propagates (to NaN features), as in the twin, so upstream NaNs stay visible.
        px = tl.clamp(xs, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL) * scale + 0.5
        py = tl.clamp(ys, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL) * scale + 0.5
        pz = tl.clamp(zs, 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL) * scale + 0.5
        fx = tl.floor(px)
        fy = tl.floor(py)
        fz = tl.floor(pz)
        # The clamp to [0, res-1] only matters for NaN input: it keeps every address inside the table.
        gx = tl.minimum(tl.maximum(fx.to(tl.int32), 0), res - 1)
        gy = tl.minimum(tl.maximum(fy.to(tl.int32), 0), res - 1)
        gz = tl.minimum(tl.maximum(fz.to(tl.int32), 0), res - 1)
        return xs, ys, zs, scale, res, gx, gy, gz, px - fx, py - fy, pz - fz

    @triton.jit
    def _cell_of(x_ptr, offs, mask, scale, res):
        # Grid cell g (same arithmetic as _level_setup) of the points at offs: used to compare a point's cell with its
        # neighbours' (the x rows were just loaded by _level_setup, so these loads hit L1).
        px = tl.clamp(tl.load(x_ptr + offs * 3 + 0, mask=mask, other=0.0), 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
        py = tl.clamp(tl.load(x_ptr + offs * 3 + 1, mask=mask, other=0.0), 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
        pz = tl.clamp(tl.load(x_ptr + offs * 3 + 2, mask=mask, other=0.0), 0.0, 1.0, propagate_nan=tl.PropagateNan.ALL)
        gx = tl.minimum(tl.maximum(tl.floor(px * scale + 0.5).to(tl.int32), 0), res - 1)
        gy = tl.minimum(tl.maximum(tl.floor(py * scale + 0.5).to(tl.int32), 0), res - 1)
        gz = tl.minimum(tl.maximum(tl.floor(pz * scale + 0.5).to(tl.int32), 0), res - 1)
        return gx, gy, gz

    @triton.jit
    def _segmented_add(flag_a, val_a, flag_b, val_b):
        # Segmented-sum operator on (flag, value) pairs, flag = "a segment starts here", a before b in scan order:
        #   (fa, va) ⊕ (fb, vb) = (fa | fb, fb ? vb : va + vb)
        # It is associative (the textbook segmented-scan construction), so the parallel scan is exact: after an
        # inclusive scan each element holds the sum from its segment's first element up to itself. (A "sum while the
        # keys are equal" operator is not associative when a key comes back after a different one; flags are.)
        return flag_a | flag_b, tl.where(flag_b != 0, val_b, val_a + val_b)

    @triton.jit
    def _hash_grid_fwd_level(
        x_ptr,
        table_ptr,
        scale_ptr,
        res_ptr,
        out_ptr,
        offs,
        mask,
        lvl,
        num_dense,
        T: tl.constexpr,
        L: tl.constexpr,
        F: tl.constexpr,
        F_P2: tl.constexpr,
        INTERP: tl.constexpr,
        IDX64: tl.constexpr,
    ):
        _, _, _, _, res, gx, gy, gz, tx, ty, tz = _level_setup(x_ptr, offs, mask, scale_ptr, res_ptr, lvl, INTERP)
        sx, _ = _interp_weights(tx, INTERP)
        sy, _ = _interp_weights(ty, INTERP)
        sz, _ = _interp_weights(tz, INTERP)
        dense = lvl < num_dense
        stride = (res + 1).to(tl.uint32)
        f = tl.arange(0, F_P2)
        fmask = _feature_mask(mask, f, F, F_P2)
        if IDX64:
            level_base = table_ptr + tl.full((), T * F, tl.int64) * lvl  # lvl may be a Python int (interpreter)
        else:
            level_base = table_ptr + lvl * (T * F)
        acc = tl.zeros((offs.shape[0], F_P2), dtype=tl.float32)
        for c in tl.static_range(8):
            idx, w = _corner(gx, gy, gz, sx, sy, sz, c, stride, dense, T)
            feat = tl.load(level_base + idx[:, None] * F + f[None, :], mask=fmask, other=0.0).to(tl.float32)
            acc += w[:, None] * feat
        if IDX64:
            row = offs.to(tl.int64) * (L * F)
        else:
            row = offs * (L * F)
        tl.store(out_ptr + row[:, None] + lvl * F + f[None, :], acc.to(out_ptr.dtype.element_ty), mask=fmask)

    @triton.jit
    def _hash_grid_encode_fwd_kernel(
        x_ptr,
        table_ptr,
        scale_ptr,
        res_ptr,
        out_ptr,
        N,
        num_dense,
        T: tl.constexpr,
        L: tl.constexpr,
        F: tl.constexpr,
        F_P2: tl.constexpr,
        INTERP: tl.constexpr,
        IDX64: tl.constexpr,
        BLOCK: tl.constexpr,
        LEVEL_LOOP: tl.constexpr,
    ):
        # Grid: LEVEL_LOOP -> (cdiv(N, BLOCK),), each program does all levels of BLOCK points;
        # otherwise (L, cdiv(N, BLOCK)): level on the fastest axis so programs writing one output row run together.
        if LEVEL_LOOP:
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            if IDX64:
                offs = offs.to(tl.int64)  # x (3 per point) and out (L·F per point) offsets may pass 2^31
            mask = offs < N
            for lvl in range(L):
                _hash_grid_fwd_level(
                    x_ptr,
                    table_ptr,
                    scale_ptr,
                    res_ptr,
                    out_ptr,
                    offs,
                    mask,
                    lvl,
                    num_dense,
                    T,
                    L,
                    F,
                    F_P2,
                    INTERP,
                    IDX64,
                )
        else:
            lvl = tl.program_id(0)
            offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
            if IDX64:
                offs = offs.to(tl.int64)
            mask = offs < N
            _hash_grid_fwd_level(
                x_ptr, table_ptr, scale_ptr, res_ptr, out_ptr, offs, mask, lvl, num_dense, T, L, F, F_P2, INTERP, IDX64
            )

    @triton.jit
    def _scatter_plain(
        gtab_ptr,
        lvl_off,
        gx,
        gy,
        gz,
        sx,
        sy,
        sz,
        g,
        f,
        fmask,
        stride,
        dense,
        qscale_a,
        qscale_b,
        T: tl.constexpr,
        F: tl.constexpr,
        DETERMINISTIC: tl.constexpr,
    ):
        # One atomic per (point, corner) row: d table[l, idx_c(n)] += w_c(n) · dout[n, l].
        for c in tl.static_range(8):
            idx, w = _corner(gx, gy, gz, sx, sy, sz, c, stride, dense, T)
            contrib = w[:, None] * g
            ent = lvl_off + idx[:, None] * F + f[None, :]
            if DETERMINISTIC:
                # Integer addition is associative: the sum is the same in any order (bitwise repeatable).
                q = tl.floor((contrib * qscale_a) * qscale_b + 0.5).to(tl.int64)
                tl.atomic_add(gtab_ptr + ent, q, mask=fmask, sem="relaxed")
            else:
                tl.atomic_add(gtab_ptr + ent, contrib, mask=fmask, sem="relaxed")

    @triton.jit
    def _scatter_segmented(
        x_ptr,
        gtab_ptr,
        offs,
        mask,
        N,
        start,
        scale,
        res,
        lvl_off,
        gx,
        gy,
        gz,
        sx,
        sy,
        sz,
        g,
        f,
        stride,
        dense,
        qscale_a,
        qscale_b,
        T: tl.constexpr,
        F: tl.constexpr,
        F_P2: tl.constexpr,
        BLOCK: tl.constexpr,
        DETERMINISTIC: tl.constexpr,
    ):
        # Coherent points (rasterised surface points in pixel order): runs of consecutive points share one cell at the
        # coarse levels, hence the same 8 corner rows, and their atomics would serialise on those rows. A segment is a
        # maximal run of consecutive points of this block with equal cell; for each corner c and feature f
        #   S_c[seg, f] = sum_{n in seg} w_c(n) · dout[n, l·F + f]
        # is formed by an inclusive segmented scan over the block (flags = segment starts, _segmented_add), which
        # leaves S_c at the segment's last point; only that point issues the 8 atomics. Same sum as _scatter_plain up
        # to float32 summation order (bitwise the same in deterministic mode, where the scan adds the int64 quanta).
        lane = tl.arange(0, BLOCK)
        next_ok = mask & (lane < BLOCK - 1) & (offs + 1 < N)
        nx, ny, nz = _cell_of(x_ptr, offs + 1, next_ok, scale, res)
        last = mask & ((next_ok == 0) | (nx != gx) | (ny != gy) | (nz != gz))  # segment ends here
        flags = tl.broadcast_to(start.to(tl.int32)[:, None], g.shape)
        if F == F_P2:
            amask = tl.broadcast_to(last[:, None], g.shape)  # constant along F: vector atomics
        else:
            amask = last[:, None] & (f < F)[None, :]
        # One [BLOCK, F] scan per corner (a single [BLOCK, 8, F] scan needs 4x the registers and shared memory).
        for c in tl.static_range(8):
            idx, w = _corner(gx, gy, gz, sx, sy, sz, c, stride, dense, T)
            contrib = w[:, None] * g
            if DETERMINISTIC:
                contrib = tl.floor((contrib * qscale_a) * qscale_b + 0.5).to(tl.int64)
            _, seg_sum = tl.associative_scan((flags, contrib), 0, _segmented_add)
            tl.atomic_add(gtab_ptr + lvl_off + idx[:, None] * F + f[None, :], seg_sum, mask=amask, sem="relaxed")

    @triton.jit
    def _hash_grid_bwd_level(
        x_ptr,
        table_ptr,
        scale_ptr,
        res_ptr,
        gout_ptr,
        gtab_ptr,
        gx_acc_ptr,
        offs,
        mask,
        lvl,
        num_dense,
        qscale_a,
        qscale_b,
        N,
        T: tl.constexpr,
        L: tl.constexpr,
        F: tl.constexpr,
        F_P2: tl.constexpr,
        INTERP: tl.constexpr,
        IDX64: tl.constexpr,
        NEED_TABLE: tl.constexpr,
        NEED_X: tl.constexpr,
        DETERMINISTIC: tl.constexpr,
        BLOCK: tl.constexpr,
        SEGMENTED: tl.constexpr,
        seg_max,
    ):
        xs, ys, zs, scale, res, gx, gy, gz, tx, ty, tz = _level_setup(
            x_ptr, offs, mask, scale_ptr, res_ptr, lvl, INTERP
        )
        sx, dsx = _interp_weights(tx, INTERP)
        sy, dsy = _interp_weights(ty, INTERP)
        sz, dsz = _interp_weights(tz, INTERP)
        dense = lvl < num_dense
        stride = (res + 1).to(tl.uint32)
        f = tl.arange(0, F_P2)
        fmask = _feature_mask(mask, f, F, F_P2)
        if IDX64:
            row = offs.to(tl.int64) * (L * F)
            lvl_off = tl.full((), T * F, tl.int64) * lvl
        else:
            row = offs * (L * F)
            lvl_off = lvl * (T * F)
        gptr = gout_ptr + row[:, None] + lvl * F + f[None, :]  # dL/dout[n, l*F:(l+1)*F], loaded where needed
        if NEED_TABLE:
            g = tl.load(gptr, mask=fmask, other=0.0).to(tl.float32)
            if SEGMENTED:
                # Segment starts: first valid lane of the block, or a cell different from the previous point's. A
                # scalar branch per (program, level) picks the segmented scatter when the block has few segments
                # (coherent points at this level's resolution), else one atomic per point and corner; random points
                # pay only the count (a few L1 loads and one block reduction). Measured on an H100 (benches/RESULTS.md):
                # one kernel with both paths beats two launches with one path each (segmented and per-point programs
                # then share the SMs: scans and atomics overlap).
                lane = tl.arange(0, BLOCK)
                prev_ok = mask & (lane > 0)
                qx, qy, qz = _cell_of(x_ptr, offs - 1, prev_ok, scale, res)
                start = (prev_ok == 0) | (qx != gx) | (qy != gy) | (qz != gz)
                nseg = tl.sum((start & mask).to(tl.int32), axis=0)
                if nseg <= seg_max:
                    _scatter_segmented(
                        x_ptr,
                        gtab_ptr,
                        offs,
                        mask,
                        N,
                        start,
                        scale,
                        res,
                        lvl_off,
                        gx,
                        gy,
                        gz,
                        sx,
                        sy,
                        sz,
                        g,
                        f,
                        stride,
                        dense,
                        qscale_a,
                        qscale_b,
                        T,
                        F,
                        F_P2,
                        BLOCK,
                        DETERMINISTIC,
                    )
                else:
                    _scatter_plain(
                        gtab_ptr,
                        lvl_off,
                        gx,
                        gy,
                        gz,
                        sx,
                        sy,
                        sz,
                        g,
                        f,
                        fmask,
                        stride,
                        dense,
                        qscale_a,
                        qscale_b,
                        T,
                        F,
                        DETERMINISTIC,
                    )
            else:
                _scatter_plain(
                    gtab_ptr,
                    lvl_off,
                    gx,
                    gy,
                    gz,
                    sx,
                    sy,
                    sz,
                    g,
                    f,
                    fmask,
                    stride,
                    dense,
                    qscale_a,
                    qscale_b,
                    T,
                    F,
                    DETERMINISTIC,
                )
        # dL/dt_d for this level (only used when NEED_X).
        dtx = tl.zeros(offs.shape, dtype=tl.float32)
        dty = tl.zeros(offs.shape, dtype=tl.float32)
        dtz = tl.zeros(offs.shape, dtype=tl.float32)
        if NEED_X:
            if not NEED_TABLE:
                g = tl.load(gptr, mask=fmask, other=0.0).to(tl.float32)
            for c in tl.static_range(8):
                cx = c & 1
                cy = (c >> 1) & 1
                cz = (c >> 2) & 1
                idx = _corner_index(gx, gy, gz, cx, cy, cz, stride, dense, T)
                wx = sx if cx else 1.0 - sx
                wy = sy if cy else 1.0 - sy
                wz = sz if cz else 1.0 - sz
                feat = tl.load(table_ptr + lvl_off + idx[:, None] * F + f[None, :], mask=fmask, other=0.0).to(
                    tl.float32
                )
                gf = tl.sum(g * feat, axis=1)
                dwx = dsx if cx else -dsx
                dwy = dsy if cy else -dsy
                dwz = dsz if cz else -dsz
                dtx += gf * (dwx * wy * wz)
                dty += gf * (wx * dwy * wz)
                dtz += gf * (wx * wy * dwz)
            # dp/dx = scale inside [0, 1]; clamp passes no gradient outside (torch.clamp convention: ends included).
            inx = ((xs >= 0.0) & (xs <= 1.0)).to(tl.float32)
            iny = ((ys >= 0.0) & (ys <= 1.0)).to(tl.float32)
            inz = ((zs >= 0.0) & (zs <= 1.0)).to(tl.float32)
            return dtx * scale * inx, dty * scale * iny, dtz * scale * inz
        else:
            return dtx, dty, dtz

    @triton.jit
    def _hash_grid_encode_bwd_kernel(
        x_ptr,
        table_ptr,
        scale_ptr,
        res_ptr,
        gout_ptr,
        gtab_ptr,
        gx_ptr,
        N,
        num_dense,
        qscale_a,
        qscale_b,
        seg_max,
        T: tl.constexpr,
        L: tl.constexpr,
        F: tl.constexpr,
        F_P2: tl.constexpr,
        INTERP: tl.constexpr,
        IDX64: tl.constexpr,
        BLOCK: tl.constexpr,
        NEED_TABLE: tl.constexpr,
        NEED_X: tl.constexpr,
        DETERMINISTIC: tl.constexpr,
        LEVEL_LOOP: tl.constexpr,
        SEGMENTED: tl.constexpr,
    ):
        # With NEED_X the level loop runs inside the program so dL/dx sums over levels in registers (no atomics);
        # LEVEL_LOOP=False (table gradient only) spreads levels over the grid as the forward does.
        if LEVEL_LOOP:
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            if IDX64:
                offs = offs.to(tl.int64)
            mask = offs < N
            ax = tl.zeros(offs.shape, dtype=tl.float32)
            ay = tl.zeros(offs.shape, dtype=tl.float32)
            az = tl.zeros(offs.shape, dtype=tl.float32)
            for lvl in range(L):
                dx, dy, dz = _hash_grid_bwd_level(
                    x_ptr,
                    table_ptr,
                    scale_ptr,
                    res_ptr,
                    gout_ptr,
                    gtab_ptr,
                    gx_ptr,
                    offs,
                    mask,
                    lvl,
                    num_dense,
                    qscale_a,
                    qscale_b,
                    N,
                    T,
                    L,
                    F,
                    F_P2,
                    INTERP,
                    IDX64,
                    NEED_TABLE,
                    NEED_X,
                    DETERMINISTIC,
                    BLOCK,
                    SEGMENTED,
                    seg_max,
                )
                ax += dx
                ay += dy
                az += dz
            if NEED_X:
                tl.store(gx_ptr + offs * 3 + 0, ax, mask=mask)
                tl.store(gx_ptr + offs * 3 + 1, ay, mask=mask)
                tl.store(gx_ptr + offs * 3 + 2, az, mask=mask)
        else:
            lvl = tl.program_id(0)
            offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
            if IDX64:
                offs = offs.to(tl.int64)
            mask = offs < N
            _hash_grid_bwd_level(
                x_ptr,
                table_ptr,
                scale_ptr,
                res_ptr,
                gout_ptr,
                gtab_ptr,
                gx_ptr,
                offs,
                mask,
                lvl,
                num_dense,
                qscale_a,
                qscale_b,
                N,
                T,
                L,
                F,
                F_P2,
                INTERP,
                IDX64,
                NEED_TABLE,
                False,
                DETERMINISTIC,
                BLOCK,
                SEGMENTED,
                seg_max,
            )


# Launch settings: best of the sweep in benches/gpu_hash_grid.py on an H100 (1M random + 1M surface points, fp16
# table, commit c8e16e2; benches/RESULTS.md). The benchmark script overrides them to compare variants.
# Backward table scatter: bwd_segmented = per (program, level) choice of the segmented scatter, taken when the block
# has at most bwd_seg_frac·BLOCK segments (False: one atomic per point and corner everywhere; 0.5 beat 0.25 and 1.0
# on surface points, random points are unaffected). bwd_dx_separate: with dL/dx wanted too, compute it in its own
# level-looping kernel and scatter the table gradient with the per-level kernel (surface points 2.13 ms vs 2.43 ms
# for one fused level-looping kernel doing both).
_LAUNCH: dict[str, Any] = {
    "fwd_block": 256,
    "fwd_warps": 8,
    "fwd_level_loop": False,
    "bwd_block": 256,
    "bwd_warps": 4,
    "bwd_segmented": True,
    "bwd_seg_frac": 0.5,
    "bwd_dx_separate": True,
}


def _level_tensors(
    num_levels: int, table_size: int, base: float, finest: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, int]:
    scales, res, num_dense = _hash_grid_levels(num_levels, table_size, base, finest)
    return (
        torch.tensor(scales, dtype=torch.float32, device=device),
        torch.tensor(res, dtype=torch.int32, device=device),
        num_dense,
    )


def _needs_idx64(n: int, num_levels: int, table_size: int, feat: int) -> bool:
    return n * num_levels * feat >= 2**31 or num_levels * table_size * feat >= 2**31 or n * 3 >= 2**31


def hash_grid_encode_fwd(x: torch.Tensor, table: torch.Tensor, base: float, finest: float, interp: int) -> torch.Tensor:
    """Launch the forward kernel. x contiguous float32 [N, 3]; table contiguous [L, T, F] → [N, L·F] table dtype."""
    n = x.shape[0]
    num_levels, table_size, feat = table.shape
    out = torch.empty((n, num_levels * feat), dtype=table.dtype, device=x.device)
    if n == 0:
        return out
    scales, res, num_dense = _level_tensors(num_levels, table_size, base, finest, x.device)
    block = _LAUNCH["fwd_block"]
    loop = _LAUNCH["fwd_level_loop"]
    grid = (triton.cdiv(n, block),) if loop else (num_levels, triton.cdiv(n, block))
    _hash_grid_encode_fwd_kernel[grid](
        x,
        table,
        scales,
        res,
        out,
        n,
        num_dense,
        T=table_size,
        L=num_levels,
        F=feat,
        F_P2=triton.next_power_of_2(feat),
        INTERP=interp,
        IDX64=_needs_idx64(n, num_levels, table_size, feat),
        BLOCK=block,
        LEVEL_LOOP=loop,
        num_warps=_LAUNCH["fwd_warps"],
        enable_fp_fusion=False,
    )
    return out


def hash_grid_encode_bwd(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    table: torch.Tensor,
    base: float,
    finest: float,
    interp: int,
    need_table: bool,
    need_x: bool,
    deterministic: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Launch the backward kernel → (grad_table [L,T,F] table dtype or None, grad_x [N,3] float32 or None)."""
    n = x.shape[0]
    num_levels, table_size, feat = table.shape
    grad_table: torch.Tensor | None = None
    grad_x: torch.Tensor | None = None
    if not (need_table or need_x):
        return None, None
    if n == 0:
        return (torch.zeros_like(table) if need_table else None), (torch.zeros_like(x) if need_x else None)
    exp = 0
    scales, res, num_dense = _level_tensors(num_levels, table_size, base, finest, x.device)
    qscale = (1.0, 1.0)
    gtab = None
    if need_table:
        if deterministic:
            # bound >= sum_n max_{l,f} |g[n, l, f]| >= |total into any entry| (the 8 weights of a point sum to 1).
            # scale = 2^exp, a power of two so the scaling itself is exact, applied as two float32 factors
            # 2^(exp//2) · 2^(exp - exp//2) because 2^exp alone can leave the float32 range (|exp| <= 212 here).
            bound = float(grad_out.detach().abs().amax(dim=1).sum(dtype=torch.float64))
            if not math.isfinite(bound):
                raise ValueError("hash_grid_encode(): deterministic backward needs a finite gradient, got inf/NaN")
            exp = _FIXED_POINT_BITS - (math.frexp(bound)[1] if bound > 0 else 0)
            qscale = (2.0 ** (exp // 2), 2.0 ** (exp - exp // 2))
            gtab = torch.zeros(table.shape, dtype=torch.int64, device=x.device)
        else:
            gtab = torch.zeros(table.shape, dtype=torch.float32, device=x.device)
    if need_x:
        grad_x = torch.empty((n, 3), dtype=torch.float32, device=x.device)
    block = _LAUNCH["bwd_block"]
    segmented = bool(_LAUNCH["bwd_segmented"])
    seg_max = int(_LAUNCH["bwd_seg_frac"] * block)
    dummy = x  # never dereferenced when the matching flag is off
    common = dict(
        T=table_size,
        L=num_levels,
        F=feat,
        F_P2=triton.next_power_of_2(feat),
        INTERP=interp,
        IDX64=_needs_idx64(n, num_levels, table_size, feat),
        BLOCK=block,
        DETERMINISTIC=deterministic,
        SEGMENTED=segmented,
        num_warps=_LAUNCH["bwd_warps"],
        enable_fp_fusion=False,
    )
    args = (
        x,
        table,
        scales,
        res,
        grad_out,
        gtab if gtab is not None else dummy,
        grad_x if grad_x is not None else dummy,
        n,
        num_dense,
        qscale[0],
        qscale[1],
        seg_max,
    )
    fused = need_x and need_table and not _LAUNCH["bwd_dx_separate"]
    if need_x:
        # dL/dx sums over levels in registers: one program loops over all levels of its points.
        _hash_grid_encode_bwd_kernel[(triton.cdiv(n, block),)](
            *args, NEED_TABLE=fused, NEED_X=True, LEVEL_LOOP=True, **common
        )
    if need_table and not fused:
        # Table gradient alone: levels spread over the grid, as in the forward.
        _hash_grid_encode_bwd_kernel[(num_levels, triton.cdiv(n, block))](
            *args, NEED_TABLE=True, NEED_X=False, LEVEL_LOOP=False, **common
        )
    if gtab is not None:
        if deterministic:
            grad_table = (gtab.to(torch.float64) * 2.0**-exp).to(table.dtype)
        else:
            grad_table = gtab if table.dtype == torch.float32 else gtab.to(table.dtype)
    return grad_table, grad_x


class HashGridEncodeFunction(torch.autograd.Function):
    """Autograd wrapper of the Triton kernels. Backward is not itself differentiable (no double backward)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, table: torch.Tensor, base: float, finest: float, interp: int, deterministic: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(x, table)
        ctx.cfg = (base, finest, interp, deterministic)
        return hash_grid_encode_fwd(x, table, base, finest, interp)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None, None]:
        x, table = ctx.saved_tensors
        base, finest, interp, deterministic = ctx.cfg
        grad_table, grad_x = hash_grid_encode_bwd(
            grad_out.contiguous(),
            x,
            table,
            base,
            finest,
            interp,
            need_table=ctx.needs_input_grad[1],
            need_x=ctx.needs_input_grad[0],
            deterministic=deterministic,
        )
        return (
            grad_x,
            grad_table,
            None,  # base_resolution
            None,  # finest_resolution
            None,  # interpolation
            None,  # deterministic
        )


def hash_grid_encode(
    x: torch.Tensor,  # [N, 3]
    table: torch.Tensor,  # [L, T, F]
    *,
    base_resolution: float = 16,
    finest_resolution: float = 4096,
    interpolation: Literal["linear", "smoothstep"] = "linear",
    deterministic: bool | None = None,
    backend: Literal["auto", "triton", "torch"] = "auto",
) -> torch.Tensor:
    """Multi-resolution hash-grid encoding of points (Instant-NGP; the original's torch-ngp ``gridencoder``).

    Args:
        x: float32 [N, 3] points in [0, 1]^3, on the table's device. Coordinates outside [0, 1] are clamped to it
            (a point outside the unit cube gets the feature of the nearest point on its surface, and no gradient
            along the clamped axes). Map world positions first, e.g. ``(p + bound) / (2 * bound)``. A
            non-contiguous ``x`` is copied to a contiguous one (same values).
        table: [L, T, F] float32 | float16 | bfloat16 feature table, one T-row table per level (the original:
            L=16, T=2**16, F=4). Interpolation accumulates in float32 whatever the table dtype.
        base_resolution: coarsest grid resolution (the original: 16). Must be >= 1.
        finest_resolution: finest grid resolution (the original: 4096; 2048 x bound in torch-ngp). Must be
            >= base_resolution. Level l has scale base · (finest/base)^(l/(L-1)) − 1; levels whose (res+1)^3
            vertices fit in T rows are indexed densely, the others through the spatial hash.
        interpolation: "linear" (trilinear, the original) or "smoothstep" (weights s(t) = t²(3−2t) per axis,
            torch-ngp's option: C¹ in x, at the cost of flat spots at vertices).
        deterministic: table-gradient accumulation order. False: float32 atomics (fastest; the summation order,
            hence the last bits, may change from run to run on GPU). True: int64 fixed-point atomics, bitwise
            repeatable (each contribution keeps its float32 precision; values smaller than 2^-61 of the total
            gradient mass are rounded away). None (default): follow ``torch.are_deterministic_algorithms_enabled()``.
            The torch backend ignores this flag. On the CPU it is always bitwise repeatable, whatever the thread
            count: its table gradient is an ``index_add_``, which torch sums in index order there (issue 22: the
            earlier ``index_put_(accumulate=True)`` added with float atomics from several threads). That costs
            nothing: 64k points, L=16, T=2^16, F=2, one thread of a 2-core x86 VM, forward 651 → 536 ms and
            backward 754 → 693 ms (best of 9, old vs new interleaved in one process). On CUDA ``index_add_`` is
            atomic unless torch's deterministic mode is on.
        backend: "triton" (CUDA tensors, or CPU under TRITON_INTERPRET=1; ``ValueError`` elsewhere and where triton
            cannot be imported), "torch" (the twin :func:`pgc_kernels.reference.hash_grid_encode_reference`), or
            "auto" (Triton on CUDA when triton is installed, the twin elsewhere).

    Performance: pass points in raster (pixel) order where you can. The backward merges the table-gradient atomics
    of consecutive points that share a grid cell (a segmented sum per block of points and level), which halves its
    time for rasterised surface points on an H100; randomly ordered points take the per-point atomics.

    Returns:
        [N, L·F] tensor of the table's dtype, on the table's device: level-major (``out[:, l*F:(l+1)*F]`` is
        level l). Differentiable w.r.t. ``table`` and ``x`` (first order only).

    Raises:
        TypeError / ValueError: on wrong dtypes, shapes, devices or options (``hash_grid_encode(): x must be …``).

    >>> import torch
    >>> table = (torch.rand(4, 2**10, 2) * 2 - 1) * 1e-4
    >>> hash_grid_encode(torch.rand(5, 3), table, finest_resolution=64, backend="torch").shape
    torch.Size([5, 8])
    """
    op = "hash_grid_encode"
    if backend not in _BACKENDS:
        raise ValueError(f"{op}(): backend must be one of {_BACKENDS}, got {backend!r}")
    if deterministic is not None and not isinstance(deterministic, bool):
        raise TypeError(f"{op}(): deterministic must be a bool or None, got {type(deterministic).__name__}")
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    # One contract for both backends (the twin itself also takes float64, for gradcheck).
    _hash_grid_check(
        op,
        x,
        table,
        base_resolution,
        finest_resolution,
        interpolation,
        x_dtypes=(torch.float32,),
        table_dtypes=(torch.float32, torch.float16, torch.bfloat16),
    )
    if not use_triton(op, backend, x):
        return hash_grid_encode_reference(
            x, table, base_resolution=base_resolution, finest_resolution=finest_resolution, interpolation=interpolation
        )
    if x.shape[0] >= 2**31 // 2:
        # Program ids × BLOCK stay int32 in the kernels.
        raise RuntimeError(f"{op}(): the Triton backend takes fewer than 2^30 points per call, got {x.shape[0]}")
    return HashGridEncodeFunction.apply(
        x.contiguous(),
        table.contiguous(),
        float(base_resolution),
        float(finest_resolution),
        _INTERP_CODE[interpolation],
        deterministic,
    )


assert set(_INTERP_CODE) == set(_HASH_GRID_INTERPOLATIONS)
