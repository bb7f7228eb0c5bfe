"""The README's main job. Until the generation pipeline lands this is a short CPU demo of the kernels."""
from __future__ import annotations


def run_demo() -> int:
    print("pgc-fast demo: the kernels demo is not written yet")
    return 0
