//! Signed distance from query points to a triangle mesh.
//!
//! * distance: exact Euclidean distance to the closest triangle (f64 throughout), found with a
//!   binned-SAH BVH (`bvh.rs`) and Ericson's closest-point-on-triangle (`geom.rs`);
//! * sign: the generalised winding number w (Jacobson et al. 2013, https://doi.org/10.1145/2461912.2461916),
//!   evaluated hierarchically (Barill et al. 2018, `winding.rs`); a point is *inside* when w > 0.5 and
//!   then gets a negative distance (open3d's convention, which the original's DMTet initialisation
//!   uses; trimesh's `signed_distance` has the opposite sign). Unlike a ray-cast parity, w degrades
//!   gracefully on meshes with holes, self-intersections or duplicated faces.
//!
//! Input rules: every vertex coordinate and every query point must be finite (the first bad row is named
//! in the error); faces must index the vertices and there must be at least one. Degenerate faces
//! (repeated or collinear vertices, zero area) are kept: their distance is the distance to their edges
//! (a segment or a point) and they add nothing to w.
//!
//! Queries run in parallel (rayon) over chunks of points sorted along a Morton curve; inside a chunk the
//! previous point's closest triangle seeds the search bound, which prunes most of the tree.
// Axis (x, y, z) and lane loops index several arrays at once; iterator chains would obscure the formulas.
#![allow(clippy::needless_range_loop)]

mod bvh;
mod geom;
mod winding;

use crate::mesh::index_triples;
use crate::{MeshError, Result};
use bvh::Bvh;
use geom::{norm2, sub, Tri, V3};
use rayon::prelude::*;
use winding::Fwn;

/// A float type accepted for coordinates and produced for results.
pub trait Real: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
}
impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}
impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// Default accuracy of the hierarchical winding number (Barill et al.'s β): a node is expanded when
/// the query is farther than β × its radius. 2 keeps |w − w_exact| around 1e-3 or below (see tests).
pub const DEFAULT_BETA: f64 = 2.0;

#[derive(Clone, Copy, Debug)]
pub struct SdfOptions {
    /// Winding-number accuracy (> 1; `f64::INFINITY` sums every triangle exactly).
    pub beta: f64,
    /// Compute the sign (false: unsigned distance, no winding numbers).
    pub signed: bool,
    /// Also return the closest surface point of every query.
    pub closest: bool,
}

impl Default for SdfOptions {
    fn default() -> Self {
        SdfOptions {
            beta: DEFAULT_BETA,
            signed: true,
            closest: false,
        }
    }
}

/// Per-query results, in the order of the query points.
#[derive(Debug)]
pub struct SdfResult<O> {
    /// Signed (or unsigned) distance [N].
    pub distance: Vec<O>,
    /// Index of the closest face [N] (ties go to whichever the search meets first).
    pub face: Vec<i64>,
    /// Closest surface points [N·3] (empty unless `SdfOptions::closest`).
    pub closest: Vec<O>,
}

/// A triangle mesh prepared for distance and winding-number queries (build once, query many times).
pub struct MeshSdf {
    bvh: Bvh,
    fwn: Fwn,
    /// Boundary chain (see [`Boundary`]); `None` when it is empty (a closed surface).
    boundary: Option<Boundary>,
}

/// The boundary chain Σ_t ∂t of the surface (vertices identified by position), as segments with their
/// total length Σ |multiplicity| · length. The gradient of w off the surface is the Biot–Savart field
/// of this chain (the gradient of a solid angle is the field of its boundary loop), so
/// |∇w(x)| ≤ L / (4π D²) where D is the distance from x to the chain, and w is locally constant when the
/// chain is empty. The sign of one query then carries to the next when the segment between them stays
/// inside their empty balls (|q − q'| < d + d', no surface crossed) and the certified drift of w cannot
/// reach 0.5.
struct Boundary {
    segments: Bvh,
    length: f64,
}

/// w values this close to 0.5 are always recomputed (room for the hierarchical approximation's error).
const W_MARGIN: f64 = 0.05;

fn first_non_finite<R: Real>(xs: &[R]) -> Option<(usize, f64)> {
    xs.par_chunks(3)
        .position_first(|c| c.iter().any(|x| !x.to_f64().is_finite()))
        .map(|row| {
            (
                row,
                xs[3 * row..3 * row + 3]
                    .iter()
                    .map(|x| x.to_f64())
                    .find(|x| !x.is_finite())
                    .unwrap_or(0.0),
            )
        })
}

fn check_points<R: Real>(op: &str, arg: &str, xs: &[R]) -> Result<()> {
    if !xs.len().is_multiple_of(3) {
        return Err(MeshError::Invalid(format!(
            "{op}(): {arg} must be [N,3], got {} values",
            xs.len()
        )));
    }
    if xs.len() / 3 > u32::MAX as usize {
        return Err(MeshError::Invalid(format!(
            "{op}(): at most 2^32-1 {arg} are supported, got {}",
            xs.len() / 3
        )));
    }
    match first_non_finite(xs) {
        Some((row, x)) => Err(MeshError::Invalid(format!(
            "{op}(): {arg} must be finite, got {x} in row {row}"
        ))),
        None => Ok(()),
    }
}

fn check_beta(op: &str, beta: f64) -> Result<()> {
    // The expansion converges only outside the node's ball, hence β > 1.
    if beta.is_nan() || beta <= 1.0 {
        return Err(MeshError::Invalid(format!(
            "{op}(): beta must be > 1 (inf = exact), got {beta}"
        )));
    }
    Ok(())
}

impl MeshSdf {
    /// Validates the mesh and builds the BVH, the winding-number moments and the boundary chain.
    /// `vertices` is [V·3] and `faces` [F·3] (row-major); `op` names the calling operation in errors.
    pub fn new<R: Real>(op: &str, vertices: &[R], faces: &[i64]) -> Result<Self> {
        check_points(op, "vertices", vertices)?;
        let f = index_triples(faces, vertices.len() / 3, op, "faces")?;
        if f.is_empty() {
            return Err(MeshError::Invalid(format!(
                "{op}(): faces must hold at least one triangle, got 0"
            )));
        }
        // BVH child codes keep one bit for the leaf flag.
        if f.len() >= bvh::LEAF as usize {
            return Err(MeshError::Invalid(format!(
                "{op}(): at most 2^31-1 faces are supported, got {}",
                f.len()
            )));
        }
        let v: Vec<V3> = vertices
            .chunks_exact(3)
            .map(|c| [c[0].to_f64(), c[1].to_f64(), c[2].to_f64()])
            .collect();
        let bvh = Bvh::new(
            f.par_iter()
                .map(|t| Tri::new(t.map(|i| v[i as usize])))
                .collect(),
        );
        let fwn = Fwn::new(&bvh);
        Ok(MeshSdf {
            bvh,
            fwn,
            boundary: Boundary::new(&v, &f),
        })
    }

    pub fn num_faces(&self) -> usize {
        self.bvh.tris.len()
    }

    /// Whether the surface has no boundary (every edge cancels with an opposite one): then w is an
    /// integer off the surface and the sign of a query carries exactly to its neighbours.
    pub fn is_closed(&self) -> bool {
        self.boundary.is_none()
    }

    /// Distances (signed unless `opts.signed` is false), closest faces and, optionally, closest points.
    pub fn signed_distance<R: Real, O: Real>(
        &self,
        op: &str,
        points: &[R],
        opts: &SdfOptions,
    ) -> Result<SdfResult<O>> {
        check_points(op, "points", points)?;
        if opts.signed {
            check_beta(op, opts.beta)?;
        }
        let beta2 = opts.beta * opts.beta;
        let hits = for_each_point(points, |q, st| {
            let mut best = (f64::INFINITY, 0u32, q);
            if let Some(s) = st.prev {
                let c = self.bvh.tris[s as usize].closest(q);
                best = (norm2(sub(c, q)), s, c);
            }
            self.bvh.nearest(q, &mut best, &mut st.near);
            st.prev = Some(best.1);
            let mut d = best.0.sqrt();
            // On the surface (d = 0) the sign does not matter; skip the winding number.
            if opts.signed && d > 0.0 && self.inside(q, d, beta2, st) {
                d = -d;
            }
            Hit {
                d,
                slot: best.1,
                p: best.2,
            }
        });
        let face = &self.bvh.order;
        let mut out = SdfResult {
            distance: hits.par_iter().map(|h| O::from_f64(h.d)).collect(),
            face: hits
                .par_iter()
                .map(|h| face[h.slot as usize] as i64)
                .collect(),
            closest: Vec::new(),
        };
        if opts.closest {
            out.closest = hits
                .par_iter()
                .flat_map_iter(|h| h.p.map(O::from_f64))
                .collect();
        }
        Ok(out)
    }

    /// Generalised winding numbers (≈ 1 inside a closed, outward-oriented mesh, ≈ 0 outside), each
    /// evaluated on its own (no carrying between points).
    pub fn winding_numbers<R: Real, O: Real>(
        &self,
        op: &str,
        points: &[R],
        beta: f64,
    ) -> Result<Vec<O>> {
        check_points(op, "points", points)?;
        check_beta(op, beta)?;
        let w = for_each_point(points, |q, st| {
            self.fwn
                .winding_number(&self.bvh, q, beta * beta, &mut st.wind)
        });
        Ok(w.into_iter().map(O::from_f64).collect())
    }

    /// w(q) > 0.5 for a point at distance d > 0 from the surface, carried from the previous query of this
    /// chunk when that is certified (see [`Boundary`]), else evaluated (and q becomes the new anchor).
    fn inside(&self, q: V3, d: f64, beta2: f64, st: &mut Scratch) -> bool {
        if let Some(s) = &mut st.sign {
            let step = norm2(sub(q, s.q)).sqrt();
            // The open balls B(q, d) and B(q', d') hold no surface; their union covers the segment.
            if step < (1.0 - 1e-9) * (d + s.d) {
                let drift = match &self.boundary {
                    None => Some(0.0),
                    Some(b) => {
                        let reach = s.reach.max(norm2(sub(q, s.anchor)).sqrt());
                        let dmin = s.anchor_db - reach;
                        (dmin > 0.0)
                            .then(|| step * b.length / (4.0 * std::f64::consts::PI * dmin * dmin))
                    }
                };
                if let Some(drift) = drift {
                    let err = s.err + drift;
                    if (s.w - 0.5).abs() > err + W_MARGIN {
                        (s.q, s.d, s.err) = (q, d, err);
                        s.reach = s.reach.max(norm2(sub(q, s.anchor)).sqrt());
                        return s.w > 0.5;
                    }
                }
            }
        }
        let w = self.fwn.winding_number(&self.bvh, q, beta2, &mut st.wind);
        let anchor_db = self.boundary.as_ref().map_or(f64::INFINITY, |b| {
            let mut best = (f64::INFINITY, 0, q);
            b.segments.nearest(q, &mut best, &mut st.near);
            best.0.sqrt()
        });
        st.sign = Some(SignState {
            q,
            d,
            w,
            err: 0.0,
            anchor: q,
            anchor_db,
            reach: 0.0,
        });
        w > 0.5
    }
}

impl Boundary {
    /// `None` when every edge cancels (vertices identified by exact position, ±0 alike).
    fn new(v: &[V3], faces: &[[u32; 3]]) -> Option<Boundary> {
        let key = |p: V3| p.map(|x| if x == 0.0 { 0u64 } else { x.to_bits() });
        let mut ids: Vec<([u64; 3], u32)> = v
            .iter()
            .enumerate()
            .map(|(i, &p)| (key(p), i as u32))
            .collect();
        ids.par_sort_unstable();
        let mut canon = vec![0u32; v.len()];
        for (k, &(kk, i)) in ids.iter().enumerate() {
            canon[i as usize] = if k > 0 && ids[k - 1].0 == kk {
                canon[ids[k - 1].1 as usize]
            } else {
                i
            };
        }
        // Directed edges as (min, max, ±1), summed per undirected edge.
        let mut edges: Vec<(u32, u32, i32)> = faces
            .iter()
            .flat_map(|t| [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])])
            .map(|(a, b)| (canon[a as usize], canon[b as usize]))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| if a < b { (a, b, 1) } else { (b, a, -1) })
            .collect();
        edges.par_sort_unstable_by_key(|e| (e.0, e.1));
        let (mut segs, mut length) = (Vec::new(), 0.0);
        for run in edges.chunk_by(|x, y| (x.0, x.1) == (y.0, y.1)) {
            let m: i32 = run.iter().map(|e| e.2).sum();
            if m != 0 {
                let (a, b) = (v[run[0].0 as usize], v[run[0].1 as usize]);
                length += m.unsigned_abs() as f64 * norm2(sub(b, a)).sqrt();
                segs.push(Tri::new([a, b, b]));
            }
        }
        (!segs.is_empty()).then(|| Boundary {
            segments: Bvh::new(segs),
            length,
        })
    }
}

/// One-shot convenience: builds a [`MeshSdf`] and queries it.
pub fn signed_distance<R: Real, P: Real, O: Real>(
    op: &str,
    vertices: &[R],
    faces: &[i64],
    points: &[P],
    opts: &SdfOptions,
) -> Result<SdfResult<O>> {
    MeshSdf::new(op, vertices, faces)?.signed_distance(op, points, opts)
}

#[derive(Clone, Copy, Default)]
struct Hit {
    d: f64,
    slot: u32,
    p: V3,
}

/// Per-task scratch: the previous query's closest triangle and sign state, and the traversal stacks.
#[derive(Default)]
struct Scratch {
    prev: Option<u32>,
    sign: Option<SignState>,
    near: Vec<(u32, f64)>,
    wind: Vec<u32>,
}

/// The last signed query q (distance d) of a chunk: its w (from the anchor, the last evaluated point),
/// the certified drift bound `err` accumulated since the anchor, the anchor's distance to the boundary
/// chain and the farthest any carried query went from the anchor.
struct SignState {
    q: V3,
    d: f64,
    w: f64,
    err: f64,
    anchor: V3,
    anchor_db: f64,
    reach: f64,
}

/// Points per parallel task: long enough runs along the Morton curve for the carried bound to pay.
const CHUNK: usize = 512;

/// Applies `f` to every point (as f64) in Morton order, in parallel chunks, and returns the results in
/// input order.
fn for_each_point<R: Real, T: Copy + Default + Send + Sync>(
    points: &[R],
    f: impl Fn(V3, &mut Scratch) -> T + Sync,
) -> Vec<T> {
    let n = points.len() / 3;
    let at = |i: u32| [0, 1, 2].map(|k| points[3 * i as usize + k].to_f64());
    let order = morton_order(points);
    let mut sorted = vec![T::default(); n];
    sorted
        .par_chunks_mut(CHUNK)
        .zip(order.par_chunks(CHUNK))
        .for_each(|(out, ch)| {
            let mut st = Scratch::default();
            for (o, &i) in out.iter_mut().zip(ch) {
                *o = f(at(i), &mut st);
            }
        });
    let mut out = vec![T::default(); n];
    for (&i, r) in order.iter().zip(sorted) {
        out[i as usize] = r;
    }
    out
}

/// Point indices sorted by their 30-bit Morton code in the points' bounding box (finite points only).
fn morton_order<R: Real>(points: &[R]) -> Vec<u32> {
    let n = points.len() / 3;
    let (lo, hi) = points
        .par_chunks(3)
        .fold(
            || ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]),
            |(mut lo, mut hi), c| {
                for k in 0..3 {
                    lo[k] = lo[k].min(c[k].to_f64());
                    hi[k] = hi[k].max(c[k].to_f64());
                }
                (lo, hi)
            },
        )
        .reduce(
            || ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]),
            |a, b| {
                (
                    [0, 1, 2].map(|k| a.0[k].min(b.0[k])),
                    [0, 1, 2].map(|k| a.1[k].max(b.1[k])),
                )
            },
        );
    let ext = (0..3).map(|k| hi[k] - lo[k]).fold(0.0, f64::max);
    let s = if ext > 0.0 { 1023.0 / ext } else { 0.0 };
    let mut keys: Vec<u64> = (0..n)
        .into_par_iter()
        .map(|i| {
            let q = [0, 1, 2].map(|k| ((points[3 * i + k].to_f64() - lo[k]) * s) as u32);
            ((spread10(q[0]) | spread10(q[1]) << 1 | spread10(q[2]) << 2) << 32) | i as u64
        })
        .collect();
    keys.par_sort_unstable();
    keys.into_iter().map(|k| k as u32).collect()
}

/// Spreads the low 10 bits of x to every third bit.
fn spread10(x: u32) -> u64 {
    let mut x = (x & 0x3ff) as u64;
    x = (x | x << 16) & 0x0300_00ff;
    x = (x | x << 8) & 0x0300_f00f;
    x = (x | x << 4) & 0x030c_30c3;
    (x | x << 2) & 0x0924_9249
}

#[cfg(test)]
mod tests;
