//! PyO3 glue for mesh I/O, rasterisation and mesh operations (`pgc_fast.mesh` wraps these).
//! Arrays arrive C-contiguous with the documented dtype (the Python wrappers guarantee it) and leave as
//! numpy arrays that own the Rust buffers (no copy). Long work runs with the GIL released.
use crate::{catch_panic, to_py_err, unwrap_caught};
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rust_mesh::io::LoadOptions;
use rust_mesh::mesh::{index_triples, Material, Mesh, Texture};

/// Two numpy arrays returned together.
pub(crate) type ArrayPair<'py, A, B> =
    PyResult<(Bound<'py, PyArrayDyn<A>>, Bound<'py, PyArrayDyn<B>>)>;

pub(crate) fn slice<'a, T: numpy::Element>(
    a: &'a PyReadonlyArrayDyn<'_, T>,
    op: &str,
    arg: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{op}(): {arg} must be C-contiguous")))
}

pub(crate) fn check_shape(
    shape: &[usize],
    want: &[Option<usize>],
    op: &str,
    arg: &str,
) -> PyResult<()> {
    let ok = shape.len() == want.len()
        && shape
            .iter()
            .zip(want)
            .all(|(s, w)| w.is_none_or(|w| *s == w));
    if ok {
        return Ok(());
    }
    let w: Vec<String> = want
        .iter()
        .map(|w| w.map_or("N".into(), |x| x.to_string()))
        .collect();
    Err(PyValueError::new_err(format!(
        "{op}(): {arg} must have shape [{}], got {shape:?}",
        w.join(",")
    )))
}

pub(crate) fn out<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    v.into_pyarray(py).reshape(shape.to_vec())
}

fn vec3(a: &PyReadonlyArrayDyn<'_, f32>, op: &str, arg: &str) -> PyResult<Vec<[f32; 3]>> {
    check_shape(a.shape(), &[None, Some(3)], op, arg)?;
    Ok(slice(a, op, arg)?
        .chunks_exact(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect())
}

fn texture_to_py<'py>(
    py: Python<'py>,
    t: &Option<Texture>,
) -> PyResult<Option<Bound<'py, PyArrayDyn<f32>>>> {
    t.as_ref()
        .map(|t| out(py, t.data.clone(), &[t.height, t.width, t.channels]))
        .transpose()
}

fn texture_from_py(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Texture>> {
    let Some(v) = d.get_item(key)? else {
        return Ok(None);
    };
    if v.is_none() {
        return Ok(None);
    }
    let a: PyReadonlyArrayDyn<f32> = v.extract().map_err(|_| {
        PyValueError::new_err(format!(
            "save_mesh(): material.{key} must be a float32 array [H,W,C]"
        ))
    })?;
    let s = a.shape();
    if s.len() != 3 {
        return Err(PyValueError::new_err(format!(
            "save_mesh(): material.{key} must be [H,W,C], got shape {s:?}"
        )));
    }
    Texture::new(s[1], s[0], s[2], slice(&a, "save_mesh", key)?.to_vec())
        .map_err(to_py_err)
        .map(Some)
}

/// Reads OBJ/PLY/GLB/glTF into a dict of numpy arrays (see `pgc_fast.mesh.load_mesh`).
#[pyfunction]
#[pyo3(signature = (path, allow_external_files=false))]
fn load_mesh<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    allow_external_files: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = LoadOptions {
        allow_external_files,
        ..Default::default()
    };
    let r = py.detach(|| catch_panic(|| rust_mesh::io::load_mesh_with(&path, &opts)));
    let loaded = unwrap_caught(r, "load_mesh", &path)?;
    let m = loaded.mesh;
    let d = PyDict::new(py);
    let flat3 = |v: Vec<[f32; 3]>| v.into_iter().flatten().collect::<Vec<f32>>();
    let idx = |v: Vec<[u32; 3]>| {
        v.into_iter()
            .flatten()
            .map(|x| x as i64)
            .collect::<Vec<i64>>()
    };
    let (nv, nf) = (m.vertices.len(), m.faces.len());
    d.set_item("vertices", out(py, flat3(m.vertices), &[nv, 3])?)?;
    d.set_item("faces", out(py, idx(m.faces), &[nf, 3])?)?;
    match (m.uvs, m.uv_faces) {
        (Some(uv), Some(uf)) => {
            let nt = uv.len();
            d.set_item(
                "uvs",
                out(py, uv.into_iter().flatten().collect::<Vec<f32>>(), &[nt, 2])?,
            )?;
            d.set_item("uv_faces", out(py, idx(uf), &[nf, 3])?)?;
        }
        _ => {
            d.set_item("uvs", py.None())?;
            d.set_item("uv_faces", py.None())?;
        }
    }
    match m.normals {
        Some(n) => d.set_item("normals", out(py, flat3(n), &[nv, 3])?)?,
        None => d.set_item("normals", py.None())?,
    }
    match m.colors {
        Some(c) => d.set_item("colors", out(py, flat3(c), &[nv, 3])?)?,
        None => d.set_item("colors", py.None())?,
    }
    match m.material {
        Some(mat) => {
            let md = PyDict::new(py);
            md.set_item("name", &mat.name)?;
            md.set_item("base_color_factor", mat.base_color_factor.to_vec())?;
            md.set_item("metallic_factor", mat.metallic_factor)?;
            md.set_item("roughness_factor", mat.roughness_factor)?;
            md.set_item(
                "base_color_texture",
                texture_to_py(py, &mat.base_color_texture)?,
            )?;
            md.set_item(
                "metallic_roughness_texture",
                texture_to_py(py, &mat.metallic_roughness_texture)?,
            )?;
            md.set_item("normal_texture", texture_to_py(py, &mat.normal_texture)?)?;
            md.set_item(
                "occlusion_texture",
                texture_to_py(py, &mat.occlusion_texture)?,
            )?;
            d.set_item("material", md)?;
        }
        None => d.set_item("material", py.None())?,
    }
    d.set_item("warnings", PyList::new(py, loaded.warnings)?)?;
    Ok(d)
}

/// Writes a mesh; format from the extension (see `pgc_fast.mesh.save_mesh`).
#[pyfunction]
#[pyo3(signature = (path, vertices, faces, uvs=None, uv_faces=None, normals=None, colors=None, material=None))]
#[allow(clippy::too_many_arguments)]
fn save_mesh(
    py: Python<'_>,
    path: std::path::PathBuf,
    vertices: PyReadonlyArrayDyn<'_, f32>,
    faces: PyReadonlyArrayDyn<'_, i64>,
    uvs: Option<PyReadonlyArrayDyn<'_, f32>>,
    uv_faces: Option<PyReadonlyArrayDyn<'_, i64>>,
    normals: Option<PyReadonlyArrayDyn<'_, f32>>,
    colors: Option<PyReadonlyArrayDyn<'_, f32>>,
    material: Option<Bound<'_, PyDict>>,
) -> PyResult<()> {
    let op = "save_mesh";
    let verts = vec3(&vertices, op, "vertices")?;
    check_shape(faces.shape(), &[None, Some(3)], op, "faces")?;
    let f =
        index_triples(slice(&faces, op, "faces")?, verts.len(), op, "faces").map_err(to_py_err)?;
    let mut mesh = Mesh {
        vertices: verts,
        faces: f,
        ..Default::default()
    };
    match (&uvs, &uv_faces) {
        (Some(uv), Some(uf)) => {
            check_shape(uv.shape(), &[None, Some(2)], op, "uvs")?;
            check_shape(
                uf.shape(),
                &[Some(mesh.faces.len()), Some(3)],
                op,
                "uv_faces",
            )?;
            let uvv: Vec<[f32; 2]> = slice(uv, op, "uvs")?
                .chunks_exact(2)
                .map(|c| [c[0], c[1]])
                .collect();
            mesh.uv_faces = Some(
                index_triples(slice(uf, op, "uv_faces")?, uvv.len(), op, "uv_faces")
                    .map_err(to_py_err)?,
            );
            mesh.uvs = Some(uvv);
        }
        (None, None) => {}
        _ => {
            return Err(PyValueError::new_err(
                "save_mesh(): uvs and uv_faces must be given together",
            ))
        }
    }
    if let Some(n) = &normals {
        mesh.normals = Some(vec3(n, op, "normals")?);
    }
    if let Some(c) = &colors {
        mesh.colors = Some(vec3(c, op, "colors")?);
    }
    if let Some(md) = material {
        let mut mat = Material::default();
        if let Some(n) = md.get_item("name")? {
            if !n.is_none() {
                mat.name = n.extract()?;
            }
        }
        if let Some(f) = md.get_item("base_color_factor")? {
            let v: Vec<f32> = f.extract()?;
            if v.len() != 4 && v.len() != 3 {
                return Err(PyValueError::new_err(
                    "save_mesh(): material.base_color_factor must have 3 or 4 values",
                ));
            }
            for (k, x) in v.iter().enumerate() {
                mat.base_color_factor[k] = *x;
            }
        }
        if let Some(x) = md.get_item("metallic_factor")? {
            mat.metallic_factor = x.extract()?;
        }
        if let Some(x) = md.get_item("roughness_factor")? {
            mat.roughness_factor = x.extract()?;
        }
        mat.base_color_texture = texture_from_py(&md, "base_color_texture")?;
        mat.metallic_roughness_texture = texture_from_py(&md, "metallic_roughness_texture")?;
        mat.normal_texture = texture_from_py(&md, "normal_texture")?;
        mat.occlusion_texture = texture_from_py(&md, "occlusion_texture")?;
        mesh.material = Some(mat);
    }
    let r = py.detach(|| catch_panic(|| rust_mesh::io::save_mesh(&mesh, &path)));
    unwrap_caught(r, "save_mesh", &path)
}

/// nvdiffrast-convention rasteriser: clip_pos float32 [B,V,4], faces int64 [F,3] → float32 [B,H,W,4].
#[pyfunction]
fn rasterize<'py>(
    py: Python<'py>,
    clip_pos: PyReadonlyArrayDyn<'py, f32>,
    faces: PyReadonlyArrayDyn<'py, i64>,
    height: usize,
    width: usize,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let op = "rasterize";
    check_shape(clip_pos.shape(), &[None, None, Some(4)], op, "clip_pos")?;
    check_shape(faces.shape(), &[None, Some(3)], op, "faces")?;
    let (b, nv) = (clip_pos.shape()[0], clip_pos.shape()[1]);
    let f = index_triples(slice(&faces, op, "faces")?, nv, op, "faces").map_err(to_py_err)?;
    let clip = slice(&clip_pos, op, "clip_pos")?;
    if height.saturating_mul(width).saturating_mul(b) > (1usize << 31) {
        return Err(PyValueError::new_err(format!(
            "rasterize(): output too large: {b}x{height}x{width}"
        )));
    }
    let r = py.detach(|| rust_mesh::raster::rasterize(clip, b, nv, &f, height, width));
    out(py, r, &[b, height, width, 4])
}

/// UV-space rasteriser: uvs float32 [T,2], uv_faces int64 [F,3] → (face_id int64 [H,W], bary float32 [H,W,3]).
#[pyfunction]
fn rasterize_uv<'py>(
    py: Python<'py>,
    uvs: PyReadonlyArrayDyn<'py, f32>,
    uv_faces: PyReadonlyArrayDyn<'py, i64>,
    height: usize,
    width: usize,
) -> ArrayPair<'py, i64, f32> {
    let op = "rasterize_uv";
    check_shape(uvs.shape(), &[None, Some(2)], op, "uvs")?;
    check_shape(uv_faces.shape(), &[None, Some(3)], op, "uv_faces")?;
    let uv: Vec<[f32; 2]> = slice(&uvs, op, "uvs")?
        .chunks_exact(2)
        .map(|c| [c[0], c[1]])
        .collect();
    let f = index_triples(slice(&uv_faces, op, "uv_faces")?, uv.len(), op, "uv_faces")
        .map_err(to_py_err)?;
    if height.saturating_mul(width) > (1usize << 30) {
        return Err(PyValueError::new_err(format!(
            "rasterize_uv(): output too large: {height}x{width}"
        )));
    }
    let (ids, bary) = py.detach(|| rust_mesh::raster::rasterize_uv(&uv, &f, height, width));
    Ok((
        out(py, ids, &[height, width])?,
        out(py, bary, &[height, width, 3])?,
    ))
}

/// Seam padding: texture float32 [H,W,C], mask bool [H,W] → (texture, mask) grown by `pixels` rings.
#[pyfunction]
fn dilate<'py>(
    py: Python<'py>,
    texture: PyReadonlyArrayDyn<'py, f32>,
    mask: PyReadonlyArrayDyn<'py, bool>,
    pixels: usize,
) -> ArrayPair<'py, f32, bool> {
    let op = "dilate";
    let s = texture.shape().to_vec();
    if s.len() != 3 {
        return Err(PyValueError::new_err(format!(
            "dilate(): texture must be [H,W,C], got shape {s:?}"
        )));
    }
    check_shape(mask.shape(), &[Some(s[0]), Some(s[1])], op, "mask")?;
    let mut t = slice(&texture, op, "texture")?.to_vec();
    let mut m = slice(&mask, op, "mask")?.to_vec();
    py.detach(|| rust_mesh::raster::dilate(&mut t, &mut m, s[0], s[1], s[2], pixels));
    Ok((out(py, t, &s)?, out(py, m, &[s[0], s[1]])?))
}

fn faces_arg(f: &PyReadonlyArrayDyn<'_, i64>, nv: usize, op: &str) -> PyResult<Vec<[u32; 3]>> {
    check_shape(f.shape(), &[None, Some(3)], op, "faces")?;
    index_triples(slice(f, op, "faces")?, nv, op, "faces").map_err(to_py_err)
}

/// Welds vertices within `eps`: vertices float32 [V,3] → (remap int64 [V] old → new, new count).
#[pyfunction]
fn weld_map<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArrayDyn<'py, f32>,
    eps: f32,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, usize)> {
    let v = vec3(&vertices, "weld", "vertices")?;
    let (m, n) = py.detach(|| rust_mesh::ops::weld(&v, eps));
    Ok((
        out(py, m.into_iter().map(|x| x as i64).collect(), &[v.len()])?,
        n,
    ))
}

/// Non-degenerate face mask: bool [F].
#[pyfunction]
fn nondegenerate_mask<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArrayDyn<'py, f32>,
    faces: PyReadonlyArrayDyn<'py, i64>,
    area_eps: f64,
) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
    let v = vec3(&vertices, "remove_degenerate", "vertices")?;
    let f = faces_arg(&faces, v.len(), "remove_degenerate")?;
    let m = py.detach(|| rust_mesh::ops::nondegenerate(&v, &f, area_eps));
    out(py, m, &[f.len()])
}

/// Referenced-vertex compaction map: int64 [V] (−1 = unreferenced) and the kept count.
#[pyfunction]
fn compact_map<'py>(
    py: Python<'py>,
    num_vertices: usize,
    faces: PyReadonlyArrayDyn<'py, i64>,
) -> PyResult<(Bound<'py, PyArrayDyn<i64>>, usize)> {
    let f = faces_arg(&faces, num_vertices, "remove_unreferenced")?;
    let (m, n) = py.detach(|| rust_mesh::ops::compact(num_vertices, &f));
    Ok((out(py, m, &[num_vertices])?, n))
}

/// Face labels int64 [F] (0 = largest component) and component sizes int64 [C].
#[pyfunction]
fn connected_components<'py>(
    py: Python<'py>,
    num_vertices: usize,
    faces: PyReadonlyArrayDyn<'py, i64>,
) -> ArrayPair<'py, i64, i64> {
    let f = faces_arg(&faces, num_vertices, "connected_components")?;
    let (l, s) = py.detach(|| rust_mesh::ops::connected_components(num_vertices, &f));
    let nc = s.len();
    Ok((out(py, l, &[f.len()])?, out(py, s, &[nc])?))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(weld_map, m)?)?;
    m.add_function(wrap_pyfunction!(nondegenerate_mask, m)?)?;
    m.add_function(wrap_pyfunction!(compact_map, m)?)?;
    m.add_function(wrap_pyfunction!(connected_components, m)?)?;
    m.add_function(wrap_pyfunction!(load_mesh, m)?)?;
    m.add_function(wrap_pyfunction!(save_mesh, m)?)?;
    m.add_function(wrap_pyfunction!(rasterize, m)?)?;
    m.add_function(wrap_pyfunction!(rasterize_uv, m)?)?;
    m.add_function(wrap_pyfunction!(dilate, m)?)?;
    Ok(())
}
