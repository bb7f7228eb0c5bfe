"""chunked_attention vs its SDPA-math twin: forward and backward, odd shapes, every dtype, chunking edges."""

import pytest
import torch

from pgc_kernels.chunked_attention import chunked_attention
from pgc_kernels.reference import chunked_attention_reference


def _inputs(b, h, n, m, d, dv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=torch.float64)
    k = torch.randn(b, h, m, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, m, dv, generator=g, dtype=torch.float64)
    return [t.to(dtype).requires_grad_(True) for t in (q, k, v)]


def _fwd_bwd(fn, q, k, v, go, **kw):
    out = fn(q, k, v, **kw)
    grads = torch.autograd.grad(out, (q, k, v), go)
    return out, grads


@pytest.mark.parametrize(
    "shape,chunk",
    [
        ((2, 1, 37, 29, 24, 24), 8),
        ((1, 3, 50, 50, 16, 9), 7),
        ((2, 2, 33, 17, 40, 40), 33),
        ((1, 1, 5, 64, 512, 512), 2),
    ],
)
def test_matches_reference_float64(shape, chunk):
    q, k, v = _inputs(*shape, torch.float64)
    go = torch.randn(
        shape[0], shape[1], shape[2], shape[5], dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    out, grads = _fwd_bwd(chunked_attention, q, k, v, go, chunk_size=chunk)
    ref, rgrads = _fwd_bwd(chunked_attention_reference, q, k, v, go)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, rgrads, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_gradcheck_small():
    q, k, v = _inputs(1, 2, 6, 5, 4, 3, torch.float64, seed=3)
    assert torch.autograd.gradcheck(lambda a, b, c: chunked_attention(a, b, c, chunk_size=4, scale=0.7), (q, k, v))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_error_within_twice_reference_error(dtype, seed):
    shape = (2, 1, 45, 45, 64, 64)
    q64, k64, v64 = _inputs(*shape, torch.float64, seed=seed)
    go64 = torch.randn(2, 1, 45, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + seed))
    ref64, rg64 = _fwd_bwd(chunked_attention_reference, q64, k64, v64, go64)
    q, k, v = (t.detach().to(dtype).requires_grad_(True) for t in (q64, k64, v64))
    go = go64.to(dtype)
    out, grads = _fwd_bwd(chunked_attention, q, k, v, go, chunk_size=16)
    # The reference's own error in this dtype: the same SDPA computed in `dtype`. Errors are compared as
    # ‖·‖₂ over the tensor: the max-abs error of a 16-bit result is one rounding of one element, too noisy
    # to compare (seen: ratios 0.5–2.6 across seeds on the CPU, whose SDPA keeps P in float32 while we
    # round P and dS to the input dtype before their GEMMs, as flash attention does on the GPU).
    refd, rgd = _fwd_bwd(chunked_attention_reference, q, k, v, go)
    for ours, theirs, exact in zip((out, *grads), (refd, *rgd), (ref64, *rg64), strict=False):
        err = (ours.double() - exact).norm().item()
        ref_err = (theirs.double() - exact).norm().item()
        assert err <= 2 * ref_err + 1e-6, (dtype, err, ref_err)


def test_default_scale_and_chunking_are_invisible():
    q, k, v = _inputs(1, 2, 19, 23, 8, 8, torch.float64, seed=2)
    a = chunked_attention(q, k, v)
    b = chunked_attention(q, k, v, chunk_size=1)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, torch.nn.functional.scaled_dot_product_attention(q, k, v))


def test_empty_queries():
    q, k, v = _inputs(1, 1, 0, 4, 8, 8, torch.float32)
    assert chunked_attention(q, k, v).shape == (1, 1, 0, 8)


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda q, k, v: (q[0], k, v), "q must be"),
        (lambda q, k, v: (q, k.to(torch.float64), v), "k must match"),
        (lambda q, k, v: (q, k[..., :3], v), "shapes must be"),
        (lambda q, k, v: (q, k[:, :, :0], v[:, :, :0]), "shapes must be"),
    ],
)
def test_bad_input(bad, match):
    q, k, v = _inputs(1, 1, 4, 4, 8, 8, torch.float32)
    with pytest.raises(ValueError, match=match):
        chunked_attention(*bad(q, k, v))
    with pytest.raises(ValueError, match="backend"):
        chunked_attention(q, k, v, backend="cuda")
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_attention(q, k, v, chunk_size=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape,chunk", [((2, 1, 13, 21, 16, 16), 5), ((1, 2, 9, 40, 8, 12), 9)])
def test_triton_backend_matches_reference(shape, chunk, dtype, monkeypatch):
    if not torch.cuda.is_available():
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("Triton on CPU needs TRITON_INTERPRET=1")
    # CUDA tensors where there is a GPU (backend="triton" refuses CPU tensors outside the interpreter)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    q64, k64, v64 = (t.detach().to(dev).requires_grad_(True) for t in _inputs(*shape, torch.float64, seed=5))
    go64 = torch.randn(
        shape[0], shape[1], shape[2], shape[5], dtype=torch.float64, generator=torch.Generator().manual_seed(6)
    ).to(dev)
    exact = _fwd_bwd(chunked_attention_reference, q64, k64, v64, go64)
    q, k, v = (t.detach().to(dtype).requires_grad_(True) for t in (q64, k64, v64))
    ours = _fwd_bwd(chunked_attention, q, k, v, go64.to(dtype), chunk_size=chunk, backend="triton")
    chunked = _fwd_bwd(chunked_attention, q, k, v, go64.to(dtype), chunk_size=chunk, backend="chunked")
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    for a, b, e in zip((ours[0], *ours[1]), (chunked[0], *chunked[1]), (exact[0], *exact[1]), strict=False):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), e, rtol=tol, atol=tol)
        # Same algorithm, different fusion: as close to the exact result as the PyTorch-op version.
        assert (a.double() - e).norm() <= 2 * (b.double() - e).norm() + 1e-6
