"""pgc-fast: PGC-3D (pixel-wise gradient clipping for high-resolution score distillation), fast.

The top-level package imports nothing heavy: diffusers, nvdiffrast and the training loop are imported
lazily by the submodules that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
