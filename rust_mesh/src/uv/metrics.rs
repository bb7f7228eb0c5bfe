//! Quality metrics of a UV layout: exact overlapping-triangle pairs, flipped and zero-area triangles,
//! texel utilisation, Sander et al. L2/L∞ stretch, chart and seam-edge counts.
//!
//! Stretch follows P. Sander, J. Snyder, S. Gortler, H. Hoppe, "Texture Mapping Progressive Meshes",
//! SIGGRAPH 2001 (<https://hhoppe.com/tmpm.pdf>), §3, aggregated area-weighted over the whole atlas the
//! way xatlas' `Quality::computeMetrics` does, and normalised by `k = sqrt(ΣA_uv / ΣA_3d)` so that any
//! uniformly scaled isometric layout scores exactly 1.
use crate::error::{MeshError, Result};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

/// Everything `uv_metrics` measures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UvMetrics {
    /// Unordered pairs of UV triangles whose interiors intersect (touching along edges or at vertices is
    /// not an overlap). Exact orientation predicates; zero-area triangles have no interior.
    pub overlapping_pairs: u64,
    /// Triangles with negative signed UV area (u right, v up; counter-clockwise is positive).
    pub flipped: u64,
    /// Triangles with exactly zero UV area.
    pub zero_area: u64,
    /// Texels of a `resolution × resolution` image whose centre lies in some UV triangle, divided by
    /// `resolution²`.
    pub utilisation: f64,
    /// Sander's area-weighted L2 stretch, normalised (1 = isometric up to a global scale).
    pub l2_stretch: f64,
    /// Sander's L∞ stretch: the largest singular value over all triangles, normalised the same way.
    pub linf_stretch: f64,
    /// Connected components of non-degenerate UV triangles that share a corner (same welded 3-D position and
    /// same UV coordinates).
    pub chart_count: u64,
    /// Interior mesh edges (shared by ≥ 2 faces, vertices welded by exact position) whose faces do not all
    /// map them to the same UV edge (compared by UV coordinates, not indices).
    pub seam_edge_count: u64,
}

/// Exact sign of the 2-D orientation `(b − a) × (c − a)` for f32 inputs.
///
/// Why exact: the differences of two f32 values are exact in f64 (for coordinates within 2^29 of each
/// other in magnitude, which UVs always are), products of two 25-bit mantissas are exact in f64, and
/// comparing the two exact products gives the exact sign of their difference without a subtraction.
#[inline]
fn orient(a: [f32; 2], b: [f32; 2], c: [f32; 2]) -> Ordering {
    let p = (b[0] as f64 - a[0] as f64) * (c[1] as f64 - a[1] as f64);
    let q = (b[1] as f64 - a[1] as f64) * (c[0] as f64 - a[0] as f64);
    p.partial_cmp(&q).unwrap_or(Ordering::Equal)
}

/// True if no edge of `t` (counter-clockwise) separates `s`: every vertex of `s` on the closed outer side
/// of one edge of `t` means the interiors are disjoint.
#[inline]
fn edge_of_separates(t: &[[f32; 2]; 3], s: &[[f32; 2]; 3]) -> bool {
    (0..3).any(|k| {
        let (a, b) = (t[k], t[(k + 1) % 3]);
        s.iter().all(|&p| orient(a, b, p) != Ordering::Greater)
    })
}

/// Interiors of two counter-clockwise, non-degenerate triangles intersect. By the separating axis
/// theorem for convex polygons, closed triangles with disjoint interiors are weakly separated by the line
/// through an edge of one of them, so testing the six edge lines is complete.
#[inline]
pub(crate) fn triangles_overlap(t: &[[f32; 2]; 3], s: &[[f32; 2]; 3]) -> bool {
    !edge_of_separates(t, s) && !edge_of_separates(s, t)
}

fn check_indices(op: &str, name: &str, idx: &[[u32; 3]], n: usize) -> Result<()> {
    if let Some((f, tri)) = idx
        .iter()
        .enumerate()
        .find(|(_, t)| t.iter().any(|&i| i as usize >= n))
    {
        return Err(MeshError::Invalid(format!(
            "{op}(): {name} must index {n} vertices, got face {f} = {tri:?}"
        )));
    }
    Ok(())
}

/// Counts unordered pairs of UV triangles with intersecting interiors.
///
/// Triangles are bucketed into a uniform grid over the UV bounding box; each candidate pair is tested
/// once, in the grid cell that holds the lower-left corner of the intersection of their bounding boxes.
pub fn count_overlaps(tris: &[[[f32; 2]; 3]]) -> u64 {
    // Orient every triangle counter-clockwise; zero-area ones have no interior and are dropped.
    let live: Vec<([[f32; 2]; 3], [f32; 4])> = tris
        .par_iter()
        .filter_map(|t| {
            let o = orient(t[0], t[1], t[2]);
            let t = match o {
                Ordering::Equal => return None,
                Ordering::Greater => *t,
                Ordering::Less => [t[0], t[2], t[1]],
            };
            if t.iter().flatten().any(|x| !x.is_finite()) {
                return None;
            }
            let xs = [t[0][0], t[1][0], t[2][0]];
            let ys = [t[0][1], t[1][1], t[2][1]];
            let bb = [
                xs.iter().copied().fold(f32::INFINITY, f32::min),
                ys.iter().copied().fold(f32::INFINITY, f32::min),
                xs.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                ys.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            ];
            Some((t, bb))
        })
        .collect();
    if live.len() < 2 {
        return 0;
    }
    let mut lo = [f32::INFINITY; 2];
    let mut hi = [f32::NEG_INFINITY; 2];
    for (_, bb) in &live {
        lo[0] = lo[0].min(bb[0]);
        lo[1] = lo[1].min(bb[1]);
        hi[0] = hi[0].max(bb[2]);
        hi[1] = hi[1].max(bb[3]);
    }
    let g = ((live.len() as f64).sqrt().ceil() as usize).clamp(1, 4096);
    let span = [
        (hi[0] - lo[0]).max(f32::MIN_POSITIVE),
        (hi[1] - lo[1]).max(f32::MIN_POSITIVE),
    ];
    let cell = |x: f32, axis: usize| -> usize {
        let c = ((x - lo[axis]) / span[axis] * g as f32) as isize;
        c.clamp(0, g as isize - 1) as usize
    };
    let ranges: Vec<[usize; 4]> = live
        .iter()
        .map(|(_, bb)| {
            [
                cell(bb[0], 0),
                cell(bb[1], 1),
                cell(bb[2], 0),
                cell(bb[3], 1),
            ]
        })
        .collect();
    // Counting sort of (cell, triangle) entries: triangles listed per cell in index order.
    let mut start = vec![0usize; g * g + 1];
    for r in &ranges {
        for y in r[1]..=r[3] {
            for x in r[0]..=r[2] {
                start[y * g + x + 1] += 1;
            }
        }
    }
    for i in 0..g * g {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut entries = vec![0u32; start[g * g]];
    for (i, r) in ranges.iter().enumerate() {
        for y in r[1]..=r[3] {
            for x in r[0]..=r[2] {
                entries[fill[y * g + x]] = i as u32;
                fill[y * g + x] += 1;
            }
        }
    }
    (0..g * g)
        .into_par_iter()
        .map(|c| {
            let (cx, cy) = (c % g, c / g);
            let list = &entries[start[c]..start[c + 1]];
            let mut n = 0u64;
            for (k, &i) in list.iter().enumerate() {
                let (ti, bi) = &live[i as usize];
                let ri = &ranges[i as usize];
                for &j in &list[k + 1..] {
                    let (tj, bj) = &live[j as usize];
                    // Bounding boxes must overlap with positive area for the interiors to.
                    if bi[0] >= bj[2] || bj[0] >= bi[2] || bi[1] >= bj[3] || bj[1] >= bi[3] {
                        continue;
                    }
                    let rj = &ranges[j as usize];
                    if ri[0].max(rj[0]) != cx || ri[1].max(rj[1]) != cy {
                        continue; // this pair is counted in another cell
                    }
                    if triangles_overlap(ti, tj) {
                        n += 1;
                    }
                }
            }
            n
        })
        .sum()
}

/// Fraction of texels of a `resolution²` image whose centre `((x + ½)/res, (y + ½)/res)` lies inside
/// (or on the edge of) at least one UV triangle.
pub fn texel_coverage(tris: &[[[f32; 2]; 3]], resolution: u32) -> f64 {
    let res = resolution as usize;
    let words_per_row = res.div_ceil(64);
    let bits: Vec<AtomicU64> = (0..words_per_row * res)
        .map(|_| AtomicU64::new(0))
        .collect();
    let r = resolution as f64;
    tris.par_iter().for_each(|t| {
        let p: [[f64; 2]; 3] =
            [0, 1, 2].map(|k| [t[k][0] as f64 * r - 0.5, t[k][1] as f64 * r - 0.5]);
        if p.iter().flatten().any(|x| !x.is_finite()) {
            return;
        }
        let area =
            (p[1][0] - p[0][0]) * (p[2][1] - p[0][1]) - (p[1][1] - p[0][1]) * (p[2][0] - p[0][0]);
        if area == 0.0 {
            return;
        }
        let s = area.signum();
        let x0 = p
            .iter()
            .map(|q| q[0])
            .fold(f64::INFINITY, f64::min)
            .ceil()
            .max(0.0) as usize;
        let x1 = p
            .iter()
            .map(|q| q[0])
            .fold(f64::NEG_INFINITY, f64::max)
            .floor()
            .min(r - 1.0);
        let y0 = p
            .iter()
            .map(|q| q[1])
            .fold(f64::INFINITY, f64::min)
            .ceil()
            .max(0.0) as usize;
        let y1 = p
            .iter()
            .map(|q| q[1])
            .fold(f64::NEG_INFINITY, f64::max)
            .floor()
            .min(r - 1.0);
        if x1 < 0.0 || y1 < 0.0 {
            return;
        }
        let (x1, y1) = (x1 as usize, y1 as usize);
        for y in y0..=y1 {
            let yf = y as f64;
            for x in x0..=x1 {
                let xf = x as f64;
                let inside = (0..3).all(|k| {
                    let (a, b) = (p[k], p[(k + 1) % 3]);
                    s * ((b[0] - a[0]) * (yf - a[1]) - (b[1] - a[1]) * (xf - a[0])) >= 0.0
                });
                if inside {
                    bits[y * words_per_row + x / 64]
                        .fetch_or(1u64 << (x % 64), AtomicOrdering::Relaxed);
                }
            }
        }
    });
    let set: u64 = bits
        .iter()
        .map(|w| w.load(AtomicOrdering::Relaxed).count_ones() as u64)
        .sum();
    set as f64 / (r * r)
}

/// Sander's stretch singular values of one triangle: `(σ_max, σ_min, A_uv, A_3d)`, with `A_uv` signed.
fn sander(p: [[f64; 3]; 3], q: [[f64; 2]; 3]) -> (f64, f64, f64, f64) {
    let [s1, t1] = q[0];
    let [s2, t2] = q[1];
    let [s3, t3] = q[2];
    let ap = ((s2 - s1) * (t3 - t1) - (s3 - s1) * (t2 - t1)) / 2.0;
    let e1 = [p[1][0] - p[0][0], p[1][1] - p[0][1], p[1][2] - p[0][2]];
    let e2 = [p[2][0] - p[0][0], p[2][1] - p[0][1], p[2][2] - p[0][2]];
    let cr = [
        e1[1] * e2[2] - e1[2] * e2[1],
        e1[2] * e2[0] - e1[0] * e2[2],
        e1[0] * e2[1] - e1[1] * e2[0],
    ];
    let a3 = 0.5 * (cr[0] * cr[0] + cr[1] * cr[1] + cr[2] * cr[2]).sqrt();
    if ap == 0.0 {
        return (f64::INFINITY, 0.0, 0.0, a3);
    }
    let mut ss = [0.0; 3];
    let mut st = [0.0; 3];
    for d in 0..3 {
        ss[d] = (p[0][d] * (t2 - t3) + p[1][d] * (t3 - t1) + p[2][d] * (t1 - t2)) / (2.0 * ap);
        st[d] = (p[0][d] * (s3 - s2) + p[1][d] * (s1 - s3) + p[2][d] * (s2 - s1)) / (2.0 * ap);
    }
    let a: f64 = ss.iter().map(|x| x * x).sum();
    let b: f64 = ss.iter().zip(&st).map(|(x, y)| x * y).sum();
    let c: f64 = st.iter().map(|x| x * x).sum();
    let disc = ((a - c) * (a - c) + 4.0 * b * b).sqrt();
    let smax = (0.5 * (a + c + disc)).max(0.0).sqrt();
    let smin = (0.5 * (a + c - disc)).max(0.0).sqrt();
    (smax, smin, ap, a3)
}

struct Dsu(Vec<u32>);
impl Dsu {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let p = self.0[self.0[x as usize] as usize];
            self.0[x as usize] = p;
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi as usize] = lo;
        }
    }
}

/// All metrics of a UV layout. `faces` index `positions`, `uv_faces` index `uvs`, face by face. For an
/// xatlas-style unwrap pass the input faces and the re-indexed ones, so that seams are visible.
pub fn uv_metrics(
    positions: &[[f32; 3]],
    faces: &[[u32; 3]],
    uvs: &[[f32; 2]],
    uv_faces: &[[u32; 3]],
    resolution: u32,
) -> Result<UvMetrics> {
    const OP: &str = "uv_metrics";
    if faces.len() != uv_faces.len() {
        return Err(MeshError::Invalid(format!(
            "{OP}(): uv_faces must have one row per face ({}), got {}",
            faces.len(),
            uv_faces.len()
        )));
    }
    if resolution == 0 || resolution > 1 << 15 {
        return Err(MeshError::Invalid(format!(
            "{OP}(): resolution must be in [1, 32768], got {resolution}"
        )));
    }
    check_indices(OP, "faces", faces, positions.len())?;
    check_indices(OP, "uv_faces", uv_faces, uvs.len())?;
    if let Some(i) = uvs
        .iter()
        .position(|u| !u[0].is_finite() || !u[1].is_finite())
    {
        return Err(MeshError::Invalid(format!(
            "{OP}(): uvs must be finite, got {:?} at row {i}",
            uvs[i]
        )));
    }
    if let Some(i) = positions
        .iter()
        .position(|p| p.iter().any(|x| !x.is_finite()))
    {
        return Err(MeshError::Invalid(format!(
            "{OP}(): vertices must be finite, got {:?} at row {i}",
            positions[i]
        )));
    }
    let tris: Vec<[[f32; 2]; 3]> = uv_faces
        .iter()
        .map(|f| f.map(|i| uvs[i as usize]))
        .collect();

    let overlapping_pairs = count_overlaps(&tris);
    let utilisation = texel_coverage(&tris, resolution);

    // Per-face stretch terms, then a deterministic serial reduction.
    let per_face: Vec<(f64, f64, f64, f64)> = faces
        .par_iter()
        .zip(uv_faces.par_iter())
        .map(|(f, g)| {
            let p = f.map(|i| positions[i as usize].map(|x| x as f64));
            let q = g.map(|i| uvs[i as usize].map(|x| x as f64));
            sander(p, q)
        })
        .collect();
    let (mut flipped, mut zero_area) = (0u64, 0u64);
    let (mut sum_l2, mut sum_a3, mut sum_ap, mut max_s) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for &(smax, smin, ap, a3) in &per_face {
        if ap < 0.0 {
            flipped += 1;
        } else if ap == 0.0 {
            zero_area += 1;
        }
        if ap == 0.0 || a3 == 0.0 {
            continue; // no stretch defined for a degenerate triangle on either side
        }
        sum_l2 += 0.5 * (smax * smax + smin * smin) * a3;
        sum_a3 += a3;
        sum_ap += ap.abs();
        max_s = max_s.max(smax);
    }
    let (l2_stretch, linf_stretch) = if sum_a3 > 0.0 {
        let k = (sum_ap / sum_a3).sqrt();
        ((sum_l2 / sum_a3).sqrt() * k, max_s * k)
    } else {
        (0.0, 0.0)
    };

    // Charts and seams must not depend on how vertices are indexed (a triangle soup, or xatlas-style
    // output with one vertex per input vertex and chart, names one UV point by several indices). So a
    // corner is identified by its welded 3-D position and its exact UV coordinates.
    let pos_rep = crate::uv::weld_map(positions);
    let uv_bits = |u: [f32; 2]| u.map(|x| if x == 0.0 { 0u32 } else { x.to_bits() });
    let mut corner_keys: Vec<(u32, [u32; 2], u32)> = faces
        .iter()
        .zip(uv_faces)
        .enumerate()
        .flat_map(|(fi, (f, g))| {
            let pos_rep = &pos_rep;
            (0..3).map(move |k| {
                (
                    pos_rep[f[k] as usize],
                    uv_bits(uvs[g[k] as usize]),
                    (3 * fi + k) as u32,
                )
            })
        })
        .collect();
    corner_keys.par_sort_unstable();
    let mut corner_id = vec![0u32; corner_keys.len()];
    let mut next = 0u32;
    for i in 0..corner_keys.len() {
        if i > 0
            && (corner_keys[i].0, corner_keys[i].1) != (corner_keys[i - 1].0, corner_keys[i - 1].1)
        {
            next += 1;
        }
        corner_id[corner_keys[i].2 as usize] = next;
    }
    drop(corner_keys);

    // Charts: components of non-degenerate UV triangles joined by shared corners.
    let mut dsu = Dsu((0..=next).collect());
    let live: Vec<bool> = per_face.iter().map(|t| t.2 != 0.0).collect();
    for (fi, _) in live.iter().enumerate().filter(|(_, &l)| l) {
        dsu.union(corner_id[3 * fi], corner_id[3 * fi + 1]);
        dsu.union(corner_id[3 * fi], corner_id[3 * fi + 2]);
    }
    let mut roots: Vec<u32> = live
        .iter()
        .enumerate()
        .filter(|(_, &l)| l)
        .map(|(fi, _)| dsu.find(corner_id[3 * fi]))
        .collect();
    roots.par_sort_unstable();
    roots.dedup();
    let chart_count = roots.len() as u64;

    // Seams: (welded edge, corner pair) keys, oriented so the smaller welded vertex comes first.
    let mut keys: Vec<(u32, u32, u32, u32)> = faces
        .par_iter()
        .enumerate()
        .flat_map_iter(|(fi, f)| {
            let (pos_rep, corner_id) = (&pos_rep, &corner_id);
            (0..3).map(move |k| {
                let (a, b) = (pos_rep[f[k] as usize], pos_rep[f[(k + 1) % 3] as usize]);
                let (ua, ub) = (corner_id[3 * fi + k], corner_id[3 * fi + (k + 1) % 3]);
                if a < b {
                    (a, b, ua, ub)
                } else {
                    (b, a, ub, ua)
                }
            })
        })
        .collect();
    keys.par_sort_unstable();
    let mut seam_edge_count = 0u64;
    let mut i = 0;
    while i < keys.len() {
        let mut j = i + 1;
        let mut seam = false;
        while j < keys.len() && keys[j].0 == keys[i].0 && keys[j].1 == keys[i].1 {
            seam |= (keys[j].2, keys[j].3) != (keys[i].2, keys[i].3);
            j += 1;
        }
        if j - i >= 2 && seam {
            seam_edge_count += 1;
        }
        i = j;
    }

    Ok(UvMetrics {
        overlapping_pairs,
        flipped,
        zero_area,
        utilisation,
        l2_stretch,
        linf_stretch,
        chart_count,
        seam_edge_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad() -> (Vec<[f32; 3]>, Vec<[u32; 3]>) {
        (
            vec![[0., 0., 0.], [1., 0., 0.], [1., 1., 0.], [0., 1., 0.]],
            vec![[0, 1, 2], [0, 2, 3]],
        )
    }

    #[test]
    fn isometric_quad_is_perfect() {
        let (p, f) = quad();
        let uv: Vec<[f32; 2]> = p.iter().map(|q| [q[0] * 0.5, q[1] * 0.5]).collect();
        let m = uv_metrics(&p, &f, &uv, &f, 64).unwrap();
        assert_eq!(m.overlapping_pairs, 0);
        assert_eq!(m.flipped, 0);
        assert_eq!(m.chart_count, 1);
        assert_eq!(m.seam_edge_count, 0);
        assert!((m.l2_stretch - 1.0).abs() < 1e-9, "{m:?}");
        assert!((m.linf_stretch - 1.0).abs() < 1e-9, "{m:?}");
        assert!((m.utilisation - 0.25).abs() < 0.02, "{m:?}");
    }

    #[test]
    fn sheared_map_has_stretch_above_one() {
        let (p, f) = quad();
        let uv: Vec<[f32; 2]> = p
            .iter()
            .map(|q| [q[0] * 0.5 + 0.3 * q[1], q[1] * 0.2])
            .collect();
        let m = uv_metrics(&p, &f, &uv, &f, 64).unwrap();
        assert!(
            m.l2_stretch > 1.05 && m.linf_stretch > m.l2_stretch,
            "{m:?}"
        );
    }

    #[test]
    fn flip_overlap_and_seam_are_counted() {
        let (p, f) = quad();
        // The second triangle is cut off along the diagonal (a seam: its diagonal has other UVs) and
        // mirrored onto the first.
        let uv = vec![
            [0.1, 0.1],
            [0.9, 0.1],
            [0.9, 0.9],
            [0.12, 0.1],
            [0.9, 0.85],
            [0.9, 0.1],
        ];
        let uf = vec![[0, 1, 2], [3, 4, 5]];
        let m = uv_metrics(&p, &f, &uv, &uf, 32).unwrap();
        assert_eq!(m.flipped, 1);
        assert_eq!(m.overlapping_pairs, 1);
        assert_eq!(m.chart_count, 2);
        assert_eq!(m.seam_edge_count, 1);
        // Indexing does not matter: the same layout through shared indices where UVs agree, and a soup.
        let shared = uv_metrics(&p, &f, &uv[..3], &[[0, 1, 2], [0, 2, 1]], 32).unwrap();
        assert_eq!((shared.chart_count, shared.seam_edge_count), (1, 0));
        let soup: Vec<[f32; 3]> = [0, 1, 2, 0, 2, 3].iter().map(|&i| p[i]).collect();
        let sm = uv_metrics(&soup, &[[0, 1, 2], [3, 4, 5]], &uv, &uf, 32).unwrap();
        assert_eq!(sm, m);
    }

    #[test]
    fn touching_triangles_do_not_overlap() {
        let a = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        let b = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let c = [[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]]; // shares only a vertex with a
        let d = [[0.2, 0.2], [0.4, 0.2], [0.2, 0.4]]; // inside a
        assert!(!triangles_overlap(&a, &b));
        assert!(!triangles_overlap(&a, &c));
        assert!(triangles_overlap(&a, &d));
        assert_eq!(count_overlaps(&[a, b, c, d, [d[0], d[2], d[1]]]), 3);
    }

    #[test]
    fn grid_count_matches_brute_force() {
        // Deterministic pseudo-random small triangles.
        let mut s = 12345u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32) / (1u64 << 24) as f32
        };
        let tris: Vec<[[f32; 2]; 3]> = (0..400)
            .map(|_| {
                let (x, y) = (rnd(), rnd());
                [
                    [x, y],
                    [x + 0.05 * rnd(), y + 0.01],
                    [x + 0.01, y + 0.05 * rnd()],
                ]
            })
            .collect();
        let mut brute = 0;
        for i in 0..tris.len() {
            for j in i + 1..tris.len() {
                let fix = |t: [[f32; 2]; 3]| {
                    if orient(t[0], t[1], t[2]) == Ordering::Less {
                        [t[0], t[2], t[1]]
                    } else {
                        t
                    }
                };
                let (a, b) = (fix(tris[i]), fix(tris[j]));
                if orient(a[0], a[1], a[2]) != Ordering::Equal
                    && orient(b[0], b[1], b[2]) != Ordering::Equal
                    && triangles_overlap(&a, &b)
                {
                    brute += 1;
                }
            }
        }
        assert!(brute > 0);
        assert_eq!(count_overlaps(&tris), brute);
    }

    #[test]
    fn bad_input_is_an_error() {
        let (p, f) = quad();
        let uv = vec![[0.0, 0.0]; 4];
        assert!(uv_metrics(&p, &f, &uv, &[[0, 1, 9], [0, 1, 2]], 8).is_err());
        assert!(uv_metrics(&p, &f, &uv, &f[..1], 8).is_err());
        assert!(uv_metrics(&p, &f, &uv, &f, 0).is_err());
        let nan = vec![[f32::NAN, 0.0]; 4];
        assert!(uv_metrics(&p, &f, &nan, &f, 8).is_err());
    }
}
