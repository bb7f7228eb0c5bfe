"""sds_grad / sds_loss: Triton kernel vs the torch reference, and the reference vs the original's SDS arithmetic.

Runs on the CPU under TRITON_INTERPRET=1 (CI) and on CUDA when present. Shapes are small and odd on purpose.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import pgc_kernels as pk
from pgc_kernels.reference import sds_grad_reference
from tolerances import HAS_CUDA, TOLERANCES, TRITON_INTERPRET

DEV = "cuda" if HAS_CUDA else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(2, 4, 5, 7), (3, 3, 9), (1, 16, 3, 3), (3, 4, 2, 3, 5)]
FLT_MAX = torch.finfo(torch.float32).max

needs_triton = pytest.mark.skipif(not (HAS_CUDA or TRITON_INTERPRET), reason="needs CUDA or TRITON_INTERPRET=1")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")


def inputs(shape, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ec = torch.randn(shape, generator=gen)
    eu = ec + 0.1 * torch.randn(shape, generator=gen)  # like a UNet: cond and uncond close
    noise = torch.randn(shape, generator=gen)
    w = torch.rand(shape[0], generator=gen) + 0.1
    return ec.to(DEV, dtype), eu.to(DEV, dtype), noise.to(DEV, dtype), w.to(DEV)


def original_sds(ec, eu, noise, w, s, rescale=0.0, clamp=None):
    """The original's SDXL(-ControlNet) train_step arithmetic, written out (the original's guidance classes'
    train_step)."""
    noise_pred = ec + s * (ec - eu)
    if rescale > 0:
        std_pos = ec.std([1, 2, 3], keepdim=True)
        std_cfg = noise_pred.std([1, 2, 3], keepdim=True)
        factor = rescale * std_pos / std_cfg + (1 - rescale)
        noise_pred = noise_pred * factor
    grad = w[:, None, None, None] * (noise_pred - noise)
    grad = torch.nan_to_num(grad)
    if clamp is not None:
        grad = grad.clamp(-clamp, clamp)
    return grad


def close(a, b, dtype=torch.float32, scale=1.0):
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(a, b, rtol=tol["rtol"], atol=tol["atol"] * scale)


@pytest.mark.parametrize("rescale", [0.0, 0.7])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_reference_equals_original_arithmetic(rescale, clamp):
    ec, eu, noise, w = inputs((2, 4, 6, 5))
    got = sds_grad_reference(ec, eu, noise, w, 100.0, cfg_rescale=rescale, clamp=clamp)
    close(got, original_sds(ec, eu, noise, w, 100.0, rescale, clamp), scale=100)


def test_reference_conventions_and_clip():
    ec, eu, noise, w = inputs((2, 4, 6, 5))
    s = 7.5
    d = sds_grad_reference(ec, eu, noise, w, s, convention="diffusers")
    close(d, w[:, None, None, None] * (eu + s * (ec - eu) - noise), scale=10)
    p = sds_grad_reference(ec, eu, noise, w, s - 1, convention="pgc")
    close(p, d, scale=10)  # pgc with s−1 ≡ diffusers with s
    g = sds_grad_reference(ec, eu, noise, w, s, clip=0.3)
    full = sds_grad_reference(ec, eu, noise, w, s)
    n = full.abs().amax(1, keepdim=True)
    close(g, full * torch.clamp(0.3 / n, max=1.0))
    assert g.abs().amax(1).max() <= 0.3 * (1 + 1e-6)


@needs_triton
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("convention", ["pgc", "diffusers"])
@pytest.mark.parametrize("rescale", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("clamp_clip", [(None, None), (0.5, None), (None, 0.3), (2.0, 0.3)], ids=str)
def test_triton_matches_reference(shape, convention, rescale, clamp_clip):
    clamp, clip = clamp_clip
    ec, eu, noise, w = inputs(shape, seed=len(shape))
    got = pk.sds_grad(
        ec, eu, noise, w, 7.5, convention=convention, cfg_rescale=rescale, clamp=clamp, clip=clip, backend="triton"
    )
    ref = sds_grad_reference(ec, eu, noise, w, 7.5, convention=convention, cfg_rescale=rescale, clamp=clamp, clip=clip)
    assert got.dtype == torch.float32 and got.shape == ec.shape and got.is_contiguous()
    close(got, ref, scale=10)


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rescale", [0.0, 0.5])
def test_dtypes_and_low_precision_error(dtype, rescale):
    """Same low-precision inputs: ours ≈ reference. Against fp32 inputs: error ≤ 2× the reference's + 1e-6."""
    ec32, eu32, n32, w = inputs((2, 4, 5, 7), seed=3)
    lp = [t.to(dtype) for t in (ec32, eu32, n32)]
    ours = pk.sds_grad(*lp, w, 100.0, cfg_rescale=rescale, clip=50.0, backend="triton")
    ref = sds_grad_reference(*lp, w, 100.0, cfg_rescale=rescale, clip=50.0)
    close(ours, ref, scale=100)
    exact = sds_grad_reference(ec32, eu32, n32, w, 100.0, cfg_rescale=rescale, clip=50.0)
    for err in (lambda o: (o - exact).abs().max(), lambda o: (o - exact).norm() / exact.norm()):
        assert err(ours) <= 2 * err(ref) + 1e-6


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_nan_inf_to_num_then_clamp_and_clip(backend):
    ec, eu, noise, w = inputs((2, 4, 3, 5), seed=4)
    ec[0, 1, 1, 1] = float("nan")
    ec[1, 2, 2, 2] = float("inf")
    noise[1, 0, 0, 0] = float("inf")
    g = pk.sds_grad(ec, eu, noise, w, 3.0, backend=backend)
    assert torch.isfinite(g).all()
    assert g[0, 1, 1, 1] == 0  # NaN → 0
    assert g[1, 2, 2, 2] == FLT_MAX and g[1, 0, 0, 0] == -FLT_MAX  # ±inf → ±float32 max, as nan_to_num
    g = pk.sds_grad(ec, eu, noise, w, 3.0, clamp=0.25, clip=0.2, backend=backend)
    assert float(g[1, 2, 2, 2]) == pytest.approx(0.2) and g.abs().max() <= 0.2 + 1e-7
    ref = sds_grad_reference(ec, eu, noise, w, 3.0, clamp=0.25, clip=0.2)
    close(g, ref)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_weight_forms_and_degenerate_rescale(backend):
    ec, eu, noise, w = inputs((3, 4, 3, 5), seed=5)
    a = pk.sds_grad(ec, eu, noise, 0.5, 2.0, backend=backend)
    for wf in (
        torch.tensor(0.5, device=DEV),
        torch.full((3,), 0.5, device=DEV, dtype=torch.float16),
        torch.full((3, 1, 1, 1), 0.5, device=DEV),
    ):
        close(pk.sds_grad(ec, eu, noise, wf, 2.0, backend=backend), a)
    # Constant predictions: std(ε̂) = 0 → no rescale (factor 1) instead of 0/0.
    c = torch.ones_like(ec)
    g = pk.sds_grad(c, c, noise, w, 2.0, cfg_rescale=0.7, backend=backend)
    close(g, pk.sds_grad(c, c, noise, w, 2.0, backend=backend))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("fill", [None, 0.1, -3.7], ids=["random", "0.1", "-3.7"])
def test_rescale_is_identity_when_cond_equals_uncond(backend, fill):
    """ε_c = ε_u ⇒ ε̂ = ε_c, so std(ε_c)/std(ε̂) = 1 and the rescale factor is 1, for any sample: also a constant one,
    whose std is a rounding residue (the two statistics must be computed alike)."""
    ec, _, noise, w = inputs((3, 4, 3, 5), seed=7)
    if fill is not None:
        ec = torch.full_like(ec, fill)
    plain = pk.sds_grad(ec, ec, noise, w, 7.5, backend=backend)
    close(pk.sds_grad(ec, ec.clone(), noise, w, 7.5, cfg_rescale=0.7, backend=backend), plain, scale=10)


def test_sds_loss_value_and_gradient():
    ec, eu, noise, w = inputs((2, 4, 5, 7), seed=6)
    g = pk.sds_grad(ec, eu, noise, w, 7.5, backend="torch")
    z = torch.randn(2, 4, 5, 7, device=DEV, requires_grad=True)
    loss = pk.sds_loss(z, g)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    close(loss, 0.5 * (g * g).sum() / 2)
    (loss * 1024.0).backward()  # GradScaler-style upstream scale
    close(z.grad, 1024.0 * g, scale=1e3)
    zh = torch.randn(2, 4, 5, 7, device=DEV, dtype=torch.float16, requires_grad=True)
    pk.sds_loss(zh, g).backward()
    assert zh.grad.dtype == torch.float16
    close(zh.grad.float(), g, torch.float16)


@pytest.mark.parametrize(
    "mutate, exc, msg",
    [
        (lambda a: a.update(eps_cond="x"), TypeError, "sds_grad(): eps_cond must be a torch.Tensor, got str"),
        (
            lambda a: a.update(eps_uncond=torch.zeros(2, 4, 3)),
            ValueError,
            "eps_uncond must have shape (2, 4, 3, 3), got (2, 4, 3)",
        ),
        (lambda a: a.update(target=torch.zeros(2, 4, 3, 3, dtype=torch.int64)), TypeError, "target must have dtype"),
        (
            lambda a: a.update(eps_cond=torch.zeros(5), eps_uncond=torch.zeros(5), target=torch.zeros(5)),
            ValueError,
            "eps_cond must have rank >= 2",
        ),
        (
            lambda a: a.update(**{k: torch.zeros(1, 17, 2, 2) for k in ("eps_cond", "eps_uncond", "target")}),
            ValueError,
            "1..16 channels",
        ),
        (
            lambda a: a.update(weight=torch.ones(3)),
            ValueError,
            "weight must have shape [B]=[2] (or one element), got (3,)",
        ),
        (lambda a: a.update(weight="1"), TypeError, "weight must be a tensor of shape [B] or a float, got str"),
        (lambda a: a.update(guidance_scale=float("inf")), TypeError, "guidance_scale must be a finite float"),
        (lambda a: a.update(convention="cfg"), ValueError, "convention must be one of 'pgc', 'diffusers', got 'cfg'"),
        (lambda a: a.update(cfg_rescale=1.5), ValueError, "cfg_rescale must be in [0, 1], got 1.5"),
        (lambda a: a.update(cfg_rescale=-0.1), ValueError, "cfg_rescale must be a finite number >= 0"),
        (lambda a: a.update(clamp=0.0), ValueError, "clamp must be a finite number > 0, got 0.0"),
        (lambda a: a.update(clip="big"), TypeError, "clip must be a float or None, got str"),
        (lambda a: a.update(backend="cuda"), ValueError, "backend must be one of"),
    ],
)
def test_bad_input(mutate, exc, msg):
    z = torch.zeros(2, 4, 3, 3)
    a = dict(eps_cond=z, eps_uncond=z, target=z, weight=torch.ones(2), guidance_scale=7.5)
    mutate(a)
    kw = {k: a.pop(k) for k in list(a) if k in ("convention", "cfg_rescale", "clamp", "clip", "backend")}
    with pytest.raises(exc) as e:
        pk.sds_grad(a["eps_cond"], a["eps_uncond"], a["target"], a["weight"], a["guidance_scale"], **kw)
    assert msg in str(e.value)


def test_bad_input_sds_loss():
    z = torch.zeros(2, 4, 3, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"sds_loss\(\): grad must have shape \(2, 4, 3, 3\), got \(2, 4, 3\)"):
        pk.sds_loss(z, torch.zeros(2, 4, 3))
    with pytest.raises(TypeError, match=r"sds_loss\(\): latents must be a torch.Tensor"):
        pk.sds_loss(None, torch.zeros(2))


# --------------------------------------------------------------------------- flat (element-wise) kernel

FLAT_CONFIGS = [(2048, 4, False, 0), (512, 2, True, 0), (1024, 4, False, 1), (512, 1, True, 2)]


@needs_triton
@pytest.mark.parametrize("flat", FLAT_CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_flat_kernel_matches_reference(dtype, flat):
    """The element-wise kernel (no rescale, no clip; C·N a multiple of 512): blocks, evict-first loads and the
    persistent grid, every dtype, both conventions, tensor and float weights, clamp, NaN/±inf."""
    sd_mod = importlib.import_module("pgc_kernels.sds_grad")
    cfg = dict(sd_mod.CONFIG, flat=flat)
    shape = (3, 4, 16, 24)  # C·N = 1536 = 3·512: the block shrinks to 512 so no block straddles two samples
    ec, eu, noise, w = inputs(shape, dtype, seed=8)
    ec[0, 1, 1, 1] = float("nan")
    ec[1, 2, 2, 2] = float("inf")
    noise[2, 0, 0, 0] = float("-inf")
    for conv in ("pgc", "diffusers"):
        for weight in (w, 0.75):
            for clamp in (None, 0.5):
                got = sd_mod._sds_grad_triton(ec, eu, noise, weight, 7.5, conv, 0.0, clamp, None, config=cfg)
                wt = weight if isinstance(weight, torch.Tensor) else torch.full((3,), weight, device=DEV)
                ref = sds_grad_reference(ec, eu, noise, wt, 7.5, convention=conv, clamp=clamp)
                assert got.dtype == torch.float32 and got.shape == shape
                close(got, ref, scale=10.0)  # |g| ~ 7.5·|ε|: atol scaled like the values
    # The public call takes the flat kernel for this shape with the default configuration.
    close(pk.sds_grad(ec, eu, noise, w, 7.5, backend="triton"), sds_grad_reference(ec, eu, noise, w, 7.5), scale=10.0)
