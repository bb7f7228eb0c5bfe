//! PyO3 glue for signed distance and winding numbers (`pgc_fast.geometry` wraps these). Points may be
//! float32 or float64; results come back in the points' dtype.
use crate::mesh::{check_shape, out, slice};
use crate::to_py_err;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use rust_mesh::sdf::{MeshSdf, Real, SdfOptions};

type Sdf<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyArrayDyn<i64>>,
    Option<Bound<'py, PyAny>>,
);

fn mesh(
    op: &str,
    vertices: &PyReadonlyArrayDyn<'_, f64>,
    faces: &PyReadonlyArrayDyn<'_, i64>,
) -> PyResult<(Vec<f64>, Vec<i64>)> {
    check_shape(vertices.shape(), &[None, Some(3)], op, "vertices")?;
    check_shape(faces.shape(), &[None, Some(3)], op, "faces")?;
    Ok((
        slice(vertices, op, "vertices")?.to_vec(),
        slice(faces, op, "faces")?.to_vec(),
    ))
}

fn query<'py, T: Real + numpy::Element>(
    py: Python<'py>,
    (v, f): (Vec<f64>, Vec<i64>),
    points: &Bound<'py, PyAny>,
    opts: SdfOptions,
) -> PyResult<Sdf<'py>> {
    let op = "signed_distance";
    let a: PyReadonlyArrayDyn<'py, T> = points.extract()?;
    check_shape(a.shape(), &[None, Some(3)], op, "points")?;
    let p = slice(&a, op, "points")?;
    let n = a.shape()[0];
    let r = py
        .detach(|| MeshSdf::new(op, &v, &f)?.signed_distance::<T, T>(op, p, &opts))
        .map_err(to_py_err)?;
    let closest = if opts.closest {
        Some(out(py, r.closest, &[n, 3])?.into_any())
    } else {
        None
    };
    Ok((
        out(py, r.distance, &[n])?.into_any(),
        out(py, r.face, &[n])?,
        closest,
    ))
}

fn is_f32(points: &Bound<'_, PyAny>, op: &str) -> PyResult<bool> {
    if points.extract::<PyReadonlyArrayDyn<f32>>().is_ok() {
        return Ok(true);
    }
    if points.extract::<PyReadonlyArrayDyn<f64>>().is_ok() {
        return Ok(false);
    }
    Err(PyTypeError::new_err(format!(
        "{op}(): points must be a float32 or float64 numpy array"
    )))
}

/// Signed distance → (distance [N], face int64 [N], closest [N,3] or None), floats in the points' dtype.
#[pyfunction]
fn signed_distance<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArrayDyn<'py, f64>,
    faces: PyReadonlyArrayDyn<'py, i64>,
    points: &Bound<'py, PyAny>,
    beta: f64,
    signed: bool,
    closest: bool,
) -> PyResult<Sdf<'py>> {
    let op = "signed_distance";
    let m = mesh(op, &vertices, &faces)?;
    let opts = SdfOptions {
        beta,
        signed,
        closest,
    };
    if is_f32(points, op)? {
        query::<f32>(py, m, points, opts)
    } else {
        query::<f64>(py, m, points, opts)
    }
}

fn winding<'py, T: Real + numpy::Element>(
    py: Python<'py>,
    (v, f): (Vec<f64>, Vec<i64>),
    points: &Bound<'py, PyAny>,
    beta: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let op = "winding_number";
    let a: PyReadonlyArrayDyn<'py, T> = points.extract()?;
    check_shape(a.shape(), &[None, Some(3)], op, "points")?;
    let p = slice(&a, op, "points")?;
    let n = a.shape()[0];
    let w = py
        .detach(|| MeshSdf::new(op, &v, &f)?.winding_numbers::<T, T>(op, p, beta))
        .map_err(to_py_err)?;
    Ok(out(py, w, &[n])?.into_any())
}

/// Generalised winding numbers [N] in the points' dtype.
#[pyfunction]
fn winding_number<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArrayDyn<'py, f64>,
    faces: PyReadonlyArrayDyn<'py, i64>,
    points: &Bound<'py, PyAny>,
    beta: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let op = "winding_number";
    let m = mesh(op, &vertices, &faces)?;
    if is_f32(points, op)? {
        winding::<f32>(py, m, points, beta)
    } else {
        winding::<f64>(py, m, points, beta)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(signed_distance, m)?)?;
    m.add_function(wrap_pyfunction!(winding_number, m)?)?;
    Ok(())
}
