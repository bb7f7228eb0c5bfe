"""Baking rendered views into a UV texture: the export of a latent-mode texture, which has no colours of its own.

A latent texture field answers 4 latent channels; its colours exist only in the VAE's decode of a whole view
(a convolutional network that sees 8x8-pixel latent cells and their neighbours). So the export bakes what the
turntable shows: ``views`` decoded images are projected back onto the surface. Each covered texel's surface point
is projected into every view; a view counts where the point is visible there (the view's depth at that pixel
within a tolerance of the point's depth) and the pixel is well inside the silhouette and away from depth edges
(the decode smears colour across them over a few pixels); its weight is cos⁴ of the angle between the surface
normal and the direction to the camera, so the most frontal views dominate. A texel takes the weighted mean of
its views' colours. Texels no view sees well fall back to any view that sees them at all; texels no view sees
(deep concavities) are filled from their neighbours by the seam dilation. The decodes of different views are not
exactly consistent (each is decoded on its own), so the texture is their consensus, slightly softer than one view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from pgc_fast.mesh.uv import atlas
from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.camera import Cameras
from pgc_fast.render.renderer import RenderMesh, RenderOutput
from pgc_fast.render.textures.bake import BakedTexture, bake_field_to_uv, dilate_seams

__all__ = ["ViewProjector", "bake_views"]

EDGE_PIXELS = 2
"""A pixel is reliable when every pixel within this many of it is fully covered and at a similar depth."""
COS_POWER = 4
"""Exponent of the cosine weight."""


class ViewProjector(nn.Module):
    """Colour at world points from rendered views: ``forward(points [N,3]) → [N,4]`` = (weighted mean colour, 1 where
    some view sees the point, else 0). Views: images [V,3,H,W], depth/mask [V,1,H,W], normals [V,3,H,W] of
    ``cameras`` (module docstring for the weights)."""

    def __init__(
        self, cameras: Cameras, image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, normal: torch.Tensor
    ) -> None:
        super().__init__()
        self.cameras = cameras
        self.image, self.depth, self.normal = image.float(), depth.float(), normal.float()
        k = 2 * EDGE_PIXELS + 1
        full = (mask >= 0.999).float()
        eroded = -F.max_pool2d(-full, k, stride=1, padding=EDGE_PIXELS)
        big = torch.where(full > 0, self.depth, torch.full_like(self.depth, float("inf")))
        d_max = F.max_pool2d(torch.where(full > 0, self.depth, torch.zeros_like(self.depth)), k, 1, EDGE_PIXELS)
        d_min = -F.max_pool2d(-big, k, stride=1, padding=EDGE_PIXELS)
        flat = (d_max - d_min) < 0.02 * self.depth
        self.seen = full  # the point is on the surface there at all
        self.reliable = eroded * flat.float()

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n = points.shape[0]
        acc = torch.zeros(2, n, 3, device=points.device)
        wsum = torch.zeros(2, n, device=points.device)
        H, W = self.cameras.resolution
        for v in range(len(self.cameras)):
            cam = self.cameras[v : v + 1]
            px = cam.project(points)[0]
            z = cam.to_camera(points)[0][:, 2]
            grid = (px / px.new_tensor([W, H]) * 2 - 1)[None, None]

            def at(t: torch.Tensor, mode: str, v: int = v, grid: torch.Tensor = grid) -> torch.Tensor:
                return F.grid_sample(t[v : v + 1], grid, mode=mode, align_corners=False)[0, :, 0].T

            d = at(self.depth, "nearest")[:, 0]
            to_cam = F.normalize(cam.position - points, dim=-1)
            cos = (at(self.normal, "nearest") * to_cam).sum(-1).clamp_min(0)
            tol = 0.01 * z + 3 * z / cam.focal
            visible = (z > 0) & ((d - z).abs() < tol)
            w = cos**COS_POWER * visible
            colour = at(self.image, "bilinear")
            for tier, m in enumerate((self.reliable, self.seen)):
                wt = w * (at(m, "nearest")[:, 0] > 0.5)
                acc[tier] += wt[:, None] * colour
                wsum[tier] += wt
        use = (wsum[0] > 0)[:, None]
        out = torch.where(use, acc[0] / wsum[0].clamp_min(1e-12)[:, None], acc[1] / wsum[1].clamp_min(1e-12)[:, None])
        return torch.cat([out, (wsum[1] > 0).float()[:, None]], dim=-1)


def render_views(view_fn: Callable[[Cameras], RenderOutput], cameras: Cameras, batch: int = 4) -> dict[str, Any]:
    """image, depth, mask and normal of every view, rendered ``batch`` views at a time."""
    outs = [view_fn(cameras[i : i + batch]) for i in range(0, len(cameras), batch)]
    return {k: torch.cat([getattr(o, k) for o in outs]) for k in ("image", "depth", "mask", "normal")}


@torch.no_grad()
def bake_views(
    view_fn: Callable[[Cameras], RenderOutput],
    mesh: RenderMesh,
    backend: RasterBackend,
    cameras: Cameras,
    resolution: int,
    dilation: int,
) -> tuple[BakedTexture, float]:
    """Bake the views ``view_fn(cameras)`` renders (RGB in [0, 1], with depth, mask and normals) onto ``mesh``
    (training frame, the cameras' frame) in a new atlas of ``resolution``² (``pgc_fast.mesh.uv.atlas``), seams
    dilated by ``dilation`` texels. Returns the baked texture (renderer rows: row 0 = v = 0) and the fraction of
    the covered texels that some view saw."""
    views = render_views(view_fn, cameras)
    proj = ViewProjector(cameras, views["image"], views["depth"], views["mask"], views["normal"])
    uvs, uv_faces = atlas(mesh.vertices.cpu().numpy(), mesh.faces.cpu().numpy(), resolution)
    baked = bake_field_to_uv(
        proj, mesh.vertices, mesh.faces, backend, uvs=uvs.to(mesh.device), uv_faces=uv_faces.to(mesh.device),
        resolution=resolution, dilate_pixels=0,
    )  # fmt: skip
    seen = baked.mask & (baked.texture[..., 3] > 0.5)
    rgb = dilate_seams(baked.texture[..., :3], seen, max(dilation, 1))
    fraction = float(seen.sum()) / max(1, int(baked.mask.sum()))
    return BakedTexture(texture=rgb, mask=baked.mask, uvs=baked.uvs, uv_faces=baked.uv_faces), fraction
