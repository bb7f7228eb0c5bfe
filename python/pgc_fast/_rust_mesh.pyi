"""Type stubs for the compiled mesh core (rust_mesh/py)."""

from os import PathLike
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "version",
    "weld_map",
    "nondegenerate_mask",
    "compact_map",
    "connected_components",
    "load_mesh",
    "save_mesh",
    "rasterize",
    "rasterize_uv",
    "dilate",
    "kuhn_grid",
    "tet_edges",
    "marching_tets",
    "uv_unwrap",
    "uv_metrics",
    "signed_distance",
    "winding_number",
    "vertex_tangents",
    "read_hdr",
    "write_hdr",
]

def version() -> str:
    """Version of the compiled rust_mesh core."""

# ---- mesh I/O, rasterisers, operations (rust_mesh/py/src/mesh.rs); wrapped by pgc_fast.mesh ----
_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]
_B = npt.NDArray[np.bool_]

def load_mesh(path: str | PathLike[str], allow_external_files: bool = False) -> dict[str, Any]:
    """Reads OBJ/PLY/GLB/glTF → dict(vertices, faces, uvs, uv_faces, normals, colors, material, warnings)."""

def save_mesh(
    path: str | PathLike[str],
    vertices: _F32,
    faces: _I64,
    uvs: _F32 | None = None,
    uv_faces: _I64 | None = None,
    normals: _F32 | None = None,
    colors: _F32 | None = None,
    material: dict[str, Any] | None = None,
) -> None:
    """Writes .obj/.ply/.glb by extension."""

def rasterize(clip_pos: _F32, faces: _I64, height: int, width: int) -> _F32:
    """clip_pos float32 [B,V,4], faces int64 [F,3] → float32 [B,H,W,4] (u, v, z/w, tri_id+1)."""

def rasterize_uv(uvs: _F32, uv_faces: _I64, height: int, width: int) -> tuple[_I64, _F32]:
    """→ (face_id int64 [H,W], −1 empty; bary float32 [H,W,3])."""

def dilate(texture: _F32, mask: _B, pixels: int) -> tuple[_F32, _B]:
    """Grows texture [H,W,C] from mask [H,W] by `pixels` rings."""

def weld_map(vertices: _F32, eps: float) -> tuple[_I64, int]:
    """→ (old→new map int64 [V], new vertex count)."""

def nondegenerate_mask(vertices: _F32, faces: _I64, area_eps: float) -> _B:
    """→ bool [F], True for faces to keep."""

def compact_map(num_vertices: int, faces: _I64) -> tuple[_I64, int]:
    """→ (old→new map int64 [V], −1 = unreferenced; kept count)."""

def connected_components(num_vertices: int, faces: _I64) -> tuple[_I64, _I64]:
    """→ (labels int64 [F], 0 = largest; sizes int64 [C])."""

# ---- tetrahedral grids (rust_mesh/py/src/tet.rs); wrapped by pgc_fast.mesh.tets ----

def kuhn_grid(cells: int) -> tuple[_F32, _I64]:
    """→ (vertices float32 [(n+1)^3,3], tets int64 [6n^3,4]) over [-0.5,0.5]^3."""

def tet_edges(tets: _I64, num_vertices: int) -> tuple[_I64, _I64]:
    """→ (unique sorted edges int64 [E,2], tet→edge ids int64 [T,6])."""

def marching_tets(vertices: _F32, sdf: _F32, tets: _I64) -> tuple[_F32, _I64, _I64, _I64]:
    """→ (vertices [K,3], faces [F,3], crossing edges [K,2], tet_idx [F]) in Kaolin's order."""

# --- rust_mesh::uv (rust_mesh/py/src/uv.rs); validated wrappers live in pgc_fast.mesh.uv ---

def uv_unwrap(
    vertices: npt.NDArray[np.float32],
    faces: npt.NDArray[np.uint32],
    resolution: int,
    padding: int,
    max_chart_angle: float,
    max_area_distortion: float,
    rotate_charts: bool,
    packing: str,
    max_chart_size: int,
    block_align: bool,
    coarse_packing: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32], dict[str, int | float]]:
    """Unwraps C-contiguous float32 [V,3] / uint32 [F,3]; returns (vmapping, faces, uvs, info)."""

def uv_metrics(
    vertices: npt.NDArray[np.float32],
    faces: npt.NDArray[np.uint32],
    uvs: npt.NDArray[np.float32],
    uv_faces: npt.NDArray[np.uint32],
    resolution: int,
) -> dict[str, int | float]:
    """UV layout metrics (see pgc_fast.mesh.uv.uv_metrics)."""

# --- rust_mesh::sdf (rust_mesh/py/src/sdf.rs); validated wrappers live in pgc_fast.mesh.sdf ---

def signed_distance(
    vertices: npt.NDArray[np.float64],
    faces: _I64,
    points: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    beta: float,
    signed: bool,
    closest: bool,
) -> tuple[npt.NDArray[Any], _I64, npt.NDArray[Any] | None]:
    """→ (distance [N] (negative inside), closest face int64 [N], closest point [N,3] or None), floats in the
    points' dtype."""

def winding_number(
    vertices: npt.NDArray[np.float64],
    faces: _I64,
    points: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    beta: float,
) -> npt.NDArray[Any]:
    """→ generalised winding number [N] in the points' dtype."""

# --- rust_mesh::tangent and rust_mesh::io::hdr (rust_mesh/py/src/pbr.rs); wrapped by pgc_fast.mesh ---

def vertex_tangents(
    vertices: _F32, faces: _I64, uvs: _F32, uv_faces: _I64, normals: _F32
) -> tuple[_I64, _I64, _F32, int, float]:
    """→ (vmap int64 [K,2], split faces int64 [F,3], tangents float32 [K,4], degenerate-UV faces, their area
    fraction)."""

def read_hdr(path: str | PathLike[str]) -> _F32:
    """Radiance .hdr / OpenEXR .exr → float32 [H,W,3]."""

def write_hdr(path: str | PathLike[str], image: _F32) -> None:
    """float32 [H,W,3] → Radiance .hdr."""
