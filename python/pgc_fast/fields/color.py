"""The colour head: a hash-grid field answering RGB (sigmoid) or 4 raw latent channels at surface points."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgc_fast.fields.hash_grid import Field


class TextureField(Field):
    """The original's 3D texture field (the original's Rasterizer_mesh): HashGrid 16×4 → MLP 64→32→3.

    RGB mode: ``sigmoid(MLP(h)) · 0.9 + 0.05`` ∈ [0.05, 0.95]. Latent mode (``latent=True``, Latent-NeRF style):
    4 raw outputs, no activation. Constructor arguments as :class:`Field` (``hidden`` defaults to (32,)).

    Forward: float32 [..., 3] world positions in [−bound, bound]^3 → float32 [..., 3] (or [..., 4] latent).
    """

    def __init__(self, *, latent: bool = False, hidden: Sequence[int] = (32,), **kwargs) -> None:
        super().__init__(4 if latent else 3, hidden, **kwargs)
        self.latent = bool(latent)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        raw = super().forward(positions)
        if self.latent:
            return raw
        return torch.sigmoid(raw) * 0.9 + 0.05
