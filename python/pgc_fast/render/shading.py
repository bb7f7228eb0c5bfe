"""Shading models, one function each: what a covered pixel's colour is, given its albedo and normal.

The original's (threestudio-style) set: unlit albedo (the fixed-mesh -O2 path), Lambertian with ambient 0.1 and a
light at the camera centre jittered by N(0, I₃) per view, and the normal map ``(n+1)/2``. The renderer picks one
per batch (``shading="random"``: albedo with probability 0.2, else Lambertian). All inputs are [B,H,W,C].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SHADINGS = ("albedo", "lambertian", "normal")


def albedo(albedo: torch.Tensor) -> torch.Tensor:
    """Unlit: the albedo itself."""
    return albedo


def lambertian(
    albedo: torch.Tensor,
    normal: torch.Tensor,
    camera_position: torch.Tensor,
    *,
    ambient: float = 0.1,
    light_jitter: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``albedo·(ambient + (1−ambient)·max(0, n·l))`` with ``l = normalize(camera centre + light_jitter·ξ)``,
    ξ ~ N(0, I₃) drawn per view (the original drew one ξ per batch). camera_position float [B,3]."""
    B = normal.shape[0]
    xi = torch.randn(B, 3, generator=generator).to(normal.device)
    light = F.normalize(camera_position + light_jitter * xi, dim=-1)
    lam = (normal * light[:, None, None, :]).sum(-1, keepdim=True).clamp_min(0)
    return albedo * (ambient + (1 - ambient) * lam)


def normal_map(normal: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """``(n+1)/2``: the normal map normal-SDS scores (needs a 3-channel texture)."""
    if channels != 3:
        raise ValueError(f"render(): shading='normal' needs a 3-channel texture, got {channels}")
    return (normal + 1) * 0.5


def shade(
    model: str,
    albedo_: torch.Tensor,
    normal: torch.Tensor,
    camera_position: torch.Tensor,
    *,
    ambient: float = 0.1,
    light_jitter: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The foreground colour under ``model`` (one of :data:`SHADINGS`)."""
    if model == "albedo":
        return albedo(albedo_)
    if model == "normal":
        return normal_map(normal, albedo_.shape[-1])
    return lambertian(albedo_, normal, camera_position, ambient=ambient, light_jitter=light_jitter, generator=generator)
