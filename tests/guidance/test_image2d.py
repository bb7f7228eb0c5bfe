"""2D mode end to end on a tiny model: files written, statistics recorded, PGC active."""

from __future__ import annotations

import csv

from pgc_fast.cli import main


def test_image_mode_short_run(tmp_path):
    ws = tmp_path / "ws"
    rc = main(
        [
            "image",
            "--text",
            "a panda",
            "--model",
            "tiny-sd",
            "--size",
            "64",
            "--iters",
            "3",
            "--save-every",
            "2",
            "--device",
            "cpu",
            "--workspace",
            str(ws),
            "--pgc-tau",
            "0.01",
        ]
    )
    assert rc == 0
    for name in ("image.png", "image_00002.png", "image_00003.png", "clip_stats.png", "clip_stats.csv"):
        assert (ws / name).is_file(), name
    rows = list(csv.DictReader(open(ws / "clip_stats.csv")))
    assert len(rows) == 3
    assert all(0.0 <= float(r["fraction_clipped"]) <= 1.0 for r in rows)
    assert any(float(r["fraction_clipped"]) > 0 for r in rows)  # tau = 0.01 clips something
    from PIL import Image

    assert Image.open(ws / "image.png").size == (64, 64)


def test_latent_mode_short_run(tmp_path):
    ws = tmp_path / "wsl"
    rc = main(
        [
            "image",
            "--text",
            "a panda",
            "--model",
            "tiny-sdxl",
            "--size",
            "64",
            "--iters",
            "2",
            "--latent",
            "--device",
            "cpu",
            "--workspace",
            str(ws),
            "--save-every",
            "0",
        ]
    )
    assert rc == 0 and (ws / "image.png").is_file() and (ws / "clip_stats.png").is_file()
