"""pixel_clip / pgc / attach_pgc: Triton kernel vs the torch reference, and the reference vs the original hook.

Runs on the CPU under TRITON_INTERPRET=1 (CI) and on CUDA when present. Shapes are small and odd on purpose.
"""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

import pgc_kernels as pk
from pgc_kernels.reference import pixel_clip_reference
from tolerances import HAS_CUDA, TOLERANCES, TRITON_INTERPRET

pk_pc = importlib.import_module("pgc_kernels.pixel_clip")  # the module (the package re-exports the function)

VARIANTS = ["clip", "value", "global", "sigmoid", "soft", "soft_pixel"]
NORMS = ["linf", "l2"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "nhwc", "channels_last", "rank2", "rank5_dim2", "sliced", "chan_sliced"]
DEV = "cuda" if HAS_CUDA else "cpu"
TAU = 0.7

needs_triton = pytest.mark.skipif(not (HAS_CUDA or TRITON_INTERPRET), reason="needs CUDA or TRITON_INTERPRET=1")

# The interpreter evaluates both sides of tl.where with numpy, which warns on the branch it discards.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def make(layout: str, dtype: torch.dtype = torch.float32, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, int]:
    """A gradient-like tensor in ``layout`` with a mix of small, clipped and all-zero pixels; returns (g,
    channel_dim)."""
    gen = torch.Generator().manual_seed(seed)
    b, h, w = 2, 5, 7

    def rnd(*shape):
        return (torch.randn(*shape, generator=gen) * 1.5).to(DEV)

    if layout == "nchw":
        g, cd = rnd(b, c, h, w), 1
    elif layout == "nhwc":
        g, cd = rnd(b, h, w, c), -1
    elif layout == "channels_last":
        g, cd = rnd(b, c, h, w).contiguous(memory_format=torch.channels_last), 1
    elif layout == "rank2":
        g, cd = rnd(37, c), 1
    elif layout == "rank5_dim2":
        g, cd = rnd(2, 3, c, 3, 5), 2
    elif layout == "chan_sliced":  # channel stride 1 but gaps between pixels: the strided tile path
        g, cd = rnd(37, c + 2)[:, 1 : c + 1], 1
    elif layout == "sliced":  # non-contiguous, no single stride for (H, W): the kernel path copies once
        g, cd = rnd(b, c, h, w + 3)[..., 1 : w + 1], 1
    else:
        raise AssertionError(layout)
    with torch.no_grad():
        flat_pix = g.movedim(cd, -1)
        flat_pix[(0,) * (flat_pix.dim() - 1)] = 0.0  # one all-zero pixel
        flat_pix[(-1,) * (flat_pix.dim() - 1)] = 0.0
    return g.to(dtype), cd


def assert_close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(a.float(), b.float(), equal_nan=True, **TOLERANCES[dtype])


# --------------------------------------------------------------------------- reference vs the original


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_reference_equals_original_hook_arithmetic(layout):
    """The original's hook (the original's nerf/utils.py, Trainer.train_one_epoch's gradient hook), written out, equals
    variant="clip", norm="linf"."""
    g, cd = make(layout)
    tau = TAU
    ratio = tau / torch.abs(g)
    ratio[ratio > 1] = 1
    original = g * torch.amin(ratio, dim=cd, keepdim=True)
    for backend in ["torch"] + (["triton"] if (HAS_CUDA or TRITON_INTERPRET) else []):
        ours = pk.pixel_clip(g, tau, variant="clip", norm="linf", channel_dim=cd, backend=backend)
        torch.testing.assert_close(ours, original, rtol=1e-6, atol=1e-7)
    assert (ours != g).any() and (ours == g).any()  # the input has both clipped and untouched pixels


def test_reference_other_variants_match_the_original_formulas():
    """Types 1–5 of the original's nerf/utils.py, Trainer.train_one_epoch's gradient hook on finite input with no zero
    tensor."""
    g, cd = make("nchw")
    t = TAU
    expect = {
        "value": torch.clamp(g, -t, t),
        "global": g / torch.max(torch.abs(g)) * t,
        "sigmoid": (torch.sigmoid(g) - 0.5) * t,
        "soft": t * g / (torch.abs(g) + t),
        "soft_pixel": t * g / (torch.amax(torch.abs(g), dim=1, keepdim=True) + t),
    }
    for v, e in expect.items():
        torch.testing.assert_close(pixel_clip_reference(g, t, variant=v), e, rtol=1e-6, atol=1e-7)


def test_l2_clip_preserves_direction_and_bounds_norm():
    g, cd = make("nchw")
    out = pixel_clip_reference(g, TAU, norm="l2")
    n_out = out.norm(dim=1)
    assert (n_out <= TAU * (1 + 1e-6)).all()
    cos = torch.nn.functional.cosine_similarity(out, g, dim=1)
    nz = g.norm(dim=1) > 0
    assert torch.allclose(cos[nz], torch.ones_like(cos[nz]), atol=1e-6)


# --------------------------------------------------------------------------- Triton vs reference


@needs_triton
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_reference(variant, norm, dtype, layout):
    g, cd = make(layout, dtype)
    out = pk.pixel_clip(g, TAU, variant=variant, norm=norm, channel_dim=cd, backend="triton")
    ref = pixel_clip_reference(g, TAU, variant=variant, norm=norm, channel_dim=cd)
    assert out.dtype == g.dtype and out.shape == g.shape
    assert_close(out, ref, dtype)
    if layout in ("nchw", "nhwc", "channels_last"):
        assert out.stride() == g.stride()  # output keeps the input's memory format


@needs_triton
@pytest.mark.parametrize("c", [1, 2, 4, 5, 16])
@pytest.mark.parametrize("variant", ["clip", "soft_pixel"])
def test_channel_counts(c, variant):
    for layout in ("nchw", "nhwc"):
        g, cd = make(layout, c=c, seed=c)
        for norm in NORMS:
            out = pk.pixel_clip(g, TAU, variant=variant, norm=norm, channel_dim=cd, backend="triton")
            assert_close(out, pixel_clip_reference(g, TAU, variant=variant, norm=norm, channel_dim=cd), torch.float32)


@needs_triton
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_pgc_backward_matches_reference(variant, norm, dtype, layout):
    """pgc is the identity forward; its backward is pixel_clip of the upstream gradient."""
    g, cd = make(layout, dtype, seed=3)
    x = torch.randn(g.shape, device=DEV).to(dtype).requires_grad_(True)
    y = pk.pgc(x, TAU, variant=variant, norm=norm, channel_dim=cd, backend="triton")
    assert torch.equal(y, x)
    y.backward(g)
    ref = pixel_clip_reference(g, TAU, variant=variant, norm=norm, channel_dim=cd)
    assert x.grad.dtype == dtype
    assert_close(x.grad, ref, dtype)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
def test_low_precision_error_within_twice_reference_error(variant, dtype):
    """Error of ours on the low-precision gradient, against the fp32 reference on the fp32 gradient, is at most
    twice the reference's own low-precision error (+1e-6), in max-abs and in relative L2, both norms and layouts."""
    for layout in ("nchw", "nhwc"):
        for norm in NORMS:
            g32, cd = make(layout, torch.float32, seed=5)
            g = g32.to(dtype)
            exact = pixel_clip_reference(g32, TAU, variant=variant, norm=norm, channel_dim=cd)
            ref = pixel_clip_reference(g, TAU, variant=variant, norm=norm, channel_dim=cd).float()
            ours = pk.pixel_clip(g, TAU, variant=variant, norm=norm, channel_dim=cd, backend="triton").float()
            for err in (lambda o, e=exact: (o - e).abs().max(), lambda o, e=exact: (o - e).norm() / e.norm()):
                assert err(ours) <= 2 * err(ref) + 1e-6, (layout, norm, err(ours), err(ref))


# --------------------------------------------------------------------------- zeros, NaN/inf, stats, scale


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_pixels_stay_zero(variant, backend):
    g, cd = make("nchw")
    g[1, :, 2, 3] = 0.0
    for norm in NORMS:
        out = pk.pixel_clip(g, TAU, variant=variant, norm=norm, backend=backend)
        assert torch.isfinite(out).all()
        assert (out[1, :, 2, 3] == 0).all() and (out[0, :, 0, 0] == 0).all()
        z = pk.pixel_clip(torch.zeros_like(g), TAU, variant=variant, norm=norm, backend=backend)
        assert torch.equal(z, torch.zeros_like(g))  # "global" with max|g| = 0 included


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_inf_behaviour(variant, backend):
    """Documented: non-finite never hidden. Pixel-wise variants: the whole pixel → NaN; element-wise ones:
    that element → NaN; "global": everything → NaN. Other pixels/elements are unaffected."""
    g, cd = make("nchw", seed=7)
    g[0, 1, 1, 1] = float("nan")
    g[1, 2, 3, 4] = float("inf")
    g[1, 0, 4, 6] = float("-inf")
    out, st = pk.pixel_clip(g, TAU, variant=variant, backend=backend, return_stats=True)
    clean = g.clone()
    bad_elem = ~torch.isfinite(g)
    clean[bad_elem] = 0.0
    ref_clean = pk.pixel_clip(clean, TAU, variant=variant, backend="torch")
    bad_pix = bad_elem.any(dim=1, keepdim=True).expand_as(g)
    if variant == "global":
        assert torch.isnan(out).all()
    else:
        expect_nan = bad_pix if variant in ("clip", "soft_pixel") else bad_elem
        assert torch.equal(torch.isnan(out), expect_nan)
        assert_close(out[~expect_nan], ref_clean[~expect_nan], torch.float32)
    # Stats: the 3 bad pixels count as clipped; max/mean are +inf.
    assert st.max_norm.item() == float("inf") and st.mean_norm.item() == float("inf")
    n = clean.abs().amax(dim=1)
    n_bad = bad_pix[:, 0]
    expect_frac = ((n > TAU) | n_bad).float().mean()
    torch.testing.assert_close(st.fraction_clipped, expect_frac.to(st.fraction_clipped.device))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc", "rank5_dim2"])
@pytest.mark.parametrize("norm", NORMS)
def test_return_stats(norm, layout, backend):
    g, cd = make(layout, seed=11)
    out, st = pk.pixel_clip(g, TAU, norm=norm, channel_dim=cd, backend=backend, return_stats=True)
    assert isinstance(st, pk.PixelClipStats)
    n = g.abs().amax(dim=cd) if norm == "linf" else g.norm(dim=cd)
    assert all(s.dim() == 0 and s.dtype == torch.float32 and s.device == g.device for s in st)
    torch.testing.assert_close(st.fraction_clipped, (n > TAU).float().mean())
    torch.testing.assert_close(st.max_norm, n.max())
    torch.testing.assert_close(st.mean_norm, n.mean())
    assert 0 < st.fraction_clipped.item() < 1
    torch.testing.assert_close(out, pk.pixel_clip(g, TAU, norm=norm, channel_dim=cd, backend=backend))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradscaler_scale_float_and_tensor(variant, backend):
    """Clipping S·g at τ·S gives S·(the unscaled result) for the scale-equivariant variants; the tensor
    scale gives exactly what the float one gives."""
    g, cd = make("nchw", seed=13)
    s = 1024.0
    by_float = pk.pixel_clip(g * s, TAU, variant=variant, scale=s, backend=backend)
    by_tensor = pk.pixel_clip(g * s, TAU, variant=variant, scale=torch.tensor(s, device=g.device), backend=backend)
    torch.testing.assert_close(by_tensor, by_float, rtol=1e-6, atol=0)
    if variant != "sigmoid":  # sigmoid of the scaled grad is not equivariant (as in the original)
        torch.testing.assert_close(
            by_float, s * pk.pixel_clip(g, TAU, variant=variant, backend="torch"), rtol=1e-5, atol=1e-4
        )


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_attach_pgc_with_gradscaler(backend):
    """attach_pgc on a rendered image under a real GradScaler clips the *unscaled* gradient at τ."""
    scaler = torch.amp.GradScaler(DEV, init_scale=2.0**10)
    x = torch.randn(2, 3, 5, 7, device=DEV, requires_grad=True)
    target = torch.randn(2, 3, 5, 7, device=DEV) * 4
    hook = pk.attach_pgc(x, TAU, scaler, backend=backend, return_stats=True)
    loss = ((x - target) ** 2).sum()
    scaler.scale(loss).backward()
    true_grad = 2 * (x.detach() - target)
    expect = 2.0**10 * pixel_clip_reference(true_grad, TAU)
    torch.testing.assert_close(x.grad, expect, rtol=1e-5, atol=1e-3)
    assert hook.stats is not None and 0 < hook.stats.fraction_clipped.item() <= 1
    torch.testing.assert_close(hook.stats.max_norm / 2.0**10, true_grad.abs().amax(1).max(), rtol=1e-5, atol=0)
    popped = hook.pop_stats()  # unscaled, 0-d like the per-pass stats
    assert popped is not None and all(t.dim() == 0 for t in popped)
    torch.testing.assert_close(popped.max_norm, true_grad.abs().amax(1).max(), rtol=1e-5, atol=0)
    torch.testing.assert_close(popped.mean_norm, true_grad.abs().amax(1).mean(), rtol=1e-5, atol=1e-6)
    hook.remove()
    x.grad = None
    ((x - target) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, true_grad)  # removed: no clipping any more


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_pgc_hook_reused_across_steps(backend):
    """One PGCHook for a whole run (the trainer's use): attached to each step's image, switched off and on, τ changed
    between steps; ``stats`` is the latest pass (scaled units), ``pop_stats`` the summary since the last pop
    (unscaled: per-pass norms divided by that pass's scale), ``on_stats`` sees every pass."""
    seen: list[pk.PixelClipStats] = []
    scales = [4.0, 4.0, 16.0]
    hook = pk.PGCHook(
        TAU, torch.tensor(scales[0], device=DEV), return_stats=True, on_stats=seen.append, backend=backend
    )
    expect = []
    for step, s in enumerate(scales):
        hook.scaler = torch.tensor(s, device=DEV) if step else torch.tensor([s], device=DEV)  # 0-d or 1-element
        x = torch.zeros(2, 3, 5, 7, device=DEV, requires_grad=True)
        img = x * 1.0  # a non-leaf "rendered image", new every step
        assert hook.attach(img) is hook
        up = make("nchw", seed=30 + step)[0] * s  # the scaled upstream gradient
        img.backward(up)
        torch.testing.assert_close(x.grad, s * pixel_clip_reference(up / s, TAU), rtol=1e-5, atol=1e-5)
        n = (up / s).abs().amax(1)
        expect.append(((n > TAU).float().mean(), n.max(), n.mean()))
        assert hook.stats is seen[-1]
        torch.testing.assert_close(hook.stats.max_norm, n.max() * s)  # latest pass: as pixel_clip returns it
    assert len(seen) == 3
    popped = hook.pop_stats()
    assert popped is not None and hook.pop_stats() is None and all(t.dim() == 0 for t in popped)
    torch.testing.assert_close(popped.fraction_clipped, torch.stack([e[0] for e in expect]).mean())
    torch.testing.assert_close(popped.max_norm, torch.stack([e[1] for e in expect]).max())
    torch.testing.assert_close(popped.mean_norm, torch.stack([e[2] for e in expect]).mean())

    # Disabled: gradient unchanged, nothing recorded.
    hook.enabled = False
    x = torch.zeros(2, 3, 5, 7, device=DEV, requires_grad=True)
    up = make("nchw", seed=40)[0]
    hook.attach(x)
    x.backward(up)
    torch.testing.assert_close(x.grad, up)
    assert len(seen) == 3 and hook.pop_stats() is None
    # Re-enabled with a new τ and no scaler: takes effect on the tensor already attached.
    hook.enabled, hook.tau, hook.scaler = True, 0.25, None
    x.grad = None
    x.backward(up)
    torch.testing.assert_close(x.grad, pixel_clip_reference(up, 0.25))
    # τ = None: no clipping.
    hook.tau = None
    x.grad = None
    x.backward(up)
    torch.testing.assert_close(x.grad, up)


def test_pgc_hook_remove_detaches_every_tensor_and_drops_dead_ones():
    hook = pk.PGCHook(TAU)
    up = make("nchw", seed=41)[0][:, :, :4, :4]
    xs = [torch.zeros(2, 3, 4, 4, device=up.device, requires_grad=True) for _ in range(2)]
    for x in xs:
        hook.attach(x)
    hook.remove()
    for x in xs:
        x.backward(up)
        torch.testing.assert_close(x.grad, up)  # removed from both
    # Attached to a new image each step: registrations on freed images are dropped, so they do not pile up.
    for _ in range(20):
        x = torch.zeros(2, 3, 4, 4, device=up.device, requires_grad=True)
        img = x * 1.0
        hook.attach(img)
        img.backward(up)
        del img
    assert len(hook._handles) <= 1


def test_pgc_hook_bad_input():
    with pytest.raises(ValueError, match=r"PGCHook\(\): tau must be a finite number > 0, got -1.0"):
        pk.PGCHook(-1.0)
    with pytest.raises(ValueError, match=r"PGCHook\(\): on_stats needs return_stats=True"):
        pk.PGCHook(TAU, on_stats=print)
    with pytest.raises(TypeError, match=r"PGCHook\(\): enabled must be a bool"):
        pk.PGCHook(TAU, enabled=1)
    with pytest.raises(TypeError, match=r"PGCHook\(\): unexpected keyword argument\(s\) \['tua'\]"):
        pk.PGCHook(TAU, tua=1)
    with pytest.raises(ValueError, match=r"PGCHook\(\): pass either scaler or scale, got both"):
        pk.PGCHook(TAU, 2.0, scale=2.0)
    hook = pk.PGCHook(TAU, variant="nope")
    with pytest.raises(ValueError, match=r"PGCHook.attach\(\): variant must be one of"):
        hook.attach(torch.ones(2, 3, requires_grad=True))
    with pytest.raises(ValueError, match=r"PGCHook.attach\(\): tensor must require grad"):
        pk.PGCHook(TAU).attach(torch.ones(2, 3))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_pgc_with_scaler_and_disabled_scaler(backend):
    x = torch.randn(2, 3, 4, 4, device=DEV, requires_grad=True)
    up = torch.randn(2, 3, 4, 4, device=DEV) * 3
    off = torch.amp.GradScaler(DEV, enabled=False)
    pk.pgc(x, TAU, scaler=off, backend=backend).backward(up)
    torch.testing.assert_close(x.grad, pixel_clip_reference(up, TAU))
    x.grad = None
    pk.pgc(x, TAU, scaler=torch.tensor(8.0, device=DEV), backend=backend).backward(up * 8)
    torch.testing.assert_close(x.grad, 8 * pixel_clip_reference(up, TAU), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_expanded_zero_stride_gradient(backend):
    """The gradient of a .sum() arrives expanded (all strides 0); the kernel reads it in place."""
    x = torch.randn(2, 3, 4, 5, device=DEV, requires_grad=True)
    (pk.pgc(x, 0.5, backend=backend) * 3).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.5))
    g = torch.tensor([1.0, -2.0, 0.25], device=DEV).reshape(1, 3, 1, 1).expand(2, 3, 4, 5)
    out = pk.pixel_clip(g, 0.5, backend=backend)
    torch.testing.assert_close(out, (g * 0.25).contiguous())


@needs_triton
def test_empty_tensor():
    g = torch.empty(0, 3, 4, 5, device=DEV)
    out, st = pk.pixel_clip(g, TAU, backend="triton", return_stats=True)
    assert out.shape == g.shape
    assert all(s.item() == 0 for s in st)


def test_auto_backend_on_cpu_is_reference():
    g, cd = make("nchw")
    if g.is_cuda:
        pytest.skip("auto picks Triton on CUDA")
    assert torch.equal(pk.pixel_clip(g, TAU), pixel_clip_reference(g, TAU))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        (dict(grad=[1.0, 2.0]), TypeError, "pixel_clip(): grad must be a torch.Tensor, got list"),
        (
            dict(grad=torch.ones(2, 3, dtype=torch.int32)),
            TypeError,
            "grad must have dtype float32/float16/bfloat16, got torch.int32",
        ),
        (dict(grad=torch.ones(3)), ValueError, "grad must have rank >= 2, got shape (3,)"),
        (dict(grad=torch.ones(1, 17, 2, 2)), ValueError, "grad must have 1..16 channels at channel_dim=1, got 17"),
        (dict(tau=0.0), ValueError, "tau must be a finite number > 0, got 0.0"),
        (dict(tau=float("nan")), ValueError, "tau must be a finite number > 0"),
        (dict(tau="1"), TypeError, "tau must be a float, got str"),
        (
            dict(variant="hard"),
            ValueError,
            "variant must be one of 'clip', 'value', 'global', 'sigmoid', 'soft', 'soft_pixel', got 'hard'",
        ),
        (dict(norm="l1"), ValueError, "norm must be one of 'linf', 'l2', got 'l1'"),
        (dict(channel_dim=4), ValueError, "channel_dim must be in [-4, 3] for a rank-4 tensor, got 4"),
        (dict(channel_dim=1.0), TypeError, "channel_dim must be an int, got float"),
        (dict(scale=-2.0), ValueError, "scale must be a finite number > 0, got -2.0"),
        (dict(scale=torch.ones(2)), ValueError, "scale must be a 0-d (or 1-element) tensor, got shape (2,)"),
        (dict(scale=torch.ones((), dtype=torch.int64)), TypeError, "scale must be a floating tensor, got torch.int64"),
        (dict(backend="cuda"), ValueError, "backend must be one of 'auto', 'triton', 'torch', got 'cuda'"),
        (dict(return_stats=1), TypeError, "return_stats must be a bool, got int"),
    ],
)
def test_bad_input(kwargs, exc, msg):
    args = dict(grad=torch.ones(2, 3, 4, 4), tau=1.0)
    args.update(kwargs)
    grad, tau = args.pop("grad"), args.pop("tau")
    with pytest.raises(exc) as e:
        pk.pixel_clip(grad, tau, **args)
    assert msg in str(e.value)


def test_bad_input_triton_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=r"pixel_clip\(\): backend='triton' needs CUDA tensors"):
        pk.pixel_clip(torch.ones(2, 3, 4, 4), 1.0, backend="triton")
    # pgc / attach_pgc check the backend when called, not deep inside the backward.
    with pytest.raises(ValueError, match=r"pgc\(\): backend='triton' needs CUDA tensors"):
        pk.pgc(torch.ones(2, 3, 4, 4, requires_grad=True), 1.0, backend="triton")


def test_bad_input_pgc_and_attach():
    x = torch.ones(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"attach_pgc\(\): tensor must require grad"):
        pk.attach_pgc(x, 1.0)
    with pytest.raises(ValueError, match=r"pgc\(\): return_stats is not available here"):
        pk.pgc(x.requires_grad_(), 1.0, return_stats=True)
    with pytest.raises(TypeError, match=r"pgc\(\): unexpected keyword argument\(s\) \['tua'\]"):
        pk.pgc(x, 1.0, tua=2)
    with pytest.raises(ValueError, match=r"pgc\(\): variant must be one of"):
        pk.pgc(x, 1.0, variant="nope")
    with pytest.raises(TypeError, match=r"scaler must be a torch.amp.GradScaler"):
        pk.pgc(x, 1.0, scaler="big").sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"attach_pgc\(\): pass either scaler or scale, got both"):
            y = torch.ones(2, 3, 2, 2, requires_grad=True)
            pk.attach_pgc(y, 1.0, 2.0, scale=2.0)
            y.sum().backward()


def test_kernel_demo_reports_what_pgc_did(capsys):
    from pgc_fast.apps.demo import kernel_demo

    assert kernel_demo() == 0
    out = capsys.readouterr().out
    assert "pixels clipped         : 12 of 262144" in out
    assert "-> 0.100 after" in out and "other pixels untouched : True" in out


# --------------------------------------------------------------------------- packed channel-last kernels


def _nhwc(c: int, dtype: torch.dtype, npix_w: int, seed: int) -> torch.Tensor:
    """[2, 3, npix_w, C] channel-last gradient with a zero pixel, a NaN pixel and an inf pixel."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(2, 3, npix_w, c, generator=gen) * 1.5
    g[0, 0, 0] = 0.0
    g[1, 1, 1, c // 2] = float("nan")
    g[1, 2, npix_w - 1, 0] = float("inf")
    g[0, 2, 2, c - 1] = float("-inf")
    return g.to(DEV, dtype)


@needs_triton
@pytest.mark.parametrize("kernel", ["words32", "words64", "staged32", "staged64", "packed", "strided"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c", [2, 3, 4, 5, 8])
def test_packed_channel_last_kernels_match_reference(c, dtype, kernel):
    """Every kernel the NHWC dispatch can pick (word-packed in 32/64-bit words, staged through a coalesced tile
    or not; per-element gathers; channel tile), for every dtype and C (C=5 has no word plan: the fallback), with a
    pixel count that leaves a tail for
    the word kernel (3·2·7 = 42 pixels), zeros, NaN/±inf; forward, stats, and backward through pgc."""
    g = _nhwc(c, dtype, 7, seed=c)
    esize = 4 if dtype == torch.float32 else 2
    cfg = dict(pk_pc.CONFIG)
    name = kernel
    if kernel[-2:] in ("32", "64"):
        name = kernel[:-2]
        cfg[(name, esize)] = (8, 4, int(kernel[-2:]))
    for variant, norm, stats in (
        ("clip", "linf", False),
        ("clip", "l2", True),
        ("soft_pixel", "linf", True),
        ("value", "l2", True),
    ):
        out = pk_pc._pixel_clip_triton(g, TAU, variant, norm, 3, None, stats, config=cfg, packed_kernel=name)
        ref = pixel_clip_reference(g, TAU, variant=variant, norm=norm, channel_dim=-1, return_stats=stats)
        if stats:
            (out, so), (ref, sr) = out, ref
            for a, b in zip(so, sr, strict=False):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=0, equal_nan=True)
        assert out.stride() == g.stride()
        assert_close(out, ref, dtype)
    # The public path (default dispatch) and pgc's backward on the same gradient.
    x = torch.zeros(g.shape, device=DEV, dtype=dtype, requires_grad=True)
    pk.pgc(x, TAU, channel_dim=-1, backend="triton").backward(g)
    assert_close(x.grad, pixel_clip_reference(g, TAU, channel_dim=-1), dtype)


@needs_triton
def test_word_kernel_misaligned_storage_falls_back():
    """A view whose storage does not start on a word boundary cannot be read as words: same result via packed."""
    base = _nhwc(3, torch.bfloat16, 5, seed=1).reshape(-1)
    g = base[3:].reshape(-1)[: 29 * 3].reshape(29, 3)  # offset by one pixel = 6 bytes: not 8-byte aligned
    for variant in ("clip", "soft_pixel"):
        out = pk.pixel_clip(g, TAU, variant=variant, channel_dim=-1, backend="triton")
        assert_close(out, pixel_clip_reference(g, TAU, variant=variant, channel_dim=-1), torch.bfloat16)


@needs_triton
def test_plan_cache_distinguishes_layouts():
    """Same shape, different strides/dtypes/options in a row: each gets its own launch plan."""
    g, _ = make("nchw", seed=2)
    gl = g.contiguous(memory_format=torch.channels_last)
    for t in (g, gl, g.half(), gl, g):
        for stats in (False, True):
            out = pk.pixel_clip(t, TAU, backend="triton", return_stats=stats)
            out = out[0] if stats else out
            assert out.stride() == t.stride()
            assert_close(out, pixel_clip_reference(t, TAU), t.dtype)
    # The default dispatch sends a packed RGB channel-last tensor's pixel-wise clip to the configured kernel.
    pk_pc._PLANS.clear()
    nhwc = _nhwc(3, torch.bfloat16, 8, seed=4)
    pk.pixel_clip(nhwc, TAU, channel_dim=-1, backend="triton")
    (plan,) = pk_pc._PLANS.values()
    assert [lc[0] for lc in plan[2]] == [
        {"strided": "tile"}.get(pk_pc.PACKED_PIXEL_KERNEL[2], pk_pc.PACKED_PIXEL_KERNEL[2])
    ]
