"""The scene a run optimises: a geometry (behind the :class:`Geometry` protocol: the fixed input mesh, or DMTet's
shape in train/dmtet.py), a texture (behind the ``Texture`` protocol of render/textures/base.py), the renderer and
the background.

Conventions:

* Training frame: with ``mesh.canonicalize`` (the original's ``--canonicalize``) ``x_train = (x_in − c)·s``
  (``pgc_fast.mesh.Normalization.fit``); otherwise the input frame. Fixed-mesh exports write the *input* vertex
  positions, so no inverse transform can lose precision; DMTet's refined surface is mapped back by the inverse.
* UV textures follow the renderer's convention while training (row 0 = v = 0, nvdiffrast) and are flipped to
  :mod:`pgc_fast.mesh`'s (PNG row 0 = image top, OBJ/OpenGL v up) on export (export/mesh.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.export.mesh import export_textured_mesh
from pgc_fast.mesh import Mesh, Normalization, load_mesh
from pgc_fast.mesh.uv import atlas
from pgc_fast.render.renderer import MeshRenderer, RenderMesh, RenderOutput
from pgc_fast.render.scenery import load_background_image
from pgc_fast.render.textures import FieldTexture, UVTexture
from pgc_fast.render.textures import with_tangents as with_tangents_of
from pgc_fast.render.textures.base import Texture
from pgc_fast.train import material as M
from pgc_fast.train.dmtet import DMTetGeometry, outward_normal_map, progress_printer
from pgc_fast.train.latent import bake_decoded, render_decoded

__all__ = ["FixedMesh", "Geometry", "Scene", "make_texture"]


class Geometry(Protocol):
    """What the loop renders and (for shape optimisation) optimises. ``render_mesh`` is in the training frame on
    the run's device; ``export_mesh`` is the result in the input's own frame and units, without material.
    :class:`FixedMesh` (the input as is) and :class:`pgc_fast.train.dmtet.DMTetGeometry` implement it."""

    def render_mesh(self) -> RenderMesh: ...

    def source_mesh(self) -> RenderMesh:
        """The input mesh in the training frame, with its vertex colours (the texture pre-fit's targets)."""
        ...

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]: ...

    def initialize(
        self,
        *,
        texture: Any = None,
        generator: torch.Generator | None = None,
        progress: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> bool:
        """Initialise from the input before the first step (DMTet: its signed distance); with ``texture``, fit
        that to the vertex colours on the way when the geometry can. Returns whether the texture was fitted."""
        ...

    def new_step(self) -> None:
        """A training step begins: the next ``render_mesh`` is built for it."""
        ...

    def regularizer(self, step: int, iters: int) -> torch.Tensor | None:
        """The shape's own loss terms at ``step`` (0-based) of ``iters``, or None."""
        ...

    def step_stats(self) -> dict[str, Any]:
        """Numbers of the last extraction for the step log (vertex/face counts, extraction time in ms)."""
        ...

    def finalize(self) -> None:
        """Fix the final surface before exports and final renders."""
        ...

    def export_mesh(self) -> Mesh: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class FixedMesh:
    """The input mesh, unchanged (the original's ``--fix_mesh`` / -O2): nothing to optimise.

    ``with_uvs``: carry UVs for a UV texture — the mesh's own when it has them, else an atlas from
    ``pgc_fast.mesh.uv.atlas`` whose faces are the input faces in order (so they serve as ``uv_faces`` next to the
    unchanged positions). ``with_tangents``: carry the vertex tangents of those UVs too (a PBR material's normal
    map; ``name``, the mesh's file, goes into the error a degenerate UV layout raises)."""

    def __init__(
        self,
        mesh_in: Mesh,
        norm: Normalization,
        device: torch.device,
        *,
        with_uvs: bool = False,
        uv_resolution: int = 1024,
        with_tangents: bool = False,
        name: str = "mesh",
    ) -> None:
        self.mesh_in = mesh_in
        self.norm = norm
        verts = torch.from_numpy(norm.apply(np.asarray(mesh_in.vertices)))
        faces = torch.from_numpy(np.asarray(mesh_in.faces, dtype=np.int64))
        colors = None if mesh_in.colors is None else torch.from_numpy(np.asarray(mesh_in.colors, np.float32))
        uvs = uv_faces = None
        if with_uvs:
            if mesh_in.uvs is not None and mesh_in.uv_faces is not None:
                uvs = torch.from_numpy(np.asarray(mesh_in.uvs, np.float32))
                uv_faces = torch.from_numpy(np.asarray(mesh_in.uv_faces, np.int64))
            else:
                uvs, uv_faces = atlas(verts.numpy(), faces.numpy(), uv_resolution)
        rmesh = RenderMesh(vertices=verts, faces=faces, uvs=uvs, uv_faces=uv_faces, colors=colors)
        self._rmesh = (with_tangents_of(rmesh, name) if with_tangents else rmesh).to(device)

    def render_mesh(self) -> RenderMesh:
        return self._rmesh

    def source_mesh(self) -> RenderMesh:
        return self._rmesh

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        return []

    def initialize(self, **kwargs: Any) -> bool:
        return False

    def new_step(self) -> None:
        return None

    def regularizer(self, step: int, iters: int) -> torch.Tensor | None:
        return None

    def step_stats(self) -> dict[str, Any]:
        return {}

    def finalize(self) -> None:
        return None

    def export_mesh(self) -> Mesh:
        m = self.mesh_in
        return Mesh(
            vertices=np.asarray(m.vertices, np.float32),
            faces=np.asarray(m.faces, np.int64),
            normals=None if m.normals is None else np.asarray(m.normals, np.float32),
        )

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def make_texture(t: C.TextureConfig, *, latent: bool = False) -> Texture:
    """The texture of ``texture.kind`` (the one place a kind name becomes a class); ``latent``: a field of 4 raw
    latent channels (guidance.latent, train/latent.py)."""
    if t.kind == "uv":
        return UVTexture(t.uv_resolution, 3, min_resolution=max(4, t.uv_resolution >> (t.uv_levels - 1)))
    return FieldTexture(
        bound=1.0,
        num_levels=t.field_levels,
        log2_table_size=t.field_log2_table_size,
        finest_resolution=t.field_finest_resolution,
        latent=latent,
    )


class Scene:
    """Geometry + texture + renderer on one device. Build with :meth:`from_config`."""

    def __init__(self, cfg: C.RunConfig, device: torch.device, geometry: Geometry, texture: Texture) -> None:
        self.cfg = cfg
        self.device = device
        self.geometry = geometry
        self.renderer = MeshRenderer(cfg.render.backend, device)
        self.texture: Any = texture.to(device)  # type: ignore[attr-defined]
        self.bg_image: torch.Tensor | None = None
        self.latent = cfg.guidance.latent
        self.decoder: Any = None
        """Latent mode: the guidance's VAE decode (train.latent.LatentDecoder), set once the guidance is loaded."""
        if cfg.render.background == "scenery":
            self.bg_image = load_background_image(cfg.render.bg_image, device, formats=C.IMAGE_FORMATS)

    @classmethod
    def from_config(cls, cfg: C.RunConfig, device: torch.device) -> Scene:
        mesh_in = load_mesh(cfg.mesh.path, allow_external_files=cfg.mesh.allow_external_files)
        norm = Normalization.fit(mesh_in.vertices) if cfg.mesh.canonicalize else Normalization.identity()
        pbr = M.is_pbr(cfg)
        texture = M.make_material(cfg) if pbr else make_texture(cfg.texture, latent=cfg.guidance.latent)
        geometry: Geometry
        if cfg.mesh.shape == "dmtet":  # a PBR material shades DMTet's UV-less surface in its UV-free frame
            geometry = DMTetGeometry(mesh_in, norm, device, cfg)
        else:
            geometry = FixedMesh(
                mesh_in,
                norm,
                device,
                with_uvs=texture.needs_uvs,
                uv_resolution=cfg.texture.uv_resolution,
                with_tangents=pbr,
                name=cfg.mesh.path,
            )
        return cls(cfg, device, geometry, texture)

    @property
    def rmesh(self) -> RenderMesh:
        """The geometry's current render mesh (training frame)."""
        return self.geometry.render_mesh()

    @property
    def mesh_has_vertex_colors(self) -> bool:
        """Whether the input mesh has vertex colours (what ``--init_texture`` fits)."""
        return self.geometry.source_mesh().colors is not None

    def fit_vertex_colors(self, iters: int, seed: int = 0, show_progress: bool = False) -> bool:
        """The original's ``--init_texture``: initialise the texture from the mesh's vertex colours (a field fits
        for ``iters`` configured steps, fewer on the CPU: render/textures/field.py fit_schedule), with progress
        lines on stderr when ``show_progress``."""
        source = self.geometry.source_mesh()
        if source.colors is None:
            return False
        kw: dict[str, Any] = {"steps": iters, "generator": torch.Generator().manual_seed(seed)}
        if show_progress:
            kw["progress"] = progress_printer("init texture from vertex colours")
        return self.texture.init_from_vertex_colors(source, self.renderer.backend, **kw)

    def init_geometry(self, seed: int = 0, show_progress: bool = False) -> bool:
        """The geometry's initialisation from the input (DMTet: its signed distance), fitting the texture to the
        vertex colours on the way when ``texture.init_from_vertex_colors`` and the geometry can (the original's
        joint fit). Returns whether the texture was fitted."""
        joint = self.cfg.texture.init_from_vertex_colors and self.mesh_has_vertex_colors
        kw: dict[str, Any] = {"generator": torch.Generator().manual_seed(seed)}
        if show_progress:
            kw["progress"] = progress_printer("init shape from the mesh's signed distance")
        colour = getattr(self.texture, "base_colour", None)  # a PBR material fits its kd (its other channels stay)
        fit = (colour() if colour is not None else self.texture) if joint else None
        return self.geometry.initialize(texture=fit, **kw)

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        """Optimiser groups as the original (the original's Trainer): the geometry's at ``optim.lr_geometry``, then
        the texture's at ``lr``."""
        geo = self.geometry.param_groups(self.cfg.optim.lr_geometry, grid_lr_scale)
        return geo + self.texture.param_groups(lr, grid_lr_scale)

    def render(
        self, cameras: Any, *, train: bool, step: int = 0, generator: torch.Generator | None = None
    ) -> RenderOutput:
        """Render ``cameras`` (pgc_fast.render.Cameras). Training renders use the configured shading (albedo for
        the first ``render.albedo_iters`` steps) and background; evaluation renders are unlit albedo on the
        constant colour. Latent mode (train/latent.py): training renders are the 4 latent channels over the zero
        latent, evaluation renders are decoded. A training render starts a new step of the geometry (DMTet extracts
        its surface). A PBR material is lit
        by its environment in training and evaluation renders (train/material.py, render_kwargs)."""
        r = self.cfg.render
        if self.latent and not train:
            return render_decoded(self, cameras)
        if train:
            self.geometry.new_step()
        tex = self.texture.jittered(generator) if train and self.cfg.texture.pos_perturb else self.texture
        bg: Any = self.bg_image if train and self.bg_image is not None else r.bg_color
        bg = 0.0 if self.latent else bg
        kw: dict[str, Any] = {"shading": ("albedo" if step < r.albedo_iters else r.shading) if train else "albedo"}
        if M.is_pbr(self.cfg):
            kw = M.render_kwargs(self.cfg, self.texture, train, step)
        return self.renderer.render(
            self.rmesh, cameras, tex, background=bg, generator=generator, antialias=r.antialias, **kw
        )

    def texture_regularizers(
        self, step: int, render: RenderOutput, iters: int, generator: torch.Generator | None
    ) -> dict[str, torch.Tensor]:
        """Terms the scene adds to the objective's loss, by name (a PBR material's kd smoothness), already
        weighted."""
        if not M.is_pbr(self.cfg):
            return {}
        return M.material_regularizers(self.cfg, self.texture, render, step, iters, generator)

    def normal_map(self, render: RenderOutput) -> torch.Tensor:
        """The normal-SDS input of a render: ``(n + 1)/2`` of the outward world normals, 0.5 where empty,
        [B, 3, H, W] (pgc_fast.train.dmtet.outward_normal_map)."""
        return outward_normal_map(self.renderer.backend, self.rmesh, render.rast)

    def render_views(self, cameras: Any) -> tuple[RenderOutput, torch.Tensor]:
        """Evaluation renders: (albedo render on the constant colour, normal map ``(n + 1)/2`` on white [B,3,H,W])."""
        r = self.cfg.render
        out = self.render(cameras, train=False)
        mesh = self.rmesh
        ones = torch.ones(mesh.vertices.shape[0], 3, device=mesh.device)
        nrm = self.renderer.render(mesh, cameras, ones, background=1.0, shading="normal", antialias=r.antialias)
        return out, nrm.image

    @property
    def view_resolution(self) -> int:
        """Resolution of the validation image: the render's, or in latent mode the decoded image's."""
        return self.decoder.resolution if self.latent and self.decoder is not None else self.cfg.render.resolution

    @torch.no_grad()
    def baked_texture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(texture float32 [R,R,3] in the mesh convention (row 0 = top), uvs float32 [T,2], uv_faces int64 [F,3])."""
        t = self.cfg.texture
        if self.latent:  # no colours in a latent field: bake its decoded views (train/latent.py)
            return bake_decoded(self)[:3]
        baked = self.texture.bake(self.rmesh, self.renderer.backend, t.export_resolution, t.dilation)
        img = baked.texture.float().clamp(0, 1).cpu().numpy()[::-1].copy()  # renderer rows → image rows (top first)
        return img, baked.uvs.cpu().numpy().astype(np.float32), baked.uv_faces.cpu().numpy().astype(np.int64)

    def regularizer(self, step: int, iters: int) -> torch.Tensor | None:
        """The geometry's loss terms of this step (DMTet's smoothing), or None."""
        return self.geometry.regularizer(step, iters)

    def export(self, ws: Path, cfg: C.RunConfig) -> dict[str, Path]:
        """Write ``mesh.obj`` + ``mesh.mtl`` + ``texture.png`` and ``mesh.glb`` in the input mesh's frame (a PBR
        material: its maps, the GLB and probe.hdr, train/material.py)."""
        if M.is_pbr(cfg):
            return M.export_material(Path(ws), cfg, self)
        img, uvs, uv_faces = self.baked_texture()
        return export_textured_mesh(Path(ws), self.geometry.export_mesh(), img, uvs, uv_faces)
