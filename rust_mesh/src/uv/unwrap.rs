//! Automatic UV unwrapping with xatlas.parametrize's output contract, on top of the pure-Rust
//! `uvunwrap` crate (MIT, <https://crates.io/crates/uvunwrap>, archonic).
//!
//! Why a dependency and not our own port of xatlas: measured on this project's acceptance corpus (see
//! benches/RESULTS.md) `uvunwrap` 0.2 already does the xatlas pipeline (planar-region seeded chart growing
//! on normal deviation with crease and notch terms, chart merging, LSCM by sparse Cholesky with a split and
//! retry on flips, overlaps or area distortion, rasterised shape packing with 90° rotations and padding in
//! texels) with rayon, and meets the speed and quality bar, so this module only validates input, maps
//! options and converts the output.
use crate::error::{MeshError, Result};

/// How charts are placed in the atlas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Packing {
    /// Rasterised chart shapes (bitmap packer): charts nest into concavities. Denser; the default.
    #[default]
    Shape,
    /// Rows of charts pushed against each other's outlines: much faster packing, lower utilisation.
    Fast,
}

/// Charting and packing options. Defaults match `pgc_fast.uv.unwrap`'s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnwrapOptions {
    /// Atlas side in texels; the texel density is the highest at which every chart fits one page.
    pub resolution: u32,
    /// Empty texels around every chart (charts are ≥ 2·padding apart and ≥ padding from the border).
    pub padding: u32,
    /// Largest angle in degrees between a face normal and its chart's mean normal, in (0, 90).
    pub max_chart_angle: f32,
    /// Largest ratio of a triangle's relative UV area to its relative surface area (either way) before a
    /// chart is split, ≥ 1.
    pub max_area_distortion: f32,
    /// Allow 90° rotations while packing.
    pub rotate_charts: bool,
    /// Placement algorithm.
    pub packing: Packing,
    /// Largest chart side in texels (0 = no limit); bigger charts are scaled down.
    pub max_chart_size: u32,
    /// Align charts to 4×4 texel blocks (BCn compression).
    pub block_align: bool,
    /// Pack on a grid of 2×2-texel cells (resolution / 2, padding / 2) when the resolution is at least
    /// 2048 and the padding even (and neither `block_align` nor `max_chart_size` is set). The padding
    /// guarantee in texels is unchanged; charts are placed at even texel positions. Measured on the seed
    /// panda: same utilisation (0.744 vs 0.743 at 2048), packing about 2× faster.
    pub coarse_packing: bool,
}

impl Default for UnwrapOptions {
    fn default() -> Self {
        UnwrapOptions {
            resolution: 2048,
            padding: 2,
            max_chart_angle: 70.0,
            max_area_distortion: 4.0,
            rotate_charts: true,
            packing: Packing::Shape,
            max_chart_size: 0,
            block_align: false,
            coarse_packing: true,
        }
    }
}

/// An unwrapped mesh in xatlas.parametrize's layout: new vertex `i` copies input vertex `vmapping[i]`,
/// `faces` are the input faces in input order re-indexed into the new vertices, `uvs` lie in [0, 1]
/// (u across the atlas width, v across its height), every triangle with positive signed UV area.
#[derive(Clone, Debug, PartialEq)]
pub struct Unwrapped {
    pub vmapping: Vec<u32>,
    pub faces: Vec<[u32; 3]>,
    pub uvs: Vec<[f32; 2]>,
    /// Number of charts.
    pub chart_count: u32,
    /// Atlas size in texels actually used (height may be below `resolution`: the page is cropped).
    pub width: u32,
    pub height: u32,
    /// Fraction of the (cropped) atlas covered by charts, as the packer measures it.
    pub utilisation: f32,
}

fn check_options(o: &UnwrapOptions) -> Result<()> {
    const OP: &str = "unwrap";
    let bad = |arg: &str, want: &str, got: String| {
        Err(MeshError::Invalid(format!(
            "{OP}(): {arg} must be {want}, got {got}"
        )))
    };
    if !(8..=32768).contains(&o.resolution) {
        return bad("resolution", "in [8, 32768]", o.resolution.to_string());
    }
    if 2 * o.padding >= o.resolution {
        return bad("padding", "< resolution / 2", o.padding.to_string());
    }
    if !(o.max_chart_angle > 0.0 && o.max_chart_angle < 90.0) {
        return bad(
            "max_chart_angle",
            "in (0, 90) degrees",
            o.max_chart_angle.to_string(),
        );
    }
    if !(o.max_area_distortion >= 1.0 && o.max_area_distortion.is_finite()) {
        return bad(
            "max_area_distortion",
            "a finite number >= 1",
            o.max_area_distortion.to_string(),
        );
    }
    if o.block_align && !o.resolution.is_multiple_of(4) {
        return bad(
            "resolution",
            "a multiple of 4 with block_align",
            o.resolution.to_string(),
        );
    }
    Ok(())
}

/// Unwraps one triangle mesh into one atlas page. Deterministic: the same input and options give
/// bit-identical output whatever the thread count.
pub fn unwrap(
    positions: &[[f32; 3]],
    faces: &[[u32; 3]],
    options: &UnwrapOptions,
) -> Result<Unwrapped> {
    const OP: &str = "unwrap";
    check_options(options)?;
    if faces.is_empty() {
        return Err(MeshError::Invalid(format!(
            "{OP}(): faces must have at least one row, got 0"
        )));
    }
    if positions.len() > u32::MAX as usize {
        return Err(MeshError::Invalid(format!(
            "{OP}(): vertices must be fewer than 2^32, got {}",
            positions.len()
        )));
    }
    if let Some((f, t)) = faces
        .iter()
        .enumerate()
        .find(|(_, t)| t.iter().any(|&i| i as usize >= positions.len()))
    {
        return Err(MeshError::Invalid(format!(
            "{OP}(): faces must index {} vertices, got face {f} = {t:?}",
            positions.len()
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
    // Weld colocal vertices for topology, as xatlas does (its `MeshDecl::epsilon` link), so that triangle
    // soups and meshes split for normals or old UVs are charted as surfaces; uvunwrap would otherwise
    // take every split edge for a required seam. Corners get their own input vertex back below.
    let rep = crate::uv::weld_map(positions);
    let welded: Vec<u32> = faces
        .as_flattened()
        .iter()
        .map(|&i| rep[i as usize])
        .collect();
    let mesh = uvunwrap::MeshInput::new(positions, &welded);
    let cell: u32 = if options.coarse_packing
        && options.resolution >= 2048
        && options.padding.is_multiple_of(2)
        && options.resolution.is_multiple_of(2)
        && !options.block_align
        && options.max_chart_size == 0
    {
        2
    } else {
        1
    };
    let opts = uvunwrap::Options {
        max_chart_angle: options.max_chart_angle,
        max_area_distortion: options.max_area_distortion,
        density: uvunwrap::Density::Auto {
            page_size: options.resolution / cell,
        },
        padding: options.padding / cell,
        allow_rotation: options.rotate_charts,
        packing: match options.packing {
            Packing::Shape => uvunwrap::Packing::Shape,
            Packing::Fast => uvunwrap::Packing::Fast,
        },
        max_chart_size: options.max_chart_size,
        block_align: options.block_align,
    };
    let atlas = uvunwrap::generate(&[mesh], &opts)
        .map_err(|e| MeshError::Invalid(format!("{OP}(): {e}")))?;
    if atlas.page_count > 1 {
        return Err(MeshError::Invalid(format!(
            "{OP}(): the charts need {} pages of {r}×{r} texels; resolution must be larger (or padding smaller), got {r}",
            atlas.page_count,
            r = options.resolution
        )));
    }
    let out = atlas
        .meshes
        .into_iter()
        .next()
        .ok_or_else(|| MeshError::Invalid(format!("{OP}(): no output mesh")))?;
    let mut vmapping: Vec<u32> = out.vertices.iter().map(|v| v.xref).collect();
    let mut uvs: Vec<[f32; 2]> = out.vertices.iter().map(|v| v.uv).collect();
    let mut new_faces: Vec<[u32; 3]> = out
        .indices
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    // Un-weld: a corner whose input vertex differs from its output vertex's (welded) representative gets
    // a copy of that output vertex (same UV) that maps to the corner's own input vertex. Copies are
    // appended in corner order, so the output stays deterministic.
    let mut copies: std::collections::HashMap<(u32, u32), u32> = std::collections::HashMap::new();
    for (nf, f) in new_faces.iter_mut().zip(faces) {
        for k in 0..3 {
            let (o, orig) = (nf[k], f[k]);
            if vmapping[o as usize] != orig {
                nf[k] = *copies.entry((o, orig)).or_insert_with(|| {
                    vmapping.push(orig);
                    uvs.push(uvs[o as usize]);
                    (vmapping.len() - 1) as u32
                });
            }
        }
    }
    let faces = new_faces;
    Ok(Unwrapped {
        vmapping,
        faces,
        uvs,
        chart_count: atlas.chart_count,
        width: atlas.width * cell,
        height: atlas.height * cell,
        utilisation: atlas.utilization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uv::metrics::uv_metrics;

    /// A UV sphere with `n` rings and `2n` segments (poles are single vertices).
    fn sphere(n: u32) -> (Vec<[f32; 3]>, Vec<[u32; 3]>) {
        let m = 2 * n;
        let mut p = vec![[0.0, 0.0, 1.0]];
        for i in 1..n {
            let th = std::f32::consts::PI * i as f32 / n as f32;
            for j in 0..m {
                let ph = 2.0 * std::f32::consts::PI * j as f32 / m as f32;
                p.push([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()]);
            }
        }
        p.push([0.0, 0.0, -1.0]);
        let south = p.len() as u32 - 1;
        let ring = |i: u32, j: u32| 1 + (i - 1) * m + (j % m);
        let mut f = vec![];
        for j in 0..m {
            f.push([0, ring(1, j), ring(1, j + 1)]);
            f.push([south, ring(n - 1, j + 1), ring(n - 1, j)]);
        }
        for i in 1..n - 1 {
            for j in 0..m {
                f.push([ring(i, j), ring(i + 1, j), ring(i + 1, j + 1)]);
                f.push([ring(i, j), ring(i + 1, j + 1), ring(i, j + 1)]);
            }
        }
        (p, f)
    }

    #[test]
    fn sphere_unwraps_without_overlaps_or_flips() {
        let (p, f) = sphere(16);
        let o = UnwrapOptions {
            resolution: 256,
            ..Default::default()
        };
        let u = unwrap(&p, &f, &o).unwrap();
        assert_eq!(u.faces.len(), f.len());
        assert_eq!(u.vmapping.len(), u.uvs.len());
        for (new, old) in u.faces.iter().zip(&f) {
            assert_eq!(new.map(|i| u.vmapping[i as usize]), *old);
        }
        assert!(u.uvs.iter().flatten().all(|x| (0.0..=1.0).contains(x)));
        let pos: Vec<[f32; 3]> = u.vmapping.iter().map(|&i| p[i as usize]).collect();
        let m = uv_metrics(&pos, &u.faces, &u.uvs, &u.faces, 256).unwrap();
        assert_eq!(m.overlapping_pairs, 0, "{m:?}");
        assert_eq!(m.flipped, 0, "{m:?}");
        assert!(m.utilisation > 0.3, "{m:?}");
        assert!(m.l2_stretch < 1.3, "{m:?}");
        assert_eq!(m.chart_count as u32, u.chart_count);
    }

    #[test]
    fn triangle_soup_is_welded_for_charting_and_unwelded_in_output() {
        let (p, f) = sphere(10);
        let soup_p: Vec<[f32; 3]> = f.iter().flat_map(|t| t.map(|i| p[i as usize])).collect();
        let soup_f: Vec<[u32; 3]> = (0..f.len() as u32)
            .map(|i| [3 * i, 3 * i + 1, 3 * i + 2])
            .collect();
        let o = UnwrapOptions {
            resolution: 256,
            ..Default::default()
        };
        let u = unwrap(&soup_p, &soup_f, &o).unwrap();
        for (new, old) in u.faces.iter().zip(&soup_f) {
            assert_eq!(new.map(|i| u.vmapping[i as usize]), *old);
        }
        let welded = unwrap(&p, &f, &o).unwrap();
        assert_eq!(u.chart_count, welded.chart_count);
        assert!(u.chart_count < 20, "{}", u.chart_count);
    }

    #[test]
    fn deterministic() {
        let (p, f) = sphere(12);
        let o = UnwrapOptions {
            resolution: 128,
            ..Default::default()
        };
        assert_eq!(unwrap(&p, &f, &o).unwrap(), unwrap(&p, &f, &o).unwrap());
    }

    #[test]
    fn bad_input_is_an_error() {
        let (p, f) = sphere(4);
        assert!(unwrap(&p, &[[0, 1, 999]], &UnwrapOptions::default()).is_err());
        assert!(unwrap(&p, &[], &UnwrapOptions::default()).is_err());
        assert!(unwrap(
            &p,
            &f,
            &UnwrapOptions {
                resolution: 4,
                ..Default::default()
            }
        )
        .is_err());
        assert!(unwrap(
            &p,
            &f,
            &UnwrapOptions {
                padding: 600,
                resolution: 1024,
                ..Default::default()
            }
        )
        .is_err());
        assert!(unwrap(
            &p,
            &f,
            &UnwrapOptions {
                max_chart_angle: 95.0,
                ..Default::default()
            }
        )
        .is_err());
        let mut q = p.clone();
        q[0][1] = f32::NAN;
        assert!(unwrap(&q, &f, &UnwrapOptions::default()).is_err());
    }
}
