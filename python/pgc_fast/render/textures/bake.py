"""Baking a texture into a UV image: UV rasterisation, seam dilation, field baking and vertex-colour baking."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.renderer import RenderMesh


# ------------------------------------------------------------------------------------------------- dilation
def _pull_push(tex: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill every uncovered texel of tex [1,C,H,W] from a pyramid of covered averages (mask [1,1,H,W] 0/1).
    Both sums use the same pooling divisor, so their ratio is the mean of the covered texels of each block."""
    H, W = tex.shape[-2:]
    if H <= 1 and W <= 1:
        return tex
    k = (min(2, H), min(2, W))
    s = F.avg_pool2d(tex * mask, k, stride=k, ceil_mode=True)
    n = F.avg_pool2d(mask, k, stride=k, ceil_mode=True)
    coarse = torch.where(n > 0, s / n.clamp_min(1e-12), torch.zeros_like(s))
    coarse = _pull_push(coarse, (n > 0).float())
    up = F.interpolate(coarse, size=(H, W), mode="nearest")
    return torch.where(mask > 0, tex, up)


@torch.no_grad()
def dilate_seams(texture: torch.Tensor, mask: torch.Tensor, pixels: int = 16, fill: bool = True) -> torch.Tensor:
    """Seam padding: grow the covered texels outwards so bilinear/mip filtering never reads empty texels.

    texture float [H,W,C]; mask bool [H,W] (covered texels). ``pixels`` rings of dilation, each setting a newly
    reached texel to the mean of its covered 8-neighbours (the original's nearest-neighbour padding, smoothed);
    with ``fill`` every remaining empty texel is then filled by pull-push (averages of a covered-texel pyramid),
    so the atlas has no black gaps at any mip level. Covered texels are never changed. Returns float [H,W,C].
    """
    if texture.dim() != 3 or mask.shape != texture.shape[:2]:
        raise ValueError(
            f"dilate_seams(): texture must be [H,W,C] and mask [H,W], got {list(texture.shape)}, {list(mask.shape)}"
        )
    if pixels < 0:
        raise ValueError(f"dilate_seams(): pixels must be >= 0, got {pixels}")
    tex = texture.float().permute(2, 0, 1)[None]
    m = mask.to(tex.device, torch.float32)[None, None]
    if m.sum() == 0:
        return texture.float().clone()
    orig = tex.clone()
    for _ in range(pixels):
        s = F.avg_pool2d(tex * m, 3, stride=1, padding=1, count_include_pad=True)
        n = F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=True)
        new = (n > 0) & (m == 0)
        if not bool(new.any()):
            break
        tex = torch.where(new, s / n.clamp_min(1e-12), tex)
        m = torch.maximum(m, new.float())
    if fill and bool((m == 0).any()):
        tex = _pull_push(tex, m)
    out = torch.where(mask.to(tex.device)[None, None], orig, tex)
    return out[0].permute(1, 2, 0).contiguous()


# --------------------------------------------------------------------------------------------------- baking
@dataclass
class BakedTexture:
    """A texture baked into a UV atlas, with the geometry to go with it.

    texture float32 [R,R,C] (row 0 = v = 0, seams dilated); mask bool [R,R] (texels covered by a triangle);
    uvs float32 [T,2]; uv_faces int64 [F,3] (same triangle order as the input faces); vmapping int64 [T] or
    None: when the atlas came from ``unwrap``, new vertex i copies input vertex vmapping[i] and uv_faces also
    index the new vertices (so an exporter writes vertices[vmapping], uv_faces, uvs).
    """

    texture: torch.Tensor
    mask: torch.Tensor
    uvs: torch.Tensor
    uv_faces: torch.Tensor
    vmapping: torch.Tensor | None = None

    def image(self) -> torch.Tensor:
        """The texture as an image (row 0 = top; ``pgc_fast.mesh`` / OBJ convention with these uvs)."""
        return self.texture.flip(0).contiguous()


def _uv_raster(backend: RasterBackend, uvs: torch.Tensor, uv_faces: torch.Tensor, resolution: int) -> torch.Tensor:
    """Rasterise the atlas: UV (u, v) ∈ [0,1]² → clip (2u−1, 2v−1, 0, 1), so texel row i = v ∈ [i, i+1)/R."""
    uv = uvs.float()
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=-1)[None]
    return backend.rasterize(clip.contiguous(), uv_faces, (resolution, resolution))


def _resolve_uvs(vertices, faces, uvs, uv_faces, resolution, padding):
    if uvs is not None:
        if uv_faces is None:
            uv_faces = faces
        return torch.as_tensor(uvs).float(), torch.as_tensor(uv_faces).long(), None
    from pgc_fast.mesh.uv import unwrap

    vmap, f2, uv2 = unwrap(
        vertices.detach().cpu().float(), faces.detach().cpu().long(), resolution=resolution, padding=padding
    )
    return torch.as_tensor(uv2).float(), torch.as_tensor(f2).long(), torch.as_tensor(vmap).long()


@torch.no_grad()
def bake_field_to_uv(
    field: nn.Module,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    backend: RasterBackend,
    *,
    uvs: torch.Tensor | None = None,
    uv_faces: torch.Tensor | None = None,
    resolution: int = 2048,
    padding: int = 4,
    dilate_pixels: int = 16,
    chunk: int = 1 << 18,
) -> BakedTexture:
    """Bake a position field (e.g. :class:`FieldTexture`) into a UV texture.

    vertices float [V,3] world (the frame the field was trained in); faces int [F,3]; uvs/uv_faces: an existing
    atlas (uv_faces default to faces), else ``pgc_fast.mesh.uv.unwrap(vertices, faces, resolution, padding)`` makes
    one. Each covered texel centre's surface point (barycentric interpolation of the triangle covering it) is
    queried in chunks of ``chunk`` points; uncovered texels are filled by :func:`dilate_seams`.
    """
    dev = vertices.device
    uvs_t, uvf_t, vmap = _resolve_uvs(vertices, faces, uvs, uv_faces, resolution, padding)
    uvs_t, uvf_t = uvs_t.to(dev), uvf_t.to(dev)
    pos_faces = faces.long().to(dev) if vmap is None else uvf_t
    verts = vertices.float() if vmap is None else vertices.float()[vmap.to(dev)]
    rast = _uv_raster(backend, uvs_t, uvf_t, resolution)
    pos = backend.interpolate(verts.contiguous(), rast, pos_faces)[0]  # [R,R,3]
    mask = rast[0, ..., 3] > 0
    pts = pos[mask]
    vals = [field(pts[i : i + chunk]).float() for i in range(0, pts.shape[0], chunk)]
    C = vals[0].shape[-1] if vals else 3
    tex = torch.zeros(resolution, resolution, C, device=dev)
    if vals:
        tex[mask] = torch.cat(vals).to(dev)
    tex = dilate_seams(tex, mask, dilate_pixels)
    return BakedTexture(texture=tex, mask=mask, uvs=uvs_t, uv_faces=uvf_t, vmapping=vmap)


@torch.no_grad()
def bake_vertex_colors_to_uv(
    mesh: RenderMesh, backend: RasterBackend, resolution: int, dilate_pixels: int = 16
) -> torch.Tensor:
    """Vertex colours of ``mesh`` (which must have colors and uvs) rasterised into its atlas → float32 [R,R,C]."""
    if mesh.colors is None or mesh.uvs is None or mesh.uv_faces is None:  # uv_faces is set whenever uvs are
        raise ValueError("bake_vertex_colors_to_uv(): mesh needs colors and uvs")
    rast = _uv_raster(backend, mesh.uvs, mesh.uv_faces, resolution)
    col = backend.interpolate(mesh.colors.float().contiguous(), rast, mesh.faces)[0]
    return dilate_seams(col, rast[0, ..., 3] > 0, dilate_pixels)
