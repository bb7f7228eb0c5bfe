"""GPU benchmark of one SDS texture step: the original PGC-3D pipeline (``pgc_fast.parity.original_step.OriginalStep``)
vs
ours (``pgc_fast.train.step.train_step``), in one process, on the same mesh, views, resolution and random
full-size SDXL + depth-ControlNet weights (``sdxl-random``).

Prints ms per step and per view, peak GPU memory and the ratios, then a per-component table (render fwd+bwd,
VAE encode forward, UNet + ControlNet, VAE encode backward, PGC, optimiser) of both pipelines beside each
component's floor (benches/RESULTS.md: 800 TFLOP/s, 2.99 TB/s). With ``--results FILE`` the tables are appended.

    python benches/bench_step.py --mesh /path/to/panda_spear_shield.obj --views 4 --results benches/RESULTS.md

Not a pytest file (it needs a GPU and several GB of weights); ``tests/pipeline`` covers the same code on the CPU.
"""

from __future__ import annotations

import datetime
import gc
import os
import statistics
import tempfile
import time

import torch
from triton.testing import do_bench

from _gpu_common import COMMAND_A, add_panda_args, commit, emit, out_file, panda_argv, script_parser, train_session

# FLOP floors per view at 1024² (the floors in benches/RESULTS.md): UNet CFG pair 13.5 TFLOP + ControlNet pair ~5
# TFLOP; VAE encoder
# forward ≈ 4.6 TFLOP, forward + input-backward ≈ 10.6 TFLOP.
PEAK_TFLOPS = 800.0
COPY_TBPS = 2.99
UNET_CN_TFLOP_PER_VIEW = 18.5
VAE_FWD_TFLOP_PER_VIEW = 4.6
VAE_FWDBWD_TFLOP_PER_VIEW = 10.6


def _sync_time(fn, iters: int, warmup: int) -> list[float]:
    """Per-step wall times (ms) with a device sync after each step (each step's ramp-up is included)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _pipelined_ms(fn, iters: int) -> float:
    """Mean ms per step over ``iters`` back-to-back steps and one sync at the end: what a training loop without
    host syncs pays (the host queues step k+1 while the GPU runs step k)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / iters


def build_config(
    mesh: str,
    views: int,
    res: int,
    iters: int,
    workspace: str,
    bg: str | None = None,
    model: str = "sdxl-random",
    device: str = "cuda",
):
    from pgc_fast import config as C
    from pgc_fast.cli import build_parser
    from pgc_fast.cli.generate import resolve_generate

    extra = ["--iters", str(iters)]
    args = build_parser().parse_args(
        panda_argv(COMMAND_A, mesh=mesh, model=model, device=device, workspace=workspace, extra=extra)
    )
    cfg, _notes = resolve_generate(args)
    over = {"optim.batch_size": views, "render.resolution": res}
    if bg:
        over["render.bg_image"] = bg
    return C.override(cfg, **over)


def reference_session(cfg, scene, views: int, res: int, model: str = "sdxl-random", device: str = "cuda"):
    from pgc_fast.fields import TextureField
    from pgc_fast.guidance import load_models
    from pgc_fast.parity.original_step import OriginalStep
    from pgc_fast.render import OrbitSampler

    dtype = torch.float16 if device == "cuda" else torch.float32
    bundle = load_models(model, controlnets=("depth",), device=torch.device(device), dtype=dtype)
    field = TextureField(bound=1.0).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    bg = torch.rand(3, res, res, device=device, generator=g)
    cad = bundle.unet.config.cross_attention_dim
    pdim = bundle.unet.config.projection_class_embeddings_input_dim - 6 * bundle.unet.config.addition_time_embed_dim
    emb = torch.randn(2, 77, cad, device=device, generator=g, dtype=dtype)
    pooled = torch.randn(2, pdim, device=device, generator=g, dtype=dtype)
    step_fn = OriginalStep(bundle, scene.rmesh, scene.renderer.backend, field, bg, emb, pooled, resolution=res)
    sampler = OrbitSampler(height=res)
    cam_gen = torch.Generator().manual_seed(0)

    def step():
        cams = sampler.sample(views, generator=cam_gen, device=device)
        step_fn(cams, g)

    return step, step_fn, bundle


def components_reference(step_fn, views: int, res: int) -> dict[str, float]:
    """Each stage of OriginalStep timed alone (ms, median), on the same shapes."""
    from pgc_fast.parity.original_step import original_pgc_hook
    from pgc_fast.render import OrbitSampler

    cams = OrbitSampler(height=res).sample(views, generator=torch.Generator().manual_seed(1), device="cuda")
    out = {}

    def render():
        img, _ = step_fn.render(cams)
        img.backward(torch.ones_like(img))

    out["render fwd+bwd"] = do_bench(render, warmup=20, rep=200, return_mode="median")
    vae = step_fn.vae
    x = torch.rand(views, 3, 1024, 1024, device="cuda", requires_grad=True)

    def vae_fwd():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            vae.encode(2 * x - 1).latent_dist.sample()

    def vae_fwdbwd():
        with torch.autocast("cuda", dtype=torch.float16):
            z = vae.encode(2 * x - 1).latent_dist.sample()
        z.backward(torch.ones_like(z))

    out["VAE encode fwd"] = do_bench(vae_fwd, warmup=5, rep=200, return_mode="median")
    out["VAE encode bwd"] = do_bench(vae_fwdbwd, warmup=5, rep=300, return_mode="median") - out["VAE encode fwd"]
    out["UNet + ControlNet"] = _unet_cn_ms(step_fn.unet, step_fn.controlnet, views, torch.float16)
    g = torch.randn(views, 3, res, res, device="cuda")
    hook = original_pgc_hook(0.1, None)
    out["PGC"] = do_bench(lambda: hook(g), warmup=20, rep=200, return_mode="median")
    out["optimiser"] = _adam_ms(step_fn.opt)
    return out


def components_ours(scene, objective, optimizer, views: int, res: int, autocast_dtype) -> dict[str, float]:
    from pgc_fast.render import OrbitSampler
    from pgc_kernels import pixel_clip

    cams = OrbitSampler(height=res).sample(views, generator=torch.Generator().manual_seed(1), device="cuda")
    gd = objective.guidance
    out = {}

    def render():
        with torch.autocast("cuda", dtype=autocast_dtype):
            r = scene.render(cams, train=True, step=0, generator=torch.Generator().manual_seed(0))
        r.image.backward(torch.ones_like(r.image))

    out["render fwd+bwd"] = do_bench(render, warmup=20, rep=200, return_mode="median")
    x = torch.rand(views, 3, 1024, 1024, device="cuda", requires_grad=True)

    def vae_fwd():
        with torch.no_grad():
            gd.encode(x)

    def vae_fwdbwd():
        z, _ = gd.encode(x)
        z.backward(torch.ones_like(z))

    out["VAE encode fwd"] = do_bench(vae_fwd, warmup=5, rep=200, return_mode="median")
    out["VAE encode bwd"] = do_bench(vae_fwdbwd, warmup=5, rep=300, return_mode="median") - out["VAE encode fwd"]
    out["UNet + ControlNet"] = _unet_cn_ms(gd.unet, gd.controlnet, views, gd.dtype)
    g = torch.randn(views, 3, res, res, device="cuda")
    out["PGC"] = do_bench(lambda: pixel_clip(g, 0.1, return_stats=True), warmup=20, rep=200, return_mode="median")
    out["optimiser"] = _adam_ms(optimizer)
    return out


def _unet_cn_ms(unet, cn, views, dtype) -> float:
    g = torch.Generator(device="cuda").manual_seed(0)
    b = 2 * views
    z = torch.randn(b, 4, 128, 128, device="cuda", dtype=dtype, generator=g)
    t = torch.randint(20, 500, (b,), device="cuda", generator=g)
    hid = torch.randn(b, 77, 2048, device="cuda", dtype=dtype, generator=g)
    add = {
        "text_embeds": torch.randn(b, 1280, device="cuda", dtype=dtype, generator=g),
        "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * b, device="cuda", dtype=dtype),
    }
    cond = torch.rand(b, 3, 1024, 1024, device="cuda", dtype=dtype, generator=g)

    @torch.no_grad()
    def call():
        down, mid = cn(z, t, hid, controlnet_cond=cond, added_cond_kwargs=add, return_dict=False)
        unet(z, t, hid, added_cond_kwargs=add, down_block_additional_residuals=down, mid_block_additional_residual=mid)

    return do_bench(call, warmup=5, rep=400, return_mode="median")


def _adam_ms(opt) -> float:
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
    state = {k: {n: (v.clone() if torch.is_tensor(v) else v) for n, v in s.items()} for k, s in opt.state.items()}
    ms = do_bench(opt.step, warmup=10, rep=100, return_mode="median")
    for k, s in state.items():  # leave the optimiser as it was
        opt.state[k] = s
    return ms


def floors(views: int, res: int, field_bytes: int) -> dict[str, float]:
    return {
        "render fwd+bwd": float("nan"),
        "VAE encode fwd": views * VAE_FWD_TFLOP_PER_VIEW / PEAK_TFLOPS * 1e3,
        "VAE encode bwd": views * (VAE_FWDBWD_TFLOP_PER_VIEW - VAE_FWD_TFLOP_PER_VIEW) / PEAK_TFLOPS * 1e3,
        "UNet + ControlNet": views * UNET_CN_TFLOP_PER_VIEW / PEAK_TFLOPS * 1e3,
        "PGC": views * 3 * res * res * 4 * 2 / (COPY_TBPS * 1e12) * 1e3,
        "optimiser": field_bytes * 7 / (COPY_TBPS * 1e12) * 1e3,  # read p, g, m, v; write p, m, v
    }


VARIANT_HELP = """ours' variants, comma-separated, each timed in this process against the one original run:
default | eager (--no-guidance.compile) | fp8 (--guidance.fp8) | attn-<cudnn|flash|efficient> (--guidance.attention)
| bf16 | fp16 (--optim.precision; fp16 brings its GradScaler) | any of these joined by '+' (e.g. fp8+attn-flash)"""


def variant_overrides(spec: str) -> dict:
    """A variant name (see VARIANT_HELP) → config overrides."""
    over: dict = {}
    for part in spec.split("+"):
        if part == "default":
            continue
        elif part == "eager":
            over["guidance.compile"] = False
        elif part == "fp8":
            over["guidance.fp8"] = True
        elif part.startswith("attn-"):
            over["guidance.attention"] = part[5:]
        elif part in ("bf16", "fp16"):
            over["optim.precision"] = part
        else:
            raise SystemExit(f"bench_step.py: --variants: unknown variant {part!r}; {VARIANT_HELP}")
    return over


def time_ours(cfg, a, with_components: bool) -> dict:
    """One of ours' variants: first step (compile), synced and pipelined ms, peak GiB, optional components."""
    torch.cuda.reset_peak_memory_stats()
    step, scene, objective, optimizer, ac_dtype = train_session(cfg, a.device)
    t0 = time.perf_counter()
    step()  # first step (compiles when compile is on)
    torch.cuda.synchronize()
    first_s = time.perf_counter() - t0
    ms = _sync_time(step, a.iters, a.warmup)
    res = {"first_s": first_s, "ms": statistics.median(ms), "pipe": _pipelined_ms(step, a.iters), "dtype": ac_dtype}
    res["peak"] = torch.cuda.max_memory_allocated() / 2**30
    res["comp"] = components_ours(scene, objective, optimizer, a.views, a.res, ac_dtype) if with_components else None
    res["field_bytes"] = sum(p.numel() * p.element_size() for g in optimizer.param_groups for p in g["params"])
    del objective, optimizer, step, scene
    gc.collect()
    torch.cuda.empty_cache()
    return res


def main(argv=None):
    ap = script_parser(__doc__)
    add_panda_args(ap, views=4, iters=8, warmup=3)
    ap.add_argument("--out", default=None, help="directory: write bench_step.md there")
    ap.add_argument("--skip-components", action="store_true")
    ap.add_argument("--skip-reference", action="store_true", help="time ours only")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="ours with guidance.compile (torch.compile of UNet + ControlNet; else eager)",
    )
    ap.add_argument("--compile-scope", default="blocks", choices=["blocks", "full"], help="with --compile")
    ap.add_argument("--variants", default="default", help=VARIANT_HELP)
    a = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    ws = tempfile.mkdtemp(prefix="bench_step_")
    cfg = build_config(a.mesh, a.views, a.res, 1000, os.path.join(ws, "run"), a.bg, a.model, a.device)
    from pgc_fast import config as C

    # Explicit either way (the CLI default is compile on CUDA): without --compile this times the eager step.
    cfg = C.override(cfg, **{"guidance.compile": a.compile, "guidance.compile_scope": a.compile_scope})
    if a.device != "cuda":  # smoke mode: exercise both pipelines end to end, no meaningful timings
        for name in ("synchronize", "reset_peak_memory_stats", "empty_cache"):
            setattr(torch.cuda, name, lambda *x, **k: None)
        torch.cuda.max_memory_allocated = lambda *x, **k: 1
        torch.cuda.memory_allocated = lambda *x, **k: 0
        a.skip_components = True
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    ours = {}
    for i, v in enumerate(variants):  # ours first (its scene also gives the reference the same mesh and rasteriser)
        ours[v] = time_ours(C.override(cfg, **variant_overrides(v)), a, i == 0 and not a.skip_components)
        print(f"ours {v}: {ours[v]['ms']:.1f} ms/step, first step {ours[v]['first_s']:.1f} s", flush=True)
    ref = None if a.skip_reference else time_reference(cfg, a)
    text = step_report(a, ours, ref)
    emit(text, a.results)
    emit(text, out_file(a.out, "bench_step.md"), quiet=True)


def time_reference(cfg, a) -> dict:
    """The original's step (pgc_fast.parity.original_step) on the same mesh, views and weights."""
    from pgc_fast.train.geometry import Scene

    scene = Scene.from_config(cfg, torch.device(a.device))
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    ref_step, ref_fn, bundle = reference_session(cfg, scene, a.views, a.res, a.model, a.device)
    ms = _sync_time(ref_step, a.iters, a.warmup)
    res = {"ms": statistics.median(ms), "pipe": _pipelined_ms(ref_step, a.iters)}
    res["peak"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    res["comp"] = None if a.skip_components else components_reference(ref_fn, a.views, a.res)
    return res


def step_report(a, ours: dict, ref: dict | None) -> str:
    dev = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    flags = (
        f"--views {a.views}{f' --compile --compile-scope {a.compile_scope}' if a.compile else ''}"
        f"{f' --variants {a.variants}' if a.variants != 'default' else ''}{' --skip-reference' if ref is None else ''}"
    )
    recipe = 1200 * 4 / a.views / 6e4  # minutes per ms of step, for 1200 4-view steps
    lines = [
        f"### SDS step, SDXL + depth ControlNet (`{a.model}`), {a.views} views at {a.res}² — {dev}, torch "
        f"{torch.__version__}, commit {commit()}, {datetime.date.today()} (`python benches/bench_step.py {flags}`)",
        "",
        "| pipeline | ms / step (synced) | ms / step (pipelined) | ms / view | peak GiB | first step s | "
        "1200 × 4-view recipe (steps only) | speed-up vs original |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if ref is not None:
        lines.append(
            f"| original (pgc_fast.parity.original_step, fp16 autocast) | {ref['ms']:.1f} | {ref['pipe']:.1f} | "
            f"{ref['ms'] / a.views:.1f} | {ref['peak']:.1f} | | {ref['ms'] * recipe:.1f} min | 1.00× |"
        )
    for v, o in ours.items():
        label = (
            f"pgc-fast (`train.step.train_step`, {str(o['dtype']).replace('torch.', '')}"
            f"{f', compiled UNet+CN ({a.compile_scope})' if a.compile and 'eager' not in v else ''}, variant `{v}`)"
        )
        speed = f"{ref['ms'] / o['ms']:.2f}×" if ref is not None else ""
        lines.append(
            f"| {label} | {o['ms']:.1f} | {o['pipe']:.1f} | {o['ms'] / a.views:.1f} | {o['peak']:.1f} | "
            f"{o['first_s']:.1f} | {o['ms'] * recipe:.1f} min | {speed} |"
        )
    lines += [
        "",
        f"synced: median of {a.iters} steps after {a.warmup} warm-up, a device sync after each; pipelined: {a.iters} "
        "back-to-back steps, one sync; the peak includes each pipeline's weights.",
        "",
    ]
    first = next(iter(ours.values()))
    if first["comp"] and ref is not None and ref["comp"]:
        fl = floors(a.views, a.res, first["field_bytes"])
        lines += ["| component | original ms | ours ms | floor ms |", "|---|---|---|---|"]
        for k in first["comp"]:
            lines.append(f"| {k} | {ref['comp'][k]:.2f} | {first['comp'][k]:.2f} | {fl[k]:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
