"""GPU benchmark of the pgc_kernels ops: ours (Triton) vs the eager torch reference vs torch.compile(reference).

One process: measures the device's copy bandwidth (bytes read + written by a 1 GiB device-to-device copy),
checks every kernel against the reference on the device (all variants × norms × dtypes × layouts), optionally
sweeps launch configurations (--sweep), then times each case with ``triton.testing.do_bench`` (median, L2
flushed between repetitions) and prints µs, GB/s (the fewest bytes the op must move: each input read once,
the output written once) and % of the copy bandwidth. Appends the table to benches/RESULTS.md (and
$OUT/RESULTS.md when $OUT is set) with device, commit and date.

    PYTHONPATH=kernels python benches/gpu_kernels.py [--sweep] [--commit SHA] [--no-compile]
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

import torch  # noqa: E402
import triton  # noqa: E402
from triton.testing import do_bench  # noqa: E402

import pgc_kernels as pk  # noqa: E402
import importlib  # noqa: E402

# The package re-exports the functions under the submodules' names: fetch the modules themselves.
pc_mod = importlib.import_module("pgc_kernels.pixel_clip")
sd_mod = importlib.import_module("pgc_kernels.sds_grad")
from pgc_kernels.reference import pixel_clip_reference, sds_grad_reference  # noqa: E402

DEV = "cuda"
TAU = 0.1


def us(fn) -> float:
    return do_bench(fn, warmup=50, rep=300, return_mode="median") * 1e3


def copy_bandwidth() -> float:
    x = torch.randn(2**28, device=DEV)  # 1 GiB
    y = torch.empty_like(x)
    t = us(lambda: y.copy_(x))
    del x, y
    return 2 * 2**30 / (t * 1e-6) / 1e9


# ------------------------------------------------------------------------------------------- correctness


def check_all() -> int:
    """Ours vs reference on the device for every variant × norm × dtype × layout (+ stats) and sds_grad options."""
    fails = 0
    tol = {torch.float32: (1e-5, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3)}
    torch.manual_seed(0)
    base = torch.randn(3, 3, 257, 129, device=DEV) * 0.15
    base[0, :, 0, :5] = 0
    layouts = {
        "nchw": (base, 1),
        "nhwc": (base.permute(0, 2, 3, 1).contiguous(), -1),
        "channels_last": (base.contiguous(memory_format=torch.channels_last), 1),
        "c4_nhwc": (torch.randn(2, 33, 65, 4, device=DEV) * 0.15, -1),
        "c16_nchw": (torch.randn(2, 16, 33, 65, device=DEV) * 0.05, 1),
    }
    for lname, (g32, cd) in layouts.items():
        for dtype, (atol, rtol) in tol.items():
            g = g32.to(dtype)
            for variant in ("clip", "value", "global", "sigmoid", "soft", "soft_pixel"):
                for norm in ("linf", "l2"):
                    for stats in (False, True) if variant == "clip" else (False,):
                        scale = torch.tensor(4.0, device=DEV) if stats else None
                        gg = g * 4 if stats else g
                        o = pk.pixel_clip(gg, TAU, variant=variant, norm=norm, channel_dim=cd, scale=scale, backend="triton", return_stats=stats)
                        r = pixel_clip_reference(gg, TAU, variant=variant, norm=norm, channel_dim=cd, scale=scale, return_stats=stats)
                        if stats:
                            (o, so), (r, sr) = o, r
                            if not all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(so, sr)):
                                fails += 1
                                print(f"FAIL stats {lname} {dtype} {variant} {norm}: {so} vs {sr}")
                        err = ((o.float() - r.float()).abs() - (atol + rtol * r.float().abs())).max().item()
                        if not err <= 0 or o.stride() != g.stride() and lname != "channels_last":
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
                        o = pk.sds_grad(*args, w, 100.0, convention=conv, cfg_rescale=phi, clamp=clamp, clip=clip, backend="triton")
                        r = sds_grad_reference(*args, w, 100.0, convention=conv, cfg_rescale=phi, clamp=clamp, clip=clip)
                        rel = ((o - r).norm() / r.norm()).item()
                        if not rel < 1e-5:
                            fails += 1
                            print(f"FAIL sds_grad {shape} {dtype} {conv} phi={phi} clamp={clamp} clip={clip}: rel {rel}")
    torch.cuda.synchronize()
    print(f"correctness on device: {'all passed' if fails == 0 else f'{fails} FAILED'}")
    return fails


# ------------------------------------------------------------------------------------------------ cases


def pixel_cases():
    torch.manual_seed(1)
    out = []

    def g_nchw(shape, dtype):
        return (torch.randn(shape, device=DEV) * 0.1).to(dtype)

    out.append(("pixel_clip [4,3,1024,1024] fp32 NCHW", g_nchw((4, 3, 1024, 1024), torch.float32), 1))
    out.append(("pixel_clip [4,1024,1024,3] fp32 NHWC", g_nchw((4, 1024, 1024, 3), torch.float32), -1))
    out.append(("pixel_clip [4,3,1024,1024] fp16 NCHW", g_nchw((4, 3, 1024, 1024), torch.float16), 1))
    out.append(("pixel_clip [4,3,1024,1024] bf16 NCHW", g_nchw((4, 3, 1024, 1024), torch.bfloat16), 1))
    out.append(("pixel_clip [4,1024,1024,3] bf16 NHWC", g_nchw((4, 1024, 1024, 3), torch.bfloat16), -1))
    out.append(("pixel_clip [8,3,2048,2048] fp32 NCHW", g_nchw((8, 3, 2048, 2048), torch.float32), 1))
    return out


def original_hook(g, tau, cd):
    """The original's hook arithmetic (reference_spec.md §2.3 type 0), eager."""
    ratio = tau / torch.abs(g)
    ratio[ratio > 1] = 1
    return g * torch.amin(ratio, dim=cd, keepdim=True)


def sweep(copy_gbs: float) -> None:
    print("\n## sweep of launch configurations (elements per program, warps) → µs")
    cands = [(e, w) for e in (1024, 2048, 4096, 8192, 16384) for w in (2, 4, 8, 16) if e // (32 * w) >= 4]
    for name, g, cd in pixel_cases()[:5]:
        d = cd % g.dim()
        layout = "channel_major" if g.stride(d) == 1 else "pixel_major"
        res = []
        for e, w in cands:
            cfg = dict(pc_mod.CONFIG)
            cfg[layout] = (e, w)
            t = us(lambda: pc_mod._pixel_clip_triton(g, TAU, "clip", "linf", d, None, False, config=cfg))
            res.append((t, e, w))
        res.sort()
        best = ", ".join(f"({e},{w}) {t:.1f}" for t, e, w in res[:4])
        print(f"{name} [{layout}] default {pc_mod.CONFIG[layout]}: best {best}; {2 * g.nbytes / (res[0][0] * 1e-6) / 1e9 / copy_gbs * 100:.0f}% of copy")
    for dtype in (torch.float32, torch.float16):
        ec, eu, nz = (torch.randn(8, 4, 128, 128, device=DEV).to(dtype) for _ in range(3))
        w = torch.rand(8, device=DEV)
        res = []
        for e, wp in cands:
            t = us(lambda: sd_mod._sds_grad_triton(ec, eu, nz, w, 100.0, "pgc", 0.0, None, None, config={"sds": (e, wp)}))
            res.append((t, e, wp))
        res.sort()
        print(f"sds_grad [8,4,128,128] {dtype} default {sd_mod.CONFIG['sds']}: best " + ", ".join(f"({e},{w}) {t:.2f}" for t, e, w in res[:4]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--commit", default=os.environ.get("PGC_COMMIT", ""))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_kernels.py needs a CUDA device")
        return 2
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip() or "unknown"
    name = torch.cuda.get_device_name()
    print(f"device {name}, torch {torch.__version__}, triton {triton.__version__}, commit {commit}")
    copy_gbs = copy_bandwidth()
    print(f"device-to-device copy: {copy_gbs:.0f} GB/s (read + write)")
    fails = 0 if args.no_check else check_all()
    if args.sweep:
        sweep(copy_gbs)

    rows = []  # (case, impl, µs, GB/s, %copy, speedup vs eager)

    def add(case, nbytes, impls):
        times = {}
        for impl, fn in impls:
            t0 = time.time()
            try:
                fn()  # compile / warm up
                times[impl] = us(fn)
            except Exception as e:  # noqa: BLE001 - report, keep benchmarking the rest
                print(f"{case} {impl}: failed: {type(e).__name__}: {str(e)[:200]}")
                continue
            print(f"  {case:42s} {impl:22s} {times[impl]:9.1f} µs   (setup {time.time() - t0:.1f} s)", flush=True)
        eager = times.get("eager reference")
        for impl, t in times.items():
            gbs = nbytes / (t * 1e-6) / 1e9
            rows.append((case, impl, t, gbs, 100 * gbs / copy_gbs, (eager / t) if eager else float("nan")))

    print("\n## timings")
    for case, g, cd in pixel_cases():
        impls = [
            ("ours (Triton)", lambda g=g, cd=cd: pk.pixel_clip(g, TAU, channel_dim=cd, backend="triton")),
            ("eager reference", lambda g=g, cd=cd: pixel_clip_reference(g, TAU, channel_dim=cd)),
            ("original hook (eager)", lambda g=g, cd=cd: original_hook(g, TAU, cd)),
        ]
        if not args.no_compile:
            comp = torch.compile(lambda x, cd=cd: pixel_clip_reference(x, TAU, channel_dim=cd))
            impls.append(("torch.compile(reference)", lambda g=g, comp=comp: comp(g)))
        if "fp32 NCHW" in case and "1024" in case:
            impls.insert(1, ("ours, return_stats", lambda g=g, cd=cd: pk.pixel_clip(g, TAU, channel_dim=cd, backend="triton", return_stats=True)))
            impls.insert(2, ("ours, variant=global", lambda g=g, cd=cd: pk.pixel_clip(g, TAU, variant="global", channel_dim=cd, backend="triton")))
        add(case, 2 * g.nbytes, impls)
        del g
    for dtype, dname in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        ec, eu, nz = (torch.randn(8, 4, 128, 128, device=DEV).to(dtype) for _ in range(3))
        w = torch.rand(8, device=DEV)
        nbytes = 3 * ec.nbytes + 4 * ec.numel()
        impls = [
            ("ours (Triton)", lambda: pk.sds_grad(ec, eu, nz, w, 100.0, backend="triton")),
            ("eager reference", lambda: sds_grad_reference(ec, eu, nz, w, 100.0)),
        ]
        if not args.no_compile:
            comp = torch.compile(lambda a, b, c, d: sds_grad_reference(a, b, c, d, 100.0))
            impls.append(("torch.compile(reference)", lambda comp=comp: comp(ec, eu, nz, w)))
        add(f"sds_grad [8,4,128,128] {dname} in, fp32 out", nbytes, impls)
    ec, eu, nz = (torch.randn(8, 4, 128, 128, device=DEV) for _ in range(3))
    w = torch.rand(8, device=DEV)
    impls = [
        ("ours (Triton, 2 phases)", lambda: pk.sds_grad(ec, eu, nz, w, 100.0, cfg_rescale=0.5, clamp=1.0, clip=0.5, backend="triton")),
        ("eager reference", lambda: sds_grad_reference(ec, eu, nz, w, 100.0, cfg_rescale=0.5, clamp=1.0, clip=0.5)),
    ]
    if not args.no_compile:
        comp = torch.compile(lambda a, b, c, d: sds_grad_reference(a, b, c, d, 100.0, cfg_rescale=0.5, clamp=1.0, clip=0.5))
        impls.append(("torch.compile(reference)", lambda: comp(ec, eu, nz, w)))
    # The minimum traffic with the rescale: phase 1 reads ε_c, ε_u; phase 2 reads all three and writes.
    add("sds_grad [8,4,128,128] fp32, rescale+clamp+clip", 5 * ec.nbytes + 4 * ec.numel(), impls)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"### pgc_kernels on {name} — commit `{commit}`, {date}",
        "",
        f"torch {torch.__version__}, triton {triton.__version__}; measured device-to-device copy {copy_gbs:.0f} GB/s "
        f"(bytes read + written); median of `triton.testing.do_bench` (L2 flushed between runs); GB/s counts the fewest "
        f"bytes each op must move. Device correctness check: {'passed' if fails == 0 else f'{fails} FAILED'}. "
        f"Command: `python benches/gpu_kernels.py{' --sweep' if args.sweep else ''}`.",
        "",
        "| case | implementation | µs | GB/s | % of copy BW | × vs eager reference |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, impl, t, gbs, pct, sp in rows:
        lines.append(f"| {case} | {impl} | {t:.1f} | {gbs:.0f} | {pct:.0f} % | {sp:.1f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    targets = ROOT / "benches" / "RESULTS.md", (Path(os.environ["OUT"]) / "RESULTS.md" if os.environ.get("OUT") else None)
    for path in targets:
        if path is None:
            continue
        if not path.exists():
            path.write_text("# Benchmark results\n\nGPU figures, each table produced by a committed command (named in the table's note).\n")
        with path.open("a") as f:
            f.write(table)
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
