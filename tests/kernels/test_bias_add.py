"""bias_add (Triton) vs its torch twin: forward/backward, NCHW and channels-last, with and without residual,
odd shapes, every dtype, zeros/NaN/inf, layout fallbacks and argument errors."""

import os

import pytest
import torch

from pgc_kernels import bias_add
from pgc_kernels.reference import bias_add_reference
from tolerances import TOLERANCES

needs_triton = pytest.mark.skipif(
    not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1",
    reason="Triton on CPU needs TRITON_INTERPRET=1",
)
DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _case(shape, dtype, channels_last, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g).to(DEV, dtype)
    r = torch.randn(*shape, generator=g).to(DEV, dtype)
    b = torch.randn(shape[1], generator=g).to(DEV)
    if channels_last:
        x, r = (t.contiguous(memory_format=torch.channels_last) for t in (x, r))
    return x, b, r


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_res", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 7, 9), (1, 3, 1, 1), (3, 16, 13, 2)])
def test_forward_backward_match_twin(dtype, channels_last, with_res, shape):
    x, b, r = _case(shape, dtype, channels_last)
    x.requires_grad_(True)
    r.requires_grad_(True)
    b.requires_grad_(True)
    res = r if with_res else None
    y = bias_add(x, b, res, backend="triton")
    ref = bias_add_reference(x, b, res)
    assert y.dtype == dtype and y.stride() == x.stride()
    tol = TOLERANCES["bias_add_bf16"] if dtype == torch.bfloat16 else {"atol": 0.0, "rtol": 0.0}
    torch.testing.assert_close(y, ref, **tol)  # same float32 sum, one rounding
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, b, r) if with_res else (x, b), dy)
    want = torch.autograd.grad(ref, (x, b, r) if with_res else (x, b), dy)
    for a, e in zip(got, want, strict=False):
        torch.testing.assert_close(a.float(), e.float(), rtol=1e-5, atol=1e-5)


@needs_triton
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN inputs, on purpose
def test_zeros_nan_inf_propagate_like_the_twin():
    x = torch.zeros(2, 3, 4, 5, device=DEV)
    x[0, 1, 2, 3] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    b = torch.tensor([0.0, 1.0, -float("inf")], device=DEV)
    y = bias_add(x, b, backend="triton")
    torch.testing.assert_close(y, bias_add_reference(x, b), equal_nan=True, rtol=0, atol=0)


@needs_triton
def test_other_layouts_fall_back_to_torch():
    x, b, r = _case((2, 4, 6, 6), torch.float32, False)
    xt = x.transpose(2, 3)  # neither NCHW-contiguous nor channels-last
    torch.testing.assert_close(bias_add(xt, b, backend="triton"), bias_add_reference(xt, b))
    r_cl = r.contiguous(memory_format=torch.channels_last)  # residual in another layout than x
    torch.testing.assert_close(bias_add(x, b, r_cl, backend="triton"), bias_add_reference(x, b, r_cl))


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"bias_add\(\): bias must be a 1-D tensor of C=3"):
        bias_add(x, torch.zeros(4))
    with pytest.raises(ValueError, match=r"bias_add\(\): residual must have x's shape"):
        bias_add(x, torch.zeros(3), torch.zeros(2, 3, 4, 5))
    with pytest.raises(TypeError, match=r"bias_add\(\): x must be a floating tensor"):
        bias_add(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3))
    with pytest.raises(ValueError, match=r"bias_add\(\): bias must be on cpu"):
        bias_add(x, torch.zeros(3, device="meta"))
    with pytest.raises(ValueError, match=r"bias_add\(\): residual must be on cpu"):
        bias_add(x, torch.zeros(3), torch.zeros(2, 3, 4, 4, device="meta"))
