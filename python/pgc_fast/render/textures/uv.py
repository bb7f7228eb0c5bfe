"""UVTexture: an explicit multi-resolution UV texture pyramid, and seam dilation of UV images."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pgc_fast.render.backends import RasterBackend


class UVTexture(nn.Module):
    """Explicit UV texture as a multi-resolution pyramid (module docstring).

    resolution: side R of the finest level (power-of-two multiples of min_resolution recommended);
    channels: C; min_resolution: side of the coarsest level (levels halve from R until ≤ min_resolution);
    init: initial colour (number or C values, in (0, 1) for the sigmoid activation); activation: "sigmoid"
    (values in (0, 1); default) or "none" (raw sum, for latents). Parameters: ``levels[l]`` float32
    [1, r_l, r_l, C], coarse → fine; the coarsest holds the initial colour, the others start at zero.
    """

    domain = "uv"

    def __init__(self, resolution: int = 2048, channels: int = 3, *, min_resolution: int = 16,
                 init: float | Sequence[float] = 0.5, activation: str = "sigmoid") -> None:
        super().__init__()
        if not 1 <= resolution <= 16384:
            raise ValueError(f"UVTexture(): resolution must be in 1..16384, got {resolution}")
        if activation not in ("sigmoid", "none"):
            raise ValueError(f"UVTexture(): activation must be sigmoid|none, got {activation!r}")
        sizes = [int(resolution)]
        while sizes[-1] > max(1, min_resolution) and sizes[-1] % 2 == 0:
            sizes.append(sizes[-1] // 2)
        sizes.reverse()
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.activation = activation
        init_t = torch.as_tensor(init, dtype=torch.float32).expand(channels).clone()
        if activation == "sigmoid":
            if not ((init_t > 0) & (init_t < 1)).all():
                raise ValueError(f"UVTexture(): init must be in (0, 1) with the sigmoid activation, got {init}")
            init_t = torch.logit(init_t)
        self.levels = nn.ParameterList()
        for i, r in enumerate(sizes):
            p = torch.zeros(1, r, r, channels)
            if i == 0:
                p += init_t
            self.levels.append(nn.Parameter(p))

    @property
    def sizes(self) -> list[int]:
        return [int(p.shape[1]) for p in self.levels]

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) if self.activation == "sigmoid" else x

    def raw(self) -> torch.Tensor:
        """Pre-activation R×R texture, float32 [1,R,R,C] (sum of the bilinearly upsampled levels)."""
        R = self.resolution
        total = None
        for p in self.levels:
            x = p.permute(0, 3, 1, 2)
            if x.shape[-1] != R:
                x = F.interpolate(x, size=(R, R), mode="bilinear", align_corners=False)
            total = x if total is None else total + x
        return total.permute(0, 2, 3, 1)

    def sample(self, backend: RasterBackend, uv: torch.Tensor) -> torch.Tensor:
        """Texture values at uv float32 [B,H,W,2] → [B,H,W,C]: Σ_l bilinear(level_l, uv), then the activation.
        Clamp-to-edge addressing (atlas charts do not wrap)."""
        total = None
        for p in self.levels:
            s = backend.texture(p, uv, filter_mode="linear", boundary_mode="clamp")
            total = s if total is None else total + s
        return self._act(total)

    @torch.no_grad()
    def export(self) -> torch.Tensor:
        """The texture as float32 [R,R,C] (row 0 = v = 0), after the activation."""
        return self._act(self.raw())[0].detach().clone()

    @torch.no_grad()
    def export_image(self) -> torch.Tensor:
        """The texture as an image float32 [R,R,C], row 0 = image top, for ``pgc_fast.mesh`` / OBJ / PNG with the
        same UVs read as OBJ UVs (v up): the rows of :meth:`export` flipped."""
        return self.export().flip(0).contiguous()

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        """Make the pyramid represent ``image`` float [R,R,C] exactly (at texel centres): a Laplacian-style
        decomposition — each level holds what the coarser ones miss at its resolution."""
        R, C = self.resolution, self.channels
        if image.shape != (R, R, C):
            raise ValueError(f"UVTexture.set_image(): image must be [{R},{R},{C}], got {list(image.shape)}")
        img = image.float().to(self.levels[0].device)
        if self.activation == "sigmoid":
            img = torch.logit(img.clamp(1e-4, 1 - 1e-4))
        target = img.permute(2, 0, 1)[None]
        acc = torch.zeros_like(target)
        for p in self.levels:
            r = p.shape[1]
            t_r = F.interpolate(target, size=(r, r), mode="area") if r != R else target
            a_r = F.interpolate(acc, size=(r, r), mode="area") if r != R else acc
            lvl = t_r - a_r
            p.copy_(lvl.permute(0, 2, 3, 1))
            up = F.interpolate(lvl, size=(R, R), mode="bilinear", align_corners=False) if r != R else lvl
            acc = acc + up


# ------------------------------------------------------------------------------------------------- dilation
def _pull_push(tex: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill every uncovered texel of tex [1,C,H,W] from a pyramid of covered averages (mask [1,1,H,W] 0/1).
    Both sums use the same pooling divisor, so their ratio is the mean of the covered texels of each block."""
    H, W = tex.shape[-2:]
    if H <= 1 and W <= 1:
        return tex
    k = (min(2, H), min(2, W))
    s = F.avg_pool2d(tex * mask, k, stride=k, ceil_mode=True)
    n = F.avg_pool2d(mask, k, stride=k, ceil_mode=True)
    coarse = torch.where(n > 0, s / n.clamp_min(1e-12), torch.zeros_like(s))
    coarse = _pull_push(coarse, (n > 0).float())
    up = F.interpolate(coarse, size=(H, W), mode="nearest")
    return torch.where(mask > 0, tex, up)


@torch.no_grad()
def dilate_seams(texture: torch.Tensor, mask: torch.Tensor, pixels: int = 16, fill: bool = True) -> torch.Tensor:
    """Seam padding: grow the covered texels outwards so bilinear/mip filtering never reads empty texels.

    texture float [H,W,C]; mask bool [H,W] (covered texels). ``pixels`` rings of dilation, each setting a newly
    reached texel to the mean of its covered 8-neighbours (the original's nearest-neighbour padding, smoothed);
    with ``fill`` every remaining empty texel is then filled by pull-push (averages of a covered-texel pyramid),
    so the atlas has no black gaps at any mip level. Covered texels are never changed. Returns float [H,W,C].
    """
    if texture.dim() != 3 or mask.shape != texture.shape[:2]:
        raise ValueError(f"dilate_seams(): texture must be [H,W,C] and mask [H,W], got {list(texture.shape)}, "
                         f"{list(mask.shape)}")
    if pixels < 0:
        raise ValueError(f"dilate_seams(): pixels must be >= 0, got {pixels}")
    tex = texture.float().permute(2, 0, 1)[None]
    m = mask.to(tex.device, torch.float32)[None, None]
    if m.sum() == 0:
        return texture.float().clone()
    orig = tex.clone()
    for _ in range(pixels):
        s = F.avg_pool2d(tex * m, 3, stride=1, padding=1, count_include_pad=True)
        n = F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=True)
        new = (n > 0) & (m == 0)
        if not bool(new.any()):
            break
        tex = torch.where(new, s / n.clamp_min(1e-12), tex)
        m = torch.maximum(m, new.float())
    if fill and bool((m == 0).any()):
        tex = _pull_push(tex, m)
    out = torch.where(mask.to(tex.device)[None, None], orig, tex)
    return out[0].permute(1, 2, 0).contiguous()

