"""Vertex colours as a texture, and initialising any texture from a mesh's vertex colours."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from pgc_fast.render.backends import RasterBackend
from pgc_fast.render.renderer import RenderMesh


class VertexColorTexture(nn.Module):
    """Per-vertex colours float32 [V,C] in [0,1]; learnable (through a logit) when ``learnable``."""

    domain = "vertex"
    logits: nn.Parameter  # when learnable
    fixed: torch.Tensor  # a buffer otherwise

    def __init__(self, colors: torch.Tensor, learnable: bool = False) -> None:
        super().__init__()
        c = colors.float().clamp(1e-4, 1 - 1e-4)
        if learnable:
            self.logits = nn.Parameter(torch.logit(c))
        else:
            self.register_buffer("fixed", colors.float().clone())

    def init_from_vertex_colors(self, mesh: RenderMesh, backend: RasterBackend, **kwargs: Any) -> bool:
        """Copy the mesh's colours."""
        if mesh.colors is None:
            raise ValueError("VertexColorTexture.init_from_vertex_colors(): the mesh has no vertex colours")
        with torch.no_grad():
            c = mesh.colors.float()
            if hasattr(self, "logits"):
                self.logits.copy_(torch.logit(c.clamp(1e-4, 1 - 1e-4)))
            else:
                self.fixed.copy_(c)
        return True

    def colors(self) -> torch.Tensor:
        return torch.sigmoid(self.logits) if hasattr(self, "logits") else self.fixed


def init_texture(texture: nn.Module, mesh: RenderMesh, backend: RasterBackend, **kwargs: Any) -> bool:
    """Initialise ``texture`` from ``mesh.colors`` (``--init_texture``) through its
    ``init_from_vertex_colors`` (render/textures/base.py). Returns False (and does nothing) when the mesh has no
    vertex colours, as the original. UVTexture: colours baked into its atlas (needs mesh.uvs); FieldTexture:
    :func:`fit_field_to_vertex_colors` (kwargs passed on); VertexColorTexture: copied."""
    if mesh.colors is None:
        return False
    init = getattr(texture, "init_from_vertex_colors", None)
    if init is None:
        raise TypeError(f"init_texture(): unsupported texture {type(texture).__name__}")
    return bool(init(mesh, backend, **kwargs))
