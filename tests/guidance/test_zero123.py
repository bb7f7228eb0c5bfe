"""Zero123 guidance (guidance/zero123.py, guidance/methods/zero123.py) on the tiny built-in model: forward shapes
and conditioning, the relative camera against the original's arithmetic, the two bugs of the original fixed (and
reproduced by their parity switches), SDS equal to the original's step written its way (parity/zero123_step.py),
the diffusers layouts, the missing-weights error, -O3's ImageGuidance and the CLIP reference loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgc_fast.config import GuidanceConfig
from pgc_fast.guidance import (
    GuidanceLoadError,
    build_zero123_builtin,
    build_zero123_guidance,
    load_image_guidance,
    load_zero123,
)
from pgc_fast.guidance.methods import zero123 as M
from pgc_fast.guidance.models.zero123 import save_diffusers
from pgc_fast.guidance.reference import ZERO123_BACKGROUND, zero123_reference
from pgc_fast.parity.zero123_step import OriginalZero123
from pgc_fast.render import orbit_cameras


@pytest.fixture(scope="module")
def tiny():
    return build_zero123_builtin("tiny-zero123")


def _guidance(tiny, ref=None, **kw):
    cfg = GuidanceConfig(zero123=True, **kw)
    ref = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)) if ref is None else ref
    return build_zero123_guidance(cfg, tiny, reference=ref, iters=100, seed=0)


def _cams(b: int = 2, res: int = 48):
    return orbit_cameras([1.2, 1.4][:b], [60.0, 85.0][:b], [30.0, 200.0][:b], 40.0, res)


# ----------------------------------------------------------------------------------------------- conditioning
def test_forward_shapes_and_conditioning(tiny):
    g = _guidance(tiny)
    b = 2
    z_t = torch.randn(b, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([300, 300])
    hidden, concat, dT = g.conditioning(_cams(b).c2w)
    assert hidden.shape == (2 * b, 1, 32) and concat.shape == (2 * b, 4, 8, 8) and dT.shape == (b, 4)
    assert hidden[:b].abs().max() == 0 and concat[:b].abs().max() == 0  # unconditional half: zeros for both
    eps_c, eps_u = g.predict_cfg(z_t, t, hidden, concat)
    assert eps_c.shape == eps_u.shape == (b, 4, 8, 8)

    other = orbit_cameras([1.2, 1.4], [70.0, 85.0], [100.0, 200.0], 40.0, 48)  # view 0 moved, view 1 kept
    h2, c2, _ = g.conditioning(other.c2w)
    eps_c2, eps_u2 = g.predict_cfg(z_t, t, h2, c2)
    assert not torch.allclose(eps_c2[0], eps_c[0], atol=1e-5)  # the pose changes the prediction
    torch.testing.assert_close(eps_c2[1], eps_c[1])
    torch.testing.assert_close(eps_u2, eps_u)  # the unconditional branch sees no pose

    g2 = _guidance(tiny, ref=torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(9)))
    h3, c3, _ = g2.conditioning(_cams(b).c2w)
    eps_c3, eps_u3 = g2.predict_cfg(z_t, t, h3, c3)
    assert not torch.allclose(eps_c3, eps_c, atol=1e-5)  # the reference image changes the prediction
    torch.testing.assert_close(eps_u3, eps_u)  # ... and not the unconditional one


def _original_pose(r: float, theta: float, phi: float) -> torch.Tensor:
    """The original's rand_poses/circle_poses camera (nerf/provider.py): mirrored frame, same centre formula."""
    th, ph = math.radians(theta), math.radians(phi)
    c = torch.tensor([math.sin(th) * math.sin(ph) * r, math.cos(th) * r, math.sin(th) * math.cos(ph) * r])
    fwd = torch.nn.functional.normalize(-c, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(fwd, torch.tensor([0.0, -1.0, 0.0])), dim=0)
    up = torch.nn.functional.normalize(torch.linalg.cross(right, fwd), dim=0)
    pose = torch.eye(4)
    pose[:3, :3] = torch.stack([right, up, fwd], dim=-1)
    pose[:3, 3] = c
    return pose


def _original_get_T(t_target: torch.Tensor, t_cond: torch.Tensor) -> torch.Tensor:
    """The original's get_T / cartesian_to_spherical (nerf/provider.py), on centres permuted to (z, x, y)."""

    def sph(xyz):
        xy = xyz[..., 0] ** 2 + xyz[..., 1] ** 2
        z = torch.sqrt(xy + xyz[:, 2] ** 2)
        return torch.stack(
            [torch.arctan2(torch.sqrt(xy), xyz[..., 2]), torch.arctan2(xyz[..., 1], xyz[..., 0]), z], dim=-1
        )

    sc, st = sph(t_cond), sph(t_target)
    d_az = (st[..., 1] - sc[..., 1]) % (2 * np.pi)
    return torch.stack([st[..., 0] - sc[..., 0], torch.sin(d_az), torch.cos(d_az), st[..., 2] - sc[..., 2]], dim=-1)


def test_relative_camera_gives_the_originals_numbers_for_the_same_physical_cameras():
    from pgc_fast.train.objectives import REFERENCE_POSE

    g = torch.Generator().manual_seed(0)
    n = 64
    r = 1.0 + 0.5 * torch.rand(n, generator=g)
    theta = 45 + 55 * torch.rand(n, generator=g)
    phi = 360 * torch.rand(n, generator=g)
    theirs = torch.stack([_original_pose(float(a), float(b), float(c)) for a, b, c in zip(r, theta, phi, strict=True)])
    rr = 2.5 / 1.8
    pose_0 = torch.tensor([[-1.0, 0.0, -0.0, 0.0 * rr], [0.0, -0.866, -0.5, 0.9 * rr], [0.0, 0.5, -0.866, 1.5588 * rr]])
    convert = lambda x: x[..., [2, 0, 1]]
    expected = _original_get_T(convert(theirs[:, :3, 3]), convert(pose_0[None, :3, 3]))

    ours = orbit_cameras(r, theta, phi, 40.0, 32)
    ref = orbit_cameras(*REFERENCE_POSE, 40.0, 32)
    torch.testing.assert_close(ours.c2w[:, :3, 3], theirs[:, :3, 3], atol=1e-5, rtol=1e-5)  # same physical centres
    assert torch.linalg.det(ours.c2w[:, :3, :3]).min() > 0.99 > -0.99 > torch.linalg.det(theirs[:, :3, :3]).max()
    torch.testing.assert_close(ref.c2w[0, :3, 3], pose_0[:3, 3], atol=2e-4, rtol=0)  # pose_0 is our REFERENCE_POSE
    got = M.relative_camera(ours.c2w[:, :3, 3], pose_0[:3, 3])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # and in closed form: [theta - 60°, sin phi, cos phi, r - 2.5]
    want = torch.stack(
        [torch.deg2rad(theta - 60), torch.sin(torch.deg2rad(phi)), torch.cos(torch.deg2rad(phi)), r - 2.5]
    )
    torch.testing.assert_close(M.relative_camera(ours.c2w[:, :3, 3], ref.c2w[0, :3, 3]), want.T, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------- the two bugs
def _vae_inputs(g, images, c2w):
    seen = []
    handle = g.vae.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    try:
        g.step(images, step=1, c2w=c2w)
    finally:
        handle.remove()
    return seen[0]


def test_double_normalisation_is_fixed(tiny):
    """A render in [0, 1] reaches the VAE in [-1, 1] (mid-grey at 0). The original's arithmetic — reproduced by the
    parity switch and by its step written its way — gives 4x - 3 in [-3, 1] and fails the same check."""
    x = torch.linspace(0, 1, 64).expand(1, 3, 64, 64).contiguous().requires_grad_(True)  # resize is the identity
    c2w = _cams(1, 64).c2w

    def check(vae_in):
        torch.testing.assert_close(vae_in, 2 * x.detach() - 1)
        assert vae_in.min() == -1 and vae_in.max() == 1

    check(_vae_inputs(_guidance(tiny), x, c2w))
    original = _vae_inputs(_guidance(tiny, zero123_double_norm=True), x, c2w)
    torch.testing.assert_close(original, 4 * x.detach() - 3)
    with pytest.raises(AssertionError):
        check(original)
    twin_seen = []
    twin = OriginalZero123(tiny)
    h = tiny.vae.encoder.register_forward_pre_hook(lambda mod, args: twin_seen.append(args[0].detach()))
    try:
        twin.train_step(twin.get_img_embeds(torch.rand(1, 3, 64, 64)), x, torch.zeros(1, 4))
    finally:
        h.remove()
    with pytest.raises(AssertionError):
        check(twin_seen[-1])


def test_bgt_image_term_compares_like_ranges(tiny):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert M.rgb_term(x, x) == 0  # a perfect target costs nothing
    original = M.rgb_term(x, x, range_bug=True)
    torch.testing.assert_close(original, ((2 * x - 1 - x) ** 2).mean())  # the original's [-1, 1] vs [0, 1]
    assert original > 0.05


@pytest.mark.parametrize("loss", ["sds", "bgt"])
def test_step_shapes_gradient_and_stats(tiny, loss):
    g = _guidance(tiny, zero123_loss=loss, pgc_tau=0.05)
    img = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    out = g.step(img, step=3, c2w=_cams().c2w)
    out.loss.backward()
    assert out.grad.shape == out.latents.shape == (2, 4, 8, 8) and out.t.shape == (2,)
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().max() > 0
    assert img.grad.abs().amax(1).max() <= 0.05 * (1 + 1e-5)  # PGC attached once, on the images
    assert out.stats["relative_camera"].shape == (2, 4) and out.stats["grad_norm"].shape == (2,)
    if loss == "bgt":
        assert {"latent_mse", "rgb_mse"} <= set(out.stats)
        assert int(out.t[0]) == int(1000 * (0.681 - (0.681 - 0.25) * math.sqrt(2 / 100)))  # BGT+ schedule: 620
    with pytest.raises(ValueError, match="c2w must be"):
        g.step(img, step=1, c2w=None)


def test_sds_equals_the_originals_step_under_the_parity_switches(tiny):
    """With both parity switches the SDS gradient on the image is the original's (its step written its way over
    the same weights and random draws); without them it is not."""
    ref = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    cams = _cams(2, 64)
    img0 = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))

    def ours(**switches):
        g = _guidance(tiny, ref=ref, zero123_guidance_scale=100.0, **switches)
        img = img0.clone().requires_grad_(True)
        g.step(img, step=1, c2w=cams.c2w).loss.backward()
        return img.grad

    twin = OriginalZero123(tiny, generator=torch.Generator().manual_seed(0))
    emb = twin.get_img_embeds(ref)
    img = img0.clone().requires_grad_(True)
    dT = M.relative_camera(cams.c2w[:, :3, 3], torch.tensor([0.0, 1.25, 2.1650635]))
    # the original rendered the mirror image of our view (its mirrored cameras)
    twin.train_step(emb, img.flip(-1), dT, t_range=(0.02, 0.5)).backward()
    # float32 noise amplified by the CFG scale of 100 (the two compute abar_t in different precisions)
    tol = 1e-5 * float(img.grad.abs().max())
    torch.testing.assert_close(ours(zero123_double_norm=True, zero123_mirrored=True), img.grad, rtol=1e-4, atol=tol)
    assert not torch.allclose(ours(), img.grad, rtol=1e-2, atol=1e-6)


def test_reference_embedding_is_the_originals(tiny):
    ref = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    g = _guidance(tiny, ref=ref)
    c, v = OriginalZero123(tiny).get_img_embeds(ref)
    torch.testing.assert_close(g.embedding, c, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g.ref_latent, v, atol=1e-5, rtol=1e-5)
    assert g.embedding.shape == (1, 1, 32) and g.ref_latent.shape == (1, 4, 8, 8)


def test_reference_image_rgba_on_grey_and_mirrored(tmp_path):
    from PIL import Image

    arr = np.zeros((16, 16, 4), np.uint8)
    arr[..., 0] = 255
    arr[..., 3] = 255
    arr[:, :4, 3] = 0  # transparent left stripe
    Image.fromarray(arr).save(tmp_path / "ref.png")
    ref = zero123_reference(tmp_path / "ref.png", 16)
    assert ref.shape == (1, 3, 16, 16)
    torch.testing.assert_close(ref[0, :, :, -4:], torch.full((3, 16, 4), ZERO123_BACKGROUND))  # now on the right
    torch.testing.assert_close(ref[0, :, :, :4], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 16, 4))
    as_given = zero123_reference(tmp_path / "ref.png", 16, mirror=False)
    torch.testing.assert_close(as_given, ref.flip(-1))
    assert zero123_reference(tmp_path / "ref.png", 8).shape == (1, 3, 8, 8)


# ----------------------------------------------------------------------------------------------- loading
def test_diffusers_layouts_round_trip(tmp_path, tiny):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    save_diffusers(tiny, tmp_path / "z")
    b = load_zero123(str(tmp_path / "z"))
    x = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    h = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = tiny.unet(x, torch.tensor([5]), encoder_hidden_states=h).sample
        torch.testing.assert_close(b.unet(x, torch.tensor([5]), encoder_hidden_states=h).sample, want)
    torch.testing.assert_close(b.projection.weight, tiny.projection.weight)
    assert (b.resolution, b.clip_size) == (64, 32)
    # diffusers' community Zero1to3 layout: cc_projection/ with projection.weight
    src = tmp_path / "z" / "clip_camera_projection"
    dst = tmp_path / "z" / "cc_projection"
    dst.mkdir()
    sd = load_file(str(src / "diffusion_pytorch_model.safetensors"))
    save_file(
        {k.replace("proj.", "projection."): v for k, v in sd.items()}, str(dst / "diffusion_pytorch_model.safetensors")
    )
    (dst / "config.json").write_text(json.dumps({"in_channel": 36, "out_channel": 32}))
    shutil.rmtree(src)
    torch.testing.assert_close(load_zero123(str(tmp_path / "z")).projection.bias, tiny.projection.bias)
    shutil.rmtree(dst)
    with pytest.raises(GuidanceLoadError, match="no camera projection"):
        load_zero123(str(tmp_path / "z"))


def test_missing_weights_give_the_same_clear_error(tmp_path, monkeypatch, reference_png):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = GuidanceConfig(
        zero123=True, zero123_model="someone/zero123-absent", ref_path=reference_png, cache_dir=str(tmp_path)
    )
    with pytest.raises(GuidanceLoadError) as e:
        load_image_guidance(cfg, device="cpu", dtype="fp32", seed=0, iters=10)
    msg = str(e.value)
    assert "someone/zero123-absent: not in the cache (HF_HUB_OFFLINE=1)" in msg
    assert "hf download someone/zero123-absent" in msg and "--guidance.zero123_model" in msg
    assert "tiny-zero123" in msg and str(tmp_path) in msg


# ----------------------------------------------------------------------------------------------- -O3 and CLIP
def test_image_guidance_adds_the_text_term(reference_png):
    cfg = GuidanceConfig(
        zero123=True,
        zero123_model="tiny-zero123",
        model="tiny-sd",
        text="a panda",
        ref_path=reference_png,
        grad_scale=0.01,
        pgc_tau=0.1,
        zero123_loss="bgt",
    )
    ig = load_image_guidance(cfg, device="cpu", dtype="fp32", seed=0, iters=10)
    assert ig.text is not None and ig.text.generator is ig.zero123.generator  # one noise stream
    img = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    out = ig.step(img, step=1, c2w=_cams(2, 64).c2w, azimuth_deg=torch.tensor([30.0, 200.0]))
    out.loss.backward()
    assert {"text_grad_norm", "grad_norm", "rgb_mse"} <= set(out.stats)
    assert len(ig.text.pgc_hooks) == 1 and not ig.zero123.pgc_hooks  # one PGC hook, on the images
    assert torch.isfinite(img.grad).all() and img.grad.abs().amax(1).max() <= 0.1 * (1 + 1e-5)
    state = ig.state_dict()
    assert set(state) == {"zero123", "text"}
    ig.load_state_dict(state)
    alone = load_image_guidance(
        GuidanceConfig(zero123=True, zero123_model="tiny-zero123", ref_path=reference_png),
        device="cpu",
        dtype="fp32",
        seed=0,
        iters=10,
    )
    assert alone.text is None


def test_clip_similarity_loss():
    from pgc_fast.guidance.models.clip_image import load_clip_image_encoder
    from pgc_fast.guidance.reference import ClipSimilarity

    enc = load_clip_image_encoder("tiny-clip")
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 48, 48, generator=g)
    sim = ClipSimilarity(enc, ref)
    torch.testing.assert_close(sim.loss(ref), torch.tensor(-1.0))
    other = torch.rand(2, 3, 48, 48, generator=g).requires_grad_(True)
    loss = sim.loss(other)
    loss.backward()
    assert -1.0 < float(loss.detach()) <= 1.0 and other.grad.abs().max() > 0


def test_cost_benchmark_runs_at_tiny_size(capsys):
    """benches/gpu_zero123.py end to end on the CPU: ours and the eager twin in one process, parity line passing."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benches"))
    import gpu_zero123

    argv = [
        "--model",
        "tiny-zero123",
        "--device",
        "cpu",
        "--size",
        "64",
        "--views",
        "2",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--methods",
        "sds",
        "bgt",
        "--twin-dtypes",
        "fp32",
    ]
    assert gpu_zero123.main(argv) == 0
    out = capsys.readouterr().out
    assert "(pass, tolerance" in out and "| ours | bgt | bf16 |" in out and "| twin | sds | fp32 |" in out
