"""The DMTet head: a hash-grid field answering a signed distance and a vertex offset at tetrahedral-grid vertices."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgc_fast.fields.hash_grid import Field


class SDFField(Field):
    """The original's DMTet geometry field (its nerf/fine/rasterizer.py, Rasterizer_MLP): HashGrid 16×4 → MLP
    64→32→32→4 (three linear layers), read as ``[s, δ]``.

    ``s`` is the signed distance (negative inside: the surface is ``s = 0``, marching tets keeps the convention of
    pgc_fast.mesh.tets); ``δ`` is the raw deformation, which the geometry maps to a vertex offset
    ``deform_scale · tanh(δ)`` (the original: ``1.8 / (2·res)``, under half a cell of its grid).

    Args:
        deform_scale: the largest vertex offset, in world units (0 switches deformation off).
        **kwargs: as :class:`Field` (bound, mlp_dtype, encoding arguments); ``hidden`` defaults to (32, 32).

    Forward: float32 [..., 3] world positions → (sdf float32 [...], offset float32 [..., 3]).
    """

    def __init__(self, *, deform_scale: float = 0.0, hidden: Sequence[int] = (32, 32), **kwargs) -> None:
        super().__init__(4, hidden, **kwargs)
        if not (isinstance(deform_scale, (int, float)) and deform_scale >= 0):
            raise ValueError(f"SDFField(): deform_scale must be a number >= 0, got {deform_scale!r}")
        self.deform_scale = float(deform_scale)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        raw = super().forward(positions)
        return raw[..., 0], self.deform_scale * torch.tanh(raw[..., 1:])

    def sdf(self, positions: torch.Tensor) -> torch.Tensor:
        """The signed distance alone (what the initial fit supervises; the deformation is left free)."""
        return super().forward(positions)[..., 0]
