"""The material head: a hash-grid field answering a physically based material at surface points (the original's
``--pbr`` Material_mlp, after nvdiffrec's MLPTexture3D: Munkberg et al., "Extracting Triangular 3D Models,
Materials, and Lighting From Images", CVPR 2022, https://arxiv.org/abs/2111.12503, §4).

    m(p) = lo + (hi − lo) · sigmoid(MLP_{64→32→9}(HashGrid(p)))

per channel: kd ∈ kd_range³ (base colour, linear), ks = (occlusion, roughness, metallic) ∈ [ks_min, ks_max] (the
original pins occlusion and metallic to 0 and roughness to [0.1, 0.98]), and a tangent-space normal perturbation
∈ [−1, 1]² × [0, 1] (OpenGL convention: x along +u, y along +v, z along the normal; normalised by the shader).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgc_fast.fields.hash_grid import Field

MATERIAL_CHANNELS = 9
"""kd (3), ks = occlusion, roughness, metallic (3), normal perturbation (3)."""
KD, KS, NORMAL = slice(0, 3), slice(3, 6), slice(6, 9)
"""Channel slices of a material value."""


class MaterialField(Field):
    """The PBR material field (module docstring). Constructor arguments as :class:`Field` (``hidden`` defaults
    to (32,), the original's) plus the ranges; a range with lo = hi pins the channel to that value.

    Forward: float32 [..., 3] world positions in [−bound, bound]³ → float32 [..., 9] (kd, ks, perturbation).
    """

    lo: torch.Tensor
    hi: torch.Tensor

    def __init__(
        self,
        *,
        kd_range: Sequence[float] = (0.03, 0.97),
        ks_min: Sequence[float] = (0.0, 0.1, 0.0),
        ks_max: Sequence[float] = (0.0, 0.98, 0.0),
        hidden: Sequence[int] = (32,),
        **kwargs,
    ) -> None:
        super().__init__(MATERIAL_CHANNELS, hidden, **kwargs)
        kd_lo, kd_hi = (float(x) for x in kd_range)
        lo = [kd_lo] * 3 + [float(x) for x in ks_min] + [-1.0, -1.0, 0.0]
        hi = [kd_hi] * 3 + [float(x) for x in ks_max] + [1.0, 1.0, 1.0]
        bad_len = len(lo) != MATERIAL_CHANNELS or len(hi) != MATERIAL_CHANNELS
        if bad_len or any(a > b for a, b in zip(lo, hi, strict=False)):
            raise ValueError(
                f"MaterialField(): ranges must be kd_range (lo, hi) and ks_min <= ks_max of 3 values each, got "
                f"{tuple(kd_range)}, {tuple(ks_min)}, {tuple(ks_max)}"
            )
        # Non-persistent: the ranges come from the configuration, not the checkpoint.
        self.register_buffer("lo", torch.tensor(lo), persistent=False)
        self.register_buffer("hi", torch.tensor(hi), persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        raw = super().forward(positions)
        return self.lo + (self.hi - self.lo) * torch.sigmoid(raw)

    def param_groups(self, lr: float, grid_lr_scale: float = 1.0) -> list[dict]:
        """The original's groups for the material: grid and MLP both at ``lr`` (its -O2 --pbr optimiser had one
        material group at lr_fine[1]); ``grid_lr_scale`` scales the grid's as for the other fields."""
        return super().param_groups(lr, grid_lr_scale)
