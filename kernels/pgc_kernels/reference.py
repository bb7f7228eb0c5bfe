"""Pure-torch twins of every pgc_kernels op: same signatures, run anywhere (CPU included).

They are the CPU fallback (``backend="torch"``), the oracle the tests compare the Triton kernels
against, and the baseline the benchmarks time. They compute in float32 whatever the input dtype and
cast the result back, exactly like the kernels. ``backend`` is accepted (and ignored) so the twins
keep the public functions' signatures.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_pixel_clip_args, check_sds_grad_args
from ._types import PixelClipStats

_FLT_MAX = torch.finfo(torch.float32).max


def _threshold(tau: float, scale: float | torch.Tensor | None, device: torch.device) -> torch.Tensor | float:
    """τ·scale: a python float, or a 0-d float32 device tensor when scale is a tensor (no host sync)."""
    if scale is None:
        return tau
    if isinstance(scale, torch.Tensor):
        return scale.detach().reshape(()).to(torch.float32) * tau
    return tau * scale


def _pixel_norm(g: torch.Tensor, norm: str, d: int) -> torch.Tensor:
    """Per-pixel norm over the channel axis ``d`` (keepdim): max_c |g_c| for "linf", sqrt(Σ_c g_c²) for "l2"."""
    if norm == "linf":
        return g.abs().amax(dim=d, keepdim=True)
    return (g * g).sum(dim=d, keepdim=True).sqrt()


def pixel_clip_reference(
    grad: torch.Tensor,
    tau: float,
    *,
    variant: str = "clip",
    norm: str = "linf",
    channel_dim: int = 1,
    scale: float | torch.Tensor | None = None,
    backend: str = "torch",
    return_stats: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, PixelClipStats]:
    """Pixel-wise gradient clipping (PGC) in plain torch. See :func:`pgc_kernels.pixel_clip` for the contract.

    ``grad``: float32/float16/bfloat16, any device, rank ≥ 2, 1..16 channels at ``channel_dim``.
    Returns a tensor of ``grad``'s dtype, shape and device (and a :class:`PixelClipStats` when
    ``return_stats``). With τ' = τ·scale and n_p the pixel norm (``norm``) over channels:

    - ``"clip"``:       g_p · min(1, τ'/n_p)          (original type 0 with norm="linf")
    - ``"value"``:      clamp(g, −τ', τ')             (type 1)
    - ``"global"``:     g · τ'/max|g|, 0 if max|g|=0  (type 2)
    - ``"sigmoid"``:    (sigmoid(g) − 0.5)·τ'         (type 3)
    - ``"soft"``:       τ'·g/(|g| + τ')               (type 4, element-wise)
    - ``"soft_pixel"``: τ'·g_p/(n_p + τ')             (type 5)

    Non-finite input is never hidden (so GradScaler still sees overflow and skips the step): for the
    pixel-wise variants ("clip", "soft_pixel") every channel of a pixel holding NaN/±inf becomes NaN; for
    the element-wise ones ("value", "sigmoid", "soft") each NaN/±inf element becomes NaN; for "global" one
    NaN/±inf anywhere makes the whole output NaN.
    """
    op = "pixel_clip_reference"
    tau, d, scale = check_pixel_clip_args(op, grad, tau, variant, norm, channel_dim, scale, backend, return_stats)
    g = grad.detach().to(torch.float32)
    thr = _threshold(tau, scale, g.device)
    nan = torch.full((), float("nan"), dtype=torch.float32, device=g.device)  # no host copy: capturable
    finite = torch.isfinite(g)
    pix_finite = finite.all(dim=d, keepdim=True)
    n = _pixel_norm(g, norm, d)

    if variant == "clip":
        # where(n > τ', τ'/n, 1): n = 0 never divides, so zero pixels stay zero.
        f = torch.where(n > thr, thr / torch.where(n > thr, n, torch.ones_like(n)), torch.ones_like(n))
        out = torch.where(pix_finite, g * f, nan)
    elif variant == "value":
        out = torch.where(finite, torch.minimum(torch.maximum(g, -torch.as_tensor(thr)), torch.as_tensor(thr)), nan)
    elif variant == "global":
        m = g.abs().amax() if g.numel() else torch.zeros((), device=g.device)
        all_finite = finite.all()
        f = torch.where(m > 0, thr / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))
        out = torch.where(all_finite, g * f, nan)
    elif variant == "sigmoid":
        out = torch.where(finite, (torch.sigmoid(g) - 0.5) * thr, nan)
    elif variant == "soft":
        out = torch.where(finite, g * (thr / (g.abs() + thr)), nan)
    else:  # soft_pixel
        out = torch.where(pix_finite, g * (thr / (n + thr)), nan)
    out = out.to(grad.dtype)
    if not return_stats:
        return out

    n_stat = torch.where(pix_finite, n, torch.full_like(n, float("inf")))
    if n_stat.numel() == 0:
        z = torch.zeros((), dtype=torch.float32, device=g.device)
        return out, PixelClipStats(z, z.clone(), z.clone())
    frac = (n_stat > thr).to(torch.float32).mean()
    return out, PixelClipStats(frac, n_stat.amax(), n_stat.mean())


def sds_grad_reference(
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | float,
    guidance_scale: float,
    *,
    convention: str = "pgc",
    cfg_rescale: float = 0.0,
    clamp: float | None = None,
    clip: float | None = None,
    backend: str = "torch",
) -> torch.Tensor:
    """Score-distillation gradient w.r.t. the latents, in plain torch. See :func:`pgc_kernels.sds_grad`.

    ``eps_cond``, ``eps_uncond``, ``target``: same shape [B, C, ...] (C = 1..16), float32/16/bf16, one
    device. ``weight``: [B] tensor or float. Returns a contiguous float32 tensor of that shape:

    1. ε̂ = ε_c + s(ε_c − ε_u) (``"pgc"``, the original's) or ε_u + s(ε_c − ε_u) (``"diffusers"``)
    2. if φ = ``cfg_rescale`` > 0: ε̂ ← (φ·std(ε_c)/std(ε̂) + 1 − φ)·ε̂, std per sample over all
       non-batch dims, unbiased (torch's default, as the original); the factor is 1 where std(ε̂) = 0
    3. g = weight[b]·(ε̂ − target), then NaN → 0 and ±inf → ±float32 max (torch.nan_to_num)
    4. if ``clamp``: g = clamp(g, −clamp, clamp) (the original's grad_clip_latent)
    5. if ``clip`` = τ: per latent pixel g_p ← g_p·min(1, τ/max_c |g_{p,c}|)
    """
    op = "sds_grad_reference"
    w, s, phi, clamp, clip = check_sds_grad_args(
        op, eps_cond, eps_uncond, target, weight, guidance_scale, convention, cfg_rescale, clamp, clip, backend
    )
    ec = eps_cond.detach().to(torch.float32)
    eu = eps_uncond.detach().to(torch.float32)
    tg = target.detach().to(torch.float32)
    bshape = (-1,) + (1,) * (ec.dim() - 1)
    diff = ec - eu
    eh = ec + s * diff if convention == "pgc" else eu + s * diff
    if phi > 0:
        std_c = ec.flatten(1).std(dim=1)
        std_h = eh.flatten(1).std(dim=1)
        ok = std_h > 0
        f = torch.where(
            ok, phi * std_c / torch.where(ok, std_h, torch.ones_like(std_h)) + (1.0 - phi), torch.ones_like(std_h)
        )
        eh = eh * f.reshape(bshape)
    assert isinstance(w, torch.Tensor)  # check_sds_grad_args(weight_tensor=True) returns a tensor
    g = w.reshape(bshape) * (eh - tg)
    g = torch.nan_to_num(g, nan=0.0, posinf=_FLT_MAX, neginf=-_FLT_MAX)
    if clamp is not None:
        g = g.clamp(-clamp, clamp)
    if clip is not None:
        n = g.abs().amax(dim=1, keepdim=True)
        g = g * torch.where(n > clip, clip / torch.where(n > clip, n, torch.ones_like(n)), torch.ones_like(n))
    return g.contiguous()


# --- chunked_attention -------------------------------------------------------------------------------
def chunked_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float | None = None,
    chunk_size: int | None = None,
    backend: str = "torch",
) -> torch.Tensor:
    """Twin of :func:`pgc_kernels.chunked_attention`: ``softmax(scale · q kᵀ) v`` by PyTorch SDPA with the
    math backend (materialises the full [B,H,N,M] matrix). q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv], any
    device/dtype; returns [B,H,N,Dv]. ``chunk_size``/``backend`` are accepted for signature parity and ignored."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    s = float(scale) if scale is not None else q.shape[-1] ** -0.5
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, scale=s)


# --- group_norm_silu ---------------------------------------------------------------------------------
def group_norm_silu_reference(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    silu: bool = True,
    backend: str = "torch",
) -> torch.Tensor:
    """Twin of :func:`pgc_kernels.group_norm_silu`: ``F.silu(F.group_norm(x, …))`` (``silu=False``: GroupNorm
    alone), as diffusers' ResnetBlock2D computes it. x [B,C,*spatial] any float dtype/device; weight/bias
    [C] cast to x's dtype; returns x's shape and dtype. ``backend`` is accepted for signature parity."""
    import torch.nn.functional as F

    w = weight.to(x.dtype) if weight is not None else None
    b = bias.to(x.dtype) if bias is not None else None
    y = F.group_norm(x, num_groups, w, b, eps)
    return F.silu(y) if silu else y


# ------------------------------------------------------------------------------------------------------------------
# hash_grid_encode (owner: hashgrid; keep this block contiguous). Formula: see pgc_kernels/hash_grid_encode.py.
# ------------------------------------------------------------------------------------------------------------------
_HASH_GRID_INTERPOLATIONS = ("linear", "smoothstep")
# Instant-NGP's spatial-hash primes for x, y, z (torch-ngp gridencoder's fast_hash).
_HASH_GRID_PRIMES = (1, 2654435761, 805459861)


def _hash_grid_levels(
    num_levels: int, table_size: int, base: float, finest: float
) -> tuple[list[float], list[int], int]:
    """Per-level (scale: list[float32 value], res: list[int], num_dense: int), shared by the kernel and the twin.

    scale_l = fp32(base · 2^(l·b) − 1), b = log2(finest/base)/(L−1); res_l = ceil(scale_l) + 1 (torch-ngp,
    align_corners=False: a level has res_l + 1 vertices per axis). Resolutions grow with l, so the densely indexed
    levels ((res_l+1)^3 <= T) are a prefix of length num_dense.
    """
    b = math.log2(finest / base) / (num_levels - 1) if num_levels > 1 else 0.0
    raw = [base * 2.0 ** (lvl * b) - 1.0 for lvl in range(num_levels)]
    scales: list[float] = torch.tensor(raw, dtype=torch.float32).tolist()  # the float32-rounded values, as floats
    res = [int(math.ceil(s)) + 1 for s in scales]
    num_dense = sum(1 for r in res if (r + 1) ** 3 <= table_size)
    return scales, res, num_dense


def _hash_grid_check(
    op: str,
    x: object,
    table: object,
    base_resolution: float,
    finest_resolution: float,
    interpolation: str,
    *,
    x_dtypes: tuple[torch.dtype, ...],
    table_dtypes: tuple[torch.dtype, ...],
) -> None:
    def names(dtypes: tuple[torch.dtype, ...]) -> str:
        return "|".join(str(d).replace("torch.", "") for d in dtypes)

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}(): x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(table, torch.Tensor):
        raise TypeError(f"{op}(): table must be a torch.Tensor, got {type(table).__name__}")
    if x.dtype not in x_dtypes or x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(
            f"{op}(): x must be a {names(x_dtypes)} tensor [N, 3], "
            f"got {str(x.dtype).replace('torch.', '')} {list(x.shape)}"
        )
    if table.dtype not in table_dtypes or table.dim() != 3 or min(table.shape) < 1:
        raise ValueError(
            f"{op}(): table must be a {names(table_dtypes)} tensor [L, T, F] with L, T, F >= 1, "
            f"got {str(table.dtype).replace('torch.', '')} {list(table.shape)}"
        )
    if table.shape[1] >= 2**31:
        raise ValueError(f"{op}(): table must have T < 2^31 rows per level, got T={table.shape[1]}")
    if x.device != table.device:
        raise ValueError(f"{op}(): x and table must be on one device, got x on {x.device}, table on {table.device}")
    for name, v in (("base_resolution", base_resolution), ("finest_resolution", finest_resolution)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1:
            raise ValueError(f"{op}(): {name} must be a finite number >= 1, got {v!r}")
    if finest_resolution < base_resolution:
        raise ValueError(
            f"{op}(): finest_resolution must be >= base_resolution ({base_resolution}), got {finest_resolution}"
        )
    if finest_resolution > 2**24:
        # Grid coordinates must stay exact in float32 and in the int32 vertex arithmetic.
        raise ValueError(f"{op}(): finest_resolution must be <= 2^24, got {finest_resolution}")
    if interpolation not in _HASH_GRID_INTERPOLATIONS:
        raise ValueError(f"{op}(): interpolation must be one of {_HASH_GRID_INTERPOLATIONS}, got {interpolation!r}")


def hash_grid_encode_reference(
    x: torch.Tensor,  # [N, 3]
    table: torch.Tensor,  # [L, T, F]
    *,
    base_resolution: float = 16,
    finest_resolution: float = 4096,
    interpolation: str = "linear",
) -> torch.Tensor:
    """Pure-torch twin of :func:`pgc_kernels.hash_grid_encode` (same maths, same float32 rounding steps).

    Args:
        x: float32 | float64 [N, 3] points, clamped to [0, 1]^3; any device.
        table: float16 | bfloat16 | float32 | float64 [L, T, F], on x's device.
        base_resolution, finest_resolution, interpolation: as :func:`pgc_kernels.hash_grid_encode`.

    Returns:
        [N, L·F] of the table's dtype. Accumulates in float64 if x or table is float64, else float32.
        Differentiable to any order through autograd (w.r.t. x and table); gradients w.r.t. x are
        one-sided at cell faces (floor), as in the kernel. On the CPU the gradients are bitwise repeatable whatever
        the thread count (rows are gathered by ``index_select``, whose backward ``index_add_`` sums in index order).
    """
    op = "hash_grid_encode_reference"
    _hash_grid_check(
        op,
        x,
        table,
        base_resolution,
        finest_resolution,
        interpolation,
        x_dtypes=(torch.float32, torch.float64),
        table_dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64),
    )
    num_levels, table_size, feat = table.shape
    cdt = torch.float64 if torch.float64 in (x.dtype, table.dtype) else torch.float32
    scales, res, num_dense = _hash_grid_levels(num_levels, table_size, float(base_resolution), float(finest_resolution))
    xd = x.to(cdt)
    # Clamp with an explicit gradient convention (torch.clamp's differs between versions): the gradient passes
    # where 0 <= x <= 1, ends included, and is zero where the coordinate was clamped.
    xc = torch.where((xd >= 0.0) & (xd <= 1.0), xd, xd.detach().clamp(0.0, 1.0))
    mask32 = 0xFFFFFFFF
    outs = []
    for lvl in range(num_levels):
        pos = xc * scales[lvl] + 0.5  # [N, 3]; scales[lvl] is float32-exact, two roundings as in the kernel
        fl = torch.floor(pos)
        t = pos - fl  # gradient w.r.t. x flows through t only (floor is piecewise constant)
        g = fl.detach().to(torch.int64).clamp(0, res[lvl] - 1)  # the clamp only matters for NaN input
        s = t if interpolation == "linear" else t * t * (3.0 - 2.0 * t)
        stride = res[lvl] + 1
        # Cast the level before gathering, so autograd accumulates the table gradient in cdt (as the kernel does
        # in float32) and rounds it to the table dtype once.
        table_l = table[lvl].to(cdt)  # [T, F]
        acc: torch.Tensor | None = None
        for c in range(8):
            cx, cy, cz = c & 1, (c >> 1) & 1, (c >> 2) & 1
            vx, vy, vz = g[:, 0] + cx, g[:, 1] + cy, g[:, 2] + cz
            if lvl < num_dense:
                idx = vx + vy * stride + vz * (stride * stride)
            else:
                idx = (vx * _HASH_GRID_PRIMES[0]) & mask32
                idx = idx ^ ((vy * _HASH_GRID_PRIMES[1]) & mask32) ^ ((vz * _HASH_GRID_PRIMES[2]) & mask32)
                idx = idx % table_size
            wx = s[:, 0] if cx else 1.0 - s[:, 0]
            wy = s[:, 1] if cy else 1.0 - s[:, 1]
            wz = s[:, 2] if cz else 1.0 - s[:, 2]
            w = wx * wy * wz
            # index_select, not table_l[idx]: its backward is index_add_, which torch runs in a fixed order on the
            # CPU; the backward of table_l[idx] (index_put_ with accumulate) adds with float atomics from several
            # threads there, so the table gradient changed from run to run (issue 22).
            term = w[:, None] * table_l.index_select(0, idx)  # [N, F]
            acc = term if acc is None else acc + term
        assert acc is not None
        outs.append(acc)
    return torch.cat(outs, dim=1).to(table.dtype)


def bias_add_reference(
    x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None = None, *, backend: str = "torch"
) -> torch.Tensor:
    """Twin of :func:`pgc_kernels.bias_add`: ``x + bias[c] (+ residual)`` in float32, rounded once to x.dtype
    (x's memory layout is kept)."""
    shape = (1, -1, *([1] * (x.dim() - 2)))
    y = x.float() + bias.float().view(shape)
    if residual is not None:
        y = y + residual.float()
    return y.to(x.dtype)
