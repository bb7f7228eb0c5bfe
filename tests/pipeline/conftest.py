"""Fixtures of the pipeline tests: the vase mesh, tiny run configurations and MSE objectives
(builders in tests/pipeline_support.py, which the torchrun workers import too)."""

from __future__ import annotations

import pytest

import pipeline_support as S


@pytest.fixture()
def vase(tmp_path):
    """Path of the demo vase (12 × 6) saved as PLY in the test's tmp_path."""
    return S.vase_mesh(tmp_path)


@pytest.fixture()
def tiny_config():
    """``tiny_config(root, ws, kind, **overrides)`` → a seconds-long CPU RunConfig (tests/pipeline_support.py)."""
    return S.tiny_config


@pytest.fixture()
def mse_objective():
    """``mse_objective(views=4)`` → an MSEObjective with random targets."""
    return S.mse_objective


@pytest.fixture()
def tiny_guidance():
    """Config overrides for score distillation from tiny-sd with PGC on."""
    return dict(S.TINY_GUIDANCE)
