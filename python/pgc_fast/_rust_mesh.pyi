"""Type stubs for the compiled mesh core (rust_mesh/py)."""

def version() -> str:
    """Version of the compiled rust_mesh core."""

# --- rust_mesh::uv (rust_mesh/py/src/uv.rs); validated wrappers live in pgc_fast.uv ---
import numpy as np
import numpy.typing as npt

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
    """UV layout metrics (see pgc_fast.uv.uv_metrics)."""
