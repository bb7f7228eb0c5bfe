//! The BVH/hierarchical results against brute-force twins (every triangle, an independent
//! point-triangle distance, the exact solid-angle sum).
use super::geom::{closest_on_segment, cross, dot, norm2, solid_angle, sub, V3};
use super::*;
use proptest::prelude::*;

/// Deterministic xorshift64* in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next()
    }
}

fn tri_of(v: &[f64], f: &[i64], t: usize) -> [V3; 3] {
    [0, 1, 2].map(|k| {
        let i = f[3 * t + k] as usize;
        [v[3 * i], v[3 * i + 1], v[3 * i + 2]]
    })
}

/// Distance to a triangle by projection onto its plane (barycentric inside test) or else the nearest
/// edge; flat triangles (same criterion as `Tri::new`) only by their edges.
fn twin_tri_dist(q: V3, t: [V3; 3]) -> f64 {
    let [a, b, c] = t;
    let seg = |x, y| norm2(sub(closest_on_segment(q, x, y), q)).sqrt();
    let edges = seg(a, b).min(seg(b, c)).min(seg(c, a));
    let (v0, v1, v2) = (sub(b, a), sub(c, a), sub(q, a));
    let n = cross(v0, v1);
    let longest = norm2(v0).max(norm2(v1)).max(norm2(sub(c, b)));
    if norm2(n) <= 1e-24 * longest * longest {
        return edges;
    }
    let (d00, d01, d11, d20, d21) = (
        dot(v0, v0),
        dot(v0, v1),
        dot(v1, v1),
        dot(v2, v0),
        dot(v2, v1),
    );
    let den = d00 * d11 - d01 * d01;
    let (v, w) = ((d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den);
    if v >= 0.0 && w >= 0.0 && v + w <= 1.0 {
        return dot(v2, n).abs() / norm2(n).sqrt();
    }
    edges
}

fn twin_dist(v: &[f64], f: &[i64], q: V3) -> f64 {
    (0..f.len() / 3)
        .map(|t| twin_tri_dist(q, tri_of(v, f, t)))
        .fold(f64::INFINITY, f64::min)
}

fn twin_winding(v: &[f64], f: &[i64], q: V3) -> f64 {
    (0..f.len() / 3)
        .map(|t| solid_angle(q, &tri_of(v, f, t)))
        .sum::<f64>()
        / (4.0 * std::f64::consts::PI)
}

/// Random soup with ~15 % degenerate faces (repeated indices, collinear vertices, a point).
fn soup(seed: u64, nv: usize, nf: usize) -> (Vec<f64>, Vec<i64>) {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut v: Vec<f64> = (0..nv * 3).map(|_| r.range(-1.0, 1.0)).collect();
    // Three collinear vertices nv, nv+1, nv+2 (p0 + t·d, t ∈ {0, 1, 3}: exact in binary).
    let (p0, d) = ([0.1, -0.2, 0.3], [0.5, 0.25, -0.125]);
    for t in [0.0, 1.0, 3.0] {
        v.extend((0..3).map(|k| p0[k] + t * d[k]));
    }
    let mut f = Vec::new();
    for _ in 0..nf {
        let pick = |r: &mut Rng| (r.next() * nv as f64) as i64;
        let t = match (r.next() * 20.0) as u32 {
            0 => [pick(&mut r); 3],
            1 => {
                let a = pick(&mut r);
                [a, a, pick(&mut r)]
            }
            2 => [nv as i64, nv as i64 + 1, nv as i64 + 2],
            _ => [pick(&mut r), pick(&mut r), pick(&mut r)],
        };
        f.extend(t);
    }
    (v, f)
}

/// Latitude-longitude sphere of radius 1, outward (counter-clockwise) faces.
pub(super) fn uv_sphere(nlat: usize, nlon: usize) -> (Vec<f64>, Vec<i64>) {
    let mut v = vec![0.0, 0.0, 1.0];
    for i in 1..nlat {
        let th = std::f64::consts::PI * i as f64 / nlat as f64;
        for j in 0..nlon {
            let ph = 2.0 * std::f64::consts::PI * j as f64 / nlon as f64;
            v.extend([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()]);
        }
    }
    v.extend([0.0, 0.0, -1.0]);
    let ring = |i: usize, j: usize| (1 + (i - 1) * nlon + j % nlon) as i64;
    let south = (v.len() / 3 - 1) as i64;
    let mut f = Vec::new();
    for j in 0..nlon {
        f.extend([0, ring(1, j), ring(1, j + 1)]);
        f.extend([ring(nlat - 1, j), south, ring(nlat - 1, j + 1)]);
        for i in 1..nlat - 1 {
            f.extend([ring(i, j), ring(i + 1, j), ring(i + 1, j + 1)]);
            f.extend([ring(i, j), ring(i + 1, j + 1), ring(i, j + 1)]);
        }
    }
    (v, f)
}

fn points(seed: u64, n: usize, half: f64) -> Vec<f64> {
    let mut r = Rng(seed | 1);
    (0..3 * n).map(|_| r.range(-half, half)).collect()
}

#[test]
fn distance_matches_brute_force_on_soups_with_degenerate_faces() {
    for seed in 0..6 {
        let (v, f) = soup(seed, 40, 150);
        let q = points(seed + 100, 2000, 1.5);
        let opts = SdfOptions {
            signed: false,
            closest: true,
            ..Default::default()
        };
        let r: SdfResult<f64> = signed_distance("t", &v, &f, &q, &opts).unwrap();
        for i in 0..2000 {
            let p = [q[3 * i], q[3 * i + 1], q[3 * i + 2]];
            let want = twin_dist(&v, &f, p);
            assert!(
                (r.distance[i] - want).abs() <= 1e-12,
                "seed {seed} point {i}: {} vs {want}",
                r.distance[i]
            );
            // The reported face and closest point are consistent with the distance.
            let c = [r.closest[3 * i], r.closest[3 * i + 1], r.closest[3 * i + 2]];
            assert!((norm2(sub(c, p)).sqrt() - want).abs() <= 1e-12);
            let on_face = twin_tri_dist(c, tri_of(&v, &f, r.face[i] as usize));
            assert!(on_face <= 1e-12, "closest point is {on_face} off its face");
        }
    }
}

#[test]
fn winding_number_matches_exact_sum() {
    let (v, f) = soup(7, 60, 300);
    let q = points(8, 3000, 1.5);
    let m = MeshSdf::new("t", &v, &f).unwrap();
    let exact: Vec<f64> = m.winding_numbers("t", &q, f64::INFINITY).unwrap();
    let fast: Vec<f64> = m.winding_numbers("t", &q, DEFAULT_BETA).unwrap();
    let mut worst: f64 = 0.0;
    for i in 0..3000 {
        let want = twin_winding(&v, &f, [q[3 * i], q[3 * i + 1], q[3 * i + 2]]);
        assert!((exact[i] - want).abs() < 1e-9, "{} vs {want}", exact[i]);
        worst = worst.max((fast[i] - want).abs());
    }
    assert!(worst < 2e-2, "beta=2 error {worst}");
}

#[test]
fn closed_sphere_sign_and_winding() {
    let (v, f) = uv_sphere(48, 96);
    let q = points(3, 20000, 1.6);
    let m = MeshSdf::new("t", &v, &f).unwrap();
    let r: SdfResult<f64> = m.signed_distance("t", &q, &SdfOptions::default()).unwrap();
    let w: Vec<f64> = m.winding_numbers("t", &q, DEFAULT_BETA).unwrap();
    let mut worst: f64 = 0.0;
    for i in 0..20000 {
        let rad = norm2([q[3 * i], q[3 * i + 1], q[3 * i + 2]]).sqrt();
        // The polyhedron lies between radius cos(π/48) ≈ 0.9979 and 1.
        if (rad - 1.0).abs() > 5e-3 {
            let inside = rad < 1.0;
            assert_eq!(
                r.distance[i] < 0.0,
                inside,
                "point {i} at radius {rad}: {}",
                r.distance[i]
            );
            worst = worst.max((w[i] - if inside { 1.0 } else { 0.0 }).abs());
        }
        assert!((r.distance[i].abs() - (rad - 1.0).abs()).abs() < 3e-3);
    }
    assert!(worst < 1e-2, "worst |w − w_exact| = {worst}");
}

#[test]
fn open_sphere_still_has_an_inside() {
    // A hole of ~30° half-angle at the north pole: ray parity breaks, the winding number stays ≈ 1
    // inside away from the hole.
    let (v, keep) = holed_sphere(32, 64);
    let m = MeshSdf::new("t", &v, &keep).unwrap();
    let q = [
        0.0, 0.0, 0.0, 0.3, 0.2, -0.5, 0.0, 0.0, -0.9, 2.0, 0.0, 0.0, 0.0, 0.0, -1.5, 0.5, 0.5,
        -0.5,
    ];
    let r: SdfResult<f64> = m.signed_distance("t", &q, &SdfOptions::default()).unwrap();
    let want_inside = [true, true, true, false, false, true];
    for (i, want) in want_inside.iter().enumerate() {
        assert_eq!(r.distance[i] < 0.0, *want, "point {i}: {}", r.distance[i]);
    }
}

/// The sphere without the faces whose vertices reach z ≥ 0.87 (a hole of ~30° half-angle).
fn holed_sphere(nlat: usize, nlon: usize) -> (Vec<f64>, Vec<i64>) {
    let (v, f) = uv_sphere(nlat, nlon);
    let keep = f
        .chunks(3)
        .filter(|t| t.iter().all(|&i| v[3 * i as usize + 2] < 0.87))
        .flatten()
        .copied()
        .collect();
    (v, keep)
}

/// Signs against the exact winding number (twin) wherever |w − 0.5| leaves room for the hierarchical
/// approximation; returns the share of queries whose sign was carried from a neighbour.
fn check_signs(v: &[f64], f: &[i64], q: &[f64]) -> f64 {
    let m = MeshSdf::new("t", v, f).unwrap();
    let r: SdfResult<f64> = m.signed_distance("t", q, &SdfOptions::default()).unwrap();
    for i in 0..q.len() / 3 {
        let p = [q[3 * i], q[3 * i + 1], q[3 * i + 2]];
        let w = twin_winding(v, f, p);
        if (w - 0.5).abs() > 0.06 && r.distance[i] != 0.0 {
            assert_eq!(
                r.distance[i] < 0.0,
                w > 0.5,
                "point {p:?}: w = {w}, d = {}",
                r.distance[i]
            );
        }
    }
    let (mut st, mut carried) = (Scratch::default(), 0);
    for &i in &morton_order(q) {
        let p = [0, 1, 2].map(|k| q[3 * i as usize + k]);
        let mut best = (f64::INFINITY, 0, p);
        m.bvh.nearest(p, &mut best, &mut st.near);
        m.inside(p, best.0.sqrt(), DEFAULT_BETA * DEFAULT_BETA, &mut st);
        carried += (st.sign.as_ref().unwrap().anchor != p) as usize;
    }
    carried as f64 / (q.len() / 3) as f64
}

#[test]
fn carried_signs_match_the_exact_winding_number() {
    // Closed: w is an integer off the surface, so carrying is exact and frequent.
    let (v, f) = uv_sphere(16, 32);
    let q = points(11, 3000, 1.4);
    let share = check_signs(&v, &f, &q);
    assert!(share > 0.5, "carried share {share}");
    // Open: the drift bound (boundary length 2π·0.49) still lets points far from the hole carry.
    let (v, f) = holed_sphere(16, 32);
    let share = check_signs(&v, &f, &q);
    assert!(share > 0.1, "carried share {share}");
    // A soup: every edge is boundary, w takes many values; the signs still follow w.
    let (v, f) = soup(3, 30, 80);
    check_signs(&v, &f, &points(12, 1500, 1.2));
}

#[test]
fn boundary_chain_detects_closed_surfaces() {
    let (v, f) = uv_sphere(8, 16);
    assert!(MeshSdf::new("t", &v, &f).unwrap().is_closed());
    let (hv, hf) = holed_sphere(8, 16);
    assert!(!MeshSdf::new("t", &hv, &hf).unwrap().is_closed());
    // Split the vertices of every face (as UV seams do): identified by position, still closed.
    let mut sv = Vec::new();
    for t in f.chunks(3) {
        for &i in t {
            sv.extend_from_slice(&v[3 * i as usize..3 * i as usize + 3]);
        }
    }
    let sf: Vec<i64> = (0..f.len() as i64).collect();
    assert!(MeshSdf::new("t", &sv, &sf).unwrap().is_closed());
    // One flipped face: its edges now run twice the same way.
    let mut ff = f.clone();
    ff.swap(0, 1);
    assert!(!MeshSdf::new("t", &v, &ff).unwrap().is_closed());
}

#[test]
fn float32_inputs_and_outputs() {
    let (v, f) = uv_sphere(8, 16);
    let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    let q32: Vec<f32> = vec![0.0, 0.0, 0.0, 0.0, 0.0, 3.0];
    let r: SdfResult<f32> = signed_distance("t", &v32, &f, &q32, &SdfOptions::default()).unwrap();
    assert!(
        r.distance[0] < -0.9 && (r.distance[1] - 2.0).abs() < 1e-6,
        "{:?}",
        r.distance
    );
    assert_eq!(r.face.len(), 2);
}

#[test]
fn bad_input_is_an_error() {
    let (v, f) = uv_sphere(4, 8);
    let err = |r: Result<SdfResult<f64>>| r.unwrap_err().to_string();
    let o = SdfOptions::default();
    let e = err(signed_distance("sd", &v, &[], &[0.0; 3], &o));
    assert_eq!(e, "sd(): faces must hold at least one triangle, got 0");
    let e = err(signed_distance(
        "sd",
        &v,
        &f,
        &[0.0, 0.0, 0.0, 1.0, f64::NAN, 0.0],
        &o,
    ));
    assert_eq!(e, "sd(): points must be finite, got NaN in row 1");
    let mut vi = v.clone();
    vi[5] = f64::INFINITY;
    assert_eq!(
        err(signed_distance("sd", &vi, &f, &[0.0; 3], &o)),
        "sd(): vertices must be finite, got inf in row 1"
    );
    assert!(err(signed_distance("sd", &v, &[0, 1, 99], &[0.0; 3], &o)).contains("faces must index"));
    assert!(err(signed_distance("sd", &v, &f, &[0.0; 4], &o)).contains("points must be [N,3]"));
    let bad_beta = SdfOptions { beta: 1.0, ..o };
    assert!(err(signed_distance("sd", &v, &f, &[0.0; 3], &bad_beta)).contains("beta must be > 1"));
    let r: SdfResult<f64> = signed_distance("sd", &v, &f, &[] as &[f64], &o).unwrap();
    assert!(r.distance.is_empty());
}

#[test]
fn all_degenerate_mesh_is_unsigned_distance_to_edges() {
    let v = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0];
    let r: SdfResult<f64> = signed_distance(
        "t",
        &v,
        &[0, 1, 2, 1, 1, 1],
        &[1.0, 2.0, 0.0],
        &SdfOptions::default(),
    )
    .unwrap();
    assert_eq!(r.distance, vec![2.0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn prop_bvh_distance_is_brute_force(seed in 0u64..1_000_000, nf in 1usize..60, scale in 1e-3f64..1e3) {
        let (mut v, f) = soup(seed, 12, nf);
        v.iter_mut().for_each(|x| *x *= scale);
        let q: Vec<f64> = points(seed ^ 0x55, 64, 2.0 * scale);
        let r: SdfResult<f64> = signed_distance("t", &v, &f, &q, &SdfOptions { signed: false, ..Default::default() }).unwrap();
        for i in 0..64 {
            let want = twin_dist(&v, &f, [q[3 * i], q[3 * i + 1], q[3 * i + 2]]);
            prop_assert!((r.distance[i] - want).abs() <= 1e-12 * scale, "{} vs {}", r.distance[i], want);
        }
    }
}

#[test]
fn far_field_expansion_converges_at_third_order() {
    // Every BVH slot of a sphere seen from distance β·radius: the expansion error relative to the exact
    // sum over the slot's triangles falls ~β⁻⁵ (a second-order expansion gives β⁻⁴, i.e. 16× per
    // doubling, as measured while developing this).
    let (v, f) = uv_sphere(48, 96);
    let m = MeshSdf::new("t", &v, &f).unwrap();
    let mut r = Rng(5);
    let mut err = |beta: f64| {
        let mut e = 0.0;
        for (ni, n) in m.bvh.nodes.iter().enumerate() {
            for k in 0..2 {
                let b = &m.fwn.balls[ni][k];
                let tris = if n.is_leaf(k) {
                    n.range(k)
                } else {
                    let s = m.bvh.span[n.child[k] as usize];
                    s.0 as usize..s.1 as usize
                };
                if tris.is_empty() {
                    continue;
                }
                let dir = [r.range(-1.0, 1.0), r.range(-1.0, 1.0), r.range(-1.0, 1.0)];
                let l = norm2(dir).sqrt();
                let q = [0, 1, 2].map(|a| b.centre[a] + dir[a] / l * beta * b.radius);
                let omega: f64 = m.bvh.tris[tris].iter().map(|t| solid_angle(q, &t.p)).sum();
                let far = super::winding::far_field_of(&m.fwn.exps[ni][k], sub(b.centre, q));
                e += (far - omega / (4.0 * std::f64::consts::PI)).abs();
            }
        }
        e
    };
    let (e2, e4, e8) = (err(2.0), err(4.0), err(8.0));
    assert!(
        e2 / e4 > 24.0 && e4 / e8 > 24.0,
        "errors {e2:.3e} {e4:.3e} {e8:.3e}"
    );
}

#[test]
fn extreme_coordinates_stay_exact() {
    // Beyond f32 range the f32 boxes and spheres only stop pruning; tiny coordinates keep their precision.
    for s in [1e-30, 1e-3, 1e3, 1e36] {
        let (mut v, f) = uv_sphere(6, 12);
        v.iter_mut().for_each(|x| *x *= s);
        let q: Vec<f64> = points(21, 50, 1.5 * s);
        let r: SdfResult<f64> = signed_distance("t", &v, &f, &q, &SdfOptions::default()).unwrap();
        for i in 0..50 {
            let p = [q[3 * i], q[3 * i + 1], q[3 * i + 2]];
            let want = twin_dist(&v, &f, p);
            assert!(
                (r.distance[i].abs() - want).abs() <= 1e-12 * s,
                "scale {s}: {} vs {want}",
                r.distance[i]
            );
            let w = twin_winding(&v, &f, p);
            if (w - 0.5).abs() > 0.06 {
                assert_eq!(r.distance[i] < 0.0, w > 0.5);
            }
        }
    }
}
