//! PNG/JPEG decoding and PNG encoding of float textures (row 0 = top, values in [0, 1]).
use crate::mesh::Texture;
use crate::{MeshError, Result};
use std::path::Path;

/// Decodes an image into a float texture. `force_color` expands grey (+alpha) to RGB(A).
pub fn decode_image(bytes: &[u8], what: &Path, force_color: bool) -> Result<Texture> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| MeshError::parse(what, 0, format!("cannot decode image: {e}")))?;
    from_dynamic(img, force_color)
}

pub fn read_image(path: &Path, force_color: bool) -> Result<Texture> {
    let bytes = std::fs::read(path).map_err(|e| MeshError::io(path, e))?;
    decode_image(&bytes, path, force_color)
}

fn from_dynamic(img: image::DynamicImage, force_color: bool) -> Result<Texture> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let has_alpha = img.color().has_alpha();
    let grey = !img.color().has_color();
    let channels = match (grey && !force_color, has_alpha) {
        (true, false) => 1,
        (true, true) => 2,
        (false, false) => 3,
        (false, true) => 4,
    };
    // 16-bit sources keep their precision through the f32 conversion.
    let rgba = img.into_rgba32f();
    let src = rgba.as_raw();
    let mut data = Vec::with_capacity(w * h * channels);
    for px in src.chunks_exact(4) {
        match channels {
            1 => data.push(px[0]),
            2 => data.extend_from_slice(&[px[0], px[3]]),
            3 => data.extend_from_slice(&px[..3]),
            _ => data.extend_from_slice(px),
        }
    }
    Texture::new(w, h, channels, data)
}

/// Quantises to 8 bits (round to nearest, clamped to [0, 1]; NaN → 0).
pub fn to_u8(t: &Texture) -> Vec<u8> {
    t.data.iter().map(|&x| if x.is_nan() { 0 } else { (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8 }).collect()
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
    Texture { width: t.width, height: t.height, channels: 1, data: t.data.iter().skip(c).step_by(t.channels).copied().collect() }
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
    Some(Texture { width: w, height: h, channels: 3, data })
}
