"""The turntable's video files: a GIF always, an MP4 through imageio-ffmpeg, and a plain note when that is missing."""

from __future__ import annotations

import importlib.util

import imageio.v3 as iio
import numpy as np
import pytest

from pgc_fast.export.views import _write_video


def frames(n: int = 6, size: int = 32) -> list[np.ndarray]:
    return [np.full((size, size, 3), 30 * i, np.uint8) for i in range(n)]


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="needs imageio-ffmpeg")
def test_gif_and_mp4_readable(tmp_path):
    got = _write_video(tmp_path, "turntable", frames(), 10)
    assert got["turntable_mp4"].name == "turntable.mp4" and "written" in got["_video_note"]
    assert iio.imread(got["turntable_gif"]).shape[0] == 6
    mp4 = iio.imread(got["turntable_mp4"])
    assert mp4.shape == (6, 32, 32, 3)
    assert abs(float(mp4[3].mean()) - 90) < 6  # the frames' grey levels survive the encoding
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turntable.gif", "turntable.mp4"]


def test_without_ffmpeg_the_note_says_so(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a)
    )
    got = _write_video(tmp_path, "turntable", frames(), 10)
    assert got["_video_note"] == "turntable.mp4 NOT written (imageio-ffmpeg is not installed); see turntable.gif"
    assert "turntable_mp4" not in got
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turntable.gif"]  # no half-written mp4 or temp file
