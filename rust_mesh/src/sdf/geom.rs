//! f64 vector helpers, closest point on a triangle (Ericson, *Real-Time Collision Detection* §5.1.5,
//! region method) and the signed solid angle of a triangle (van Oosterom & Strackee 1983).
pub type V3 = [f64; 3];

#[inline(always)]
pub fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
#[inline(always)]
pub fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
#[inline(always)]
pub fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
#[inline(always)]
pub fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
#[inline(always)]
pub fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
#[inline(always)]
pub fn norm2(a: V3) -> f64 {
    dot(a, a)
}

/// A triangle prepared for distance queries. `flat` marks triangles whose height is below 1e-12 of
/// their longest edge (zero area, repeated or collinear vertices): they are treated as the union of
/// their three edges, which is within that height of the true set, and Ericson's face case (a division
/// by the squared area) is never reached for them.
#[derive(Clone, Copy, Debug)]
pub struct Tri {
    pub p: [V3; 3],
    pub flat: bool,
}

impl Tri {
    pub fn new(p: [V3; 3]) -> Self {
        let (ab, ac, bc) = (sub(p[1], p[0]), sub(p[2], p[0]), sub(p[2], p[1]));
        let longest = norm2(ab).max(norm2(ac)).max(norm2(bc));
        // |ab × ac| = 2·area = height · longest edge, so this compares height² with (1e-12·longest)².
        let flat = norm2(cross(ab, ac)) <= 1e-24 * longest * longest;
        Tri { p, flat }
    }

    /// Closest point of the triangle to `q`.
    #[inline]
    pub fn closest(&self, q: V3) -> V3 {
        if self.flat {
            let [a, b, c] = self.p;
            let cands = [
                closest_on_segment(q, a, b),
                closest_on_segment(q, b, c),
                closest_on_segment(q, c, a),
            ];
            let mut best = cands[0];
            for x in &cands[1..] {
                if norm2(sub(*x, q)) < norm2(sub(best, q)) {
                    best = *x;
                }
            }
            best
        } else {
            closest_on_triangle(q, self.p[0], self.p[1], self.p[2])
        }
    }
}

/// Closest point on segment [a, b] to q (a when the segment is a point).
#[inline]
pub fn closest_on_segment(q: V3, a: V3, b: V3) -> V3 {
    let ab = sub(b, a);
    let l2 = norm2(ab);
    if l2 <= 0.0 {
        return a;
    }
    let t = (dot(sub(q, a), ab) / l2).clamp(0.0, 1.0);
    add(a, scale(ab, t))
}

/// Ericson's region method for a non-degenerate triangle (every division is by a positive quantity
/// there: |ab|², |ac|², |bc|² or |ab × ac|²).
#[inline]
fn closest_on_triangle(p: V3, a: V3, b: V3, c: V3) -> V3 {
    let (ab, ac, ap) = (sub(b, a), sub(c, a), sub(p, a));
    let (d1, d2) = (dot(ab, ap), dot(ac, ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return a;
    }
    let bp = sub(p, b);
    let (d3, d4) = (dot(ab, bp), dot(ac, bp));
    if d3 >= 0.0 && d4 <= d3 {
        return b;
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        return add(a, scale(ab, d1 / (d1 - d3)));
    }
    let cp = sub(p, c);
    let (d5, d6) = (dot(ab, cp), dot(ac, cp));
    if d6 >= 0.0 && d5 <= d6 {
        return c;
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        return add(a, scale(ac, d2 / (d2 - d6)));
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && d4 - d3 >= 0.0 && d5 - d6 >= 0.0 {
        let w = (d4 - d3) / ((d4 - d3) + (d5 - d6));
        return add(b, scale(sub(c, b), w));
    }
    let denom = 1.0 / (va + vb + vc);
    add(a, add(scale(ab, vb * denom), scale(ac, vc * denom)))
}

/// Signed solid angle Ω of triangle (a, b, c) seen from q, in [−2π, 2π]; positive when q sees the
/// counter-clockwise side (q behind the face whose normal is (b−a)×(c−a)):
/// tan(Ω/2) = det[a b c] / (|a||b||c| + (a·b)|c| + (b·c)|a| + (c·a)|b|) with a, b, c relative to q.
/// Zero-area triangles give 0 (the numerator vanishes and the denominator is ≥ 0 off the triangle).
#[inline]
pub fn solid_angle(q: V3, t: &[V3; 3]) -> f64 {
    let (a, b, c) = (sub(t[0], q), sub(t[1], q), sub(t[2], q));
    let (la, lb, lc) = (norm2(a).sqrt(), norm2(b).sqrt(), norm2(c).sqrt());
    let det = dot(a, cross(b, c));
    let den = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb;
    2.0 * det.atan2(den)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(q: V3, t: &Tri) -> f64 {
        norm2(sub(t.closest(q), q)).sqrt()
    }

    #[test]
    fn closest_point_regions() {
        let t = Tri::new([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        assert!(!t.flat);
        let cases = [
            ([0.2, 0.2, 3.0], [0.2, 0.2, 0.0]),     // face
            ([-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]),   // vertex a
            ([2.0, -0.5, 0.0], [1.0, 0.0, 0.0]),    // vertex b
            ([-0.5, 2.0, 0.0], [0.0, 1.0, 0.0]),    // vertex c
            ([0.5, -2.0, 1.0], [0.5, 0.0, 0.0]),    // edge ab
            ([-1.0, 0.25, -1.0], [0.0, 0.25, 0.0]), // edge ac
            ([1.0, 1.0, 0.0], [0.5, 0.5, 0.0]),     // edge bc
        ];
        for (q, want) in cases {
            assert!(
                norm2(sub(t.closest(q), want)) < 1e-30,
                "{q:?} → {:?}",
                t.closest(q)
            );
        }
    }

    #[test]
    fn degenerate_triangles_are_segments_or_points() {
        let seg = Tri::new([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]);
        assert!(seg.flat);
        assert!((dist([1.5, 1.0, 0.0], &seg) - 1.0).abs() < 1e-15);
        assert!((dist([3.0, 0.0, 0.0], &seg) - 1.0).abs() < 1e-15);
        let pt = Tri::new([[1.0, 1.0, 1.0]; 3]);
        assert!(pt.flat);
        assert_eq!(dist([1.0, 1.0, 3.0], &pt), 2.0);
        let rep = Tri::new([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]);
        assert!(rep.flat && dist([1.0, 1.0, 0.0], &rep) == 1.0);
        assert_eq!(solid_angle([0.3, 0.2, 0.1], &seg.p), 0.0);
    }

    #[test]
    fn solid_angle_of_octant_triangle() {
        // The triangle (e_x, e_y, e_z) seen from the origin covers one octant: 4π/8; from its far side −.
        let t = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let w = solid_angle([0.0; 3], &t);
        assert!((w - std::f64::consts::FRAC_PI_2).abs() < 1e-14, "{w}");
        assert!(solid_angle([1.0, 1.0, 1.0], &t) < 0.0);
    }
}
