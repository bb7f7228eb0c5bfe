"""The run's precision rule (train.runtime.resolve_precision): the default ``auto`` is fp16 + GradScaler on CUDA
(issue 21's parity table: bf16's SDS gradient is 8x further from float32's), bf16 for Zero123 runs, fp32 on the
CPU; the guidance weights take the autocast dtype."""

from __future__ import annotations

import types

import pytest
import torch

from pgc_fast.config import schema as C
from pgc_fast.train.objectives import guidance_dtype
from pgc_fast.train.runtime import resolve_precision

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def _cfg(precision: str, zero123: bool = False) -> C.RunConfig:
    return C.override(C.RunConfig(), **{"optim.precision": precision, "guidance.zero123": zero123})


@pytest.mark.parametrize(
    ("precision", "zero123", "device", "want"),
    [
        ("auto", False, CUDA, (torch.float16, True)),
        ("auto", True, CUDA, (torch.bfloat16, False)),
        ("auto", False, CPU, (None, False)),
        ("auto", True, CPU, (None, False)),
        ("fp16", True, CUDA, (torch.float16, True)),
        ("bf16", False, CUDA, (torch.bfloat16, False)),
        ("fp32", False, CUDA, (None, False)),
    ],
)
def test_precision_rule(precision, zero123, device, want):
    assert resolve_precision(_cfg(precision, zero123), device) == want


@pytest.mark.parametrize("ac", [None, torch.float16, torch.bfloat16])
def test_guidance_weights_take_the_autocast_dtype(ac):
    ctx = types.SimpleNamespace(autocast_dtype=ac)
    assert guidance_dtype(ctx) == (ac or torch.float32)  # type: ignore[arg-type]
