"""Profile one SDXL VAE encoder fwd+bwd (4 × 1024², random weights): kernel categories and top CUDA kernels.

    python benches/gpu_profile_vae.py [--channels-last] [--fused-gn] [--fast] [--fp16] [--ops]

``--fast`` = exactly what ``GuidanceConfig.fast_vae`` runs on CUDA (chunked attention, Triton GroupNorm+SiLU,
frozen convolutions, channels_last) in bf16, or in fp16 with ``--fp16`` (what ``precision auto`` runs on CUDA).
"""

from __future__ import annotations

import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from gpu_unet_levers import profile
from gpu_vae_levers import make_vae

from _gpu_common import vae_encode_step, vae_input


def main():
    fast = "--fast" in sys.argv
    cl = fast or "--channels-last" in sys.argv
    fused = fast or "--fused-gn" in sys.argv
    dtype = torch.bfloat16 if fast and "--fp16" not in sys.argv else torch.float16
    vae = make_vae(dtype, channels_last=cl, fused_gn=fused, frozen_convs=fast)
    step = vae_encode_step(vae, vae_input(4, dtype, cl))
    print(f"channels_last={cl} fused_gn={fused} frozen_convs={fast} dtype={dtype}")
    print(profile(step))
    if "--ops" in sys.argv:  # which aten ops (and shapes) launch the time: the elementwise/copy kernels' callers
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as tprofile

        with tprofile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
            step()
            torch.cuda.synchronize()
        print(
            prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cuda_time_total", row_limit=45, max_name_column_width=40, max_shapes_column_width=70
            )
        )


if __name__ == "__main__":
    main()
