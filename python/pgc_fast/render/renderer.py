"""The mesh renderer: mesh + cameras + texture → image, mask, depth, world positions and normals.

All outputs are channels-first float32 ``[B,C,H,W]`` with image row 0 at the top (see camera.py: the projection
already puts clip y = −1, the rasteriser's row 0, at the top of the image; no flip anywhere).

Textures (``texture`` argument of :meth:`MeshRenderer.render`):

* an object with ``domain == "position"`` (e.g. :class:`pgc_fast.render.texture.FieldTexture`): called as
  ``texture(points float32 [N,3] world) → [N,C]`` on the covered pixels only;
* an object with ``domain == "uv"`` (e.g. :class:`pgc_fast.render.texture.UVTexture`): called as
  ``texture.sample(backend, uv float32 [B,H,W,2]) → [B,H,W,C]`` (needs ``mesh.uvs``);
* an object with ``domain == "vertex"`` (:class:`pgc_fast.render.texture.VertexColorTexture`) or a tensor
  ``[V,C]``: per-vertex colours interpolated over the faces.

Shading (the original's Rasterizer_MLP): ``"albedo"`` (unlit; the original's fixed-mesh -O2 path), ``"lambertian"``
(``albedo·(ambient + (1−ambient)·max(0, n·l))`` with the light ``l = normalize(camera centre + light_jitter·ξ)``,
ξ ~ N(0, I₃) drawn per view — the original drew one ξ per batch), ``"normal"`` (``(n+1)/2``) or ``"random"``
(albedo with probability ``albedo_prob`` = 0.2 per batch, else lambertian, as the original). Normals are the
interpolated vertex normals, normalised and turned to face the camera (two-sided lighting).

Antialiasing: the composited image and the coverage mask go through the backend's ``antialias`` together, so
silhouettes against the background and against other parts of the mesh are smoothed and their gradients reach
the vertex positions (the original antialiased only the mask before compositing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from pgc_fast.mesh.ops import vertex_normals
from pgc_fast.render.backends import RasterBackend, get_backend
from pgc_fast.render.camera import Cameras
from pgc_fast.render.shading import pbr, perturb_normal, shade
from pgc_fast.render.shading import tonemap as tonemap_radiance

__all__ = ["RenderMesh", "RenderOutput", "MeshRenderer"]


@dataclass
class RenderMesh:
    """A triangle mesh as torch tensors on one device.

    vertices float32 [V,3]; faces int64 [F,3]; normals float32 [V,3] (``pgc_fast.mesh.vertex_normals``, area-weighted,
    if not given);
    uvs float32 [T,2] with uv_faces int64 [F,3] (uv_faces = faces when omitted and T == V);
    colors float32 [V,C] in [0,1] (vertex colours) or None;
    tangents float32 [K,4] (unit tangent, handedness ±1; ``pgc_fast.mesh.vertex_tangents``) with tangent_faces
    int64 [F,3] indexing them (same triangle order as faces), for normal-mapped PBR shading, or None.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    normals: torch.Tensor | None = None
    uvs: torch.Tensor | None = None
    uv_faces: torch.Tensor | None = None
    colors: torch.Tensor | None = None
    tangents: torch.Tensor | None = None
    tangent_faces: torch.Tensor | None = None

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        if not isinstance(v, torch.Tensor) or v.dim() != 2 or v.shape[1] != 3 or not v.is_floating_point():
            raise ValueError(
                f"RenderMesh(): vertices must be a float tensor [V,3], got "
                f"{getattr(v, 'dtype', type(v).__name__)} {list(getattr(v, 'shape', []))}"
            )
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[1] != 3 or f.is_floating_point():
            raise ValueError(
                f"RenderMesh(): faces must be an integer tensor [F,3], got "
                f"{getattr(f, 'dtype', type(f).__name__)} {list(getattr(f, 'shape', []))}"
            )
        if f.numel() and (int(f.min()) < 0 or int(f.max()) >= v.shape[0]):
            raise ValueError(f"RenderMesh(): faces must index 0..{v.shape[0] - 1}, got {int(f.min())}..{int(f.max())}")
        self.vertices = v.float()
        self.faces = f.long()
        if self.uvs is not None:
            if self.uvs.dim() != 2 or self.uvs.shape[1] != 2:
                raise ValueError(f"RenderMesh(): uvs must be [T,2], got {list(self.uvs.shape)}")
            self.uvs = self.uvs.float()
            if self.uv_faces is None:
                if self.uvs.shape[0] != v.shape[0]:
                    raise ValueError("RenderMesh(): uv_faces is required when uvs are not per vertex")
                self.uv_faces = self.faces
            self.uv_faces = self.uv_faces.long()
            if self.uv_faces.shape != self.faces.shape:
                raise ValueError(
                    f"RenderMesh(): uv_faces must match faces {list(self.faces.shape)}, got {list(self.uv_faces.shape)}"
                )
        if self.colors is not None and (self.colors.dim() != 2 or self.colors.shape[0] != v.shape[0]):
            raise ValueError(f"RenderMesh(): colors must be [V={v.shape[0]},C], got {list(self.colors.shape)}")
        if self.normals is None:
            self.normals = vertex_normals(self.vertices, self.faces)
        if (self.tangents is None) != (self.tangent_faces is None):
            raise ValueError("RenderMesh(): tangents and tangent_faces must be given together")
        if self.tangents is not None and self.tangent_faces is not None:
            if self.tangents.dim() != 2 or self.tangents.shape[1] != 4 or self.tangent_faces.shape != f.shape:
                raise ValueError(
                    f"RenderMesh(): tangents must be [K,4] and tangent_faces {list(f.shape)}, got "
                    f"{list(self.tangents.shape)}, {list(self.tangent_faces.shape)}"
                )
            self.tangents, self.tangent_faces = self.tangents.float(), self.tangent_faces.long()

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def to(self, device: torch.device | str) -> RenderMesh:
        def mv(t):
            return None if t is None else t.to(device)

        return replace(
            self,
            vertices=self.vertices.to(device),
            faces=self.faces.to(device),
            normals=mv(self.normals),
            uvs=mv(self.uvs),
            uv_faces=mv(self.uv_faces),
            colors=mv(self.colors),
            tangents=mv(self.tangents),
            tangent_faces=mv(self.tangent_faces),
        )

    @classmethod
    def from_mesh(cls, mesh: Any, device: torch.device | str = "cpu") -> RenderMesh:
        """From ``pgc_fast.mesh.Mesh`` (or any object with ``vertices``/``faces`` and optional ``uvs``,
        ``uv_faces``, ``normals``/``vertex_normals``, ``colors``/``vertex_colors`` arrays)."""

        def get(*names):
            for n in names:
                x = getattr(mesh, n, None)
                if x is not None:
                    return torch.as_tensor(x).to(device)
            return None

        colors = get("colors", "vertex_colors")
        if colors is not None and colors.dtype == torch.uint8:
            colors = colors.float() / 255.0
        if colors is not None:
            colors = colors[:, :3].float()
        return cls(
            vertices=get("vertices"),
            faces=get("faces"),
            normals=get("normals", "vertex_normals"),
            uvs=get("uvs"),
            uv_faces=get("uv_faces"),
            colors=colors,
        )


@dataclass
class RenderOutput:
    """Renderer outputs, float32 channels-first, row 0 = image top.

    image [B,C,H,W] composited (and antialiased); mask [B,1,H,W] coverage (antialiased when enabled, else
    0/1); depth [B,1,H,W] camera-space z (0 where empty); position [B,3,H,W] world (0 where empty); normal
    [B,3,H,W] unit world normals facing the camera (0 where empty); albedo [B,C,H,W] unshaded texture colour
    (0 where empty); rast [B,H,W,4] the rasteriser output; shading: the shading actually used; with a PBR
    material (a texture with ``is_material``): material [B,9,H,W] its raw channels (kd, ks = occlusion, roughness,
    metallic, normal perturbation; albedo is kd) and shading_normal [B,3,H,W] the perturbed normal the light saw.
    """

    image: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    position: torch.Tensor
    normal: torch.Tensor
    albedo: torch.Tensor
    rast: torch.Tensor
    shading: str
    material: torch.Tensor | None = None
    shading_normal: torch.Tensor | None = None


@dataclass
class _Surface:
    """What rasterisation gives the shading (channels-last): clip [B,V,4], rast, covered bool [B,H,W,1], cov_f
    (its float), pos [B,H,W,3], normal [B,H,W,3] unit interpolated (not yet turned to the camera), depth."""

    clip: torch.Tensor
    rast: torch.Tensor
    covered: torch.Tensor
    cov_f: torch.Tensor
    pos: torch.Tensor
    normal: torch.Tensor
    depth: torch.Tensor


def _background(bg: Any, B: int, C: int, H: int, W: int, device: torch.device) -> torch.Tensor:
    """Background as [B,H,W,C]: a number, a sequence/tensor of C, an image [C,h,w] / [B,C,h,w] (resized)."""
    if isinstance(bg, (int, float)):
        return torch.full((B, H, W, C), float(bg), device=device)
    t = torch.as_tensor(bg, dtype=torch.float32, device=device)
    if t.dim() == 1:
        if t.shape[0] not in (1, C):
            raise ValueError(f"render(): background colour must have 1 or {C} values, got {t.shape[0]}")
        return t.expand(C).view(1, 1, 1, C).expand(B, H, W, C)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != C or t.shape[0] not in (1, B):
        raise ValueError(f"render(): background image must be [C,h,w] or [B,C,h,w] with C={C}, got {list(t.shape)}")
    if t.shape[-2:] != (H, W):
        t = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
    return t.permute(0, 2, 3, 1).expand(B, H, W, C)


class MeshRenderer:
    """Renders a :class:`RenderMesh` from :class:`Cameras` with a texture (module docstring).

    backend: a backend object or a name for :func:`get_backend` ("auto" picks nvdiffrast on CUDA).
    """

    def __init__(self, backend: RasterBackend | str = "auto", device: torch.device | str | None = None) -> None:
        self.backend = get_backend(backend, device) if isinstance(backend, str) else backend

    def render(
        self,
        mesh: RenderMesh,
        cameras: Cameras,
        texture: Any,
        *,
        background: Any = 1.0,
        shading: str = "albedo",
        ambient: float = 0.1,
        albedo_prob: float = 0.2,
        light_jitter: float = 1.0,
        generator: torch.Generator | None = None,
        antialias: bool = True,
        resolution: Sequence[int] | None = None,
        ssaa: int = 1,
        light: Any = None,
        tonemap: str = "srgb",
    ) -> RenderOutput:
        """Render B views. resolution (H, W) defaults to the cameras'. generator drives the random shading
        choice and light jitter (CPU generator). See the module docstring for textures and shading.
        ssaa > 1 renders at ssaa× the resolution and box-filters every output down (for validation and turntable
        images; ``rast`` stays at the high resolution; depth/position/normal are averaged over covered
        sub-samples). ``shading="pbr"`` lights a PBR material (a texture with ``is_material``) with ``light`` (a
        ``render.envlight.EnvironmentLight``) and maps the radiance with ``tonemap`` (srgb | none,
        render/shading.py); a material under "albedo" shows its base colour kd, tonemapped the same way."""
        if not isinstance(ssaa, int) or ssaa < 1 or ssaa > 8:
            raise ValueError(f"render(): ssaa must be an int in 1..8, got {ssaa!r}")
        kw = dict(background=background, shading=shading, ambient=ambient, albedo_prob=albedo_prob)
        kw.update(light_jitter=light_jitter, generator=generator, antialias=antialias, light=light, tonemap=tonemap)
        if ssaa > 1:
            return self._render_ssaa(mesh, cameras, texture, ssaa, resolution=resolution, **kw)
        if not isinstance(mesh, RenderMesh):
            raise TypeError(f"render(): mesh must be a RenderMesh, got {type(mesh).__name__}")
        if shading not in ("albedo", "lambertian", "normal", "random", "pbr"):
            raise ValueError(f"render(): shading must be albedo|lambertian|normal|random|pbr, got {shading!r}")
        is_material = bool(getattr(texture, "is_material", False))
        if shading == "pbr" and (light is None or not is_material):
            raise ValueError("render(): shading='pbr' needs a PBR material texture and light=EnvironmentLight")
        H, W = (int(r) for r in resolution) if resolution is not None else cameras.resolution
        cams = cameras.to(mesh.device)
        if (H, W) != cams.resolution:  # keep the field of view: scale the focal length with the height
            cams = replace(cams, focal=cams.focal * (H / cams.height), height=H, width=W)
        surf = self._surface(mesh, cams, H, W)
        # Fields may answer in fp16 under autocast.
        vals = self._albedo(mesh, texture, surf.rast, surf.pos, surf.covered).float()
        material = vals if is_material else None
        return self._shade_and_composite(mesh, cams, surf, vals, material, kw)

    def _surface(self, mesh: RenderMesh, cams: Cameras, H: int, W: int) -> _Surface:
        """Rasterise and interpolate positions, normals and camera depth."""
        be, B = self.backend, len(cams)
        with torch.autocast(device_type=mesh.device.type, enabled=False):
            clip = cams.to_clip(mesh.vertices)  # float32 [B,V,4]; w = camera-space z
            rast = be.rasterize(clip, mesh.faces, (H, W))
        covered = rast[..., 3:] > 0  # [B,H,W,1]
        assert mesh.normals is not None  # RenderMesh.__post_init__ computes them when not given
        geo = torch.cat([mesh.vertices.expand(B, -1, -1), mesh.normals.expand(B, -1, -1), clip[..., 3:4]], dim=-1)
        g = be.interpolate(geo.contiguous(), rast, mesh.faces)
        nrm = F.normalize(g[..., 3:6], dim=-1, eps=1e-20)
        return _Surface(clip, rast, covered, covered.float(), g[..., 0:3], nrm, g[..., 6:7])

    def _shade_and_composite(
        self,
        mesh: RenderMesh,
        cams: Cameras,
        surf: _Surface,
        vals: torch.Tensor,
        material: torch.Tensor | None,
        kw: dict[str, Any],
    ) -> RenderOutput:
        """Shade the covered pixels, composite over the background, antialias; channels-first outputs."""
        be, cov_f = self.backend, surf.cov_f
        B, H, W, _ = surf.rast.shape
        # Face the camera (two-sided): flip normals pointing away from the viewer.
        view = surf.pos - cams.position[:, None, None, :]
        nrm = torch.where((surf.normal * view).sum(-1, keepdim=True) > 0, -surf.normal, surf.normal) * cov_f
        albedo = vals[..., :3] if material is not None else vals
        used = kw["shading"]
        if used == "random":
            used = "albedo" if float(torch.rand((), generator=kw["generator"])) < kw["albedo_prob"] else "lambertian"
        shading_normal = None
        if used == "pbr":
            fg, shading_normal = self._shade_pbr(mesh, cams, surf, material, kw["light"], kw["tonemap"])
        elif material is not None and used == "albedo":
            fg = tonemap_radiance(albedo, kw["tonemap"])
        else:
            fg = shade(used, albedo, nrm, cams.position, ambient=kw["ambient"], light_jitter=kw["light_jitter"],
                       generator=kw["generator"])  # fmt: skip
        bgt = _background(kw["background"], B, fg.shape[-1], H, W, mesh.device).to(fg.dtype)
        img = torch.where(surf.covered, fg, bgt)
        mask = cov_f
        if kw["antialias"]:
            both = be.antialias(torch.cat([img.float(), cov_f], dim=-1).contiguous(), surf.rast, surf.clip, mesh.faces)
            img, mask = both[..., :-1], both[..., -1:]

        def cf(t: torch.Tensor) -> torch.Tensor:
            return t.permute(0, 3, 1, 2).contiguous()

        return RenderOutput(
            image=cf(img),
            mask=cf(mask),
            depth=cf(surf.depth * cov_f),
            position=cf(surf.pos * cov_f),
            normal=cf(nrm),
            albedo=cf(albedo * cov_f.to(albedo.dtype)),
            rast=surf.rast,
            shading=used,
            material=None if material is None else cf(material * cov_f),
            shading_normal=None if shading_normal is None else cf(shading_normal),
        )

    def _shade_pbr(
        self, mesh: RenderMesh, cams: Cameras, surf: _Surface, material: Any, light: Any, mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Split-sum PBR on the covered pixels only (render/shading.py): (tonemapped colour, shading normal),
        both [B,H,W,3] with zeros elsewhere."""
        be = self.backend
        sel = surf.covered[..., 0]
        idx = sel.nonzero(as_tuple=True)
        cam_pos = cams.position[:, None, None, :].expand_as(surf.pos)
        view = F.normalize(cam_pos[sel] - surf.pos[sel], dim=-1, eps=1e-20)
        tangent = None
        if mesh.tangents is not None and mesh.tangent_faces is not None:
            tangent = be.interpolate(mesh.tangents.contiguous(), surf.rast, mesh.tangent_faces)[sel]
        m = material[sel]
        n_shade, _ = perturb_normal(m[:, 6:9], surf.normal[sel], tangent, view)
        light.ensure_built(be.cube_texture)
        rad = pbr(m[:, 0:3], m[:, 3:6], n_shade, view, light, be)
        colour = tonemap_radiance(rad, mode)
        zeros = torch.zeros(*sel.shape, 3, dtype=colour.dtype, device=colour.device)
        return zeros.index_put(idx, colour), zeros.index_put(idx, n_shade.to(colour.dtype))

    def _render_ssaa(
        self,
        mesh: RenderMesh,
        cameras: Cameras,
        texture: Any,
        ssaa: int,
        *,
        resolution: Sequence[int] | None,
        **kw: Any,
    ) -> RenderOutput:
        """Render at ssaa× the resolution and box-filter every output down (``rast`` stays high resolution;
        depth / position / normal / albedo are averaged over covered sub-samples)."""
        H0, W0 = (int(r) for r in resolution) if resolution is not None else cameras.resolution
        hi = self.render(mesh, cameras, texture, resolution=(H0 * ssaa, W0 * ssaa), **kw)
        pool = lambda t: F.avg_pool2d(t, ssaa)
        cov = pool((hi.rast[..., 3] > 0).float()[:, None])
        per_cov = lambda t: pool(t) / cov.clamp_min(1e-12) * (cov > 0)
        return RenderOutput(
            image=pool(hi.image),
            mask=pool(hi.mask),
            depth=per_cov(hi.depth),
            position=per_cov(hi.position),
            normal=F.normalize(pool(hi.normal), dim=1),
            albedo=per_cov(hi.albedo),
            rast=hi.rast,
            shading=hi.shading,
            material=None if hi.material is None else per_cov(hi.material),
            shading_normal=None if hi.shading_normal is None else F.normalize(pool(hi.shading_normal), dim=1),
        )

    def _albedo(
        self, mesh: RenderMesh, texture: Any, rast: torch.Tensor, pos: torch.Tensor, covered: torch.Tensor
    ) -> torch.Tensor:
        be = self.backend
        B, H, W, _ = rast.shape
        if isinstance(texture, torch.Tensor):
            if texture.dim() != 2 or texture.shape[0] != mesh.vertices.shape[0]:
                raise ValueError(f"render(): a tensor texture must be vertex colours [V,C], got {list(texture.shape)}")
            return be.interpolate(texture.float().contiguous(), rast, mesh.faces)
        domain = getattr(texture, "domain", None)
        if domain == "vertex":
            return be.interpolate(texture.colors().float().contiguous(), rast, mesh.faces)
        if domain == "uv":
            if mesh.uvs is None or mesh.uv_faces is None:  # RenderMesh sets uv_faces whenever uvs are set
                raise ValueError("render(): a UV texture needs mesh.uvs (unwrap the mesh first)")
            uv = be.interpolate(mesh.uvs.contiguous(), rast, mesh.uv_faces)
            return texture.sample(be, uv) * covered.to(uv.dtype)
        if domain == "position" or callable(texture):
            sel = covered[..., 0]
            pts = pos[sel]
            vals = texture(pts)
            if vals.dim() != 2 or vals.shape[0] != pts.shape[0]:
                raise ValueError(f"render(): a position texture must map [N,3] to [N,C], got {list(vals.shape)}")
            out = torch.zeros(B, H, W, vals.shape[1], dtype=vals.dtype, device=vals.device)
            return out.index_put((sel.nonzero(as_tuple=True)), vals)
        raise TypeError(
            f"render(): texture must be a tensor [V,C] or have domain position|uv|vertex, got {type(texture).__name__}"
        )
