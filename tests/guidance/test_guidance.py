"""Guidance.step on the tiny built-in models (CPU): every method, the SDS formula with a mocked UNet, both CFG
conventions, PGC with a GradScaler scale, ControlNets, latent mode, normal-SDS, VSD's camera handling."""

from __future__ import annotations

import pytest
import torch

from pgc_fast.config import GuidanceConfig
from pgc_fast.guidance import Guidance, build_builtin, build_guidance

AZ = torch.tensor([0.0, 180.0])
POLAR = torch.tensor([60.0, 70.0])


def _guidance(bundle, *, iters: int = 20, **kw) -> Guidance:
    """Guidance over ``bundle`` (CPU) with view-dependent prompts on (the tests check view ids), seed 0."""
    cfg = GuidanceConfig(**{"text": "a panda", "negative": "blurry", "dir_text": True, **kw})
    return build_guidance(cfg, bundle, seed=0, iters=iters)


@pytest.mark.parametrize("method", ["sds", "csd", "ssd", "bgt"])
def test_methods_finite_gradients(tiny_sdxl, method, make_inputs):
    g = _guidance(_without_shuffle(tiny_sdxl), loss=method, controlnets=("depth",), control_scales=(0.8,))
    img, depth, mask = make_inputs()
    normals = torch.rand(2, 3, 64, 64).requires_grad_(True)
    out = g.step(img, step=5, azimuth_deg=AZ, polar_deg=POLAR, depth=depth, mask=mask, normals=normals)
    assert out.grad.shape == (2, 4, 8, 8) and out.grad.dtype == torch.float32
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    assert out.normal_grad is not None and out.normal_grad.shape == (2, 4, 8, 8)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    for x in (img, normals):
        assert x.grad is not None and x.grad.shape == x.shape and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0
    assert out.stats["view_id"].tolist() == [0, 2]  # front, back
    assert out.t.shape == (2,)


def test_configuration_checked_against_the_models(tiny_sd):
    """One clear error each: ControlNet scales that do not match the loaded ControlNets, a negative PGC threshold
    (off is None), the shuffle ControlNet without a reference image."""
    with pytest.raises(ValueError, match="control_scales must have one entry per ControlNet"):
        _guidance(tiny_sd, control_scales=(1.0, 0.5))
    with pytest.raises(ValueError, match="pgc_tau must be >= 0 or None"):
        _guidance(_no_control(tiny_sd), pgc_tau=-1.0)
    from dataclasses import replace

    with pytest.raises(ValueError, match="shuffle ControlNet needs cfg.ref_path"):
        _guidance(replace(tiny_sd, control_types=["shuffle"]))


def _without_shuffle(bundle):
    """The session bundle has depth + shuffle; most tests use depth only (shuffle needs a reference image)."""
    from dataclasses import replace

    cn = bundle.controlnet
    first = cn.nets[0] if hasattr(cn, "nets") else cn
    return replace(bundle, controlnet=first, control_types=["depth"])


def test_multi_controlnet_with_shuffle_reference(tiny_sdxl, reference_png, make_inputs):
    g = _guidance(tiny_sdxl, controlnets=("depth", "shuffle"), control_scales=(0.7, 0.3), ref_path=reference_png)
    assert g.reference is not None and g.reference.shape == (1, 3, 64, 64)
    img, depth, mask = make_inputs()
    out = g.step(img, step=1, depth=depth, mask=mask)
    out.loss.backward()
    assert torch.isfinite(img.grad).all()
    with pytest.raises(ValueError, match="depth must be given"):
        g.step(img, step=1)


def _mock_unet(g: Guidance, eps_c: torch.Tensor, eps_u: torch.Tensor, seen: dict):
    def predict_cfg(z_t, t, ids, controls, orig_hw):
        seen["z_t"], seen["t"] = z_t.clone(), t.clone()
        return eps_c, eps_u

    g.predict_cfg = predict_cfg


@pytest.mark.parametrize("convention, scale", [("pgc", 100.0), ("diffusers", 7.5)])
def test_sds_gradient_equals_spec_formula(tiny_sd, convention, scale, make_inputs):
    """g_z = (1 - abar_t)(eps_hat - eps) with eps_hat per convention; injected exactly into the latents."""
    g = _guidance(
        _no_control(tiny_sd),
        loss="sds",
        cfg_convention=convention,
        guidance_scale=scale,
        vae_sample=False,
        controlnets=(),
    )
    gen = torch.Generator().manual_seed(3)
    eps_c, eps_u = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    seen: dict = {}
    _mock_unet(g, eps_c, eps_u, seen)
    img, _, _ = make_inputs()
    out = g.step(img, step=1)
    abar = g.alphas[seen["t"]].view(-1, 1, 1, 1)
    z = out.latents.float()
    noise = (seen["z_t"] - abar.sqrt() * z) / (1 - abar).sqrt()
    eps_hat = eps_c + scale * (eps_c - eps_u) if convention == "pgc" else eps_u + scale * (eps_c - eps_u)
    expected = (1 - abar) * (eps_hat - noise)
    torch.testing.assert_close(out.grad, expected, atol=1e-4, rtol=1e-4)
    assert 20 <= seen["t"].min() and seen["t"].max() <= 500
    # the loss injects exactly that gradient: d loss / d image = J_encoder^T grad
    out.loss.backward()
    img2 = img.detach().clone().requires_grad_(True)
    z2, _ = g.encode(img2)
    (ref,) = torch.autograd.grad(z2, img2, expected)
    torch.testing.assert_close(img.grad, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.loss, 0.5 * expected.pow(2).sum() / 2, atol=1e-3, rtol=1e-4)


def _no_control(bundle):
    from dataclasses import replace

    return replace(bundle, controlnet=None, control_types=[])


def test_cfg_rescale_and_latent_clamp(tiny_sd, make_inputs):
    gen = torch.Generator().manual_seed(4)
    eps_c, eps_u = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    g = _guidance(_no_control(tiny_sd), cfg_rescale=0.5, latent_clamp=0.05)
    _mock_unet(g, eps_c, eps_u, {})
    img, _, _ = make_inputs()
    out = g.step(img, step=1)
    assert out.grad.abs().max().item() <= 0.05 + 1e-7


def test_dreamtime_timestep_used(tiny_sd, make_inputs):
    g = _guidance(_no_control(tiny_sd), dreamtime=True, iters=1000)
    img, _, _ = make_inputs()
    assert g.step(img, step=1).t.tolist() == [680, 680]
    assert g.step(img, step=501).t.tolist() == [528, 528]


def test_pgc_threshold_with_gradscaler_scale(tiny_sd, make_inputs):
    """The hook clips the scaled gradient at tau * S, i.e. the unscaled one at tau."""
    tau, s = 0.01, 1024.0
    g = _guidance(_no_control(tiny_sd), pgc_tau=tau)
    img, _, _ = make_inputs()
    out = g.step(img, step=1, scaler=s)
    (out.loss * s).backward()
    pix = img.grad.abs().amax(dim=1)
    assert pix.max().item() <= tau * s * (1 + 1e-5)
    st = g.pgc_stats["rgb"]
    assert st.fraction_clipped.item() > 0 and st.max_norm.item() > tau * s
    # normal-SDS: the normal map's gradient is clipped too
    img2, _, _ = make_inputs(seed=1)
    normals = torch.rand(2, 3, 64, 64).requires_grad_(True)
    (g.step(img2, step=1, normals=normals, scaler=s).loss * s).backward()
    assert normals.grad.abs().amax(dim=1).max().item() <= tau * s * (1 + 1e-5)
    assert "normal" in g.pgc_stats


def test_latent_mode(tiny_sd):
    g = _guidance(_no_control(tiny_sd), latent=True)
    lat = torch.randn(2, 4, 16, 16).requires_grad_(True)  # resized to the 8x8 latent size
    out = g.step(lat, step=1)
    assert out.grad.shape == (2, 4, 8, 8)
    out.loss.backward()
    assert lat.grad.shape == lat.shape and torch.isfinite(lat.grad).all()
    with pytest.raises(ValueError, match="4 channels"):
        g.step(torch.rand(2, 3, 16, 16), step=1)


def test_sdxl_embeddings_and_time_ids(tiny_sdxl):
    g = _guidance(_without_shuffle(tiny_sdxl), negative="")
    assert g.text.cond.shape == (6, 77, 64) and g.text.pooled.shape == (6, 32)
    assert g.text.uncond.abs().sum() == 0  # empty negative zeroed for SDXL (force_zeros_for_empty_prompt)
    ids = torch.tensor([0, 3])
    hidden, added = g.embeddings(ids, (48, 40))
    assert hidden.shape == (4, 77, 64)
    assert added["time_ids"][0].tolist() == [48, 40, 0, 0, 64, 64]  # real input size, crop, target size
    torch.testing.assert_close(hidden[3], g.text.cond[3])


def test_vsd_camera_conditioned_lora_and_update(make_inputs):
    bundle = build_builtin("tiny-sdxl")  # VSD adds an adapter: own bundle
    g = _guidance(bundle, loss="vsd", guidance_scale=7.5)
    assert g.convention == "diffusers"
    st = g.vsd
    cams_seen = []
    orig = st.lora_eps

    def spy(g_, z_t, t, cams, orig_hw):
        cams_seen.append(cams.clone())
        return orig(g_, z_t, t, cams, orig_hw)

    st.lora_eps = spy
    before = [p.detach().clone() for p in st.params]
    img, _, _ = make_inputs()
    c2w = torch.eye(4).repeat(2, 1, 1)
    c2w[:, :3, 3] = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0]])
    out = g.step(img, step=1, c2w=c2w)
    out.loss.backward()
    assert torch.isfinite(out.grad).all() and torch.isfinite(img.grad).all()
    # the LoRA estimate sees each sample's own camera (the original's used camera = 0)
    torch.testing.assert_close(cams_seen[0], c2w.reshape(2, 16))
    z_t = torch.randn(2, 4, 8, 8)
    t = torch.tensor([300, 300])
    with torch.no_grad(), st.enabled():
        e_cam = orig(g, z_t, t, c2w.reshape(2, 16), (64, 64))
        e_zero = orig(g, z_t, t, torch.zeros(2, 16), (64, 64))
    assert not torch.allclose(e_cam, e_zero)
    # the LoRA and camera MLP were updated by the step; the frozen UNet was not
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, st.params, strict=False))
    assert not any(p.requires_grad for n, p in g.unet.named_parameters() if "lora_" not in n)
    assert torch.isfinite(out.stats["lora_loss"])
    # checkpointing the LoRA state round-trips, through the checkpoint file format (safetensors + JSON)
    from pgc_fast.train.state_file import dumps, loads

    state = loads(dumps(g.state_dict()))
    g2 = _guidance(build_builtin("tiny-sdxl"), loss="vsd", guidance_scale=7.5)
    g2.load_state_dict(state)
    for (n, p), (n2, p2) in zip(
        ((n, p) for n, p in g.unet.named_parameters() if "lora_" in n),
        ((n, p) for n, p in g2.unet.named_parameters() if "lora_" in n),
        strict=False,
    ):
        assert n == n2 and torch.equal(p, p2)
    for a, b in zip(g.vsd.camera.parameters(), g2.vsd.camera.parameters(), strict=True):
        assert torch.equal(a, b)
    s1, s2 = g.vsd.opt.state_dict()["state"], g2.vsd.opt.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)
    assert torch.equal(g.generator.get_state(), g2.generator.get_state())


def test_one_unet_call_per_step_for_all_views_and_both_halves(tiny_sdxl, make_inputs):
    """Performance rule: RGB + normal maps, all views, cond + uncond → ONE UNet and ONE ControlNet call."""
    bundle = _without_shuffle(tiny_sdxl)
    g = _guidance(bundle, controlnets=("depth",))
    calls = {"unet": [], "controlnet": []}
    hooks = [
        bundle.unet.register_forward_pre_hook(lambda m, a, kw: calls["unet"].append(a[0].shape[0]), with_kwargs=True),
        bundle.controlnet.register_forward_pre_hook(
            lambda m, a, kw: calls["controlnet"].append(a[0].shape[0]), with_kwargs=True
        ),
    ]
    try:
        img, depth, mask = make_inputs(b=3)
        g.step(
            img,
            step=1,
            azimuth_deg=torch.tensor([0.0, 90.0, 180.0]),
            polar_deg=torch.full((3,), 60.0),
            depth=depth,
            mask=mask,
            normals=torch.rand(3, 3, 64, 64),
        )
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"unet": [12], "controlnet": [12]}  # 2 (cfg) x 2 (rgb, normal) x 3 views


def test_v_prediction_model_and_t_annealing(tiny_sd, make_inputs):
    from dataclasses import replace

    bundle = replace(
        _no_control(tiny_sd), scheduler_config={**tiny_sd.scheduler_config, "prediction_type": "v_prediction"}
    )
    g = _guidance(bundle, t_range=(0.9, 0.98), t_range_end=(0.02, 0.05), iters=10)
    img, _, _ = make_inputs()
    out1 = g.step(img, step=1)
    assert out1.t.min().item() >= 900 and torch.isfinite(out1.grad).all()
    out2 = g.step(img, step=11)
    assert out2.t.max().item() <= 50
    assert g.timestep_range(6) == (460, 515)
