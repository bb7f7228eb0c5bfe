//! Mesh file I/O: OBJ(+MTL), PLY, GLB/glTF. `load_mesh`/`save_mesh` dispatch on the extension.
pub mod gltf;
pub mod obj;
pub mod ply;
pub mod texture;

pub use obj::Loaded;

use crate::mesh::Mesh;
use crate::{MeshError, Result};
use std::collections::HashMap;
use std::path::Path;

fn ext(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

/// Reads a mesh; the format comes from the extension (.obj, .ply, .glb, .gltf).
pub fn load_mesh(path: &Path) -> Result<Loaded> {
    match ext(path).as_str() {
        "obj" => obj::read_obj(path),
        "ply" => ply::read_ply(path),
        "glb" | "gltf" => gltf::read_gltf(path),
        e => Err(MeshError::Invalid(format!(
            "load_mesh(): path must end in .obj, .ply, .glb or .gltf, got {:?} (extension {e:?})",
            path.display().to_string()
        ))),
    }
}

/// Writes a mesh; the format comes from the extension (.obj, .ply, .glb). Textures go next to OBJ/PLY
/// files as PNGs and are embedded in GLB.
pub fn save_mesh(mesh: &Mesh, path: &Path) -> Result<()> {
    match ext(path).as_str() {
        "obj" => obj::write_obj(mesh, path),
        "ply" => ply::write_ply(mesh, path),
        "glb" => gltf::write_glb(mesh, path),
        e => Err(MeshError::Invalid(format!(
            "save_mesh(): path must end in .obj, .ply or .glb, got {:?} (extension {e:?})",
            path.display().to_string()
        ))),
    }
}

/// Single-index layout for formats that need it: one output vertex per distinct (position, uv) pair,
/// in first-use order. Returns (output vertex → (position id, uv id)) and the re-indexed faces.
/// Without UVs this is the identity on positions (unreferenced vertices are kept).
pub fn split_by_uv(mesh: &Mesh) -> (Vec<(u32, u32)>, Vec<[u32; 3]>) {
    match &mesh.uv_faces {
        None => ((0..mesh.vertices.len() as u32).map(|i| (i, 0)).collect(), mesh.faces.clone()),
        Some(uf) if uf == &mesh.faces && mesh.uvs.as_ref().map(Vec::len) == Some(mesh.vertices.len()) => ((0..mesh.vertices.len() as u32).map(|i| (i, i)).collect(), mesh.faces.clone()),
        Some(uf) => {
            let mut map: HashMap<(u32, u32), u32> = HashMap::with_capacity(mesh.vertices.len() * 2);
            let mut vmap = Vec::with_capacity(mesh.vertices.len() * 2);
            let faces = mesh
                .faces
                .iter()
                .zip(uf)
                .map(|(f, t)| {
                    let mut o = [0u32; 3];
                    for k in 0..3 {
                        let key = (f[k], t[k]);
                        o[k] = *map.entry(key).or_insert_with(|| {
                            vmap.push(key);
                            (vmap.len() - 1) as u32
                        });
                    }
                    o
                })
                .collect();
            (vmap, faces)
        }
    }
}
