"""Neural fields queried at 3-D points: the hash-grid encoding + MLP (fields.hash_grid) and its heads — colour
(fields.color), DMTet's signed distance + deformation (fields.sdf) and the PBR material (fields.material).

May import: torch and pgc_kernels only.
"""

from __future__ import annotations

from pgc_fast.fields.color import TextureField
from pgc_fast.fields.hash_grid import Field, HashGridEncoding
from pgc_fast.fields.material import MaterialField
from pgc_fast.fields.sdf import SDFField

__all__ = ["Field", "HashGridEncoding", "MaterialField", "SDFField", "TextureField"]
