"""The diffusion noise schedule and its maths: alphas, timestep ranges and sampling, weights w(t), DreamTime,
BGT+ times, noising, eps/x0 conversion, CFG combination and DDIM steps. Pure torch functions.
"""

from __future__ import annotations

import math
import typing
from functools import lru_cache

import torch

from pgc_fast.config.schema import CfgForm, Weighting


# ----------------------------------------------------------------------------------------------- schedule
def alphas_cumprod(scheduler_config: dict, device: torch.device | str = "cpu") -> torch.Tensor:
    """abar_t for t = 0..T-1 from a diffusers scheduler config (computed in float64, returned float32 [T])."""
    n = int(scheduler_config.get("num_train_timesteps", 1000))
    b0, b1 = float(scheduler_config.get("beta_start", 0.00085)), float(scheduler_config.get("beta_end", 0.012))
    kind = scheduler_config.get("beta_schedule", "scaled_linear")
    if kind == "scaled_linear":
        betas = torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float64) ** 2
    elif kind == "linear":
        betas = torch.linspace(b0, b1, n, dtype=torch.float64)
    else:
        raise ValueError(f"alphas_cumprod(): beta_schedule must be scaled_linear|linear, got {kind!r}")
    return torch.cumprod(1.0 - betas, 0).to(device=device, dtype=torch.float32)


def t_bounds(t_range: tuple[float, float], num_train_timesteps: int = 1000) -> tuple[int, int]:
    """Integer [t_min, t_max] (inclusive) for a fractional range, as the original: int(1000*0.02)=20, 500."""
    lo, hi = t_range
    if not (0.0 <= lo <= hi <= 1.0):
        raise ValueError(f"t_bounds(): t_range must satisfy 0 <= lo <= hi <= 1, got {t_range}")
    t_min = int(num_train_timesteps * lo)
    t_max = min(int(num_train_timesteps * hi), num_train_timesteps - 1)
    return t_min, max(t_min, t_max)


def annealed_t_range(
    step: int, iters: int, start: tuple[float, float], end: tuple[float, float] | None
) -> tuple[float, float]:
    """Linear t-range annealing: ``start`` at step 1, ``end`` at step ``iters`` (``end=None``: constant)."""
    if end is None:
        return start
    r = min(max((step - 1) / max(iters, 1), 0.0), 1.0)
    return (start[0] + (end[0] - start[0]) * r, start[1] + (end[1] - start[1]) * r)


def sample_timesteps(
    batch: int, t_min: int, t_max: int, device: torch.device | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """t ~ U{t_min..t_max} independently per sample (int64 [B] on ``device``; no host sync)."""
    return torch.randint(t_min, t_max + 1, (batch,), device=device, generator=generator)


def sds_weight(abar_t: torch.Tensor, weighting: Weighting = "one_minus_alpha") -> torch.Tensor:
    """Per-sample SDS weight from abar_t ([B] float32). The original's ``weight_choice`` 0/1/2/else."""
    if weighting == "one_minus_alpha":
        return 1.0 - abar_t
    if weighting == "sqrt_alpha_one_minus_alpha":
        return abar_t.sqrt() * (1.0 - abar_t)
    if weighting == "inverse_one_minus_alpha":
        return 1.0 / (1.0 - abar_t)
    if weighting == "uniform":
        return torch.ones_like(abar_t)
    raise ValueError(f"sds_weight(): weighting must be one of {typing.get_args(Weighting)}, got {weighting!r}")


def add_noise(z: torch.Tensor, noise: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(abar_t) z + sqrt(1 - abar_t) noise; abar_t [B] broadcast over the other dims."""
    a = abar_t.view(-1, *([1] * (z.dim() - 1))).to(z.dtype)
    return a.sqrt() * z + (1 - a).sqrt() * noise


def eps_from_output(out: torch.Tensor, z_t: torch.Tensor, abar_t: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Convert a UNet output to an epsilon prediction (SD 2.1 768 is v-prediction: eps = sqrt(a) v + sqrt(1-a) z_t)."""
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        a = abar_t.view(-1, *([1] * (z_t.dim() - 1))).to(out.dtype)
        return a.sqrt() * out + (1 - a).sqrt() * z_t.to(out.dtype)
    raise ValueError(f"eps_from_output(): prediction_type must be epsilon|v_prediction, got {prediction_type!r}")


def cfg_combine(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float, convention: CfgForm = "pgc"
) -> torch.Tensor:
    """Classifier-free guidance. ``pgc``: eps_c + s (eps_c - eps_u) (the original SDS/BGT; = diffusers s+1);
    ``diffusers``: eps_u + s (eps_c - eps_u). Same formula as ``pgc_kernels.sds_grad`` (used for non-gradient
    uses such as the BGT+ denoising chain)."""
    if convention == "pgc":
        return eps_cond + scale * (eps_cond - eps_uncond)
    if convention == "diffusers":
        return eps_uncond + scale * (eps_cond - eps_uncond)
    raise ValueError(f"cfg_combine(): convention must be pgc|diffusers, got {convention!r}")


def predict_x0(z_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor) -> torch.Tensor:
    """x0 = (z_t - sqrt(1 - a) eps) / sqrt(a)."""
    a = abar_t.view(-1, *([1] * (z_t.dim() - 1))).to(z_t.dtype)
    return (z_t - (1 - a).sqrt() * eps) / a.sqrt()


def ddim_step(z_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, abar_next: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM step (eta = 0) from t to any earlier t_next: sqrt(a_n) x0 + sqrt(1 - a_n) eps."""
    x0 = predict_x0(z_t, eps, abar_t)
    a = abar_next.view(-1, *([1] * (z_t.dim() - 1))).to(z_t.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


# ----------------------------------------------------------------------------------------------- DreamTime
def dreamtime_weight(t: torch.Tensor) -> torch.Tensor:
    """DreamTime w*(t): 1 on [500, 800], Gaussian tails with sigma 300 above, 100 below."""
    t = t.double()
    hi = torch.exp(-((t - 800) ** 2) / (2 * 300.0**2))
    lo = torch.exp(-((t - 500) ** 2) / (2 * 100.0**2))
    return torch.where(t > 800, hi, torch.where(t < 500, lo, torch.ones_like(t)))


@lru_cache(maxsize=8)
def _dreamtime_cdf(max_t: int, min_t: int = 200) -> tuple[float, ...]:
    w = dreamtime_weight(torch.arange(min_t, max_t))
    p = w / w.sum()
    cdf = torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])  # P(t) = sum_{t' >= t} p(t'); P(min_t) = 1
    return tuple(cdf.tolist())


def dreamtime_t(step: int, iters: int, init_time: float = 0.681, min_t: int = 200) -> int:
    """Deterministic DreamTime timestep for a (1-based) training step: argmin_t |P(t) - (step-1)/iters| + 200.

    Host-side (no tensors on the device). With init_time 0.681: ratio 0 -> 680, .25 -> 605, .5 -> 528,
    .75 -> 450, .9 -> 385, 1 -> 200."""
    max_t = int(init_time * 1000)
    cdf = _dreamtime_cdf(max_t, min_t)
    ratio = (step - 1) / max(iters, 1)
    best = min(range(len(cdf)), key=lambda i: abs(cdf[i] - ratio))  # first index on ties, like argmin
    return best + min_t


# ----------------------------------------------------------------------------------------------- BGT+
def bgt_time(step: int, iters: int, init_time: float = 0.681, end_time: float = 0.25) -> float:
    """HiFA BGT+ noise level: init_time - (init_time - end) sqrt((step - 1) / iters) (0.681 -> 0.25)."""
    r = min(max((step - 1) / max(iters, 1), 0.0), 1.0)
    return init_time - (init_time - end_time) * math.sqrt(r)


def bgt_timesteps(t_frac: float, r: float = 0.25, num_train_timesteps: int = 1000) -> list[int]:
    """Timesteps of the BGT+ denoising chain from T = int(t 1000) to 0 in n = ceil(t / r) steps of r 1000.

    E.g. t = 0.681 -> [681, 431, 181, 0] (the original's list). The chain is walked with explicit
    DDIM steps between consecutive entries (the original's schedulers stepped to other timesteps, a bug of the
    original)."""
    T = min(int(t_frac * num_train_timesteps), num_train_timesteps - 1)
    n = max(1, math.ceil(t_frac / r))
    stride = int(round(r * num_train_timesteps))
    offset = math.ceil(T - (n - 1) * stride)
    ts = [int(round(i * stride)) + offset for i in reversed(range(n))]
    ts = [t for t in ts if t > 0]
    return ts + [0]


# ----------------------------------------------------------------------------------------------- SSD
def ssd_grad(h: torch.Tensor, eps_cond: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, ssd_m: int) -> torch.Tensor:
    """Stable Score Distillation (arXiv 2312.09305) with the projection fixed.

    h = w (eps_c - eps_u) (the classifier score, already weighted). Per sample b:
    r_b = <eps_c, eps>_b / ||eps||_b^2, eps~ = eps_c - r_b eps, E = (||h||_b / ||eps~||_b) eps~; the result is E
    where t_b <= M and h elsewhere. All reductions are per sample over (C, H, W); works for any batch size.
    Returns float32 with h's shape.
    """
    b = h.shape[0]
    ec, n, hf = eps_cond.float().reshape(b, -1), noise.float().reshape(b, -1), h.float().reshape(b, -1)
    r = (ec * n).sum(1, keepdim=True) / (n * n).sum(1, keepdim=True).clamp_min(1e-12)
    eps_t = ec - r * n
    e = eps_t * (hf.norm(dim=1, keepdim=True) / eps_t.norm(dim=1, keepdim=True).clamp_min(1e-12))
    use_e = t.view(b, 1) <= ssd_m
    return torch.where(use_e, e, hf).reshape(h.shape)
