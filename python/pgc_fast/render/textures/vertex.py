"""Vertex colours as a texture, and initialising any texture from a mesh's vertex colours."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.renderer import RenderMesh
from pgc_fast.render.textures.bake import bake_vertex_colors_to_uv
from pgc_fast.render.textures.field import fit_field_to_vertex_colors
from pgc_fast.render.textures.uv import UVTexture


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

