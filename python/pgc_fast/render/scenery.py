"""The scenery background of training renders (``render.background=scenery``, turned on by the original's SDXL
runs: its main.py sets ``bg_scenery`` whenever the guidance name contains ``xl``).

The original read ``data/background.png`` from the working directory, so its SDXL commands only ran from its own
checkout. pgc-fast ships a background of its own, :data:`SCENERY_PNG` (made by :func:`make_scenery`, 512², a sky
with clouds over hills and their reflection in water: what the original's photograph shows), so the same commands
run from any directory; ``--render.bg_image PATH`` (a user path) wins, e.g. the original's own image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["SCENERY_PNG", "load_background_image", "make_scenery", "scenery_path"]

SCENERY_PNG = Path(__file__).resolve().parent / "assets" / "scenery.png"
"""The shipped background: ``make_scenery(512, seed=0)`` written as PNG (tests/render/test_scenery.py checks it)."""


def scenery_path(user_path: str | None) -> Path:
    """The background image a run uses: the user's ``render.bg_image`` when given, else the shipped one."""
    return Path(user_path) if user_path else SCENERY_PNG


def load_background_image(
    user_path: str | None, device: torch.device | str = "cpu", formats: tuple[str, ...] | None = None
) -> torch.Tensor:
    """The scenery as float32 [3, H, W] in [0, 1] on ``device``. ``formats``: the Pillow formats a user's file may
    be in (the run passes ``config.IMAGE_FORMATS``; None = any).

    Raises:
        FileNotFoundError / ValueError: naming the path and the flag that sets it (``--render.bg_image``).
    """
    from PIL import Image, UnidentifiedImageError

    path = scenery_path(user_path)
    try:
        with Image.open(path, formats=formats) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise FileNotFoundError(f"render.bg_image (--render.bg_image): no such file {str(path)!r}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"render.bg_image (--render.bg_image): {str(path)!r} is not a readable image ({e})") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(device)


def _value_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [0, 1]: a random ``(cells+1)²`` lattice, smoothstep-interpolated to ``size²``."""
    lattice = rng.random((cells + 1, cells + 1))
    t = np.linspace(0.0, cells, size, endpoint=False)
    i = t.astype(np.int64)
    f = t - i
    f = f * f * (3 - 2 * f)
    rows = lattice[i] * (1 - f)[:, None] + lattice[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _fractal(size: int, base_cells: int, octaves: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((size, size))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        out += amp * _value_noise(size, base_cells << o, rng)
        total += amp
        amp *= 0.5
    return out / total


def make_scenery(size: int = 512, seed: int = 0) -> np.ndarray:
    """A procedural landscape, uint8 [size, size, 3]: sky gradient with clouds, a ridge of hills at 55 % of the
    height, and below it calm water reflecting both (darkened, slightly rippled). Deterministic for a seed."""
    if size < 16:
        raise ValueError(f"make_scenery(): size must be >= 16, got {size}")
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, size)[:, None]  # 0 = top
    horizon = 0.55
    sky_top, sky_low = np.array([0.16, 0.42, 0.70]), np.array([0.72, 0.84, 0.92])
    k = np.clip(y / horizon, 0, 1)[..., None]
    sky = sky_top * (1 - k) + sky_low * k
    clouds = np.clip((_fractal(size, 4, 5, rng) - 0.45) * 3.0, 0, 1)[..., None] * (1 - 0.6 * k)
    sky = sky * (1 - clouds) + np.array([0.97, 0.97, 0.98]) * clouds
    ridge = _fractal(size, 6, 4, rng)[0]  # one row of noise: the skyline
    ridge = (ridge - ridge.min()) / max(float(np.ptp(ridge)), 1e-9)
    top = horizon - 0.03 - 0.2 * ridge**1.5  # skyline height per column (fraction from the top)
    rock = _fractal(size, 16, 3, rng)[..., None]
    hills = np.array([0.45, 0.33, 0.25]) * (0.7 + 0.6 * rock)
    hills = hills * (0.75 + 0.25 * np.clip((y - top[None, :]) / 0.05, 0, 1))[..., None]
    upper = np.where((y >= top[None, :])[..., None], hills, sky)
    # Water: the upper half mirrored about the horizon row, with a ripple on the sample column.
    h_row = int(round(horizon * size))
    rows = np.clip(2 * h_row - np.arange(size) - 1, 0, size - 1)
    ripple = (4 * (_fractal(size, 8, 2, rng) - 0.5)).astype(np.int64)
    cols = np.clip(np.arange(size)[None, :] + ripple, 0, size - 1)
    water = upper[rows[:, None], cols] * 0.8 + np.array([0.02, 0.05, 0.08])
    img = np.where((np.arange(size) >= h_row)[:, None, None], water, upper)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
