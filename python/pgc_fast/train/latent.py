"""Latent mode (the original's ``--latent``, Latent-NeRF style): the texture field answers 4 raw latent channels,
training renders go to the guidance without a VAE encode, and everything a person looks at is decoded.

* Training: the scene renders the 4-channel field, unlit, over the zero latent, at ``render.resolution`` (the
  original's 128² for SD, 256² for SDXL); the guidance resizes it to its latent size (64², 128²) and scores it as
  latents (guidance/engine.py ``encode``). PGC clips the gradient of the 4-channel render per pixel.
* Evaluation (validation image, turntable, ``--test``): :func:`render_decoded` renders the latents exactly as a
  training view (``render.resolution``, unlit, zero background), resizes them to the latent size as the guidance
  does, decodes them with the guidance's VAE, and composites the decoded image over the background colour with the
  coverage mask of the geometry rendered at the requested size. The VAE's decode of the zero-latent background is
  replaced by the background colour, so evaluation images look like the RGB modes' (the original showed the
  decoded background).
* Export: a latent texture has no colours to bake, so :func:`bake_decoded` bakes the decoded views
  (export/latent_bake.py: ``texture.latent_bake_views`` views decoded, projected back onto the surface,
  cos⁴-weighted per texel).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pgc_fast.render import orbit_cameras
from pgc_fast.render.renderer import RenderOutput

__all__ = ["LatentDecoder", "attach_decoder", "bake_cameras", "bake_decoded", "render_decoded"]

DECODE_CHUNK = 8
"""Views decoded per VAE call."""


@dataclasses.dataclass
class LatentDecoder:
    """Latent renders [B, 4, h, w] → RGB [B, 3, R, R] in [0, 1]: resized to ``latent_size`` the way the guidance
    resizes a training render, then decoded by ``decode`` (the guidance's VAE decode). ``resolution`` = R."""

    decode: Callable[[torch.Tensor], torch.Tensor]
    resize: Callable[[torch.Tensor, int], torch.Tensor]
    latent_size: int
    resolution: int

    @classmethod
    def from_guidance(cls, guidance: Any) -> LatentDecoder:
        """The decoder of a :class:`pgc_fast.guidance.Guidance` (its VAE, latent size and image size)."""
        from pgc_fast.guidance.conditions import resize

        return cls(guidance.decode, resize, int(guidance.latent_size), int(guidance.resolution))

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.dim() != 4 or latents.shape[1] != 4:
            raise ValueError(f"LatentDecoder(): latents must be [B, 4, h, w], got {list(latents.shape)}")
        z = self.resize(latents.float(), self.latent_size)
        return torch.cat([self.decode(z[i : i + DECODE_CHUNK]).float() for i in range(0, z.shape[0], DECODE_CHUNK)])


def attach_decoder(scene: Any, objective: Any) -> None:
    """Give a latent-mode scene its decoder, from the objective's guidance (after ``objective.setup``)."""
    if not scene.latent:
        return
    guidance = getattr(objective, "guidance", None)
    if guidance is None or not hasattr(guidance, "decode"):
        raise ValueError(
            "run(): guidance.latent needs a guidance objective: its VAE decodes the latent renders for the "
            f"validation images, turntable and export, got {type(objective).__name__}"
        )
    scene.decoder = LatentDecoder.from_guidance(guidance)


@torch.no_grad()
def render_decoded(scene: Any, cameras: Any) -> RenderOutput:
    """An evaluation render of a latent-mode scene at the cameras' resolution (module docstring): the decoded image
    over ``render.bg_color``, with the geometry's mask, depth, positions and normals at that resolution."""
    if scene.decoder is None:
        raise RuntimeError("render_decoded(): the latent-mode scene has no decoder (train.latent.attach_decoder)")
    r = scene.cfg.render
    mesh = scene.rmesh
    lat = scene.renderer.render(
        mesh, cameras, scene.texture, background=0.0, shading="albedo", antialias=r.antialias,
        resolution=(r.resolution, r.resolution),
    )  # fmt: skip
    rgb = scene.decoder(lat.image)
    ones = torch.ones(mesh.vertices.shape[0], 1, device=mesh.device)
    geo = scene.renderer.render(mesh, cameras, ones, background=0.0, shading="albedo", antialias=r.antialias)
    H, W = cameras.resolution
    if tuple(rgb.shape[-2:]) != (H, W):
        rgb = F.interpolate(rgb, size=(H, W), mode="bilinear", align_corners=False, antialias=H < rgb.shape[-2])
    image = rgb * geo.mask + r.bg_color * (1 - geo.mask)
    return dataclasses.replace(geo, image=image, albedo=rgb * (geo.mask > 0))


BAKE_POLAR_DEG = (30.0, 150.0)
"""Polar range of the bake views (training sees 45°-100°; the rest reach the top and bottom)."""


def bake_cameras(cfg: Any, resolution: int, device: torch.device) -> Any:
    """``texture.latent_bake_views`` views spread evenly over the band of :data:`BAKE_POLAR_DEG` (a golden-angle
    spiral, uniform in cos θ), at the validation camera's distance and focal length (mean radius_range, mean
    focal_range)."""
    r, n = cfg.render, cfg.texture.latent_bake_views
    lo, hi = (math.cos(math.radians(a)) for a in BAKE_POLAR_DEG)
    theta = [math.degrees(math.acos(lo + (hi - lo) * (i + 0.5) / n)) for i in range(n)]
    phi = [(i * 137.50776405) % 360.0 for i in range(n)]
    focal = sum(r.focal_range) / 2 * resolution
    return orbit_cameras(sum(r.radius_range) / 2, theta, phi, focal, resolution, device=device)


@torch.no_grad()
def bake_decoded(scene: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(texture float32 [R,R,3] row 0 = top, uvs float32 [T,2], uv_faces int64 [F,3], fraction of the surface's
    texels some view saw) of a latent-mode scene: the decoded views baked into an atlas (export/latent_bake.py)."""
    from pgc_fast.export.latent_bake import bake_views

    t = scene.cfg.texture
    cams = bake_cameras(scene.cfg, scene.view_resolution, scene.device)
    baked, seen = bake_views(
        lambda c: render_decoded(scene, c), scene.rmesh, scene.renderer.backend, cams, t.export_resolution, t.dilation
    )
    img = baked.texture.float().clamp(0, 1).cpu().numpy()[::-1].copy()  # renderer rows → image rows (top first)
    return img, baked.uvs.cpu().numpy().astype(np.float32), baked.uv_faces.cpu().numpy().astype(np.int64), seen
