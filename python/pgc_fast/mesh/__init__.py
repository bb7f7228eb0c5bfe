"""Triangle meshes: the data model (mesh.model), file I/O and HDR images (mesh.io), clean-up operations, vertex
normals and tangents (mesh.ops), CPU rasterisers (mesh.raster), UV unwrapping (mesh.uv), tetrahedral grids /
marching tets (mesh.tets), signed distance / winding numbers (mesh.sdf), and the torch building blocks of DMTet shape
refinement (any device): regularisers with pytorch3d's semantics (mesh.regularizers), surface sampling and
SDF-initialisation targets (mesh.sampling), floater removal (mesh.floaters) and Chamfer distances (mesh.chamfer).

Everything heavy runs in the Rust core (``pgc_fast._rust_mesh``, rust_mesh/src/) with the GIL released; these
modules validate arguments, convert dtypes and document the conventions:

* ``Mesh.faces`` index ``Mesh.vertices``; ``Mesh.uv_faces`` (one row per face) index ``Mesh.uvs``. The
  two index buffers are separate (like OBJ, threestudio's ``t_pos_idx``/``t_tex_idx``) so UV seams do not
  split positions; GLB/PLY writers split vertices where a position has several UVs.
* UVs follow OBJ/OpenGL: (0, 0) is the **bottom-left** of the texture image, v points up.
* Textures are float32 ``[H, W, C]`` (C = 3 or 4 for colour) in [0, 1] with **row 0 = top** of the image
  (as stored in PNG). So texel row ``r`` holds v = 1 − (r + 0.5)/H. To sample with nvdiffrast
  (``dr.texture`` treats v = 0 as row 0) flip the image: ``tex[::-1]``.
* Metallic-roughness textures use glTF's layout: G = roughness, B = metallic.
* Vertex colours are float32 [V, 3] in [0, 1], written and read without sRGB conversion.

Rasteriser convention: see :func:`rasterize` (identical to ``nvdiffrast.torch.rasterize``; Laine et al.,
"Modular Primitives for High-Performance Differentiable Rendering", arXiv 2011.03277). The CPU rasteriser
uses homogeneous 2-D rasterisation (Olano & Greer, "Triangle Scan Conversion using 2D Homogeneous
Coordinates", HWWS 1997).

May import: numpy, the Rust core, torch (for the torch-side ops). Never render, guidance or train.
"""

from __future__ import annotations

from pgc_fast.mesh.io import load_mesh, read_hdr, save_mesh, write_hdr
from pgc_fast.mesh.model import Material, Mesh, Normalization, normalize
from pgc_fast.mesh.ops import (
    connected_components,
    remove_degenerate,
    remove_small_components,
    remove_unreferenced,
    vertex_normals,
    vertex_tangents,
    weld,
)
from pgc_fast.mesh.raster import (
    bake_vertex_colors,
    dilate,
    rasterize,
    rasterize_attach_grad,
    rasterize_db,
    rasterize_reference,
    rasterize_uv,
)
from pgc_fast.mesh.sdf import signed_distance, winding_number
from pgc_fast.mesh.uv import unwrap, uv_metrics

__all__ = [
    "Material",
    "Mesh",
    "Normalization",
    "load_mesh",
    "save_mesh",
    "read_hdr",
    "write_hdr",
    "rasterize",
    "rasterize_reference",
    "rasterize_attach_grad",
    "rasterize_db",
    "rasterize_uv",
    "dilate",
    "bake_vertex_colors",
    "weld",
    "remove_degenerate",
    "remove_unreferenced",
    "vertex_normals",
    "vertex_tangents",
    "connected_components",
    "remove_small_components",
    "normalize",
    "unwrap",
    "uv_metrics",
    "signed_distance",
    "winding_number",
]
