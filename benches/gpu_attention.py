"""GPU benchmark: exact head-dim-512 attention (the SDXL VAE encoder's mid-block) — ours vs PyTorch SDPA.

In one process: (1) the bare attention [4, 1, 16384, 512] fp16 forward+backward with PyTorch's default SDPA
(CUTLASS memory-efficient kernel at this head dim), the math SDPA backend and pgc_kernels.chunked_attention;
(2) accuracy of each against a float64 computation at [1, 1, 4096, 512]; (3) the full SDXL VAE encoder
(real architecture, random weights) forward + backward to pixels at 4 × 1024², stock vs chunked attention.
Prints a table and, with --results FILE, appends it (device, commit, date) to that markdown file.

    python benches/gpu_attention.py --results benches/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

from _gpu_common import commit, emit, vae_encode_step, vae_input
from pgc_kernels.chunked_attention import chunked_attention


def timed(fn, reps=20):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    ms = do_bench(fn, warmup=50, rep=max(200, reps * 50), return_mode="median")
    return ms, peak


def attention_rows():
    rows = []
    b, n, d = 4, 16384, 512
    q, k, v = (torch.randn(b, 1, n, d, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
    go = torch.randn(b, 1, n, d, device="cuda", dtype=torch.float16)

    def sdpa_default():
        out = F.scaled_dot_product_attention(q, k, v)
        torch.autograd.grad(out, (q, k, v), go)

    def sdpa_math():
        with sdpa_kernel(SDPBackend.MATH):
            out = F.scaled_dot_product_attention(q, k, v)
        torch.autograd.grad(out, (q, k, v), go)

    def ours():
        out = chunked_attention(q, k, v)
        torch.autograd.grad(out, (q, k, v), go)

    def ours_torch_ops():
        out = chunked_attention(q, k, v, backend="chunked")
        torch.autograd.grad(out, (q, k, v), go)

    def ours_fwd():
        with torch.no_grad():
            chunked_attention(q, k, v)

    def sdpa_fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v)

    for name, fn in [
        ("SDPA default (efficient) fwd+bwd", sdpa_default),
        ("SDPA math fwd+bwd", sdpa_math),
        ("chunked_attention fwd+bwd", ours),
        ("chunked_attention (PyTorch-op softmax) fwd+bwd", ours_torch_ops),
        ("SDPA default fwd", sdpa_fwd),
        ("chunked_attention fwd", ours_fwd),
    ]:
        try:
            ms, peak = timed(fn)
            rows.append((name, ms, peak))
        except torch.OutOfMemoryError:
            rows.append((name, float("nan"), float("nan")))
        torch.cuda.empty_cache()
    return rows


def accuracy_rows():
    torch.manual_seed(0)
    n, d = 4096, 512
    q, k, v = (torch.randn(1, 1, n, d, device="cuda", dtype=torch.float64) * 2 for _ in range(3))
    go = torch.randn(1, 1, n, d, device="cuda", dtype=torch.float64)
    ex = []
    qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):
        o = F.scaled_dot_product_attention(qq, kk, vv)
    ex = [o, *torch.autograd.grad(o, (qq, kk, vv), go)]
    rows = []
    for name, fn in [("SDPA default", F.scaled_dot_product_attention), ("chunked_attention", chunked_attention)]:
        qh, kh, vh = (t.half().requires_grad_() for t in (q, k, v))
        o = fn(qh, kh, vh)
        got = [o, *torch.autograd.grad(o, (qh, kh, vh), go.half())]
        errs = [((g.double() - e).norm() / e.norm()).item() for g, e in zip(got, ex, strict=False)]
        rows.append((name, errs))
    return rows


def vae_rows():
    from diffusers import AutoencoderKL

    from pgc_fast.guidance.models.accel import use_chunked_attention
    from pgc_fast.guidance.models.builtin import VAE_CONFIG  # SDXL VAE (= madebyollin/sdxl-vae-fp16-fix's architecture)

    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_CONFIG, sample_size=1024, scaling_factor=0.13025).to("cuda", torch.float16)
    vae.requires_grad_(False)
    step = vae_encode_step(vae, vae_input(4, torch.float16, False))

    rows = []
    ms, peak = timed(step, reps=5)
    rows.append(("SDXL VAE encoder fwd+bwd, stock SDPA", ms, peak))
    n = use_chunked_attention(vae)
    ms, peak = timed(step, reps=5)
    rows.append((f"SDXL VAE encoder fwd+bwd, chunked attention ({n} modules)", ms, peak))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=None)
    ap.add_argument("--skip-vae", action="store_true")
    args = ap.parse_args()
    dev = torch.cuda.get_device_name()
    lines = [
        f"### head-dim-512 attention — {dev}, torch {torch.__version__}, commit {commit()}, "
        f"{datetime.date.today().isoformat()} (`python benches/gpu_attention.py`)",
        "",
        "| what | ms (median) | peak extra GiB |",
        "|---|---|---|",
    ]
    att = attention_rows()
    lines += [f"| [4,1,16384,512] fp16 {n} | {ms:.2f} | {pk:.2f} |" for n, ms, pk in att]
    if not args.skip_vae:
        lines += [f"| 4×1024² {n} | {ms:.1f} | {pk:.2f} |" for n, ms, pk in vae_rows()]
    acc = accuracy_rows()
    lines += [
        "",
        "| accuracy at [1,1,4096,512] fp16, ‖err‖/‖ref‖ vs float64 | out | dq | dk | dv |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | " + " | ".join(f"{e:.2e}" for e in errs) + " |" for n, errs in acc]
    fast = {n: ms for n, ms, _ in att}
    ratio = fast["SDPA default (efficient) fwd+bwd"] / fast["chunked_attention fwd+bwd"]
    lines += ["", f"speedup fwd+bwd vs SDPA default: {ratio:.2f}×", ""]
    emit("\n".join(lines), args.results)


if __name__ == "__main__":
    main()
