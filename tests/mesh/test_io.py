"""Mesh I/O: round trips through every format, independent readers/writers (trimesh), hand-written
OBJ/PLY variants, and malformed files (clear ValueError/OSError naming file and line, never a panic)."""

from __future__ import annotations

import re
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from shapes import cube

from pgc_fast.mesh import Material, Mesh, load_mesh, save_mesh
from tolerances import MESH_TOLERANCES

PANDA = Path(__file__).resolve().parents[3] / "shared" / "data" / "panda_spear_shield.obj"
if not PANDA.exists():
    PANDA = Path("/work/shared/data/panda_spear_shield.obj")
PNG_ATOL = MESH_TOLERANCES["png_atol"]


def full_mesh(seed: int = 0, uv_split: bool = True) -> Mesh:
    """A cube (8 vertices, 12 faces) with separate UV indexing, normals, colours and a PBR material."""
    rng = np.random.default_rng(seed)
    v, f = cube(-0.5, 0.5)
    v += rng.normal(0, 0.01, v.shape).astype(np.float32)
    n = v / np.linalg.norm(v, axis=1, keepdims=True)
    c = rng.random((8, 3)).astype(np.float32)
    if uv_split:
        uvs = rng.random((36, 2)).astype(np.float32)
        uvf = np.arange(36, dtype=np.int64).reshape(12, 3)
    else:
        uvs = rng.random((8, 2)).astype(np.float32)
        uvf = f.copy()
    q = lambda *s: (np.round(rng.random(s) * 255) / 255).astype(np.float32)  # 8-bit exact textures
    mat = Material(
        name="mat_a",
        base_color_factor=(1.0, 0.5, 0.25, 1.0),
        metallic_factor=0.5,
        roughness_factor=0.75,
        base_color_texture=q(16, 8, 3),
        metallic_roughness_texture=np.concatenate([np.ones((16, 8, 1), np.float32), q(16, 8, 2)], 2),
        normal_texture=q(4, 4, 3),
    )
    return Mesh(v, f, uvs, uvf, n.astype(np.float32), c, mat)


def corners(m: Mesh) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-corner positions and UVs: comparable across formats that split or re-index vertices."""
    pos = m.vertices[m.faces]
    uv = None if m.uvs is None else m.uvs[m.uv_faces]
    return pos, uv


@pytest.mark.parametrize("ext", ["obj", "ply", "glb"])
@pytest.mark.parametrize("uv_split", [True, False])
def test_round_trip_all_attributes(tmp_path, ext, uv_split):
    m = full_mesh(uv_split=uv_split)
    p = tmp_path / f"mesh.{ext}"
    save_mesh(m, p)
    r = load_mesh(p)
    pos, uv = corners(m)
    rpos, ruv = corners(r)
    np.testing.assert_array_equal(rpos, pos)
    np.testing.assert_allclose(ruv, uv, atol=MESH_TOLERANCES["uv_atol"], rtol=0)
    assert r.faces.dtype == np.int64 and r.vertices.dtype == np.float32
    # per-corner normals and colours
    np.testing.assert_allclose(r.normals[r.faces], m.normals[m.faces], atol=1e-6)
    catol = 0.5 / 255 + 1e-6 if ext == "ply" else 1e-7  # PLY stores uchar colours
    np.testing.assert_allclose(r.colors[r.faces], m.colors[m.faces], atol=catol)
    assert r.material is not None
    np.testing.assert_allclose(r.material.base_color_texture, m.material.base_color_texture, atol=PNG_ATOL)
    if ext != "ply":  # PLY carries only a base-colour texture
        np.testing.assert_allclose(r.material.base_color_factor, m.material.base_color_factor)
        assert r.material.metallic_factor == pytest.approx(0.5)
        assert r.material.roughness_factor == pytest.approx(0.75)
        np.testing.assert_allclose(
            r.material.metallic_roughness_texture[..., 1:],
            m.material.metallic_roughness_texture[..., 1:],
            atol=PNG_ATOL,
        )
        np.testing.assert_allclose(r.material.normal_texture, m.material.normal_texture, atol=PNG_ATOL)


def test_glb_is_read_by_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    m = full_mesh()
    p = tmp_path / "mesh.glb"
    save_mesh(m, p)
    t = trimesh.load(p, process=False, force="mesh")
    np.testing.assert_allclose(t.vertices[t.faces], corners(m)[0], atol=1e-7)
    # trimesh flips glTF's v back to the OBJ convention, like we do.
    np.testing.assert_allclose(t.visual.uv[t.faces], corners(m)[1], atol=1e-6)
    mat = t.visual.material
    img = np.asarray(mat.baseColorTexture.convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(img, m.material.base_color_texture, atol=PNG_ATOL)
    assert mat.metallicFactor == pytest.approx(0.5) and mat.roughnessFactor == pytest.approx(0.75)
    assert mat.normalTexture is not None and mat.metallicRoughnessTexture is not None


def test_obj_is_read_by_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    m = full_mesh()
    save_mesh(m, tmp_path / "m.obj")
    # (maintain_order=True would make trimesh drop the UV split; the default splits vertices at seams)
    t = trimesh.load(tmp_path / "m.obj", process=False, force="mesh")
    np.testing.assert_allclose(t.vertices[t.faces], corners(m)[0], atol=1e-6)
    np.testing.assert_allclose(t.visual.uv[t.faces], corners(m)[1], atol=1e-6)


@pytest.mark.parametrize("ext", ["ply", "glb", "obj"])
def test_reads_trimesh_written_files(tmp_path, ext):
    trimesh = pytest.importorskip("trimesh")
    rng = np.random.default_rng(1)
    t = trimesh.creation.icosphere(subdivisions=2)
    t.visual.vertex_colors = (rng.random((len(t.vertices), 4)) * 255).astype(np.uint8)
    p = tmp_path / f"t.{ext}"
    t.export(p)
    r = load_mesh(p)
    np.testing.assert_allclose(r.vertices[r.faces], t.vertices[t.faces], atol=1e-6)
    if ext in ("ply", "glb"):
        np.testing.assert_allclose(r.colors[r.faces], t.visual.vertex_colors[t.faces][..., :3] / 255, atol=1e-6)


def test_obj_features(tmp_path):
    (tmp_path / "tex.png").write_bytes(_png_2x1())
    (tmp_path / "a.mtl").write_text("# c\nnewmtl red\nKd 1 0 0\nmap_Kd -s 1 1 1 tex.png\nnewmtl other\nKd 0 1 0\n")
    (tmp_path / "a.obj").write_text(
        "# comment\nmtllib a.mtl\no thing\n"
        "v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 1 1 0 0 0 1\nv 0 1 0 1 1 1\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1 0\nvn 0 0 1\n"
        "usemtl red\ns 1\ng grp\n"
        "f -4/-4/-1 -3/-3/-1 -2/-2/-1 -1/-1/-1\n"  # quad with negative indices → 2 triangles
        "l 1 2\n"
        "f 1 3 4 # trailing comment\n"  # no uv/normal on this face
    )
    with pytest.warns(UserWarning, match="no texture coordinates"):
        m = load_mesh(tmp_path / "a.obj")
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
    np.testing.assert_array_equal(m.uv_faces[:2], [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(m.uvs[m.uv_faces[2]], np.zeros((3, 2)))
    np.testing.assert_array_equal(m.colors, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    assert m.normals is not None and np.allclose(m.normals, [0, 0, 1])
    assert m.material.name == "red" and m.material.base_color_factor[:3] == (1.0, 0.0, 0.0)
    np.testing.assert_allclose(m.material.base_color_texture, [[[1, 0, 0], [0, 0, 1]]])


def test_obj_255_colours_and_extra_values(tmp_path):
    p = tmp_path / "c.obj"
    p.write_text("v 0 0 0 255 0 0\nv 1 0 0 0 255 0\nv 0 1 0 0 0 255\nvt 0.5 0.5 0\nf 1/1 2/1 3/1\n")
    m = load_mesh(p)
    np.testing.assert_allclose(m.colors, np.eye(3))


def _png_2x1() -> bytes:
    from io import BytesIO

    from PIL import Image

    b = BytesIO()
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).save(b, format="PNG")
    return b.getvalue()


def _write_ply(
    path: Path, fmt: str, color_type: str, with_uv: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Independent PLY writer (quads + triangles, an extra element and property)."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    c8 = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30]], np.uint8)
    polys = [[0, 1, 2, 3], [0, 1, 4]]
    ctype = "uchar" if color_type == "uchar" else "float"
    head = [
        "ply",
        f"format {fmt} 1.0",
        "comment test",
        f"element vertex {len(v)}",
        "property float x",
        "property float y",
        "property float z",
        "property float quality",
        f"property {ctype} red",
        f"property {ctype} green",
        f"property {ctype} blue",
        f"element face {len(polys)}",
        "property list uchar int vertex_indices",
        "element edge 1",
        "property int vertex1",
        "property int vertex2",
        "end_header",
    ]
    cols = c8 if ctype == "uchar" else c8.astype(np.float32) / 255
    if fmt == "ascii":
        body = [" ".join(map(str, [*v[i], 0.5, *cols[i]])) for i in range(len(v))]
        body += [" ".join(map(str, [len(p), *p])) for p in polys] + ["0 1"]
        path.write_text("\n".join(head + body) + "\n")
    else:
        e = "<" if fmt == "binary_little_endian" else ">"
        out = ("\n".join(head) + "\n").encode()
        cf = "B" * 3 if ctype == "uchar" else "fff"
        for i in range(len(v)):
            out += struct.pack(e + "ffff" + cf, *v[i], 0.5, *cols[i])
        for p in polys:
            out += struct.pack(e + "B" + "i" * len(p), len(p), *p)
        out += struct.pack(e + "ii", 0, 1)
        path.write_bytes(out)
    return v, c8.astype(np.float32) / 255, np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4]])


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("color_type", ["uchar", "float"])
def test_ply_variants(tmp_path, fmt, color_type):
    p = tmp_path / "x.ply"
    v, c, f = _write_ply(p, fmt, color_type)
    m = load_mesh(p)
    np.testing.assert_array_equal(m.vertices, v)
    np.testing.assert_array_equal(m.faces, f)
    np.testing.assert_allclose(m.colors, c, atol=1e-7)


def test_panda_loads_like_trimesh():
    trimesh = pytest.importorskip("trimesh")
    m = load_mesh(PANDA)
    t = trimesh.load(PANDA, process=False, force="mesh", maintain_order=True)
    assert m.faces.shape == (62134, 3)
    np.testing.assert_array_equal(m.vertices, np.asarray(t.vertices, np.float32))
    np.testing.assert_array_equal(m.faces, t.faces)


# ------------------------------------------------------------------------------------------------ bad input

BAD_OBJ = {
    "bad index": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", r"bad\.obj:4: vertex index 4 out of range"),
    "zero index": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", r"bad\.obj:4: vertex index 0"),
    "nan": ("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", r"bad\.obj:2: vertex position is not finite"),
    "junk number": ("v 0 0 0\nv 1 0x 0\n", r"bad\.obj:2: expected a number"),
    "short v": ("v 0 0\n", r"bad\.obj:1: 'v' needs x y z"),
    "two corners": ("v 0 0 0\nv 1 0 0\nf 1 2\n", r"bad\.obj:3: a face needs at least 3 corners"),
    "bad uv index": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/2 2/1 3/1\n", r"bad\.obj:5: texture index 2 out of range"),
    "missing mtl": ("mtllib nope.mtl\nv 0 0 0\n", r"bad\.obj:1: cannot read mtllib"),
}


@pytest.mark.parametrize("case", list(BAD_OBJ))
def test_bad_obj_names_file_and_line(tmp_path, case):
    text, msg = BAD_OBJ[case]
    p = tmp_path / "bad.obj"
    p.write_text(text)
    with pytest.raises(ValueError, match=msg):
        load_mesh(p)


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(OSError, match="nope.obj"):
        load_mesh(tmp_path / "nope.obj")
    with pytest.raises(ValueError, match=r"load_mesh\(\): path must end in"):
        load_mesh(tmp_path / "x.stl")
    with pytest.raises(ValueError, match=r"save_mesh\(\): path must end in"):
        save_mesh(full_mesh(), tmp_path / "x.fbx")


def test_bad_ply_and_glb_messages(tmp_path):
    p = tmp_path / "t.ply"
    _write_ply(p, "binary_little_endian", "uchar")
    data = p.read_bytes()
    p.write_bytes(data[:-12])
    with pytest.raises(ValueError, match=r"t\.ply: byte \d+: unexpected end of file"):
        load_mesh(p)
    _write_ply(p, "ascii", "uchar")
    p.write_text(p.read_text().replace("4 0 1 2 3", "4 0 1 2 9"))
    with pytest.raises(ValueError, match=r"t\.ply:\d+: face 0: vertex index 9 out of range"):
        load_mesh(p)
    g = tmp_path / "m.glb"
    save_mesh(full_mesh(), g)
    g.write_bytes(g.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"m\.glb"):
        load_mesh(g)


def test_save_rejects_invalid_meshes(tmp_path):
    m = full_mesh()
    m.faces = m.faces.copy()
    m.faces[0, 0] = 99
    with pytest.raises(ValueError, match=r"save_mesh\(\): faces must index"):
        save_mesh(m, tmp_path / "x.obj")
    m = full_mesh()
    m.vertices[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"save_mesh\(\): vertices must be finite"):
        save_mesh(m, tmp_path / "x.glb")
    with pytest.raises(OSError):
        save_mesh(full_mesh(), tmp_path / "no_dir" / "x.glb")


def _mutations(data: bytes, n: int, seed: int):
    rng = np.random.default_rng(seed)
    arr = np.frombuffer(data, np.uint8)
    specials = [b"-", b"0", b"9", b"/", b" ", b"\n", b"nan", b"1e38", b"-99999999", b"\xff", b"\x00"]
    for i in range(n):
        kind = i % 4
        if kind == 0:  # truncate
            yield data[: int(rng.integers(0, len(data)))]
        elif kind == 1:  # flip random bytes
            a = arr.copy()
            idx = rng.integers(0, len(a), size=int(rng.integers(1, 8)))
            a[idx] = rng.integers(0, 256, size=len(idx))
            yield a.tobytes()
        elif kind == 2:  # insert a special token
            k = int(rng.integers(0, len(data)))
            yield data[:k] + specials[int(rng.integers(len(specials)))] + data[k:]
        else:  # delete a range
            k = int(rng.integers(0, len(data)))
            yield data[:k] + data[k + int(rng.integers(1, 16)) :]


def _load_each(blobs, p) -> dict[str, int]:
    """Write each blob to ``p`` and load it: it loads or raises ValueError/OSError, within 2 s; never a panic."""
    outcomes = {"ok": 0, "error": 0}
    for i, blob in enumerate(blobs):
        p.write_bytes(blob)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load_mesh(p)
            outcomes["ok"] += 1
        except (ValueError, OSError):
            outcomes["error"] += 1
        except BaseException as e:  # noqa: BLE001 - a Rust panic surfaces as pyo3 PanicException (BaseException)
            pytest.fail(f"mutation {i}: {type(e).__name__}: {e}")
        assert time.perf_counter() - start < 2.0, f"mutation {i} took too long"
    return outcomes


@pytest.mark.parametrize("ext", ["obj", "ply", "glb"])
def test_fuzzed_files_never_panic_or_hang(tmp_path, ext):
    """1000 mutated/truncated files per format: each loads or raises ValueError/OSError, quickly."""
    m = full_mesh()
    m.material = Material(base_color_texture=np.zeros((2, 2, 3), np.float32))
    src = tmp_path / f"src.{ext}"
    save_mesh(m, src)
    if ext == "ply":  # exercise the ascii parser too
        (tmp_path / "a.ply").write_bytes(b"")
        _write_ply(tmp_path / "a.ply", "ascii", "uchar")
    data = src.read_bytes()
    t0 = time.perf_counter()
    blobs = _mutations(data, 1000, seed=hash(ext) % 1000)
    if ext == "ply":  # every other file a mutation of the ascii one
        ascii_ply = (tmp_path / "a.ply").read_bytes()
        blobs = (next(_mutations(ascii_ply, 1, seed=i)) if i % 2 else b for i, b in enumerate(blobs))
    outcomes = _load_each(blobs, tmp_path / f"fuzz.{ext}")
    assert outcomes["error"] > 100, outcomes
    assert time.perf_counter() - t0 < 60


def test_gltf_scene_transforms_and_data_uri(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box()
    sphere = trimesh.creation.icosphere(subdivisions=1)
    scene = trimesh.Scene()
    rot = trimesh.transformations.rotation_matrix(0.7, [0, 1, 1])
    rot[:3, 3] = [1.0, -2.0, 0.5]
    scene.add_geometry(box, transform=rot)
    scene.add_geometry(sphere, transform=trimesh.transformations.scale_matrix(2.0))
    p = tmp_path / "scene.glb"
    scene.export(p)
    m = load_mesh(p)
    flat = scene.to_mesh()  # world-space concatenation (trimesh's own reading of the same scene)
    ours = np.sort(m.vertices[m.faces].reshape(-1, 9), axis=0)
    theirs = np.sort(np.asarray(flat.vertices)[flat.faces].reshape(-1, 9), axis=0)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # .gltf with an embedded base64 buffer
    files = scene.export(file_type="gltf", embed_buffers=True)
    (tmp_path / "scene.gltf").write_bytes(files["model.gltf"])
    g = load_mesh(tmp_path / "scene.gltf")
    np.testing.assert_allclose(np.sort(g.vertices[g.faces].reshape(-1, 9), axis=0), theirs, atol=1e-5)


def test_missing_texture_is_a_warning_not_a_failure(tmp_path):
    (tmp_path / "a.mtl").write_text("newmtl m\nKd 0.5 0.5 0.5\nmap_Kd missing.png\n")
    (tmp_path / "a.obj").write_text("mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m\nf 1 2 3\n")
    with pytest.warns(UserWarning, match=r"a\.mtl:3: map_Kd texture dropped"):
        m = load_mesh(tmp_path / "a.obj")
    assert m.material is not None and m.material.base_color_texture is None
    assert m.material.base_color_factor[:3] == (0.5, 0.5, 0.5)


def test_compressed_gltf_is_refused_clearly(tmp_path):
    import json

    doc = {"asset": {"version": "2.0"}, "extensionsRequired": ["KHR_draco_mesh_compression"], "meshes": []}
    (tmp_path / "d.gltf").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="KHR_draco_mesh_compression"):
        load_mesh(tmp_path / "d.gltf")


# ------------------------------------------------------------------------------------------------ hostile input
# Issue 22, item 3: files that made the loader read outside the mesh's folder, block, abort or exhaust memory.

_CHILD = """
import resource, sys, warnings
warnings.simplefilter("ignore")
from pgc_fast.mesh import load_mesh
try:
    m = load_mesh(sys.argv[1], allow_external_files=sys.argv[2] == "1")
    print(f"ok {m.num_faces}")
except (ValueError, OSError) as e:
    print(f"{type(e).__name__}: {e}")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _load_isolated(path: Path, allow: bool = False, timeout: float = 60.0) -> tuple[str, int]:
    """Loads in a child process, so that a hang, an abort or a memory blow-up fails this test instead of
    taking pytest down. Returns (outcome line, peak RSS of the child in MiB)."""
    import os
    import subprocess
    import sys

    import pgc_fast

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(pgc_fast.__file__).parents[1]), env.get("PYTHONPATH", "")])
    try:
        r = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), "1" if allow else "0"],
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.PIPE,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_mesh({path.name}) did not return within {timeout} s")
    assert r.returncode == 0, f"child exited with {r.returncode} (signal if negative): {r.stderr[-2000:]}"
    outcome, rss = r.stdout.strip().splitlines()[-2:]
    return outcome, int(rss)


_BASELINE_RSS: list[int] = []


def _baseline_rss(tmp_path: Path) -> int:
    """Peak RSS of a child that loads a one-triangle OBJ (interpreter + numpy + the extension)."""
    if not _BASELINE_RSS:
        p = tmp_path / "baseline.obj"
        p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
        outcome, rss = _load_isolated(p)
        assert outcome == "ok 1", outcome
        _BASELINE_RSS.append(rss)
    return _BASELINE_RSS[0]


def _write_gltf(folder: Path, name: str = "m.gltf", buffers=None, images=None, extra=None) -> Path:
    """A one-triangle .gltf: buffer 0 holds the 3 float32 positions; `buffers` replaces the buffer list,
    `images` adds a base-colour texture per image (the first one used), `extra` updates the JSON."""
    import base64
    import json

    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    doc: dict = {
        "asset": {"version": "2.0"},
        "buffers": buffers
        or [{"byteLength": 36, "uri": "data:application/octet-stream;base64," + base64.b64encode(pos).decode()}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    if images:
        doc["images"] = images
        doc["textures"] = [{"source": 0}]
        doc["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
        doc["meshes"][0]["primitives"][0]["material"] = 0
    doc.update(extra or {})
    p = folder / name
    p.write_text(json.dumps(doc))
    return p


def _obj_with_texture(folder: Path, map_name: str) -> Path:
    (folder / "a.mtl").write_text(f"newmtl m\nKd 1 1 1\nmap_Kd {map_name}\n")
    p = folder / "a.obj"
    p.write_text("mtllib a.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nusemtl m\nf 1/1 2/1 3/1\n")
    return p


def _png_bomb(width: int, height: int, complete: bool) -> bytes:
    """An 8-bit grey PNG declaring width × height. complete=True: every row present (all zero, so a few
    hundred kB decode to width × height bytes); False: the header only, with a tiny truncated IDAT."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if complete:
        z = zlib.compressobj(9)
        row = bytes(width + 1)
        idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    else:
        idat = zlib.compress(bytes(width + 1))[:20]
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _obj_text(n: int, seed: int = 0) -> str:
    """An OBJ of n triangles with distinct vertices, alternating relative (`f -3 -2 -1`) and absolute
    indices, so a wrong vertex count anywhere changes the faces."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        for x, y, z in rng.random((3, 3)):
            out.append(f"v {x:.6f} {y:.6f} {z:.6f}")
        out.append("f -3 -2 -1" if i % 2 else f"f {3 * i + 1} {3 * i + 2} {3 * i + 3}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("eol", ["\n\r", "\r\n", "\r", "\n"])
def test_obj_line_endings_parse_alike_above_the_parallel_chunk_size(tmp_path, eol):
    text = _obj_text(5000)  # ~0.5 MB: parsed in parallel chunks (> 256 KiB)
    want = load_mesh(_write(tmp_path / "lf.obj", text))
    assert len(text) > 1 << 18 and want.num_faces == 5000
    got = load_mesh(_write(tmp_path / "x.obj", text.replace("\n", eol)))
    np.testing.assert_array_equal(got.faces, np.arange(15000).reshape(-1, 3))
    np.testing.assert_array_equal(got.faces, want.faces)
    np.testing.assert_array_equal(got.vertices, want.vertices)
    # errors keep their line numbers
    bad = text.replace("\n", eol) + "f 1 2 15001" + eol
    with pytest.raises(ValueError, match=r"x\.obj:20001: vertex index 15001 out of range"):
        load_mesh(_write(tmp_path / "x.obj", bad))


def _write(p: Path, text: str) -> Path:
    p.write_bytes(text.encode())
    return p


def test_gltf_instancing_a_huge_accessor_is_refused_not_aborted(tmp_path):
    """A 359-byte glTF: one 2^24-vertex accessor without a bufferView (zeros) instanced by 64 nodes."""
    import json

    doc = {
        "asset": {"version": "2.0"},
        "accessors": [{"componentType": 5126, "count": 1 << 24, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0] * 64}],
    }
    p = tmp_path / "inst.gltf"
    p.write_text(json.dumps(doc, separators=(",", ":")))
    assert p.stat().st_size < 400
    outcome, rss = _load_isolated(p)
    assert outcome == (
        f"ValueError: {p}: the scene's mesh instances hold 1073741824 vertices in total, over the limit of "
        "33554432 (each instance of a mesh counts)"
    ), outcome
    assert rss < _baseline_rss(tmp_path) + 100, f"peak RSS {rss} MiB: vertices were allocated before the check"


@pytest.mark.parametrize("complete", [True, False], ids=["real_bomb", "declared_size"])
@pytest.mark.parametrize("container", ["obj", "gltf"])
def test_png_bomb_texture_is_refused_before_decoding(tmp_path, complete, container):
    w, h = (9000, 9000) if complete else (100_000, 100_000)  # 81 M / 10^10 pixels > 2^26
    (tmp_path / "bomb.png").write_bytes(_png_bomb(w, h, complete))
    if container == "obj":
        p, where = _obj_with_texture(tmp_path, "bomb.png"), f'{tmp_path}/a.mtl:3: map_Kd "bomb.png": '
    else:
        p, where = _write_gltf(tmp_path, images=[{"uri": "bomb.png"}]), f"{tmp_path}/m.gltf: images[0]: "
    outcome, rss = _load_isolated(p)
    want = f"ValueError: {where}image is {w}x{h} = {w * h} pixels, over the limit of 67108864 (checked before decoding)"
    assert outcome == want, outcome
    assert rss < _baseline_rss(tmp_path) + 200, f"peak RSS {rss} MiB: the image was decoded"


@pytest.mark.parametrize("target", ["/dev/stdin", "/dev/zero", "fifo", "link_to_dev_zero", "directory"])
@pytest.mark.parametrize("allow", [False, True])
def test_gltf_buffer_naming_a_device_fifo_or_directory_is_refused(tmp_path, target, allow):
    import os

    uri = target
    if target == "fifo":
        os.mkfifo(tmp_path / "pipe.bin")
        uri = "pipe.bin"
    elif target == "link_to_dev_zero":
        (tmp_path / "zero.bin").symlink_to("/dev/zero")
        uri = "zero.bin"
    elif target == "directory":
        (tmp_path / "sub").mkdir()
        uri = "sub"
    p = _write_gltf(tmp_path, buffers=[{"byteLength": 36, "uri": uri}])
    outcome, _ = _load_isolated(p, allow=allow, timeout=30)
    assert outcome.startswith(f'ValueError: {p}: buffers[0].uri "{uri}": '), outcome
    if not allow and target.startswith("/"):
        assert "absolute paths are refused" in outcome, outcome
    elif not allow and target == "link_to_dev_zero":
        assert "outside the mesh's folder" in outcome, outcome
    else:
        # (the child's stdin is a pipe)
        kind = {"fifo": "a FIFO", "/dev/stdin": "a FIFO", "directory": "a directory"}.get(target, "a device file")
        assert f"is {kind}; only regular files are read" in outcome, outcome


def _outside_case(case: str, mesh_dir: Path, outside: Path) -> tuple[Path, str]:
    """Builds a mesh in mesh_dir whose reference `case` points into `outside`; returns (mesh, reference)."""
    from io import BytesIO

    from PIL import Image

    b = BytesIO()
    Image.fromarray(np.full((2, 2, 3), 200, np.uint8)).save(b, format="PNG")
    (outside / "tex.png").write_bytes(b.getvalue())
    (outside / "pos.bin").write_bytes(np.array([[0, 0, 0], [5, 0, 0], [0, 5, 0]], np.float32).tobytes())
    (outside / "x.mtl").write_text(f"newmtl m\nmap_Kd {outside / 'tex.png'}\n")
    abs_tex = str(outside / "tex.png")
    if case == "mtl_link":
        (mesh_dir / "link.png").symlink_to(outside / "tex.png")
    ref = {
        "mtl_absolute": abs_tex,
        "mtl_dotdot": "../outside/tex.png",
        "mtl_link": "link.png",
        "mtllib_dotdot": "../outside/x.mtl",
        "ply_dotdot": "../outside/tex.png",
        "gltf_image_dotdot": "../outside/tex.png",
        "gltf_image_absolute": abs_tex,
        "gltf_image_file_uri": "file://" + abs_tex,
        "gltf_image_escaped": "%2E%2E/outside/tex.png",
        "gltf_buffer_dotdot": "../outside/pos.bin",
    }[case]
    if case.startswith("mtl_"):
        return _obj_with_texture(mesh_dir, ref), ref
    if case == "mtllib_dotdot":
        p = mesh_dir / "a.obj"
        p.write_text(f"mtllib {ref}\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m\nf 1 2 3\n")
        return p, ref
    if case == "ply_dotdot":
        p = mesh_dir / "a.ply"
        p.write_text(
            f"ply\nformat ascii 1.0\ncomment TextureFile {ref}\nelement vertex 3\nproperty float x\n"
            "property float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\n"
            "end_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
        )
        return p, ref
    if case == "gltf_buffer_dotdot":
        return _write_gltf(mesh_dir, buffers=[{"byteLength": 36, "uri": ref}]), ref
    return _write_gltf(mesh_dir, images=[{"uri": ref}]), ref


OUTSIDE_CASES = [
    "mtl_absolute",
    "mtl_dotdot",
    "mtl_link",
    "mtllib_dotdot",
    "ply_dotdot",
    "gltf_image_dotdot",
    "gltf_image_absolute",
    "gltf_image_file_uri",
    "gltf_image_escaped",
    "gltf_buffer_dotdot",
]


@pytest.mark.parametrize("case", OUTSIDE_CASES)
def test_references_outside_the_mesh_folder_need_allow_external_files(tmp_path, case):
    """An MTL library or glTF buffer outside the folder fails the load; a texture is dropped with a warning
    (like a missing one: stale absolute texture paths are common in downloaded models). Both messages name
    the file, the line (text formats), the reference and the opt-in."""
    mesh_dir, outside = tmp_path / "mesh", tmp_path / "outside"
    mesh_dir.mkdir()
    outside.mkdir()
    p, ref = _outside_case(case, mesh_dir, outside)
    if case in ("mtllib_dotdot", "gltf_buffer_dotdot"):
        with pytest.raises(ValueError) as e:
            load_mesh(p)
        msg = str(e.value)
    else:
        with pytest.warns(UserWarning, match="texture dropped") as w:
            m = load_mesh(p)
        assert m.material is None or m.material.base_color_texture is None
        (msg,) = [str(x.message) for x in w if "allow_external_files" in str(x.message)]
    shown = "../outside/tex.png" if case == "gltf_image_escaped" else ref  # %-escapes are decoded first
    assert msg.startswith(str(p.parent)) and f'"{shown}": ' in msg and "\n" not in msg, msg
    reasons = ("absolute paths are refused", "outside the mesh's folder", "file: URIs are refused")
    assert any(r in msg for r in reasons) and "--mesh.allow_external_files" in msg, msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the opt-in follows the reference, silently
        m = load_mesh(p, allow_external_files=True)
    if case == "gltf_buffer_dotdot":
        np.testing.assert_array_equal(m.vertices, [[0, 0, 0], [5, 0, 0], [0, 5, 0]])
    else:
        np.testing.assert_allclose(m.material.base_color_texture, np.full((2, 2, 3), 200 / 255), atol=1e-6)


def test_references_inside_the_mesh_folder_still_load(tmp_path):
    (tmp_path / "textures").mkdir()
    (tmp_path / "textures" / "t.png").write_bytes(_png_2x1())
    m = load_mesh(_obj_with_texture(tmp_path, "textures/../textures/t.png"))
    np.testing.assert_allclose(m.material.base_color_texture, [[[1, 0, 0], [0, 0, 1]]])
    g = load_mesh(_write_gltf(tmp_path, images=[{"uri": "textures/t%2Epng"}]))
    np.testing.assert_allclose(g.material.base_color_texture, [[[1, 0, 0], [0, 0, 1]]])


def test_repeated_mtllib_and_map_statements_are_limited(tmp_path):
    (tmp_path / "a.mtl").write_text("newmtl m\n" + "map_Kd t.png\n" * 60_000)
    (tmp_path / "t.png").write_bytes(_png_2x1())
    tri = "v 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m\nf 1 2 3\n"
    many_mtllib = tmp_path / "many_mtllib.obj"
    many_mtllib.write_text("mtllib b.mtl\n" * 60_000 + tri)  # ~780 kB
    (tmp_path / "b.mtl").write_text("newmtl m\nKd 1 0 0\n")
    many_maps = tmp_path / "many_maps.obj"
    many_maps.write_text("mtllib a.mtl\n" + tri)
    for p, pattern in [
        (many_mtllib, r"many_mtllib\.obj:4097: more than 4096 mtllib references"),
        (many_maps, r"a\.mtl:4098: more than 4096 texture map references"),
    ]:
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=pattern):
            load_mesh(p)
        assert time.perf_counter() - t0 < 5.0
    # below the limit, a repeated library is fine (and read once)
    (tmp_path / "ok.obj").write_text("mtllib b.mtl\n" * 4000 + tri)
    assert load_mesh(tmp_path / "ok.obj").material.base_color_factor[:3] == (1.0, 0.0, 0.0)


def test_gltf_buffers_naming_one_file_read_it_once(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(np.zeros(2 << 20, np.uint8).tobytes())  # 2 MiB, named by 1000 buffers (2 GB if each read it)
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    (tmp_path / "pos.bin").write_bytes(pos)
    buffers = [{"byteLength": 36, "uri": "pos.bin"}] + [{"byteLength": 2 << 20, "uri": "big.bin"}] * 1000
    p = _write_gltf(tmp_path, buffers=buffers)
    outcome, rss = _load_isolated(p)
    assert outcome == "ok 1", outcome
    assert rss < _baseline_rss(tmp_path) + 100, f"peak RSS {rss} MiB"
    p = _write_gltf(tmp_path, "many.gltf", buffers=buffers * 5)
    with pytest.raises(ValueError, match=r"many\.gltf: more than 4096 glTF buffer references"):
        load_mesh(p)


NO_FACES = {
    "empty.obj": "",
    "points.obj": "v 0 0 0\nv 1 0 0\nv 0 1 0\n",
    "lines.obj": "v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2 3\n",
    "collinear.obj": "v 0 0 0\nv 1 0 0\nv 2 0 0\nv 0 1 0\nf 1 2 3\nf 1 1 4\n",
    "points.ply": "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float "
    "z\nend_header\n0 0 0\n",
}


@pytest.mark.parametrize("name", [*NO_FACES, "nofaces.glb", "degenerate.glb"])
def test_mesh_without_usable_faces_is_refused_at_load(tmp_path, name):
    p = tmp_path / name
    if name.endswith(".glb"):
        faces = np.zeros((0, 3), np.int64) if name == "nofaces.glb" else np.array([[0, 1, 2]])
        save_mesh(Mesh(np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.float32), faces), p)
    else:
        p.write_text(NO_FACES[name])
    want = (
        "all 2 faces are degenerate"
        if name == "collinear.obj"
        else ("all 1 faces" if name == "degenerate.glb" else "but no faces|no vertices and no faces")
    )
    with pytest.raises(ValueError, match=rf"^{re.escape(str(p))}: no usable faces: .*({want})") as e:
        load_mesh(p)
    assert "\n" not in str(e.value)


HOSTILE_SEEDS = ["instancing.gltf", "references.gltf", "lfcr.obj"]


@pytest.mark.parametrize("seed_name", HOSTILE_SEEDS)
def test_fuzzed_hostile_files_never_panic_or_hang(tmp_path, seed_name):
    """Mutations of the hostile files above (instanced accessors, external buffers and images, `\\n\\r`
    OBJ with mtllib/map_Kd): each loads or raises ValueError/OSError, quickly."""
    import json

    (tmp_path / "t.png").write_bytes(_png_2x1())
    (tmp_path / "pos.bin").write_bytes(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes())
    (tmp_path / "bomb.png").write_bytes(_png_bomb(100_000, 100_000, complete=False))
    (tmp_path / "a.mtl").write_text("newmtl m\r\nKd 1 1 1\r\nmap_Kd t.png\r\nnewmtl b\r\nmap_Kd bomb.png\r\n")
    if seed_name == "instancing.gltf":
        doc = {
            "asset": {"version": "2.0"},
            "accessors": [{"componentType": 5126, "count": 4096, "type": "VEC3"}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "nodes": [{"mesh": 0}] * 64,
            "scenes": [{"nodes": list(range(64))}],
        }
        data = json.dumps(doc).encode()
    elif seed_name == "references.gltf":
        data = _write_gltf(
            tmp_path,
            "seed.gltf",
            buffers=[{"byteLength": 36, "uri": "pos.bin"}] * 3,
            images=[{"uri": "t.png"}, {"uri": "../t.png"}, {"uri": "/dev/zero"}],
        ).read_bytes()
    else:
        data = ("mtllib a.mtl\nusemtl m\n" + _obj_text(40) + "usemtl b\nf -1 -2 -3\n").replace("\n", "\n\r").encode()
    ext = seed_name.rsplit(".", 1)[1]
    outcomes = _load_each(_mutations(data, 300, seed=HOSTILE_SEEDS.index(seed_name)), tmp_path / f"fuzz.{ext}")
    assert outcomes["error"] > 30, outcomes
