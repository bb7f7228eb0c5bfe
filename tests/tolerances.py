"""Tolerances and environment flags shared by the test suites (one place; any loosening says why).

Import as ``from tolerances import TOLERANCES`` (``tests/`` is on the path via ``pythonpath`` in
pyproject.toml); conftest.py files hold only fixtures and hooks, so several of them never collide.
"""

from __future__ import annotations

import os

import torch

# atol/rtol per dtype for comparisons of a kernel with its fp32-computed reference.
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float32: {"atol": 1e-6, "rtol": 1e-5},
    torch.float16: {"atol": 1e-3, "rtol": 1e-3},
    torch.bfloat16: {"atol": 1e-2, "rtol": 1e-2},
    torch.float64: {"atol": 1e-12, "rtol": 1e-10},
}
# hash_grid_encode dL/dx (float32): sums of ~L·8·F products of size up to scale·|g|·|feature| (scale up to ~63 in
# the tests) with terms of both signs, so its absolute error is ~scale·eps·|terms|, not eps·|result|.
TOLERANCES["hash_grid_dx"] = {"atol": 1e-4, "rtol": 1e-4}  # type: ignore[index]
# hash_grid_encode table gradient vs the float64 twin: each entry is a float32 sum of up to ~100 terms |w·g| <= ~3
# (segmented scan, then atomics, in any order), so its error is ~eps32·sum|terms| ~ 1e-5 absolute, not eps·|result|.
TOLERANCES["hash_grid_seg_table"] = {"atol": 2e-5, "rtol": 1e-5}  # type: ignore[index]
# bias_add rounds one float32 sum to x.dtype, as its twin does: bit-equal, except that Triton's CPU interpreter
# casts float32 → bfloat16 by truncation (1 bf16 ulp = 2^-7 relative) where GPUs round to nearest.
TOLERANCES["bias_add_bf16"] = {"atol": 0.0, "rtol": 2.0**-7}  # type: ignore[index]

HAS_CUDA = torch.cuda.is_available()
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


# Mesh/rasteriser tolerances (tests/mesh/). Rasterisers agree except where a pixel centre lies within
# float rounding of a triangle edge or where two depths tie: allow that fraction of pixels to differ.
MESH_TOLERANCES: dict[str, float] = {
    "raster_mismatch_frac": 2e-3,  # fraction of covered pixels whose triangle id may differ
    "raster_bary_atol": 1e-4,  # |Δu|, |Δv| on pixels with the same triangle (f64 reference vs f64→f32)
    "raster_depth_atol": 1e-5,
    # rast_db vs central differences of a perspective (non-linear) barycentric field: O(h²) truncation.
    "raster_db_fd_atol": 2e-3,
    "raster_db_fd_rtol": 0.05,
    # Positions round-trip exactly (shortest round-trip decimal in OBJ, raw f32 in PLY/GLB); GLB stores
    # 1 − v, so v comes back within 1 ulp of 1.0 (2^-24 ≈ 6e-8).
    "uv_atol": 6e-8,
    "png_atol": 0.5 / 255 + 1e-6,  # 8-bit texture quantisation
    # signed_distance vs its numpy twin: both exact in f64 (different closest-point methods), so they differ by
    # rounding only; float32 outputs add one float32 rounding (2^-24 relative).
    "sdf_f64_atol": 1e-9,
    "sdf_f32_rtol": 2e-7,
    # Hierarchical winding number (beta = 2, 3rd-order expansion) vs the exact sum: measured worst 7e-3 on a
    # 48×96 sphere next to its surface.
    "winding_atol": 1e-2,
    # Signs are compared with the exact winding number where |w − 0.5| exceeds this (the approximation's room).
    "winding_sign_margin": 0.06,
}

# Data-parallel runs (tests/pipeline/test_distributed.py): 2 processes × B views vs 1 process × 2B views differ
# only in the order of float sums (per-rank gradients summed, then halved); Adam turns a gradient difference δ
# into an update difference ~lr·δ/√v, larger where √v is small, so the texture check is looser than fp32 ulps.
DIST_TOLERANCES: dict[str, dict[str, float]] = {
    "texture": {"atol": 5e-5, "rtol": 1e-4},  # measured max 9e-6 (hash-grid table), 1e-7 (UV texels)
    "loss": {"atol": 1e-7, "rtol": 1e-5},
}
