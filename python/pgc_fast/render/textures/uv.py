"""UVTexture: an explicit multi-resolution UV texture pyramid, and seam dilation of UV images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.renderer import RenderMesh
from pgc_fast.render.textures.bake import (
    BakedTexture,
    _uv_raster,
    bake_vertex_colors_to_uv,
    dilate_seams,
)


class UVTexture(nn.Module):
    """Explicit UV texture as a multi-resolution pyramid (module docstring).

    resolution: side R of the finest level (power-of-two multiples of min_resolution recommended);
    channels: C; min_resolution: side of the coarsest level (levels halve from R until ≤ min_resolution);
    init: initial colour (number or C values, in (0, 1) for the sigmoid activation); activation: "sigmoid"
    (values in (0, 1); default) or "none" (raw sum, for latents). Parameters: ``levels[l]`` float32
    [1, r_l, r_l, C], coarse → fine; the coarsest holds the initial colour, the others start at zero.
    """

    domain = "uv"
    needs_uvs = True

    def __init__(
        self,
        resolution: int = 2048,
        channels: int = 3,
        *,
        min_resolution: int = 16,
        init: float | Sequence[float] = 0.5,
        activation: str = "sigmoid",
    ) -> None:
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
        assert total is not None  # __init__ makes at least one level
        return total.permute(0, 2, 3, 1)

    def sample(self, backend: RasterBackend, uv: torch.Tensor) -> torch.Tensor:
        """Texture values at uv float32 [B,H,W,2] → [B,H,W,C]: Σ_l bilinear(level_l, uv), then the activation.
        Clamp-to-edge addressing (atlas charts do not wrap)."""
        total = None
        for p in self.levels:
            s = backend.texture(p, uv, filter_mode="linear", boundary_mode="clamp")
            total = s if total is None else total + s
        assert total is not None  # __init__ makes at least one level
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

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        """One group: a UV pyramid is a grid of texels, so every level gets grid_lr_scale × lr."""
        return [{"params": list(self.parameters()), "lr": lr * grid_lr_scale, "name": "uv_pyramid"}]

    def jittered(self, generator: torch.Generator | None, amount: float = 1e-3) -> UVTexture:
        """Itself: a UV lookup has no query position to jitter."""
        return self

    def init_from_vertex_colors(self, mesh: RenderMesh, backend: RasterBackend, **kwargs: Any) -> bool:
        """The vertex colours baked into this texture's atlas (needs ``mesh.uvs``)."""
        img = bake_vertex_colors_to_uv(mesh, backend, self.resolution).clamp(0, 1)
        self.set_image(img[..., : self.channels])
        return True

    @torch.no_grad()
    def bake(self, mesh: RenderMesh, backend: RasterBackend, resolution: int, dilation: int) -> BakedTexture:
        """The pyramid at ``resolution``² on the mesh's own atlas, seams dilated by ``dilation`` texels so bilinear
        lookups near chart borders stay clean."""
        if mesh.uvs is None or mesh.uv_faces is None:
            raise ValueError("UVTexture.bake(): the mesh has no UVs")
        img = _resize(self.export().float(), resolution)
        mask = _uv_raster(backend, mesh.uvs, mesh.uv_faces, resolution)[0, ..., 3] > 0
        if dilation:
            img = dilate_seams(img, mask, dilation)
        return BakedTexture(texture=img, mask=mask, uvs=mesh.uvs, uv_faces=mesh.uv_faces)


def _resize(img: torch.Tensor, res: int) -> torch.Tensor:
    """[R,R,C] → [res,res,C]: area-averaged when shrinking, bilinear when growing."""
    if img.shape[0] == res:
        return img
    x = img.permute(2, 0, 1)[None]
    mode = "area" if img.shape[0] > res else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(res, res), mode=mode, **kw)[0].permute(1, 2, 0)
