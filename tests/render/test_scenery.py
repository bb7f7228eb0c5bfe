"""The scenery background ships with the package (render/scenery.py): the shipped PNG is what make_scenery draws,
runs use it by default from any directory, a user path wins, and a missing user path names its flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pgc_fast import config as C
from pgc_fast.render.scenery import SCENERY_PNG, load_background_image, make_scenery, scenery_path


def test_shipped_png_is_make_scenery_and_small():
    shipped = np.asarray(Image.open(SCENERY_PNG).convert("RGB"))
    drawn = make_scenery(512, seed=0)
    assert shipped.shape == drawn.shape == (512, 512, 3)
    assert np.abs(shipped.astype(int) - drawn.astype(int)).max() <= 1  # float rounding across platforms
    assert SCENERY_PNG.stat().st_size < 256 * 1024
    # a landscape, not a flat colour: sky above (blue dominant), something else at the horizon band
    assert drawn[:40, :, 2].mean() > drawn[:40, :, 0].mean() + 40
    assert drawn.std() > 30
    assert not np.array_equal(make_scenery(64, seed=1), make_scenery(64, seed=2))
    with pytest.raises(ValueError, match="size"):
        make_scenery(4)


def test_user_path_wins_and_missing_path_names_the_flag(tmp_path):
    default = load_background_image(None)
    assert (
        default.shape == (3, 512, 512) and default.dtype == torch.float32 and 0 <= default.min() <= default.max() <= 1
    )
    Image.fromarray(np.full((20, 30, 3), 255, np.uint8)).save(tmp_path / "white.png")
    mine = load_background_image(str(tmp_path / "white.png"))
    assert mine.shape == (3, 20, 30) and mine.min() == 1.0
    assert scenery_path(None) == SCENERY_PNG and scenery_path("x.png").name == "x.png"
    with pytest.raises(FileNotFoundError, match="--render.bg_image"):
        load_background_image(str(tmp_path / "missing.png"))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="--render.bg_image"):
        load_background_image(str(tmp_path / "junk.png"))


def test_validation_scenery_default_and_user_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/background.png here: the shipped image is used
    (tmp_path / "m.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    cfg = C.override(C.PRESETS["texture-sdxl-controlnet-pgc"], **{"guidance.text": "x", "mesh.path": "m.obj"})
    assert cfg.render.background == "scenery" and cfg.render.bg_image is None
    C.validate(cfg)
    bad = C.override(cfg, **{"render.bg_image": "data/background.png"})
    with pytest.raises(C.ConfigError, match=r"--render.bg_image.*no such file 'data/background.png'"):
        C.validate(bad)
