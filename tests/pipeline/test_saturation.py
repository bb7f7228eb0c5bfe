"""The saturation penalty (the original's --lambda_saturation; train/regularizers.py), with its two bugs fixed, and
its place in the guidance objective's loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pgc_fast import config as C
from pgc_fast.train.objectives import GuidanceObjective
from pgc_fast.train.regularizers import saturation_penalty


def _hsv_saturation(img: torch.Tensor) -> torch.Tensor:
    hi, lo = img.max(dim=1).values, img.min(dim=1).values
    return torch.where(hi > 0, (hi - lo) / hi, torch.zeros_like(hi))


def test_penalty_is_the_squared_mean_saturation_of_the_covered_pixels():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 8, 8, generator=g) ** 3  # saturated colours
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.4).float()
    mean = _hsv_saturation(img)[mask[:, 0] > 0].mean()
    assert mean > 0.5
    assert torch.allclose(saturation_penalty(img, mask), mean**2, atol=1e-6)
    grey = torch.full((1, 3, 4, 4), 0.5)
    assert saturation_penalty(grey, torch.ones(1, 1, 4, 4)) == 0
    assert saturation_penalty(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 4, 4)) == 0  # black: saturation 0, no nan


def test_pure_red_is_penalised_where_the_originals_arithmetic_was_not():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    ones = torch.ones(1, 1, 4, 4)
    assert saturation_penalty(red, ones) == pytest.approx(1.0, abs=1e-6)
    # The original first mapped the [0, 1] image as if it were in [-1, 1]: (1, 0.5, 0.5), saturation 0.5, no penalty.
    assert saturation_penalty(0.5 * red + 0.5, ones) == 0


def test_guidance_objective_adds_the_weighted_penalty():
    class ZeroGuidance:
        pgc_stats: dict = {}

        def step(self, image, **kw):
            return SimpleNamespace(loss=image.sum() * 0, stats={})

    cfg = C.override(C.RunConfig(), **{"guidance.lambda_saturation": 3.0})
    obj = GuidanceObjective()
    obj.guidance, obj.scaler, obj.normal_control = ZeroGuidance(), None, False
    image = torch.zeros(1, 3, 4, 4)
    image[:, 0] = 1.0
    image.requires_grad_(True)
    render = SimpleNamespace(image=image, mask=torch.ones(1, 1, 4, 4), depth=None, normal=None)
    out = obj.loss(0, render, SimpleNamespace(phi=None, theta=None, c2w=None), SimpleNamespace(cfg=cfg))
    assert float(out.loss.detach()) == pytest.approx(3.0, abs=1e-5)
    assert float(out.stats["saturation_loss"]) == pytest.approx(1.0)
    out.loss.backward()
    assert image.grad[:, 1:].sum() < 0  # raising green and blue lowers the saturation


def test_lambda_saturation_is_accepted_but_not_with_latents():
    cfg = C.override(
        C.RunConfig(), **{"guidance.text": "a vase", "guidance.lambda_saturation": 1e-2, "mesh.path": "m.obj"}
    )
    C.validate(cfg, check_files=False)
    latent = C.override(cfg, **{"guidance.latent": True, "render.shading": "albedo"})
    with pytest.raises(C.ConfigError, match="RGB saturation"):
        C.validate(latent, check_files=False)
