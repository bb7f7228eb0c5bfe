//! PyO3 glue for what PBR materials need from the core: tangent frames (`rust_mesh::tangent`) and HDR
//! environment images (`rust_mesh::io::hdr`). Wrapped by `pgc_fast.mesh.ops.vertex_tangents` and
//! `pgc_fast.mesh.io.read_hdr` / `write_hdr`.
use crate::mesh::{check_shape, out, slice};
use crate::{catch_panic, to_py_err, unwrap_caught};
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rust_mesh::mesh::{index_triples, Mesh, Texture};

type TangentOut<'py> = PyResult<(
    Bound<'py, PyArrayDyn<i64>>,
    Bound<'py, PyArrayDyn<i64>>,
    Bound<'py, PyArrayDyn<f32>>,
    usize,
    f64,
)>;

fn rows<const N: usize>(
    a: &PyReadonlyArrayDyn<'_, f32>,
    op: &str,
    arg: &str,
) -> PyResult<Vec<[f32; N]>> {
    check_shape(a.shape(), &[None, Some(N)], op, arg)?;
    Ok(slice(a, op, arg)?
        .chunks_exact(N)
        .map(|c| std::array::from_fn(|k| c[k]))
        .collect())
}

/// Tangents of the (position, uv) split vertices: → (vmap int64 [K,2], split faces int64 [F,3],
/// tangents float32 [K,4], degenerate-UV face count, their area fraction).
#[pyfunction]
fn vertex_tangents<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArrayDyn<'py, f32>,
    faces: PyReadonlyArrayDyn<'py, i64>,
    uvs: PyReadonlyArrayDyn<'py, f32>,
    uv_faces: PyReadonlyArrayDyn<'py, i64>,
    normals: PyReadonlyArrayDyn<'py, f32>,
) -> TangentOut<'py> {
    let op = "vertex_tangents";
    let v: Vec<[f32; 3]> = rows(&vertices, op, "vertices")?;
    let n: Vec<[f32; 3]> = rows(&normals, op, "normals")?;
    check_shape(normals.shape(), &[Some(v.len()), Some(3)], op, "normals")?;
    let uv: Vec<[f32; 2]> = rows(&uvs, op, "uvs")?;
    check_shape(faces.shape(), &[None, Some(3)], op, "faces")?;
    check_shape(
        uv_faces.shape(),
        &[Some(faces.shape()[0]), Some(3)],
        op,
        "uv_faces",
    )?;
    let f = index_triples(slice(&faces, op, "faces")?, v.len(), op, "faces").map_err(to_py_err)?;
    let uf = index_triples(slice(&uv_faces, op, "uv_faces")?, uv.len(), op, "uv_faces")
        .map_err(to_py_err)?;
    let mesh = Mesh {
        vertices: v,
        faces: f,
        uvs: Some(uv),
        uv_faces: Some(uf),
        ..Default::default()
    };
    let (vmap, sf, t) = py.detach(|| {
        let (vmap, sf) = rust_mesh::io::split_by_uv(&mesh);
        let uvs = mesh.uvs.as_deref().unwrap_or(&[]);
        let t = rust_mesh::tangent::tangents(&mesh.vertices, &n, uvs, &vmap, &sf);
        (vmap, sf, t)
    });
    let k = vmap.len();
    let vm: Vec<i64> = vmap
        .iter()
        .flat_map(|&(p, u)| [p as i64, u as i64])
        .collect();
    let fl: Vec<i64> = sf.iter().flatten().map(|&x| x as i64).collect();
    let tl: Vec<f32> = t.tangents.into_iter().flatten().collect();
    Ok((
        out(py, vm, &[k, 2])?,
        out(py, fl, &[sf.len(), 3])?,
        out(py, tl, &[k, 4])?,
        t.degenerate_faces,
        t.degenerate_area_fraction,
    ))
}

/// Radiance .hdr / OpenEXR .exr → float32 [H,W,3] linear RGB (row 0 = top).
#[pyfunction]
fn read_hdr<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let r = py.detach(|| {
        catch_panic(|| rust_mesh::io::hdr::read_hdr(&path, rust_mesh::io::hdr::MAX_HDR_PIXELS))
    });
    let t = unwrap_caught(r, "read_hdr", &path)?;
    out(py, t.data, &[t.height, t.width, 3])
}

/// float32 [H,W,3] linear RGB → Radiance .hdr.
#[pyfunction]
fn write_hdr(
    py: Python<'_>,
    path: std::path::PathBuf,
    image: PyReadonlyArrayDyn<'_, f32>,
) -> PyResult<()> {
    let s = image.shape().to_vec();
    check_shape(&s, &[None, None, Some(3)], "write_hdr", "image")?;
    let t = Texture::new(s[1], s[0], 3, slice(&image, "write_hdr", "image")?.to_vec())
        .map_err(to_py_err)?;
    py.detach(|| rust_mesh::io::hdr::write_hdr(&t, &path))
        .map_err(to_py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(vertex_tangents, m)?)?;
    m.add_function(wrap_pyfunction!(read_hdr, m)?)?;
    m.add_function(wrap_pyfunction!(write_hdr, m)?)?;
    Ok(())
}
