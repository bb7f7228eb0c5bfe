"""Shading models, one function each: what a covered pixel's colour is, given its albedo and normal.

The original's (threestudio-style) set: unlit albedo (the fixed-mesh -O2 path), Lambertian with ambient 0.1 and a
light at the camera centre jittered by N(0, I₃) per view, and the normal map ``(n+1)/2``. The renderer picks one
per batch (``shading="random"``: albedo with probability 0.2, else Lambertian). All inputs are [B,H,W,C].

PBR (the original's ``--pbr``, nvdiffrec's render_mesh with an environment light): :func:`perturb_normal` turns
the material's tangent-space normal perturbation into a shading normal, :func:`pbr` lights the material with the
split-sum environment (render/envlight.py), :func:`tonemap` turns linear radiance into what the guidance sees.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

SHADINGS = ("albedo", "lambertian", "normal")


def albedo(albedo: torch.Tensor) -> torch.Tensor:
    """Unlit: the albedo itself."""
    return albedo


def lambertian(
    albedo: torch.Tensor,
    normal: torch.Tensor,
    camera_position: torch.Tensor,
    *,
    ambient: float = 0.1,
    light_jitter: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``albedo·(ambient + (1−ambient)·max(0, n·l))`` with ``l = normalize(camera centre + light_jitter·ξ)``,
    ξ ~ N(0, I₃) drawn per view (the original drew one ξ per batch). camera_position float [B,3]."""
    B = normal.shape[0]
    xi = torch.randn(B, 3, generator=generator).to(normal.device)
    light = F.normalize(camera_position + light_jitter * xi, dim=-1)
    lam = (normal * light[:, None, None, :]).sum(-1, keepdim=True).clamp_min(0)
    return albedo * (ambient + (1 - ambient) * lam)


def normal_map(normal: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """``(n+1)/2``: the normal map normal-SDS scores (needs a 3-channel texture)."""
    if channels != 3:
        raise ValueError(f"render(): shading='normal' needs a 3-channel texture, got {channels}")
    return (normal + 1) * 0.5


def shade(
    model: str,
    albedo_: torch.Tensor,
    normal: torch.Tensor,
    camera_position: torch.Tensor,
    *,
    ambient: float = 0.1,
    light_jitter: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The foreground colour under ``model`` (one of :data:`SHADINGS`)."""
    if model == "albedo":
        return albedo(albedo_)
    if model == "normal":
        return normal_map(normal, albedo_.shape[-1])
    return lambertian(albedo_, normal, camera_position, ambient=ambient, light_jitter=light_jitter, generator=generator)


# ------------------------------------------------------------------------------------------------------ PBR
NORMAL_BEND = 0.1
"""n·v below which the shading normal is bent towards the geometric one (nvdiffrec's NORMAL_THRESHOLD)."""


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer function (IEC 61966-2-1) of linear values clamped to [0, 1]."""
    x = linear.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def srgb_decode(encoded: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`srgb_encode` on [0, 1]."""
    x = encoded.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def tonemap(radiance: torch.Tensor, mode: str) -> torch.Tensor:
    """What the guidance sees of a linear radiance: ``srgb`` (clamped to [0, 1], sRGB-encoded) or ``none``."""
    if mode == "srgb":
        return srgb_encode(radiance)
    if mode == "none":
        return radiance
    raise ValueError(f"tonemap(): mode must be srgb|none, got {mode!r}")


def tangent_frame(normal: torch.Tensor, tangent: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, B) completing the unit normal [..., 3]: from interpolated vertex tangents [..., 4] (xyz, handedness w;
    T orthogonalised against n, B = sign(w)·(n × T), the glTF / MikkTSpace convention), or without tangents (a
    mesh without UVs, such as DMTet's per-step surface) the frame of ``envlight.orthonormal_basis``."""
    if tangent is None:
        from pgc_fast.render.envlight import orthonormal_basis

        return orthonormal_basis(normal)
    t = F.normalize(tangent[..., :3] - normal * (tangent[..., :3] * normal).sum(-1, keepdim=True), dim=-1, eps=1e-20)
    sign = torch.where(tangent[..., 3:4] < 0, -1.0, 1.0).to(normal.dtype)
    return t, sign * torch.linalg.cross(normal, t, dim=-1)


def perturb_normal(
    perturbation: torch.Tensor, normal: torch.Tensor, tangent: torch.Tensor | None, view: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shading normal (nvdiffrec's ``prepare_shading_normal``, OpenGL normal-map convention) and the
    two-sided interpolated normal: ``normalize(T·p_x + B·p_y + n·max(p_z, 0))`` in the frame of the (unflipped)
    unit normal n, then both turned towards the viewer where n faces away, and bent towards n near grazing
    (``lerp(n, s, clamp(v·s / 0.1, 0, 1))``) so no shading normal faces away from the camera.

    perturbation [..., 3] tangent space; normal [..., 3] unit interpolated normal; tangent [..., 4] or None;
    view [..., 3] unit direction from the surface to the camera."""
    t, b = tangent_frame(normal, tangent)
    p = perturbation
    s = F.normalize(t * p[..., 0:1] + b * p[..., 1:2] + normal * p[..., 2:3].clamp_min(0), dim=-1, eps=1e-20)
    flip = torch.where((normal * view).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(normal.dtype)
    n2, s = normal * flip, s * flip
    w = ((view * s).sum(-1, keepdim=True) / NORMAL_BEND).clamp(0, 1)
    return F.normalize(n2 + (s - n2) * w, dim=-1, eps=1e-20), n2


def pbr(
    kd: torch.Tensor,
    ks: torch.Tensor,
    normal: torch.Tensor,
    view: torch.Tensor,
    light: Any,
    backend: Any,
) -> torch.Tensor:
    """Split-sum image-based lighting of the original's material (nvdiffrec's ``EnvironmentLight.shade``):
    ``(irr(n)·kd·(1 − m) + spec(reflect(v, n), r)·(F0·A + B))·(1 − o)`` with ``F0 = 0.04(1 − m) + kd·m`` and
    (A, B) = FG(n·v, r). Linear radiance out.

    kd [..., 3]; ks [..., 3] = (occlusion o, roughness r, metallic m); normal [..., 3] unit shading normal;
    view [..., 3] unit surface → camera; light: a built ``render.envlight.EnvironmentLight``; backend: its
    ``cube_texture`` and ``texture`` do the lookups."""
    occ, rough, metal = ks[..., 0:1], ks[..., 1:2], ks[..., 2:3]
    sampler = backend.cube_texture
    diffuse = light.diffuse(normal, sampler) * kd * (1 - metal)
    nv = (normal * view).sum(-1, keepdim=True)
    refl = F.normalize(2 * nv * normal - view, dim=-1, eps=1e-20)
    uv = torch.cat([nv.clamp(1e-4, 1), rough], dim=-1)
    lead = uv.shape[:-1]
    fg = backend.texture(light.fg(uv.device), uv.reshape(1, 1, -1, 2).contiguous(), "linear", "clamp")
    fg = fg.reshape(*lead, 2)
    f0 = 0.04 * (1 - metal) + kd * metal
    spec = light.specular_at(refl, rough[..., 0], sampler) * (f0 * fg[..., 0:1] + fg[..., 1:2])
    return (diffuse + spec) * (1 - occ)


def pbr_reference(
    kd: torch.Tensor,
    ks: torch.Tensor,
    normal: torch.Tensor,
    view: torch.Tensor,
    light: Any,
    samples: int = 1 << 14,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte-Carlo twin of :func:`pbr`: the rendering integral of the same BRDF over the light's unfiltered cube
    map, without the split-sum approximation.

    ``∫ L(l) [kd(1 − m)/π + D(h) G2(v, l) F(v·h) / (4 (n·v)(n·l))] (n·l) dl · (1 − o)`` with GGX D (α = r²),
    height-correlated Smith G2, Schlick F with F0 = 0.04(1 − m) + kd·m — diffuse by cosine sampling, specular by
    sampling D(h)(n·h) (``samples`` each, CPU generator). Inputs as :func:`pbr` ([N, 3] each); float64 inside."""
    from pgc_fast.render.cubemap import cube_texture_torch
    from pgc_fast.render.envlight import _ggx_half_vectors, orthonormal_basis, smith_g2

    n, v = normal.double(), view.double()
    occ, rough, metal = (ks[..., i : i + 1].double() for i in range(3))
    kdd = kd.double()
    env = light.base.detach().double()
    t1, t2 = orthonormal_basis(n)
    u = torch.rand(samples, 2, generator=generator, dtype=torch.float64).to(n.device)
    # Diffuse: cosine-weighted directions; the estimator of ∫ L (n·l)/π dl is the mean of L.
    r, phi = u[:, 0].sqrt(), 2 * math.pi * u[:, 1]
    loc = torch.stack([r * phi.cos(), r * phi.sin(), (1 - u[:, 0]).sqrt()], dim=-1)
    ld = t1[:, None] * loc[:, 0:1] + t2[:, None] * loc[:, 1:2] + n[:, None] * loc[:, 2:3]
    diffuse = cube_texture_torch(env, ld).mean(1) * kdd * (1 - metal)
    # Specular: h ~ D(h)(n·h); the weight f·(n·l)/pdf(l) = G2·F·(v·h) / ((n·v)(n·h)).
    h_loc = _ggx_half_vectors(rough * rough, u[None])  # [N, K, 3]
    h = t1[:, None] * h_loc[..., 0:1] + t2[:, None] * h_loc[..., 1:2] + n[:, None] * h_loc[..., 2:3]
    vh = (v[:, None] * h).sum(-1, keepdim=True)
    l = 2 * vh * h - v[:, None]
    nl, nv = (n[:, None] * l).sum(-1, keepdim=True), (n * v).sum(-1, keepdim=True)[:, None]
    f0 = (0.04 * (1 - metal) + kdd * metal)[:, None]
    fres = f0 + (1 - f0) * (1 - vh).clamp(0, 1) ** 5
    g2 = smith_g2((rough * rough)[:, None], nv, nl.clamp_min(0))
    w = torch.where(nl > 0, g2 * vh / (nv * h_loc[..., 2:3]), torch.zeros_like(nl))
    spec = (cube_texture_torch(env, l) * fres * w).mean(1)
    return ((diffuse + spec) * (1 - occ)).to(kd.dtype)
