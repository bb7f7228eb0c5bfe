"""GPU exploration for issue 8: the SDXL UNet + depth ControlNet call of one SDS step (4 views × CFG = batch 8,
128² latents, no grad). Real architectures, random weights, one process, one model per dtype reused across
variants (each variant's output is compared with the stock eager output of the same weights).

    python benches/gpu_unet_levers.py [--variants eager,cudnn_benchmark,graph,blocks,blocks_graph,blocks_cl]
                                      [--profile] [--results FILE]

Variants (bf16 unless --dtype fp16):
  eager            stock diffusers modules, NCHW
  cudnn_benchmark  same, torch.backends.cudnn.benchmark = True
  graph            eager call captured once in a CUDA graph and replayed (no host launch cost)
  fused_gn_cl      Triton GroupNorm+SiLU (pgc_kernels.group_norm_silu), channels_last
  blocks           pgc_fast.guidance.models.accel.compile_blocks (regional torch.compile); 'first call s' is the compile
  blocks_graph     blocks, captured in a CUDA graph
  blocks_cl        blocks, channels_last
  full             torch.compile of the whole UNet and ControlNet (minutes of compile)
--profile prints where the eager call's GPU time goes (kernel categories, top kernels).
"""

from __future__ import annotations

import argparse
import datetime
import re
import time

import torch
from triton.testing import do_bench

from _gpu_common import commit, emit

CATEGORIES = [  # first match wins; patterns are matched against CUDA kernel names
    ("attention", r"flash|fmha|attention|sdpa"),
    ("layout (NCHW<->NHWC, copies)", r"nchwToNhwc|nhwcToNchw|copy_|CatArray|transpose|permute|contiguous"),
    ("convolution", r"conv|cudnn|xmma_fprop|implicit|dgrad|wgrad|fprop|nhwc|winograd"),
    ("GEMM (linear)", r"gemm|cutlass|nvjet|xmma_gemm|sm90_xmma|cublas|ampere_|hopper_|s16816|wgmma"),
    (
        "GroupNorm / LayerNorm",
        r"group_norm|layer_norm|GroupNorm|LayerNorm|batch_norm|welford|RowwiseMoments|ComputeFused",
    ),
    ("triton (inductor fused)", r"^triton_"),
]


def categorise(name: str) -> str:
    for cat, pat in CATEGORIES:
        if re.search(pat, name, flags=re.I):
            return cat
    return "elementwise / other"


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="eager,cudnn_benchmark,graph,blocks,blocks_graph")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--results", default=None)
    a = ap.parse_args(argv)
    from pgc_fast.guidance.models.accel import compile_blocks, use_fused_group_norm
    from pgc_fast.guidance.models.builtin import build_builtin

    dev = "cuda"
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    b = 2 * a.views
    t_build = time.perf_counter()
    bundle = build_builtin("sdxl-random", control_types=("depth",), device=dev, dtype=dtype)
    unet, cn = bundle.unet, bundle.controlnet
    del bundle
    print(f"built sdxl-random UNet + depth ControlNet in {time.perf_counter() - t_build:.1f} s", flush=True)
    g = torch.Generator(device=dev).manual_seed(0)
    inp = {
        "z": torch.randn(b, 4, 128, 128, device=dev, dtype=dtype, generator=g),
        "t": torch.randint(20, 500, (b,), device=dev, generator=g),
        "hid": torch.randn(b, 77, 2048, device=dev, dtype=dtype, generator=g),
        "text_embeds": torch.randn(b, 1280, device=dev, dtype=dtype, generator=g),
        "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * b, device=dev, dtype=dtype),
        "cond": torch.rand(b, 3, 1024, 1024, device=dev, dtype=dtype, generator=g),
    }

    def make_step(fmt):
        z = inp["z"].contiguous(memory_format=fmt)
        cond = inp["cond"].contiguous(memory_format=fmt)
        add = {"text_embeds": inp["text_embeds"], "time_ids": inp["time_ids"]}

        @torch.no_grad()
        def step():
            down, mid = cn(z, inp["t"], inp["hid"], controlnet_cond=cond, added_cond_kwargs=add, return_dict=False)
            return unet(
                z,
                inp["t"],
                inp["hid"],
                added_cond_kwargs=add,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample

        return step

    rows, ref, extra = [], None, []
    state = {"blocks": False, "fmt": torch.contiguous_format, "fused": False}
    for v in [s.strip() for s in a.variants.split(",") if s.strip()]:
        torch.backends.cudnn.benchmark = v == "cudnn_benchmark"
        if v.startswith("blocks") and not state["blocks"]:
            n = compile_blocks(unet) + compile_blocks(cn)
            state["blocks"] = True
            print(f"compile_blocks: {n} blocks", flush=True)
        if v == "fused_gn_cl" and not state["fused"]:
            use_fused_group_norm(unet)
            use_fused_group_norm(cn)
            state["fused"] = True
        want_fmt = torch.channels_last if v.endswith("_cl") else torch.contiguous_format
        if want_fmt != state["fmt"]:
            unet.to(memory_format=want_fmt)
            cn.to(memory_format=want_fmt)
            state["fmt"] = want_fmt
        step = make_step(want_fmt)
        if v == "full":
            unet_c, cn_c = torch.compile(unet, dynamic=False), torch.compile(cn, dynamic=False)
            add = {"text_embeds": inp["text_embeds"], "time_ids": inp["time_ids"]}

            @torch.no_grad()
            def step():
                down, mid = cn_c(
                    inp["z"],
                    inp["t"],
                    inp["hid"],
                    controlnet_cond=inp["cond"],
                    added_cond_kwargs=add,
                    return_dict=False,
                )
                return unet_c(
                    inp["z"],
                    inp["t"],
                    inp["hid"],
                    added_cond_kwargs=add,
                    down_block_additional_residuals=down,
                    mid_block_additional_residual=mid,
                ).sample

        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = step()
        torch.cuda.synchronize()
        first_s = time.perf_counter() - t0
        fn = step
        if v.endswith("graph"):
            fn, out = graphed(step)
            fn()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30
        ms = do_bench(fn, warmup=20, rep=600, return_mode="median")
        if ref is None:  # the first variant (eager) is the reference output
            ref = out.float().clone()
        err = ((out.float() - ref).norm() / ref.norm()).item()
        rows.append(f"| {v} | {ms:.1f} | {peak:.1f} | {first_s:.1f} | {err:.1e} |")
        print(rows[-1], flush=True)
        if a.profile and v in ("eager", "blocks"):
            extra.append(
                f"**Where the `{v}` call's GPU time goes** (torch.profiler, CUDA kernels, mean of 3 calls):\n\n"
                + profile(fn)
            )
            print(extra[-1], flush=True)
        del fn, out
    text = "\n".join(
        [
            f"### SDXL UNet + depth ControlNet, batch {b} ({a.views} views × CFG), 128² latents, no grad, "
            f"{a.dtype} — {torch.cuda.get_device_name()}, torch {torch.__version__}, commit {commit()}, "
            f"{datetime.date.today()} (`python benches/gpu_unet_levers.py --variants {a.variants}"
            f"{' --profile' if a.profile else ''}`)",
            "",
            "| variant | ms (median) | peak GiB | first call s | ‖out − eager‖/‖eager‖ |",
            "|---|---|---|---|---|",
            *rows,
            "",
            *extra,
        ]
    )
    emit(text, a.results)


if __name__ == "__main__":
    main()
