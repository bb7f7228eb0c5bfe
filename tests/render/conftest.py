"""Fixtures for the renderer tests (helpers live in render_helpers.py)."""

from __future__ import annotations

import pytest

from render_helpers import icosphere, reference_rasterize


@pytest.fixture
def ref_raster():
    return reference_rasterize


@pytest.fixture
def sphere():
    return icosphere(1)
