"""Image-based lighting for PBR materials: an HDR environment as a cube map, prefiltered for the split-sum
approximation, the split-sum FG lookup table, and the default environment pgc-fast generates.

Split sum (Karis, "Real Shading in Unreal Engine 4", SIGGRAPH 2013 course notes, eq. 4-6): the specular
integral ``∫ L(l) f(l, v) (n·l) dl`` is approximated by the product of

* the environment prefiltered with the GGX lobe around the reflection direction, assuming n = v = r — one cube map
  per roughness, as nvdiffrec's render/light.py ``build_mips`` lays them out: the base (face size R) and its 2×2
  averages down to 16², level i < L−1 filtered with roughness 0.08 + i/(L−2)·0.42, the last with roughness 1, and
  a lookup between levels by :func:`roughness_to_lod` (nvdiffrec's ``get_mip``); and
* ``F0·A + B``, the GGX BRDF with Schlick's Fresnel integrated over the hemisphere for (n·v, roughness): the FG
  lookup table :func:`fg_lut`, computed here (height-correlated Smith masking, Heitz 2014, "Understanding the
  Masking-Shadowing Function in Microfacet-Based BRDFs", JCGT 3(2), eq. 99; α = roughness² as glTF and
  nvdiffrec) and cached on disk, instead of the original's shipped ``bsdf_256_256.bin``.

The diffuse term is the irradiance cube map ``E(n)/π = ∫ L(l) max(n·l, 0) dl / π`` at 16², summed over every
texel with its exact solid angle (nvdiffrec's ``diffuse_cubemap``).

Prefiltering uses filtered importance sampling (Colbert & Křivánek, "GPU-Based Importance Sampling", GPU Gems 3
ch. 20): K Hammersley samples of the GGX lobe per output texel, each read from the mip level of the unfiltered
environment whose texel solid angle matches the sample's share of the lobe, weighted by n·l (Karis's estimator).
nvdiffrec instead sums every texel inside the lobe's 99 % cone with a CUDA kernel; this is the same integral
estimated with fewer reads, through the backend's cube lookups (nvdiffrast on CUDA, the torch twin elsewhere), so
it runs on both backends and is differentiable for ``--learn_light``.

The default environment (:func:`default_environment`) is generated, not shipped: a sky whose colour runs from a
pale horizon to a blue zenith, a warm grey ground, and a sun of 2° angular radius at 45° elevation, up-left of
the default front view (the +Z side), with a soft halo. At the original's ×2 scale a sunlit upward-facing
surface of base colour 0.8 reads about 0.8 after sRGB encoding, its shadowed side about 0.5.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pgc_fast.render.cubemap import (
    cube_directions,
    cube_texture_torch,
    cubemap_to_latlong,
    latlong_directions,
    latlong_to_cubemap,
    texel_solid_angles,
)

__all__ = [
    "EnvironmentLight",
    "default_environment",
    "fg_lut",
    "ggx_ndf",
    "hammersley",
    "load_environment",
    "prefilter_specular",
    "roughness_to_lod",
    "smith_g2",
]

LIGHT_MIN_RES = 16
"""Face size of the coarsest specular level and of the irradiance map (nvdiffrec's)."""
MIN_ROUGHNESS, MAX_ROUGHNESS = 0.08, 0.5
"""Roughness of the first and of the last-but-one specular level (nvdiffrec's)."""
PREFILTER_SAMPLES = 64
"""Sets the GGX samples per texel of the prefiltered levels (:func:`level_samples`)."""
LOD_BIAS = 0.0
"""Added to the sample's pyramid level (Colbert & Křivánek add 1 against aliasing; it blurs a small bright
source such as the sun over 4x its footprint and lowers the lobe's peak, 15 % at roughness 1 here)."""
FG_LUT_SIZE, FG_LUT_SAMPLES = 128, 1024
"""The FG table is FG_LUT_SIZE² over (n·v, roughness), each entry the mean of FG_LUT_SAMPLES GGX samples (the
table is smooth: bilinear lookups in 128² differ from 256² by < 1e-3)."""

Sampler = Callable[..., torch.Tensor]
"""``sampler(tex, dirs, mips=None, lod=None)``: a backend's ``cube_texture`` (or :func:`cube_texture_torch`)."""


# ------------------------------------------------------------------------------------------- microfacet maths
def ggx_ndf(alpha: torch.Tensor, cos_h: torch.Tensor) -> torch.Tensor:
    """GGX / Trowbridge-Reitz normal distribution D(h) (Walter et al. 2007, eq. 33) for α = roughness²."""
    a2 = alpha * alpha
    c = cos_h.clamp(0, 1)
    d = (c * a2 - c) * c + 1
    return a2 / (math.pi * d * d)


def smith_g2(alpha: torch.Tensor, cos_v: torch.Tensor, cos_l: torch.Tensor) -> torch.Tensor:
    """Height-correlated Smith masking-shadowing G2 = 1 / (1 + Λ(v) + Λ(l)) for GGX (Heitz 2014, eq. 99)."""

    def lam(c: torch.Tensor) -> torch.Tensor:
        c = c.clamp(1e-7, 1)
        tan2 = (1 - c * c) / (c * c)
        return (torch.sqrt(1 + alpha * alpha * tan2) - 1) / 2

    return 1 / (1 + lam(cos_v) + lam(cos_l))


def hammersley(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The n-point Hammersley set in [0,1)²: (i/n, radical inverse base 2 of i), float [n, 2]."""
    i = torch.arange(n, dtype=torch.int64)
    bits = torch.zeros(n, dtype=torch.float64)
    for b in range(32):
        bits += ((i >> b) & 1).double() * 2.0 ** (-(b + 1))
    return torch.stack([(i.double() + 0.5) / n, bits], dim=-1).to(dtype)


def _ggx_half_vectors(alpha: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """Half vectors h (local frame, z = normal) for uniform samples xi [..., 2] of the GGX D(h)(n·h) density."""
    a2 = alpha * alpha
    cos2 = (1 - xi[..., 0]) / (1 + (a2 - 1) * xi[..., 0])
    cos = cos2.clamp(0, 1).sqrt()
    sin = (1 - cos2).clamp(0, 1).sqrt()
    phi = 2 * math.pi * xi[..., 1]
    return torch.stack([sin * torch.cos(phi), sin * torch.sin(phi), cos], dim=-1)


def orthonormal_basis(n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit vectors completing the unit n [..., 3] to a right-handed frame (Duff et al. 2017, "Building an
    Orthonormal Basis, Revisited", JCGT 6(1)); continuous everywhere but at n = −Z."""
    x, y, z = n.unbind(-1)
    sign = torch.where(z >= 0, 1.0, -1.0).to(n.dtype)
    a = -1 / (sign + z)
    b = x * y * a
    t1 = torch.stack([1 + sign * x * x * a, sign * b, -sign * x], dim=-1)
    t2 = torch.stack([b, sign + y * y * a, -y], dim=-1)
    return t1, t2


# --------------------------------------------------------------------------------------------- the FG table
def _fg_rows(rough: torch.Tensor, nv: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """(A, B) for every (roughness row, n·v column) by importance sampling h ~ D(h)(n·h): [len(rough), len(nv), 2]
    with FG = ∫ f/F · (n·l) · (F0·(1 − Fc) + Fc) dl and Fc = (1 − v·h)⁵, as A·F0 + B."""
    alpha = (rough * rough)[:, None, None]
    h = _ggx_half_vectors(alpha, xi[None, None])  # [r, 1, K, 3]
    v = torch.stack([(1 - nv * nv).clamp(0).sqrt(), torch.zeros_like(nv), nv], dim=-1)[None, :, None]  # [1,n,1,3]
    vh = (v * h).sum(-1)
    nl = 2 * vh * h[..., 2] - v[..., 2]
    nh = h[..., 2].clamp_min(1e-12)
    g_vis = torch.where(nl > 0, smith_g2(alpha, v[..., 2], nl) * vh / (nh * v[..., 2]), torch.zeros_like(nl))
    fc = (1 - vh).clamp(0, 1) ** 5
    return torch.stack([((1 - fc) * g_vis).mean(-1), (fc * g_vis).mean(-1)], dim=-1)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pgc-fast"


@functools.lru_cache(maxsize=4)
def _fg_lut_cpu(size: int, samples: int) -> torch.Tensor:
    key = hashlib.sha1(f"fg-lut v1 {size} {samples} height-correlated-smith".encode()).hexdigest()[:12]
    path = _cache_dir() / f"fg_lut_{size}_{samples}_{key}.npy"
    try:
        arr = np.load(path, allow_pickle=False)
        if arr.shape == (size, size, 2) and arr.dtype == np.float32 and np.isfinite(arr).all():
            return torch.from_numpy(arr)
    except (OSError, ValueError):
        pass  # absent or damaged: compute (below) and rewrite
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    xi = hammersley(samples)
    lut = torch.cat([_fg_rows(c[i : i + 8], c, xi) for i in range(0, size, 8)]).float()
    try:  # the cache is an optimisation: an unwritable home only costs the recomputation next time
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, lut.numpy())
        os.replace(tmp, path)
    except OSError:
        pass
    return lut


def fg_lut(size: int = FG_LUT_SIZE, samples: int = FG_LUT_SAMPLES, device: torch.device | str = "cpu") -> torch.Tensor:
    """The split-sum FG table: float32 [size (roughness rows), size (n·v columns), 2 (A, B)] at texel centres,
    so a texture lookup at uv = (n·v, roughness) reads it. Computed once per machine (~2 s on a CPU core) and
    cached under $XDG_CACHE_HOME/pgc-fast (or ~/.cache/pgc-fast), and in memory."""
    return _fg_lut_cpu(int(size), int(samples)).to(device)


# ------------------------------------------------------------------------------------------ the environment
def default_environment(height: int = 512) -> np.ndarray:
    """The default environment, generated (module docstring): float32 [H, 2H, 3] linear radiance, lat-long."""
    d = latlong_directions(height).double()
    up = d[..., 1]
    zenith = torch.tensor([0.10, 0.15, 0.26], dtype=torch.float64)
    horizon = torch.tensor([0.26, 0.27, 0.28], dtype=torch.float64)
    ground = torch.tensor([0.10, 0.09, 0.08], dtype=torch.float64)
    t = up.clamp(0, 1).sqrt()[..., None]
    sky = horizon + (zenith - horizon) * t
    blend = ((up + 0.03) / 0.06).clamp(0, 1)[..., None]  # a soft horizon line, 3.4° wide
    env = ground + (sky - ground) * blend
    sun_dir = F.normalize(torch.tensor([-0.5, 1.0, 0.5], dtype=torch.float64), dim=0)
    cos = (d * sun_dir).sum(-1).clamp(-1, 1)
    ang = torch.acos(cos)
    radius = math.radians(2.0)
    disk = ((radius + math.radians(0.4) - ang) / math.radians(0.8)).clamp(0, 1)  # antialiased edge
    sun = torch.tensor([1.0, 0.95, 0.85], dtype=torch.float64)
    env = env + sun * (200.0 * disk + 0.6 * torch.exp(-((ang / math.radians(12.0)) ** 2)))[..., None]
    return env.float().numpy()


def load_environment(path: str | os.PathLike | None, height: int = 512) -> np.ndarray:
    """The lat-long radiance of ``path`` (a 2:1 Radiance .hdr or OpenEXR .exr), or :func:`default_environment`
    when None. A file that is not a 2:1 lat-long map is a ValueError naming it."""
    if path is None:
        return default_environment(height)
    from pgc_fast.mesh import read_hdr

    img = read_hdr(path)
    h, w = img.shape[:2]
    if w != 2 * h:
        raise ValueError(
            f"load_environment(): {os.fspath(path)}: an environment map must be a 2:1 lat-long (equirectangular) "
            f"image, got {w}x{h}"
        )
    return img


def roughness_to_lod(roughness: torch.Tensor, levels: int) -> torch.Tensor:
    """The (fractional) specular level of a roughness: linear from MIN_ROUGHNESS (level 0) to MAX_ROUGHNESS
    (level L−2), then to 1 (level L−1) (nvdiffrec's ``get_mip``)."""
    r = roughness
    low = (r.clamp(MIN_ROUGHNESS, MAX_ROUGHNESS) - MIN_ROUGHNESS) / (MAX_ROUGHNESS - MIN_ROUGHNESS) * (levels - 2)
    high = (r.clamp(MAX_ROUGHNESS, 1.0) - MAX_ROUGHNESS) / (1.0 - MAX_ROUGHNESS) + levels - 2
    return torch.where(r < MAX_ROUGHNESS, low, high)


def level_roughness(levels: int) -> list[float]:
    """The roughness each specular level is filtered with (see :func:`roughness_to_lod`)."""
    return [MIN_ROUGHNESS + i / (levels - 2) * (MAX_ROUGHNESS - MIN_ROUGHNESS) for i in range(levels - 1)] + [1.0]


def level_samples(samples: int, level: int) -> int:
    """GGX samples per texel of specular level ``level``: ``samples``/2 for the first, ×4 per level after (each
    level has a quarter of the texels, so every level costs the same), at most 8·``samples``. Wide lobes need
    the samples: with few, each is read from a coarse pyramid level whose blur biases the result where the
    environment changes fast (5 % at a horizon with 64 samples at roughness 1, 1 % with 512)."""
    return max(1, min(8 * samples, (samples // 2) << (2 * level)))


def _pyramid(base: torch.Tensor, min_res: int = 1) -> list[torch.Tensor]:
    """base [6, R, R, C] and its 2×2 averages down to min_res."""
    out = [base]
    while out[-1].shape[1] > min_res:
        t = out[-1].permute(0, 3, 1, 2)
        out.append(F.avg_pool2d(t, 2).permute(0, 2, 3, 1).contiguous())
    return out


def prefilter_specular(
    source: list[torch.Tensor],
    res: int,
    roughness: float,
    sampler: Sampler = cube_texture_torch,
    samples: int = PREFILTER_SAMPLES,
    chunk: int = 8,
) -> torch.Tensor:
    """The environment ``source`` (an unfiltered pyramid: base [6, R0, R0, C] and its 2×2 averages) filtered with
    the GGX lobe of ``roughness`` around each texel direction of a [6, res, res] cube (n = v = r): Karis's
    estimator ``Σ L(l_k)(n·l_k) / Σ (n·l_k)`` over Hammersley samples of D(h)(n·h), each read at the pyramid level
    of the sample's solid angle (module docstring). Returns [6, res, res, C]."""
    dev, dt = source[0].device, source[0].dtype
    n = cube_directions(res, dev).reshape(-1, 3)
    t1, t2 = orthonormal_basis(n)
    alpha = torch.tensor(max(roughness, 1e-4) ** 2, dtype=dt, device=dev)
    xi = hammersley(samples, dt).to(dev)
    texel_sa = 4 * math.pi / (6 * source[0].shape[1] ** 2)
    acc = torch.zeros(n.shape[0], source[0].shape[-1], dtype=dt, device=dev)
    wsum = torch.zeros(n.shape[0], 1, dtype=dt, device=dev)
    for k in range(0, samples, chunk):
        h = _ggx_half_vectors(alpha, xi[k : k + chunk])  # [c, 3]
        hw = t1[:, None] * h[None, :, 0:1] + t2[:, None] * h[None, :, 1:2] + n[:, None] * h[None, :, 2:3]
        nh = h[:, 2][None].expand(n.shape[0], -1)
        l = 2 * nh[..., None] * hw - n[:, None]
        nl = (2 * nh * nh - 1).clamp_min(0)
        pdf = ggx_ndf(alpha, nh) / 4  # D(h)(n·h)/(4 v·h) with v = n
        lod = 0.5 * torch.log2(1 / (samples * pdf.clamp_min(1e-12) * texel_sa)) + LOD_BIAS
        lod = lod.clamp(0, len(source) - 1)
        val = sampler(source[0], l.reshape(1, 1, -1, 3), mips=source[1:], lod=lod.reshape(1, 1, -1))
        acc = acc + (val.reshape(n.shape[0], -1, val.shape[-1]) * nl[..., None]).sum(1)
        wsum = wsum + nl.sum(1, keepdim=True)
    return (acc / wsum.clamp_min(1e-12)).reshape(6, res, res, -1)


def irradiance(cube: torch.Tensor, chunk: int = 1 << 12) -> torch.Tensor:
    """``∫ L(l) max(n·l, 0) dl / π`` for every texel direction n of cube [6, R, R, C], summed over every texel l
    with its solid angle (exact up to the texel sampling; nvdiffrec's ``diffuse_cubemap``). [6, R, R, C]."""
    R, C = cube.shape[1], cube.shape[-1]
    d = cube_directions(R, cube.device).reshape(-1, 3).to(cube.dtype)
    w = texel_solid_angles(R, cube.device).to(cube.dtype).expand(6, R, R).reshape(-1, 1)
    rad = cube.reshape(-1, C) * w / math.pi
    out = [(d[i : i + chunk] @ d.T).clamp_min(0) @ rad for i in range(0, d.shape[0], chunk)]
    return torch.cat(out).reshape(6, R, R, C)


class EnvironmentLight(nn.Module):
    """An HDR environment as a cube map ``base`` [6, R, R, 3] (linear radiance, already scaled), with its split-sum
    prefiltered levels built on demand (:meth:`build`).

    ``learnable``: ``base`` is a Parameter and the levels are rebuilt, differentiably, whenever it changed or
    gradients are on; otherwise it is a non-persistent buffer (a checkpoint does not carry the environment: the
    configuration names it) and the levels are built once.
    """

    def __init__(self, base: torch.Tensor, learnable: bool = False, samples: int = PREFILTER_SAMPLES) -> None:
        super().__init__()
        R = base.shape[1]
        if base.dim() != 4 or base.shape[0] != 6 or base.shape[2] != R or R < 4 * LIGHT_MIN_RES or R & (R - 1):
            raise ValueError(
                f"EnvironmentLight(): base must be [6,R,R,3] with R a power of two >= {4 * LIGHT_MIN_RES}, got "
                f"{list(base.shape)}"
            )
        self.learnable = bool(learnable)
        self.samples = int(samples)
        if self.learnable:
            self.base = nn.Parameter(base.float().clone())
        else:
            self.register_buffer("base", base.float().clone(), persistent=False)
        self.specular: list[torch.Tensor] = []
        self.diffuse_map: torch.Tensor | None = None
        self._built_key: Any = None
        self._lut: torch.Tensor | None = None

    @classmethod
    def from_file(
        cls, path: str | os.PathLike | None, resolution: int = 512, scale: float = 2.0, **kw: Any
    ) -> EnvironmentLight:
        """:func:`load_environment` (None = the default sky) × ``scale``, resampled to a cube of face size
        ``resolution``."""
        img = torch.from_numpy(np.ascontiguousarray(load_environment(path, max(resolution, 64))))
        return cls(latlong_to_cubemap(img * float(scale), resolution), **kw)

    @property
    def levels(self) -> int:
        return int(math.log2(self.base.shape[1] // LIGHT_MIN_RES)) + 1

    def build(self, sampler: Sampler = cube_texture_torch) -> None:
        """Prefilter: the specular levels (nvdiffrec's layout, module docstring) and the irradiance map."""
        pyr = _pyramid(self.base)
        rough = level_roughness(self.levels)
        self.specular = [
            prefilter_specular(pyr, pyr[i].shape[1], r, sampler, level_samples(self.samples, i))
            for i, r in enumerate(rough)
        ]
        self.diffuse_map = irradiance(pyr[self.levels - 1])

    def ensure_built(self, sampler: Sampler = cube_texture_torch) -> None:
        """Build when never built, when ``base`` changed (an optimiser step) or moved, or when a learnable light
        needs a graph for this step's backward. A frozen light's levels are cached on disk (next to the FG
        table), keyed by the environment's contents: a CPU run builds a given environment once per machine."""
        key = (self.base.device, self.base._version, self.base.data_ptr())
        grad = self.learnable and torch.is_grad_enabled()
        if not (grad or key != self._built_key or not self.specular):
            return
        if grad or not self._load_cached():
            self.build(sampler)
            if not grad:
                self._save_cached()
        self._built_key = None if grad else key

    def _cache_path(self) -> Path:
        digest = hashlib.sha1(self.base.detach().float().cpu().numpy().tobytes())
        digest.update(
            f"envlight v3 {LOD_BIAS} {self.samples} {PREFILTER_SAMPLES} {MIN_ROUGHNESS} {MAX_ROUGHNESS}".encode()
        )
        return _cache_dir() / f"envlight_{self.base.shape[1]}_{digest.hexdigest()[:16]}.npz"

    def _load_cached(self) -> bool:
        try:
            with np.load(self._cache_path(), allow_pickle=False) as z:
                spec = [torch.from_numpy(z[f"s{i}"]).to(self.base.device) for i in range(self.levels)]
                diffuse = torch.from_numpy(z["diffuse"]).to(self.base.device)
        except (OSError, KeyError, ValueError):
            return False
        if any(t.shape[1] != self.base.shape[1] >> i for i, t in enumerate(spec)):
            return False
        self.specular, self.diffuse_map = spec, diffuse
        return True

    def _save_cached(self) -> None:
        assert self.diffuse_map is not None
        arrays = {f"s{i}": t.detach().float().cpu().numpy() for i, t in enumerate(self.specular)}
        arrays["diffuse"] = self.diffuse_map.detach().float().cpu().numpy()
        path = self._cache_path()
        try:  # an optimisation only: an unwritable cache costs the rebuild next time
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            savez: Any = np.savez  # numpy's stub reads the ** names as its keyword arguments
            with os.fdopen(fd, "wb") as f:
                savez(f, **arrays)
            os.replace(tmp, path)
        except OSError:
            pass

    def fg(self, device: torch.device) -> torch.Tensor:
        """The FG table on ``device``, [1, S, S, 2] (a texture for the backend's ``texture``)."""
        if self._lut is None or self._lut.device != device:
            self._lut = fg_lut(device=device)[None].contiguous()
        return self._lut

    def diffuse(self, normal: torch.Tensor, sampler: Sampler = cube_texture_torch) -> torch.Tensor:
        """Irradiance / π along unit normals [..., 3] → [..., 3]."""
        assert self.diffuse_map is not None, "EnvironmentLight.diffuse(): call ensure_built() first"
        return sampler(self.diffuse_map, normal)

    def specular_at(self, reflected: torch.Tensor, roughness: torch.Tensor, sampler: Sampler) -> torch.Tensor:
        """The prefiltered environment along reflected directions [..., 3] for roughness [...] → [..., 3]."""
        lod = roughness_to_lod(roughness, self.levels)
        return sampler(self.specular[0], reflected, mips=self.specular[1:], lod=lod)

    def latlong(self, height: int = 512) -> np.ndarray:
        """The environment as a lat-long map float32 [H, 2H, 3] (probe.hdr: the original's 512 × 1024)."""
        with torch.no_grad():
            return cubemap_to_latlong(self.base.detach().float(), height).cpu().numpy()

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The light's group when learnable (Adam at ``lr``), else none."""
        return [{"params": [self.base], "lr": lr, "name": "light"}] if self.learnable else []
