"""Cost of one Zero123 guidance step (``-O3``'s image term): ours vs the eager twin, in one process.

``zero123-random`` is the zero123-xl architecture (SD 1.x UNet with 8 input channels, SD VAE, CLIP ViT-L/14 image
tower, the 772 → 768 camera projection) with random weights: the timings and memory are the real model's, the
images are meaningless. Each step takes ``--views`` renders of ``--size``² (the original renders 512²) requiring
grad, resizes them to Zero123's 256², encodes them (VAE forward + backward) and runs the method:

* ``sds``: one UNet call on [uncond; cond] for all views, the SDS gradient;
* ``bgt``: BGT+ at the first step of a run (t = 0.681: the longest chain), a DDIM chain under CFG and one VAE
  decode for the image term.

Implementations:

* ours (:class:`pgc_fast.guidance.Zero123Guidance`): bf16 weights, regional torch.compile of the UNet (CUDA),
  the fused SDS kernel, the exact VAE levers, the x0 prediction for the chain's last step (3 UNet calls for
  [681, 431, 181, 0] where the original makes 4);
* twin (:class:`pgc_fast.parity.zero123_step.OriginalZero123`): the original's guidance/zero123_utils.py written
  its way — eager, stock modules, its double normalisation, DDIM ``scheduler.step`` chain and loss — in fp32 (what
  the original ran: "it cannot load into fp16") and in bf16 (to separate precision from the rest).

A parity line checks, on the fp32 weights, that ours with the parity switches (zero123_double_norm,
zero123_mirrored) gives the twin's SDS image gradient for the same random draws.

    python benches/gpu_zero123.py --views 4 --results benches/RESULTS.md        # H100: the RESULTS.md table
    python benches/gpu_zero123.py --views 4 --methods sds --ours default eager stock_vae eager_stock_vae
                                                   # where ours' SDS step loses to the eager twin (compile, VAE levers)
    python benches/gpu_zero123.py --model tiny-zero123 --device cpu --size 64 --iters 1 --warmup 0   # smoke
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from _gpu_common import commit, emit

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_ms(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in ms (CUDA events on a GPU, perf_counter on a CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def _inputs(a, device: torch.device, resolution: int):
    from pgc_fast.render import orbit_cameras

    g = torch.Generator().manual_seed(0)
    img = torch.rand(a.views, 3, a.size, a.size, generator=g).to(device).requires_grad_(True)
    phi = [360.0 * i / a.views + 15.0 for i in range(a.views)]
    cams = orbit_cameras([1.25] * a.views, [75.0] * a.views, phi, 1.025 * a.size, a.size, device=device)
    ref = torch.rand(1, 3, resolution, resolution, generator=g).to(device)  # the reference at Zero123's size
    return img, cams.c2w, ref


def ours_step(a, bundle, method: str, img, c2w, ref, *, compile_unet: bool, pgc_tau: float | None = 0.1, **switches):
    """One step of ours (PGC attached to the image, as a run does); ``switches`` are GuidanceConfig fields."""
    from pgc_fast.config import GuidanceConfig
    from pgc_fast.guidance import build_zero123_guidance

    cfg = GuidanceConfig(
        zero123=True,
        zero123_loss=method,
        zero123_guidance_scale=100.0,
        compile=compile_unet,
        pgc_tau=pgc_tau,
        **switches,
    )
    g = build_zero123_guidance(cfg, bundle, reference=ref, seed=0, iters=1000)

    def step():
        img.grad = None
        g.step(img, step=1, c2w=c2w).loss.backward()

    return step, g


def twin_step(bundle, method: str, img, c2w, ref, generator=None, pgc_tau: float | None = 0.1):
    """One step of the original's way, its eager PGC hook (the original's trainer) on the render."""
    from pgc_fast.guidance.methods.zero123 import relative_camera
    from pgc_fast.guidance.zero123 import REFERENCE_CENTRE
    from pgc_fast.parity.original_step import original_pgc_hook
    from pgc_fast.parity.zero123_step import OriginalZero123

    twin = OriginalZero123(bundle, generator=generator)
    emb = twin.get_img_embeds(ref)
    dT = relative_camera(c2w[:, :3, 3], torch.tensor(REFERENCE_CENTRE))

    def step():
        img.grad = None
        x = img.flip(-1)  # the original rendered the mirror image (its mirrored cameras)
        if pgc_tau is not None:
            x.register_hook(original_pgc_hook(pgc_tau, None))
        if method == "sds":
            loss = twin.train_step(emb, x, dT, t_range=(0.02, 0.5))
        else:
            loss = twin.train_step_BGT(emb, x, dT, t=0.681)
        loss.backward()

    return step


def parity(a, device: torch.device) -> tuple[str, int]:
    """ours (fp32, parity switches, no compile) vs the fp32 twin: max |d grad| / max |grad| of the SDS step; and
    the model's image resolution."""
    from pgc_fast.guidance import load_zero123

    bundle = load_zero123(a.model, device=device, dtype=torch.float32, seed=0)
    img, c2w, ref = _inputs(a, device, bundle.resolution)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # the maths, in true fp32
    try:
        gen = torch.Generator(device).manual_seed(0)
        twin_step(bundle, "sds", img, c2w, ref, generator=gen, pgc_tau=None)()
        theirs = img.grad.clone()
        # the stock modules (no VAE levers, no compile, no PGC): this compares the arithmetic, not the kernels
        switches = dict(fast_vae=False, zero123_double_norm=True, zero123_mirrored=True)
        step, _ = ours_step(a, bundle, "sds", img, c2w, ref, compile_unet=False, pgc_tau=None, **switches)
        step()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    rel = float((img.grad - theirs).abs().max() / theirs.abs().max().clamp_min(1e-30))
    res = bundle.resolution
    del bundle
    return f"{rel:.2e} ({'pass' if rel < a.parity_tol else 'FAIL'}, tolerance {a.parity_tol:g})", res


OURS_VARIANTS = {  # name → (compile on a GPU, GuidanceConfig switches): where ours' per-step time goes
    "default": (True, {}),
    "eager": (False, {}),
    "stock_vae": (True, {"fast_vae": False}),
    "eager_stock_vae": (False, {"fast_vae": False}),
}


def _label(variant: str | None, a, device: torch.device) -> str:
    """The table's name of one implementation: ``twin``, or ours in one of OURS_VARIANTS."""
    if variant is None:
        return "twin"
    if variant != "default":
        return f"ours ({variant})"
    return "ours (compiled)" if a.compile and device.type == "cuda" else "ours"


def measure(a, device: torch.device) -> list[tuple]:
    from pgc_fast.guidance import load_zero123

    rows = []
    for variant, dname in [(v, a.dtype) for v in a.ours] + [(None, d) for d in a.twin_dtypes]:
        impl = _label(variant, a, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        bundle = load_zero123(a.model, device=device, dtype=DTYPES[dname], seed=0)
        for method in a.methods:
            img, c2w, ref = _inputs(a, device, bundle.resolution)  # a fresh image: no hook of a previous run
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if variant is not None:
                compiled, switches = OURS_VARIANTS[variant]
                on = a.compile and compiled and device.type == "cuda"
                step, _ = ours_step(a, bundle, method, img, c2w, ref, compile_unet=on, **switches)
            else:
                step = twin_step(bundle, method, img, c2w, ref)
            ms = cuda_ms(step, a.iters, a.warmup, device)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            finite = bool(torch.isfinite(img.grad).all())
            rows.append((impl, method, dname, ms, peak, finite))
            print(f"[{impl} {method} {dname}] {ms:.1f} ms/step, peak {peak:.2f} GiB, grad finite {finite}", flush=True)
        del bundle
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="zero123-random")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--size", type=int, default=512, help="render size fed to the guidance (resized to 256)")
    p.add_argument("--methods", nargs="*", default=["sds", "bgt"], choices=["sds", "bgt"])
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="our weights dtype")
    p.add_argument("--twin-dtypes", nargs="*", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--no-compile", dest="compile", action="store_false", help="ours without torch.compile")
    p.add_argument(
        "--ours", nargs="*", default=["default"], choices=sorted(OURS_VARIANTS),
        help="ours' variants: default, eager (no compile), stock_vae (no VAE levers), eager_stock_vae",
    )  # fmt: skip
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--parity-tol", type=float, default=1e-3, help="max |Δgrad| / max |grad| (CFG 100 amplifies)")
    p.add_argument("--results", default=None, help="append the table to this markdown file")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name} | torch {torch.__version__} | commit {commit()}", flush=True)
    par, res = parity(a, device)
    rows = measure(a, device)
    base = {m: ms for impl, m, d, ms, _, _ in rows if impl == "twin" and d == "fp32"}
    lines = [
        f"### Zero123 guidance step — {name}, torch {torch.__version__}, commit {commit()} "
        f"(`python benches/gpu_zero123.py --model {a.model} --views {a.views} --size {a.size}"
        f"{' --ours ' + ' '.join(a.ours) if a.ours != ['default'] else ''}`)",
        "",
        f"{a.views} views of {a.size}² → {res}², median of {a.iters} after {a.warmup} warm-up; BGT+ at t = 0.681. "
        f"Parity (ours with the parity switches vs the fp32 twin, SDS image gradient): {par}.",
        "",
        "| implementation | method | weights | ms / step | vs twin fp32 | peak GiB | grad finite |",
        "|---|---|---|---|---|---|---|",
    ]
    for impl, m, d, ms, peak, fin in rows:
        ratio = f"{base[m] / ms:.2f}×" if m in base else "-"
        lines.append(f"| {impl} | {m} | {d} | {ms:.1f} | {ratio} | {peak:.2f} | {fin} |")
    emit("\n".join(lines), a.results)
    return 0 if "pass" in par and all(r[5] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
