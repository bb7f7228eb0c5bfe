"""Cube maps in nvdiffrast's layout, and the torch twin of its cube-map lookup (``dr.texture(...,
boundary_mode="cube")``), plus lat-long ↔ cube resampling.

Layout: a cube map is float [6, R, R, C], faces +X, −X, +Y, −Y, +Z, −Z; texel (row i, column j) of face s looks
along ``cube_to_dir(s, x, y)`` with x = (j + 0.5)/R·2 − 1, y = (i + 0.5)/R·2 − 1 (the OpenGL / nvdiffrast
convention, as nvdiffrec's render/util.py ``cube_to_dir``). World is Y-up.

Lat-long maps are [H, 2H, C], row 0 = straight up (+Y); column j looks at azimuth φ = ((j + 0.5)/W·2 − 1)·π with
direction (sin θ sin φ, cos θ, −sin θ cos φ): the centre column looks along −Z (nvdiffrec's ``latlong_to_cubemap``
/ ``cubemap_to_latlong``).

:func:`cube_texture_torch` samples bilinearly within a face whose border has been padded with one ring of the
neighbouring faces' texels, so filtering is continuous across face edges (nvdiffrast filters across edges too;
at the 8 cube corners the two agree less), and trilinearly between the levels of a mip chain.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = [
    "cube_directions",
    "cube_texture_torch",
    "cubemap_to_latlong",
    "dir_to_cube",
    "latlong_directions",
    "latlong_to_cubemap",
    "texel_solid_angles",
]


def _cube_to_dir(face: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    one = torch.ones_like(x)
    rx, ry, rz = {
        0: (one, -y, -x),
        1: (-one, -y, x),
        2: (x, one, y),
        3: (x, -one, -y),
        4: (x, -y, one),
        5: (-x, -y, -one),
    }[face]
    return torch.stack((rx, ry, rz), dim=-1)


def _grid(res: int, device: torch.device | str, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of texel centres [R+2p, R+2p], x along columns, y along rows, in face units [−1, 1]."""
    c = (torch.arange(-pad, res + pad, device=device, dtype=torch.float32) + 0.5) / res * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


def cube_directions(res: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit directions of every texel centre: float32 [6, R, R, 3]."""
    x, y = _grid(res, device)
    return F.normalize(torch.stack([_cube_to_dir(s, x, y) for s in range(6)]), dim=-1)


def dir_to_cube(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Face id int64 [...] and face coordinates x, y ∈ [−1, 1] of directions d [..., 3] (need not be unit; the
    major axis wins, ties going to x, then y)."""
    ax, ay, az = d.abs().unbind(-1)
    dx, dy, dz = d.unbind(-1)
    use_x = (ax >= ay) & (ax >= az)
    use_y = ~use_x & (ay >= az)
    face = torch.where(use_x, (dx < 0).long(), torch.where(use_y, 2 + (dy < 0).long(), 4 + (dz < 0).long()))
    m = torch.where(use_x, ax, torch.where(use_y, ay, az)).clamp_min(1e-30)
    sx = torch.where(dx < 0, 1.0, -1.0)
    sz = torch.where(dz < 0, -1.0, 1.0)
    x = torch.where(use_x, sx * dz, torch.where(use_y, dx, sz * dx)) / m
    y = torch.where(use_y, torch.where(dy < 0, -dz, dz), -dy) / m
    return face, x.clamp(-1, 1), y.clamp(-1, 1)


@functools.lru_cache(maxsize=16)
def _pad_index(res: int, device: str) -> torch.Tensor:
    """int64 [6, R+2, R+2]: for every texel of the padded faces, the flat index (face·R² + row·R + column) of the
    cube texel it copies; the outer ring reads the nearest texel of the neighbouring face."""
    x, y = _grid(res, device, pad=1)
    d = torch.stack([_cube_to_dir(s, x, y) for s in range(6)])
    face, fx, fy = dir_to_cube(d)
    col = ((fx + 1) / 2 * res).floor().clamp(0, res - 1).long()
    row = ((fy + 1) / 2 * res).floor().clamp(0, res - 1).long()
    return face * res * res + row * res + col


def _sample_face_bilinear(tex: torch.Tensor, face: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of cube tex [6, R, R, C] at face coordinates → [N, C] (face, x, y flat [N])."""
    R, C = tex.shape[1], tex.shape[-1]
    P = R + 2
    padded = tex.reshape(6 * R * R, C)[_pad_index(R, str(tex.device)).reshape(-1)]  # [6·P·P, C]
    # Position in texel-centre units of the padded face: column j of the face is padded column j + 1 and its
    # centre sits at (x + 1)/2·R = j + 0.5.
    u = (x + 1) / 2 * R + 0.5
    v = (y + 1) / 2 * R + 0.5
    u0 = u.detach().floor().clamp(0, P - 2)
    v0 = v.detach().floor().clamp(0, P - 2)
    fu, fv = (u - u0).unsqueeze(-1), (v - v0).unsqueeze(-1)
    base = face * P * P + v0.long() * P + u0.long()

    def at(off: int) -> torch.Tensor:
        return padded[base + off]

    top = at(0) * (1 - fu) + at(1) * fu
    bot = at(P) * (1 - fu) + at(P + 1) * fu
    return top * (1 - fv) + bot * fv


def cube_texture_torch(
    tex: torch.Tensor, dirs: torch.Tensor, mips: list[torch.Tensor] | None = None, lod: torch.Tensor | None = None
) -> torch.Tensor:
    """Look up cube map tex [6, R, R, C] along directions dirs [..., 3] → [..., C] (bilinear, edges filtered
    across faces). With ``mips`` (the coarser levels, each half the previous) and ``lod`` [...] (0 = tex,
    fractional between levels, clamped to the chain), trilinear. Differentiable w.r.t. tex, mips and dirs."""
    if tex.dim() != 4 or tex.shape[0] != 6 or tex.shape[1] != tex.shape[2] or dirs.shape[-1] != 3:
        raise ValueError(
            f"cube_texture(): tex must be [6,R,R,C] and dirs [...,3], got {list(tex.shape)}, {list(dirs.shape)}"
        )
    lead = dirs.shape[:-1]
    face, x, y = dir_to_cube(dirs.reshape(-1, 3).to(tex.dtype))
    levels = [tex, *(mips or [])]
    if lod is None or len(levels) == 1:
        return _sample_face_bilinear(tex, face, x, y).reshape(*lead, tex.shape[-1])
    lv = lod.reshape(-1).to(tex.dtype).clamp(0, len(levels) - 1)
    l0 = lv.detach().floor().long().clamp(max=len(levels) - 2)
    frac = (lv - l0).unsqueeze(-1)
    out = torch.zeros(face.shape[0], tex.shape[-1], dtype=tex.dtype, device=tex.device)
    for i, level in enumerate(levels):
        for lo_idx, weight_of in ((i, lambda f: 1 - f), (i - 1, lambda f: f)):  # level i as l0, then as l0 + 1
            sel = (l0 == lo_idx).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            val = _sample_face_bilinear(level, face[sel], x[sel], y[sel])
            out = out.index_add(0, sel, val * weight_of(frac[sel]))
    return out.reshape(*lead, tex.shape[-1])


def latlong_directions(height: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit directions of the pixel centres of an [H, 2H] lat-long map: float32 [H, 2H, 3]."""
    W = 2 * height
    theta = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * math.pi
    phi = ((torch.arange(W, device=device, dtype=torch.float32) + 0.5) / W * 2 - 1) * math.pi
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    return torch.stack((t.sin() * p.sin(), t.cos(), -t.sin() * p.cos()), dim=-1)


def latlong_to_cubemap(latlong: torch.Tensor, res: int) -> torch.Tensor:
    """Resample a lat-long map [H, W, C] (W = 2H) to a cube map [6, R, R, C] by bilinear lookups at the texel
    centres (wrapping in azimuth), after an antialiased downsampling of a map much finer than the cube (so a
    small bright source such as the sun is averaged rather than missed)."""
    H, W, C = latlong.shape
    img = latlong.permute(2, 0, 1)[None].float()
    if W > 4 * res:
        img = F.interpolate(img, size=(2 * res, 4 * res), mode="bilinear", antialias=True, align_corners=False)
    H, W = img.shape[-2:]
    img = torch.cat([img[..., -1:], img, img[..., :1]], dim=-1)  # one wrapped column each side
    d = cube_directions(res, latlong.device)
    tu = torch.atan2(d[..., 0], -d[..., 2]) / (2 * math.pi) + 0.5
    tv = torch.acos(d[..., 1].clamp(-1, 1)) / math.pi
    gx = (tu * W + 1) / (W + 2) * 2 - 1
    gy = tv * 2 - 1
    grid = torch.stack([gx, gy], dim=-1).reshape(1, 6 * res, res, 2)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).reshape(6, res, res, C)


def cubemap_to_latlong(cube: torch.Tensor, height: int) -> torch.Tensor:
    """Resample a cube map [6, R, R, C] to a lat-long map [H, 2H, C] (bilinear; the inverse of
    :func:`latlong_to_cubemap` up to filtering)."""
    d = latlong_directions(height, cube.device)
    return cube_texture_torch(cube, d)


@functools.lru_cache(maxsize=16)
def _solid_angles(res: int, device: str) -> torch.Tensor:
    # Exact solid angle of a cube-face texel: the area integral of the projected square, evaluated at its corners
    # (atan(xy / sqrt(x² + y² + 1)) is its antiderivative).
    e = torch.arange(res + 1, dtype=torch.float64, device=device) / res * 2 - 1
    y, x = torch.meshgrid(e, e, indexing="ij")
    a = torch.atan2(x * y, torch.sqrt(x * x + y * y + 1))
    return (a[1:, 1:] - a[:-1, 1:] - a[1:, :-1] + a[:-1, :-1]).abs().float()


def texel_solid_angles(res: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Solid angle (sr) of every texel of one face, float32 [R, R] (the same for all six; they sum to 4π)."""
    return _solid_angles(res, str(torch.device(device)))
