//! Tetrahedral grids and marching tetrahedra (DMTet), reproducing Kaolin's `marching_tetrahedra`.
//!
//! Kaolin's order (kaolin/ops/conversions/tetmesh.py, `_unbatched_marching_tetrahedra`):
//! * occupancy `occ = sdf > 0`; a tet is *valid* when 0 < Σocc < 4;
//! * output vertices = the sign-crossing edges (a < b) of valid tets in lexicographic order, placed at
//!   `p = p_a·(−s_b)/(s_a − s_b) + p_b·s_a/(s_a − s_b)` (computed in that f32 operation order);
//! * faces = triangle-table rows of every 1-triangle tet (tet order) followed by the two triangles of every
//!   2-triangle tet (tet order). Every crossing edge belongs only to valid tets, so the crossing edges in
//!   the global lexicographic edge list give the same order (as kaolin / nvdiffrec build their marching-tets edge list).
use crate::{MeshError, Result};
use rayon::prelude::*;

/// Local edges of a tet (v0v1, v0v2, v0v3, v1v2, v1v3, v2v3).
pub const TET_EDGES: [[usize; 2]; 6] = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]];
pub const NUM_TRIANGLES: [usize; 16] = [0, 1, 1, 2, 1, 2, 2, 1, 1, 2, 2, 1, 2, 1, 1, 0];
pub const TRIANGLE_TABLE: [[i8; 6]; 16] = [
    [-1, -1, -1, -1, -1, -1],
    [1, 0, 2, -1, -1, -1],
    [4, 0, 3, -1, -1, -1],
    [1, 4, 2, 1, 3, 4],
    [3, 1, 5, -1, -1, -1],
    [2, 3, 0, 2, 5, 3],
    [1, 4, 0, 1, 5, 4],
    [4, 2, 5, -1, -1, -1],
    [4, 5, 2, -1, -1, -1],
    [4, 1, 0, 4, 5, 1],
    [3, 2, 0, 3, 5, 2],
    [1, 3, 5, -1, -1, -1],
    [4, 1, 2, 4, 3, 1],
    [3, 0, 4, -1, -1, -1],
    [2, 0, 1, -1, -1, -1],
    [-1, -1, -1, -1, -1, -1],
];

/// Regular Kuhn (Freudenthal) grid over [−0.5, 0.5]³ with `n` cubes per axis: (n+1)³ vertices
/// (index (i·(n+1) + j)·(n+1) + k for x = i, y = j, z = k) and 6n³ positively oriented tets (signed
/// volume (p1−p0)·((p2−p0)×(p3−p0)) > 0), six per cube around its main diagonal.
pub fn kuhn_grid(n: usize) -> Result<(Vec<f32>, Vec<i64>)> {
    // 256 cells per axis is already 16.8M vertices and 100M tets (3.2 GB of indices).
    if n == 0 || n > 256 {
        return Err(MeshError::Invalid(format!(
            "tet_grid(): cells per axis must be in 1..=256, got {n}"
        )));
    }
    let m = n + 1;
    let mut verts = vec![0f32; m * m * m * 3];
    verts
        .par_chunks_mut(m * m * 3)
        .enumerate()
        .for_each(|(i, plane)| {
            for j in 0..m {
                for k in 0..m {
                    let o = (j * m + k) * 3;
                    plane[o] = i as f32 / n as f32 - 0.5;
                    plane[o + 1] = j as f32 / n as f32 - 0.5;
                    plane[o + 2] = k as f32 / n as f32 - 0.5;
                }
            }
        });
    let step = [(m * m) as i64, m as i64, 1i64];
    // (axis order, parity): path 000 → e_a → e_a+e_b → 111; det = sign of the permutation.
    const PERMS: [([usize; 3], bool); 6] = [
        ([0, 1, 2], true),
        ([1, 2, 0], true),
        ([2, 0, 1], true),
        ([0, 2, 1], false),
        ([1, 0, 2], false),
        ([2, 1, 0], false),
    ];
    let mut tets = vec![0i64; 6 * n * n * n * 4];
    tets.par_chunks_mut(n * n * 24)
        .enumerate()
        .for_each(|(i, slab)| {
            for j in 0..n {
                for k in 0..n {
                    let v0 = (i * m * m + j * m + k) as i64;
                    let o = (j * n + k) * 24;
                    for (t, (p, even)) in PERMS.iter().enumerate() {
                        let v1 = v0 + step[p[0]];
                        let v2 = v1 + step[p[1]];
                        let v3 = v2 + step[p[2]];
                        let q = &mut slab[o + t * 4..o + t * 4 + 4];
                        // Odd permutations are negatively oriented: swapping v2 and v3 flips them.
                        q.copy_from_slice(&if *even {
                            [v0, v1, v2, v3]
                        } else {
                            [v0, v1, v3, v2]
                        });
                    }
                }
            }
        });
    Ok((verts, tets))
}

fn check_tets(tets: &[i64], nv: usize, op: &str) -> Result<()> {
    if !tets.len().is_multiple_of(4) {
        return Err(MeshError::Invalid(format!(
            "{op}(): tets must be [T,4], got {} values",
            tets.len()
        )));
    }
    if nv > u32::MAX as usize {
        return Err(MeshError::Invalid(format!(
            "{op}(): at most 2^32-1 vertices, got {nv}"
        )));
    }
    if let Some((i, x)) = tets
        .par_iter()
        .enumerate()
        .find_any(|(_, &x)| x < 0 || x as u64 >= nv as u64)
    {
        return Err(MeshError::Invalid(format!(
            "{op}(): tets must index 0..{nv}, got {x} in tet {}",
            i / 4
        )));
    }
    Ok(())
}

/// Unique edges of a tet mesh, sorted lexicographically with a < b ([E,2]), and for every tet the global
/// id of each of its six local edges ([T,6], local order `TET_EDGES`).
pub fn tet_edges(tets: &[i64], nv: usize) -> Result<(Vec<i64>, Vec<i64>)> {
    check_tets(tets, nv, "tet_edges")?;
    // Size the buckets by the largest index actually used, not the caller's vertex count.
    let nv = tets.par_iter().copied().max().map_or(0, |m| m as usize + 1);
    let nt = tets.len() / 4;
    let ns = nt * 6;
    // Bucket every edge slot by its smaller endpoint (counting sort), then sort/dedup each small bucket.
    let mut counts = vec![0u32; nv + 1];
    for t in tets.chunks_exact(4) {
        for e in TET_EDGES {
            let (a, b) = (t[e[0]], t[e[1]]);
            counts[a.min(b) as usize] += 1;
        }
    }
    let mut offs = vec![0usize; nv + 1];
    let mut acc = 0usize;
    for a in 0..nv {
        offs[a] = acc;
        acc += counts[a] as usize;
    }
    offs[nv] = acc;
    let mut cursor = offs.clone();
    let mut entries = vec![(0u32, 0u32); ns]; // (other endpoint, slot)
    for (ti, t) in tets.chunks_exact(4).enumerate() {
        for (k, e) in TET_EDGES.iter().enumerate() {
            let (a, b) = (t[e[0]], t[e[1]]);
            let (lo, hi) = (a.min(b) as usize, a.max(b) as u32);
            entries[cursor[lo]] = (hi, (ti * 6 + k) as u32);
            cursor[lo] += 1;
        }
    }
    drop(cursor);
    // Split entries into per-vertex buckets and sort each in parallel.
    let mut buckets: Vec<&mut [(u32, u32)]> = Vec::with_capacity(nv);
    let mut rest: &mut [(u32, u32)] = &mut entries;
    for a in 0..nv {
        let (head, tail) = rest.split_at_mut(offs[a + 1] - offs[a]);
        buckets.push(head);
        rest = tail;
    }
    let uniq: Vec<u32> = buckets
        .par_iter_mut()
        .map(|b| {
            b.sort_unstable();
            let mut u = 0u32;
            let mut last = u32::MAX;
            for &(o, _) in b.iter() {
                if o != last {
                    u += 1;
                    last = o;
                }
            }
            u
        })
        .collect();
    drop(buckets);
    let ne: usize = uniq.iter().map(|&u| u as usize).sum();
    let mut edges = vec![0i64; ne * 2];
    let mut t2e = vec![0i64; ns];
    let mut id = 0usize;
    for a in 0..nv {
        let mut last = u32::MAX;
        for &(o, slot) in &entries[offs[a]..offs[a + 1]] {
            if o != last {
                edges[id * 2] = a as i64;
                edges[id * 2 + 1] = o as i64;
                id += 1;
                last = o;
            }
            t2e[slot as usize] = (id - 1) as i64;
        }
    }
    Ok((edges, t2e))
}

pub struct MtOutput {
    /// [K,3] interpolated vertices.
    pub vertices: Vec<f32>,
    /// [K,2] crossing edges (a < b) the vertices lie on (Kaolin's `interp_v`).
    pub edges: Vec<i64>,
    /// [F,3] triangles.
    pub faces: Vec<i64>,
    /// [F] source tet of each triangle.
    pub tet_idx: Vec<i64>,
}

/// Marching tetrahedra on the CPU with Kaolin's exact vertex and face order (see the module docs).
/// `vertices` [N,3], `sdf` [N], `tets` [T,4].
pub fn marching_tets(vertices: &[f32], sdf: &[f32], tets: &[i64]) -> Result<MtOutput> {
    let nv = sdf.len();
    if vertices.len() != nv * 3 {
        return Err(MeshError::Invalid(format!(
            "marching_tets(): vertices must be [N,3] with N = len(sdf) = {nv}, got {} values",
            vertices.len()
        )));
    }
    check_tets(tets, nv, "marching_tets")?;
    if let Some(i) = sdf.par_iter().position_any(|s| s.is_nan()) {
        return Err(MeshError::Invalid(format!(
            "marching_tets(): sdf must not be NaN, got NaN at vertex {i}"
        )));
    }
    let occ: Vec<bool> = sdf.par_iter().map(|&s| s > 0.0).collect();
    // (tet id, case) of valid tets, in tet order.
    let valid: Vec<(u32, u8)> = tets
        .par_chunks_exact(4)
        .enumerate()
        .filter_map(|(i, t)| {
            let c = occ[t[0] as usize] as u8
                | (occ[t[1] as usize] as u8) << 1
                | (occ[t[2] as usize] as u8) << 2
                | (occ[t[3] as usize] as u8) << 3;
            (c != 0 && c != 15).then_some((i as u32, c))
        })
        .collect();
    let key = |a: i64, b: i64| -> u64 { ((a.min(b) as u64) << 32) | a.max(b) as u64 };
    let mut keys: Vec<u64> = valid
        .par_iter()
        .flat_map_iter(|&(ti, _)| {
            let t = &tets[ti as usize * 4..ti as usize * 4 + 4];
            TET_EDGES
                .iter()
                .filter(|e| occ[t[e[0]] as usize] != occ[t[e[1]] as usize])
                .map(move |e| key(t[e[0]], t[e[1]]))
        })
        .collect();
    keys.par_sort_unstable();
    keys.dedup();
    let edges: Vec<i64> = keys
        .iter()
        .flat_map(|&k| [(k >> 32) as i64, (k & 0xffff_ffff) as i64])
        .collect();
    let out_v: Vec<f32> = keys
        .par_iter()
        .flat_map_iter(|&k| {
            let (a, b) = ((k >> 32) as usize, (k & 0xffff_ffff) as usize);
            let (sa, nsb) = (sdf[a], -sdf[b]);
            let den = sa + nsb;
            let (wa, wb) = (nsb / den, sa / den);
            (0..3).map(move |c| vertices[a * 3 + c] * wa + vertices[b * 3 + c] * wb)
        })
        .collect();
    let vid = |a: i64, b: i64| -> i64 {
        keys.binary_search(&key(a, b))
            .map(|i| i as i64)
            .unwrap_or(-1)
    };
    let tri = |ti: u32, c: u8, second: bool| -> [i64; 3] {
        let t = &tets[ti as usize * 4..ti as usize * 4 + 4];
        let row = &TRIANGLE_TABLE[c as usize];
        let o = if second { 3 } else { 0 };
        [0, 1, 2].map(|k| {
            let e = TET_EDGES[row[o + k] as usize];
            vid(t[e[0]], t[e[1]])
        })
    };
    let ones: Vec<(u32, u8)> = valid
        .iter()
        .copied()
        .filter(|&(_, c)| NUM_TRIANGLES[c as usize] == 1)
        .collect();
    let twos: Vec<(u32, u8)> = valid
        .iter()
        .copied()
        .filter(|&(_, c)| NUM_TRIANGLES[c as usize] == 2)
        .collect();
    let mut faces: Vec<i64> = ones
        .par_iter()
        .flat_map_iter(|&(t, c)| tri(t, c, false))
        .collect();
    faces.par_extend(
        twos.par_iter()
            .flat_map_iter(|&(t, c)| tri(t, c, false).into_iter().chain(tri(t, c, true))),
    );
    let mut tet_idx: Vec<i64> = ones.iter().map(|&(t, _)| t as i64).collect();
    tet_idx.extend(twos.iter().flat_map(|&(t, _)| [t as i64, t as i64]));
    Ok(MtOutput {
        vertices: out_v,
        edges,
        faces,
        tet_idx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_volume(v: &[f32], t: &[i64]) -> f64 {
        let p = |i: usize| [0, 1, 2].map(|c| v[t[i] as usize * 3 + c] as f64);
        let (p0, p1, p2, p3) = (p(0), p(1), p(2), p(3));
        let d = |a: [f64; 3], b: [f64; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
        let (a, b, c) = (d(p1, p0), d(p2, p0), d(p3, p0));
        a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0])
    }

    #[test]
    fn kuhn_grid_is_positive_and_fills_the_cube() {
        let (v, t) = kuhn_grid(3).unwrap();
        assert_eq!(v.len(), 4 * 4 * 4 * 3);
        assert_eq!(t.len(), 6 * 27 * 4);
        let vol: f64 = t
            .chunks(4)
            .map(|q| {
                let s = signed_volume(&v, q);
                assert!(s > 0.0);
                s / 6.0
            })
            .sum();
        assert!((vol - 1.0).abs() < 1e-9, "{vol}");
        assert!(v.iter().all(|&x| (-0.5..=0.5).contains(&x)));
    }

    #[test]
    fn tet_edges_are_unique_sorted_and_consistent() {
        let (v, t) = kuhn_grid(2).unwrap();
        let (e, t2e) = tet_edges(&t, v.len() / 3).unwrap();
        let pairs: Vec<(i64, i64)> = e.chunks(2).map(|p| (p[0], p[1])).collect();
        assert!(pairs.windows(2).all(|w| w[0] < w[1]));
        assert!(pairs.iter().all(|p| p.0 < p.1));
        for (ti, q) in t.chunks(4).enumerate() {
            for (k, le) in TET_EDGES.iter().enumerate() {
                let (a, b) = (q[le[0]].min(q[le[1]]), q[le[0]].max(q[le[1]]));
                assert_eq!(pairs[t2e[ti * 6 + k] as usize], (a, b));
            }
        }
        // Euler characteristic of a tetrahedralised ball: V − E + F − T = 1; F from T and boundary.
        let nv = v.len() / 3;
        let nt = t.len() / 4;
        let nf_boundary = 6 * 2 * 2 * 2; // 2×2 squares per side, 2 triangles each
        let nf = (4 * nt + nf_boundary) / 2;
        assert_eq!(nv as i64 - pairs.len() as i64 + nf as i64 - nt as i64, 1);
    }

    #[test]
    fn kaolin_docstring_example() {
        // kaolin.ops.conversions.marching_tetrahedra docstring.
        let v = [0., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0., 1.];
        let out = marching_tets(&v, &[-1., -1., 0.5, 0.5], &[0, 1, 2, 3]).unwrap();
        let want = [
            0., 0.6667, 0., 0., 0., 0.6667, 0.3333, 0.6667, 0., 0.3333, 0., 0.6667,
        ];
        for (a, b) in out.vertices.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{:?}", out.vertices);
        }
        assert_eq!(out.faces, vec![3, 0, 1, 3, 2, 0]);
        assert_eq!(out.tet_idx, vec![0, 0]);
    }

    #[test]
    fn bad_indices_are_errors() {
        assert!(tet_edges(&[0, 1, 2, 9], 4).is_err());
        assert!(marching_tets(&[0.0; 12], &[0.0; 4], &[0, 1, 2, -1]).is_err());
        assert!(marching_tets(&[0.0; 12], &[f32::NAN; 4], &[0, 1, 2, 3]).is_err());
    }
}
