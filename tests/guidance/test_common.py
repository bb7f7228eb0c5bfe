"""Pure functions of pgc_fast.guidance.common against the spec's numbers and hand-written formulas."""

from __future__ import annotations

import pytest
import torch

from pgc_fast.guidance import conditions, prompts, schedule


@pytest.mark.parametrize("ratio, expected", [(0.0, 680), (0.25, 605), (0.5, 528), (0.75, 450), (0.9, 385), (1.0, 200)])
def test_dreamtime_matches_spec(ratio, expected):
    iters = 1000
    step = int(round(ratio * iters)) + 1  # ratio = (step - 1) / iters
    assert schedule.dreamtime_t(step, iters, init_time=0.681) == expected


def test_dreamtime_weight_pieces():
    t = torch.tensor([300.0, 500.0, 650.0, 800.0, 950.0])
    w = schedule.dreamtime_weight(t)
    assert w[1:4].tolist() == [1.0, 1.0, 1.0]
    assert w[0].item() == pytest.approx(torch.exp(torch.tensor(-(200.0**2) / (2 * 100.0**2))).item())
    assert w[4].item() == pytest.approx(torch.exp(torch.tensor(-(150.0**2) / (2 * 300.0**2))).item())


def test_view_bins_centred():
    az = torch.tensor([0.0, 44.0, -44.0, 46.0, 90.0, 134.0, 136.0, 180.0, -136.0, 270.0, 315.0, 359.0, 10.0, 10.0])
    polar = torch.tensor([60.0] * 12 + [20.0, 170.0])
    ids = prompts.view_ids(az, polar, angle_front=90.0, angle_overhead=30.0).tolist()
    #        0  44 -44 46 90 134 136 180 -136 270 315 359 | overhead bottom
    assert ids == [0, 0, 0, 1, 1, 1, 2, 2, 2, 1, 1, 0, 3, 4]
    # the original's front bin [0, 90) was off-centre: 80 deg is side here, -10 deg (350) is front
    assert prompts.view_ids(torch.tensor([80.0, 350.0]), torch.tensor([90.0, 90.0])).tolist() == [1, 0]


def test_view_prompts_and_negatives():
    assert prompts.view_prompts("a cat") == [
        "a cat",
        "a cat, front view",
        "a cat, side view",
        "a cat, back view",
        "a cat, overhead view",
        "a cat, bottom view",
    ]
    neg = prompts.view_negatives("blurry", suppress_face=True)
    assert neg[0] == "blurry" and neg[1] == "blurry" and neg[2] == "blurry, face" and neg[5] == "blurry, face"


def test_cfg_conventions():
    ec, eu = torch.tensor([2.0]), torch.tensor([1.0])
    assert schedule.cfg_combine(ec, eu, 100.0, "pgc").item() == pytest.approx(2 + 100 * 1)
    assert schedule.cfg_combine(ec, eu, 7.5, "diffusers").item() == pytest.approx(1 + 7.5 * 1)
    # pgc scale s equals diffusers scale s + 1
    x = torch.randn(3, 4)
    y = torch.randn(3, 4)
    torch.testing.assert_close(schedule.cfg_combine(x, y, 100.0, "pgc"), schedule.cfg_combine(x, y, 101.0, "diffusers"))


def test_weights_and_bounds():
    a = torch.tensor([0.9, 0.5])
    torch.testing.assert_close(schedule.sds_weight(a, "one_minus_alpha"), 1 - a)
    torch.testing.assert_close(schedule.sds_weight(a, "sqrt_alpha_one_minus_alpha"), a.sqrt() * (1 - a))
    torch.testing.assert_close(schedule.sds_weight(a, "inverse_one_minus_alpha"), 1 / (1 - a))
    torch.testing.assert_close(schedule.sds_weight(a, "uniform"), torch.ones(2))
    assert schedule.t_bounds((0.02, 0.5)) == (20, 500)
    assert schedule.annealed_t_range(1, 100, (0.02, 0.98), (0.02, 0.5)) == (0.02, 0.98)
    assert schedule.annealed_t_range(101, 100, (0.02, 0.98), (0.02, 0.5))[1] == pytest.approx(0.5)
    t = schedule.sample_timesteps(1000, 20, 500, "cpu", torch.Generator().manual_seed(0))
    assert t.min().item() >= 20 and t.max().item() <= 500


def test_bgt_schedule():
    assert schedule.bgt_timesteps(0.681) == [681, 431, 181, 0]
    assert schedule.bgt_time(1, 100) == pytest.approx(0.681)
    assert schedule.bgt_time(101, 100) == pytest.approx(0.25)


def test_ddim_chain_recovers_x0_for_exact_eps():
    g = torch.Generator().manual_seed(0)
    ab = schedule.alphas_cumprod({})
    x0 = torch.randn(2, 4, 3, 3, generator=g)
    eps = torch.randn(2, 4, 3, 3, generator=g)
    t, tn = torch.tensor([681, 681]), torch.tensor([431, 431])
    zt = schedule.add_noise(x0, eps, ab[t])
    torch.testing.assert_close(schedule.predict_x0(zt, eps, ab[t]), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        schedule.ddim_step(zt, eps, ab[t], ab[tn]), schedule.add_noise(x0, eps, ab[tn]), atol=1e-5, rtol=1e-5
    )


def test_eps_from_v_prediction():
    g = torch.Generator().manual_seed(1)
    ab = schedule.alphas_cumprod({})[torch.tensor([100, 700])]
    x0, eps = torch.randn(2, 4, 2, 2, generator=g), torch.randn(2, 4, 2, 2, generator=g)
    zt = schedule.add_noise(x0, eps, ab)
    a = ab.view(-1, 1, 1, 1)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(schedule.eps_from_output(v, zt, ab, "v_prediction"), eps, atol=1e-5, rtol=1e-5)


def test_ssd_per_sample_projection_batch_gt_1():
    g = torch.Generator().manual_seed(2)
    b = 3
    ec, n, h = (torch.randn(b, 4, 5, 5, generator=g) for _ in range(3))
    t = torch.tensor([50, 400, 100])
    out = schedule.ssd_grad(h, ec, n, t, ssd_m=100)
    for i in range(b):
        if t[i] <= 100:
            r = (ec[i] * n[i]).sum() / (n[i] * n[i]).sum()
            et = ec[i] - r * n[i]
            exp = et * h[i].norm() / et.norm()
            torch.testing.assert_close(out[i], exp, atol=1e-5, rtol=1e-5)
            assert abs((out[i] * n[i]).sum().item()) < 1e-3  # orthogonal to the noise
        else:
            torch.testing.assert_close(out[i], h[i])


def test_depth_condition_conventions():
    d = torch.full((2, 1, 8, 8), 3.0)
    d[0, 0, 2, 2] = 2.0  # nearest foreground pixel of image 0
    d[1] *= 10.0  # image 1 much farther: per-image normalisation must not care
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 1:6, 1:6] = 1.0
    nb = conditions.depth_condition(d, mask, 8, "near_bright", floor=0.1)
    assert nb.shape == (2, 3, 8, 8)
    assert nb[0, 0, 2, 2].item() == pytest.approx(1.0)  # near = bright
    assert nb[0, 0, 3, 3].item() == pytest.approx(0.1)  # farthest foreground = floor
    assert nb[:, :, 7, 7].abs().max().item() == 0.0  # background black
    assert nb[1, 0, 3, 3].item() == pytest.approx(1.0)  # constant-depth image: all foreground bright
    orig = conditions.depth_condition(d, mask, 8, "original")
    assert orig[0, 0, 2, 2].item() == pytest.approx(0.0)  # near = dark
    assert orig[:, :, 7, 7].min().item() == pytest.approx(1.0)  # background white, per image


def test_content_shuffle_shape_and_range():
    img = torch.rand(2, 3, 32, 40)
    out = conditions.content_shuffle(img, torch.Generator().manual_seed(0), f=8)
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, img)
