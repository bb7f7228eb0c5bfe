"""Latent mode with normal-map SDS (the normal map is an RGB image, VAE-encoded even in latent mode) and the front
azimuth of the view prompts (the original's --left swaps front and back)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pgc_fast.config import GuidanceConfig
from pgc_fast.guidance import build_guidance


def _guidance(bundle, **kw):
    bundle = dataclasses.replace(bundle, controlnet=None, control_types=[])
    return build_guidance(GuidanceConfig(text="a panda", dir_text=True, **kw), bundle, seed=0, iters=10)


@pytest.mark.parametrize("loss", ["sds", "bgt"])
def test_latent_mode_encodes_the_normal_map(tiny_sd, loss):
    g = _guidance(tiny_sd, latent=True, loss=loss)
    lat = torch.randn(2, 4, 16, 16).requires_grad_(True)
    normals = torch.rand(2, 3, 64, 64).requires_grad_(True)
    out = g.step(lat, step=1, normals=normals)
    assert out.grad.shape == out.normal_grad.shape == (2, 4, 8, 8)
    out.loss.backward()
    assert torch.isfinite(lat.grad).all() and lat.grad.abs().sum() > 0
    assert torch.isfinite(normals.grad).all() and normals.grad.abs().sum() > 0  # through the VAE encoder


def test_front_azimuth_swaps_front_and_back_prompts(tiny_sd):
    az, polar = torch.tensor([0.0, 180.0, 90.0]), torch.tensor([60.0, 60.0, 60.0])
    assert _guidance(tiny_sd).prompt_rows(3, az, polar).tolist() == [1, 3, 2]  # front, back, side
    assert _guidance(tiny_sd, front_azimuth=180.0).prompt_rows(3, az, polar).tolist() == [3, 1, 2]
