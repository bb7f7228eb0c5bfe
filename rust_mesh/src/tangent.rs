//! Per-vertex tangent frames for tangent-space normal maps, in the manner of MikkTSpace (Mikkelsen 2008,
//! "Simulation of wrinkled surfaces revisited", http://image.diku.dk/projects/media/morten.mikkelsen.08.pdf).
//!
//! A vertex is a distinct (position, uv) pair, the split the GLB writer uses (`io::split_by_uv`), so the
//! tangents written as the glTF `TANGENT` attribute and the ones the renderer interpolates are the same.
//! For each triangle the UV-gradient directions `T = ∂p/∂u` and `B = ∂p/∂v` are projected onto the tangent
//! plane of each corner's normal, normalised and accumulated with the corner's angle as weight (MikkTSpace's
//! weighting, so the result does not depend on how a surface is triangulated). The final tangent is the
//! accumulated `T` orthogonalised against the normal (Gram-Schmidt); `w = ±1` is the handedness, the sign of
//! `(n × t) · B`, so that the glTF bitangent is `w · (n × t)`.
//!
//! Triangles of zero UV area give no direction. A vertex none of whose triangles has one gets an arbitrary
//! unit tangent perpendicular to its normal (as MikkTSpace does); the caller decides from
//! `degenerate_area_fraction` whether the UV layout is usable at all.

/// Tangents of split vertices and how much of the surface had no usable UV gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Tangents {
    /// One `[tx, ty, tz, w]` per split vertex: unit tangent and handedness ±1.
    pub tangents: Vec<[f32; 4]>,
    /// Triangles with positive area whose UV triangle has (numerically) zero area.
    pub degenerate_faces: usize,
    /// Their share of the total surface area (0 when the mesh has no area).
    pub degenerate_area_fraction: f64,
}

type V3 = [f64; 3];

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: V3, b: V3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn scale(a: V3, s: f64) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn add_to(acc: &mut V3, a: V3) {
    for k in 0..3 {
        acc[k] += a[k];
    }
}
fn normalized(a: V3) -> Option<V3> {
    let l = dot(a, a).sqrt();
    (l > 1e-30 && l.is_finite()).then(|| scale(a, 1.0 / l))
}
fn f64v(a: [f32; 3]) -> V3 {
    [a[0] as f64, a[1] as f64, a[2] as f64]
}
/// `a` without its component along the unit vector `n`.
fn project(a: V3, n: V3) -> V3 {
    sub(a, scale(n, dot(a, n)))
}

/// A unit vector perpendicular to the unit `n` (Duff et al. 2017, "Building an orthonormal basis, revisited").
pub fn any_perpendicular(n: [f32; 3]) -> [f32; 3] {
    let sign = if n[2] >= 0.0 { 1.0f32 } else { -1.0 };
    let a = -1.0 / (sign + n[2]);
    let b = n[0] * n[1] * a;
    [1.0 + sign * n[0] * n[0] * a, sign * b, -sign * n[0]]
}

/// UV area below which a triangle's UV gradient is undefined: (2^-24)² of the unit square, far below one
/// texel of any texture (a 16k texel is 2^-28 of it).
const UV_AREA_EPS: f64 = 1e-14;

/// Tangents of the split vertices `vmap` (vertex → (position id, uv id)) over the split `faces`.
///
/// `positions` and `normals` are per position, `uvs` per uv id. Indices must be in range (the callers'
/// `index_triples` checks guarantee it). Normals need not be unit length; a zero normal takes the first
/// face normal it meets.
pub fn tangents(
    positions: &[[f32; 3]],
    normals: &[[f32; 3]],
    uvs: &[[f32; 2]],
    vmap: &[(u32, u32)],
    faces: &[[u32; 3]],
) -> Tangents {
    let n = vmap.len();
    let mut nrm: Vec<V3> = vmap
        .iter()
        .map(|&(p, _)| normalized(f64v(normals[p as usize])).unwrap_or([0.0; 3]))
        .collect();
    let mut acc_t = vec![[0.0f64; 3]; n];
    let mut acc_b = vec![[0.0f64; 3]; n];
    let (mut total, mut bad_area, mut bad) = (0.0f64, 0.0f64, 0usize);
    for f in faces {
        let idx = f.map(|i| i as usize);
        let p = idx.map(|i| f64v(positions[vmap[i].0 as usize]));
        let t = idx.map(|i| uvs[vmap[i].1 as usize].map(|x| x as f64));
        let (e1, e2) = (sub(p[1], p[0]), sub(p[2], p[0]));
        let fnrm = cross(e1, e2);
        let area = dot(fnrm, fnrm).sqrt() / 2.0;
        if area.is_nan() || area <= 0.0 {
            continue; // degenerate geometry: no surface to shade
        }
        total += area;
        let (du1, dv1) = (t[1][0] - t[0][0], t[1][1] - t[0][1]);
        let (du2, dv2) = (t[2][0] - t[0][0], t[2][1] - t[0][1]);
        let det = du1 * dv2 - du2 * dv1;
        if det.is_nan() || det.abs() / 2.0 <= UV_AREA_EPS {
            bad += 1;
            bad_area += area;
            continue;
        }
        let tf = scale(sub(scale(e1, dv2), scale(e2, dv1)), 1.0 / det);
        let bf = scale(sub(scale(e2, du1), scale(e1, du2)), 1.0 / det);
        for k in 0..3 {
            let v = idx[k];
            if nrm[v] == [0.0; 3] {
                nrm[v] = normalized(fnrm).unwrap_or([0.0, 0.0, 1.0]);
            }
            let (a, b) = (sub(p[(k + 1) % 3], p[k]), sub(p[(k + 2) % 3], p[k]));
            let cos = dot(a, b) / (dot(a, a) * dot(b, b)).sqrt().max(1e-300);
            let w = cos.clamp(-1.0, 1.0).acos();
            if let Some(tp) = normalized(project(tf, nrm[v])) {
                add_to(&mut acc_t[v], scale(tp, w));
            }
            if let Some(bp) = normalized(project(bf, nrm[v])) {
                add_to(&mut acc_b[v], scale(bp, w));
            }
        }
    }
    let tangents = (0..n).map(|v| finish(nrm[v], acc_t[v], acc_b[v])).collect();
    Tangents {
        tangents,
        degenerate_faces: bad,
        degenerate_area_fraction: if total > 0.0 { bad_area / total } else { 0.0 },
    }
}

/// Gram-Schmidt against the normal and the handedness; a fallback tangent where nothing accumulated.
fn finish(n: V3, t: V3, b: V3) -> [f32; 4] {
    let n = if n == [0.0; 3] { [0.0, 0.0, 1.0] } else { n };
    let tt = normalized(project(t, n)).unwrap_or_else(|| {
        let p = any_perpendicular([n[0] as f32, n[1] as f32, n[2] as f32]);
        f64v(p)
    });
    let w = if dot(cross(n, tt), b) < 0.0 {
        -1.0
    } else {
        1.0
    };
    [tt[0] as f32, tt[1] as f32, tt[2] as f32, w]
}

#[cfg(test)]
mod tests {
    use super::*;

    type Quad = (Vec<[f32; 3]>, Vec<[f32; 3]>, Vec<[f32; 2]>, Vec<[u32; 3]>);

    fn quad(uv_flip: bool) -> Quad {
        // A unit square in the XY plane, normal +Z, u along +X and v along +Y (or −Y when flipped).
        let p = vec![
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0],
            [0.0, 1.0, 0.0],
        ];
        let n = vec![[0.0, 0.0, 1.0]; 4];
        let s = if uv_flip { -1.0 } else { 1.0 };
        let uv = vec![[0.0, 0.0], [1.0, 0.0], [1.0, s], [0.0, s]];
        (p, n, uv, vec![[0, 1, 2], [0, 2, 3]])
    }

    fn ident(n: usize) -> Vec<(u32, u32)> {
        (0..n as u32).map(|i| (i, i)).collect()
    }

    #[test]
    fn plane_tangent_follows_u_and_handedness_follows_v() {
        let (p, n, uv, f) = quad(false);
        let r = tangents(&p, &n, &uv, &ident(4), &f);
        for t in &r.tangents {
            assert!((t[0] - 1.0).abs() < 1e-6 && t[1].abs() < 1e-6 && t[2].abs() < 1e-6);
            assert_eq!(t[3], 1.0);
        }
        let (p, n, uv, f) = quad(true);
        let r = tangents(&p, &n, &uv, &ident(4), &f);
        assert!(r.tangents.iter().all(|t| t[3] == -1.0));
        assert_eq!(r.degenerate_faces, 0);
    }

    #[test]
    fn tangents_are_unit_and_perpendicular_to_bent_normals() {
        let (p, _, uv, f) = quad(false);
        let n = vec![
            [0.3, 0.0, 1.0],
            [0.0, 0.2, 1.0],
            [-0.4, 0.1, 1.0],
            [0.0, 0.0, 1.0],
        ];
        let r = tangents(&p, &n, &uv, &ident(4), &f);
        for (t, nn) in r.tangents.iter().zip(&n) {
            let nn = normalized(f64v(*nn)).unwrap();
            let tv = [t[0] as f64, t[1] as f64, t[2] as f64];
            assert!((dot(tv, tv) - 1.0).abs() < 1e-6);
            assert!(dot(tv, nn).abs() < 1e-6);
        }
    }

    #[test]
    fn degenerate_uvs_are_counted_and_get_a_fallback() {
        let (p, n, _, f) = quad(false);
        let uv = vec![[0.5, 0.5]; 4];
        let r = tangents(&p, &n, &uv, &ident(4), &f);
        assert_eq!(r.degenerate_faces, 2);
        assert!((r.degenerate_area_fraction - 1.0).abs() < 1e-12);
        for t in &r.tangents {
            assert!(
                t[2].abs() < 1e-6,
                "fallback must be perpendicular to +Z: {t:?}"
            );
            assert!(((t[0] * t[0] + t[1] * t[1]) - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn any_perpendicular_is_unit_and_orthogonal() {
        for n in [
            [0.0, 0.0, 1.0],
            [0.0, 0.0, -1.0],
            [1.0, 0.0, 0.0],
            [0.6, -0.8, 0.0],
        ] {
            let t = any_perpendicular(n);
            let d = t[0] * n[0] + t[1] * n[1] + t[2] * n[2];
            let l = t[0] * t[0] + t[1] * t[1] + t[2] * t[2];
            assert!(d.abs() < 1e-6 && (l - 1.0).abs() < 1e-6, "{n:?} {t:?}");
        }
    }
}
