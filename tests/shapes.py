"""Small shapes shared by tests (on the test path via pyproject's ``pythonpath``): a cube, analytic meshes (sphere,
torus, an open cup) as pgc_fast.mesh.Mesh, and the mesh Chamfer distance the DMTet tests use."""

from __future__ import annotations

import numpy as np
import torch

from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.mesh import Mesh
from pgc_fast.mesh.chamfer import mesh_chamfer_distance


def _outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces wound so that the mesh's signed volume is positive (outward normals)."""
    v = vertices[faces]
    vol = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum()
    return faces if vol > 0 else faces[:, [0, 2, 1]]


def _grid_faces(n: int, m: int, wrap_m: bool) -> np.ndarray:
    f = []
    for i in range(n):
        for j in range(m if wrap_m else m - 1):
            a, b = i * m + j, ((i + 1) % n) * m + j
            c, d = ((i + 1) % n) * m + (j + 1) % m, i * m + (j + 1) % m
            f += [[a, b, c], [a, c, d]]
    return np.asarray(f, np.int64)


def torus(major: float = 0.45, minor: float = 0.2, n: int = 64, m: int = 32) -> Mesh:
    """A torus about the Z axis (the hole faces ±Z), centred at the origin."""
    u = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    w = np.linspace(0, 2 * np.pi, m, endpoint=False)[None, :]
    ring = major + minor * np.cos(w)
    p = np.stack(np.broadcast_arrays(ring * np.cos(u), ring * np.sin(u), minor * np.sin(w) + 0 * u), -1)
    v = p.reshape(-1, 3).astype(np.float32)
    return Mesh(vertices=v, faces=_outward(v, _grid_faces(n, m, True)))


def sphere(radius: float = 0.6, n: int = 48, m: int = 24) -> Mesh:
    """A UV sphere about the Y axis with poles."""
    th = np.linspace(0, np.pi, m + 1)[1:-1][None, :]
    ph = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    p = np.stack(np.broadcast_arrays(np.sin(th) * np.sin(ph), np.cos(th) + 0 * ph, np.sin(th) * np.cos(ph)), -1)
    v = np.concatenate([p.reshape(-1, 3), [[0, 1, 0], [0, -1, 0]]]) * radius
    k = m - 1  # rings per meridian
    f = _grid_faces(n, k, False).tolist()
    top, bot = len(v) - 2, len(v) - 1
    for i in range(n):
        f += [[top, ((i + 1) % n) * k, i * k], [bot, i * k + k - 1, ((i + 1) % n) * k + k - 1]]
    v = v.astype(np.float32)
    return Mesh(vertices=v, faces=_outward(v, np.asarray(f, np.int64)))


def open_cup(segments: int = 48, rings: int = 32) -> Mesh:
    """The demo vase without its top cap: an open surface (a hole of radius ~0.4 at the top)."""
    m = make_demo_mesh(segments, rings)
    top = len(m.vertices) - 1
    keep = ~(m.faces == top).any(1)
    return Mesh(vertices=m.vertices, faces=m.faces[keep], colors=m.colors)


def chamfer(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor], n: int = 20000) -> float:
    """Symmetric Chamfer distance between two meshes ((vertices, faces) each): pgc_fast.mesh.chamfer's (the mean of
    the two directed mean distances from ``n`` area-uniform samples of one surface to the other surface)."""
    return mesh_chamfer_distance(a[0].detach().cpu(), a[1].cpu(), b[0].detach().cpu(), b[1].cpu(), num_samples=n)


def as_tensors(mesh: Mesh) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.asarray(mesh.vertices, np.float32)), torch.from_numpy(np.asarray(mesh.faces, np.int64))


def cube(lo: float = 0.0, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [8, 3] float32, faces [12, 3] int64) of the axis-aligned cube [lo, hi]³, outward winding;
    vertex index = 4·x + 2·y + z with x, y, z ∈ {0, 1}."""
    v = np.array([[x, y, z] for x in (lo, hi) for y in (lo, hi) for z in (lo, hi)], np.float32)
    f = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1]]
        + [[2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
        np.int64,
    )
    return v, f
