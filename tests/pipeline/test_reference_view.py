"""The reference view is used the way round the original's training saw it (issue 22): the original's cameras are
mirrored, ours are not, so train/objectives.py load_reference mirrors the reference image. On the seed's panda,
our render's silhouette at the reference pose overlaps the reference as loaded better than its mirror."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pgc_fast.train.objectives import REFERENCE_FOCAL, REFERENCE_POSE, load_reference

SEED_DATA = Path(os.environ.get("PGC_SEED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
R = 128


def _foreground(rgb: torch.Tensor) -> np.ndarray:
    """The figure of an RGB image on a plain grey backdrop (panda_reference.png has no alpha channel): confident
    figure pixels (bright, dark or saturated: the backdrop and its glow are mid-grey), holes filled by flooding the
    backdrop from the border."""
    g = rgb.mean(0)
    sat = rgb.amax(0) - rgb.amin(0)
    fig = ((g > 0.75) | (g < 0.3) | (sat > 0.12)).float()[None, None]
    reach = torch.zeros_like(fig)
    reach[..., 0, :] = reach[..., -1, :] = reach[..., :, 0] = reach[..., :, -1] = 1
    reach = reach * (1 - fig)
    for _ in range(4 * R):
        nxt = F.max_pool2d(reach, 3, 1, 1) * (1 - fig)
        if torch.equal(nxt, reach):
            break
        reach = nxt
    return (reach[0, 0] == 0).numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_load_reference_mirrors_the_image(tmp_path):
    from PIL import Image

    img = np.zeros((8, 8, 4), np.uint8)
    img[..., 3] = 255
    img[:, :2, 0] = 255  # red stripe on the left, alpha hole on the right
    img[:, 6:, 3] = 0
    Image.fromarray(img).save(tmp_path / "ref.png")
    rgb, mask = load_reference(str(tmp_path / "ref.png"), 8)
    assert rgb.shape == (3, 8, 8) and mask.shape == (1, 8, 8)
    assert rgb[0, :, -2:].min() > 0.9 and rgb[0, :, :2].max() < 0.1  # the stripe is now on the right
    assert mask[0, :, :2].sum() == 0 and mask[0, :, 2:].min() == 1  # and the alpha hole on the left
    Image.fromarray(img[..., :3]).save(tmp_path / "a_rgb.png")
    assert load_reference(str(tmp_path), 8)[1].min() == 1  # a directory: its first image; no alpha = all ones


@pytest.mark.skipif(not (SEED_DATA / "panda_reference.png").exists(), reason="seed data (../shared/data) absent")
def test_reference_pose_silhouette_matches_the_reference_as_loaded():
    from pgc_fast.mesh import Normalization, load_mesh
    from pgc_fast.render import MeshRenderer, RenderMesh, orbit_cameras

    mesh = load_mesh(SEED_DATA / "panda_spear_shield.obj")
    norm = Normalization.fit(mesh.vertices)  # command H trains on the canonicalised mesh (-O2)
    rm = RenderMesh(
        vertices=torch.from_numpy(norm.apply(np.asarray(mesh.vertices))).float(),
        faces=torch.from_numpy(np.asarray(mesh.faces)),
    )
    cam = orbit_cameras(*REFERENCE_POSE, REFERENCE_FOCAL * R, R)
    out = MeshRenderer("cpu", "cpu").render(rm, cam, lambda p: torch.ones(p.shape[0], 3), background=1.0)
    silhouette = out.mask[0, 0].numpy() > 0.5
    rgb, _ = load_reference(str(SEED_DATA / "panda_reference.png"), R)
    fg = _foreground(rgb)
    as_loaded, mirrored = _iou(silhouette, fg), _iou(silhouette, fg[:, ::-1])
    print(f"IoU of the render's silhouette at pose_0: reference as loaded {as_loaded:.3f}, its mirror {mirrored:.3f}")
    assert as_loaded > mirrored + 0.02
    assert as_loaded > 0.6  # the pose and framing agree with the reference at all
