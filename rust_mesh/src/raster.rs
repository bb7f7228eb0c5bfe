//! CPU triangle rasteriser with nvdiffrast's `rasterize` output convention, parallel over row bands.
//!
//! Convention (identical to `nvdiffrast.torch.rasterize`):
//! * Input: clip-space positions (x, y, z, w) per vertex, triangles as vertex-index triples.
//! * Output per pixel: (u, v, z/w, triangle_id + 1), zeros where no triangle covers the pixel.
//!   The covered point is `u·p0 + v·p1 + (1 − u − v)·p2` for the triangle's vertices (p0, p1, p2),
//!   with **perspective-correct** (clip-space) barycentrics u, v.
//! * Pixel (row r, column c) samples the centre x = (c + 0.5)/W·2 − 1, y = (r + 0.5)/H·2 − 1, so row 0
//!   is clip y = −1 (OpenGL's bottom row, as nvdiffrast returns it).
//! * Clipping: a pixel is covered when the clip-space point is inside the triangle with w > 0 and
//!   −1 ≤ z/w ≤ 1 (equivalent to clipping against the six frustum planes). Both windings are drawn.
//! * Depth test: the smallest z/w wins; exact ties go to the lower triangle id.
//!
//! Method: homogeneous 2D rasterisation (Olano & Greer 1997). With M = [p0 p1 p2] in (x, y, w) rows,
//! λ = M⁻¹·(x_ndc, y_ndc, 1) gives λᵢ = bᵢ/w, where bᵢ are the clip-space barycentrics; λ is linear in
//! screen space, inside ⇔ all λᵢ ≥ 0, w = 1/Σλ, and z/w = Σ λᵢ zᵢ is linear too. This needs no
//! explicit near-plane clipping and handles vertices behind the camera. The triangle's plane through
//! the eye (det M = 0) covers no area and is skipped. Set-up runs in f64.
use rayon::prelude::*;

#[derive(Clone, Copy)]
struct Setup {
    // λ_i = e[i][0]·x + e[i][1]·y + e[i][2]; depth = d[0]·x + d[1]·y + d[2]
    e: [[f64; 3]; 3],
    d: [f64; 3],
    // inclusive pixel bbox
    x0: i32,
    x1: i32,
    y0: i32,
    y1: i32,
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn setup(p: [[f64; 4]; 3], w: usize, h: usize) -> Option<Setup> {
    // Trivial frustum rejection: all three vertices outside the same plane.
    for axis in 0..3 {
        if p.iter().all(|v| v[axis] > v[3]) || p.iter().all(|v| v[axis] < -v[3]) {
            return None;
        }
    }
    if p.iter().all(|v| v[3] <= 0.0) {
        return None;
    }
    let c: [[f64; 3]; 3] = [0, 1, 2].map(|i| [p[i][0], p[i][1], p[i][3]]);
    let r0 = cross(c[1], c[2]);
    let det = c[0][0] * r0[0] + c[0][1] * r0[1] + c[0][2] * r0[2];
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let r1 = cross(c[2], c[0]);
    let r2 = cross(c[0], c[1]);
    let e = [r0, r1, r2].map(|r| r.map(|x| x / det));
    let d = [0, 1, 2].map(|k| e[0][k] * p[0][2] + e[1][k] * p[1][2] + e[2][k] * p[2][2]);
    // Screen bbox of the part with w > 0: project vertices in front; for edges crossing w = 0 the
    // projection is unbounded, so fall back to the full viewport on that side.
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    let all_front = p.iter().all(|v| v[3] > 0.0);
    if all_front {
        for v in &p {
            let (x, y) = (v[0] / v[3], v[1] / v[3]);
            xmin = xmin.min(x);
            xmax = xmax.max(x);
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
    } else {
        // Clip against w = eps: polygon of front vertices and edge intersections, then project.
        let eps = 1e-12;
        let mut pts: Vec<[f64; 4]> = Vec::with_capacity(4);
        for i in 0..3 {
            let (a, b) = (p[i], p[(i + 1) % 3]);
            if a[3] > eps {
                pts.push(a);
            }
            if (a[3] > eps) != (b[3] > eps) {
                let t = (eps - a[3]) / (b[3] - a[3]);
                pts.push([0, 1, 2, 3].map(|k| a[k] + t * (b[k] - a[k])));
            }
        }
        for v in &pts {
            let (x, y) = (v[0] / v[3], v[1] / v[3]);
            xmin = xmin.min(x);
            xmax = xmax.max(x);
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
    }
    // pixel c covers centre xc = (c+0.5)·2/W − 1  ⇒  c = (x+1)·W/2 − 0.5
    let to_px = |v: f64, n: usize| (v + 1.0) * n as f64 * 0.5 - 0.5;
    let clampi = |v: f64, n: usize| v.clamp(-1.0, n as f64) as i32;
    let x0 = clampi(to_px(xmin, w).ceil(), w).max(0);
    let x1 = clampi(to_px(xmax, w).floor(), w).min(w as i32 - 1);
    let y0 = clampi(to_px(ymin, h).ceil(), h).max(0);
    let y1 = clampi(to_px(ymax, h).floor(), h).min(h as i32 - 1);
    if x0 > x1 || y0 > y1 {
        return None;
    }
    Some(Setup { e, d, x0, x1, y0, y1 })
}

const BAND: usize = 16;

/// Rasterises `b` batches of clip positions (`clip`: b·nv·4 floats) with shared `faces` (indices must be
/// < nv; the caller validates) into an output of b·h·w·4 floats (see the module docs).
pub fn rasterize(clip: &[f32], b: usize, nv: usize, faces: &[[u32; 3]], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; b * h * w * 4];
    if h == 0 || w == 0 || b == 0 {
        return out;
    }
    out.par_chunks_mut(h * w * 4).enumerate().for_each(|(bi, img)| {
        let pos = &clip[bi * nv * 4..(bi + 1) * nv * 4];
        let get = |i: u32| {
            let o = i as usize * 4;
            [pos[o] as f64, pos[o + 1] as f64, pos[o + 2] as f64, pos[o + 3] as f64]
        };
        let setups: Vec<Option<Setup>> = faces.par_iter().map(|f| setup([get(f[0]), get(f[1]), get(f[2])], w, h)).collect();
        let nbands = h.div_ceil(BAND);
        let mut bins: Vec<Vec<u32>> = vec![Vec::new(); nbands];
        for (t, s) in setups.iter().enumerate() {
            if let Some(s) = s {
                for band in (s.y0 as usize / BAND)..=(s.y1 as usize / BAND) {
                    bins[band].push(t as u32);
                }
            }
        }
        img.par_chunks_mut(BAND * w * 4).enumerate().for_each(|(band, rows)| {
            let r0 = band * BAND;
            let nrows = rows.len() / (w * 4);
            let mut zbuf = vec![f64::INFINITY; nrows * w];
            for &t in &bins[band] {
                let s = setups[t as usize].as_ref().unwrap();
                let ya = (s.y0 as usize).max(r0);
                let yb = (s.y1 as usize).min(r0 + nrows - 1);
                for y in ya..=yb {
                    let yc = (y as f64 + 0.5) * 2.0 / h as f64 - 1.0;
                    let row = [0, 1, 2].map(|i| s.e[i][1] * yc + s.e[i][2]);
                    let drow = s.d[1] * yc + s.d[2];
                    for x in s.x0 as usize..=s.x1 as usize {
                        let xc = (x as f64 + 0.5) * 2.0 / w as f64 - 1.0;
                        let l0 = s.e[0][0] * xc + row[0];
                        let l1 = s.e[1][0] * xc + row[1];
                        let l2 = s.e[2][0] * xc + row[2];
                        if l0 < 0.0 || l1 < 0.0 || l2 < 0.0 {
                            continue;
                        }
                        let sum = l0 + l1 + l2;
                        if sum <= 0.0 {
                            continue;
                        }
                        let z = s.d[0] * xc + drow;
                        let zi = (y - r0) * w + x;
                        if !(-1.0..=1.0).contains(&z) || z >= zbuf[zi] {
                            continue;
                        }
                        zbuf[zi] = z;
                        let o = zi * 4;
                        rows[o] = (l0 / sum) as f32;
                        rows[o + 1] = (l1 / sum) as f32;
                        rows[o + 2] = z as f32;
                        rows[o + 3] = (t + 1) as f32;
                    }
                }
            }
        });
    });
    out
}

/// UV-space rasteriser for texture baking. Texel (row r, column c) of an h×w texture samples
/// (u, v) = ((c + 0.5)/w, 1 − (r + 0.5)/h): row 0 is the top of the image and v points up (OBJ
/// convention). Returns per texel the face id (−1 where empty; overlaps go to the lowest id) and the
/// barycentric weights of the face's three corners (zeros where empty).
pub fn rasterize_uv(uvs: &[[f32; 2]], uv_faces: &[[u32; 3]], h: usize, w: usize) -> (Vec<i64>, Vec<f32>) {
    // clip = (2u − 1, 1 − 2v, 0, 1): rows then run top to bottom, depth ties → lowest id.
    let clip: Vec<f32> = uvs.iter().flat_map(|t| [2.0 * t[0] - 1.0, 1.0 - 2.0 * t[1], 0.0, 1.0]).collect();
    let r = rasterize(&clip, 1, uvs.len(), uv_faces, h, w);
    let mut ids = vec![-1i64; h * w];
    let mut bary = vec![0f32; h * w * 3];
    ids.par_iter_mut().zip(bary.par_chunks_mut(3)).zip(r.par_chunks(4)).for_each(|((id, b), px)| {
        if px[3] > 0.0 {
            *id = px[3] as i64 - 1;
            b[0] = px[0];
            b[1] = px[1];
            b[2] = 1.0 - px[0] - px[1];
        }
    });
    (ids, bary)
}

/// Seam padding: grows the valid region of `tex` (h·w·c floats, `mask` h·w) by `pixels` rings; each new
/// texel is the mean of its valid 8-neighbours from the previous ring. Returns the new mask.
pub fn dilate(tex: &mut [f32], mask: &mut [bool], h: usize, w: usize, c: usize, pixels: usize) {
    for _ in 0..pixels {
        let old_mask = mask.to_vec();
        let old_tex = tex.to_vec();
        let mut changed = false;
        tex.par_chunks_mut(w * c).zip(mask.par_chunks_mut(w)).enumerate().for_each(|(y, (trow, mrow))| {
            for x in 0..w {
                if old_mask[y * w + x] {
                    continue;
                }
                let mut acc = vec![0f32; c];
                let mut n = 0;
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                        if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                            continue;
                        }
                        let j = yy as usize * w + xx as usize;
                        if old_mask[j] {
                            for k in 0..c {
                                acc[k] += old_tex[j * c + k];
                            }
                            n += 1;
                        }
                    }
                }
                if n > 0 {
                    for k in 0..c {
                        trow[x * c + k] = acc[k] / n as f32;
                    }
                    mrow[x] = true;
                }
            }
        });
        for (a, b) in mask.iter().zip(&old_mask) {
            if a != b {
                changed = true;
                break;
            }
        }
        if !changed {
            break;
        }
    }
}
