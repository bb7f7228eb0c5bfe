//! The in-memory triangle mesh shared by the readers, writers and mesh operations.
//!
//! Conventions (the Python `pgc_fast.mesh.Mesh` mirrors them):
//! * `faces` index `vertices`; `uv_faces` (same length as `faces`) index `uvs`. Keeping the two index
//!   buffers separate (as OBJ does) avoids splitting vertices at UV seams until a single-index format
//!   (GLB, PLY) needs it.
//! * UVs use the OBJ/OpenGL convention: (0, 0) is the bottom-left of the texture image.
//! * Textures are stored row-major with row 0 = the top row of the image (as in a PNG file), float32
//!   in [0, 1], 1–4 channels interleaved.
//! * `normals` and `colors` are per position (same length as `vertices`); colours are linear floats
//!   in [0, 1] exactly as written in the file (no sRGB conversion).

/// A float image, row 0 = top.
#[derive(Clone, Debug, PartialEq)]
pub struct Texture {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Texture {
    pub fn new(
        width: usize,
        height: usize,
        channels: usize,
        data: Vec<f32>,
    ) -> crate::Result<Self> {
        if !(1..=4).contains(&channels)
            || width == 0
            || height == 0
            || data.len() != width * height * channels
        {
            return Err(crate::MeshError::Invalid(format!(
                "Texture(): data must be [H,W,C] with H,W >= 1 and C in 1..=4, got H={height} W={width} C={channels} len={}",
                data.len()
            )));
        }
        Ok(Texture {
            width,
            height,
            channels,
            data,
        })
    }
}

/// A glTF-style metallic-roughness PBR material.
#[derive(Clone, Debug, PartialEq)]
pub struct Material {
    pub name: String,
    /// Linear RGBA multiplier of the base colour (OBJ `Kd`, alpha from `d`).
    pub base_color_factor: [f32; 4],
    pub metallic_factor: f32,
    pub roughness_factor: f32,
    pub base_color_texture: Option<Texture>,
    /// glTF layout: G = roughness, B = metallic.
    pub metallic_roughness_texture: Option<Texture>,
    /// Tangent-space normal map (RGB in [0,1], OpenGL convention: green = +bitangent).
    pub normal_texture: Option<Texture>,
    /// Ambient occlusion (glTF: R channel, 1 = fully lit). Written to GLB only.
    pub occlusion_texture: Option<Texture>,
}

impl Default for Material {
    fn default() -> Self {
        Material {
            name: "material0".into(),
            base_color_factor: [1.0; 4],
            metallic_factor: 0.0,
            roughness_factor: 1.0,
            base_color_texture: None,
            metallic_roughness_texture: None,
            normal_texture: None,
            occlusion_texture: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    pub vertices: Vec<[f32; 3]>,
    pub faces: Vec<[u32; 3]>,
    pub uvs: Option<Vec<[f32; 2]>>,
    pub uv_faces: Option<Vec<[u32; 3]>>,
    pub normals: Option<Vec<[f32; 3]>>,
    pub colors: Option<Vec<[f32; 3]>>,
    pub material: Option<Material>,
}

impl Mesh {
    /// Checks index ranges, attribute lengths and finiteness; `op` names the caller in the message.
    pub fn validate(&self, op: &str) -> crate::Result<()> {
        let inv = |m: String| Err(crate::MeshError::Invalid(format!("{op}(): {m}")));
        let nv = self.vertices.len();
        if let Some(i) = self
            .vertices
            .iter()
            .position(|v| !v.iter().all(|x| x.is_finite()))
        {
            return inv(format!(
                "vertices must be finite, got {:?} at vertex {i}",
                self.vertices[i]
            ));
        }
        if let Some((i, f)) = self
            .faces
            .iter()
            .enumerate()
            .find(|(_, f)| f.iter().any(|&x| x as usize >= nv))
        {
            return inv(format!(
                "faces must index vertices (0..{nv}), got {f:?} at face {i}"
            ));
        }
        match (&self.uvs, &self.uv_faces) {
            (None, None) => {}
            (Some(uv), Some(uf)) => {
                if uf.len() != self.faces.len() {
                    return inv(format!(
                        "uv_faces must have one row per face ({}), got {}",
                        self.faces.len(),
                        uf.len()
                    ));
                }
                if let Some((i, f)) = uf
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.iter().any(|&x| x as usize >= uv.len()))
                {
                    return inv(format!(
                        "uv_faces must index uvs (0..{}), got {f:?} at face {i}",
                        uv.len()
                    ));
                }
                if uv.iter().any(|t| !t[0].is_finite() || !t[1].is_finite()) {
                    return inv("uvs must be finite".into());
                }
            }
            _ => return inv("uvs and uv_faces must be given together".into()),
        }
        if let Some(n) = &self.normals {
            if n.len() != nv {
                return inv(format!(
                    "normals must be [V,3] with V={nv}, got {} rows",
                    n.len()
                ));
            }
        }
        if let Some(c) = &self.colors {
            if c.len() != nv {
                return inv(format!(
                    "colors must be [V,3] with V={nv}, got {} rows",
                    c.len()
                ));
            }
        }
        Ok(())
    }
}

/// Converts an int64 [N,3] index buffer into u32 triples, checking 0 ≤ i < `count`.
pub fn index_triples(
    data: &[i64],
    count: usize,
    op: &str,
    arg: &str,
) -> crate::Result<Vec<[u32; 3]>> {
    if !data.len().is_multiple_of(3) {
        return Err(crate::MeshError::Invalid(format!(
            "{op}(): {arg} must be [N,3], got {} values",
            data.len()
        )));
    }
    if count > u32::MAX as usize {
        return Err(crate::MeshError::Invalid(format!(
            "{op}(): at most 2^32-1 elements are supported, got {count}"
        )));
    }
    if let Some((i, &x)) = data
        .iter()
        .enumerate()
        .find(|(_, &x)| x < 0 || x as u64 >= count as u64)
    {
        return Err(crate::MeshError::Invalid(format!(
            "{op}(): {arg} must index 0..{count}, got {x} at row {}",
            i / 3
        )));
    }
    Ok(data
        .chunks_exact(3)
        .map(|c| [c[0] as u32, c[1] as u32, c[2] as u32])
        .collect())
}
