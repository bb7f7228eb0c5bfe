"""GPU exploration (issues 8 and 21): the SDXL UNet + depth ControlNet call of one SDS step (4 views × CFG =
batch 8, 128² latents, no grad). Real architectures, random weights, one process; every variant's output is
compared with the first variant's (eager, same weights, same dtype).

    python benches/gpu_unet_levers.py [--variants eager,blocks,...] [--sdpa-table] [--gemm-table] [--profile]
                                      [--results FILE] [--out DIR]
    python benches/gpu_unet_levers.py --device cpu --model tiny-sdxl --variants eager,sdpa_math,fp8,fp8_all
                                                                              # CPU smoke of the script (FP8 twin)

Variants (bf16 unless --dtype fp16):
  eager            stock diffusers modules, NCHW
  cudnn_benchmark  same, torch.backends.cudnn.benchmark = True
  graph            eager call captured once in a CUDA graph and replayed (no host launch cost)
  fused_gn_cl      Triton GroupNorm+SiLU (pgc_kernels.group_norm_silu), channels_last
  sdpa_<backend>   eager, every attention pinned to one SDPA backend (cudnn, flash, efficient, math;
                   pgc_fast.guidance.models.accel.use_sdpa_backend, i.e. --guidance.attention)
  fp8[_opts]       eager on a copy with pgc_fast.guidance.models.fp8.use_fp8; opts joined by '_': tensor
                   (per-tensor activation scales), fastacc (Hopper fast accumulation), 1x1 / all (convolutions
                   too), blocks (then regional compile): e.g. fp8_1x1_blocks is --guidance.fp8 as it runs
  blocks           pgc_fast.guidance.models.accel.compile_blocks (regional torch.compile); 'first call s' is the compile
  blocks_graph     blocks, captured in a CUDA graph
  blocks_cl        blocks, channels_last
  full             torch.compile of the whole UNet and ControlNet (minutes of compile)
  cblocks[_opts]   compile_blocks on a fresh copy (dynamo's caches reset first); opts joined by '_': cl
                   (channels_last before compiling, so inductor compiles for NHWC weights), freeze (inductor
                   freezing: weights become constants, conv weights pre-laid-out; valid since no gradient flows),
                   autotune (mode max-autotune-no-cudagraphs: Triton GEMM templates that can take the GEGLU and
                   bias epilogues, benchmarked against cuBLAS per shape; minutes of compile)
--sdpa-table: each SDPA backend alone at the UNet's attention shapes (head dim 64), time and error against a
float32 math-backend reference (exact = within 2× the bf16 math backend's own error).
--gemm-table: bf16 matmul vs FP8 _scaled_mm (with and without the activation quantisation) at the UNet's GEMM
shapes. --profile prints where the eager and blocks calls' GPU time goes.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import re
import statistics
import time

import torch

from _gpu_common import commit, emit, out_file, sync

CATEGORIES = [  # first match wins; patterns are matched against CUDA kernel names
    ("attention", r"flash|fmha|attention|sdpa"),
    ("layout (NCHW<->NHWC, copies)", r"nchwToNhwc|nhwcToNchw|copy_|CatArray|transpose|permute|contiguous"),
    ("convolution", r"conv|cudnn|xmma_fprop|implicit|dgrad|wgrad|fprop|nhwc|winograd"),
    ("GEMM (linear)", r"gemm|cutlass|nvjet|xmma_gemm|sm90_xmma|cublas|ampere_|hopper_|s16816|wgmma|f8f8"),
    (
        "GroupNorm / LayerNorm",
        r"group_norm|layer_norm|GroupNorm|LayerNorm|batch_norm|welford|RowwiseMoments|ComputeFused",
    ),
    ("triton (inductor fused)", r"^triton_"),
]
SDPA_BACKENDS = ("cudnn", "flash", "efficient", "math")


def categorise(name: str) -> str:
    for cat, pat in CATEGORIES:
        if re.search(pat, name, flags=re.I):
            return cat
    return "elementwise / other"


def bench_ms(fn, device: str, rep_ms: int = 600) -> float:
    """Median ms of ``fn``: triton's do_bench on CUDA, a few timed calls on the CPU (smoke runs)."""
    if device == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=20, rep=rep_ms, return_mode="median")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profile(fn, iters: int = 3) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    fn()
    torch.cuda.synchronize()
    with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    per_kernel: dict[str, float] = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            per_kernel[ev.name] = per_kernel.get(ev.name, 0.0) + ev.device_time / 1e3 / iters  # ms per call
    total = sum(per_kernel.values())
    cats: dict[str, float] = {}
    for k, v in per_kernel.items():
        cats[categorise(k)] = cats.get(categorise(k), 0.0) + v
    lines = [f"GPU kernel time per call: {total:.1f} ms", "", "| category | ms per call | share |", "|---|---|---|"]
    lines += [f"| {c} | {v:.1f} | {100 * v / total:.0f} % |" for c, v in sorted(cats.items(), key=lambda kv: -kv[1])]
    lines += ["", "| top kernels | ms per call |", "|---|---|"]
    for k, v in sorted(per_kernel.items(), key=lambda kv: -kv[1])[:15]:
        lines.append(f"| `{k[:110]}` | {v:.2f} |")
    return "\n".join(lines)


def graphed(fn):
    """Capture ``fn`` (static inputs) in a CUDA graph; returns a replay function and the captured output."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    return g.replay, out


# ------------------------------------------------------------------------------------------ micro tables
def _attention_shapes(views: int, latent: int, sdxl: bool) -> list[tuple[str, tuple, tuple]]:
    """(name, q shape, kv shape) of the UNet's attention calls, self and cross (77 text tokens) per level: SDXL has
    head dim 64 (10 heads at latent/2, 20 at latent/4), SD 1.5 has 8 heads of 40, 80, 160."""
    b = 2 * views
    if sdxl:
        levels = [(latent // 2, 10, 64), (latent // 4, 20, 64)]
    else:
        levels = [(latent, 8, 40), (latent // 2, 8, 80), (latent // 4, 8, 160)]
    out = []
    for side, heads, d in levels:
        n = side * side
        out.append((f"self {side}²", (b, heads, n, d), (b, heads, n, d)))
        out.append((f"cross {side}²×77", (b, heads, n, d), (b, heads, 77, d)))
    return out


def sdpa_table(views: int, latent: int, sdxl: bool, dtype: torch.dtype, device: str) -> tuple[str, dict]:
    """Each SDPA backend at the UNet's attention shapes: ms and ‖out − ref‖/‖ref‖ with ref = the math backend in
    float32 (TF32 off). 'exact' = error ≤ 2 × the math backend's own error at ``dtype`` + 1e-4."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from pgc_fast.guidance.models.accel import SDPA_BACKENDS as NAMES

    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator(device=device).manual_seed(0)
    rows, best = [], {}
    for name, qs, ks in _attention_shapes(views, latent, sdxl):
        q = torch.randn(qs, device=device, dtype=dtype, generator=g)
        k, v = (torch.randn(ks, device=device, dtype=dtype, generator=g) for _ in range(2))
        with sdpa_kernel(SDPBackend.MATH):
            ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
            own = float((F.scaled_dot_product_attention(q, k, v).float() - ref).norm() / ref.norm())
        cells = []
        for b in ("auto", *SDPA_BACKENDS):
            ctx = sdpa_kernel(getattr(SDPBackend, NAMES[b])) if b != "auto" else torch.autocast(device, enabled=False)
            try:
                with ctx:
                    out = F.scaled_dot_product_attention(q, k, v)
                    err = float((out.float() - ref).norm() / ref.norm())

                    def call(q=q, k=k, v=v):
                        F.scaled_dot_product_attention(q, k, v)

                    ms = bench_ms(call, device, rep_ms=200)
                exact = err <= 2 * own + 1e-4
                cells.append(f"{ms:.3f} ({err:.1e}{'' if exact else ' NOT exact'})")
                if b != "auto" and exact and ms < best.get(name, (None, float("inf")))[1]:
                    best[name] = (b, ms)
            except RuntimeError as e:  # "No available kernel" and the like
                cells.append(f"n/a ({str(e).splitlines()[0][:40]})")
        rows.append(f"| {name} {list(qs)} | {own:.1e} | " + " | ".join(cells) + " |")
    torch.backends.cuda.matmul.allow_tf32 = True
    head = f"| shape (q) | math {str(dtype)[6:]} own err | " + " | ".join(("auto", *SDPA_BACKENDS)) + " |"
    lines = [
        f"SDPA backends at the UNet's attention shapes, {str(dtype)[6:]}: ms (‖out − ref‖/‖ref‖ vs float32 math):",
        "",
        head,
        "|---|---|" + "---|" * (1 + len(SDPA_BACKENDS)),
        *rows,
        "",
        "Fastest exact backend per shape: " + ", ".join(f"{k} → {v[0]} ({v[1]:.3f} ms)" for k, v in best.items()),
    ]
    return "\n".join(lines), best


def gemm_table(views: int, device: str) -> str:
    """bf16 matmul vs FP8 (_scaled_mm, row-wise scales) at SDXL's transformer GEMM shapes (4 views × CFG)."""
    from pgc_fast.guidance.models import fp8

    b = 2 * views
    shapes = [  # (what, M, K, N)
        ("attn proj 64²", b * 4096, 640, 640),
        ("GEGLU in 64²", b * 4096, 640, 5120),
        ("FF out 64²", b * 4096, 2560, 640),
        ("attn proj 32²", b * 1024, 1280, 1280),
        ("GEGLU in 32²", b * 1024, 1280, 10240),
        ("FF out 32²", b * 1024, 5120, 1280),
    ]
    lines = [
        "| GEMM [M, K] × [K, N] | bf16 ms | TFLOP/s | FP8 mm only ms | TFLOP/s | same, fast accum ms | "
        "FP8 + act. quantise ms | speed-up | ‖err‖/‖bf16‖ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    g = torch.Generator(device=device).manual_seed(0)
    for what, m, k, n in shapes:
        x = torch.randn(m, k, device=device, dtype=torch.bfloat16, generator=g)
        lin = torch.nn.Linear(k, n, device=device, dtype=torch.bfloat16).requires_grad_(False)
        f8 = fp8.FP8Linear(lin)
        xq, xs = fp8.quantize_rows(x)
        f8(x)  # compiles the stand-alone quantiser for this shape before timing

        def mm(fast: bool, xq=xq, xs=xs, f8=f8, bias=lin.bias):
            return torch._scaled_mm(
                xq, f8.weight_fp8.t(), scale_a=xs, scale_b=f8.weight_scale, bias=bias, out_dtype=torch.bfloat16,
                use_fast_accum=fast,
            )  # fmt: skip

        ms_bf = bench_ms(lambda: lin(x), device, 300)
        ms_mm = bench_ms(lambda: mm(False), device, 300)
        ms_fast = bench_ms(lambda: mm(True), device, 300)
        ms_all = bench_ms(lambda: f8(x), device, 300)
        ref = lin(x).float()
        err = float((f8(x).float() - ref).norm() / ref.norm())
        tf = 2 * m * k * n / 1e9
        lines.append(
            f"| {what} [{m}, {k}] × [{k}, {n}] | {ms_bf:.3f} | {tf / ms_bf:.0f} | {ms_mm:.3f} | {tf / ms_mm:.0f} | "
            f"{ms_fast:.3f} | {ms_all:.3f} | {ms_bf / ms_all:.2f}× | {err:.1e} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the UNet call
def make_inputs(bundle, views: int, dtype: torch.dtype, device: str) -> dict:
    unet = bundle.unet
    b = 2 * views
    latent = bundle.resolution // 8
    g = torch.Generator(device=device).manual_seed(0)
    inp = {
        "z": torch.randn(b, 4, latent, latent, device=device, dtype=dtype, generator=g),
        "t": torch.randint(20, 500, (b,), device=device, generator=g),
        "hid": torch.randn(b, 77, unet.config.cross_attention_dim, device=device, dtype=dtype, generator=g),
        "cond": torch.rand(b, 3, bundle.resolution, bundle.resolution, device=device, dtype=dtype, generator=g),
        "add": None,
    }
    if bundle.is_sdxl:
        pdim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        r = float(bundle.resolution)
        inp["add"] = {
            "text_embeds": torch.randn(b, pdim, device=device, dtype=dtype, generator=g),
            "time_ids": torch.tensor([[r, r, 0, 0, r, r]] * b, device=device, dtype=dtype),
        }
    return inp


def make_step(unet, cn, inp, fmt=torch.contiguous_format):
    z = inp["z"].contiguous(memory_format=fmt)
    cond = inp["cond"].contiguous(memory_format=fmt)

    @torch.no_grad()
    def step():
        down, mid = cn(z, inp["t"], inp["hid"], controlnet_cond=cond, added_cond_kwargs=inp["add"], return_dict=False)
        return unet(
            z,
            inp["t"],
            inp["hid"],
            added_cond_kwargs=inp["add"],
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample

    return step


def _weight_gib(*mods) -> float:
    return sum(t.numel() * t.element_size() for m in mods for t in [*m.parameters(), *m.buffers()]) / 2**30


def fp8_models(base, name: str, device: str):
    """A copy of the (uncompiled) base UNet + ControlNet with use_fp8 per the variant's options."""
    from pgc_fast.guidance.models.accel import compile_blocks
    from pgc_fast.guidance.models.fp8 import use_fp8

    opts = name.split("_")[1:]
    convs = "all" if "all" in opts else ("1x1" if "1x1" in opts else "none")
    kw = {
        "convs": convs,
        "act_scale": "tensor" if "tensor" in opts else "row",
        "fast_accum": "fastacc" in opts,
        "emulate": device != "cuda",
    }
    unet, cn = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    n = use_fp8(unet, **kw) + use_fp8(cn, **kw)
    if "blocks" in opts:
        compile_blocks(unet)
        compile_blocks(cn)
    return unet, cn, f"{n} layers, convs={convs}"


def compiled_copy(base, name: str):
    """A copy of the (uncompiled) base UNet + ControlNet, compiled by regions with the variant's options."""
    import torch._inductor.config as icfg

    from pgc_fast.guidance.models.accel import compile_blocks

    opts = name.split("_")[1:]
    torch._dynamo.reset()  # no compiled block of another variant may be reused (their guards assume NCHW weights)
    icfg.freezing = "freeze" in opts
    unet, cn = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    if "cl" in opts:
        unet.to(memory_format=torch.channels_last)
        cn.to(memory_format=torch.channels_last)
    kw = {"mode": "max-autotune-no-cudagraphs"} if "autotune" in opts else {}
    n = compile_blocks(unet, **kw) + compile_blocks(cn, **kw)
    how = ["channels_last" if "cl" in opts else "NCHW"] + [o for o in ("freeze", "autotune") if o in opts]
    return unet, cn, f"{n} blocks, {', '.join(how)}"


def pin_sdpa(models, backend: str | None) -> None:
    """Pin (or, with None, restore diffusers' stock processor on) every attention of ``models``."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from pgc_fast.guidance.models.accel import use_sdpa_backend

    for m in models:
        if backend is not None:
            use_sdpa_backend(m, backend)
        else:
            for a in m.modules():
                if isinstance(a, Attention):
                    a.set_processor(AttnProcessor2_0())


def run_variant(v: str, state: dict, a) -> tuple[str, str | None]:
    """One variant: (table row, optional profile text)."""
    import torch._inductor.config as icfg

    from pgc_fast.guidance.models.accel import compile_blocks, use_fused_group_norm

    dev, unet, cn, inp = a.device, state["unet"], state["cn"], state["inp"]
    note = ""
    if dev == "cuda":
        torch.backends.cudnn.benchmark = v == "cudnn_benchmark"
    icfg.freezing = False  # only a cblocks_…freeze variant compiles with it (compiled_copy)
    if v.startswith("fp8"):
        unet, cn, note = fp8_models(state["base"], v, dev)
    elif v.startswith("cblocks"):
        unet, cn, note = compiled_copy(state["base"], v)
    else:
        if v.startswith("blocks") and not state["blocks"]:
            n = compile_blocks(unet) + compile_blocks(cn)
            state["blocks"] = True
            print(f"compile_blocks: {n} blocks", flush=True)
        if v == "fused_gn_cl" and not state["fused"]:
            use_fused_group_norm(unet)
            use_fused_group_norm(cn)
            state["fused"] = True
    copied = v.startswith(("fp8", "cblocks"))
    want_fmt = torch.channels_last if "_cl" in v else torch.contiguous_format  # blocks_cl, fused_gn_cl, cblocks_cl…
    if want_fmt != state["fmt"] and not copied:
        unet.to(memory_format=want_fmt)
        cn.to(memory_format=want_fmt)
        state["fmt"] = want_fmt
    if v.startswith("sdpa_"):
        pin_sdpa((unet, cn), v.split("_", 1)[1])
    step = make_step(unet, cn, inp, want_fmt)
    if v == "full":
        step = make_step(torch.compile(unet, dynamic=False), torch.compile(cn, dynamic=False), inp)
    try:
        row, prof = _time_variant(v, step, (unet, cn), state, a, note)
    except RuntimeError as e:  # an SDPA backend that cannot run a shape, a compile failure: say so, go on
        row, prof = f"| {v} | failed: {str(e).splitlines()[0][:100]} | | | |", None
    if v.startswith("sdpa_"):
        pin_sdpa((unet, cn), None)
    return row, prof


def _time_variant(v, step, mods, state, a, note):
    dev = a.device
    sync(dev)
    t0 = time.perf_counter()
    out = step()
    sync(dev)
    first_s = time.perf_counter() - t0
    fn = step
    if v.endswith("graph"):
        fn, out = graphed(step)
        fn()
    base_alloc = 0.0
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_alloc = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base_alloc) / 2**30 + _weight_gib(*mods) if dev == "cuda" else 0.0
    ms = bench_ms(fn, dev)
    if state["ref"] is None:  # the first variant (eager) is the reference output
        state["ref"] = out.float().clone()
    err = float((out.float() - state["ref"]).norm() / state["ref"].norm())
    row = f"| {v}{f' ({note})' if note else ''} | {ms:.1f} | {peak:.1f} | {first_s:.1f} | {err:.1e} |"
    prof = None
    if a.profile and dev == "cuda" and v in ("eager", "blocks", "fp8_1x1_blocks", "fp8_blocks", "cblocks_cl"):
        prof = f"**Where the `{v}` call's GPU time goes** (torch.profiler, CUDA kernels, mean of 3 calls):\n\n"
        prof += profile(fn)
    return row, prof


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="eager,blocks")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--model", default="sdxl-random")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sdpa-table", action="store_true")
    ap.add_argument("--gemm-table", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--results", default=None, help="append the tables to this markdown file")
    ap.add_argument("--out", default=None, help="directory: write gpu_unet_levers.md there")
    a = ap.parse_args(argv)
    from pgc_fast.guidance.models.builtin import build_builtin

    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    if a.device != "cuda":
        dtype = torch.float32
    variants = [s.strip() for s in a.variants.split(",") if s.strip()]
    t_build = time.perf_counter()
    bundle = build_builtin(a.model, control_types=("depth",), device=a.device, dtype=dtype)
    print(f"built {a.model} UNet + depth ControlNet in {time.perf_counter() - t_build:.1f} s", flush=True)
    inp = make_inputs(bundle, a.views, dtype, a.device)
    state = {"unet": bundle.unet, "cn": bundle.controlnet, "inp": inp, "ref": None, "blocks": False, "fused": False}
    state["fmt"] = torch.contiguous_format
    # pristine copies for the FP8 variants (taken before anything is compiled or converted in place)
    state["base"] = (
        (copy.deepcopy(bundle.unet), copy.deepcopy(bundle.controlnet))
        if any(v.startswith(("fp8", "cblocks")) for v in variants)
        else None
    )
    dev_name = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    extra = []
    if a.sdpa_table:
        text, _ = sdpa_table(a.views, inp["z"].shape[-1], bundle.is_sdxl, dtype, a.device)
        extra.append(text)
        print(text, flush=True)
    if a.gemm_table and a.device == "cuda":
        extra.append(gemm_table(a.views, a.device))
        print(extra[-1], flush=True)
    rows = []
    for v in variants:
        row, prof = run_variant(v, state, a)
        rows.append(row)
        print(row, flush=True)
        if prof:
            extra.append(prof)
            print(prof, flush=True)
    b = 2 * a.views
    text = "\n".join(
        [
            f"### {a.model} UNet + depth ControlNet, batch {b} ({a.views} views × CFG), no grad, {str(dtype)[6:]} — "
            f"{dev_name}, torch {torch.__version__}, commit {commit()}, {datetime.date.today()} "
            f"(`python benches/gpu_unet_levers.py --variants {a.variants}"
            f"{' --sdpa-table' if a.sdpa_table else ''}{' --gemm-table' if a.gemm_table else ''}"
            f"{' --profile' if a.profile else ''}`)",
            "",
            "| variant | ms (median) | peak GiB (weights + activations) | first call s | ‖out − first‖/‖first‖ |",
            "|---|---|---|---|---|",
            *rows,
            "",
            *[e + "\n" for e in extra],
        ]
    )
    emit(text, a.results)
    if a.out:
        emit(text, out_file(a.out, "gpu_unet_levers.md"), quiet=True)


if __name__ == "__main__":
    main()
