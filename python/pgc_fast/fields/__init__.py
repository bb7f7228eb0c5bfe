"""Neural fields queried at 3-D points: the hash-grid encoding + MLP (fields.hash_grid) and its heads — colour
(fields.color) now; SDF + deformation and material heads come next.

May import: torch and pgc_kernels only.
"""

from __future__ import annotations

from pgc_fast.fields.color import TextureField
from pgc_fast.fields.hash_grid import Field, HashGridEncoding

__all__ = ["Field", "HashGridEncoding", "TextureField"]
