"""Small shapes shared by tests (on the test path via pyproject's ``pythonpath``)."""

from __future__ import annotations

import numpy as np


def cube(lo: float = 0.0, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [8, 3] float32, faces [12, 3] int64) of the axis-aligned cube [lo, hi]³, outward winding;
    vertex index = 4·x + 2·y + z with x, y, z ∈ {0, 1}."""
    v = np.array([[x, y, z] for x in (lo, hi) for y in (lo, hi) for z in (lo, hi)], np.float32)
    f = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1]]
        + [[2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
        np.int64,
    )
    return v, f
