"""Neural fields queried at 3-D points: the hash-grid encoding + MLP (fields.hash_grid) and its heads — colour
(fields.color), the PBR material (fields.material); the SDF + deformation head comes next.

May import: torch and pgc_kernels only.
"""

from __future__ import annotations

from pgc_fast.fields.color import TextureField
from pgc_fast.fields.hash_grid import Field, HashGridEncoding
from pgc_fast.fields.material import MaterialField

__all__ = ["Field", "HashGridEncoding", "MaterialField", "TextureField"]
