"""Fixtures for the guidance tests: tiny built-in models, built once per session (CPU, float32)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_sdxl():
    from pgc_fast.guidance import build_builtin

    return build_builtin("tiny-sdxl", control_types=["depth", "shuffle"])


@pytest.fixture(scope="session")
def tiny_sd():
    from pgc_fast.guidance import build_builtin

    return build_builtin("tiny-sd", control_types=["depth"])


@pytest.fixture(scope="session")
def reference_png(tmp_path_factory):
    from PIL import Image

    p = tmp_path_factory.mktemp("ref") / "ref.png"
    g = torch.Generator().manual_seed(0)
    arr = (torch.rand(48, 40, 4, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(arr, mode="RGBA").save(p)
    return str(p)


def _make_inputs(b: int = 2, size: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, 3, size, size, generator=g).requires_grad_(True)
    depth = 2.0 + torch.rand(b, 1, size, size, generator=g)
    mask = (torch.rand(b, 1, size, size, generator=g) > 0.3).float()
    return img, depth, mask


@pytest.fixture
def make_inputs():
    """Factory: (image [B,3,S,S] requiring grad, depth [B,1,S,S], mask [B,1,S,S])."""
    return _make_inputs
