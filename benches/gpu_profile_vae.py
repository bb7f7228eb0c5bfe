"""Profile one SDXL VAE encoder fwd+bwd (4 × 1024², random weights, chunked attention): top CUDA kernels.

    python benches/gpu_profile_vae.py [--channels-last]
"""
from __future__ import annotations

import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _gpu_common import vae_encode_step, vae_input  # noqa: E402
from gpu_vae_levers import make_vae  # noqa: E402


def main():
    cl = "--channels-last" in sys.argv
    vae = make_vae(torch.float16, channels_last=cl, fused_gn="--fused-gn" in sys.argv)
    step = vae_encode_step(vae, vae_input(4, torch.float16, cl))

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    print(f"channels_last={cl} fused_gn={'--fused-gn' in sys.argv}")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=110))


if __name__ == "__main__":
    main()
