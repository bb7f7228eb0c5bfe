"""CPU rasterisers (numpy/Rust side, nvdiffrast's conventions), UV rasterisation, dilation and vertex-colour baking."""

from __future__ import annotations

from typing import Any

import numpy as np

from pgc_fast import _rust_mesh
from pgc_fast.mesh.model import Mesh, _as_array, _as_index


def _resolution(resolution: Any, op: str) -> tuple[int, int]:
    if isinstance(resolution, (int, np.integer)):
        h = w = int(resolution)
    else:
        try:
            h, w = (int(x) for x in resolution)
        except (TypeError, ValueError):
            raise TypeError(f"{op}(): resolution must be an int or (height, width), got {resolution!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{op}(): resolution must be positive, got {(h, w)}")
    return h, w


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def rasterize(clip_pos: Any, faces: Any, resolution: int | tuple[int, int]) -> Any:
    """CPU rasteriser with exactly nvdiffrast's ``rasterize`` output convention (rayon-parallel).

    Args:
        clip_pos: float32 [B, V, 4] or [V, 4] clip-space positions (x, y, z, w); numpy or torch (CPU, or
            GPU tensors are copied to the host).
        faces: int64/int32 [F, 3] vertex indices shared by the batch.
        resolution: ``H`` or ``(H, W)``.

    Returns:
        float32 [B, H, W, 4] (B = 1 for 2-D input) of (u, v, z/w, triangle_id + 1), zeros where no
        triangle covers the pixel; a torch tensor on ``clip_pos``'s device if the input was torch.

        * the covered point is ``u·p0 + v·p1 + (1 − u − v)·p2`` (perspective-correct barycentrics);
        * pixel (row r, col c) samples NDC ((c + 0.5)/W·2 − 1, (r + 0.5)/H·2 − 1): row 0 is y = −1;
        * covered ⇔ inside the triangle with w > 0 and −1 ≤ z/w ≤ 1; both windings are drawn;
        * the smallest z/w wins; exact ties go to the lower triangle id.
        Edge pixels can differ from the GPU where a sample lies within float rounding of an edge.
    """
    op = "rasterize"
    h, w = _resolution(resolution, op)
    torch_in = _is_torch(clip_pos)
    device = clip_pos.device if torch_in else None
    pos = _as_array(clip_pos, np.float32, (None, 4) if np.ndim(clip_pos) == 2 else (None, None, 4), op, "clip_pos")
    if pos.ndim == 2:
        pos = pos[None]
    f = _as_index(faces, pos.shape[1], op, "faces")
    out = _rust_mesh.rasterize(pos, f, h, w)
    if torch_in:
        import torch

        return torch.from_numpy(out).to(device)
    return out


def rasterize_reference(clip_pos: Any, faces: Any, resolution: int | tuple[int, int]) -> Any:
    """Pure-torch (float64, brute force over triangles) twin of :func:`rasterize` for tests.

    Same arguments and convention; returns a float32 torch tensor [B, H, W, 4] on the CPU. Memory is
    O(H·W) per triangle, so keep inputs small.
    """
    import torch

    h, w = _resolution(resolution, "rasterize_reference")
    pos = torch.as_tensor(np.asarray(clip_pos.detach().cpu() if _is_torch(clip_pos) else clip_pos), dtype=torch.float64)
    if pos.ndim == 2:
        pos = pos[None]
    f = torch.as_tensor(np.asarray(faces.detach().cpu() if _is_torch(faces) else faces), dtype=torch.long)
    b = pos.shape[0]
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w * 2 - 1
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    p = torch.stack([px, py, torch.ones_like(px)], -1)  # [H, W, 3] homogeneous pixel (x, y, 1)
    out = torch.zeros(b, h, w, 4, dtype=torch.float64)
    zbuf = torch.full((b, h, w), float("inf"), dtype=torch.float64)
    for bi in range(b):
        for t in range(f.shape[0]):
            v = pos[bi, f[t]]  # [3, 4]
            m = torch.stack([v[:, 0], v[:, 1], v[:, 3]], 0)  # rows x, y, w; columns = vertices
            det = torch.linalg.det(m)
            if det == 0 or not torch.isfinite(det):
                continue
            lam = p @ torch.linalg.inv(m).T  # [H, W, 3]: λ_i = b_i / w
            s = lam.sum(-1)
            z = lam @ v[:, 2]  # z/w
            inside = (lam >= 0).all(-1) & (s > 0) & (z >= -1) & (z <= 1) & (z < zbuf[bi])
            zbuf[bi][inside] = z[inside]
            bary = lam / s[..., None]
            out[bi][inside] = torch.stack([bary[..., 0], bary[..., 1], z, torch.full_like(z, t + 1.0)], -1)[inside]
    return out.float()


def _homogeneous_bary(clip_pos: Any, faces: Any, rast: Any):
    """Per covered pixel of ``rast``: indices (b, y, x), λ = M⁻¹·(x, y, 1) [N, 3], the rows r_i/det [N, 3, 3]
    of M⁻¹ (so ∂λ_i/∂x_ndc = rows[:, i, 0]) and the triangle's clip vertices [N, 3, 4] (torch, differentiable)."""
    import torch

    pos = clip_pos if clip_pos.ndim == 3 else clip_pos[None]
    rast = torch.as_tensor(rast, device=pos.device)
    f = torch.as_tensor(faces, device=pos.device, dtype=torch.long)
    b, h, w, _ = rast.shape
    if pos.shape[0] != b or pos.shape[-1] != 4:
        raise ValueError(f"rasterize(): clip_pos must be [{b},V,4] to match rast, got {list(clip_pos.shape)}")
    tri = rast[..., 3].long() - 1
    bi, yi, xi = torch.nonzero(tri >= 0, as_tuple=True)
    t = tri[bi, yi, xi]
    v = pos[bi[:, None], f[t]]  # [N, 3 vertices, 4]
    x = (xi.to(pos.dtype) + 0.5) * 2 / w - 1
    y = (yi.to(pos.dtype) + 0.5) * 2 / h - 1
    c = v[..., [0, 1, 3]]  # columns of M: (x, y, w) per vertex, [N, 3, 3]
    r0 = torch.linalg.cross(c[:, 1], c[:, 2], dim=-1)
    r1 = torch.linalg.cross(c[:, 2], c[:, 0], dim=-1)
    r2 = torch.linalg.cross(c[:, 0], c[:, 1], dim=-1)
    det = (c[:, 0] * r0).sum(-1)
    rows = torch.stack([r0, r1, r2], 1) / det[:, None, None]  # [N, 3, 3]
    p = torch.stack([x, y, torch.ones_like(x)], -1)
    lam = (rows * p[:, None, :]).sum(-1)  # [N, 3]
    return rast, (bi, yi, xi), lam, rows, v


def rasterize_attach_grad(clip_pos: Any, faces: Any, rast: Any) -> Any:
    """Recomputes the (u, v, z/w) of a :func:`rasterize` result in torch so gradients reach ``clip_pos``.

    The CPU rasteriser is not differentiable; this re-evaluates the same homogeneous-barycentric formula
    (λ = M⁻¹·(x, y, 1), b = λ/Σλ, z/w = Σλᵢzᵢ) for the covered pixels with torch ops, giving
    nvdiffrast-style position gradients of the barycentrics and depth (visibility itself has no gradient,
    as in nvdiffrast without ``antialias``).

    Args:
        clip_pos: torch float [B, V, 4] or [V, 4] (requires_grad as needed), any device.
        faces: int64 [F, 3]; rast: [B, H, W, 4] from :func:`rasterize` with the same inputs.

    Returns:
        torch tensor [B, H, W, 4] equal to ``rast`` (up to float rounding) whose first three channels are
        differentiable w.r.t. ``clip_pos``; channel 3 (triangle id + 1) is copied.
    """
    import torch

    rast, idx, lam, _, v = _homogeneous_bary(clip_pos, faces, rast)
    bary = lam / lam.sum(-1, keepdim=True)
    z = (lam * v[..., 2]).sum(-1)
    vals = torch.stack([bary[:, 0], bary[:, 1], z], -1)
    out = torch.zeros_like(rast, dtype=vals.dtype)
    return out.index_put(idx, torch.cat([vals, rast[idx][:, 3:].to(vals.dtype)], -1))


def rasterize_db(clip_pos: Any, faces: Any, rast: Any) -> Any:
    """Image-space derivatives of the barycentrics, nvdiffrast's second ``rasterize`` output (``rast_db``).

    Args:
        clip_pos: torch float [B, V, 4] or [V, 4]; faces: int64 [F, 3]; rast: [B, H, W, 4] from
            :func:`rasterize` with the same inputs.

    Returns:
        torch tensor [B, H, W, 4] = (∂u/∂X, ∂u/∂Y, ∂v/∂X, ∂v/∂Y) per pixel (X, Y in pixels; Y grows with the
        row index, i.e. with clip y), zeros where empty. Differentiable w.r.t. ``clip_pos``; feed it to
        ``interpolate(..., rast_db=...)``-style code for mip-mapped texture lookups.
    """
    import torch

    rast, idx, lam, rows, _ = _homogeneous_bary(clip_pos, faces, rast)
    h, w = rast.shape[1], rast.shape[2]
    s = lam.sum(-1, keepdim=True)  # [N, 1]
    d = []
    for axis, scale in ((0, 2.0 / w), (1, 2.0 / h)):
        dl = rows[..., axis]  # ∂λ_i/∂ndc  [N, 3]
        db = (dl * s - lam * dl.sum(-1, keepdim=True)) / (s * s)  # quotient rule on b = λ/Σλ
        d.append(db * scale)
    vals = torch.stack([d[0][:, 0], d[1][:, 0], d[0][:, 1], d[1][:, 1]], -1)
    out = torch.zeros_like(rast, dtype=vals.dtype)
    return out.index_put(idx, vals)


def rasterize_uv(uvs: Any, uv_faces: Any, resolution: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterises UV triangles into texture space (for baking).

    Args:
        uvs: float32 [T, 2] UVs (OBJ convention); uv_faces: int64 [F, 3]; resolution: ``S`` or ``(H, W)``.

    Returns:
        ``(face_id, bary)``: int64 [H, W] face index (−1 where empty; overlaps keep the lowest face id) and
        float32 [H, W, 3] barycentric weights of the face's corners (zeros where empty). Texel (r, c)
        samples (u, v) = ((c + 0.5)/W, 1 − (r + 0.5)/H), i.e. row 0 is the top of the image.
    """
    op = "rasterize_uv"
    h, w = _resolution(resolution, op)
    uv = _as_array(uvs, np.float32, (None, 2), op, "uvs")
    if not np.isfinite(uv).all():
        raise ValueError(f"{op}(): uvs must be finite")
    f = _as_index(uv_faces, uv.shape[0], op, "uv_faces")
    return _rust_mesh.rasterize_uv(uv, f, h, w)


def dilate(texture: Any, mask: Any, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Seam padding: grows the valid region of ``texture`` by ``pixels`` rings, each new texel the mean of
    its valid 8-neighbours.

    Args:
        texture: float32 [H, W, C]; mask: bool [H, W] (True = valid); pixels: rings to add (≥ 0).

    Returns:
        ``(texture, mask)`` new arrays of the same shapes.
    """
    if not isinstance(pixels, (int, np.integer)) or pixels < 0:
        raise ValueError(f"dilate(): pixels must be a non-negative int, got {pixels!r}")
    t = np.asarray(texture)
    if t.ndim != 3:
        raise ValueError(f"dilate(): texture must be [H,W,C], got shape {list(t.shape)}")
    t = _as_array(t, np.float32, (None, None, t.shape[2]), "dilate", "texture")
    m = np.ascontiguousarray(np.asarray(mask), dtype=bool)
    if m.shape != t.shape[:2]:
        raise ValueError(f"dilate(): mask must be [H,W] = {list(t.shape[:2])}, got {list(m.shape)}")
    return _rust_mesh.dilate(t, m, int(pixels))


def bake_vertex_colors(mesh: Mesh, resolution: int | tuple[int, int], padding: int = 4) -> np.ndarray:
    """Bakes vertex colours into a texture over the mesh's UV layout.

    Args:
        mesh: needs ``colors`` [V, 3] and ``uvs``/``uv_faces``.
        resolution: ``S`` or ``(H, W)``; padding: dilation rings around charts (seam bleeding).

    Returns:
        float32 [H, W, 3] texture (row 0 = top) with colours interpolated barycentrically; texels outside
        every chart (beyond ``padding``) are 0.
    """
    m = mesh.validate("bake_vertex_colors")
    if m.colors is None or m.uvs is None:
        raise ValueError("bake_vertex_colors(): mesh must have colors and uvs/uv_faces")
    fid, bary = rasterize_uv(m.uvs, m.uv_faces, resolution)
    valid = fid >= 0
    tex = np.zeros(bary.shape[:2] + (3,), np.float32)
    corners = m.colors[m.faces[fid[valid]]]  # [N, 3 corners, 3 rgb]
    tex[valid] = np.einsum("nk,nkc->nc", bary[valid], corners)
    tex, _ = dilate(tex, valid, padding)
    return tex
