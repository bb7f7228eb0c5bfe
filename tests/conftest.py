"""Shared pytest hooks. Shared constants live in tests/tolerances.py."""
from __future__ import annotations

import pytest

from tolerances import HAS_CUDA


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)
