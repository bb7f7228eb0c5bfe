"""Rendered outputs of a run: the validation image and the turntable (mp4 + gif)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.export.files import atomic_path


def to_uint8(img_chw: torch.Tensor) -> np.ndarray:
    return (img_chw.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def write_validation(scene: Any, cfg: C.RunConfig, val_dir: Path, step: int) -> dict[str, Path]:
    """The original's validation view (θ = 60°, φ = 0, r = mean radius, focal = mean focal_range · H), white bg."""
    from PIL import Image

    from pgc_fast.render import orbit_cameras

    r = cfg.render
    res = getattr(scene, "view_resolution", r.resolution)  # latent mode: the decoded image's size
    val_dir.mkdir(parents=True, exist_ok=True)
    cams = orbit_cameras(sum(r.radius_range) / 2, 60.0, 0.0, sum(r.focal_range) / 2 * res, res, device=scene.device)
    was_training = scene.texture.training
    scene.texture.eval()
    with torch.no_grad():
        img = scene.render(cams, train=False).image[0]
    scene.texture.train(was_training)
    path = val_dir / f"step{step:07d}_rgb.png"
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(img)).save(tmp)
    return {"validation_last": path}


def write_turntable(scene: Any, cfg: C.RunConfig, ws: Path) -> dict[str, Any]:
    """Turntable of the final texture (the original's 100-view test path): turntable.mp4 and turntable.gif."""
    import imageio.v2 as imageio

    from pgc_fast.render import turntable

    o, r = cfg.output, cfg.render
    cams = turntable(
        o.turntable_frames,
        height=o.turntable_resolution,
        radius=sum(r.radius_range) / 2,
        focal_ratio=sum(r.focal_range) / 2,
        device=scene.device,
    )
    frames: list[Any] = []
    for i in range(0, len(cams), 8):
        frames.extend(to_uint8(x) for x in scene.render(cams[i : i + 8], train=False).image)
    files: dict[str, Any] = {}
    gif = ws / "turntable.gif"
    with atomic_path(gif) as tmp:
        imageio.mimsave(tmp, frames, duration=1000 / o.fps, loop=0)
    files["turntable_gif"] = gif
    mp4 = ws / "turntable.mp4"
    try:
        with atomic_path(mp4) as tmp:
            imageio.mimsave(tmp, frames, fps=o.fps, quality=8, macro_block_size=1)
        files["turntable_mp4"] = mp4
        files["_video_note"] = "turntable.mp4 written with imageio-ffmpeg"
    except Exception as e:  # noqa: BLE001 - no ffmpeg backend (imageio raises several types): the gif is the turntable
        with contextlib.suppress(FileNotFoundError):
            mp4.unlink()
        files["_video_note"] = (
            f"turntable.mp4 NOT written (no ffmpeg backend: {type(e).__name__}: {e}); see turntable.gif"
        )
    return files
