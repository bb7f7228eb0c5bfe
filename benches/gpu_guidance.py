"""End-to-end guidance step on the GPU: VAE encode (fwd + bwd), UNet + ControlNet on [uncond; cond] × views,
fused SDS gradient, PGC hook on the image gradient. Prints ms/step, a breakdown and peak memory.

    python benches/gpu_guidance.py --model sdxl-random --controlnet depth --views 4 --size 1024

``sdxl-random`` = full-size SDXL architecture with random weights (no download): timings and memory are those of
the real model; the images are meaningless. Also checks the "no host sync inside a step" rule with
``torch.cuda.set_sync_debug_mode`` and reports the attention processor in use (SDPA).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch


def cuda_ms(fn, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():  # CPU smoke run of this script (tiny models): wall clock
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) / iters * 1e3
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    from pgc_fast.config import GuidanceConfig
    from pgc_fast.guidance import build_guidance, load_models, resolve_dtype

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sdxl-random")
    p.add_argument("--controlnet", nargs="*", default=["depth"])
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--methods", nargs="*", default=["sds"], help="sds csd ssd bgt vsd (vsd last: it adds a LoRA)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile-vae", action="store_true", help="torch.compile the VAE encoder")
    p.add_argument("--channels-last", nargs="*", default=["0"], help="0 and/or 1: run each method in each format")
    p.add_argument(
        "--fast-vae",
        nargs="*",
        default=["1"],
        help="0 and/or 1: stock VAE and/or pgc_fast.guidance.models.accel levers",
    )
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if not cuda:  # let the script run end to end on a CPU with tiny models (no timings worth reporting)
        for name in ("synchronize", "reset_peak_memory_stats", "empty_cache", "set_sync_debug_mode"):
            setattr(torch.cuda, name, lambda *x, **k: None)
        torch.cuda.max_memory_allocated = lambda *x, **k: 0
    print(f"device: {torch.cuda.get_device_name(dev) if cuda else 'cpu'} | torch {torch.__version__}", flush=True)
    rows = []
    models = None
    runs = [(m, cl == "1", fv == "1") for m in a.methods for cl in a.channels_last for fv in a.fast_vae]
    for method, channels_last, fast_vae in runs:
        cn = tuple(a.controlnet) if method != "vsd" else ()
        cfg = GuidanceConfig(
            model=a.model,
            controlnets=cn,
            loss=method,
            channels_last=channels_last,
            compile=False,
            compile_vae=a.compile_vae,
            fast_vae=fast_vae,
            dir_text=True,
            text="a panda holding a spear and a shield",
            negative="",
            pgc_tau=0.1,
            guidance_scale=7.5 if method == "vsd" else 100.0,
        )
        t0 = time.perf_counter()
        if (
            models is None
            or method == "vsd"
            or cn != tuple(models.control_types)
            or not channels_last
            or a.compile_vae
            or fast_vae
            or len(a.fast_vae) > 1
        ):  # the levers patch the VAE in place: reload
            models = None
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            models = load_models(a.model, controlnets=cn, device=dev, dtype=resolve_dtype(a.dtype, dev))
        g = build_guidance(cfg, models, seed=0, iters=1000)
        torch.cuda.synchronize()
        t_load = time.perf_counter() - t0
        attn = {type(m.processor).__name__ for m in g.unet.modules() if hasattr(m, "processor")}
        b, s = a.views, a.size
        gen = torch.Generator(dev).manual_seed(0)
        img = torch.rand(b, 3, s, s, device=dev, generator=gen).requires_grad_(True)
        yy, xx = torch.meshgrid(
            torch.linspace(-1, 1, s, device=dev), torch.linspace(-1, 1, s, device=dev), indexing="ij"
        )
        mask = ((xx**2 + yy**2) < 0.5).float()[None, None].expand(b, 1, s, s).contiguous()
        depth = (2.5 - (0.5 - xx**2 - yy**2).clamp_min(0))[None, None].expand(b, 1, s, s).contiguous()
        az = torch.linspace(0, 360, b + 1, device=dev)[:b]
        polar = torch.full((b,), 70.0, device=dev)
        c2w = torch.eye(4, device=dev).expand(b, 4, 4)
        state = {"step": 1}

        def full_step():
            img.grad = None
            out = g.step(img, step=state["step"], azimuth_deg=az, polar_deg=polar, c2w=c2w, depth=depth, mask=mask)
            out.loss.backward()
            state["step"] += 1

        torch.cuda.reset_peak_memory_stats(dev)
        ms = cuda_ms(full_step, a.iters, a.warmup)
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
        # host-sync check: one step with the sync debugger on (it warns on every synchronising call)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                full_step()
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = [str(w.message).splitlines()[0] for w in caught if "called a synchronizing" in str(w.message)]
        torch.cuda.synchronize()

        # breakdown (same shapes): VAE encode fwd+bwd alone; UNet(+ControlNet) forward on 2B alone
        def vae_only():
            img.grad = None
            z, _ = g.encode(img)
            z.float().sum().backward()

        ms_vae = cuda_ms(vae_only, a.iters, 2)
        with torch.no_grad():
            z, _ = g.encode(img)
        ids = g.prompt_rows(b, az, polar)
        ctrls = g.control_images(img, depth, mask, None)
        t = torch.full((b,), 300, device=dev, dtype=torch.long)
        ms_unet = cuda_ms(lambda: g.predict_cfg(z.float(), t, ids, ctrls, (s, s)), a.iters, 2)
        fin = bool(torch.isfinite(img.grad).all()) if img.grad is not None else False
        stats = g.pgc_stats.get("rgb")
        frac = float(stats.fraction_clipped) if stats is not None else float("nan")
        rows.append(
            (
                method
                + (" NHWC" if channels_last else "")
                + (" compiled-VAE" if a.compile_vae else "")
                + (" fast-VAE" if fast_vae else " stock-VAE"),
                "+".join(cn) or "-",
                ms,
                ms_vae,
                ms_unet,
                peak,
                t_load,
                len(syncs),
                fin,
                frac,
            )
        )
        print(
            f"[{method}] attention processors: {sorted(attn)}; sync warnings in one step: {len(syncs)} {syncs[:3]}",
            flush=True,
        )
        g = None  # free the guidance (and VSD's LoRA state) before the next configuration
        torch.cuda.empty_cache()
    print(
        f"\nmodel={a.model} views={a.views} size={a.size} dtype={a.dtype} (median of {a.iters} after {a.warmup} "
        f"warm-up)"
    )
    print(
        "| method | controlnet | step ms | VAE enc fwd+bwd ms | UNet(+CN) fwd ms | peak GiB | load s | host "
        "syncs/step | grad finite | PGC frac clipped |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.1f} | {r[7]} | {r[8]} | "
            f"{r[9]:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
