"""--control_type normal works (issue 22: it used to load every model, then fail with "normals must be given"):
the renderer's normals become the normal ControlNet's condition in the convention those ControlNets learnt."""

from __future__ import annotations

import torch

from pgc_fast.guidance.conditions import normal_condition
from pgc_fast.render import orbit_cameras
from pgc_fast.train.trainer import run


def test_normal_condition_is_camera_space_left_up_towards_viewer():
    cam = orbit_cameras(2.5, 90.0, 0.0, 10.0, 4)  # on +Z, looking at the origin: world +X is the image's right
    n = torch.zeros(1, 3, 4, 4)
    n[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # facing the image's right
    n[0, :, 0, 1] = torch.tensor([0.0, 1.0, 0.0])  # facing up
    n[0, :, 0, 2] = torch.tensor([0.0, 0.0, 1.0])  # facing the camera
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 0, :3] = 1
    img = normal_condition(n, cam.c2w, mask, 4)
    assert torch.allclose(img[0, :, 0, 0], torch.tensor([0.0, 0.5, 0.5]), atol=1e-5)  # red = left: right is 0
    assert torch.allclose(img[0, :, 0, 1], torch.tensor([0.5, 1.0, 0.5]), atol=1e-5)  # green = up
    assert torch.allclose(img[0, :, 0, 2], torch.tensor([0.5, 0.5, 1.0]), atol=1e-5)  # blue = towards the viewer
    assert torch.allclose(img[0, :, 3, 3], torch.tensor([0.5, 0.5, 1.0]))  # background
    # the same surface seen from the other side of the object (phi = 180) flips left/right
    back = orbit_cameras(2.5, 90.0, 180.0, 10.0, 4)
    assert torch.allclose(normal_condition(n, back.c2w, mask, 4)[0, :, 0, 0], torch.tensor([1.0, 0.5, 0.5]), atol=1e-5)


def test_run_with_a_normal_controlnet(tmp_path, tiny_config, tiny_guidance):
    over = {**tiny_guidance, "guidance.controlnets": ("normal",), "guidance.control_scales": (1.0,)}
    seen = []
    from pgc_fast.guidance import conditions

    orig = conditions.normal_condition

    def spy(normals, c2w, mask, size):
        out = orig(normals, c2w, mask, size)
        seen.append(out)
        return out

    conditions.normal_condition = spy
    try:
        result = run(tiny_config(tmp_path, "ws", "uv", **{**over, "optim.iters": 2}), quiet=True)
    finally:
        conditions.normal_condition = orig
    assert result.step == 2 and len(seen) == 2
    cond = seen[0]
    assert cond.shape[1] == 3 and cond.min() >= 0 and cond.max() <= 1
    assert (cond[:, 2] < 0.999).any()  # the vase is there, not just background
