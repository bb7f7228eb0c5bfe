"""GPU exploration for issue 8: where the SDXL VAE encoder's forward+backward time goes, and which exact
levers pay (chunked head-dim-512 attention, torch.compile of the conv/norm blocks, channels_last, bf16,
block checkpointing for memory). Real SDXL VAE architecture, random weights, 4 × 1024², grads w.r.t. pixels.

    python benches/gpu_vae_levers.py [--results benches/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import torch
from torch.utils.checkpoint import checkpoint
from triton.testing import do_bench

from _gpu_common import emit, vae_encode_step, vae_input
from pgc_fast.guidance.models.accel import use_chunked_attention, use_frozen_convs, use_fused_group_norm
from pgc_fast.guidance.models.builtin import VAE_CONFIG

SDXL_VAE = dict(VAE_CONFIG, sample_size=1024, scaling_factor=0.13025)  # = madebyollin/sdxl-vae-fp16-fix's architecture


class _Ckpt(torch.nn.Module):
    """Recompute a block in backward instead of storing its activations."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x, *a, **k):
        return checkpoint(self.block, x, *a, use_reentrant=False, **k)


def make_vae(
    dtype, chunked=True, compile_blocks=False, ckpt_blocks=0, channels_last=False, fused_gn=False, frozen_convs=False
):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**SDXL_VAE).to("cuda", dtype).requires_grad_(False).eval()  # as loaded for guidance
    vae.decoder = None  # training never decodes
    if chunked:
        use_chunked_attention(vae)
    if fused_gn:
        use_fused_group_norm(vae)
    if frozen_convs:
        use_frozen_convs(vae)
    enc = vae.encoder
    if compile_blocks:
        for i, blk in enumerate(enc.down_blocks):
            enc.down_blocks[i] = torch.compile(blk)
        for i, r in enumerate(enc.mid_block.resnets):
            enc.mid_block.resnets[i] = torch.compile(r)
    for i in range(ckpt_blocks):
        enc.down_blocks[i] = _Ckpt(enc.down_blocks[i])
    if channels_last:
        vae = vae.to(memory_format=torch.channels_last)
    return vae


def measure(vae, dtype, channels_last=False, b=4):
    step = vae_encode_step(vae, vae_input(b, dtype, channels_last))

    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize()
    first = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    ms = do_bench(step, warmup=100, rep=600, return_mode="median")
    return ms, peak, first


def gn_rows():
    """GroupNorm(32)+SiLU fwd+bwd on the VAE's largest activation, [4,128,1024,1024] fp16."""
    import torch.nn.functional as F

    from pgc_kernels.group_norm_silu import group_norm_silu

    rows = []
    w = torch.randn(128, device="cuda", dtype=torch.float16)
    b = torch.randn(128, device="cuda", dtype=torch.float16)
    for cl in (False, True):
        x = torch.randn(4, 128, 1024, 1024, device="cuda", dtype=torch.float16)
        if cl:
            x = x.to(memory_format=torch.channels_last)
        x.requires_grad_(True)
        dy = torch.randn_like(x)
        for name, fn in (
            ("torch F.group_norm + F.silu", lambda: F.silu(F.group_norm(x, 32, w, b))),
            ("pgc_kernels.group_norm_silu", lambda: group_norm_silu(x, 32, w, b)),
        ):

            def step(fn=fn):
                torch.autograd.grad(fn(), x, dy)

            ms = do_bench(step, warmup=50, rep=300, return_mode="median")
            gbytes = (
                2 * x.numel() * 2 * 4 / 1e9
            )  # fwd: read x twice, write y; bwd: read x, dy twice, write dx (min ≈ 4 passes)
            rows.append(
                f"| GN+SiLU fwd+bwd [4,128,1024²] fp16 {'channels_last' if cl else 'NCHW'}: {name} | {ms:.2f} | | "
                f"≥{gbytes:.1f} GB moved |"
            )
        del x, dy
        torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=None)
    args = ap.parse_args()
    variants = [
        ("fp16 eager, stock attention", dict(dtype=torch.float16, chunked=False)),
        ("fp16 eager, chunked attention", dict(dtype=torch.float16)),
        ("bf16 eager, chunked attention", dict(dtype=torch.bfloat16)),
        ("fp16 channels_last, chunked attention", dict(dtype=torch.float16, channels_last=True)),
        ("fp16 eager, chunked, checkpoint blocks 0-1", dict(dtype=torch.float16, ckpt_blocks=2)),
        ("fp16 eager, chunked, fused GroupNorm+SiLU", dict(dtype=torch.float16, fused_gn=True)),
        (
            "fp16 channels_last, chunked, fused GroupNorm+SiLU",
            dict(dtype=torch.float16, fused_gn=True, channels_last=True),
        ),
        (
            "bf16 channels_last, chunked, fused GroupNorm+SiLU",
            dict(dtype=torch.bfloat16, fused_gn=True, channels_last=True),
        ),
        (
            "fp16 channels_last, chunked, fused GN, frozen convs",
            dict(dtype=torch.float16, fused_gn=True, channels_last=True, frozen_convs=True),
        ),
        (
            "fp16 channels_last, chunked, fused GN, checkpoint blocks 0-1",
            dict(dtype=torch.float16, fused_gn=True, channels_last=True, ckpt_blocks=2),
        ),
        ("fp16 compiled blocks, chunked attention", dict(dtype=torch.float16, compile_blocks=True)),
        (
            "fp16 compiled blocks, chunked, checkpoint blocks 0-1",
            dict(dtype=torch.float16, compile_blocks=True, ckpt_blocks=2),
        ),
    ]
    lines = [
        f"### SDXL VAE encoder fwd+bwd levers, 4 × 1024² — {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"commit {os.environ.get('PGC_COMMIT', 'unknown')}, {datetime.date.today()} (`python "
        f"benches/gpu_vae_levers.py`)",
        "",
        "| variant | ms (median) | peak GiB | first call s |",
        "|---|---|---|---|",
    ]
    only = os.environ.get("VARIANTS")
    if only:
        variants = [v for v in variants if any(k in v[0] for k in only.split(";"))]
    lines += gn_rows()
    for name, kw in variants:
        dtype = kw.pop("dtype")
        cl = kw.get("channels_last", False)
        vae = None
        try:
            vae = make_vae(dtype, **kw)
            ms, peak, first = measure(vae, dtype, channels_last=cl)
            lines.append(f"| {name} | {ms:.1f} | {peak:.1f} | {first:.1f} |")
        except Exception as e:  # noqa: BLE001 - report and go on: one failing lever must not hide the others
            lines.append(f"| {name} | failed: {type(e).__name__}: {str(e)[:80]} | | |")
        print(lines[-1], flush=True)
        del vae
        torch.cuda.empty_cache()
    emit("\n".join(lines), args.results)


if __name__ == "__main__":
    main()
