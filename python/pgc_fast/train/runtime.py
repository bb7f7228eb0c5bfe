"""Device, precision and RNG state of a run (seeding, saving and restoring every generator)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.train import distributed as D


def resolve_device(cfg: C.RunConfig) -> torch.device:
    """cuda:gpus[0] (or cpu). Under torchrun the process's GPU is cuda:LOCAL_RANK (see run())."""
    want = cfg.runtime.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("run(): runtime.device=cuda but torch sees no CUDA device")
        if D.launched_by_torchrun() and D.env_info().enabled:
            return torch.device("cuda", D.env_info().local_rank)
        first = cfg.runtime.gpus.split(",")[0].strip() or "0"
        idx = int(first) if int(first) < torch.cuda.device_count() else 0
        return torch.device("cuda", idx)
    return torch.device("cpu")


def resolve_precision(cfg: C.RunConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, use GradScaler). auto = fp16 + GradScaler on CUDA, the original's -O0:
    on the H100 its SDS latent gradient is 6.8e-3 (relative L2) from float32's, bf16's 5.5e-2, i.e. 6 % of the
    noise draws' own spread against 0.8 % (benches/RESULTS.md, "Default precision"), for 2 % more step time; bf16
    stays an explicit choice. Zero123 runs (``guidance.zero123``) take bf16 under auto: the original could not run
    Zero123 in fp16 and ours was measured in bf16 only. On the CPU auto means fp32 (CPU autocast is slower than
    fp32 there). The guidance weights take the autocast dtype (float32 without autocast). What auto means per
    device is defined once, in :func:`pgc_fast.guidance.models.loading.resolve_dtype`."""
    from pgc_fast.guidance.models.loading import resolve_dtype

    p = cfg.optim.precision
    if p == "auto" and cfg.guidance.zero123 and device.type != "cpu":
        p = "bf16"
    dtype = resolve_dtype(p, device)
    if dtype == torch.float32:
        return None, False
    return dtype, dtype == torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states (cameras and render draws are per-step generators: nothing to save). CUDA: the
    run's device only (touching every GPU would create a context on each from every rank)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda_device": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda_device") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"].cpu(), device)
