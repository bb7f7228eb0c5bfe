"""hash_grid_encode: Triton kernel (interpreter on CPU) vs the torch twin, forward and backward, plus the twin's
own correctness (known vertex values, float64 gradcheck) and the input checks."""

from __future__ import annotations

import math

import pytest
import torch

from pgc_kernels import hash_grid_encode
from pgc_kernels.reference import _hash_grid_levels, hash_grid_encode_reference
from tolerances import HAS_CUDA, TOLERANCES, TRITON_INTERPRET

CAN_TRITON = HAS_CUDA or TRITON_INTERPRET
needs_triton = pytest.mark.skipif(not CAN_TRITON, reason="needs CUDA or TRITON_INTERPRET=1")
DEVICE = "cuda" if HAS_CUDA else "cpu"

# Small config with both kinds of level: scales 3, 9.08, 24.4, 63 → res 4, 11, 26, 64; with T = 4096 the first two
# levels ((res+1)^3 = 125, 1728) are dense, the last two (19683, 274625) hashed.
CFG = dict(base_resolution=4, finest_resolution=64)
L, T = 4, 4096


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _special_points(n_random: int, seed: int) -> torch.Tensor:
    """Random points plus points on cell faces, edges and vertices of every level, the domain boundary, outside."""
    gen = torch.Generator().manual_seed(seed)
    scales, _, _ = _hash_grid_levels(L, T, CFG["base_resolution"], CFG["finest_resolution"])
    pts = [torch.rand(n_random, 3, generator=gen)]
    for s in scales:
        # x with x·s + 0.5 = k (a cell face) where float32 allows; ±1 ulp neighbours land on either side.
        k = torch.arange(1, int(s) + 1, dtype=torch.float64)
        face = ((k - 0.5) / s).float().clamp(0, 1)
        near = torch.cat(
            [face, torch.nextafter(face, torch.ones_like(face)), torch.nextafter(face, -torch.ones_like(face))]
        )
        sel = near[torch.randint(len(near), (24, 3), generator=gen)]  # vertices/edges/faces: all 3 coords on faces
        one_axis = torch.rand(24, 3, generator=gen)
        one_axis[:, 0] = near[torch.randint(len(near), (24,), generator=gen)]  # a face only
        pts += [sel, one_axis]
    bnd = torch.tensor([0.0, 1.0, 0.5])
    pts.append(torch.cartesian_prod(bnd, bnd, bnd))  # domain corners, edges, faces
    pts.append(torch.tensor([[-0.5, 0.3, 1.5], [-1e-7, 1 + 1e-7, 0.2], [2.0, -3.0, 0.5], [1.0, 1.0, 1.0]]))
    return torch.cat(pts).contiguous()


def _count_on_faces(x: torch.Tensor) -> int:
    scales, _, _ = _hash_grid_levels(L, T, CFG["base_resolution"], CFG["finest_resolution"])
    hits = 0
    for s in scales:
        p = x.clamp(0, 1) * s + 0.5
        hits += int((p == torch.floor(p)).any(dim=1).sum())
    return hits


def _table(dtype: torch.dtype, feat: int, seed: int, levels: int = L, size: int = T) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(levels, size, feat, generator=gen) * 2 - 1).to(dtype)


@needs_triton
@pytest.mark.parametrize("interpolation", ["linear", "smoothstep"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("feat", [4, 3])
def test_triton_matches_twin_fwd_bwd(dtype, interpolation, feat):
    x = _special_points(97, seed=1).to(DEVICE)
    assert _count_on_faces(x.cpu()) > 50  # the face cases are really exercised
    table = _table(dtype, feat, seed=2).to(DEVICE)
    kw = dict(CFG, interpolation=interpolation)
    xt, tt = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    xr, tr = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    out = hash_grid_encode(xt, tt, backend="triton", **kw)
    ref = hash_grid_encode_reference(xr, tr, **kw)
    assert out.dtype == dtype and out.shape == (x.shape[0], L * feat)
    torch.testing.assert_close(out, ref, **TOLERANCES[dtype])
    # Low precision: error to the float32 computation at most 2x the twin's own + 1e-6 ("quack" rule).
    ref32 = hash_grid_encode_reference(x, table.float(), **kw)
    err, err_ref = (out.float() - ref32).abs().max(), (ref.float() - ref32).abs().max()
    assert err <= 2 * err_ref + 1e-6

    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).to(DEVICE, dtype)
    gx, gt = torch.autograd.grad(out, (xt, tt), g)
    rx, rt = torch.autograd.grad(ref, (xr, tr), g)
    assert gt.dtype == dtype and gx.dtype == torch.float32
    torch.testing.assert_close(gt, rt, **TOLERANCES[dtype])
    # dL/dx sums ~L·8·F terms of size up to scale·|g|·|feat| (scale 63): compare relative to the largest.
    torch.testing.assert_close(gx, rx, **TOLERANCES["hash_grid_dx"])
    # Clamped coordinates get no gradient.
    outside = (x < 0) | (x > 1)
    assert torch.all(gx[outside] == 0) and torch.all(rx[outside] == 0)


@needs_triton
@pytest.mark.parametrize("need", ["table", "x"])
def test_triton_single_input_grad(need):
    """Only the requested gradient is computed (the kernel has a path for each)."""
    x = _special_points(50, seed=4).to(DEVICE)
    table = _table(torch.float32, 2, seed=5).to(DEVICE)
    (x if need == "x" else table).requires_grad_(True)
    out = hash_grid_encode(x, table, backend="triton", **CFG)
    ref = hash_grid_encode_reference(x, table, **CFG)
    g = torch.randn_like(out)
    leaf = x if need == "x" else table
    (a,) = torch.autograd.grad(out, leaf, g)
    (b,) = torch.autograd.grad(ref, leaf, g)
    tol = TOLERANCES["hash_grid_dx"] if need == "x" else TOLERANCES[torch.float32]
    torch.testing.assert_close(a, b, **tol)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_deterministic_backward(dtype):
    x = torch.rand(200, 3, generator=torch.Generator().manual_seed(6)).to(DEVICE)
    table = _table(dtype, 2, seed=7).to(DEVICE).requires_grad_(True)
    g = torch.randn(200, L * 2, generator=torch.Generator().manual_seed(8)).to(DEVICE, dtype)

    def grad(**kw):
        out = hash_grid_encode(x, table, backend="triton", **CFG, **kw)
        return torch.autograd.grad(out, table, g)[0]

    d1, d2 = grad(deterministic=True), grad(deterministic=True)
    assert torch.equal(d1, d2)  # bitwise repeatable
    # Same value as the twin's float32 accumulation, up to the final rounding to the table dtype.
    ref = torch.autograd.grad(hash_grid_encode_reference(x, table, **CFG), table, g)[0]
    torch.testing.assert_close(d1, ref, **TOLERANCES[dtype])
    torch.testing.assert_close(grad(deterministic=False), d1, **TOLERANCES[dtype])
    # deterministic=None follows torch's global switch.
    prev = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        assert torch.equal(grad(), d1)
    finally:
        torch.use_deterministic_algorithms(prev)


@needs_triton
def test_deterministic_backward_extreme_magnitudes():
    """Fixed-point scaling adapts to the gradient: tiny and huge gradients keep float32 precision; zero → zero."""
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    table = _table(torch.float32, 2, seed=10).to(DEVICE).requires_grad_(True)
    out = hash_grid_encode(x, table, backend="triton", deterministic=True, **CFG)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(11)).to(DEVICE)
    ref = torch.autograd.grad(hash_grid_encode_reference(x, table, **CFG), table, g)[0]
    for s in (1e-30, 1e25):
        (d,) = torch.autograd.grad(out, table, g * s, retain_graph=True)
        torch.testing.assert_close(d, ref * s, rtol=1e-5, atol=1e-6 * s)
    (z,) = torch.autograd.grad(out, table, torch.zeros_like(g), retain_graph=True)
    assert torch.count_nonzero(z) == 0
    with pytest.raises(ValueError, match="finite"):
        torch.autograd.grad(out, table, torch.full_like(g, float("inf")))


def test_twin_gradcheck_float64():
    torch.manual_seed(12)
    x = (torch.rand(6, 3, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    for interpolation in ("linear", "smoothstep"):
        # T = 128: level 0 (res 4, 5^3 vertices) dense, levels 1-2 (res 11, 32) hashed.
        table = torch.randn(3, 128, 2, dtype=torch.float64, requires_grad=True)
        fn = lambda a, b, mode=interpolation: hash_grid_encode_reference(
            a,
            b,
            base_resolution=4,
            finest_resolution=32,
            interpolation=mode,
        )
        assert torch.autograd.gradcheck(fn, (x, table), eps=1e-7, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_known_vertex_values(backend):
    """A point on a grid vertex returns that vertex's row: dense index and the Instant-NGP hash, computed here
    independently with Python integers."""
    table_size = 1024
    table = _table(torch.float32, 2, seed=13, levels=1, size=table_size).to(DEVICE)
    # One level, base = finest = 2^k + 1 → scale 2^k (exact) and res = 2^k + 1; x = (v − 0.5)/2^k puts
    # p = x·scale + 0.5 exactly on vertex v (v >= 1 so that x > 0 is not clamped).
    for base, dense in ((9, True), (257, False)):
        scale, stride = base - 1, base + 1  # a level has res + 1 = base + 1 vertices per axis
        assert (stride**3 <= table_size) == dense
        v = torch.tensor([[1, 1, 1], [1, 2, 3], [8, 1, 5], [7, 8, 8], [100, 37, 250], [256, 256, 256]])
        v = v[(v <= scale).all(1)]
        x = ((v.double() - 0.5) / scale).float().to(DEVICE)
        out = hash_grid_encode(x, table, base_resolution=base, finest_resolution=base, backend=backend)
        for row, (vx, vy, vz) in zip(out.cpu(), v.tolist(), strict=False):
            if dense:
                idx = vx + vy * stride + vz * stride * stride
            else:
                idx = ((vx * 1) ^ ((vy * 2654435761) % 2**32) ^ ((vz * 805459861) % 2**32)) % table_size
            torch.testing.assert_close(row, table[0, idx].cpu())


def test_level_parameters_match_the_original():
    scales, res, num_dense = _hash_grid_levels(16, 2**16, 16, 4096)
    assert res[0] == 16 and res[-1] == 4096 and scales[0] == 15.0 and scales[-1] == 4095.0
    ratio = 2 ** (8 / 15)
    for lvl, s in enumerate(scales):
        assert math.isclose(s + 1, 16 * ratio**lvl, rel_tol=1e-6)
    assert num_dense == 3  # 17^3, 25^3, 35^3 <= 2^16 < 50^3


@needs_triton
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # NaN → int in the interpreter
def test_empty_nan_and_odd_sizes():
    table = _table(torch.float32, 1, seed=14).to(DEVICE).requires_grad_(True)
    x = torch.empty(0, 3, device=DEVICE, requires_grad=True)
    out = hash_grid_encode(x, table, backend="triton", **CFG)
    assert out.shape == (0, L)
    gx, gt = torch.autograd.grad(out.sum(), (x, table))
    assert gx.shape == (0, 3) and torch.count_nonzero(gt) == 0
    # NaN coordinates give NaN features for that point but never read outside the table.
    x = torch.tensor([[float("nan"), 0.5, 0.5], [0.2, 0.3, 0.4]], device=DEVICE)
    out = hash_grid_encode(x, table.detach(), backend="triton", **CFG)
    ref = hash_grid_encode_reference(x, table.detach(), **CFG)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()
    torch.testing.assert_close(out[1], ref[1])
    # Non-contiguous x and a single level.
    xs = torch.rand(40, 6, device=DEVICE)[:, ::2]
    t1 = table.detach()[:1]
    torch.testing.assert_close(hash_grid_encode(xs, t1, backend="triton"), hash_grid_encode_reference(xs, t1))


@needs_triton
def test_int64_indexing_path(monkeypatch):
    """The 64-bit offset variant (tables or outputs past 2^31 elements) computes the same thing."""
    import importlib

    hge = importlib.import_module("pgc_kernels.hash_grid_encode")
    monkeypatch.setattr(hge, "_needs_idx64", lambda *a: True)
    x = _special_points(40, seed=16).to(DEVICE).requires_grad_(True)
    table = _table(torch.float16, 4, seed=17).to(DEVICE).requires_grad_(True)
    out = hash_grid_encode(x, table, backend="triton", **CFG)
    ref = hash_grid_encode_reference(x, table, **CFG)
    torch.testing.assert_close(out, ref, **TOLERANCES[torch.float16])
    g = torch.randn_like(out)
    for a, b, tol in zip(
        torch.autograd.grad(out, (x, table), g),
        torch.autograd.grad(ref, (x, table), g),
        (TOLERANCES["hash_grid_dx"], TOLERANCES[torch.float16]),
        strict=False,
    ):
        torch.testing.assert_close(a, b, **tol)


def test_cpu_twin_backward_is_bitwise_repeatable():
    """Issue 22: on the CPU (backend "auto" or "torch") the table and x gradients are bit-identical run to run and
    across thread counts. Many points per row (the dense levels have 125 and 1728 rows) and > 32768 scattered
    elements per gather: the sizes at which a multi-threaded scatter with float atomics (torch's CPU
    ``index_put_(accumulate=True)``, the backward of ``table[idx]``) changes its summation order from run to run."""
    n = 20_000
    x = torch.rand(n, 3, generator=torch.Generator().manual_seed(18)).requires_grad_(True)
    table = _table(torch.float32, 2, seed=19).requires_grad_(True)
    g = torch.randn(n, L * 2, generator=torch.Generator().manual_seed(20))

    def grads(threads: int, backend: str) -> tuple[torch.Tensor, ...]:
        torch.set_num_threads(threads)
        return torch.autograd.grad(hash_grid_encode(x, table, backend=backend, **CFG), (x, table), g)

    prev = torch.get_num_threads()
    try:
        first = grads(2, "auto")
        runs = [grads(2, "torch"), grads(1, "auto"), grads(2, "auto")]
    finally:
        torch.set_num_threads(prev)
    for gx, gt in runs:
        assert torch.equal(gt, first[1]) and torch.equal(gx, first[0])


def test_auto_backend_on_cpu_uses_twin():
    x = torch.rand(10, 3)
    table = _table(torch.float32, 2, seed=15)
    assert torch.equal(hash_grid_encode(x, table, **CFG), hash_grid_encode_reference(x, table, **CFG))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            dict(x=torch.rand(4, 2)),
            ValueError,
            r"hash_grid_encode\(\): x must be a float32 tensor \[N, 3\], got float32 \[4, 2\]",
        ),
        (dict(x=torch.rand(4, 3, dtype=torch.float64)), ValueError, "x must be a float32 tensor"),
        (dict(x=[[0.0, 0.0, 0.0]]), TypeError, "x must be a torch.Tensor"),
        (dict(table=torch.rand(4, 8)), ValueError, r"table must be a float32\|float16\|bfloat16 tensor \[L, T, F\]"),
        (dict(table=torch.zeros(2, 8, 2, dtype=torch.int32)), ValueError, "table must be"),
        (dict(table=torch.rand(2, 0, 2)), ValueError, "L, T, F >= 1"),
        (dict(interpolation="cubic"), ValueError, "interpolation must be one of"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
        (dict(base_resolution=0), ValueError, "base_resolution must be a finite number >= 1"),
        (dict(finest_resolution=float("nan")), ValueError, "finest_resolution must be a finite number"),
        (dict(base_resolution=64, finest_resolution=16), ValueError, "finest_resolution must be >= base_resolution"),
        (dict(finest_resolution=2**25), ValueError, "finest_resolution must be <= 2"),
        (dict(deterministic="yes"), TypeError, "deterministic must be a bool"),
    ],
)
@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_triton)])
def test_bad_input(kwargs, exc, match, backend):
    args = dict(x=torch.rand(4, 3), table=torch.rand(2, 8, 2), backend=backend)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        hash_grid_encode(args.pop("x"), args.pop("table"), **args)


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        hash_grid_encode(torch.rand(4, 3), torch.rand(2, 8, 2), backend="triton")


# --- Segmented table-gradient scatter (coherent points) ---------------------------------------------------------
# The backward sums the contributions of runs of consecutive points that share a cell before its atomics
# (kernels/pgc_kernels/hash_grid_encode.py, _scatter_segmented). These tests use a small block (32) so that blocks
# both with few and with many segments occur, segments cross block boundaries and N is not a multiple of the block.
SEG_BLOCK = 32


def _cells(x: torch.Tensor) -> torch.Tensor:
    """[L, N, 3] int grid cell of every point at every level (the kernels' float32 arithmetic)."""
    scales, res, _ = _hash_grid_levels(L, T, CFG["base_resolution"], CFG["finest_resolution"])
    out = []
    for s, r in zip(scales, res, strict=False):
        p = x.clamp(0, 1) * torch.tensor(s, dtype=torch.float32) + 0.5
        out.append(torch.floor(p).long().clamp(0, r - 1))
    return torch.stack(out)


def _segments_per_block(x: torch.Tensor, block: int) -> torch.Tensor:
    """[L, num_blocks] number of runs of consecutive points with equal cell inside each block of `block` points."""
    c = _cells(x)
    start = torch.ones(c.shape[:2], dtype=torch.bool)
    start[:, 1:] = (c[:, 1:] != c[:, :-1]).any(-1)
    start[:, ::block] = True
    n_blocks = -(-x.shape[0] // block)
    padded = torch.zeros(L, n_blocks * block, dtype=torch.long)
    padded[:, : x.shape[0]] = start.long()
    return padded.view(L, n_blocks, block).sum(-1)


def _coherent_points(kind: str, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "repeated":  # runs of 1-24 copies of one point (a pixel's neighbours hitting one surface point)
        reps = torch.randint(1, 25, (16,), generator=gen)
        pts = torch.rand(16, 3, generator=gen).repeat_interleave(reps, dim=0)[:157]
    elif kind == "sorted":  # a scanline across a surface: cells change every ~N/res points, as for pixels
        t = torch.linspace(0.02, 0.97, 157, dtype=torch.float64)
        pts = torch.stack([t, 0.5 + 0.2 * torch.sin(3 * t), 0.3 + 0.1 * t], 1).float()
    elif kind == "one_cell":  # every point in one cell at every level: one segment per block
        pts = torch.tensor([0.3, 0.45, 0.3]) + (torch.rand(157, 3, generator=gen) - 0.5) * 4e-3
        assert (_cells(pts) == _cells(pts[:1])).all()
    else:  # "mixed": coherent blocks, random blocks, a run across a block boundary
        t = torch.linspace(0.1, 0.9, 60, dtype=torch.float64)
        line = torch.stack([t, 1 - t, 0.5 + 0 * t], 1).float()
        pts = torch.cat([line, torch.rand(50, 3, generator=gen), torch.rand(1, 3, generator=gen).expand(47, 3)])
    return pts.contiguous()


@pytest.fixture
def seg_launch(monkeypatch):
    import importlib

    hge = importlib.import_module("pgc_kernels.hash_grid_encode")

    def set_launch(**kw):
        for k, v in dict(dict(bwd_block=SEG_BLOCK), **kw).items():
            monkeypatch.setitem(hge._LAUNCH, k, v)

    return set_launch


@needs_triton
@pytest.mark.parametrize("frac", [0.25, 1.0])  # 1.0: every block takes the segmented path
@pytest.mark.parametrize("kind", ["repeated", "sorted", "one_cell", "mixed"])
def test_segmented_table_grad_matches_twin(kind, frac, seg_launch):
    x = _coherent_points(kind, seed=20)
    nseg = _segments_per_block(x, SEG_BLOCK)
    # The data really exercise the segmented path (<= 8 segments in a block of 32) and, for sorted and mixed, the
    # per-point path too; the last block is partial.
    assert (nseg <= SEG_BLOCK // 4).any() and x.shape[0] % SEG_BLOCK != 0
    if kind in ("sorted", "mixed"):
        assert (nseg > SEG_BLOCK // 4).any()
    seg_launch(bwd_segmented=True, bwd_seg_frac=frac)
    table = _table(torch.float32, 2, seed=21).to(DEVICE).requires_grad_(True)
    g = torch.randn(x.shape[0], L * 2, generator=torch.Generator().manual_seed(22)).to(DEVICE)
    (gt,) = torch.autograd.grad(hash_grid_encode(x.to(DEVICE), table, backend="triton", **CFG), table, g)
    # float64 twin: the kernel's float32 sums (in another order) are compared with the exact sums.
    t64 = table.detach().double().requires_grad_(True)
    (rt,) = torch.autograd.grad(hash_grid_encode_reference(x.to(DEVICE), t64, **CFG), t64, g.double())
    torch.testing.assert_close(gt.double(), rt, **TOLERANCES["hash_grid_seg_table"])


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_segmented_deterministic_is_bitwise_the_per_point_sum(dtype, seg_launch):
    """Deterministic mode adds the same int64 quanta in the segmented scan as the per-point atomics do: the result is
    bitwise the per-point path's, also with every block forced through the segmented path (frac 1)."""
    x = _coherent_points("mixed", seed=23).to(DEVICE)
    table = _table(dtype, 2, seed=24).to(DEVICE).requires_grad_(True)
    g = torch.randn(x.shape[0], L * 2, generator=torch.Generator().manual_seed(25)).to(DEVICE, dtype)

    def grad():
        return torch.autograd.grad(hash_grid_encode(x, table, backend="triton", deterministic=True, **CFG), table, g)[0]

    seg_launch(bwd_segmented=False)
    plain = grad()
    for frac in (0.25, 1.0):
        seg_launch(bwd_segmented=True, bwd_seg_frac=frac)
        assert torch.equal(grad(), plain), frac
    ref = torch.autograd.grad(hash_grid_encode_reference(x, table, **CFG), table, g)[0]
    torch.testing.assert_close(plain, ref, **TOLERANCES[dtype])


@needs_triton
@pytest.mark.parametrize("dx_separate", [True, False])
def test_segmented_with_dx(dx_separate, seg_launch):
    """dL/dx and dL/dtable together: dL/dx in its own level-looping kernel, or fused with the table scatter in one;
    every block forced through the segmented path (frac 1)."""
    seg_launch(bwd_segmented=True, bwd_seg_frac=1.0, bwd_dx_separate=dx_separate)
    x = _coherent_points("sorted", seed=26).to(DEVICE)
    table = _table(torch.float32, 2, seed=27).to(DEVICE)
    xt, tt = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    xr, tr = x.clone().requires_grad_(True), table.double().requires_grad_(True)
    g = torch.randn(x.shape[0], L * 2, generator=torch.Generator().manual_seed(28)).to(DEVICE)
    gx, gt = torch.autograd.grad(hash_grid_encode(xt, tt, backend="triton", **CFG), (xt, tt), g)
    rx, rt = torch.autograd.grad(hash_grid_encode_reference(xr, tr, **CFG), (xr, tr), g.double())
    torch.testing.assert_close(gt.double(), rt, **TOLERANCES["hash_grid_seg_table"])
    torch.testing.assert_close(gx, rx.float(), **TOLERANCES["hash_grid_dx"])


@needs_triton
@pytest.mark.parametrize("need", ["table", "both"])
@pytest.mark.parametrize("dx_separate", [True, False])
@pytest.mark.parametrize("segmented", [True, False])
def test_backward_launch_variants(segmented, dx_separate, need, seg_launch):
    """Every backward launch setting computes every requested gradient (a table-only backward must scatter the
    table gradient whatever bwd_dx_separate says)."""
    seg_launch(bwd_segmented=segmented, bwd_dx_separate=dx_separate)
    x = _coherent_points("mixed", seed=29).to(DEVICE)
    table = _table(torch.float32, 1, seed=30).to(DEVICE)
    xt, tt = x.clone().requires_grad_(need == "both"), table.clone().requires_grad_(True)
    xr, tr = x.clone().requires_grad_(need == "both"), table.double().requires_grad_(True)
    g = torch.randn(x.shape[0], L, generator=torch.Generator().manual_seed(31)).to(DEVICE)
    leaves = (tt, xt) if need == "both" else (tt,)
    got = torch.autograd.grad(hash_grid_encode(xt, tt, backend="triton", **CFG), leaves, g)
    want = torch.autograd.grad(
        hash_grid_encode_reference(xr, tr, **CFG), (tr, xr) if need == "both" else (tr,), g.double()
    )
    assert torch.count_nonzero(got[0]) > 0
    torch.testing.assert_close(got[0].double(), want[0], **TOLERANCES["hash_grid_seg_table"])
    if need == "both":
        torch.testing.assert_close(got[1], want[1].float(), **TOLERANCES["hash_grid_dx"])
