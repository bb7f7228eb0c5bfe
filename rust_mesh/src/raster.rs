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
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
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
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
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
    Some(Setup {
        e,
        d,
        x0,
        x1,
        y0,
        y1,
    })
}

const BAND: usize = 16;

/// Zero-filled output buffer. Large outputs (a 4×1024² batch is 64 MiB) are backed by transparent huge
/// pages where the kernel offers them on request (`madvise`): first-touch page faults were ~30% of the
/// rasteriser's CPU time with 4 KiB pages.
fn zeroed_output(n: usize) -> Vec<f32> {
    #[allow(unused_mut)]
    let mut v = vec![0f32; n];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = n * 4;
        if bytes >= 4 * HUGE {
            let start = v.as_mut_ptr() as usize;
            let aligned = (start + HUGE - 1) & !(HUGE - 1);
            let end = (start + bytes) & !(HUGE - 1);
            if end > aligned {
                // SAFETY: the range lies inside `v`'s allocation; MADV_HUGEPAGE only changes how the kernel
                // backs untouched pages (contents stay zero), and failure is harmless (ignored).
                unsafe {
                    libc::madvise(
                        aligned as *mut libc::c_void,
                        end - aligned,
                        libc::MADV_HUGEPAGE,
                    );
                }
            }
        }
    }
    v
}

/// Pixel-centre NDC coordinates of `n` pixels: (i + 0.5)·2/n − 1 (computed exactly as the docs say).
fn centres(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 + 0.5) * 2.0 / n as f64 - 1.0)
        .collect()
}

/// Conservative column span [lo, hi] of pixels where all λᵢ(x) = a_i·x + r_i can be ≥ 0 on this row
/// (one pixel of slack each side; the exact per-pixel test decides coverage).
#[inline]
fn row_span(a: [f64; 3], r: [f64; 3], x0: i32, x1: i32, w: usize) -> Option<(usize, usize)> {
    let (mut lo, mut hi) = (-1.0f64, 1.0f64);
    for i in 0..3 {
        if a[i] > 0.0 {
            lo = lo.max(-r[i] / a[i]);
        } else if a[i] < 0.0 {
            hi = hi.min(-r[i] / a[i]);
        } else if r[i] < 0.0 {
            return None;
        }
    }
    // NaN: fall back to the bbox (never drop pixels on numerical trouble); empty span: nothing to draw.
    if lo.is_nan() || hi.is_nan() {
        return Some((x0 as usize, x1 as usize));
    }
    if lo > hi {
        return None;
    }
    let px = |v: f64| (v + 1.0) * w as f64 * 0.5 - 0.5;
    let a0 = (px(lo).floor() as i64 - 1).max(x0 as i64);
    let b0 = (px(hi).ceil() as i64 + 1).min(x1 as i64);
    (a0 <= b0).then_some((a0 as usize, b0 as usize))
}

/// Rasterises `b` batches of clip positions (`clip`: b·nv·4 floats) with shared `faces` (indices must be
/// < nv; the caller validates) into an output of b·h·w·4 floats (see the module docs).
pub fn rasterize(
    clip: &[f32],
    b: usize,
    nv: usize,
    faces: &[[u32; 3]],
    h: usize,
    w: usize,
) -> Vec<f32> {
    let mut out = zeroed_output(b * h * w * 4);
    if h == 0 || w == 0 || b == 0 {
        return out;
    }
    let (xs, ys) = (centres(w), centres(h));
    out.par_chunks_mut(h * w * 4)
        .enumerate()
        .for_each(|(bi, img)| {
            let pos = &clip[bi * nv * 4..(bi + 1) * nv * 4];
            let get = |i: u32| {
                let o = i as usize * 4;
                [
                    pos[o] as f64,
                    pos[o + 1] as f64,
                    pos[o + 2] as f64,
                    pos[o + 3] as f64,
                ]
            };
            // Only visible triangles are kept, with their id, in id order.
            let setups: Vec<(u32, Setup)> = faces
                .par_iter()
                .enumerate()
                .filter_map(|(t, f)| {
                    setup([get(f[0]), get(f[1]), get(f[2])], w, h).map(|s| (t as u32, s))
                })
                .collect();
            let nbands = h.div_ceil(BAND);
            let mut counts = vec![0u32; nbands + 1];
            for (_, s) in &setups {
                for c in &mut counts[s.y0 as usize / BAND..=s.y1 as usize / BAND] {
                    *c += 1;
                }
            }
            let mut offs = vec![0usize; nbands + 1];
            for i in 0..nbands {
                offs[i + 1] = offs[i] + counts[i] as usize;
            }
            let mut bins = vec![0u32; offs[nbands]];
            let mut cur = offs.clone();
            for (k, (_, s)) in setups.iter().enumerate() {
                for band in (s.y0 as usize / BAND)..=(s.y1 as usize / BAND) {
                    bins[cur[band]] = k as u32;
                    cur[band] += 1;
                }
            }
            // One depth buffer per worker, reused across bands (a fresh 128 KiB buffer per band would be an
            // mmap + page faults each time).
            img.par_chunks_mut(BAND * w * 4).enumerate().for_each_init(
                Vec::new,
                |zbuf: &mut Vec<f64>, (band, rows)| {
                    let r0 = band * BAND;
                    let nrows = rows.len() / (w * 4);
                    zbuf.clear();
                    zbuf.resize(nrows * w, f64::INFINITY);
                    for &k in &bins[offs[band]..offs[band + 1]] {
                        let (t, s) = &setups[k as usize];
                        let ya = (s.y0 as usize).max(r0);
                        let yb = (s.y1 as usize).min(r0 + nrows - 1);
                        let a = [s.e[0][0], s.e[1][0], s.e[2][0]];
                        for y in ya..=yb {
                            let yc = ys[y];
                            let row = [0, 1, 2].map(|i| s.e[i][1] * yc + s.e[i][2]);
                            // Narrow triangles: scanning the bbox is cheaper than solving for the span.
                            let (xa, xb) = if s.x1 - s.x0 < 16 {
                                (s.x0 as usize, s.x1 as usize)
                            } else {
                                match row_span(a, row, s.x0, s.x1, w) {
                                    Some(span) => span,
                                    None => continue,
                                }
                            };
                            let drow = s.d[1] * yc + s.d[2];
                            let zrow = &mut zbuf[(y - r0) * w..(y - r0 + 1) * w];
                            let orow = &mut rows[(y - r0) * w * 4..(y - r0 + 1) * w * 4];
                            for x in xa..=xb {
                                let xc = xs[x];
                                let l0 = a[0] * xc + row[0];
                                let l1 = a[1] * xc + row[1];
                                let l2 = a[2] * xc + row[2];
                                let sum = l0 + l1 + l2;
                                let z = s.d[0] * xc + drow;
                                // One combined (non-short-circuit) test: small triangles make each separate
                                // branch unpredictable.
                                let inside = (l0 >= 0.0)
                                    & (l1 >= 0.0)
                                    & (l2 >= 0.0)
                                    & (sum > 0.0)
                                    & (z.abs() <= 1.0) // −1 ≤ z ≤ 1 in one compare (false for NaN)
                                    & (z < zrow[x]);
                                // Branch-free select: coverage inside a small triangle's bbox is close to a coin
                                // flip, so a data-dependent branch here mispredicts constantly.
                                let inv = 1.0 / sum;
                                let px = [
                                    (l0 * inv) as f32,
                                    (l1 * inv) as f32,
                                    z as f32,
                                    (t + 1) as f32,
                                ];
                                zrow[x] = if inside { z } else { zrow[x] };
                                let o = x * 4;
                                let dst = &mut orow[o..o + 4];
                                for k in 0..4 {
                                    dst[k] = if inside { px[k] } else { dst[k] };
                                }
                            }
                        }
                    }
                },
            );
        });
    out
}

/// UV-space rasteriser for texture baking. Texel (row r, column c) of an h×w texture samples
/// (u, v) = ((c + 0.5)/w, 1 − (r + 0.5)/h): row 0 is the top of the image and v points up (OBJ
/// convention). Returns per texel the face id (−1 where empty; overlaps go to the lowest id) and the
/// barycentric weights of the face's three corners (zeros where empty).
pub fn rasterize_uv(
    uvs: &[[f32; 2]],
    uv_faces: &[[u32; 3]],
    h: usize,
    w: usize,
) -> (Vec<i64>, Vec<f32>) {
    // clip = (2u − 1, 1 − 2v, 0, 1): rows then run top to bottom, depth ties → lowest id.
    let clip: Vec<f32> = uvs
        .iter()
        .flat_map(|t| [2.0 * t[0] - 1.0, 1.0 - 2.0 * t[1], 0.0, 1.0])
        .collect();
    let r = rasterize(&clip, 1, uvs.len(), uv_faces, h, w);
    let mut ids = vec![-1i64; h * w];
    let mut bary = vec![0f32; h * w * 3];
    ids.par_iter_mut()
        .zip(bary.par_chunks_mut(3))
        .zip(r.par_chunks(4))
        .for_each(|((id, b), px)| {
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
    if h == 0 || w == 0 || c == 0 {
        return;
    }
    for _ in 0..pixels {
        let old_mask = mask.to_vec();
        let old_tex = tex.to_vec();
        let mut changed = false;
        tex.par_chunks_mut(w * c)
            .zip(mask.par_chunks_mut(w))
            .enumerate()
            .for_each(|(y, (trow, mrow))| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_screen_quad_is_covered_once_with_consistent_barycentrics() {
        let clip = [
            -1.0, -1.0, 0.0, 1.0, 1.0, -1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, -1.0, 1.0, 0.0, 1.0f32,
        ];
        let out = rasterize(&clip, 1, 4, &[[0, 1, 2], [0, 2, 3]], 5, 7);
        for px in out.chunks(4) {
            assert!(px[3] == 1.0 || px[3] == 2.0);
            assert!(px[0] >= 0.0 && px[1] >= 0.0 && px[0] + px[1] <= 1.0 + 1e-6);
        }
        // pixel (row 0, col 6): centre (x, y) = (13/14·2−1, 1/10·2−1) → lower-right triangle
        let px = &out[6 * 4..7 * 4];
        assert_eq!(px[3], 1.0);
    }

    #[test]
    fn behind_camera_triangle_is_clipped_not_wrapped() {
        // One vertex behind the eye (w < 0): only the w > 0 part may be drawn and every drawn pixel
        // must reproject to its own centre.
        let clip = [
            -0.5, -0.5, 0.0, 1.0, 0.5, -0.5, 0.0, 1.0, 0.0, 0.5, 0.0, -0.5f32,
        ];
        let (h, w) = (16, 16);
        let out = rasterize(&clip, 1, 3, &[[0, 1, 2]], h, w);
        let mut n = 0;
        for r in 0..h {
            for c in 0..w {
                let px = &out[(r * w + c) * 4..(r * w + c) * 4 + 4];
                if px[3] == 0.0 {
                    continue;
                }
                n += 1;
                let (u, v) = (px[0] as f64, px[1] as f64);
                let p = |k: usize| {
                    u * clip[k] as f64 + v * clip[4 + k] as f64 + (1.0 - u - v) * clip[8 + k] as f64
                };
                assert!(p(3) > 0.0);
                let (x, y) = (p(0) / p(3), p(1) / p(3));
                assert!((x - ((c as f64 + 0.5) / w as f64 * 2.0 - 1.0)).abs() < 1e-4);
                assert!((y - ((r as f64 + 0.5) / h as f64 * 2.0 - 1.0)).abs() < 1e-4);
            }
        }
        assert!(n > 10);
    }

    #[test]
    fn dilate_fills_rings() {
        let mut t = vec![0f32; 9];
        let mut m = vec![false; 9];
        t[4] = 2.0;
        m[4] = true;
        dilate(&mut t, &mut m, 3, 3, 1, 1);
        assert!(m.iter().all(|&x| x) && t.iter().all(|&x| x == 2.0));
    }
}
