"""Helpers for the renderer tests (imported as `render_helpers`; a unique name, since tests/ has several
conftest.py files): a brute-force pure-torch rasteriser (test-only; the package's CPU backend uses
``pgc_fast.mesh.rasterize``) and tiny meshes."""

from __future__ import annotations

import math

import torch


def reference_rasterize(clip_pos: torch.Tensor, faces: torch.Tensor, resolution) -> torch.Tensor:
    """nvdiffrast's ``rasterize`` output convention, computed the textbook way: screen-space barycentrics of the
    pixel centre from NDC edge functions, then perspective correction bᵢ ∝ λᵢ/wᵢ; depth z/w interpolated
    linearly in screen space; nearest z/w wins; triangles with a vertex at w <= 0 or z/w outside [−1, 1] are
    skipped (the test scenes keep everything in front of the camera). float64 inside, float32 out."""
    if clip_pos.dim() == 2:
        clip_pos = clip_pos[None]
    H, W = resolution
    B = clip_pos.shape[0]
    c = clip_pos.double()
    f = faces.long()
    ys = (torch.arange(H, dtype=torch.float64) + 0.5) / H * 2 - 1
    xs = (torch.arange(W, dtype=torch.float64) + 0.5) / W * 2 - 1
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    out = torch.zeros(B, H, W, 4, dtype=torch.float64)
    depth = torch.full((B, H, W), math.inf, dtype=torch.float64)
    for b in range(B):
        for t in range(f.shape[0]):
            v = c[b, f[t]]
            w = v[:, 3]
            if (w <= 0).any():
                continue
            nx, ny, nz = v[:, 0] / w, v[:, 1] / w, v[:, 2] / w
            area = (nx[1] - nx[0]) * (ny[2] - ny[0]) - (ny[1] - ny[0]) * (nx[2] - nx[0])
            if area.abs() < 1e-18:
                continue
            l0 = ((nx[1] - px) * (ny[2] - py) - (ny[1] - py) * (nx[2] - px)) / area
            l1 = ((nx[2] - px) * (ny[0] - py) - (ny[2] - py) * (nx[0] - px)) / area
            l2 = 1 - l0 - l1
            inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
            z = l0 * nz[0] + l1 * nz[1] + l2 * nz[2]
            inside &= (z >= -1) & (z <= 1) & (z < depth[b])
            q = torch.stack([l0 / w[0], l1 / w[1], l2 / w[2]], dim=-1)
            q = q / q.sum(-1, keepdim=True)
            depth[b] = torch.where(inside, z, depth[b])
            vals = torch.stack([q[..., 0], q[..., 1], z, torch.full_like(z, t + 1.0)], dim=-1)
            out[b] = torch.where(inside[..., None], vals, out[b])
    return out.float()


def icosphere(subdiv: int = 1, radius: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """Outward-oriented icosphere (counter-clockwise seen from outside), float32 [V,3], int64 [F,3]."""
    t = (1 + 5**0.5) / 2
    v = torch.tensor(
        [
            [-1, t, 0],
            [1, t, 0],
            [-1, -t, 0],
            [1, -t, 0],
            [0, -1, t],
            [0, 1, t],
            [0, -1, -t],
            [0, 1, -t],
            [t, 0, -1],
            [t, 0, 1],
            [-t, 0, -1],
            [-t, 0, 1],
        ],
        dtype=torch.float64,
    )
    f = [
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ]
    verts = [tuple(x) for x in torch.nn.functional.normalize(v, dim=-1).tolist()]
    for _ in range(subdiv):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                p = torch.nn.functional.normalize(torch.tensor(verts[a]) + torch.tensor(verts[b]), dim=0)
                verts.append(tuple(p.tolist()))
                cache[key] = len(verts) - 1
            return cache[key]

        nf = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            nf += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = nf
    V = torch.tensor(verts, dtype=torch.float32) * radius
    return V, torch.tensor(f, dtype=torch.int64)


def uv_cube(half: float = 0.5) -> dict[str, torch.Tensor]:
    """A cube with one UV chart per face (3×2 layout, 0.03 margins): vertices float32 [24,3], faces int64 [12,3]
    (outward, counter-clockwise), uvs float32 [24,2] (uv_faces = faces)."""
    verts, uvs, faces = [], [], []
    axes = [(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]
    m = 0.03
    for i, (ax, sgn) in enumerate(axes):
        n = torch.zeros(3)
        n[ax] = sgn
        a = torch.zeros(3)
        a[(ax + 1) % 3] = 1.0
        b = torch.linalg.cross(n, a)
        col, row = i % 3, i // 3
        base = len(verts)
        for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            verts.append((n + s * a + t * b) * half)
            uvs.append([(col + m + (s + 1) / 2 * (1 - 2 * m)) / 3, (row + m + (t + 1) / 2 * (1 - 2 * m)) / 2])
        faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return {
        "vertices": torch.stack(verts).float(),
        "faces": torch.tensor(faces, dtype=torch.int64),
        "uvs": torch.tensor(uvs, dtype=torch.float32),
    }
