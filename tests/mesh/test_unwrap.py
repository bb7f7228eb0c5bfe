"""pgc_fast.mesh.uv.unwrap / uv_metrics: output contract, validity (no overlaps or flips), determinism and
bad input, on small meshes (the full acceptance corpus against xatlas is benches/bench_unwrap.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pgc_fast.mesh.uv import UNWRAP_OPTIONS, unwrap, uv_metrics

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))  # one definition of the acceptance meshes for tests and benches
import uv_meshes as M  # noqa: E402

RES = 512


def _meshes():
    yield "uv_sphere", lambda: M.uv_sphere(16, 32)
    yield "torus", lambda: M.torus(48, 24)
    yield "noisy_sphere", lambda: M.noisy_sphere(3, 0.01)
    yield "marching_tets", lambda: M.marching_tets_blob(14)


MESHES = dict(_meshes())


def _check_valid(v, f, res=RES, **opts):
    vmap, nf, uv = unwrap(v, f, resolution=res, **opts)
    assert vmap.dtype == np.int64 and nf.dtype == np.int64 and uv.dtype == np.float32
    assert vmap.ndim == 1 and nf.shape == f.shape and uv.shape == (len(vmap), 2)
    np.testing.assert_array_equal(vmap[nf], f)  # same faces, same order, new vertex i copies vmap[i]
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    m = uv_metrics(v, f, uv, nf, res)
    assert m["overlapping_pairs"] == 0, m
    assert m["flipped"] == 0, m
    return vmap, nf, uv, m


@pytest.mark.parametrize("name", list(MESHES))
def test_unwrap_is_valid(name):
    v, f = MESHES[name]()
    _, _, _, m = _check_valid(v, f)
    assert m["zero_area"] == 0, m
    assert m["utilisation"] > 0.35, m
    assert m["l2_stretch"] < 1.2, m
    assert m["chart_count"] >= 1 and m["seam_edge_count"] > 0, m  # closed surfaces need cuts


def test_panda_is_valid():
    v, f = M.load_panda()
    _, _, _, m = _check_valid(v, f, res=1024)
    assert m["utilisation"] > 0.6 and m["l2_stretch"] < 1.1, m


@pytest.mark.parametrize(
    "opts",
    [
        {"packing": "fast"},
        {"rotate_charts": False},
        {"block_align": True},
        {"max_chart_angle": 45.0},
        {"max_chart_size": 64},
        {"max_area_distortion": 1.5},
    ],  # fmt: skip
)
def test_options_keep_layout_valid(opts):
    v, f = M.torus(32, 16)
    _check_valid(v, f, **opts)


@pytest.mark.parametrize("padding", [2, 3])
def test_coarse_packing_keeps_padding_and_utilisation(padding):
    """At resolution >= 2048 the packer may work on 2×2-texel cells; the layout must stay valid, keep
    `padding` empty texels to the border, and lose (almost) no utilisation."""
    v, f = M.torus(48, 24)
    res = 2048
    fine = _check_valid(v, f, res=res, padding=padding, coarse_packing=False)
    coarse = _check_valid(v, f, res=res, padding=padding, coarse_packing=True)
    for _, _, uv, _m in (fine, coarse):
        texel = uv * [res, res]
        assert texel.min() >= padding - 1e-3
    assert coarse[3]["utilisation"] >= fine[3]["utilisation"] - 0.02, (coarse[3], fine[3])


def test_padding_costs_utilisation():
    v, f = M.uv_sphere(12, 24)
    u0 = _check_valid(v, f, res=256, padding=0)[3]["utilisation"]
    u8 = _check_valid(v, f, res=256, padding=8)[3]["utilisation"]
    assert u8 < u0


def test_open_and_disconnected_input():
    v, f = M.uv_sphere(10, 20)
    half = f[: len(f) // 2]  # an open cap
    v2 = np.concatenate([v, v + 3])
    f2 = np.concatenate([half, f + len(v)])  # two components, one open
    _check_valid(v2, f2)


def test_deterministic_across_calls_and_thread_counts():
    v, f = M.noisy_sphere(3, 0.01)

    def digest(out):
        return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in out)).hexdigest()

    first = digest(unwrap(v, f, resolution=RES))
    assert digest(unwrap(v, f, resolution=RES)) == first
    code = (
        "import sys, hashlib, numpy as np; sys.path.insert(0, 'benches'); import uv_meshes as M;"
        "from pgc_fast.mesh.uv import unwrap; v, f = M.noisy_sphere(3, 0.01);"
        f"print(hashlib.sha256(b''.join(np.ascontiguousarray(a).tobytes() for a in unwrap(v, f, "
        f"resolution={RES}))).hexdigest())"
    )
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == first


def test_accepts_float64_int32_and_cpu_tensors():
    torch = pytest.importorskip("torch")
    v, f = M.torus(16, 8)
    ref = unwrap(v, f, resolution=128)
    for vv, ff in [(v.astype(np.float64), f.astype(np.int32)), (torch.from_numpy(v), torch.from_numpy(f))]:
        out = unwrap(vv, ff, resolution=128)
        for a, b in zip(out, ref, strict=False):
            np.testing.assert_array_equal(a, b)


def test_triangle_soup_is_charted_like_the_welded_mesh():
    v, f = M.uv_sphere(10, 20)
    soup_v, soup_f = v[f].reshape(-1, 3), np.arange(3 * len(f)).reshape(-1, 3)
    vmap, nf, uv, m = _check_valid(soup_v, soup_f)
    ref = _check_valid(v, f)[3]
    assert m["chart_count"] == ref["chart_count"] < 20, (m, ref)  # welded for charting, as xatlas does


def test_degenerate_faces_are_tolerated():
    v, f = M.uv_sphere(8, 16)
    v = np.concatenate([v, [[5, 5, 5]]]).astype(np.float32)
    f = np.concatenate([f, [[len(v) - 1, len(v) - 1, 0], [0, 1, 1]]])  # zero-area faces
    vmap, nf, uv = unwrap(v, f, resolution=128)
    np.testing.assert_array_equal(vmap[nf], f)
    m = uv_metrics(v, f, uv, nf, 128)
    assert m["overlapping_pairs"] == 0 and m["flipped"] == 0, m


GOOD_V, GOOD_F = M.torus(8, 6)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((GOOD_V[:, :2], GOOD_F), {}, ValueError, r"unwrap\(\): vertices must have shape \[N, 3\]"),
        ((GOOD_V, GOOD_F[:, :2]), {}, ValueError, r"faces must have shape \[F, 3\]"),
        ((GOOD_V, GOOD_F.astype(np.float32)), {}, TypeError, "faces must be an integer array"),
        ((GOOD_V.astype(bool), GOOD_F), {}, TypeError, "vertices must be a float array"),
        ((GOOD_V, GOOD_F + 1000), {}, ValueError, r"faces must index vertices in \[0, 48\)"),
        ((GOOD_V, GOOD_F - 1), {}, ValueError, "faces must index vertices"),
        ((np.full_like(GOOD_V, np.nan), GOOD_F), {}, ValueError, "vertices must be finite"),
        ((GOOD_V, GOOD_F[:0]), {}, ValueError, "faces must have at least one row"),
        ((GOOD_V, GOOD_F), {"resolution": 4}, ValueError, r"resolution must be in \[8, 32768\]"),
        ((GOOD_V, GOOD_F), {"resolution": 256.0}, TypeError, "resolution must be an int"),
        ((GOOD_V, GOOD_F), {"resolution": True}, TypeError, "resolution must be an int"),
        ((GOOD_V, GOOD_F), {"resolution": 64, "padding": 32}, ValueError, "padding must be in"),
        ((GOOD_V, GOOD_F), {"chart_options": 1}, TypeError, r"unknown option\(s\) \['chart_options'\]"),
        ((GOOD_V, GOOD_F), {"packing": "random"}, ValueError, "packing must be 'shape' or 'fast'"),
        ((GOOD_V, GOOD_F), {"max_chart_angle": 95.0}, ValueError, r"max_chart_angle must be in \(0, 90\)"),
        ((GOOD_V, GOOD_F), {"max_area_distortion": 0.5}, ValueError, "max_area_distortion must be"),
        ((GOOD_V, GOOD_F), {"rotate_charts": 1}, TypeError, "rotate_charts must be a bool"),
        ((GOOD_V, GOOD_F), {"block_align": True, "resolution": 66}, ValueError, "multiple of 4"),
        (("not an array", GOOD_F), {}, TypeError, "vertices must be a float array"),
    ],
)
def test_unwrap_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        unwrap(*args, **kwargs)


def test_unwrap_options_are_documented():
    assert set(UNWRAP_OPTIONS) == {
        "max_chart_angle", "max_area_distortion", "rotate_charts", "packing", "max_chart_size", "block_align",
        "coarse_packing",
    }  # fmt: skip


# ----------------------------------------------------------------------------------------- uv_metrics


def _brute_overlaps(tris: np.ndarray) -> int:
    """O(n²) interior-overlap count with the separating axis test in exact rational arithmetic."""
    from fractions import Fraction

    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    ts = []
    for t in tris:
        t = [(Fraction(float(x)), Fraction(float(y))) for x, y in t]
        o = orient(*t)
        if o == 0:
            continue
        ts.append(t if o > 0 else [t[0], t[2], t[1]])

    def separated(t, s):
        return any(all(orient(t[k], t[(k + 1) % 3], p) <= 0 for p in s) for k in range(3))

    return sum(
        not separated(ts[i], ts[j]) and not separated(ts[j], ts[i])
        for i in range(len(ts))
        for j in range(i + 1, len(ts))
    )


def test_overlap_count_is_exact_on_random_triangles():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, (120, 1, 2))
    tris = (base + rng.uniform(-0.08, 0.08, (120, 3, 2))).astype(np.float32)
    # Add exactly touching pairs: shared edges and shared vertices are not overlaps.
    tris[1] = [tris[0][1], tris[0][0], 2 * tris[0][0] - tris[0][2]]
    uv = tris.reshape(-1, 2)
    uf = np.arange(len(uv)).reshape(-1, 3)
    v = np.concatenate([uv, np.zeros((len(uv), 1), np.float32)], 1)
    m = uv_metrics(v, uf, uv, uf, 64)
    assert m["overlapping_pairs"] == _brute_overlaps(tris) > 0


def test_metrics_of_known_layouts():
    v = np.array([[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    iso = uv_metrics(v, f, v[:, :2] * 0.4, f, 100)  # isometric up to scale: stretch exactly 1
    assert iso["l2_stretch"] == pytest.approx(1.0, abs=1e-9) and iso["linf_stretch"] == pytest.approx(1.0, abs=1e-9)
    assert iso["utilisation"] == pytest.approx(0.8 * 0.4, abs=0.02)
    assert (iso["chart_count"], iso["seam_edge_count"], iso["flipped"], iso["overlapping_pairs"]) == (1, 0, 0, 0)
    squashed = uv_metrics(v, f, v[:, :2] * [0.2, 0.8], f, 100)  # anisotropic: L2 > 1, L∞ ≥ L2
    assert squashed["l2_stretch"] > 1.2 and squashed["linf_stretch"] >= squashed["l2_stretch"]
    # Cut along the diagonal and mirror the second triangle onto the first: 1 flip, 1 overlap, 1 seam.
    uv = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.5], [0.12, 0.1], [0.9, 0.45], [0.9, 0.1]], np.float32)
    m = uv_metrics(v, f, uv, [[0, 1, 2], [3, 4, 5]], 100)
    assert (m["flipped"], m["overlapping_pairs"], m["seam_edge_count"], m["chart_count"]) == (1, 1, 1, 2)


@pytest.mark.parametrize(
    ("args", "exc", "match"),
    [
        ((GOOD_V, GOOD_F, np.zeros((5, 2)), GOOD_F, 64), ValueError, r"uv_faces must index uvs in \[0, 5\)"),
        ((GOOD_V, GOOD_F, np.zeros((48, 3)), GOOD_F, 64), ValueError, r"uvs must have shape \[N, 2\]"),
        ((GOOD_V, GOOD_F, np.zeros((48, 2)), GOOD_F[:3], 64), ValueError, "one row per face"),
        ((GOOD_V, GOOD_F, np.full((48, 2), np.inf), GOOD_F, 64), ValueError, "uvs must be finite"),
        ((GOOD_V, GOOD_F, np.zeros((48, 2)), GOOD_F, 0), ValueError, r"resolution must be in \[1, 32768\]"),
        ((GOOD_V, GOOD_F, np.zeros((48, 2)), GOOD_F.astype(float), 8), TypeError, "uv_faces must be an integer"),
    ],
)
def test_uv_metrics_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        uv_metrics(*args)
