"""ControlNet condition images: resizing, the depth map (near = bright) and the content-shuffled reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pgc_fast.config.schema import DepthConvention


# ----------------------------------------------------------------------------------------------- images
def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False, as the original), identity when the size already matches."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == hw:
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


def depth_condition(
    depth: torch.Tensor,
    mask: torch.Tensor | None,
    size: int,
    convention: DepthConvention = "near_bright",
    floor: float = 0.1,
) -> torch.Tensor:
    """Depth ControlNet condition image from a camera-space depth render, computed on the render's device.

    Args:
        depth: [B, 1, H, W] forward distance z (any float dtype); background pixels may hold anything.
        mask: [B, 1, H, W] coverage in [0, 1] (antialiased) or None (then pixels with z <= 0 or non-finite
            are background).
        size: output resolution (the model's, e.g. 1024 for SDXL).
        convention: ``near_bright`` (default): what MiDaS/DPT-trained depth ControlNets
            (diffusers/controlnet-depth-sdxl-1.0, SD 1.5 depth) saw in training: normalised inverse depth,
            near = bright, far = dark, background = 0 (black). The foreground is mapped per image to
            [floor, 1] so its farthest point stays distinguishable from the background.
            ``original``: PGC-3D's inverted map: background = 1.2 max z, per-image min-max
            normalised z, near = dark, background = white — except that the background depth is per image
            (the original took the batch max, a bug of the original).
    Returns:
        [B, 3, size, size] float32 in [0, 1], detached.
    """
    d = depth.detach().float()
    if mask is None:
        m = (torch.isfinite(d) & (d > 0)).float()
    else:
        m = mask.detach().float().clamp(0, 1)
    d = torch.where(torch.isfinite(d), d, torch.zeros_like(d))
    fg = m > 0.5
    big = torch.finfo(torch.float32).max
    b = d.shape[0]
    if convention == "near_bright":
        disp = torch.where(fg, 1.0 / d.clamp_min(1e-6), torch.zeros_like(d))
        lo = torch.where(fg, disp, torch.full_like(disp, big)).reshape(b, -1).amin(1).view(b, 1, 1, 1)
        hi = disp.reshape(b, -1).amax(1).view(b, 1, 1, 1)
        has = hi > 0
        lo = torch.where(has, lo, torch.zeros_like(lo))
        span = hi - lo
        # a foreground at one depth (e.g. a plane facing the camera) is "near": full brightness
        norm = torch.where(
            span > 1e-8 * hi.clamp_min(1e-30), (disp - lo) / span.clamp_min(1e-30), torch.ones_like(disp)
        )
        img = (floor + (1 - floor) * norm.clamp(0, 1)) * m  # antialiased edge blends towards black
    elif convention == "original":
        zmax = torch.where(fg, d, torch.zeros_like(d)).reshape(b, -1).amax(1).view(b, 1, 1, 1)
        full = d * m + 1.2 * zmax * (1 - m)
        lo = full.reshape(b, -1).amin(1).view(b, 1, 1, 1)
        hi = full.reshape(b, -1).amax(1).view(b, 1, 1, 1)
        img = (full - lo) / (hi - lo).clamp_min(1e-8)
    else:
        raise ValueError(f"depth_condition(): convention must be near_bright|original, got {convention!r}")
    return resize(img, size).clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def normal_condition(normals: torch.Tensor, c2w: torch.Tensor, mask: torch.Tensor | None, size: int) -> torch.Tensor:
    """Normal ControlNet condition image from a render's world-space normals, on the render's device.

    The SD 1.5 normal ControlNets (fusing/stable-diffusion-v1-5-controlnet-normal, lllyasviel/sd-controlnet-normal)
    were trained on normal maps made from MiDaS depth: camera space, red = towards the image's left, green =
    up, blue = towards the viewer, each (n + 1) / 2, background (0.5, 0.5, 1). The original fed world-space
    normals rescaled to [-1, 1] instead (its trainer's condition list).

    Args:
        normals: [B, 3, H, W] unit world-space normals (anything where the mask is 0).
        c2w: [B, 4, 4] camera-to-world with rotation columns (right, down, forward), as pgc_fast renders.
        mask: [B, 1, H, W] coverage in [0, 1], or None (then pixels with a zero normal are background).
        size: output resolution.
    Returns:
        [B, 3, size, size] float32 in [0, 1], detached.
    """
    n = normals.detach().float()
    if n.dim() != 4 or n.shape[1] != 3 or c2w.shape != (n.shape[0], 4, 4):
        raise ValueError(
            f"normal_condition(): normals must be [B,3,H,W] and c2w [B,4,4], got {list(n.shape)}, {list(c2w.shape)}"
        )
    rot = c2w.detach().float()[:, :3, :3]  # world from camera; its transpose takes world vectors to camera
    cam = torch.einsum("bji,bjhw->bihw", rot, n)  # (right, down, forward) components
    img = (torch.stack([-cam[:, 0], -cam[:, 1], -cam[:, 2]], 1) + 1) / 2
    m = (n.abs().sum(1, keepdim=True) > 0).float() if mask is None else mask.detach().float().clamp(0, 1)
    bg = torch.tensor([0.5, 0.5, 1.0], device=n.device).view(1, 3, 1, 1)
    return resize(img * m + bg * (1 - m), size).clamp(0, 1).contiguous()


def content_shuffle(image: torch.Tensor, generator: torch.Generator | None = None, f: int = 256) -> torch.Tensor:
    """Content shuffle for the SD 1.5 shuffle ControlNet (lllyasviel/control_v11e_sd15_shuffle), on the GPU.

    Same idea as controlnet_aux's ContentShuffleDetector: warp the image with a smooth random flow field
    (random noise at 1/f of the size, bicubically upsampled, scaled to the image size) so content is kept and
    layout is destroyed. image: [B, 3, H, W] in [0, 1]; returns the same shape, float32.
    """
    b, _, h, w = image.shape
    dev = image.device

    def noise_disk() -> torch.Tensor:
        nh, nw = max(h // f, 1) + 2, max(w // f, 1) + 2
        n = torch.rand((b, 1, nh, nw), device=dev, generator=generator)
        n = F.interpolate(
            n, size=(h + 2 * (h // max(nh - 2, 1)), w + 2 * (w // max(nw - 2, 1))), mode="bicubic", align_corners=False
        )
        top, left = (n.shape[-2] - h) // 2, (n.shape[-1] - w) // 2
        n = n[..., top : top + h, left : left + w]
        lo = n.amin(dim=(-1, -2), keepdim=True)
        hi = n.amax(dim=(-1, -2), keepdim=True)
        return (n - lo) / (hi - lo).clamp_min(1e-8)

    gx = noise_disk() * 2 - 1  # normalised sample coordinates in [-1, 1]
    gy = noise_disk() * 2 - 1
    grid = torch.cat([gx, gy], 1).permute(0, 2, 3, 1)
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
