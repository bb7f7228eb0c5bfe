"""Texture representations (``--texture field|uv``), their initialisation from vertex colours, and baking.

``FieldTexture`` (``field``, the default; the original's representation)
    Wraps a 3-D colour field — by default :class:`pgc_fast.field.TextureField` (hash grid + MLP, output
    sigmoid·0.9 + 0.05) — queried at the world positions of the covered pixels. Exported by
    :func:`bake_field_to_uv`: unwrap (``pgc_fast.uv.unwrap``) → rasterise the atlas in UV space with the render
    backend → query the field at every covered texel centre's surface point → :func:`dilate_seams`.
``UVTexture`` (``uv``)
    An explicit UV texture of side R (1024–4096 typical) parameterised as a multi-resolution pyramid:
    ``texture = act(Σ_l up(level_l))`` with levels of side R, R/2, … down to ``min_resolution``, each
    upsampled bilinearly (align_corners=False) to R. Rendering samples every level at the pixel's UV and sums
    (exactly the pyramid's value at texel centres), so gradients of one pixel reach a whole coarse texel and
    coarse structure forms first; :meth:`UVTexture.export` materialises the R×R texture.
``VertexColorTexture``
    Per-vertex colours (optionally learnable).

UV convention (nvdiffrast's): texel (i, j) of an [R,R,C] texture covers u ∈ [j, j+1)/R, v ∈ [i, i+1)/R, so row
0 is v = 0. ``pgc_fast.mesh`` (like OBJ) uses v up with image row 0 at the top: the same UVs then need the rows
flipped — :meth:`UVTexture.export_image` and :meth:`BakedTexture.image` return the flipped image for
``Mesh.material.base_color_texture``; to render a loaded mesh texture, pass ``image.flip(0)`` to set_image.

``init_texture(texture, mesh, backend)`` initialises either kind from the mesh's vertex colours
(``--init_texture``): UV textures get the vertex colours baked into the atlas; fields are fitted (Adam, MSE) to
the colours at random surface points plus jittered copies of them (the original's 500 full-batch steps; the
original took the mean colour of the 4 nearest vertices, we take the barycentric colour at the source point).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.renderer import RenderMesh

__all__ = [
    "FieldTexture",
    "UVTexture",
    "VertexColorTexture",
    "BakedTexture",
    "bake_field_to_uv",
    "bake_vertex_colors_to_uv",
    "dilate_seams",
    "init_texture",
    "fit_field_to_vertex_colors",
    "sample_surface",
]


# ------------------------------------------------------------------------------------------------- textures
class FieldTexture(nn.Module):
    """A colour field queried at world positions: ``forward(points float32 [N,3]) → [N,C]``.

    field: an ``nn.Module`` mapping [N,3] → [N,C]; default ``pgc_fast.field.TextureField(**field_kwargs)``.
    input_range: ``"world"`` passes world coordinates unchanged (for fields that map [−bound, bound]
    themselves); ``"unit"`` maps [−bound, bound]³ → [0, 1]³ first (for fields defined on the unit cube);
    ``"auto"`` (default) is ``"world"`` when the field has a ``bound`` attribute, else ``"unit"``.
    """

    domain = "position"

    def __init__(self, field: nn.Module | None = None, *, bound: float = 1.0, input_range: str = "auto",
                 **field_kwargs: Any) -> None:
        super().__init__()
        if field is None:
            from pgc_fast.field import TextureField  # the hash-grid field (issue 6)

            field = TextureField(bound=bound, **field_kwargs)
        if input_range not in ("auto", "world", "unit"):
            raise ValueError(f"FieldTexture(): input_range must be auto|world|unit, got {input_range!r}")
        if input_range == "auto":
            input_range = "world" if hasattr(field, "bound") else "unit"
        self.field = field
        self.bound = float(bound)
        self.input_range = input_range

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.dim() != 2 or points.shape[-1] != 3:
            raise ValueError(f"FieldTexture(): points must be [N,3], got {list(points.shape)}")
        x = points if self.input_range == "world" else (points + self.bound) / (2 * self.bound)
        return self.field(x)


class UVTexture(nn.Module):
    """Explicit UV texture as a multi-resolution pyramid (module docstring).

    resolution: side R of the finest level (power-of-two multiples of min_resolution recommended);
    channels: C; min_resolution: side of the coarsest level (levels halve from R until ≤ min_resolution);
    init: initial colour (number or C values, in (0, 1) for the sigmoid activation); activation: "sigmoid"
    (values in (0, 1); default) or "none" (raw sum, for latents). Parameters: ``levels[l]`` float32
    [1, r_l, r_l, C], coarse → fine; the coarsest holds the initial colour, the others start at zero.
    """

    domain = "uv"

    def __init__(self, resolution: int = 2048, channels: int = 3, *, min_resolution: int = 16,
                 init: float | Sequence[float] = 0.5, activation: str = "sigmoid") -> None:
        super().__init__()
        if not 1 <= resolution <= 16384:
            raise ValueError(f"UVTexture(): resolution must be in 1..16384, got {resolution}")
        if activation not in ("sigmoid", "none"):
            raise ValueError(f"UVTexture(): activation must be sigmoid|none, got {activation!r}")
        sizes = [int(resolution)]
        while sizes[-1] > max(1, min_resolution) and sizes[-1] % 2 == 0:
            sizes.append(sizes[-1] // 2)
        sizes.reverse()
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.activation = activation
        init_t = torch.as_tensor(init, dtype=torch.float32).expand(channels).clone()
        if activation == "sigmoid":
            if not ((init_t > 0) & (init_t < 1)).all():
                raise ValueError(f"UVTexture(): init must be in (0, 1) with the sigmoid activation, got {init}")
            init_t = torch.logit(init_t)
        self.levels = nn.ParameterList()
        for i, r in enumerate(sizes):
            p = torch.zeros(1, r, r, channels)
            if i == 0:
                p += init_t
            self.levels.append(nn.Parameter(p))

    @property
    def sizes(self) -> list[int]:
        return [int(p.shape[1]) for p in self.levels]

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) if self.activation == "sigmoid" else x

    def raw(self) -> torch.Tensor:
        """Pre-activation R×R texture, float32 [1,R,R,C] (sum of the bilinearly upsampled levels)."""
        R = self.resolution
        total = None
        for p in self.levels:
            x = p.permute(0, 3, 1, 2)
            if x.shape[-1] != R:
                x = F.interpolate(x, size=(R, R), mode="bilinear", align_corners=False)
            total = x if total is None else total + x
        return total.permute(0, 2, 3, 1)

    def sample(self, backend: RasterBackend, uv: torch.Tensor) -> torch.Tensor:
        """Texture values at uv float32 [B,H,W,2] → [B,H,W,C]: Σ_l bilinear(level_l, uv), then the activation.
        Clamp-to-edge addressing (atlas charts do not wrap)."""
        total = None
        for p in self.levels:
            s = backend.texture(p, uv, filter_mode="linear", boundary_mode="clamp")
            total = s if total is None else total + s
        return self._act(total)

    @torch.no_grad()
    def export(self) -> torch.Tensor:
        """The texture as float32 [R,R,C] (row 0 = v = 0), after the activation."""
        return self._act(self.raw())[0].detach().clone()

    @torch.no_grad()
    def export_image(self) -> torch.Tensor:
        """The texture as an image float32 [R,R,C], row 0 = image top, for ``pgc_fast.mesh`` / OBJ / PNG with the
        same UVs read as OBJ UVs (v up): the rows of :meth:`export` flipped."""
        return self.export().flip(0).contiguous()

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        """Make the pyramid represent ``image`` float [R,R,C] exactly (at texel centres): a Laplacian-style
        decomposition — each level holds what the coarser ones miss at its resolution."""
        R, C = self.resolution, self.channels
        if image.shape != (R, R, C):
            raise ValueError(f"UVTexture.set_image(): image must be [{R},{R},{C}], got {list(image.shape)}")
        img = image.float().to(self.levels[0].device)
        if self.activation == "sigmoid":
            img = torch.logit(img.clamp(1e-4, 1 - 1e-4))
        target = img.permute(2, 0, 1)[None]
        acc = torch.zeros_like(target)
        for p in self.levels:
            r = p.shape[1]
            t_r = F.interpolate(target, size=(r, r), mode="area") if r != R else target
            a_r = F.interpolate(acc, size=(r, r), mode="area") if r != R else acc
            lvl = t_r - a_r
            p.copy_(lvl.permute(0, 2, 3, 1))
            up = F.interpolate(lvl, size=(R, R), mode="bilinear", align_corners=False) if r != R else lvl
            acc = acc + up


class VertexColorTexture(nn.Module):
    """Per-vertex colours float32 [V,C] in [0,1]; learnable (through a logit) when ``learnable``."""

    domain = "vertex"

    def __init__(self, colors: torch.Tensor, learnable: bool = False) -> None:
        super().__init__()
        c = colors.float().clamp(1e-4, 1 - 1e-4)
        if learnable:
            self.logits = nn.Parameter(torch.logit(c))
        else:
            self.register_buffer("fixed", colors.float().clone())

    def colors(self) -> torch.Tensor:
        return torch.sigmoid(self.logits) if hasattr(self, "logits") else self.fixed


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
        raise ValueError(f"dilate_seams(): texture must be [H,W,C] and mask [H,W], got {list(texture.shape)}, "
                         f"{list(mask.shape)}")
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
    try:
        from pgc_fast.uv import unwrap
    except ImportError:  # pragma: no cover - older layouts
        from pgc_fast.mesh import unwrap  # type: ignore[attr-defined,no-redef]
    vmap, f2, uv2 = unwrap(vertices.detach().cpu().float(), faces.detach().cpu().long(), resolution=resolution,
                           padding=padding)
    return torch.as_tensor(uv2).float(), torch.as_tensor(f2).long(), torch.as_tensor(vmap).long()


@torch.no_grad()
def bake_field_to_uv(field: nn.Module, vertices: torch.Tensor, faces: torch.Tensor, backend: RasterBackend, *,
                     uvs: torch.Tensor | None = None, uv_faces: torch.Tensor | None = None, resolution: int = 2048,
                     padding: int = 4, dilate_pixels: int = 16, chunk: int = 1 << 18) -> BakedTexture:
    """Bake a position field (e.g. :class:`FieldTexture`) into a UV texture.

    vertices float [V,3] world (the frame the field was trained in); faces int [F,3]; uvs/uv_faces: an existing
    atlas (uv_faces default to faces), else ``pgc_fast.uv.unwrap(vertices, faces, resolution, padding)`` makes
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
    vals = [field(pts[i:i + chunk]).float() for i in range(0, pts.shape[0], chunk)]
    C = vals[0].shape[-1] if vals else 3
    tex = torch.zeros(resolution, resolution, C, device=dev)
    if vals:
        tex[mask] = torch.cat(vals).to(dev)
    tex = dilate_seams(tex, mask, dilate_pixels)
    return BakedTexture(texture=tex, mask=mask, uvs=uvs_t, uv_faces=uvf_t, vmapping=vmap)


@torch.no_grad()
def bake_vertex_colors_to_uv(mesh: RenderMesh, backend: RasterBackend, resolution: int,
                             dilate_pixels: int = 16) -> torch.Tensor:
    """Vertex colours of ``mesh`` (which must have colors and uvs) rasterised into its atlas → float32 [R,R,C]."""
    if mesh.colors is None or mesh.uvs is None:
        raise ValueError("bake_vertex_colors_to_uv(): mesh needs colors and uvs")
    rast = _uv_raster(backend, mesh.uvs, mesh.uv_faces, resolution)
    col = backend.interpolate(mesh.colors.float().contiguous(), rast, mesh.faces)[0]
    return dilate_seams(col, rast[0, ..., 3] > 0, dilate_pixels)


# ------------------------------------------------------------------------------------------- initialisation
def sample_surface(vertices: torch.Tensor, faces: torch.Tensor, n: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Area-uniform surface samples: (points float32 [n,3], face ids int64 [n], barycentrics float32 [n,3])."""
    f = faces.long()
    v0, v1, v2 = vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]]
    area = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1).norm(dim=-1).float().cpu()
    if float(area.sum()) <= 0:
        raise ValueError("sample_surface(): the mesh has zero area")
    fid = torch.multinomial(area, n, replacement=True, generator=generator)
    r = torch.rand(n, 2, generator=generator)
    s = r[:, 0].sqrt()
    bary = torch.stack([1 - s, s * (1 - r[:, 1]), s * r[:, 1]], dim=-1)
    fid, bary = fid.to(vertices.device), bary.to(vertices.device)
    fv = f[fid]
    pts = (vertices[fv] * bary[..., None]).sum(1)
    return pts.float(), fid, bary


def fit_field_to_vertex_colors(texture: FieldTexture, mesh: RenderMesh, *, steps: int = 500, n_points: int = 1 << 16,
                               lr: float = 1e-2, near_std: float = 0.04, far_std: float = 0.4,
                               clamp: tuple[float, float] = (0.03, 0.97),
                               generator: torch.Generator | None = None) -> float:
    """Fit a position field to the mesh's vertex colours (the original's ``init_texture``): targets are the
    colours at ``n_points`` random surface points, queried at the points + N(0, near_std²) and at a second copy
    + N(0, far_std²); loss = Σ_channels mean_points (c − target)²; full-batch Adam for ``steps`` steps.
    Returns the final loss. The caller resets its optimiser state afterwards (the original did)."""
    if mesh.colors is None:
        raise ValueError("fit_field_to_vertex_colors(): the mesh has no vertex colours")
    dev = mesh.device
    pts, fid, bary = sample_surface(mesh.vertices, mesh.faces, n_points, generator)
    target = (mesh.colors[mesh.faces[fid]] * bary[..., None]).sum(1).clamp(*clamp)
    near = pts + torch.randn(pts.shape, generator=generator).to(dev) * near_std
    far = pts + torch.randn(pts.shape, generator=generator).to(dev) * far_std
    x = torch.cat([near, far])
    y = torch.cat([target, target])
    opt = torch.optim.Adam([p for p in texture.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99), eps=1e-15)
    loss = torch.zeros(())
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = ((texture(x).float() - y) ** 2).mean(0).sum()
        loss.backward()
        opt.step()
    return float(loss.detach())


def init_texture(texture: nn.Module, mesh: RenderMesh, backend: RasterBackend, **kwargs: Any) -> bool:
    """Initialise ``texture`` from ``mesh.colors`` (``--init_texture``). Returns False (and does nothing) when
    the mesh has no vertex colours, as the original. UVTexture: colours baked into its atlas (needs mesh.uvs);
    FieldTexture: :func:`fit_field_to_vertex_colors` (kwargs passed on); VertexColorTexture: copied."""
    if mesh.colors is None:
        return False
    if isinstance(texture, UVTexture):
        img = bake_vertex_colors_to_uv(mesh, backend, texture.resolution).clamp(0, 1)
        texture.set_image(img[..., : texture.channels])
        return True
    if isinstance(texture, VertexColorTexture):
        with torch.no_grad():
            c = mesh.colors.float()
            if hasattr(texture, "logits"):
                texture.logits.copy_(torch.logit(c.clamp(1e-4, 1 - 1e-4)))
            else:
                texture.fixed.copy_(c)
        return True
    if getattr(texture, "domain", None) == "position":
        fit_field_to_vertex_colors(texture, mesh, **kwargs)  # type: ignore[arg-type]
        return True
    raise TypeError(f"init_texture(): unsupported texture {type(texture).__name__}")
