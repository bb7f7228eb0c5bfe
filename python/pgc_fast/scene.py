"""The scene a run optimises: the input mesh (normalised for training, transform kept), the renderer and the
texture, plus the exporter that writes the result back in the input mesh's own frame and units.

Glue between :mod:`pgc_fast.mesh` (I/O), :mod:`pgc_fast.uv` (unwrap), :mod:`pgc_fast.render` (cameras,
rasteriser backends, textures, baking) and :mod:`pgc_fast.field` (the hash-grid texture field). Conventions:

* Training frame: with ``mesh.canonicalize`` (the original's ``--canonicalize``, reference_spec.md §4.1)
  ``x_train = (x_in − c)·s`` with ``c`` the bounding-box centre and ``s = 0.8 / max|x_in − c|``; otherwise the
  input frame. Exports write the *input* vertex positions, so no inverse transform can lose precision.
* UV textures follow the renderer's convention while training (row 0 = v = 0, nvdiffrast) and are flipped to
  :mod:`pgc_fast.mesh`'s (PNG row 0 = image top, OBJ/OpenGL v up) on export.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgc_fast import config as C

__all__ = ["Scene", "Normalisation", "load_textured_mesh_for_render"]


@dataclass(frozen=True)
class Normalisation:
    """x_train = (x_in − center)·scale. center float [3]; scale float."""

    center: tuple[float, float, float]
    scale: float

    @classmethod
    def of(cls, vertices: np.ndarray, canonicalize: bool) -> "Normalisation":
        if not canonicalize:
            return cls((0.0, 0.0, 0.0), 1.0)
        lo, hi = vertices.min(0).astype(np.float64), vertices.max(0).astype(np.float64)
        c = (lo + hi) / 2
        ext = float(np.abs(vertices.astype(np.float64) - c).max())
        return cls(tuple(float(x) for x in c), 0.8 / ext if ext > 0 else 1.0)  # type: ignore[arg-type]

    def apply(self, v: np.ndarray) -> np.ndarray:
        return ((v.astype(np.float64) - np.asarray(self.center)) * self.scale).astype(np.float32)

    def invert(self, v: np.ndarray) -> np.ndarray:
        return (v.astype(np.float64) / self.scale + np.asarray(self.center)).astype(np.float32)


class Scene:
    """Mesh + renderer + texture on one device. Build with :meth:`from_config`."""

    def __init__(self, cfg: C.RunConfig, device: torch.device, mesh_in: Any, norm: Normalisation) -> None:
        from pgc_fast.render.renderer import MeshRenderer, RenderMesh
        from pgc_fast.render.texture import FieldTexture, UVTexture

        self.cfg = cfg
        self.device = device
        self.mesh_in = mesh_in
        self.norm = norm
        self.renderer = MeshRenderer(cfg.render.backend, device)
        t = cfg.texture
        verts = torch.from_numpy(norm.apply(np.asarray(mesh_in.vertices)))
        faces = torch.from_numpy(np.asarray(mesh_in.faces, dtype=np.int64))
        colors = None if mesh_in.colors is None else torch.from_numpy(np.asarray(mesh_in.colors, np.float32))
        self.uvs: torch.Tensor | None = None
        self.uv_faces: torch.Tensor | None = None
        if t.kind == "uv":
            self.uvs, self.uv_faces = self._training_uvs(verts, faces)
        self.rmesh = RenderMesh(vertices=verts, faces=faces, uvs=self.uvs, uv_faces=self.uv_faces,
                                colors=colors).to(device)
        if t.kind == "uv":
            min_res = max(4, t.uv_resolution >> (t.uv_levels - 1))
            self.texture = UVTexture(t.uv_resolution, 3, min_resolution=min_res).to(device)
        else:
            self.texture = FieldTexture(bound=1.0, num_levels=t.field_levels, log2_table_size=t.field_log2_table_size,
                                        finest_resolution=t.field_finest_resolution).to(device)
        self.bg_image: torch.Tensor | None = None
        if cfg.render.background == "scenery":
            from PIL import Image

            img = np.asarray(Image.open(cfg.render.bg_image).convert("RGB"), dtype=np.float32) / 255.0
            self.bg_image = torch.from_numpy(img).permute(2, 0, 1).contiguous().to(device)

    # ----------------------------------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, cfg: C.RunConfig, device: torch.device) -> "Scene":
        from pgc_fast.mesh import load_mesh

        mesh_in = load_mesh(cfg.mesh.path, allow_external_files=cfg.mesh.allow_external_files)
        norm = Normalisation.of(np.asarray(mesh_in.vertices), cfg.mesh.canonicalize)
        return cls(cfg, device, mesh_in, norm)

    def _training_uvs(self, verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input mesh's own UVs when it has them, else an atlas from ``pgc_fast.uv.unwrap``. The atlas's
        faces are the input faces in order, so they serve as ``uv_faces`` next to the unchanged positions."""
        m = self.mesh_in
        if m.uvs is not None and m.uv_faces is not None:
            return torch.from_numpy(np.asarray(m.uvs, np.float32)), torch.from_numpy(np.asarray(m.uv_faces, np.int64))
        return atlas(verts.numpy(), faces.numpy(), self.cfg.texture.uv_resolution)

    @property
    def mesh_has_vertex_colors(self) -> bool:
        return self.rmesh.colors is not None

    def fit_vertex_colors(self, iters: int, seed: int = 0) -> bool:
        """The original's ``--init_texture``: initialise the texture from the mesh's vertex colours."""
        from pgc_fast.render.texture import init_texture

        kwargs: dict[str, Any] = {}
        if self.cfg.texture.kind == "field":
            kwargs = {"steps": iters, "generator": torch.Generator().manual_seed(seed)}
        return init_texture(self.texture, self.rmesh, self.renderer.backend, **kwargs)

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict]:
        """Optimiser groups as the original (§5): hash grid at grid_lr_scale·lr, MLP at lr. A UV pyramid is a
        grid of texels too, so all its levels get grid_lr_scale·lr."""
        if self.cfg.texture.kind == "field":
            return self.texture.field.param_groups(lr, grid_lr_scale)
        return [{"params": list(self.texture.parameters()), "lr": lr * grid_lr_scale, "name": "uv_pyramid"}]

    # ----------------------------------------------------------------------------------------- rendering

    def render(self, cameras: Any, *, train: bool, step: int = 0, generator: torch.Generator | None = None) -> Any:
        """Render ``cameras`` (pgc_fast.render.Cameras) → pgc_fast.render.RenderOutput. Training renders use
        the configured shading and background; evaluation renders are unlit albedo on the constant colour."""
        r = self.cfg.render
        tex: Any = self.texture
        if train and self.cfg.texture.pos_perturb and self.cfg.texture.kind == "field":
            base = self.texture

            def tex(points: torch.Tensor) -> torch.Tensor:  # centred U(−1e-3, 1e-3) (the original's was biased)
                return base(points + (torch.rand(points.shape, generator=generator).to(points) * 2 - 1) * 1e-3)

        bg: Any = r.bg_color
        if train and self.bg_image is not None:
            bg = self.bg_image
        shading = r.shading if train else "albedo"
        return self.renderer.render(self.rmesh, cameras, tex, background=bg, shading=shading, generator=generator,
                                    antialias=r.antialias)

    # ----------------------------------------------------------------------------------------- export

    @torch.no_grad()
    def baked_texture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(texture float32 [R,R,3] in the mesh convention (row 0 = top), uvs float32 [T,2], uv_faces int64 [F,3])."""
        t = self.cfg.texture
        if t.kind == "uv":
            from pgc_fast.render.texture import dilate_seams

            img = self.texture.export().float()  # [R,R,3], row 0 = v = 0
            img = self._resize(img, t.export_resolution)
            assert self.uvs is not None and self.uv_faces is not None
            # Charts of the training atlas: seam dilation so bilinear lookups near chart borders stay clean.
            from pgc_fast.render.texture import _uv_raster  # noqa: PLC2701 (same project)

            rast = _uv_raster(self.renderer.backend, self.uvs.to(self.device), self.uv_faces.to(self.device),
                              t.export_resolution)
            mask = rast[0, ..., 3] > 0
            if t.dilation:
                img = dilate_seams(img, mask, t.dilation)
            uvs, uv_faces = self.uvs.cpu().numpy(), self.uv_faces.cpu().numpy()
        else:
            from pgc_fast.render.texture import bake_field_to_uv

            uvs_t, uvf_t = atlas(self.rmesh.vertices.cpu().numpy(), self.rmesh.faces.cpu().numpy(), t.export_resolution)
            baked = bake_field_to_uv(self.texture, self.rmesh.vertices, self.rmesh.faces, self.renderer.backend,
                                     uvs=uvs_t.to(self.device), uv_faces=uvf_t.to(self.device),
                                     resolution=t.export_resolution, dilate_pixels=max(t.dilation, 1))
            img = baked.texture.float()
            uvs, uv_faces = baked.uvs.cpu().numpy(), baked.uv_faces.cpu().numpy()
        img_np = img.clamp(0, 1).cpu().numpy()[::-1].copy()  # renderer rows (v = 0 first) → image rows (top first)
        return img_np, uvs.astype(np.float32), uv_faces.astype(np.int64)

    @staticmethod
    def _resize(img: torch.Tensor, res: int) -> torch.Tensor:
        if img.shape[0] == res:
            return img
        x = img.permute(2, 0, 1)[None]
        mode = "area" if img.shape[0] > res else "bilinear"
        kw = {} if mode == "area" else {"align_corners": False}
        return torch.nn.functional.interpolate(x, size=(res, res), mode=mode, **kw)[0].permute(1, 2, 0)

    def export(self, ws: Path, cfg: C.RunConfig) -> dict[str, Path]:
        """Write ``mesh.obj`` + ``mesh.mtl`` + ``texture.png`` and ``mesh.glb`` in the input mesh's frame."""
        from pgc_fast.mesh import Material, Mesh, save_mesh

        img, uvs, uv_faces = self.baked_texture()
        m = self.mesh_in
        out = Mesh(vertices=np.asarray(m.vertices, np.float32), faces=np.asarray(m.faces, np.int64), uvs=uvs,
                   uv_faces=uv_faces, normals=None if m.normals is None else np.asarray(m.normals, np.float32),
                   material=Material(name="pgc_fast", base_color_texture=img.astype(np.float32)))
        ws = Path(ws)
        save_mesh(out, ws / "mesh.glb")
        save_mesh(out, ws / "mesh.obj")
        files = {"mesh_glb": ws / "mesh.glb", "mesh_obj": ws / "mesh.obj", "mesh_mtl": ws / "mesh.mtl"}
        files["texture"] = _rename_obj_texture(ws / "mesh.mtl", ws / "texture.png")
        return files


def atlas(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """UV atlas for a texture of side ``resolution``: (uvs float32 [T,2], uv_faces int64 [F,3], one row per input
    face) from ``pgc_fast.uv.unwrap``. Padding 4 texels; when the charts do not fit (a detailed mesh on a small
    texture) the padding shrinks to 2, then 1, then the atlas is packed for 2× / 4× the resolution (seams may
    bleed at this texture size; a warning says so)."""
    import warnings

    from pgc_fast.uv import unwrap

    last: Exception | None = None
    for res, pad in ((resolution, 4), (resolution, 2), (resolution, 1), (2 * resolution, 1), (4 * resolution, 1)):
        try:
            _vmap, f2, uv2 = unwrap(vertices, faces, resolution=res, padding=pad)
        except ValueError as e:  # "the charts need N pages …"
            last = e
            continue
        if res != resolution:
            warnings.warn(f"UV atlas packed for {res}² texels: the mesh's charts do not fit a {resolution}² texture "
                          f"with padding; raise texture.export_resolution / texture.uv_resolution", stacklevel=2)
        return torch.from_numpy(np.asarray(uv2, np.float32)), torch.from_numpy(np.asarray(f2, np.int64))
    raise ValueError(f"atlas(): cannot pack the mesh's UV charts for a {resolution}² texture: {last}")


def _rename_obj_texture(mtl: Path, target: Path) -> Path:
    """pgc_fast.mesh names the OBJ's base-colour map ``<stem>_kd.png``; the workspace promises ``texture.png``.
    Rename the file and point ``map_Kd`` at it."""
    lines = mtl.read_text().splitlines()
    out = []
    for line in lines:
        parts = line.strip().split(maxsplit=1)
        if parts and parts[0] == "map_Kd" and len(parts) == 2:
            src = mtl.parent / parts[1]
            if src.exists() and src != target:
                os.replace(src, target)
            line = f"map_Kd {target.name}"
        out.append(line)
    mtl.write_text("\n".join(out) + "\n")
    return target


def load_textured_mesh_for_render(path: str | os.PathLike, device: torch.device | str = "cpu",
                                  normalisation: Normalisation | None = None) -> tuple[Any, Any]:
    """Load an exported mesh (GLB/OBJ) as (RenderMesh, UVTexture) for re-rendering, e.g. to check an export.

    The texture image (mesh convention, row 0 = top) is flipped back to the renderer's (row 0 = v = 0) and held
    exactly by a single-level UVTexture; ``normalisation`` maps the file's (input) frame to the training frame.
    """
    from pgc_fast.mesh import load_mesh
    from pgc_fast.render.renderer import RenderMesh
    from pgc_fast.render.texture import UVTexture

    m = load_mesh(path)
    if m.material is None or m.material.base_color_texture is None or m.uvs is None:
        raise ValueError(f"load_textured_mesh_for_render(): {path} has no UVs and base-colour texture")
    v = np.asarray(m.vertices, np.float32)
    if normalisation is not None:
        v = normalisation.apply(v)
    img = np.asarray(m.material.base_color_texture, np.float32)[::-1, :, :3].copy()
    rm = RenderMesh(vertices=torch.from_numpy(v), faces=torch.from_numpy(np.asarray(m.faces, np.int64)),
                    uvs=torch.from_numpy(np.asarray(m.uvs, np.float32)),
                    uv_faces=torch.from_numpy(np.asarray(m.uv_faces, np.int64))).to(device)
    h, w = img.shape[:2]
    if h != w:
        raise ValueError(f"load_textured_mesh_for_render(): texture must be square, got {h}x{w}")
    tex = UVTexture(h, 3, min_resolution=h, activation="none").to(device)
    tex.set_image(torch.from_numpy(img).to(device))
    return rm, tex
