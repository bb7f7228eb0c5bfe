"""Vertex tangents (rust_mesh/src/tangent.rs through pgc_fast.mesh.vertex_tangents), the GLB's TANGENT attribute
and occlusion texture, and HDR images (issue 18, items 2 and 4)."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from pgc_fast.mesh import Material, Mesh, load_mesh, read_hdr, save_mesh, vertex_normals, vertex_tangents, write_hdr


def _uv_sphere(n_lat: int = 12, n_lon: int = 24) -> Mesh:
    """A UV sphere with a lat-long atlas (u = longitude, v = latitude up) and a seam column of duplicated UVs."""
    verts, uvs, faces, uv_faces = [], [], [], []
    for i in range(n_lat + 1):
        th = math.pi * i / n_lat
        for j in range(n_lon + 1):
            ph = 2 * math.pi * j / n_lon
            if j < n_lon:
                verts.append([math.sin(th) * math.cos(ph), math.cos(th), -math.sin(th) * math.sin(ph)])
            uvs.append([j / n_lon, 1 - i / n_lat])
    vid = lambda i, j: i * n_lon + j % n_lon
    tid = lambda i, j: i * (n_lon + 1) + j
    for i in range(n_lat):
        for j in range(n_lon):
            a, b, c, d = (i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)
            for tri in ((a, b, c), (a, c, d)):
                faces.append([vid(*p) for p in tri])
                uv_faces.append([tid(*p) for p in tri])
    v = np.asarray(verts, np.float32)
    f = np.asarray(faces, np.int64)
    keep = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1) > 1e-9
    return Mesh(v, f[keep], np.asarray(uvs, np.float32), np.asarray(uv_faces, np.int64)[keep])


def test_sphere_tangents_follow_the_longitude_and_are_right_handed():
    m = _uv_sphere()
    fr = vertex_tangents(m)
    assert fr.degenerate_faces == 0 and fr.tangents.shape[1] == 4
    p = m.vertices[fr.vmap[:, 0]]
    n = vertex_normals(m.vertices, m.faces)[fr.vmap[:, 0]]
    t = fr.tangents[:, :3]
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert np.abs((t * n).sum(1)).max() < 1e-5
    # Away from the poles, +u runs along increasing longitude: d/dφ of (sin θ cos φ, ·, −sin θ sin φ).
    away = np.abs(p[:, 1]) < 0.8
    east = np.stack([-p[away, 2], np.zeros(away.sum()), p[away, 0]], 1)
    east /= np.linalg.norm(east, axis=1, keepdims=True)
    assert (t[away] * -east).sum(1).min() > 0.98  # u grows with φ, which turns the other way here
    # v grows upwards: the bitangent w·(n × t) points up on the sphere's side, so w = +1 everywhere.
    b = fr.tangents[:, 3:4] * np.cross(n, t)
    assert (b[away][:, 1] > 0).all() and set(np.unique(fr.tangents[:, 3])) == {1.0}
    # Vertices on the seam are split by UV (two (position, uv) pairs) and get the same frame on both sides.
    assert len(fr.vmap) > m.num_vertices


def test_mirrored_uvs_flip_the_handedness():
    m = _uv_sphere()
    flipped = Mesh(m.vertices, m.faces, m.uvs * np.array([-1.0, 1.0], np.float32), m.uv_faces)
    assert set(np.unique(vertex_tangents(flipped).tangents[:, 3])) == {-1.0}


def test_degenerate_uvs_are_refused_naming_the_mesh():
    m = _uv_sphere()
    flat = Mesh(m.vertices, m.faces, np.zeros_like(m.uvs), m.uv_faces)
    with pytest.raises(
        ValueError, match=r"panda\.obj: \d+ of \d+ faces \(100\.0% of the surface\) have degenerate UVs"
    ):
        vertex_tangents(flat, "panda.obj")
    with pytest.raises(ValueError, match="has no UVs"):
        vertex_tangents(Mesh(m.vertices, m.faces), "x.ply")
    # A few zero-area UV triangles (under 1 % of the area) borrow their neighbours' frames.
    few = m.uvs.copy()
    few[m.uv_faces[0]] = few[m.uv_faces[0][0]]
    fr = vertex_tangents(Mesh(m.vertices, m.faces, few, m.uv_faces))
    assert 1 <= fr.degenerate_faces and fr.degenerate_area_fraction < 0.01


def _glb_json_and_bin(path):
    data = path.read_bytes()
    (jlen,) = struct.unpack_from("<I", data, 12)
    doc = json.loads(data[20 : 20 + jlen])
    return doc, data[20 + jlen + 8 :]


def _accessor(doc, binary, idx, width):
    acc = doc["accessors"][idx]
    view = doc["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(binary, np.float32, acc["count"] * width, start).reshape(-1, width)


def test_glb_carries_the_tangents_it_was_baked_against_and_the_occlusion_map(tmp_path):
    m = _uv_sphere()
    m.normals = vertex_normals(m.vertices, m.faces)
    tex = np.full((4, 4, 3), 0.5, np.float32)
    m.material = Material(normal_texture=tex, occlusion_texture=np.full((4, 4, 1), 0.25, np.float32))
    save_mesh(m, tmp_path / "s.glb")
    doc, binary = _glb_json_and_bin(tmp_path / "s.glb")
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]
    got = _accessor(doc, binary, attrs["TANGENT"], 4)
    fr = vertex_tangents(m)
    np.testing.assert_allclose(got, fr.tangents, atol=1e-6)  # same split, same order, same frames
    np.testing.assert_allclose(_accessor(doc, binary, attrs["POSITION"], 3), m.vertices[fr.vmap[:, 0]])
    mat = doc["materials"][0]
    assert "normalTexture" in mat and "occlusionTexture" in mat
    back = load_mesh(tmp_path / "s.glb")
    assert back.material is not None and back.material.occlusion_texture is not None
    np.testing.assert_allclose(back.material.occlusion_texture[..., 0], 0.25, atol=1 / 255)
    m.material = Material(base_color_texture=tex)  # no normal map: no TANGENT
    save_mesh(m, tmp_path / "t.glb")
    assert "TANGENT" not in _glb_json_and_bin(tmp_path / "t.glb")[0]["meshes"][0]["primitives"][0]["attributes"]


def test_hdr_round_trip_and_refusals(tmp_path):
    g = np.random.default_rng(0)
    img = (g.random((6, 12, 3)) * np.array([1.0, 20.0, 400.0])).astype(np.float32)
    write_hdr(tmp_path / "a.hdr", img)
    back = read_hdr(tmp_path / "a.hdr")
    assert back.shape == (6, 12, 3) and back.dtype == np.float32
    # RGBE: 8-bit mantissas sharing the largest channel's exponent.
    assert (np.abs(back - img) <= img.max(-1, keepdims=True) / 128 + 1e-6).all()
    with pytest.raises(ValueError, match="finite"):
        write_hdr(tmp_path / "b.hdr", np.full((2, 2, 3), np.nan, np.float32))
    (tmp_path / "c.exr").write_text("not an image")
    with pytest.raises(ValueError, match=r"c\.exr.*not a high-dynamic-range image \(unrecognised contents\)"):
        read_hdr(tmp_path / "c.exr")
    with pytest.raises(OSError):
        read_hdr(tmp_path / "missing.hdr")
    (tmp_path / "d.hdr").mkdir()
    with pytest.raises(ValueError, match=r"d\.hdr.*not a regular file"):
        read_hdr(tmp_path / "d.hdr")
