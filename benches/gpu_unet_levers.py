"""GPU exploration for issue 8: the SDXL UNet + depth ControlNet call of one SDS step (4 views × CFG = batch 8,
128² latents, no grad), stock vs channels-last + fused GroupNorm+SiLU. Real architectures, random weights.

    python benches/gpu_unet_levers.py
"""
from __future__ import annotations

import datetime
import os

import torch
from triton.testing import do_bench

from pgc_fast.accel import use_fused_group_norm
from pgc_fast.guidance.builtin import build_builtin


def main():
    dev = "cuda"
    rows = []
    refs = {}
    for name, dtype, fused, cl in [("fp16 stock", torch.float16, False, False),
                                   ("bf16 stock", torch.bfloat16, False, False),
                                   ("fp16 fused GN+SiLU, channels_last", torch.float16, True, True),
                                   ("bf16 fused GN+SiLU, channels_last", torch.bfloat16, True, True),
                                   ("fp16 fused GN+SiLU, NCHW", torch.float16, True, False)]:
        bundle = build_builtin("sdxl-random", control_types=("depth",), device=dev, dtype=dtype)
        unet, cn = bundle.unet, bundle.controlnet
        del bundle
        if fused:
            use_fused_group_norm(unet)
            use_fused_group_norm(cn)
        fmt = torch.channels_last if cl else torch.contiguous_format
        if cl:
            unet.to(memory_format=fmt)
            cn.to(memory_format=fmt)
        g = torch.Generator(device=dev).manual_seed(0)
        z = torch.randn(8, 4, 128, 128, device=dev, dtype=dtype, generator=g).contiguous(memory_format=fmt)
        t = torch.randint(20, 500, (8,), device=dev, generator=g)
        hid = torch.randn(8, 77, 2048, device=dev, dtype=dtype, generator=g)
        add = {"text_embeds": torch.randn(8, 1280, device=dev, dtype=dtype, generator=g),
               "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 8, device=dev, dtype=dtype)}
        cond = torch.rand(8, 3, 1024, 1024, device=dev, dtype=dtype, generator=g).contiguous(memory_format=fmt)

        @torch.no_grad()
        def step():
            down, mid = cn(z, t, hid, controlnet_cond=cond, added_cond_kwargs=add, return_dict=False)
            return unet(z, t, hid, added_cond_kwargs=add, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid).sample

        out = step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        peak = torch.cuda.max_memory_allocated() / 2**30
        ms = do_bench(step, warmup=100, rep=800, return_mode="median")
        if not fused:  # same seed ⇒ same random weights and inputs: the stock output is the reference
            refs[dtype] = out.float()
        ref = refs[dtype]
        err = ((out.float() - ref).norm() / ref.norm()).item()
        rows.append(f"| {name} | {ms:.1f} | {peak:.1f} | {err:.1e} |")
        print(rows[-1], flush=True)
        del unet, cn, z, cond, out
        torch.cuda.empty_cache()
    text = "\n".join([f"### SDXL UNet + depth ControlNet, batch 8 (4 views × CFG), 128² latents, no grad — {torch.cuda.get_device_name()}, "
                      f"torch {torch.__version__}, commit {os.environ.get('PGC_COMMIT', 'unknown')}, {datetime.date.today()} "
                      "(`python benches/gpu_unet_levers.py`)", "",
                      "| variant | ms (median) | peak GiB | ‖out − stock‖/‖stock‖ (same dtype) |", "|---|---|---|---|", *rows])
    print(text)


if __name__ == "__main__":
    main()
