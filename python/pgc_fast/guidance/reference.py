"""The reference image as the image-conditioned terms see it: Zero123's condition (RGBA → mask from alpha,
composited on grey 0.8, 256²; the original's nerf/fine/trainer.py, Trainer.__init__) and the CLIP reference loss
(the original's guidance/clip_utils.py with ``--guidance_o clip``: -cos between the CLIP embeddings of the
reference-view render and of the reference composited on white).

Orientation: our cameras are right-handed, the original's mirrored every render (render/camera.py says why), so a
reference image given by the user is mirrored left-right here (``mirror=True``), exactly as the reference-view
loss mirrors it (train/objectives.py load_reference): it is then a true view of our scene from the reference
camera, consistent with the relative cameras Zero123 is given.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pgc_fast.config.schema import IMAGE_FORMATS
from pgc_fast.guidance.models.clip_image import ClipImageEncoder

ZERO123_BACKGROUND = 0.8


def read_rgba(path: str | os.PathLike, *, mirror: bool = True) -> torch.Tensor:
    """The reference image as float32 [4, H, W] in [0, 1] (alpha = 1 for an image without one), mirrored
    left-right when ``mirror``. A directory means its first .png/.jpg by name (as the original's sorted list)."""
    from PIL import Image, ImageOps

    p = Path(path)
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not found:
            raise ValueError(f"read_rgba(): the directory {str(p)!r} holds no .png/.jpg image")
        p = found[0]
    with Image.open(p, formats=IMAGE_FORMATS) as im:  # plain raster decoders only
        rgba = im.convert("RGBA")
        if mirror:
            rgba = ImageOps.mirror(rgba)
        arr = np.asarray(rgba, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def composite(rgba: torch.Tensor, background: float) -> torch.Tensor:
    """[4, H, W] → [1, 3, H, W]: rgb·alpha + background·(1 − alpha)."""
    a = rgba[3:4]
    return (rgba[:3] * a + background * (1 - a))[None]


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to size² with antialiasing (a large reference shrinks without aliasing)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def zero123_reference(path: str | os.PathLike, size: int = 256, *, mirror: bool = True) -> torch.Tensor:
    """Zero123's condition image: [1, 3, size, size] in [0, 1], composited on grey 0.8 (what Zero123 was trained
    on) at the image's own size, then downsampled with antialiasing (the original resized bilinearly without it,
    to the render size and again to 256²)."""
    return downsample(composite(read_rgba(path, mirror=mirror), ZERO123_BACKGROUND), size).clamp(0, 1)


class ClipSimilarity:
    """The CLIP reference loss: L = -cos(CLIP(x), CLIP(reference on white)), mean over the batch.

    Args:
        encoder: the CLIP image tower (:func:`pgc_fast.guidance.models.clip_image.load_clip_image_encoder`).
        reference: [1, 3, H, W] in [0, 1], already composited on white; its embedding is computed once (the
            original recomputed it every step).
    """

    def __init__(self, encoder: ClipImageEncoder, reference: torch.Tensor):
        self.encoder = encoder
        p = next(encoder.model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.mean = torch.tensor(encoder.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(encoder.std, device=self.device).view(1, 3, 1, 1)
        with torch.no_grad():
            self.target = self.embed(reference.to(self.device)).detach()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP image embeddings [B, D] (float32) of images [B, 3, H, W] in [0, 1] (differentiable)."""
        x = downsample(images.float(), self.encoder.size)
        x = ((x - self.mean) / self.std).to(self.dtype)
        z = self.encoder.model(pixel_values=x).image_embeds.float()
        return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """-cos similarity to the reference, mean over the batch (0-d float32, differentiable w.r.t. images)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"ClipSimilarity.loss(): images must be [B, 3, H, W], got {tuple(images.shape)}")
        return -(self.embed(images) * self.target).sum(-1).mean()
