"""Mesh file I/O (OBJ/MTL, PLY, GLB/glTF) through the Rust core: ``load_mesh``, ``save_mesh``; HDR images for
environment lights: ``read_hdr``, ``write_hdr``."""

from __future__ import annotations

import os
import warnings

import numpy as np

from pgc_fast import _rust_mesh
from pgc_fast.mesh.model import Material, Mesh, PathLike


def load_mesh(path: PathLike, allow_external_files: bool = False) -> Mesh:
    """Reads a mesh from ``.obj`` (+ ``.mtl`` and textures), ``.ply`` or ``.glb``/``.gltf``.

    OBJ: vertex colours (``v x y z r g b``), negative indices, polygons (fan-triangulated), ``vt``/``vn``
    optional per face; the first material used is kept (a warning lists others). PLY: ascii and binary
    (little/big endian), uchar or float colours, per-vertex or per-corner (``texcoord``) UVs. glTF:
    triangle primitives of the default scene with node transforms, first material.

    Files the mesh refers to (``mtllib``, texture maps, glTF buffers and images) must be relative paths
    inside the mesh file's folder (no ``..`` or symlink escape, no absolute path, no ``file:`` URI) unless
    ``allow_external_files``: a library or buffer elsewhere is a ValueError, a texture elsewhere is dropped
    with a warning (like a missing one). Only regular files are read (no devices, FIFOs), each once.
    Limits (``Limits`` in rust_mesh/src/io/refs.rs), each a ValueError: 4096 references of each kind,
    2^26 pixels per texture (checked before decoding), 2 GiB read, 2^25 vertices, 2^26 faces.

    Returns:
        :class:`Mesh` with float32/int64 arrays.

    Raises:
        OSError: the file (or a file it references) cannot be read.
        ValueError: malformed contents (the message names the file and line or byte offset), a refused
            reference, a limit exceeded, or a mesh with no usable face (empty, no faces, all degenerate).
    """
    d = _rust_mesh.load_mesh(os.fspath(path), bool(allow_external_files))
    for w in d.pop("warnings"):
        warnings.warn(w, stacklevel=2)
    md = d.pop("material")
    mat = None
    if md is not None:
        mat = Material(
            name=md["name"],
            base_color_factor=tuple(md["base_color_factor"]),
            metallic_factor=md["metallic_factor"],
            roughness_factor=md["roughness_factor"],
            base_color_texture=md["base_color_texture"],
            metallic_roughness_texture=md["metallic_roughness_texture"],
            normal_texture=md["normal_texture"],
            occlusion_texture=md.get("occlusion_texture"),
        )
    return Mesh(material=mat, **d)


def save_mesh(mesh: Mesh, path: PathLike) -> None:
    """Writes ``mesh``; the format comes from the extension.

    * ``.obj``: OBJ + ``<stem>.mtl`` + ``<stem>_kd.png`` / ``_pm.png`` / ``_pr.png`` / ``_normal.png``.
    * ``.ply``: binary little-endian; a base-colour texture goes to ``<stem>_kd.png`` (MeshLab's
      ``comment TextureFile``).
    * ``.glb``: binary glTF 2.0 with embedded PNG textures, normals, UVs, colours, PBR material.

    Textures are quantised to 8 bits. Raises ValueError for invalid meshes, OSError on write failure.
    """
    m = mesh.validate("save_mesh")
    _rust_mesh.save_mesh(
        os.fspath(path),
        m.vertices,
        m.faces,
        m.uvs,
        m.uv_faces,
        m.normals,
        m.colors,
        None if m.material is None else m.material._to_rust(),
    )


def read_hdr(path: PathLike) -> np.ndarray:
    """Reads a high-dynamic-range image: Radiance ``.hdr`` (RGBE) or OpenEXR ``.exr``, recognised from the
    contents (the Rust ``image`` crate's decoders, rust_mesh/src/io/hdr.rs).

    Returns float32 [H, W, 3] linear RGB, row 0 = top (alpha dropped). Raises OSError when the file cannot be
    read and ValueError naming the file for anything else: another format (PNG, JPEG, …), a corrupt file,
    non-finite pixels or more than 2^27 pixels (checked before decoding)."""
    return _rust_mesh.read_hdr(os.fspath(path))


def write_hdr(path: PathLike, image: np.ndarray) -> None:
    """Writes float [H, W, 3] linear RGB (row 0 = top) as a Radiance ``.hdr`` file (negative values clamp to 0)."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype.kind != "f" or not np.isfinite(a).all():
        raise ValueError(f"write_hdr(): image must be a finite float array [H,W,3], got {a.dtype} {list(a.shape)}")
    _rust_mesh.write_hdr(os.fspath(path), np.ascontiguousarray(a, np.float32))
