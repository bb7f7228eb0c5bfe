"""Fixtures for the pipeline tests: a directory laid out like the original repository's (data/…), so the README's
sample commands resolve their relative paths exactly as written."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

SEED_DATA = Path(os.environ.get("PGC_SEED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture()
def original_layout(tmp_path, monkeypatch):
    """cwd = a temp dir holding data/panda_spear_shield.obj, data/background.png, data/panda_reference.png.

    Uses the seed files when available (../shared/data), else small stand-ins generated here."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("panda_spear_shield.obj", "background.png", "panda_reference.png"):
        src = SEED_DATA / name
        if src.exists():
            os.symlink(src, data / name)
    if not (data / "panda_spear_shield.obj").exists():
        from pgc_fast.demo import make_demo_mesh
        from pgc_fast.mesh import save_mesh

        save_mesh(make_demo_mesh(16, 8), data / "panda_spear_shield.obj")
    for name in ("background.png", "panda_reference.png"):
        if not (data / name).exists():
            from PIL import Image

            Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(data / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
