"""What the renderer samples for a surface's colour, behind one Texture protocol (textures.base): fields at surface
points (textures.field), explicit UV pyramids (textures.uv), vertex colours (textures.vertex), the PBR material with
its environment light (textures.pbr), and baking into a UV image with seam dilation (textures.bake).

May import: torch, render.backends, mesh, fields.
"""

from __future__ import annotations

from pgc_fast.render.textures.bake import (
    BakedTexture,
    bake_field_to_uv,
    bake_vertex_colors_to_uv,
    dilate_seams,
)
from pgc_fast.render.textures.base import Texture
from pgc_fast.render.textures.field import (
    FieldTexture,
    fit_field_to_vertex_colors,
    sample_surface,
)
from pgc_fast.render.textures.pbr import PBRMaterial, with_tangents
from pgc_fast.render.textures.uv import UVTexture
from pgc_fast.render.textures.vertex import VertexColorTexture, init_texture

__all__ = [
    "BakedTexture",
    "Texture",
    "FieldTexture",
    "PBRMaterial",
    "UVTexture",
    "VertexColorTexture",
    "bake_field_to_uv",
    "bake_vertex_colors_to_uv",
    "dilate_seams",
    "fit_field_to_vertex_colors",
    "init_texture",
    "sample_surface",
    "with_tangents",
]
