"""FP8 lever (pgc_fast.guidance.models.fp8): the quantisation maths, its error bounds, zero/non-finite rows,
per-channel scales, the modules against their float32 twin, the replacement over a tiny UNet + ControlNet, the
CUDA call's layouts (checked on fake CUDA tensors, no GPU needed) and, on a Hopper GPU, _scaled_mm vs the twin."""

from __future__ import annotations

import unittest.mock

import pytest
import torch
import torch.nn.functional as F
from unet_support import tiny_unet_call

from pgc_fast.guidance.models import fp8

pytest.importorskip("diffusers")

# e4m3: 3 mantissa bits → round-to-nearest relative error ≤ 2^-4 in the normal range (|x|/s ≥ 2^-6), absolute
# error ≤ 2^-10·s below it (half the subnormal spacing 2^-9). Products of two such values: ≤ 2·2^-4 + 2^-8.
REL = 2.0**-4
SUB_ABS = 2.0**-10
PRODUCT_REL = 2 * REL + REL * REL


def _dequant(q, s):
    return q.float() * s


def test_row_scales_are_row_maxima_and_entries_within_e4m3_rounding():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 80, generator=g) * torch.logspace(-3, 3, 37)[:, None]  # rows 6 decades apart
    q, s = fp8.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (37, 1) and s.dtype == torch.float32
    torch.testing.assert_close(s, x.abs().amax(1, keepdim=True) / fp8.E4M3_MAX, rtol=0, atol=0)
    err = (_dequant(q, s) - x).abs()
    bound = torch.maximum(REL * x.abs(), SUB_ABS * s)
    assert (err <= bound * (1 + 1e-6)).all()
    # each row keeps its own relative precision: a per-tensor scale would flush the small rows to zero
    row_rel = ((_dequant(q, s) - x).norm(dim=1) / x.norm(dim=1)).max()
    assert row_rel < REL
    qt, st = fp8.quantize_rows(x, "tensor")
    assert st.shape == (1, 1)
    assert (_dequant(qt, st)[0] == 0).all()  # row 0 (~1e-3) is below e4m3's range under the 1e3 row's scale


def test_row_maximum_saturates_to_448_never_nan():
    x = torch.tensor([[1.0, -3.0, 2.5], [7.0, 7.0, -7.0]])
    q, s = fp8.quantize_rows(x)
    assert q.float().abs().amax(1).tolist() == [fp8.E4M3_MAX, fp8.E4M3_MAX]
    assert torch.isfinite(q.float()).all()


def test_zero_rows_and_zero_weight_rows_give_exactly_the_bias():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 32, generator=g)
    x[2] = 0
    w = torch.randn(16, 32, generator=g)
    w[5] = 0
    b = torch.randn(16, generator=g)
    y = fp8.fp8_linear_reference(x, w, b)
    assert torch.equal(y[2], b)
    assert torch.equal(y[:, 5], b[5].expand(6))
    q, s = fp8.quantize_rows(torch.zeros(3, 16))
    assert (q.float() == 0).all() and (s > 0).all()  # the MIN_AMAX floor: no 0/0


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_rows_stay_non_finite_and_leave_other_rows_alone(bad):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 48, generator=g)
    w = torch.randn(32, 48, generator=g)
    clean = fp8.fp8_linear_reference(x, w)
    x[3, 7] = bad
    y = fp8.fp8_linear_reference(x, w)
    assert not torch.isfinite(y[3]).any()
    torch.testing.assert_close(y[[0, 1, 2, 4]], clean[[0, 1, 2, 4]], rtol=0, atol=0)


@pytest.mark.parametrize("act_scale", ["row", "tensor"])
def test_gemm_error_within_the_elementwise_bound(act_scale):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(65, 144, generator=g, dtype=torch.float64) * torch.rand(65, 1, generator=g, dtype=torch.float64)
    w = torch.randn(48, 144, generator=g, dtype=torch.float64) * 0.05
    y = fp8.fp8_linear_reference(x, w, act_scale=act_scale).double()
    exact = x @ w.t()
    _, sx = fp8.quantize_rows(x, act_scale)
    _, sw = fp8.quantize_rows(w)
    # subnormal terms: |x| below 2^-6·s_x gets absolute error ≤ 2^-10·s_x (and likewise for w)
    sub = SUB_ABS * (sx.double() * w.abs().sum(1)[None] + x.abs().sum(1, keepdim=True) * sw.double().t())
    bound = PRODUCT_REL * (x.abs() @ w.abs().t()) + sub + 1e-6 * exact.abs()  # + float32 accumulation
    assert ((y - exact).abs() <= bound).all()
    rel = (y - exact).norm() / exact.norm()
    assert 1e-3 < rel < 0.06  # lossy, at e4m3's scale


def test_linear_module_matches_its_twin_in_every_dtype():
    g = torch.Generator().manual_seed(4)
    lin = torch.nn.Linear(64, 32).requires_grad_(False)
    x = torch.randn(3, 7, 64, generator=g)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        m = fp8.FP8Linear(lin.to(dtype), emulate=True)
        y = m(x.to(dtype))
        assert y.dtype == dtype and y.shape == (3, 7, 32)
        ref = fp8.fp8_linear_reference(x.to(dtype), lin.weight, lin.bias)
        torch.testing.assert_close(y.float(), ref.to(dtype).float(), rtol=0, atol=0)
        assert not any(True for _ in m.parameters())  # weights are buffers (frozen)


@pytest.mark.parametrize(
    "k,stride,padding,cl", [(1, 1, 0, False), (1, 1, 0, True), (3, 1, 1, False), (3, 2, 1, True), (3, 2, 0, False)]
)
def test_conv_module_is_an_fp8_gemm_over_pixels(k, stride, padding, cl):
    g = torch.Generator().manual_seed(5)
    conv = torch.nn.Conv2d(32, 48, k, stride=stride, padding=padding).requires_grad_(False)
    x = torch.randn(2, 32, 9, 11, generator=g)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = fp8.FP8Conv2d(conv, emulate=True)(x)
    ref = conv(x)
    assert y.shape == ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    # the twin on the im2col rows: unfold gives (c, i, j) order, the module (i, j, c): permute to match
    cols = F.unfold(x, k, padding=padding, stride=stride)  # [B, C·k², L]
    cols = cols.view(2, 32, k * k, -1).permute(0, 3, 2, 1).reshape(-1, k * k * 32)
    w2d = conv.weight.permute(0, 2, 3, 1).reshape(48, -1)
    twin = fp8.fp8_linear_reference(cols, w2d, conv.bias).view(2, ref.shape[2], ref.shape[3], 48).permute(0, 3, 1, 2)
    torch.testing.assert_close(y, twin, rtol=1e-6, atol=1e-6)
    assert (y - ref).norm() / ref.norm() < 0.06


@pytest.mark.parametrize("name,convs", [("tiny-sdxl", "none"), ("tiny-sdxl", "1x1"), ("tiny-sd", "all")])
def test_use_fp8_on_unet_and_controlnet(name, convs):
    from pgc_fast.guidance.models.builtin import build_builtin

    bundle = build_builtin(name, control_types=("depth",), dtype=torch.float32)
    run = tiny_unet_call(bundle)
    ref = run()
    n = fp8.use_fp8(bundle.unet, convs=convs, emulate=True) + fp8.use_fp8(bundle.controlnet, convs=convs, emulate=True)
    assert n > 0
    mods = [*bundle.unet.modules(), *bundle.controlnet.modules()]
    # no Linear left inside a transformer; embeddings untouched; zero convs replaced unless convs="none"
    for m in mods:
        if type(m).__name__ == "Transformer2DModel":
            assert not any(type(c) is torch.nn.Linear for c in m.modules())
    assert type(bundle.unet.time_embedding.linear_1) is torch.nn.Linear
    zero_convs = [type(c) for c in bundle.controlnet.controlnet_down_blocks]
    assert all(c is (torch.nn.Conv2d if convs == "none" else fp8.FP8Conv2d) for c in zero_convs)
    assert type(bundle.controlnet.controlnet_cond_embedding.conv_in) is torch.nn.Conv2d
    if convs == "all":
        assert any(type(m) is fp8.FP8Conv2d and m.kernel_size == (3, 3) for m in mods)
    out = run()
    assert torch.isfinite(out).all()
    rel = float((out - ref).norm() / ref.norm())
    assert 1e-3 < rel < 0.15, rel  # lossy but close: measured 0.04 (linear only) to 0.12 (all convs)


def test_use_fp8_refuses_what_it_cannot_do():
    lin = torch.nn.Sequential(torch.nn.Linear(32, 32))
    with pytest.raises(ValueError, match=r"use_fp8\(\): FP8 matrix products need .*compute capability 9.0"):
        fp8.use_fp8(lin)  # a CPU model without emulate
    with pytest.raises(ValueError, match="convs must be none"):
        fp8.use_fp8(lin, convs="3x3", emulate=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="act_scale must be row"):
        fp8.use_fp8(lin, act_scale="col", emulate=True)  # type: ignore[arg-type]
    assert fp8.use_fp8(torch.nn.Sequential(), emulate=True) == 0


def test_cuda_call_layouts_pass_scaled_mm_checks_on_fake_cuda_tensors():
    """The arguments fp8_linear hands torch._scaled_mm (row-major x_q, column-major W_qᵀ, [M, 1] and [1, N] scales,
    bf16 bias and output) pass its shape/stride checks; fake CUDA tensors need no GPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(), unittest.mock.patch.object(fp8, "_quantize", fp8.quantize_rows):
        for act_scale in ("row", "tensor"):
            x = torch.empty(3, 50, 128, device="cuda", dtype=torch.bfloat16)
            wq, ws = fp8.quantize_rows(torch.empty(48, 128, device="cuda", dtype=torch.bfloat16))
            y = fp8.fp8_linear(x, wq, ws.view(1, -1), torch.empty(48, device="cuda"), act_scale=act_scale)
            assert y.shape == (3, 50, 48) and y.dtype == torch.bfloat16 and y.is_cuda
            y16 = fp8.fp8_linear(x.half(), wq, ws.view(1, -1), None)
            assert y16.dtype == torch.float16


def test_fp8_layers_trace_under_regional_compile():
    """compile_blocks over FP8 layers: dynamo + AOT autograd trace them (the 'aot_eager' backend keeps this a
    CPU-cheap check of the tracing; inductor runs on the GPU bench) and the outputs are unchanged."""
    import torch._dynamo

    from pgc_fast.guidance.models.accel import compile_blocks
    from pgc_fast.guidance.models.builtin import build_builtin

    torch._dynamo.reset()
    bundle = build_builtin("tiny-sdxl", control_types=("depth",), dtype=torch.float32)
    fp8.use_fp8(bundle.unet, emulate=True)
    fp8.use_fp8(bundle.controlnet, emulate=True)
    run = tiny_unet_call(bundle)
    with torch.no_grad():
        ref = run()
        assert compile_blocks(bundle.unet, backend="aot_eager") > 0
        compile_blocks(bundle.controlnet, backend="aot_eager")
        out = run()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.skipif(not fp8.fp8_supported("cuda"), reason="needs a GPU of compute capability >= 9.0")
@pytest.mark.parametrize("act_scale", ["row", "tensor"])
def test_scaled_mm_matches_the_twin_on_hopper(act_scale):
    g = torch.Generator(device="cuda").manual_seed(6)
    x = torch.randn(300, 640, device="cuda", dtype=torch.bfloat16, generator=g)
    lin = torch.nn.Linear(640, 1280, device="cuda", dtype=torch.bfloat16).requires_grad_(False)
    y = fp8.FP8Linear(lin, act_scale=act_scale)(x)
    twin = fp8.fp8_linear_reference(x, lin.weight, lin.bias, act_scale)
    # same quantised values; the order of the float32 sums and the bf16 output rounding differ
    assert float((y.float() - twin).norm() / twin.norm()) < 4e-3
