"""GPU benchmark of the pgc_kernels ops: ours (Triton) vs the eager torch reference vs torch.compile(reference).

One process: measures the device's copy bandwidth (bytes read + written by a 1 GiB device-to-device copy),
checks every kernel against the reference on the device (all variants × norms × dtypes × layouts), optionally
sweeps launch configurations (--sweep; the best ones are applied for the table), then times each case twice:
device time by CUDA-graph replay over input sets larger than L2, and per-call time with
``triton.testing.do_bench`` (median, L2 flushed before each call, host launch overhead included). It prints µs,
GB/s (the fewest bytes the op must move: each input read once, the output written once) and % of the copy
bandwidth, and appends the table to benches/RESULTS.md (and $OUT/RESULTS.md when $OUT is set) with device,
commit and date.

    PYTHONPATH=kernels python benches/gpu_kernels.py [--sweep] [--sweep-only] [--quick-check] [--commit SHA]
    [--no-compile]

--sweep-only: correctness check, then the full sweep (candidate kernels and launch configurations for the NHWC
pixel_clip cases and sds_grad, plus size-matched copies and host time per call), no table.
--sweep: time the NHWC pixel_clip kernel candidates on [4,1024,1024,3] per dtype, use the fastest for the table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "kernels"))

import importlib  # noqa: E402

import torch  # noqa: E402
import triton  # noqa: E402
from triton.testing import do_bench  # noqa: E402

import pgc_kernels as pk  # noqa: E402

# The package re-exports the functions under the submodules' names: fetch the modules themselves.
pc_mod = importlib.import_module("pgc_kernels.pixel_clip")
sd_mod = importlib.import_module("pgc_kernels.sds_grad")
from pgc_kernels.reference import pixel_clip_reference, sds_grad_reference  # noqa: E402

DEV = "cuda"
TAU = 0.1


def us(fn) -> float:
    """µs per call as a user sees it: do_bench median, L2 flushed before each call; host launch overhead shows
    where it exceeds the flush's GPU time."""
    return do_bench(fn, warmup=50, rep=300, return_mode="median") * 1e3


def graph_us(fns, min_calls: int = 24) -> float:
    """Device µs per call: the closures ``fns`` (each on its own inputs, together larger than L2) run
    round-robin inside one CUDA graph; median over replays of graph time / calls. No host overhead, no L2 reuse."""
    n = max(min_calls, 2 * len(fns))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for f in fns:
            f()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for k in range(n):
            fns[k % len(fns)]()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(15):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / n)
    del graph
    torch.cuda.empty_cache()
    return sorted(times)[len(times) // 2]


def host_us(fn, n: int = 300) -> float:
    """Host (CPU) µs per call: wall time of n back-to-back calls with no synchronisation inside (the GPU work of
    these small ops keeps up, so this is the Python + launch cost a training loop pays per call)."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    dt = time.perf_counter() - t
    torch.cuda.synchronize()
    return dt / n * 1e6


def copy_same_size_us(nbytes: int) -> float:
    """Device µs of ``dst.copy_(src)`` moving ``nbytes`` in total (nbytes/2 read + nbytes/2 written), timed like
    the ops (CUDA graph, rotating over sets larger than L2): the size-matched ceiling for a small op."""
    n = max(1, nbytes // 8)  # fp32 elements per side
    sets = [(torch.randn(n, device=DEV), torch.empty(n, device=DEV)) for _ in range(n_sets(nbytes))]
    t = graph_us([lambda a=a, b=b: b.copy_(a) for a, b in sets])
    del sets
    return t


def n_sets(nbytes: int) -> int:
    """Input sets to rotate through so that they exceed the 50 MB L2 at least 4×."""
    return max(2, min(16, -(-200 * 2**20 // max(nbytes, 1))))


def copy_bandwidth() -> float:
    x = torch.randn(2**28, device=DEV)  # 1 GiB
    y = torch.empty_like(x)
    t = us(lambda: y.copy_(x))
    return 2 * 2**30 / (t * 1e-6) / 1e9


# ------------------------------------------------------------------------------------------- correctness


def check_all(quick: bool = False) -> int:
    """Ours vs reference on the device for every variant × norm × dtype × layout (+ stats) and sds_grad options;
    every NHWC kernel candidate (word-packed 32/64-bit, packed, strided) × dtype × C. ``quick``: only the
    NHWC candidates and sds_grad."""
    fails = 0
    tol0 = {torch.float32: (1e-5, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3)}
    torch.manual_seed(0)
    combos = (("clip", "linf", False), ("clip", "l2", True), ("soft_pixel", "linf", False), ("value", "linf", True))
    for dtype, (atol, rtol) in tol0.items():
        esize = 4 if dtype == torch.float32 else 2
        for c, kernels in (
            (3, (None, "words64", "staged32", "staged64", "packed", "strided")),
            (4, (None, "staged64", "words64")),
            (1, (None,)),
            (5, (None,)),
        ):
            g = torch.randn(2, 67, 131, c, device=DEV) * 0.15
            g[0, 0, 0] = 0
            g[1, 3, 4, 0] = float("nan")
            g[1, 5, 6, c - 1] = float("inf")
            g = g.to(dtype)
            for kern in kernels:
                cfg = dict(pc_mod.CONFIG)
                name = kern
                if kern and kern[-2:] in ("32", "64"):
                    name = kern[:-2]
                    cfg[(name, esize)] = (cfg[(name, esize)][0], cfg[(name, esize)][1], int(kern[-2:]))
                for variant, norm, stats in combos if kern is None else combos[::3]:
                    o = pc_mod._pixel_clip_triton(g, TAU, variant, norm, 3, None, stats, config=cfg, packed_kernel=name)
                    r = pixel_clip_reference(g, TAU, variant=variant, norm=norm, channel_dim=-1, return_stats=stats)
                    if stats:
                        (o, so), (r, sr) = o, r
                        if not all(
                            torch.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True)
                            for a, b in zip(so, sr, strict=False)
                        ):
                            fails += 1
                            print(f"FAIL stats nhwc C={c} {dtype} {kern} {variant} {norm}: {so} vs {sr}")
                    ok = torch.isnan(o) == torch.isnan(r)
                    err = ((o.float() - r.float()).abs() - (atol + rtol * r.float().abs())).nan_to_num(0).max().item()
                    if not (bool(ok.all()) and err <= 0):
                        fails += 1
                        print(f"FAIL pixel_clip nhwc C={c} {dtype} {kern} {variant} {norm} stats={stats}: excess {err}")
    nchw = torch.randn(3, 3, 257, 129, device=DEV) * 0.15
    nchw[0, :, 0, :5] = 0
    nchw[1, 1, 2, 3] = float("nan")
    for dtype, (atol, rtol) in tol0.items():
        g = nchw.to(dtype)
        for variant, norm, stats in (("clip", "linf", False), ("soft_pixel", "l2", True), ("global", "linf", False)):
            o = pk.pixel_clip(g, TAU, variant=variant, norm=norm, backend="triton", return_stats=stats)
            r = pixel_clip_reference(g, TAU, variant=variant, norm=norm, return_stats=stats)
            if stats:
                (o, so), (r, sr) = o, r
                if not all(
                    torch.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True) for a, b in zip(so, sr, strict=False)
                ):
                    fails += 1
                    print(f"FAIL stats nchw {dtype} {variant} {norm}: {so} vs {sr}")
            ok = torch.isnan(o) == torch.isnan(r)
            err = ((o.float() - r.float()).abs() - (atol + rtol * r.float().abs())).nan_to_num(0).max().item()
            if not (bool(ok.all()) and err <= 0):
                fails += 1
                print(f"FAIL pixel_clip nchw {dtype} {variant} {norm} stats={stats}: excess {err}")
    ec, eu, nz = (torch.randn(8, 4, 128, 128, device=DEV) for _ in range(3))
    w = torch.rand(8, device=DEV)
    for phi, clamp, clip in ((0.7, None, None), (0.5, 1.0, 0.5), (0.0, None, 0.3)):
        o = pk.sds_grad(ec, eu, nz, w, 100.0, cfg_rescale=phi, clamp=clamp, clip=clip, backend="triton")
        r = sds_grad_reference(ec, eu, nz, w, 100.0, cfg_rescale=phi, clamp=clamp, clip=clip)
        rel = ((o - r).norm() / r.norm()).item()
        if not rel < 1e-5:
            fails += 1
            print(f"FAIL sds_grad tiled phi={phi} clamp={clamp} clip={clip}: rel {rel}")
    for shape in [(8, 4, 128, 128), (3, 4, 16, 24)]:
        ec, eu, nz = (torch.randn(shape, device=DEV) for _ in range(3))
        w = torch.rand(shape[0], device=DEV)
        for flat in [(512, 1, False, 0), (1024, 4, True, 0), (2048, 4, False, 2), (8192, 16, True, 1)]:
            cfg = dict(sd_mod.CONFIG, flat=flat)
            for dtype in (torch.float32, torch.bfloat16):
                args = [t.to(dtype) for t in (ec, eu, nz)]
                for weight, clamp in ((w, None), (0.3, 0.5)):
                    o = sd_mod._sds_grad_triton(*args, weight, 100.0, "pgc", 0.0, clamp, None, config=cfg)
                    wt = weight if isinstance(weight, torch.Tensor) else torch.full((shape[0],), weight, device=DEV)
                    r = sds_grad_reference(*args, wt, 100.0, clamp=clamp)
                    rel = ((o - r).norm() / r.norm()).item()
                    if not rel < 1e-6:
                        fails += 1
                        print(f"FAIL sds_grad flat {flat} {shape} {dtype} clamp={clamp}: rel {rel}")
    if quick:
        torch.cuda.synchronize()
        print(f"quick correctness on device: {'all passed' if fails == 0 else f'{fails} FAILED'}")
        return fails
    tol = {torch.float32: (1e-5, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3)}
    torch.manual_seed(0)
    base = torch.randn(3, 3, 257, 129, device=DEV) * 0.15
    base[0, :, 0, :5] = 0
    layouts = {
        "nchw": (base, 1),
        "nhwc": (base.permute(0, 2, 3, 1).contiguous(), -1),
        "channels_last": (base.contiguous(memory_format=torch.channels_last), 1),
        "c4_nhwc": (torch.randn(2, 33, 65, 4, device=DEV) * 0.15, -1),
        "chan_sliced": (torch.randn(1001, 5, device=DEV)[:, 1:4] * 0.15, 1),
        "c16_nchw": (torch.randn(2, 16, 33, 65, device=DEV) * 0.05, 1),
    }
    for lname, (g32, cd) in layouts.items():
        for dtype, (atol, rtol) in tol.items():
            if lname not in ("nchw", "nhwc") and dtype != torch.float32:
                continue
            g = g32.to(dtype)
            for variant in ("clip", "value", "global", "sigmoid", "soft", "soft_pixel"):
                for norm in ("linf", "l2"):
                    for stats in (False, True) if variant == "clip" else (False,):
                        scale = torch.tensor(4.0, device=DEV) if stats else None
                        gg = g * 4 if stats else g
                        o = pk.pixel_clip(
                            gg,
                            TAU,
                            variant=variant,
                            norm=norm,
                            channel_dim=cd,
                            scale=scale,
                            backend="triton",
                            return_stats=stats,
                        )
                        r = pixel_clip_reference(
                            gg, TAU, variant=variant, norm=norm, channel_dim=cd, scale=scale, return_stats=stats
                        )
                        if stats:
                            (o, so), (r, sr) = o, r
                            if not all(
                                torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(so, sr, strict=False)
                            ):
                                fails += 1
                                print(f"FAIL stats {lname} {dtype} {variant} {norm}: {so} vs {sr}")
                        err = ((o.float() - r.float()).abs() - (atol + rtol * r.float().abs())).max().item()
                        if not err <= 0 or (o.stride() != g.stride() and lname != "chan_sliced"):
                            fails += 1
                            print(f"FAIL pixel_clip {lname} {dtype} {variant} {norm}: excess error {err}")
    for shape in [(8, 4, 128, 128), (3, 4, 33, 17), (2, 16, 9, 9)]:
        ec = torch.randn(shape, device=DEV)
        eu = ec + 0.1 * torch.randn(shape, device=DEV)
        nz = torch.randn(shape, device=DEV)
        w = torch.rand(shape[0], device=DEV)
        for dtype in (torch.float32, torch.float16):
            args = [t.to(dtype) for t in (ec, eu, nz)]
            for conv in ("pgc", "diffusers"):
                for phi in (0.0, 0.7):
                    for clamp, clip in ((None, None), (0.5, 0.3)):
                        o = pk.sds_grad(
                            *args, w, 100.0, convention=conv, cfg_rescale=phi, clamp=clamp, clip=clip, backend="triton"
                        )
                        r = sds_grad_reference(
                            *args, w, 100.0, convention=conv, cfg_rescale=phi, clamp=clamp, clip=clip
                        )
                        rel = ((o - r).norm() / r.norm()).item()
                        if not rel < 1e-5:
                            fails += 1
                            print(
                                f"FAIL sds_grad {shape} {dtype} {conv} phi={phi} clamp={clamp} clip={clip}: rel {rel}"
                            )
    torch.cuda.synchronize()
    print(f"correctness on device: {'all passed' if fails == 0 else f'{fails} FAILED'}")
    return fails


# ------------------------------------------------------------------------------------------------ cases


def pixel_cases():
    """(case, gradient, channel_dim, impls): impls "full" = ours, eager reference, original hook, torch.compile;
    "hook" = the same without torch.compile; "lite" = ours and the eager reference."""
    torch.manual_seed(1)
    out = []

    def g_nchw(shape, dtype):
        return (torch.randn(shape, device=DEV) * 0.1).to(dtype)

    out.append(("pixel_clip [4,3,1024,1024] fp32 NCHW", g_nchw((4, 3, 1024, 1024), torch.float32), 1, "full"))
    out.append(("pixel_clip [4,1024,1024,3] fp32 NHWC", g_nchw((4, 1024, 1024, 3), torch.float32), -1, "full"))
    out.append(("pixel_clip [4,3,1024,1024] fp16 NCHW", g_nchw((4, 3, 1024, 1024), torch.float16), 1, "hook"))
    out.append(("pixel_clip [4,3,1024,1024] bf16 NCHW", g_nchw((4, 3, 1024, 1024), torch.bfloat16), 1, "hook"))
    out.append(("pixel_clip [4,1024,1024,3] bf16 NHWC", g_nchw((4, 1024, 1024, 3), torch.bfloat16), -1, "full"))
    out.append(("pixel_clip [4,1024,1024,3] fp16 NHWC", g_nchw((4, 1024, 1024, 3), torch.float16), -1, "hook"))
    out.append(("pixel_clip [4,1024,1024,4] bf16 NHWC", g_nchw((4, 1024, 1024, 4), torch.bfloat16), -1, "lite"))
    out.append(("pixel_clip [4,1024,1024,4] fp32 NHWC", g_nchw((4, 1024, 1024, 4), torch.float32), -1, "lite"))
    out.append(("pixel_clip [4,1024,1024,1] bf16 NHWC", g_nchw((4, 1024, 1024, 1), torch.bfloat16), -1, "lite"))
    out.append(("pixel_clip [8,3,2048,2048] fp32 NCHW", g_nchw((8, 3, 2048, 2048), torch.float32), 1, "hook"))
    return out


def original_hook(g, tau, cd):
    """The original's hook arithmetic (the original's nerf/utils.py, Trainer.train_one_epoch's gradient hook), eager."""
    ratio = tau / torch.abs(g)
    ratio[ratio > 1] = 1
    return g * torch.amin(ratio, dim=cd, keepdim=True)


def sweep_nhwc(copy_gbs: float) -> dict:
    """The NHWC pixel-wise clip kernels (word kernel with lanes per group: "words"; the same staged through a
    coalesced tile: "staged"; per-element gathers: "packed"; channel tile: "strided")
    on [4,1024,1024,3]; sets the fastest per element size as the dispatch default for the rest of the run."""
    print("\n## NHWC kernel sweep (device µs per call, CUDA graph over input sets larger than L2)")
    tuned = {}
    cands16 = [
        ("words", (512, 4, 64)),
        ("staged", (512, 4, 64)),
        ("staged", (1024, 4, 64)),
        ("staged", (256, 2, 64)),
        ("staged", (512, 4, 32)),
        ("staged", (1024, 8, 32)),
    ]
    cands32 = [
        ("packed", (4096, 16)),
        ("strided", (2048, 4)),
        ("staged", (512, 4, 64)),
        ("staged", (1024, 4, 64)),
        ("staged", (512, 4, 32)),
        ("words", (512, 4, 64)),
    ]
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        esize = 4 if dtype == torch.float32 else 2
        shape = (4, 1024, 1024, 3)
        gs = [(torch.randn(shape, device=DEV) * 0.1).to(dtype) for _ in range(n_sets(2 * 4 * 2**20 * 3 * esize))]
        floor = 2 * gs[0].nbytes / (copy_gbs * 1e3)
        res = []
        for kern, kcfg in cands32 if esize == 4 else cands16:
            cfg = {**pc_mod.CONFIG, (kern, esize): kcfg}
            try:
                t = graph_us(
                    [
                        lambda g=g, cfg=cfg, kern=kern: pc_mod._pixel_clip_triton(
                            g, TAU, "clip", "linf", 3, None, False, config=cfg, packed_kernel=kern
                        )
                        for g in gs
                    ]
                )
            except Exception as e:  # noqa: BLE001 - report, keep sweeping
                print(f"  {kern} {kcfg}: failed {type(e).__name__}: {str(e)[:300]}")
                continue
            res.append((t, kern, kcfg))
            print(
                f"  NHWC {shape} {dtype} {kern:8s} {str(kcfg):16s} {t:6.1f} µs = {100 * floor / t:.0f} % of copy",
                flush=True,
            )
        res.sort(key=lambda r: r[0])
        t, kern, kcfg = res[0]
        print(f"NHWC {shape} {dtype}: best {kern} {kcfg} {t:.1f} µs ({100 * floor / t:.0f} % of copy)")
        if kern != pc_mod.PACKED_PIXEL_KERNEL[esize]:
            tuned[("packed_pixel_kernel", esize)] = kern
        if pc_mod.CONFIG.get((kern, esize)) != kcfg:
            tuned[(kern, esize)] = kcfg
        pc_mod.PACKED_PIXEL_KERNEL[esize] = kern
        pc_mod.CONFIG[(kern, esize)] = kcfg
        del gs
        torch.cuda.empty_cache()
    pc_mod._PLANS.clear()
    print(f"NHWC dispatch for the table: {pc_mod.PACKED_PIXEL_KERNEL}; changed: {tuned or 'none'}")
    return tuned


def sweep(copy_gbs: float) -> dict:
    """Time every candidate kernel and launch configuration (device µs, CUDA graph) and set the best ones in
    pc_mod.CONFIG / pc_mod.PACKED_PIXEL_KERNEL / sd_mod.CONFIG for the rest of the run; returns what changed."""
    print("\n## sweep (device µs per call, CUDA graph over input sets larger than L2)")
    tuned = {}

    def run_pc(gs, d, cfg, kern, variant="clip"):
        pc_mod._PLANS.clear()
        return graph_us(
            [
                lambda g=g: pc_mod._pixel_clip_triton(
                    g, TAU, variant, "linf", d, None, False, config=cfg, packed_kernel=kern
                )
                for g in gs
            ]
        )

    # NCHW (pixel_major tile): unchanged kernel, re-check its configuration.
    for key, (shape, dtype) in {
        ("pixel_major", 4): ((4, 3, 1024, 1024), torch.float32),
        ("pixel_major", 2): ((4, 3, 1024, 1024), torch.bfloat16),
    }.items():
        gs = [(torch.randn(shape, device=DEV) * 0.1).to(dtype) for _ in range(n_sets(2 * 4 * 2**22))]
        res = sorted(
            (run_pc(gs, 1, {**pc_mod.CONFIG, key: (e, w)}, None), e, w)
            for e, w in ((2048, 4), (4096, 4), (4096, 8), (8192, 8))
        )
        default_t = run_pc(gs, 1, pc_mod.CONFIG, None)
        floor = 2 * gs[0].nbytes / (copy_gbs * 1e3)
        print(
            f"{key} {shape} {dtype}: default {pc_mod.CONFIG[key]} {default_t:.1f} µs; best "
            + ", ".join(f"({e},{w}) {t:.1f}" for t, e, w in res[:3])
            + f"; floor {floor:.1f} µs"
        )
        if res[0][0] < 0.97 * default_t:
            tuned[key] = (res[0][1], res[0][2])
        del gs

    # NHWC: every kernel that can run the pixel-wise clip on a packed channel-last tensor.
    word_cands = [(gb, w, bits) for bits in (32, 64) for gb, w in ((512, 2), (512, 4), (1024, 4), (2048, 8))]
    best_kernel = {}
    for dtype, c in (
        (torch.float32, 3),
        (torch.float16, 3),
        (torch.bfloat16, 3),
        (torch.bfloat16, 4),
        (torch.float32, 4),
    ):
        esize = 4 if dtype == torch.float32 else 2
        shape = (4, 1024, 1024, c)
        gs = [
            (torch.randn(shape, device=DEV) * 0.1).to(dtype)
            for _ in range(n_sets(2 * 4 * 2**20 * c * (esize // 2) * 2))
        ]
        floor = 2 * gs[0].nbytes / (copy_gbs * 1e3)
        res = [(run_pc(gs, 3, pc_mod.CONFIG, "packed"), "packed", pc_mod.CONFIG[("packed", esize)])]
        for e, w in [(2048, 4), (4096, 4)] if c == 3 else []:
            res.append((run_pc(gs, 3, {**pc_mod.CONFIG, ("strided", esize): (e, w)}, "strided"), "strided", (e, w)))
        for wc in word_cands if c == 3 else [(512, 4, 64), (1024, 4, 64), (1024, 4, 32)]:
            res.append((run_pc(gs, 3, {**pc_mod.CONFIG, ("words", esize): wc}, "words"), "words", wc))
        default_t = run_pc(gs, 3, pc_mod.CONFIG, None)
        elementwise_t = run_pc(gs, 3, pc_mod.CONFIG, None, variant="value")
        res.sort(key=lambda r: r[0])
        print(
            f"NHWC {shape} {dtype}: floor {floor:.1f} µs; library default {default_t:.1f} µs; element-wise variant "
            f"(packed, no gathers) {elementwise_t:.1f} µs; best: "
            + ", ".join(f"{k} {cfg} {t:.1f}" for t, k, cfg in res[:5])
        )
        for k in ("packed", "strided", "words"):
            if not any(r[1] == k for r in res):
                continue
            t, _, cfg = min((r for r in res if r[1] == k), key=lambda r: r[0])
            print(f"    best {k:8s} {str(cfg):18s} {t:6.1f} µs = {100 * floor / t:.0f} % of copy")
        if c == 3:
            best_kernel[esize] = res[0]
        del gs
        torch.cuda.empty_cache()
    for esize, (_t, k, cfg) in best_kernel.items():
        if k != pc_mod.PACKED_PIXEL_KERNEL[esize]:
            tuned[("packed_pixel_kernel", esize)] = k
        key = ({"words": "words", "packed": "packed", "strided": "strided"})[k], esize
        if cfg != pc_mod.CONFIG[key][: len(cfg)] or len(cfg) != len(pc_mod.CONFIG[key]):
            tuned[key] = cfg

    # sds_grad [8,4,128,128] fp32: the flat kernel's (block, warps, evict, persistent) and the tiled kernel.
    sets = [[torch.randn(8, 4, 128, 128, device=DEV) for _ in range(3)] for _ in range(n_sets(8 * 2**20))]
    w8 = torch.rand(8, device=DEV)
    nbytes = 8 * 2**20
    copy_t = copy_same_size_us(nbytes)
    ew_sets = [(a, b, c, torch.empty_like(a)) for a, b, c in sets]
    addcmul_t = graph_us([lambda a=a, b=b, c=c, o=o: torch.addcmul(a, b, c, out=o) for a, b, c, o in ew_sets])
    del ew_sets
    print(
        f"sds_grad [8,4,128,128] fp32, 8 MiB moved: size-matched copy (4 MiB → 4 MiB) {copy_t:.2f} µs; "
        f"torch.addcmul (3 in, 1 out, 8 MiB) {addcmul_t:.2f} µs; large-copy floor {nbytes / (copy_gbs * 1e3):.2f} µs"
    )
    res = []
    flat_cands = [(512, 4), (512, 2), (1024, 8), (1024, 4), (2048, 8), (2048, 4), (4096, 16), (4096, 8)]
    for blk, wp in flat_cands:
        for evict in (False, True):
            for persist in (0, 1, 2, 4):
                cfg = dict(sd_mod.CONFIG, flat=(blk, wp, evict, persist))
                t = graph_us(
                    [
                        lambda a=a, cfg=cfg: sd_mod._sds_grad_triton(*a, w8, 100.0, "pgc", 0.0, None, None, config=cfg)
                        for a in sets
                    ]
                )
                res.append((t, "flat", (blk, wp, evict, persist)))
    for e, wp in [(4096, 16), (2048, 4), (1024, 4)]:
        cfg = dict(sd_mod.CONFIG, sds=(e, wp), flat=(2**30, 1, False, 0))  # flat block > C·N: the tiled kernel runs
        t = graph_us(
            [
                lambda a=a, cfg=cfg: sd_mod._sds_grad_triton(*a, w8, 100.0, "pgc", 0.0, None, None, config=cfg)
                for a in sets
            ]
        )
        res.append((t, "tiled", (e, wp)))
    default_t = graph_us([lambda a=a: sd_mod._sds_grad_triton(*a, w8, 100.0, "pgc", 0.0, None, None) for a in sets])
    comp = torch.compile(lambda a, b, c, d: sds_grad_reference(a, b, c, d, 100.0))
    comp_t = graph_us([lambda a=a: comp(*a, w8) for a in sets])
    res.sort(key=lambda r: r[0])
    print(
        f"sds_grad: library default {default_t:.2f} µs, torch.compile {comp_t:.2f} µs; best: "
        + ", ".join(f"{k} {cfg} {t:.2f}" for t, k, cfg in res[:8])
    )
    for k in ("flat", "tiled"):
        t, _, cfg = min((r for r in res if r[1] == k), key=lambda r: r[0])
        print(
            f"    best {k:6s} {str(cfg):24s} {t:.2f} µs = {100 * copy_t / t:.0f} % of size-matched copy, "
            f"{100 * nbytes / (copy_gbs * 1e3) / t:.0f} % of large-copy bandwidth"
        )
    by_persist = {}
    for t, k, cfg in res:
        if k == "flat":
            by_persist.setdefault((cfg[2], cfg[3]), t)
    print("    best flat per (evict, persist): " + ", ".join(f"{k}: {t:.2f}" for k, t in sorted(by_persist.items())))
    t, k, cfg = res[0]
    if k == "flat" and t < 0.97 * default_t:
        tuned["flat"] = cfg
    elif k == "tiled" and t < 0.97 * default_t:
        tuned["sds"] = cfg
    del sets

    # Host µs per call (the wrappers' Python + Triton launch), ours vs torch.compile(reference).
    a = [torch.randn(8, 4, 128, 128, device=DEV) for _ in range(3)]
    g = (torch.randn(4, 1024, 1024, 3, device=DEV) * 0.1).to(torch.bfloat16)
    g2 = torch.randn(4, 3, 256, 256, device=DEV) * 0.1
    pcomp = torch.compile(lambda x: pixel_clip_reference(x, TAU, channel_dim=1))
    print(
        "host µs per call: "
        f"sds_grad ours (tensor w) {host_us(lambda: pk.sds_grad(*a, w8, 100.0)):.1f}, "
        f"(float w) {host_us(lambda: pk.sds_grad(*a, 0.5, 100.0)):.1f}, "
        f"torch.compile(reference) {host_us(lambda: comp(*a, w8)):.1f}, eager reference "
        f"{host_us(lambda: sds_grad_reference(*a, w8, 100.0)):.1f}; "
        f"pixel_clip NCHW fp32 [4,3,256,256] ours {host_us(lambda: pk.pixel_clip(g2, TAU)):.1f}, "
        f"torch.compile {host_us(lambda: pcomp(g2)):.1f}, ours return_stats "
        f"{host_us(lambda: pk.pixel_clip(g2, TAU, return_stats=True)):.1f}; "
        f"empty Triton-free baseline torch.empty_like {host_us(lambda: torch.empty_like(g2)):.1f}"
    )
    del g

    for key, v in tuned.items():
        if key == "flat" or key == "sds":
            sd_mod.CONFIG[key] = v
        elif key[0] == "packed_pixel_kernel":
            pc_mod.PACKED_PIXEL_KERNEL[key[1]] = v
        else:
            pc_mod.CONFIG[key] = v
    pc_mod._PLANS.clear()
    print(f"tuned (applied for the rest of this run): {tuned or 'defaults kept'}")
    return tuned


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true", help="NHWC kernel sweep; the fastest is used for the table")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument(
        "--quick-check", action="store_true", help="check only the NHWC kernel candidates and sds_grad's flat kernel"
    )
    ap.add_argument("--sweep-only", action="store_true", help="check, sweep, print; no table")
    ap.add_argument("--commit", default=os.environ.get("PGC_COMMIT", ""))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_kernels.py needs a CUDA device")
        return 2
    commit = (
        args.commit
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        or "unknown"
    )
    name = torch.cuda.get_device_name()
    print(f"device {name}, torch {torch.__version__}, triton {triton.__version__}, commit {commit}")
    copy_gbs = copy_bandwidth()
    print(f"device-to-device copy: {copy_gbs:.0f} GB/s (read + write)")
    fails = 0 if args.no_check else check_all(quick=args.quick_check)
    if args.sweep_only:
        sweep(copy_gbs)
        return 1 if fails else 0
    tuned = sweep_nhwc(copy_gbs) if args.sweep else {}

    rows = []  # (case, impl, device µs, GB/s, %copy, %size-matched copy, speedup vs eager, µs per call, host µs)

    def add(case, nbytes, impls):
        """impls: (name, make) where make(k) returns the closure on input set k."""
        dev_t, call_t, host_t = {}, {}, {}
        k_sets = n_sets(nbytes)
        same_copy = copy_same_size_us(nbytes)
        for impl, make in impls:
            t0 = time.time()
            try:
                fns = [make(k) for k in range(k_sets)]
                fns[0]()  # compile / warm up
                call_t[impl] = us(fns[0])
                host_t[impl] = host_us(fns[0], n=50)
            except Exception as e:  # noqa: BLE001 - report, keep benchmarking the rest
                print(f"{case} {impl}: failed: {type(e).__name__}: {str(e)[:200]}")
                continue
            try:
                dev_t[impl] = graph_us(fns)
            except Exception as e:  # noqa: BLE001 - report, keep benchmarking the rest
                print(f"{case} {impl}: not capturable in a CUDA graph ({type(e).__name__}); device µs = per-call µs")
                torch.cuda.synchronize()
                dev_t[impl] = call_t[impl]
            print(
                f"  {case:42s} {impl:26s} device {dev_t[impl]:8.1f} µs, per call {call_t[impl]:8.1f} µs   (setup "
                f"{time.time() - t0:.1f} s)",
                flush=True,
            )
        eager = dev_t.get("eager reference")
        for impl, t in dev_t.items():
            gbs = nbytes / (t * 1e-6) / 1e9
            rows.append(
                (
                    case,
                    impl,
                    t,
                    gbs,
                    100 * gbs / copy_gbs,
                    100 * same_copy / t,
                    (eager / t) if eager else float("nan"),
                    call_t[impl],
                    host_t[impl],
                )
            )

    print("\n## timings")
    for case, g0, cd, which in pixel_cases():
        lite = which == "lite"
        gs = [g0] + [torch.randn_like(g0) * 0.1 for _ in range(n_sets(2 * g0.nbytes) - 1)]
        impls = [
            (
                "ours (Triton)",
                lambda k, cd=cd, gs=gs: lambda: pk.pixel_clip(gs[k], TAU, channel_dim=cd, backend="triton"),
            ),
            ("eager reference", lambda k, cd=cd, gs=gs: lambda: pixel_clip_reference(gs[k], TAU, channel_dim=cd)),
        ]
        if not lite:
            impls.append(("original hook (eager)", lambda k, cd=cd, gs=gs: lambda: original_hook(gs[k], TAU, cd)))
        if not args.no_compile and which == "full":
            comp = torch.compile(lambda x, cd=cd: pixel_clip_reference(x, TAU, channel_dim=cd))
            impls.append(("torch.compile(reference)", lambda k, gs=gs, comp=comp: lambda: comp(gs[k])))
        if "bf16 NHWC" in case and "x3" not in case and ",3]" in case:
            impls.insert(
                1,
                (
                    "ours, previous kernel (packed, gathers)",
                    lambda k, gs=gs: (
                        lambda: pc_mod._pixel_clip_triton(
                            gs[k], TAU, "clip", "linf", 3, None, False, packed_kernel="packed"
                        )
                    ),
                ),
            )
        if not lite and ("fp32 NCHW" in case and "1024" in case or "fp32 NHWC" in case):
            impls.insert(
                1,
                (
                    "ours, return_stats",
                    lambda k, cd=cd, gs=gs: (
                        lambda: pk.pixel_clip(gs[k], TAU, channel_dim=cd, backend="triton", return_stats=True)
                    ),
                ),
            )
            impls.insert(
                2,
                (
                    "ours, variant=global (2 passes)",
                    lambda k, cd=cd, gs=gs: (
                        lambda: pk.pixel_clip(gs[k], TAU, variant="global", channel_dim=cd, backend="triton")
                    ),
                ),
            )
            impls.insert(
                3,
                (
                    "ours, norm=l2",
                    lambda k, cd=cd, gs=gs: (
                        lambda: pk.pixel_clip(gs[k], TAU, norm="l2", channel_dim=cd, backend="triton")
                    ),
                ),
            )
        add(case, 2 * g0.nbytes, impls)
        del gs, g0
        torch.cuda.empty_cache()
    w = torch.rand(8, device=DEV)
    for dtype, dname in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        el = 4 if dtype == torch.float32 else 2
        nbytes = (3 * el + 4) * 8 * 4 * 128 * 128
        sets = [[torch.randn(8, 4, 128, 128, device=DEV).to(dtype) for _ in range(3)] for _ in range(n_sets(nbytes))]
        impls = [
            ("ours (Triton)", lambda k, sets=sets: lambda: pk.sds_grad(*sets[k], w, 100.0, backend="triton")),
            ("eager reference", lambda k, sets=sets: lambda: sds_grad_reference(*sets[k], w, 100.0)),
        ]
        if not args.no_compile:
            comp = torch.compile(lambda a, b, c, d: sds_grad_reference(a, b, c, d, 100.0))
            impls.append(("torch.compile(reference)", lambda k, sets=sets, comp=comp: lambda: comp(*sets[k], w)))
        add(f"sds_grad [8,4,128,128] {dname} in, fp32 out", nbytes, impls)
    sets = [[torch.randn(8, 4, 128, 128, device=DEV) for _ in range(3)] for _ in range(n_sets(8 * 2**20))]
    opts = dict(cfg_rescale=0.5, clamp=1.0, clip=0.5)
    impls = [
        ("ours (Triton, 2 phases)", lambda k: lambda: pk.sds_grad(*sets[k], w, 100.0, backend="triton", **opts)),
        ("eager reference", lambda k: lambda: sds_grad_reference(*sets[k], w, 100.0, **opts)),
    ]
    if not args.no_compile:
        comp = torch.compile(lambda a, b, c, d: sds_grad_reference(a, b, c, d, 100.0, **opts))
        impls.append(("torch.compile(reference)", lambda k: lambda: comp(*sets[k], w)))
    # The minimum traffic with the rescale: phase 1 reads ε_c, ε_u; phase 2 reads all three and writes.
    add("sds_grad [8,4,128,128] fp32, rescale+clamp+clip", 5 * 4 * 8 * 4 * 128 * 128 + 4 * 8 * 4 * 128 * 128, impls)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"### pgc_kernels on {name} — commit `{commit}`, {date}",
        "",
        f"torch {torch.__version__}, triton {triton.__version__}; measured device-to-device copy {copy_gbs:.0f} GB/s "
        f"(bytes read + written); GB/s counts the fewest bytes each op must move. Device correctness check: "
        f"{'passed' if fails == 0 else f'{fails} FAILED'}. "
        f"Command: `python "
        f"benches/gpu_kernels.py{' --sweep' if args.sweep else ''}{' --quick-check' if args.quick_check else ''}`"
        f"{f'; launch configurations tuned in this run: {tuned}' if tuned else ''}.",
        "",
        "*device µs*: CUDA-graph replay of back-to-back calls rotating over input sets larger than L2 (no host "
        "overhead); "
        "GB/s, % and × are from it. *% of copy BW*: against the large (1 GiB) copy above. *% of size-matched copy*: "
        "device µs of `dst.copy_(src)` moving the same number of bytes (half read, half written), timed the same way, "
        "over ours — the ceiling for an op of this size, launch gaps and ramp included. *µs per call*: "
        "`triton.testing.do_bench` median with L2 flushed before each call, so host launch overhead shows where it "
        "exceeds the flush. *host µs*: CPU wall time per call of 50 back-to-back calls, no synchronisation (the "
        "Python + launch cost a training loop pays).",
        "",
        "| case | implementation | device µs | GB/s | % of copy BW | % of size-matched copy | × vs eager reference | "
        "µs per call | host µs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, impl, t, gbs, pct, pct_same, sp, ct, ht in rows:
        lines.append(
            f"| {case} | {impl} | {t:.1f} | {gbs:.0f} | {pct:.0f} % | {pct_same:.0f} % | {sp:.1f} | {ct:.1f} | "
            f"{ht:.1f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    targets = (
        ROOT / "benches" / "RESULTS.md",
        (Path(os.environ["OUT"]) / "RESULTS.md" if os.environ.get("OUT") else None),
    )
    for path in targets:
        if path is None:
            continue
        if not path.exists():
            path.write_text(
                "# Benchmark results\n\nGPU figures, each table produced by a committed command (named in the table's "
                "note).\n"
            )
        with path.open("a") as f:
            f.write(table)
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
