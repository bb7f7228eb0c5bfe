"""Shared pytest hooks. Shared constants live in tests/tolerances.py."""

from __future__ import annotations

import pytest
import torch

from tolerances import HAS_CUDA


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add overhead (and stall badly when CI shares its 2 cores).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
