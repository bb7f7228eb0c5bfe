"""The mesh data model: Mesh, Material, the one Normalization (training frame ↔ input frame) and argument checks.
Imports numpy and the Rust core only.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class Material:
    """glTF metallic-roughness material. Textures are float32 [H, W, C] in [0, 1], row 0 = image top."""

    name: str = "material0"
    base_color_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    metallic_factor: float = 0.0
    roughness_factor: float = 1.0
    base_color_texture: np.ndarray | None = None  # [H, W, 3|4] float32
    metallic_roughness_texture: np.ndarray | None = None  # [H, W, 3] float32, G = roughness, B = metallic
    normal_texture: np.ndarray | None = None  # [H, W, 3] float32, tangent space (OpenGL: green = +v)
    occlusion_texture: np.ndarray | None = None  # [H, W, 1|3] float32, R = ambient visibility (GLB only)

    def _to_rust(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": str(self.name),
            "base_color_factor": [float(x) for x in self.base_color_factor],
            "metallic_factor": float(self.metallic_factor),
            "roughness_factor": float(self.roughness_factor),
        }
        for key in ("base_color_texture", "metallic_roughness_texture", "normal_texture", "occlusion_texture"):
            t = getattr(self, key)
            if t is not None:
                t = np.asarray(t)
                if t.ndim == 2:
                    t = t[:, :, None]
                if t.ndim != 3 or not 1 <= t.shape[2] <= 4 or t.shape[0] == 0 or t.shape[1] == 0:
                    raise ValueError(f"save_mesh(): material.{key} must be [H,W,C] with C in 1..4, got shape {t.shape}")
                d[key] = np.ascontiguousarray(t, dtype=np.float32)
        return d


@dataclass
class Mesh:
    """A triangle mesh of numpy arrays (CPU).

    Attributes:
        vertices: float32 [V, 3] positions.
        faces: int64 [F, 3] vertex indices (counter-clockwise = front).
        uvs: optional float32 [T, 2] texture coordinates (OBJ convention, v up).
        uv_faces: optional int64 [F, 3] indices into ``uvs`` (required iff ``uvs`` is given).
        normals: optional float32 [V, 3] unit vertex normals.
        colors: optional float32 [V, 3] vertex colours in [0, 1].
        material: optional :class:`Material`.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    material: Material | None = None

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def copy(self) -> Mesh:
        """Deep copy (arrays and material textures)."""
        m = dataclasses.replace(self)
        for f in ("vertices", "faces", "uvs", "uv_faces", "normals", "colors"):
            v = getattr(m, f)
            if v is not None:
                setattr(m, f, np.array(v, copy=True))
        if self.material is not None:
            m.material = dataclasses.replace(self.material)
        return m

    def validate(self, op: str = "Mesh") -> Mesh:
        """Returns a copy-free canonical view (float32 / int64, C-contiguous) after checking shapes,
        index ranges and finiteness. Raises ValueError naming ``op`` and the offending field."""
        v = _as_array(self.vertices, np.float32, (None, 3), op, "vertices")
        if not np.isfinite(v).all():
            raise ValueError(
                f"{op}(): vertices must be finite, got NaN/inf at rows "
                f"{np.nonzero(~np.isfinite(v).all(1))[0][:5].tolist()}"
            )
        f = _as_index(self.faces, v.shape[0], op, "faces")
        uvs = uvf = None
        if (self.uvs is None) != (self.uv_faces is None):
            raise ValueError(f"{op}(): uvs and uv_faces must be given together")
        if self.uvs is not None:
            uvs = _as_array(self.uvs, np.float32, (None, 2), op, "uvs")
            if not np.isfinite(uvs).all():
                raise ValueError(f"{op}(): uvs must be finite")
            uvf = _as_index(self.uv_faces, uvs.shape[0], op, "uv_faces")
            if uvf.shape[0] != f.shape[0]:
                raise ValueError(f"{op}(): uv_faces must have one row per face ({f.shape[0]}), got {uvf.shape[0]}")
        n = None if self.normals is None else _as_array(self.normals, np.float32, (v.shape[0], 3), op, "normals")
        c = None if self.colors is None else _as_array(self.colors, np.float32, (v.shape[0], 3), op, "colors")
        return Mesh(v, f, uvs, uvf, n, c, self.material)


def _shape_str(shape: tuple) -> str:
    return "[" + ",".join("N" if s is None else str(s) for s in shape) + "]"


def _as_array(a: Any, dtype: Any, shape: tuple, op: str, name: str) -> np.ndarray:
    """Converts to a C-contiguous array of ``dtype`` (copies only when dtype/layout differ)."""
    if a is None:
        raise ValueError(f"{op}(): {name} must be an array {_shape_str(shape)}, got None")
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch tensor → numpy (CPU copy if on GPU)
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{op}(): {name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, arr.shape, strict=False)):
        raise ValueError(f"{op}(): {name} must have shape {_shape_str(shape)}, got {list(arr.shape)}")
    if np.dtype(dtype).kind == "i" and arr.dtype.kind == "f":
        raise TypeError(f"{op}(): {name} must be an integer array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _as_index(a: Any, count: int, op: str, name: str) -> np.ndarray:
    arr = _as_array(a, np.int64, (None, 3), op, name)
    if arr.size and (arr.min() < 0 or arr.max() >= count):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise ValueError(f"{op}(): {name} must index 0..{count - 1}, got {bad}")
    return arr


@dataclass(frozen=True)
class Normalization:
    """Similarity transform ``x' = (x − center) · scale``: the training frame of a run (the original's
    ``--canonicalize``: bounding-box centre at the origin, max |coordinate| = 0.8) and :func:`normalize`'s.

    ``invert`` maps normalised positions back to the input's frame and units; exports write the input's own
    positions, so no inverse transform can lose precision.
    """

    center: np.ndarray  # float64 [3]
    scale: float

    @classmethod
    def identity(cls) -> Normalization:
        """x' = x (a run without ``mesh.canonicalize`` trains in the input's frame)."""
        return cls(center=np.zeros(3), scale=1.0)

    @classmethod
    def fit(cls, vertices: Any, bound: float = 0.8) -> Normalization:
        """Centre the bounding box of ``vertices`` [V,3] at the origin and scale max |coordinate| to ``bound``."""
        v = np.asarray(vertices, dtype=np.float64)
        center = (v.min(0) + v.max(0)) / 2
        extent = np.abs(v - center).max()
        return cls(center=center, scale=float(bound / extent) if extent > 0 else 1.0)

    def apply(self, points: Any) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return ((p - self.center) * self.scale).astype(np.float32)

    def invert(self, points: Any) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return (p / self.scale + self.center).astype(np.float32)

    @property
    def matrix(self) -> np.ndarray:
        """float64 [4, 4] homogeneous matrix of :meth:`apply`."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = -self.center * self.scale
        return m


def normalize(mesh: Mesh, bound: float = 0.8) -> tuple[Mesh, Normalization]:
    """Centres the bounding box at the origin and scales so max |coordinate| = ``bound``.

    Returns:
        ``(normalised mesh, transform)``; ``transform.invert(v)`` restores the original frame. Normals are
        unchanged (uniform scale).
    """
    m = mesh.validate("normalize")
    if m.num_vertices == 0:
        raise ValueError("normalize(): mesh must have at least one vertex")
    if not bound > 0:
        raise ValueError(f"normalize(): bound must be > 0, got {bound!r}")
    t = Normalization.fit(m.vertices, bound)
    return dataclasses.replace(m, vertices=t.apply(m.vertices)), t
