//! High-dynamic-range images for environment lights: Radiance `.hdr` (RGBE) and OpenEXR `.exr` read with the
//! `image` crate's decoders (its `hdr` and `exr` features; the latter is the `exr` crate), Radiance `.hdr`
//! written with its encoder. Pixels are linear float RGB, row 0 = the top of the image.
use crate::mesh::Texture;
use crate::{MeshError, Result};
use std::path::Path;

/// Pixels an environment image may have: 2^27 (a 16k × 8k lat-long map, 1.5 GiB as float RGB), checked
/// against the header before anything is decoded.
pub const MAX_HDR_PIXELS: u64 = 1 << 27;

/// Reads a Radiance `.hdr` or OpenEXR `.exr` image as a 3-channel float texture (alpha dropped).
///
/// The format is recognised from the file's contents, not its name; anything else (a PNG, a JPEG, a text
/// file) is refused naming the file, as are non-finite pixels (EXR can store NaN and infinity) and images
/// over `max_pixels`.
pub fn read_hdr(path: &Path, max_pixels: u64) -> Result<Texture> {
    let meta = std::fs::metadata(path).map_err(|e| MeshError::io(path, e))?;
    if !meta.is_file() {
        return Err(MeshError::refused(path, 0, "not a regular file"));
    }
    let bytes = std::fs::read(path).map_err(|e| MeshError::io(path, e))?;
    let bad = |msg: String| MeshError::parse(path, 0, msg);
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| bad(format!("cannot read image: {e}")))
    };
    let format = reader()?.format();
    if !matches!(
        format,
        Some(image::ImageFormat::Hdr | image::ImageFormat::OpenExr)
    ) {
        let found = format.map_or("unrecognised contents".to_string(), |f| {
            format!("found {f:?}")
        });
        return Err(bad(format!(
            "not a high-dynamic-range image ({found}): expected a Radiance .hdr or OpenEXR .exr image"
        )));
    }
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| bad(format!("cannot decode image header: {e}")))?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels || pixels == 0 {
        return Err(MeshError::limit(
            path,
            0,
            format!("image is {w}x{h} = {pixels} pixels, must be 1..{max_pixels} (checked before decoding)"),
        ));
    }
    let mut r = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(pixels * 32 + (64 << 20));
    r.limits(limits);
    let img = r
        .decode()
        .map_err(|e| bad(format!("cannot decode image: {e}")))?;
    let data = img.into_rgb32f().into_raw();
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        let px = i / 3;
        return Err(bad(format!(
            "pixel ({}, {}) is not finite ({}): an environment light needs finite radiance",
            px % w as usize,
            px / w as usize,
            data[i]
        )));
    }
    Texture::new(w as usize, h as usize, 3, data)
}

/// Writes a 3-channel float texture as a Radiance `.hdr` file (negative values clamp to 0: RGBE has no sign).
pub fn write_hdr(t: &Texture, path: &Path) -> Result<()> {
    if t.channels != 3 {
        return Err(MeshError::Invalid(format!(
            "write_hdr(): texture must have 3 channels, got {}",
            t.channels
        )));
    }
    if t.data.iter().any(|x| !x.is_finite()) {
        return Err(MeshError::Invalid(
            "write_hdr(): texture must be finite".into(),
        ));
    }
    let px: Vec<image::Rgb<f32>> = t
        .data
        .chunks_exact(3)
        .map(|c| image::Rgb([c[0].max(0.0), c[1].max(0.0), c[2].max(0.0)]))
        .collect();
    let mut buf = Vec::new();
    image::codecs::hdr::HdrEncoder::new(&mut buf)
        .encode(&px, t.width, t.height)
        .map_err(|e| MeshError::Invalid(format!("write_hdr(): cannot encode: {e}")))?;
    std::fs::write(path, buf).map_err(|e| MeshError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rust_mesh_hdr_{}_{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn hdr_round_trip_keeps_values_within_rgbe_precision() {
        let data: Vec<f32> = (0..4 * 2 * 3).map(|i| 0.01 + i as f32 * 3.7).collect();
        let t = Texture::new(4, 2, 3, data.clone()).unwrap();
        let p = tmp("a.hdr");
        write_hdr(&t, &p).unwrap();
        let r = read_hdr(&p, MAX_HDR_PIXELS).unwrap();
        assert_eq!((r.width, r.height, r.channels), (4, 2, 3));
        for (a, b) in r.data.iter().zip(&data) {
            // RGBE: 8-bit mantissas sharing the largest channel's exponent.
            let px_max = 90.0f32;
            assert!(
                (a - b).abs() <= b.abs() / 128.0 + px_max / 256.0,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn exr_is_read_exactly_with_alpha_dropped_and_nan_refused() {
        let data: Vec<f32> = (0..3 * 2 * 4).map(|i| i as f32 * 0.25 - 1.0).collect();
        let img = image::Rgba32FImage::from_raw(3, 2, data.clone()).unwrap();
        let p = tmp("c.exr");
        image::DynamicImage::ImageRgba32F(img)
            .save_with_format(&p, image::ImageFormat::OpenExr)
            .unwrap();
        let r = read_hdr(&p, MAX_HDR_PIXELS).unwrap();
        assert_eq!((r.width, r.height, r.channels), (3, 2, 3));
        let rgb: Vec<f32> = data
            .chunks_exact(4)
            .flat_map(|c| [c[0], c[1], c[2]])
            .collect();
        assert_eq!(r.data, rgb);
        let mut bad = rgb.clone();
        bad[4] = f32::NAN;
        let img = image::Rgb32FImage::from_raw(3, 2, bad).unwrap();
        image::DynamicImage::ImageRgb32F(img)
            .save_with_format(&p, image::ImageFormat::OpenExr)
            .unwrap();
        let e = read_hdr(&p, MAX_HDR_PIXELS).unwrap_err().to_string();
        assert!(
            e.contains("c.exr") && e.contains("pixel (1, 0) is not finite"),
            "{e}"
        );
        let e = read_hdr(&p, 5).unwrap_err().to_string();
        assert!(e.contains("over") || e.contains("must be 1..5"), "{e}");
    }

    #[test]
    fn a_png_is_refused_naming_the_file() {
        let p = tmp("b.hdr");
        let t = Texture::new(2, 2, 3, vec![0.5; 12]).unwrap();
        crate::io::texture::write_png(&t, &p).unwrap();
        let e = read_hdr(&p, MAX_HDR_PIXELS).unwrap_err().to_string();
        assert!(e.contains("b.hdr") && e.contains("Png"), "{e}");
        std::fs::write(&p, b"hello").unwrap();
        let e = read_hdr(&p, MAX_HDR_PIXELS).unwrap_err().to_string();
        assert!(e.contains("b.hdr") && e.contains("unrecognised"), "{e}");
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let e = read_hdr(Path::new("/nonexistent/x.hdr"), MAX_HDR_PIXELS).unwrap_err();
        assert!(matches!(e, MeshError::Io { .. }));
    }
}
