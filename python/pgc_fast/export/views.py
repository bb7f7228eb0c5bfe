"""Rendered outputs of a run: the validation image and the turntable (mp4 + gif), and for a PBR material its maps."""

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
    val_dir.mkdir(parents=True, exist_ok=True)
    cams = orbit_cameras(
        sum(r.radius_range) / 2, 60.0, 0.0, sum(r.focal_range) / 2 * r.resolution, r.resolution, device=scene.device
    )
    was_training = scene.texture.training
    scene.texture.eval()
    with torch.no_grad():
        out = scene.render(cams, train=False)
    scene.texture.train(was_training)
    path = val_dir / f"step{step:07d}_rgb.png"
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(out.image[0])).save(tmp)
    files = {"validation_last": path}
    if out.material is not None:  # a PBR material: its maps beside the lit render
        maps = val_dir / f"step{step:07d}_maps.png"
        with atomic_path(maps) as tmp:
            Image.fromarray(to_uint8(material_panels(out, r.bg_color)[0])).save(tmp)
        files["validation_maps"] = maps
    return files


def material_panels(out: Any, background: float = 1.0) -> torch.Tensor:
    """A PBR render's maps side by side, [B, 3, H, 4W] in [0, 1] over the background grey: base colour
    (sRGB-encoded kd), roughness, metallic, shading normal ((n + 1)/2)."""
    from pgc_fast.render.shading import srgb_encode

    m, mask = out.material, out.mask
    grey = lambda c: m[:, c : c + 1].expand(-1, 3, -1, -1)
    nrm = (out.shading_normal + 1) / 2 if out.shading_normal is not None else torch.zeros_like(m[:, :3])
    panels = [srgb_encode(m[:, 0:3]), grey(4), grey(5), nrm]
    return torch.cat([p * mask + background * (1 - mask) for p in panels], dim=-1)


def write_turntable(scene: Any, cfg: C.RunConfig, ws: Path) -> dict[str, Any]:
    """Turntable of the final texture (the original's 100-view test path): turntable.mp4 and turntable.gif; with a
    PBR material also turntable_maps.mp4/.gif (base colour, roughness, metallic, normal side by side)."""
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
    maps: list[Any] = []
    for i in range(0, len(cams), 8):
        out = scene.render(cams[i : i + 8], train=False)
        frames.extend(to_uint8(x) for x in out.image)
        if out.material is not None:  # a PBR material: a second turntable of its maps
            maps.extend(to_uint8(x) for x in material_panels(out, r.bg_color))
    files = _write_video(ws, "turntable", frames, o.fps)
    if maps:
        files.update(_write_video(ws, "turntable_maps", maps, o.fps))
    return files


def _write_video(ws: Path, name: str, frames: list[Any], fps: int) -> dict[str, Any]:
    """``<name>.gif`` and ``<name>.mp4`` (the mp4 only where imageio has an ffmpeg backend; a note says which)."""
    import imageio.v2 as imageio

    files: dict[str, Any] = {}
    gif = ws / f"{name}.gif"
    with atomic_path(gif) as tmp:
        imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0)
    files[f"{name}_gif"] = gif
    mp4 = ws / f"{name}.mp4"
    note = "_video_note" if name == "turntable" else f"_video_note_{name}"
    try:
        with atomic_path(mp4) as tmp:
            imageio.mimsave(tmp, frames, fps=fps, quality=8, macro_block_size=1)
        files[f"{name}_mp4"] = mp4
        files[note] = f"{name}.mp4 written with imageio-ffmpeg"
    except Exception as e:  # noqa: BLE001 - no ffmpeg backend (imageio raises several types): the gif is the turntable
        with contextlib.suppress(FileNotFoundError):
            mp4.unlink()
        files[note] = f"{name}.mp4 NOT written (no ffmpeg backend: {type(e).__name__}: {e}); see {name}.gif"
    return files
