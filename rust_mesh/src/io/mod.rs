//! Mesh file I/O: OBJ(+MTL), PLY, GLB/glTF. `load_mesh`/`save_mesh` dispatch on the extension.
pub mod gltf;
pub mod hdr;
pub mod obj;
pub mod ply;
pub mod refs;
pub mod texture;

pub use obj::Loaded;
pub use refs::{Limits, LoadOptions};

use crate::mesh::Mesh;
use crate::{MeshError, Result};
use std::collections::HashMap;
use std::path::Path;

fn ext(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads a mesh with the default options (references stay inside the mesh's folder; default limits).
pub fn load_mesh(path: &Path) -> Result<Loaded> {
    load_mesh_with(path, &LoadOptions::default())
}

/// Reads a mesh; the format comes from the extension (.obj, .ply, .glb, .gltf). A mesh without a usable
/// face (an empty file, only points or lines, or every triangle of zero area) is refused: nothing
/// downstream can render or texture it, and failing here names the file.
pub fn load_mesh_with(path: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let loaded = match ext(path).as_str() {
        "obj" => obj::read_obj(path, opts),
        "ply" => ply::read_ply(path, opts),
        "glb" | "gltf" => gltf::read_gltf(path, opts),
        e => Err(MeshError::Invalid(format!(
            "load_mesh(): path must end in .obj, .ply, .glb or .gltf, got {:?} (extension {e:?})",
            path.display().to_string()
        ))),
    }?;
    check_usable(&loaded.mesh, path, &opts.limits)?;
    Ok(loaded)
}

fn check_usable(m: &Mesh, path: &Path, limits: &Limits) -> Result<()> {
    let refuse = |msg: String| Err(MeshError::refused(path, 0, msg));
    if m.vertices.len() > limits.max_vertices || m.faces.len() > limits.max_faces {
        let (v, f) = (m.vertices.len(), m.faces.len());
        return Err(MeshError::limit(
            path,
            0,
            format!(
                "{v} vertices / {f} faces exceed the limits of {} / {}",
                limits.max_vertices, limits.max_faces
            ),
        ));
    }
    if m.faces.is_empty() {
        let what = if m.vertices.is_empty() {
            "no vertices and no faces"
        } else {
            "vertices but no faces"
        };
        return refuse(format!(
            "no usable faces: the file has {what} (a mesh needs at least one triangle)"
        ));
    }
    // In blocks, so a typical mesh stops after its first few faces.
    let any_usable = m
        .faces
        .chunks(1 << 12)
        .any(|c| crate::ops::nondegenerate(&m.vertices, c, 0.0).contains(&true));
    if !any_usable {
        return refuse(format!(
            "no usable faces: all {} faces are degenerate (zero area: repeated or collinear vertices)",
            m.faces.len()
        ));
    }
    Ok(())
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
        None => (
            (0..mesh.vertices.len() as u32).map(|i| (i, 0)).collect(),
            mesh.faces.clone(),
        ),
        Some(uf)
            if uf == &mesh.faces
                && mesh.uvs.as_ref().map(Vec::len) == Some(mesh.vertices.len()) =>
        {
            (
                (0..mesh.vertices.len() as u32).map(|i| (i, i)).collect(),
                mesh.faces.clone(),
            )
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{Material, Texture};
    use proptest::prelude::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rust_mesh_test_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    /// Per-corner (position, uv) tuples: comparable across formats that re-index vertices.
    fn corners(m: &Mesh) -> Vec<([f32; 3], Option<[f32; 2]>)> {
        let mut out = Vec::new();
        for (i, f) in m.faces.iter().enumerate() {
            for k in 0..3 {
                let uv = m
                    .uvs
                    .as_ref()
                    .map(|u| u[m.uv_faces.as_ref().unwrap()[i][k] as usize]);
                out.push((m.vertices[f[k] as usize], uv));
            }
        }
        out
    }

    fn arb_mesh() -> impl Strategy<Value = Mesh> {
        (
            1usize..12,
            1usize..20,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(|(nv, nf, with_uv, with_col, with_mat, seed)| {
                let mut s = seed | 1;
                let mut rnd = move || {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s
                };
                let f32r =
                    |x: u64, scale: f32| ((x % 2_000_001) as f32 / 1_000_000.0 - 1.0) * scale;
                let vertices: Vec<[f32; 3]> = (0..nv)
                    .map(|_| [f32r(rnd(), 100.0), f32r(rnd(), 1e-3), f32r(rnd(), 1.0)])
                    .collect();
                let faces: Vec<[u32; 3]> = (0..nf)
                    .map(|_| [0, 1, 2].map(|_| (rnd() % nv as u64) as u32))
                    .collect();
                let mut m = Mesh {
                    vertices,
                    faces,
                    ..Default::default()
                };
                if with_uv {
                    let nt = 3 * nf;
                    m.uvs = Some(
                        (0..nt)
                            .map(|_| [f32r(rnd(), 1.0).abs(), f32r(rnd(), 1.0).abs()])
                            .collect(),
                    );
                    m.uv_faces = Some(
                        (0..nf as u32)
                            .map(|i| [3 * i, 3 * i + 1, 3 * i + 2])
                            .collect(),
                    );
                }
                if with_col {
                    // exact in 8 bits so PLY's uchar colours round-trip
                    m.colors = Some(
                        (0..nv)
                            .map(|_| [0, 1, 2].map(|_| (rnd() % 256) as f32 / 255.0))
                            .collect(),
                    );
                }
                if with_mat {
                    let data: Vec<f32> = (0..2 * 3 * 3)
                        .map(|_| (rnd() % 256) as f32 / 255.0)
                        .collect();
                    m.material = Some(Material {
                        base_color_texture: Some(Texture::new(3, 2, 3, data).unwrap()),
                        ..Default::default()
                    });
                }
                m
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn round_trip_every_format(m in arb_mesh()) {
            for ext in ["obj", "ply", "glb"] {
                let p = tmp(&format!("rt.{ext}"));
                save_mesh(&m, &p).unwrap();
                let r = load_mesh(&p);
                if !crate::ops::nondegenerate(&m.vertices, &m.faces, 0.0).contains(&true) {
                    let e = r.err().map(|e| e.to_string()).unwrap_or_default();
                    prop_assert!(e.contains("rt.") && e.contains(": no usable faces: all"), "{}", e);
                    continue;
                }
                let r = r.unwrap().mesh;
                prop_assert_eq!(corners(&r), corners(&m), "{}", ext);
                if let Some(c) = &m.colors {
                    for (f, g) in r.faces.iter().zip(&m.faces) {
                        for k in 0..3 {
                            let (a, b) = (r.colors.as_ref().unwrap()[f[k] as usize], c[g[k] as usize]);
                            for j in 0..3 {
                                prop_assert!((a[j] - b[j]).abs() < 1e-6, "{} {:?} {:?}", ext, a, b);
                            }
                        }
                    }
                }
                let tex = |m: &Mesh| m.material.as_ref().and_then(|x| x.base_color_texture.clone());
                if let (Some(a), Some(b)) = (tex(&r), tex(&m)) {
                    prop_assert_eq!(a.data.len(), b.data.len());
                    prop_assert!(a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() < 1e-6));
                } else {
                    prop_assert_eq!(tex(&r).is_some(), tex(&m).is_some());
                }
            }
        }

        #[test]
        fn truncated_files_are_errors_not_panics(m in arb_mesh(), cut in 0.0f64..1.0) {
            for ext in ["obj", "ply", "glb"] {
                let p = tmp(&format!("tr.{ext}"));
                save_mesh(&m, &p).unwrap();
                let data = std::fs::read(&p).unwrap();
                std::fs::write(&p, &data[..(data.len() as f64 * cut) as usize]).unwrap();
                let _ = load_mesh(&p); // Ok or Err, never a panic
            }
        }
    }

    #[test]
    fn meshes_without_usable_faces_are_refused() {
        let p = tmp("usable.obj");
        for (text, want) in [
            ("", "no usable faces: the file has no vertices and no faces (a mesh needs at least one triangle)"),
            ("v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2\n", "no usable faces: the file has vertices but no faces"),
            ("v 0 0 0\nv 1 1 1\nv 2 2 2\nf 1 2 3\nf 1 1 2\n", "no usable faces: all 2 faces are degenerate"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load_mesh(&p).err().unwrap().to_string();
            assert!(e.starts_with(&format!("{}: {want}", p.display())), "{e}");
        }
        // one usable face is enough (the degenerate ones are the clean-up's business)
        std::fs::write(&p, "v 0 0 0\nv 1 1 1\nv 2 2 2\nv 0 1 0\nf 1 2 3\nf 1 2 4\n").unwrap();
        assert_eq!(load_mesh(&p).unwrap().mesh.faces.len(), 2);
    }

    #[test]
    fn obj_errors_carry_line_numbers() {
        let e = obj::parse_obj(
            b"v 0 0 0\nv 1 0 0\n\nf 1 2 3\n",
            Path::new("x.obj"),
            &LoadOptions::default(),
        )
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "x.obj:4: vertex index 3 out of range (1..=2 or -1..=-2)"
        );
    }
}
