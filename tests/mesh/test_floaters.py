"""Floater removal (issue 17): edge-connected components (vectorised) against the union-find twin, the
original's 99.9th-percentile rule against numpy, threestudio's fraction rule, area sizes, re-indexing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgc_fast.mesh.floaters import face_components, face_components_reference, remove_floaters
from pgc_fast.mesh.tets import marching_tets, tet_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(seed: int, res: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Marching tets of a big sphere plus noise: one large component and many small floaters."""
    rng = np.random.default_rng(seed)
    v, t = tet_grid(res)
    s = 0.3 - np.linalg.norm(v, axis=1)  # positive inside: occupancy sdf > 0
    s = np.where(rng.random(len(v)) < 0.02, 1.0, s) if seed % 2 else s + 0.25 * (rng.random(len(v)) < 0.03)
    return (x.astype(np.float64) if x.dtype == np.float32 else x for x in marching_tets(v, s.astype(np.float32), t))


def strip_and_fan() -> np.ndarray:
    """Faces sharing only a vertex stay apart; an edge with three faces joins them all; faces are listed so
    that the components' minima are far apart (long hooking chains)."""
    strip = [[i, i + 1, i + 2] for i in range(0, 40)][::-1]  # one strip, listed backwards
    bow = [[100, 101, 102], [100, 103, 104]]  # share vertex 100 only: two components
    fins = [[200, 201, 202], [200, 201, 203], [201, 200, 204]]  # three faces on edge (200, 201)
    return np.array(strip + bow + fins, np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_components_match_union_find(seed):
    v, f = blobs(seed)
    labels, sizes = face_components(torch.from_numpy(f))
    ref_labels, ref_sizes = face_components_reference(f)
    assert len(ref_sizes) > 5  # floaters present
    np.testing.assert_array_equal(labels.numpy(), ref_labels)
    np.testing.assert_array_equal(sizes.numpy(), ref_sizes)


def test_vertex_vs_edge_connectivity():
    f = strip_and_fan()
    labels, sizes = face_components(torch.from_numpy(f).int())
    np.testing.assert_array_equal(sizes.numpy(), [40, 3, 1, 1])
    assert len(set(labels[:40].tolist())) == 1 and labels[40] != labels[41]
    ref = face_components_reference(f)
    np.testing.assert_array_equal(labels.numpy(), ref[0])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(f))
    l2, s2 = face_components(torch.from_numpy(f[perm]))
    np.testing.assert_array_equal(s2.numpy(), sizes.numpy())


@pytest.mark.parametrize("seed", range(4))
def test_original_rule(seed):
    """Rasterizer_MLP.export_mesh: remove triangles whose cluster has fewer triangles than
    np.percentile(cluster sizes, 99.9)."""
    v, f = blobs(seed)
    ref_labels, ref_sizes = face_components_reference(f)
    keep_ref = ref_sizes[ref_labels] >= np.percentile(ref_sizes, 99.9)
    vt = torch.from_numpy(v).requires_grad_(True)
    nv, nf, ids = remove_floaters(vt, torch.from_numpy(f))
    assert nf.shape[0] == keep_ref.sum() and nf.dtype == torch.int64
    np.testing.assert_array_equal(nv.detach().numpy()[nf.numpy()], v[f[keep_ref]])  # same faces, same order
    np.testing.assert_array_equal(nv.detach().numpy(), v[ids.numpy()])
    assert len(np.unique(nf.numpy())) == nv.shape[0]  # no unreferenced vertex left
    nv.sum().backward()
    assert vt.grad is not None and vt.grad.sum() == nv.shape[0] * 3


def test_percentile_over_one_value_per_cluster():
    """2000 clusters: np.percentile(sizes, 99.9) interpolates at rank 0.999·1999 = 1997.001, between the third
    (30) and second (40) largest: 30.01, so the two largest survive (not only the largest)."""
    sizes = [50, 40, 30] + [1] * 1997
    assert np.percentile(sizes, 99.9) == pytest.approx(30.01)
    faces, verts, base = [], [], 0
    for k, n in enumerate(sizes):
        faces += [[base + i, base + i + 1, base + i + 2] for i in range(n)]
        verts += [[k, i, i % 2] for i in range(n + 2)]
        base += n + 2
    v, f = torch.tensor(verts, dtype=torch.float64), torch.tensor(faces)
    _, nf, _ = remove_floaters(v, f)
    assert nf.shape[0] == 90
    _, nf, _ = remove_floaters(v, f, percentile=0.0, min_fraction=0.5)  # threestudio-style: ≥ 25 faces
    assert nf.shape[0] == 120
    _, nf, _ = remove_floaters(v, f, percentile=0.0, min_fraction=0.9)  # ≥ 45 faces
    assert nf.shape[0] == 50
    _, nf, _ = remove_floaters(v, f, percentile=0.0)  # keeps everything
    assert nf.shape[0] == f.shape[0]


def test_area_size():
    """A big single triangle outweighs a strip of many tiny ones when sizes are areas."""
    big = [[0, 0, 0], [10, 0, 0], [0, 10, 0]]
    small = [[20 + 0.01 * i, 0.01 * (i % 2), 0] for i in range(12)]
    v = torch.tensor(big + small, dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]] + [[3 + i, 4 + i, 5 + i] for i in range(10)])
    _, by_count, _ = remove_floaters(v, f)
    _, by_area, ids = remove_floaters(v, f, size="area")
    assert by_count.shape[0] == 10 and by_area.shape[0] == 1 and ids.tolist() == [0, 1, 2]


def test_empty_and_bad_input():
    v = torch.rand(5, 3)
    nv, nf, ids = remove_floaters(v, torch.zeros((0, 3), dtype=torch.long))
    assert nv.shape == (0, 3) and nf.shape == (0, 3) and ids.shape == (0,)
    labels, sizes = face_components(torch.zeros((0, 3), dtype=torch.long))
    assert labels.shape == (0,) and sizes.shape == (0,)
    f = torch.tensor([[0, 1, 2]])
    with pytest.raises(TypeError, match=r"remove_floaters\(\): faces must be an int32\|int64 torch.Tensor"):
        remove_floaters(v, f.numpy())
    with pytest.raises(ValueError, match=r"faces must index vertices in \[0, 5\)"):
        remove_floaters(v, torch.tensor([[0, 1, 5]]))
    with pytest.raises(ValueError, match=r"percentile must be in \[0, 100\]"):
        remove_floaters(v, f, percentile=100.5)
    with pytest.raises(ValueError, match=r"min_fraction must be in \[0, 1\]"):
        remove_floaters(v, f, min_fraction=2.0)
    with pytest.raises(ValueError, match=r"size must be 'faces' or 'area'"):
        remove_floaters(v, f, size="volume")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"vertices must be a float torch.Tensor \[V,3\]"):
        remove_floaters(v.long(), f)
