//! Fast generalised winding number (Barill et al. 2018, "Fast Winding Numbers for Soups and Clouds",
//! https://www.dgp.toronto.edu/projects/fast-winding-numbers/): every BVH node stores moments of its
//! area-weighted normals about its area-weighted centroid p̃; a node whose bounding ball (centre p̃,
//! radius ρ) is far from the query (|q − p̃| > β·ρ) contributes its third-order Taylor expansion, nearer
//! nodes are opened down to the leaves, whose triangles are summed exactly (Jacobson et al. 2013,
//! w(q) = Σ Ω_t(q) / 4π).
//!
//! With f(x) = (x − q)/(4π|x − q|³) the winding number is w = ∫ f(x)·n(x) dA. Expanding f about p̃,
//! with R = p̃ − q and d = x − p̃:
//!   order 1: f(p̃)·N,                          N_i = Σ_t a_t n_t,i;
//!   order 2: Σ_ij ∂_j f_i C_ij,                C_ij = Σ_t a_t n_t,i (c_t − p̃)_j;
//!   order 3: ½ Σ_ijk ∂_j∂_k f_i D_ijk,         D_ijk = Σ_t n_t,i ∫_t d_j d_k dA,
//! all exact per triangle (∫_t d dA = a_t (c_t − p̃), ∫_t d dᵀ dA = a_t/12 (Σ_v e_v e_vᵀ + s sᵀ) with
//! e_v = v − p̃, s = Σ_v e_v). For a nearly flat patch C almost vanishes about the centroid, so the third
//! order is the first useful correction.
use super::bvh::{Bvh, Node};
use super::geom::{add, cross, dot, norm2, scale, solid_angle, sub, Tri, V3};
use rayon::prelude::*;

const INV_4PI: f64 = 0.25 * std::f64::consts::FRAC_1_PI;

/// Bounding ball of a node: centre p̃ (area-weighted centroid; the box centre for a zero-area node) and
/// a radius containing every triangle of the node. Checked for every visited child, hence kept apart
/// from the (larger) expansion coefficients.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ball {
    pub centre: V3,
    pub radius: f64,
}

/// Expansion coefficients about the ball's centre: N, C (row-major) and the symmetric part of D
/// (per i: jk = xx, yy, zz, xy, xz, yz).
#[derive(Clone, Copy, Debug, Default)]
pub struct Expansion {
    n: V3,
    c: [f64; 9],
    d: [[f64; 6]; 3],
}

const PAIRS: [(usize, usize); 6] = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)];

impl Expansion {
    /// Adds a_t n_t (as `an`) times the moments of a region with ∫d = m1 and ∫d dᵀ = m2 (per unit area).
    fn add_moments(&mut self, an: V3, m1: V3, m2: &[f64; 6]) {
        for i in 0..3 {
            self.n[i] += an[i];
            for j in 0..3 {
                self.c[3 * i + j] += an[i] * m1[j];
            }
            for (p, x) in m2.iter().enumerate() {
                self.d[i][p] += an[i] * x;
            }
        }
    }

    /// Re-expresses `self` (about centre p) about p − s… i.e. every offset d becomes d + s.
    fn shifted(&self, s: V3) -> Expansion {
        let mut e = *self;
        for i in 0..3 {
            for j in 0..3 {
                e.c[3 * i + j] += self.n[i] * s[j];
            }
            for (p, &(j, k)) in PAIRS.iter().enumerate() {
                e.d[i][p] +=
                    self.c[3 * i + j] * s[k] + self.c[3 * i + k] * s[j] + self.n[i] * s[j] * s[k];
            }
        }
        e
    }

    fn sum(&self, o: &Expansion) -> Expansion {
        let mut e = *self;
        for i in 0..3 {
            e.n[i] += o.n[i];
            for p in 0..6 {
                e.d[i][p] += o.d[i][p];
            }
        }
        e.c.iter_mut().zip(o.c).for_each(|(x, y)| *x += y);
        e
    }
}

/// Per child slot of every BVH node: its ball and expansion (`[node][k]`).
pub struct Fwn {
    pub balls: Vec<[Ball; 2]>,
    pub exps: Vec<[Expansion; 2]>,
}

impl Fwn {
    /// Moments bottom-up (children come after their parents in `bvh.nodes`), then exact radii: the
    /// largest distance from the centre to a vertex of the slot's triangles (a merged bound would grow
    /// level by level and open many more nodes).
    pub fn new(bvh: &Bvh) -> Self {
        let nn = bvh.nodes.len();
        let mut balls = vec![[Ball::default(); 2]; nn];
        let mut exps = vec![[Expansion::default(); 2]; nn];
        let mut area = vec![[0.0; 2]; nn];
        for ni in (0..nn).rev() {
            let n = &bvh.nodes[ni];
            for k in 0..2 {
                let (centre, e, a) = if n.is_leaf(k) {
                    leaf_moments(n, k, &bvh.tris[n.range(k)])
                } else {
                    let c = n.child[k] as usize;
                    merge(
                        n,
                        k,
                        [
                            (balls[c][0].centre, &exps[c][0], area[c][0]),
                            (balls[c][1].centre, &exps[c][1], area[c][1]),
                        ],
                    )
                };
                (balls[ni][k].centre, exps[ni][k], area[ni][k]) = (centre, e, a);
            }
        }
        balls.par_iter_mut().enumerate().for_each(|(ni, b)| {
            let n = &bvh.nodes[ni];
            for (k, bk) in b.iter_mut().enumerate() {
                let r = if n.is_leaf(k) {
                    n.range(k)
                } else {
                    let s = bvh.span[n.child[k] as usize];
                    s.0 as usize..s.1 as usize
                };
                let c = bk.centre;
                bk.radius = bvh.tris[r]
                    .iter()
                    .flat_map(|t| t.p)
                    .map(|p| norm2(sub(p, c)))
                    .fold(0.0, f64::max)
                    .sqrt();
            }
        });
        Fwn { balls, exps }
    }
}

fn box_centre(n: &Node, k: usize) -> V3 {
    [0, 1, 2].map(|a| {
        if n.lo[k][a] <= n.hi[k][a] {
            0.5 * (n.lo[k][a] as f64 + n.hi[k][a] as f64)
        } else {
            0.0
        }
    })
}

fn leaf_moments(n: &Node, k: usize, tris: &[Tri]) -> (V3, Expansion, f64) {
    let (mut area, mut acc) = (0.0, [0.0; 3]);
    for t in tris {
        let a = 0.5 * norm2(cross(sub(t.p[1], t.p[0]), sub(t.p[2], t.p[0]))).sqrt();
        area += a;
        acc = add(acc, scale(add(add(t.p[0], t.p[1]), t.p[2]), a / 3.0));
    }
    let centre = if area > 0.0 {
        scale(acc, 1.0 / area)
    } else {
        box_centre(n, k)
    };
    let mut e = Expansion::default();
    for t in tris {
        let an = scale(cross(sub(t.p[1], t.p[0]), sub(t.p[2], t.p[0])), 0.5);
        let ev = t.p.map(|p| sub(p, centre));
        let s = add(add(ev[0], ev[1]), ev[2]);
        // Per unit area: ∫d/a = s/3, ∫d dᵀ/a = (Σ e eᵀ + s sᵀ)/12.
        let m2 =
            PAIRS.map(|(j, k)| (ev.iter().map(|e| e[j] * e[k]).sum::<f64>() + s[j] * s[k]) / 12.0);
        e.add_moments(an, scale(s, 1.0 / 3.0), &m2);
    }
    (centre, e, area)
}

fn merge(n: &Node, k: usize, kids: [(V3, &Expansion, f64); 2]) -> (V3, Expansion, f64) {
    let [l, r] = kids;
    let area = l.2 + r.2;
    let centre = if area > 0.0 {
        scale(add(scale(l.0, l.2), scale(r.0, r.2)), 1.0 / area)
    } else {
        box_centre(n, k)
    };
    // A child's offsets about p_k become offsets about p̃ by adding s = p_k − p̃.
    let e =
        l.1.shifted(sub(l.0, centre))
            .sum(&r.1.shifted(sub(r.0, centre)));
    (centre, e, area)
}

/// Third-order far-field value of a node at q; `rr` = R = p̃ − q (non-zero).
#[inline(always)]
fn far_field(e: &Expansion, rr: V3) -> f64 {
    let d2 = norm2(rr);
    let inv_d2 = 1.0 / d2;
    let inv_d3 = inv_d2 * inv_d2.sqrt();
    let c = &e.c;
    let cr = [0, 1, 2].map(|i| c[3 * i] * rr[0] + c[3 * i + 1] * rr[1] + c[3 * i + 2] * rr[2]);
    let order2 = c[0] + c[4] + c[8] - 3.0 * dot(rr, cr) * inv_d2;
    // Σ_ik D_iik R_k, Σ_i R_i tr D_i, Σ_i R_i Rᵀ D_i R.
    let (mut a, mut b, mut g) = (0.0, 0.0, 0.0);
    let (x, y, z) = (rr[0], rr[1], rr[2]);
    for (i, di) in e.d.iter().enumerate() {
        // Row i of D_i times R: D_i[i][k] R_k.
        let row = match i {
            0 => di[0] * x + di[3] * y + di[4] * z,
            1 => di[3] * x + di[1] * y + di[5] * z,
            _ => di[4] * x + di[5] * y + di[2] * z,
        };
        a += row;
        b += rr[i] * (di[0] + di[1] + di[2]);
        let quad = di[0] * x * x
            + di[1] * y * y
            + di[2] * z * z
            + 2.0 * (di[3] * x * y + di[4] * x * z + di[5] * y * z);
        g += rr[i] * quad;
    }
    let order3 = 0.5 * (-3.0 * (2.0 * a + b) + 15.0 * g * inv_d2) * inv_d2;
    INV_4PI * inv_d3 * (dot(rr, e.n) + order2 + order3)
}

impl Fwn {
    /// Generalised winding number at q. `beta2 = β²` (∞ sums every triangle exactly).
    #[inline]
    pub fn winding_number(&self, bvh: &Bvh, q: V3, beta2: f64, stack: &mut Vec<u32>) -> f64 {
        let mut omega = 0.0; // exact solid angles (divided by 4π once at the end)
        let mut far = 0.0;
        stack.clear();
        stack.push(0);
        while let Some(ni) = stack.pop() {
            let n = &bvh.nodes[ni as usize];
            for k in 0..2 {
                if n.is_leaf(k) && n.count[k] == 0 {
                    continue;
                }
                let b = &self.balls[ni as usize][k];
                let rr = sub(b.centre, q);
                if norm2(rr) > beta2 * b.radius * b.radius {
                    far += far_field(&self.exps[ni as usize][k], rr);
                } else if n.is_leaf(k) {
                    for t in &bvh.tris[n.range(k)] {
                        omega += solid_angle(q, &t.p);
                    }
                } else {
                    stack.push(n.child[k]);
                }
            }
        }
        omega * INV_4PI + far
    }
}

#[cfg(test)]
pub fn far_field_of(e: &Expansion, rr: V3) -> f64 {
    far_field(e, rr)
}
