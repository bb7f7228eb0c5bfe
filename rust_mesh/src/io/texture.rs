//! PNG/JPEG decoding and PNG encoding of float textures (row 0 = top, values in [0, 1]).
use crate::mesh::Texture;
use crate::{MeshError, Result};
use std::path::Path;

/// Decodes an image into a float texture. `force_color` expands grey (+alpha) to RGB(A). The header's
/// size is checked against `max_pixels` before anything is decoded: a few hundred kB of PNG can declare
/// gigapixels, and the decoder would allocate them (or the float conversion would, 16 bytes a pixel).
pub fn decode_image(
    bytes: &[u8],
    what: &Path,
    force_color: bool,
    max_pixels: u64,
) -> Result<Texture> {
    let bad = |e: image::ImageError| MeshError::parse(what, 0, format!("cannot decode image: {e}"));
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| MeshError::parse(what, 0, format!("cannot decode image: {e}")))
    };
    let (w, h) = reader()?.into_dimensions().map_err(bad)?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(MeshError::limit(
            what,
            0,
            format!("image is {w}x{h} = {pixels} pixels, over the limit of {max_pixels} (checked before decoding)"),
        ));
    }
    let mut r = reader()?;
    // The decoder must agree with the header that was checked; its own allocations stay within what a
    // float RGBA image of that size needs.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(pixels * 16 + (64 << 20));
    r.limits(limits);
    from_dynamic(r.decode().map_err(bad)?, force_color)
}

fn from_dynamic(img: image::DynamicImage, force_color: bool) -> Result<Texture> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let has_alpha = img.color().has_alpha();
    let grey = !img.color().has_color();
    // Converted straight to the output layout (no RGBA float intermediate); 16-bit sources keep their
    // precision through the f32 conversion.
    let (channels, data) = match (grey && !force_color, has_alpha) {
        (true, false) => (1, img.to_luma32f().into_raw()),
        (true, true) => (2, img.to_luma_alpha32f().into_raw()),
        (false, false) => (3, img.into_rgb32f().into_raw()),
        (false, true) => (4, img.into_rgba32f().into_raw()),
    };
    Texture::new(w, h, channels, data)
}

/// Quantises to 8 bits (round to nearest, clamped to [0, 1]; NaN → 0).
pub fn to_u8(t: &Texture) -> Vec<u8> {
    t.data
        .iter()
        .map(|&x| {
            if x.is_nan() {
                0
            } else {
                (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
            }
        })
        .collect()
}

/// Encodes a texture as an 8-bit PNG (grey, grey+alpha, RGB or RGBA by channel count).
pub fn encode_png(t: &Texture) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let ct = match t.channels {
        1 => image::ExtendedColorType::L8,
        2 => image::ExtendedColorType::La8,
        3 => image::ExtendedColorType::Rgb8,
        _ => image::ExtendedColorType::Rgba8,
    };
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&to_u8(t), t.width as u32, t.height as u32, ct)
        .map_err(|e| MeshError::Invalid(format!("save_mesh(): cannot encode PNG: {e}")))?;
    Ok(out)
}

pub fn write_png(t: &Texture, path: &Path) -> Result<()> {
    let bytes = encode_png(t)?;
    std::fs::write(path, bytes).map_err(|e| MeshError::io(path, e))
}

/// Extracts channel `c` of `t` as a one-channel texture.
pub fn channel(t: &Texture, c: usize) -> Texture {
    let c = c.min(t.channels - 1);
    Texture {
        width: t.width,
        height: t.height,
        channels: 1,
        data: t.data.iter().skip(c).step_by(t.channels).copied().collect(),
    }
}

/// glTF metallic-roughness texture (G = roughness, B = metallic, R = 1) from separate grey maps.
pub fn combine_mr(metallic: Option<&Texture>, roughness: Option<&Texture>) -> Option<Texture> {
    let base = metallic.or(roughness)?;
    let (w, h) = (base.width, base.height);
    let (m, r) = (
        metallic.filter(|t| t.width == w && t.height == h),
        roughness.filter(|t| t.width == w && t.height == h),
    );
    let mut data = Vec::with_capacity(w * h * 3);
    for i in 0..w * h {
        let g = r.map_or(1.0, |t| t.data[i * t.channels]);
        let b = m.map_or(1.0, |t| t.data[i * t.channels]);
        data.extend_from_slice(&[1.0, g, b]);
    }
    Some(Texture {
        width: w,
        height: h,
        channels: 3,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    /// A valid 3×2 RGB PNG whose IHDR then claims `w`×`h` (CRC fixed, so only the size is a lie).
    fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        let t = Texture::new(3, 2, 3, vec![0.5; 18]).unwrap();
        let mut png = encode_png(&t).unwrap();
        // signature (8) + length (4) + "IHDR" (4) → width, height; CRC over "IHDR" + 13 data bytes.
        png[16..20].copy_from_slice(&w.to_be_bytes());
        png[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn image_size_is_checked_against_the_header_before_decoding() {
        let p = Path::new("bomb.png");
        let e = decode_image(&png_claiming(100_000, 100_000), p, true, 1 << 26)
            .err()
            .unwrap();
        assert!(matches!(e, MeshError::Limit { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "bomb.png: image is 100000x100000 = 10000000000 pixels, over the limit of 67108864 (checked before decoding)"
        );
        // the limit is inclusive, and a header that lies within it fails in the decoder, not by panic
        let ok = png_claiming(3, 2);
        assert_eq!(
            decode_image(&ok, p, true, 6).unwrap().data,
            vec![0.5019608; 18]
        );
        assert!(matches!(
            decode_image(&ok, p, true, 5),
            Err(MeshError::Limit { .. })
        ));
        assert!(matches!(
            decode_image(&png_claiming(300, 200), p, true, 1 << 26),
            Err(MeshError::Parse { .. })
        ));
    }

    #[test]
    fn grey_and_alpha_layouts_are_kept() {
        for c in 1..=4 {
            let t = Texture::new(2, 1, c, (0..2 * c).map(|i| i as f32 / 255.0).collect()).unwrap();
            let d =
                decode_image(&encode_png(&t).unwrap(), Path::new("x.png"), false, 1 << 26).unwrap();
            assert_eq!(d, t, "channels {c}");
            let forced =
                decode_image(&encode_png(&t).unwrap(), Path::new("x.png"), true, 1 << 26).unwrap();
            assert_eq!(forced.channels, if c <= 2 { c + 2 } else { c });
        }
    }
}
