//! Bounding-volume hierarchy over triangles (binned SAH) and the nearest-triangle query.
//!
//! Two views of one tree over the same triangle order:
//! * binary `nodes` (used by the winding number, `winding.rs`): every node is one 64-byte cache line
//!   holding the boxes of both children (f32, rounded outwards so they contain the f64 geometry) and,
//!   per child, either the index of an internal node or a leaf's triangle range. Node 0 is a virtual
//!   parent whose child 0 is the real root (possibly a leaf) and child 1 is empty;
//! * 4-wide `nodes4` (used by the nearest-triangle query): the binary tree collapsed two levels at a
//!   time, children boxes stored per axis in lanes so that one visit computes four box distances with
//!   SIMD-friendly f32 arithmetic (made conservative by a slack, so the result stays exact).
use super::geom::{norm2, sub, Tri, V3};
use rayon::prelude::*;

/// Leaves hold at most this many triangles (fewer where the SAH says splitting pays).
pub const LEAF_MAX: usize = 4;
const BINS: usize = 16;
/// Child code flag: the child is a leaf whose first triangle slot is `code & !LEAF`.
pub const LEAF: u32 = 1 << 31;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct Node {
    pub lo: [[f32; 3]; 2],
    pub hi: [[f32; 3]; 2],
    /// Per child: internal node index, or `LEAF | first triangle slot`.
    pub child: [u32; 2],
    /// Per child: triangle count of a leaf (0 for an internal child or the empty slot).
    pub count: [u8; 2],
}

impl Node {
    #[inline(always)]
    pub fn is_leaf(&self, k: usize) -> bool {
        self.child[k] & LEAF != 0
    }
    /// Triangle slots of leaf child `k`.
    #[inline(always)]
    pub fn range(&self, k: usize) -> std::ops::Range<usize> {
        let s = (self.child[k] & !LEAF) as usize;
        s..s + self.count[k] as usize
    }
}

#[derive(Clone, Copy)]
struct Aabb {
    lo: V3,
    hi: V3,
}

impl Aabb {
    const EMPTY: Aabb = Aabb {
        lo: [f64::INFINITY; 3],
        hi: [f64::NEG_INFINITY; 3],
    };
    // Plain comparisons compile to one min/max instruction (f64::min adds NaN handling; all finite here).
    #[inline(always)]
    fn grow(&mut self, p: V3) {
        for k in 0..3 {
            self.lo[k] = if p[k] < self.lo[k] { p[k] } else { self.lo[k] };
            self.hi[k] = if p[k] > self.hi[k] { p[k] } else { self.hi[k] };
        }
    }
    #[inline(always)]
    fn merge(&mut self, o: &Aabb) {
        for k in 0..3 {
            self.lo[k] = if o.lo[k] < self.lo[k] {
                o.lo[k]
            } else {
                self.lo[k]
            };
            self.hi[k] = if o.hi[k] > self.hi[k] {
                o.hi[k]
            } else {
                self.hi[k]
            };
        }
    }
    fn half_area(&self) -> f64 {
        let d = sub(self.hi, self.lo);
        if d[0] < 0.0 {
            return 0.0;
        }
        d[0] * d[1] + d[1] * d[2] + d[2] * d[0]
    }
    /// f32 box containing this one (∞ bounds for the empty box, so it is never visited).
    fn outward(&self) -> ([f32; 3], [f32; 3]) {
        let lo = self.lo.map(|x| {
            let y = x as f32;
            if (y as f64) > x {
                y.next_down()
            } else {
                y
            }
        });
        let hi = self.hi.map(|x| {
            let y = x as f32;
            if (y as f64) < x {
                y.next_up()
            } else {
                y
            }
        });
        (lo, hi)
    }
}

/// Four children per node, per-axis lanes (`lo[axis][lane]`); empty lanes have an inverted box.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct Node4 {
    pub lo: [[f32; 4]; 3],
    pub hi: [[f32; 4]; 3],
    /// Per lane: internal `nodes4` index, or `LEAF | first triangle slot`.
    pub child: [u32; 4],
    /// Per lane: triangle count of a leaf (0 for an internal lane or an empty one).
    pub count: [u8; 4],
}

/// A BVH with its triangles stored in leaf order.
pub struct Bvh {
    pub nodes: Vec<Node>,
    pub nodes4: Vec<Node4>,
    /// Largest |coordinate| of any box (sets the f32 slack of the 4-wide box distances).
    scale: f64,
    /// Triangles in BVH slot order.
    pub tris: Vec<Tri>,
    /// BVH slot → input triangle index.
    pub order: Vec<u32>,
    /// Triangle-slot range covered by every node (both children together).
    pub span: Vec<(u32, u32)>,
    /// Per triangle slot: a bounding sphere (centre, radius) in f32, radius rounded up so that
    /// |q − c| − r never exceeds the true distance; a cheap rejection before the exact test.
    pub spheres: Vec<[f32; 4]>,
}

/// Intermediate binary tree of the build (f64 boxes).
struct Tmp {
    bb: Aabb,
    s: usize,
    e: usize,
    kids: Option<(usize, usize)>,
}

impl Bvh {
    /// Builds the hierarchy over `tris` (may be empty: then every query finds nothing).
    pub fn new(tris: Vec<Tri>) -> Self {
        let tmp_nodes = build_tmp(&tris);
        let order: Vec<u32> = tmp_nodes.1;
        let tris: Vec<Tri> = order.iter().map(|&i| tris[i as usize]).collect();
        let (nodes, span) = pack(&tmp_nodes.0);
        let nodes4 = pack4(&tmp_nodes.0);
        let spheres = tris.iter().map(sphere).collect();
        let bb = tmp_nodes.0[0].bb;
        let scale = (0..3)
            .map(|k| bb.lo[k].abs().max(bb.hi[k].abs()))
            .fold(0.0, f64::max);
        Bvh {
            nodes,
            nodes4,
            scale,
            tris,
            order,
            span,
            spheres,
        }
    }

    /// Nearest triangle to `q`: updates `(best_d2, best_slot, best_point)` when something closer than
    /// `best_d2` exists (start with `f64::INFINITY` or a known candidate). `stack` is scratch space.
    #[inline]
    pub fn nearest(&self, q: V3, best: &mut (f64, u32, V3), stack: &mut Vec<(u32, f64)>) {
        if self.tris.is_empty() {
            return;
        }
        // f32 box gaps: every operand is within `scale`/|q| of the origin, so rounding (the query's
        // conversion and each subtraction) moves a per-axis gap by less than 2⁻²² of that; subtracting
        // this slack keeps every gap, hence the f64 sum of squares, a lower bound of the true distance.
        let s = self.scale.max(q[0].abs()).max(q[1].abs()).max(q[2].abs());
        let slack = (s * (1.0 / (1u64 << 22) as f64)) as f32;
        let qf = q.map(|x| x as f32);
        stack.clear();
        stack.push((0, 0.0));
        while let Some((ni, d2)) = stack.pop() {
            if d2 >= best.0 {
                continue;
            }
            let n = &self.nodes4[ni as usize];
            let d = lane_dist2(n, qf, slack);
            // Leaves first, nearest first, so the bound tightens before anything is pushed.
            let lanes = sort4(&d);
            for &l in &lanes {
                if n.child[l] & LEAF != 0 && n.count[l] > 0 && d[l] < best.0 {
                    self.test_leaf(n, l, q, best);
                }
            }
            // Internal lanes: push the farthest first so the nearest is searched next.
            for &l in lanes.iter().rev() {
                if n.child[l] & LEAF == 0 && d[l] < best.0 {
                    stack.push((n.child[l], d[l]));
                }
            }
        }
    }

    #[inline]
    fn test_leaf(&self, n: &Node4, l: usize, q: V3, best: &mut (f64, u32, V3)) {
        let first = (n.child[l] & !LEAF) as usize;
        for s in first..first + n.count[l] as usize {
            // Skip when |q − c| − r ≥ current best distance (squared form: no square root per triangle).
            let [cx, cy, cz, r] = self.spheres[s];
            let reach = r as f64 + best.0.sqrt();
            if norm2(sub(q, [cx as f64, cy as f64, cz as f64])) >= reach * reach {
                continue;
            }
            let c = self.tris[s].closest(q);
            let e = norm2(sub(c, q));
            if e < best.0 {
                *best = (e, s as u32, c);
            }
        }
    }
}

/// Lane indices in ascending order of `d` (a five-comparator sorting network).
#[inline(always)]
fn sort4(d: &[f64; 4]) -> [usize; 4] {
    let mut l = [0usize, 1, 2, 3];
    for (i, j) in [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)] {
        if d[l[j]] < d[l[i]] {
            l.swap(i, j);
        }
    }
    l
}

/// Lower bounds of the squared distances from `q` to the four lane boxes (∞ for empty lanes).
#[inline(always)]
fn lane_dist2(n: &Node4, q: [f32; 3], slack: f32) -> [f64; 4] {
    let mut d2 = [0f64; 4];
    for a in 0..3 {
        for l in 0..4 {
            let (below, above) = (n.lo[a][l] - q[a], q[a] - n.hi[a][l]);
            let e = if below > above { below } else { above } - slack;
            let e = if e > 0.0 { e } else { 0.0 } as f64;
            // Squares in f64: in f32 they would overflow beyond ~1e19 (and prune wrongly).
            d2[l] += e * e;
        }
    }
    d2
}

fn sphere(t: &Tri) -> [f32; 4] {
    let c = [0, 1, 2].map(|k| ((t.p[0][k] + t.p[1][k] + t.p[2][k]) / 3.0) as f32);
    let cf = c.map(|x| x as f64);
    let r =
        t.p.iter()
            .map(|&p| norm2(sub(p, cf)).sqrt())
            .fold(0.0, f64::max);
    // Round up twice: the f32 conversion and the f64 sqrt may each lose an ulp.
    let r32 = (r * (1.0 + 1e-12)) as f32;
    if !(c.iter().all(|x| x.is_finite()) && r32.is_finite()) {
        return [0.0, 0.0, 0.0, f32::INFINITY]; // beyond f32 range: never reject
    }
    [
        c[0],
        c[1],
        c[2],
        if (r32 as f64) < r { r32.next_up() } else { r32 }.next_up(),
    ]
}

fn tri_box(t: &Tri) -> Aabb {
    let mut b = Aabb::EMPTY;
    t.p.iter().for_each(|&p| b.grow(p));
    b
}

/// Subtrees with fewer triangles are built serially; larger ones split their two halves across threads.
const PAR_MIN: usize = 4096;

/// Binary SAH tree (node 0 = root) and the triangle order. Children come after their parent.
fn build_tmp(tris: &[Tri]) -> (Vec<Tmp>, Vec<u32>) {
    let boxes: Vec<Aabb> = tris.par_iter().map(tri_box).collect();
    let cent: Vec<V3> = boxes
        .par_iter()
        .map(|b| [0, 1, 2].map(|k| 0.5 * (b.lo[k] + b.hi[k])))
        .collect();
    let mut order: Vec<u32> = (0..tris.len() as u32).collect();
    let nodes = build_sub(&mut order, 0, &boxes, &cent, 0);
    (nodes, order)
}

/// The subtree over `ids` (triangle slots `s..s + ids.len()`), its root first. The two halves of a large
/// node are built in parallel down to a bounded depth (an unbalanced split of a degenerate input must
/// not recurse deeply), below which the serial builder takes over.
fn build_sub(ids: &mut [u32], s: usize, boxes: &[Aabb], cent: &[V3], depth: usize) -> Vec<Tmp> {
    if ids.len() < PAR_MIN || depth >= 24 {
        return build_serial(ids, s, boxes, cent);
    }
    let e = s + ids.len();
    let mut bb = Aabb::EMPTY;
    ids.iter().for_each(|&i| bb.merge(&boxes[i as usize]));
    let Some(mid) = split(ids, boxes, cent, bb.half_area()) else {
        return vec![Tmp {
            bb,
            s,
            e,
            kids: None,
        }];
    };
    let (l, r) = ids.split_at_mut(mid);
    let (ln, rn) = rayon::join(
        || build_sub(l, s, boxes, cent, depth + 1),
        || build_sub(r, s + mid, boxes, cent, depth + 1),
    );
    let mut nodes = Vec::with_capacity(1 + ln.len() + rn.len());
    let right = 1 + ln.len();
    nodes.push(Tmp {
        bb,
        s,
        e,
        kids: Some((1, right)),
    });
    for (part, off) in [(ln, 1), (rn, right)] {
        nodes.extend(part.into_iter().map(|mut t| {
            t.kids = t.kids.map(|(a, b)| (a + off, b + off));
            t
        }));
    }
    nodes
}

/// Serial build of the subtree over `ids` (slots `s..`) with an explicit stack.
fn build_serial(ids: &mut [u32], s0: usize, boxes: &[Aabb], cent: &[V3]) -> Vec<Tmp> {
    let mut nodes = vec![Tmp {
        bb: Aabb::EMPTY,
        s: s0,
        e: s0 + ids.len(),
        kids: None,
    }];
    let mut stack = vec![0usize];
    while let Some(ni) = stack.pop() {
        let (s, e) = (nodes[ni].s, nodes[ni].e);
        let part = &mut ids[s - s0..e - s0];
        let mut bb = Aabb::EMPTY;
        part.iter().for_each(|&i| bb.merge(&boxes[i as usize]));
        nodes[ni].bb = bb;
        if let Some(mid) = split(part, boxes, cent, bb.half_area()) {
            let l = nodes.len();
            nodes.push(Tmp {
                bb: Aabb::EMPTY,
                s,
                e: s + mid,
                kids: None,
            });
            nodes.push(Tmp {
                bb: Aabb::EMPTY,
                s: s + mid,
                e,
                kids: None,
            });
            nodes[ni].kids = Some((l, l + 1));
            stack.push(l + 1);
            stack.push(l);
        }
    }
    nodes
}

/// Packs the binary tree into cache-line nodes (depth-first order) under a virtual parent.
fn pack(tmp: &[Tmp]) -> (Vec<Node>, Vec<(u32, u32)>) {
    let empty = Node {
        lo: [[f32::INFINITY; 3]; 2],
        hi: [[f32::NEG_INFINITY; 3]; 2],
        child: [LEAF; 2],
        count: [0; 2],
    };
    let mut nodes = vec![empty];
    let mut span = vec![(tmp[0].s as u32, tmp[0].e as u32)];
    // (packed node, child slot, tmp node) to fill.
    let mut stack = vec![(0usize, 0usize, 0usize)];
    while let Some((pi, k, ti)) = stack.pop() {
        let t = &tmp[ti];
        let (lo, hi) = t.bb.outward();
        (nodes[pi].lo[k], nodes[pi].hi[k]) = (lo, hi);
        match t.kids {
            None => {
                nodes[pi].child[k] = LEAF | t.s as u32;
                nodes[pi].count[k] = (t.e - t.s) as u8;
            }
            Some((l, r)) => {
                let ni = nodes.len();
                nodes.push(empty);
                span.push((t.s as u32, t.e as u32));
                nodes[pi].child[k] = ni as u32;
                stack.push((ni, 1, r));
                stack.push((ni, 0, l));
            }
        }
    }
    (nodes, span)
}

/// Collapses the binary tree into 4-wide nodes (depth-first order): each node takes its binary node's two
/// children and keeps opening the internal child with the largest surface area until it has four.
fn pack4(tmp: &[Tmp]) -> Vec<Node4> {
    let empty = Node4 {
        lo: [[f32::INFINITY; 4]; 3],
        hi: [[f32::NEG_INFINITY; 4]; 3],
        child: [LEAF; 4],
        count: [0; 4],
    };
    let mut nodes = vec![empty];
    let mut stack = vec![(0usize, 0usize)]; // (Node4 to fill, binary node whose subtree it covers)
    while let Some((pi, ti)) = stack.pop() {
        let mut kids: Vec<usize> = match tmp[ti].kids {
            None => vec![ti], // a leaf root
            Some((l, r)) => vec![l, r],
        };
        while kids.len() < 4 {
            let open = kids
                .iter()
                .enumerate()
                .filter(|(_, &k)| tmp[k].kids.is_some())
                .max_by(|a, b| {
                    tmp[*a.1]
                        .bb
                        .half_area()
                        .total_cmp(&tmp[*b.1].bb.half_area())
                });
            let Some((i, &k)) = open else { break };
            let (l, r) = tmp[k].kids.unwrap_or((k, k));
            kids[i] = l;
            kids.push(r);
        }
        for (lane, &k) in kids.iter().enumerate() {
            let t = &tmp[k];
            let (lo, hi) = t.bb.outward();
            for a in 0..3 {
                nodes[pi].lo[a][lane] = lo[a];
                nodes[pi].hi[a][lane] = hi[a];
            }
            if t.kids.is_none() {
                nodes[pi].child[lane] = LEAF | t.s as u32;
                nodes[pi].count[lane] = (t.e - t.s) as u8;
            } else {
                nodes[pi].child[lane] = nodes.len() as u32;
                nodes.push(empty);
                stack.push((nodes.len() - 1, k));
            }
        }
    }
    nodes
}

/// Chooses a split of `ids` (reordered in place) by the binned surface-area heuristic over the three
/// axes; `None` makes a leaf. Falls back to a median split when the SAH finds no useful plane but the
/// node is too large for a leaf (all centroids in one bin), so leaves never exceed `LEAF_MAX`.
fn split(ids: &mut [u32], boxes: &[Aabb], cent: &[V3], parent_area: f64) -> Option<usize> {
    let n = ids.len();
    if n <= 1 {
        return None;
    }
    let mut cb = Aabb::EMPTY;
    ids.iter().for_each(|&i| cb.grow(cent[i as usize]));
    let mut best: Option<(f64, usize, f64)> = None; // (cost, axis, plane)
    for axis in 0..3 {
        if let Some((cost, plane)) = sah_axis(ids, boxes, cent, &cb, axis) {
            if best.is_none_or(|b| cost < b.0) {
                best = Some((cost, axis, plane));
            }
        }
    }
    // Cost model: one box test ≈ one triangle test.
    let leaf_cost = n as f64 * parent_area;
    if let Some((cost, axis, plane)) = best {
        if n > LEAF_MAX || cost + parent_area < leaf_cost {
            let mid = partition(ids, |i| cent[i as usize][axis] < plane);
            if mid > 0 && mid < n {
                return Some(mid);
            }
        }
    }
    if n <= LEAF_MAX {
        return None;
    }
    // Centroids coincide (or rounding put them on one side): split by rank along the widest axis.
    let d = sub(cb.hi, cb.lo);
    let axis = if d[0] >= d[1] && d[0] >= d[2] {
        0
    } else if d[1] >= d[2] {
        1
    } else {
        2
    };
    ids.select_nth_unstable_by(n / 2, |&x, &y| {
        cent[x as usize][axis].total_cmp(&cent[y as usize][axis])
    });
    Some(n / 2)
}

/// Best binned-SAH plane on one axis: (cost, plane), or `None` if the centroids do not spread on it.
fn sah_axis(
    ids: &[u32],
    boxes: &[Aabb],
    cent: &[V3],
    cb: &Aabb,
    axis: usize,
) -> Option<(f64, f64)> {
    let (lo, hi) = (cb.lo[axis], cb.hi[axis]);
    if hi <= lo {
        return None;
    }
    let k = BINS as f64 / (hi - lo);
    let bin_of = |x: f64| (((x - lo) * k) as usize).min(BINS - 1);
    let mut bins = [(Aabb::EMPTY, 0usize); BINS];
    for &i in ids.iter() {
        let b = &mut bins[bin_of(cent[i as usize][axis])];
        b.0.merge(&boxes[i as usize]);
        b.1 += 1;
    }
    // Sweep from the right for every suffix's area and count, then from the left.
    let mut right = [(0.0, 0usize); BINS];
    let (mut acc, mut cnt) = (Aabb::EMPTY, 0);
    for k in (1..BINS).rev() {
        acc.merge(&bins[k].0);
        cnt += bins[k].1;
        right[k] = (acc.half_area(), cnt);
    }
    let (mut acc, mut cnt) = (Aabb::EMPTY, 0);
    let mut best: Option<(f64, f64)> = None;
    for k in 0..BINS - 1 {
        acc.merge(&bins[k].0);
        cnt += bins[k].1;
        let (ra, rc) = right[k + 1];
        if cnt == 0 || rc == 0 {
            continue;
        }
        let cost = acc.half_area() * cnt as f64 + ra * rc as f64;
        if best.is_none_or(|b| cost < b.0) {
            best = Some((cost, lo + (hi - lo) * (k + 1) as f64 / BINS as f64));
        }
    }
    best
}

fn partition(ids: &mut [u32], left: impl Fn(u32) -> bool) -> usize {
    let mut m = 0;
    for k in 0..ids.len() {
        if left(ids[k]) {
            ids.swap(k, m);
            m += 1;
        }
    }
    m
}
