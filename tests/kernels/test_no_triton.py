"""pgc_kernels without triton (issue 16): the package imports, every op's "auto" and "torch" backends run forward
and backward on CPU tensors through the torch twins, and backend="triton" raises the documented ValueError.

triton is hidden in a child process (``sys.modules["triton"] = None`` before torch or pgc_kernels is imported: both
``import triton`` and ``importlib.util.find_spec("triton")`` then see no triton). One child runs every check and
prints a JSON verdict per op; the tests below read it, one test per op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable

import pytest

NO_TRITON = "backend must be 'auto' or 'torch' when triton is not installed, got 'triton'"


def _hide_triton() -> None:
    for name in [n for n in sys.modules if n == "triton" or n.startswith("triton.")]:
        del sys.modules[name]
    sys.modules["triton"] = None  # type: ignore[assignment]
    sys.modules["triton.language"] = None  # type: ignore[assignment]


def _raises_no_triton(fn: Callable[[], object]) -> None:
    try:
        fn()
    except ValueError as e:
        assert NO_TRITON in str(e), str(e)
        assert "\n" not in str(e), "one-line error"
        return
    raise AssertionError("backend='triton' without triton did not raise")


def _check_import() -> None:
    import importlib.util

    import pgc_kernels
    from pgc_kernels import _backend

    assert importlib.util.find_spec("triton") is None
    assert _backend.HAS_TRITON is False and _backend.triton is None and _backend.tl is None
    for name in pgc_kernels.__all__:
        assert getattr(pgc_kernels, name) is not None, name
    assert sys.modules.get("triton") is None, "something imported a real triton"


def _check_pixel_clip() -> None:
    import torch

    from pgc_kernels import attach_pgc, pgc, pixel_clip
    from pgc_kernels.reference import pixel_clip_reference

    g = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    ref, ref_stats = pixel_clip_reference(g, 0.5, return_stats=True)
    for backend in ("auto", "torch"):
        out, stats = pixel_clip(g, 0.5, backend=backend, return_stats=True)
        assert torch.equal(out, ref) and all(torch.equal(a, b) for a, b in zip(stats, ref_stats, strict=True))
        # Backward: pgc() and attach_pgc() clip the gradient passing through.
        x = torch.zeros(2, 3, 5, 4, requires_grad=True)
        pgc(x, 0.5, backend=backend).backward(g)
        assert x.grad is not None and torch.equal(x.grad, ref)
        y = torch.zeros(2, 3, 5, 4, requires_grad=True)
        z = y * 1.0
        hook = attach_pgc(z, 0.5, backend=backend, return_stats=True)
        z.backward(g)
        assert y.grad is not None and torch.equal(y.grad, ref) and hook.stats is not None
    _raises_no_triton(lambda: pixel_clip(g, 0.5, backend="triton"))
    _raises_no_triton(lambda: pgc(torch.zeros(2, 3, requires_grad=True), 0.5, backend="triton"))


def _check_sds_grad() -> None:
    import torch

    from pgc_kernels import sds_grad, sds_loss
    from pgc_kernels.reference import sds_grad_reference

    gen = torch.Generator().manual_seed(1)
    ec, eu, tg = (torch.randn(2, 4, 6, 6, generator=gen) for _ in range(3))
    w = torch.tensor([0.5, 2.0])
    kw = dict(cfg_rescale=0.7, clamp=1.5, clip=0.8)
    ref = sds_grad_reference(ec, eu, tg, w, 7.5, **kw)
    for backend in ("auto", "torch"):
        g = sds_grad(ec, eu, tg, w, 7.5, backend=backend, **kw)
        assert torch.equal(g, ref)
        latents = torch.zeros(2, 4, 6, 6, requires_grad=True)
        sds_loss(latents, g).backward()
        assert latents.grad is not None and torch.equal(latents.grad, g)
    _raises_no_triton(lambda: sds_grad(ec, eu, tg, w, 7.5, backend="triton"))


def _grads(fn: Callable[..., object], inputs: list, seed: int) -> tuple:
    """fn(*inputs) and the gradients of a fixed random projection of it w.r.t. every input."""
    import torch

    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    assert isinstance(out, torch.Tensor)
    proj = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return (out, *torch.autograd.grad(out, leaves, proj))


def _assert_all_close(a: tuple, b: tuple) -> None:
    import torch

    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.isfinite(x).all()
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def _check_chunked_attention() -> None:
    import torch

    from pgc_kernels import chunked_attention
    from pgc_kernels.reference import chunked_attention_reference

    gen = torch.Generator().manual_seed(2)
    qkv = [
        torch.randn(1, 2, 7, 8, generator=gen),
        torch.randn(1, 2, 5, 8, generator=gen),
        torch.randn(1, 2, 5, 3, generator=gen),
    ]
    ref = _grads(lambda q, k, v: chunked_attention_reference(q, k, v), qkv, seed=3)
    for backend in ("auto", "chunked", "torch"):
        got = _grads(lambda q, k, v, b=backend: chunked_attention(q, k, v, chunk_size=3, backend=b), qkv, seed=3)
        _assert_all_close(got, ref)
    _raises_no_triton(lambda: chunked_attention(*qkv, backend="triton"))


def _check_group_norm_silu() -> None:
    import torch

    from pgc_kernels import GroupNormSiLU, group_norm_silu
    from pgc_kernels.reference import group_norm_silu_reference

    gen = torch.Generator().manual_seed(4)
    args = [torch.randn(2, 4, 3, 5, generator=gen), torch.randn(4, generator=gen), torch.randn(4, generator=gen)]
    ref = _grads(lambda x, w, b: group_norm_silu_reference(x, 2, w, b), args, seed=5)
    for backend in ("auto", "torch"):
        got = _grads(lambda x, w, b, be=backend: group_norm_silu(x, 2, w, b, backend=be), args, seed=5)
        _assert_all_close(got, ref)
        mod = GroupNormSiLU(2, 4, backend=backend)
        mod(args[0]).sum().backward()
        assert mod.weight.grad is not None and torch.isfinite(mod.weight.grad).all()
    _raises_no_triton(lambda: group_norm_silu(args[0], 2, backend="triton"))


def _check_bias_add() -> None:
    import torch

    from pgc_kernels import bias_add
    from pgc_kernels.reference import bias_add_reference

    gen = torch.Generator().manual_seed(6)
    args = [
        torch.randn(2, 3, 4, 4, generator=gen),
        torch.randn(3, generator=gen),
        torch.randn(2, 3, 4, 4, generator=gen),
    ]
    ref = _grads(lambda x, b, r: bias_add_reference(x, b, r), args, seed=7)
    for backend in ("auto", "torch"):
        got = _grads(lambda x, b, r, be=backend: bias_add(x, b, r, backend=be), args, seed=7)
        _assert_all_close(got, ref)
    _raises_no_triton(lambda: bias_add(*args, backend="triton"))


def _check_hash_grid_encode() -> None:
    import torch

    from pgc_kernels import hash_grid_encode
    from pgc_kernels.reference import hash_grid_encode_reference

    gen = torch.Generator().manual_seed(8)
    cfg = dict(base_resolution=4, finest_resolution=32)
    args = [torch.rand(50, 3, generator=gen), torch.rand(3, 256, 2, generator=gen) * 2 - 1]
    ref = _grads(lambda x, t: hash_grid_encode_reference(x, t, **cfg), args, seed=9)
    for backend in ("auto", "torch"):
        got = _grads(lambda x, t, b=backend: hash_grid_encode(x, t, backend=b, **cfg), args, seed=9)
        _assert_all_close(got, ref)
    _raises_no_triton(lambda: hash_grid_encode(*args, backend="triton", **cfg))


CHECKS: dict[str, Callable[[], None]] = {
    "import": _check_import,
    "pixel_clip": _check_pixel_clip,
    "sds_grad": _check_sds_grad,
    "chunked_attention": _check_chunked_attention,
    "group_norm_silu": _check_group_norm_silu,
    "bias_add": _check_bias_add,
    "hash_grid_encode": _check_hash_grid_encode,
}


def _child() -> None:
    _hide_triton()
    import torch

    torch.set_num_threads(1)
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:  # noqa: BLE001 - report every op, not just the first failure
            results[name] = traceback.format_exc()
    print("RESULTS " + json.dumps(results))


@pytest.fixture(scope="module")
def child_results() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, f"child failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1].removeprefix("RESULTS "))


@pytest.mark.parametrize("op", list(CHECKS))
def test_without_triton(op: str, child_results: dict[str, str]) -> None:
    assert child_results[op] == "ok", child_results[op]


def test_hiding_works_in_this_process_too() -> None:
    """The child's premise: with sys.modules["triton"] = None, ``import triton`` fails with ImportError."""
    saved = {n: m for n, m in sys.modules.items() if n == "triton" or n.startswith("triton.")}
    try:
        _hide_triton()
        with pytest.raises(ImportError):
            import triton  # noqa: F401
    finally:
        for n in ("triton", "triton.language"):
            sys.modules.pop(n, None)
        sys.modules.update(saved)


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
