"""Rendered outputs of a run: the validation image and the turntable (mp4 + gif), and for a PBR material its maps."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.export.files import atomic_path


def to_uint8(img_chw: torch.Tensor) -> np.ndarray:
    return (img_chw.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def write_validation(scene: Any, cfg: C.RunConfig, val_dir: Path, step: int) -> dict[str, Path]:
    """The original's validation view (θ = 60°, φ = 0, r = mean radius, focal = mean focal_range · H), white bg, at
    ``output.val_resolution`` when set; with shape optimisation (DMTet) its normal map too (``_normal.png``,
    (n + 1)/2 on white); with a PBR material its maps (``_maps.png``: base colour, roughness, metallic, normal)."""
    from pgc_fast.render import orbit_cameras

    r = cfg.render
    # output.val_resolution when set; else the render's (latent mode: the decoded image's size)
    res: int = cfg.output.val_resolution or int(getattr(scene, "view_resolution", r.resolution))
    val_dir.mkdir(parents=True, exist_ok=True)
    cams = orbit_cameras(sum(r.radius_range) / 2, 60.0, 0.0, sum(r.focal_range) / 2 * res, res, device=scene.device)
    was_training = scene.texture.training
    scene.texture.eval()
    with torch.no_grad():
        if cfg.mesh.shape == "dmtet":
            out, normal = scene.render_views(cams)
            images = {"rgb": out.image[0], "normal": normal[0]}
        else:
            out = scene.render(cams, train=False)
            images = {"rgb": out.image[0]}
        if getattr(out, "material", None) is not None:  # a PBR material: its maps beside the lit render
            images["maps"] = material_panels(out, r.bg_color)[0]
    scene.texture.train(was_training)
    files = {}
    for kind, img in images.items():
        path = val_dir / f"step{step:07d}_{kind}.png"
        _save_png(path, to_uint8(img))
        files["validation_last" if kind == "rgb" else f"validation_{kind}_last"] = path
    return files


def _save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp)


def material_panels(out: Any, background: float = 1.0) -> torch.Tensor:
    """A PBR render's maps side by side, [B, 3, H, 4W] in [0, 1] over the background grey: base colour
    (sRGB-encoded kd), roughness, metallic, shading normal ((n + 1)/2)."""
    from pgc_fast.render.shading import srgb_encode

    m, mask = out.material, out.mask
    grey = lambda c: m[:, c : c + 1].expand(-1, 3, -1, -1)
    nrm = (out.shading_normal + 1) / 2 if out.shading_normal is not None else torch.zeros_like(m[:, :3])
    panels = [srgb_encode(m[:, 0:3]), grey(4), grey(5), nrm]
    return torch.cat([p * mask + background * (1 - mask) for p in panels], dim=-1)


def depth_image(depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A depth render [B,1,H,W] as a viewable image [B,3,H,W]: per frame, near = white to far = 0.15 grey over the
    covered pixels, black background."""
    cov = mask > 0.5
    big = torch.finfo(depth.dtype).max
    lo = torch.where(cov, depth, torch.full_like(depth, big)).amin(dim=(1, 2, 3), keepdim=True)
    hi = torch.where(cov, depth, torch.full_like(depth, -big)).amax(dim=(1, 2, 3), keepdim=True)
    d = (depth - lo) / (hi - lo).clamp_min(1e-12)
    return ((1 - 0.85 * d) * cov).clamp(0, 1).expand(-1, 3, -1, -1)


def write_turntable(scene: Any, cfg: C.RunConfig, ws: Path) -> dict[str, Any]:
    """Turntable of the final texture (the original's 100-view test path): turntable.mp4 and turntable.gif; with
    shape optimisation (DMTet) also turntable_normal and turntable_depth (the original's _normal/_depth videos);
    with a PBR material also turntable_maps (base colour, roughness, metallic, normal side by side)."""
    from pgc_fast.render import turntable

    o, r = cfg.output, cfg.render
    cams = turntable(
        o.turntable_frames,
        height=o.turntable_resolution,
        radius=sum(r.radius_range) / 2,
        focal_ratio=sum(r.focal_range) / 2,
        device=scene.device,
    )
    shape = cfg.mesh.shape == "dmtet"
    frames: dict[str, list[Any]] = {"": [], "_normal": [], "_depth": [], "_maps": []}
    for i in range(0, len(cams), 8):
        if shape:
            out, normal = scene.render_views(cams[i : i + 8])
            frames["_normal"].extend(to_uint8(x) for x in normal)
            frames["_depth"].extend(to_uint8(x) for x in depth_image(out.depth, out.mask))
        else:
            out = scene.render(cams[i : i + 8], train=False)
        frames[""].extend(to_uint8(x) for x in out.image)
        if getattr(out, "material", None) is not None:
            frames["_maps"].extend(to_uint8(x) for x in material_panels(out, r.bg_color))
    files: dict[str, Any] = {}
    for suffix, fr in frames.items():
        if not fr:
            continue
        got = _write_video(ws, f"turntable{suffix}", fr, o.fps)
        if suffix:  # the note is the RGB turntable's
            got.pop("_video_note", None)
        files.update(got)
    return files


def _write_video(ws: Path, stem: str, frames: list[Any], fps: int) -> dict[str, Any]:
    """``<stem>.gif`` and, when imageio has an ffmpeg backend, ``<stem>.mp4`` (files keyed ``<stem>_gif`` /
    ``_mp4``; ``_video_note`` says how the mp4 went)."""
    import imageio.v2 as imageio

    files: dict[str, Any] = {}
    gif = ws / f"{stem}.gif"
    with atomic_path(gif) as tmp:
        imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0)
    files[f"{stem}_gif"] = gif
    mp4 = ws / f"{stem}.mp4"
    if importlib.util.find_spec("imageio_ffmpeg") is None:  # else imageio would hand the .mp4 to another plugin
        files["_video_note"] = f"{stem}.mp4 NOT written (imageio-ffmpeg is not installed); see {stem}.gif"
        return files
    try:
        with atomic_path(mp4) as tmp:
            imageio.mimsave(tmp, frames, format="FFMPEG", fps=fps, quality=8, macro_block_size=1)
        files[f"{stem}_mp4"] = mp4
        files["_video_note"] = f"{stem}.mp4 written with imageio-ffmpeg"
    except Exception as e:  # noqa: BLE001 - no ffmpeg backend (imageio raises several types): the gif is the turntable
        with contextlib.suppress(FileNotFoundError):
            mp4.unlink()
        files["_video_note"] = f"{stem}.mp4 NOT written (no ffmpeg backend: {type(e).__name__}: {e}); see {stem}.gif"
    return files
