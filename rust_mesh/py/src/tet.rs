//! PyO3 glue for tetrahedral grids and marching tetrahedra (`pgc_fast.geometry` wraps these).
use crate::mesh::{check_shape, out, slice, ArrayPair};
use crate::to_py_err;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// Kuhn grid with `cells` cubes per axis over [−0.5, 0.5]³ → (vertices float32 [N,3], tets int64 [T,4]).
#[pyfunction]
fn kuhn_grid(py: Python<'_>, cells: usize) -> ArrayPair<'_, f32, i64> {
    let (v, t) = py
        .detach(|| rust_mesh::tet::kuhn_grid(cells))
        .map_err(to_py_err)?;
    let (nv, nt) = (v.len() / 3, t.len() / 4);
    Ok((out(py, v, &[nv, 3])?, out(py, t, &[nt, 4])?))
}

/// Unique sorted edges int64 [E,2] and tet→edge ids int64 [T,6].
#[pyfunction]
fn tet_edges<'py>(
    py: Python<'py>,
    tets: PyReadonlyArrayDyn<'py, i64>,
    num_vertices: usize,
) -> ArrayPair<'py, i64, i64> {
    check_shape(tets.shape(), &[None, Some(4)], "tet_edges", "tets")?;
    let t = slice(&tets, "tet_edges", "tets")?;
    let (e, t2e) = py
        .detach(|| rust_mesh::tet::tet_edges(t, num_vertices))
        .map_err(to_py_err)?;
    let (ne, nt) = (e.len() / 2, t2e.len() / 6);
    Ok((out(py, e, &[ne, 2])?, out(py, t2e, &[nt, 6])?))
}

/// (vertices float32 [K,3], faces int64 [F,3], edges int64 [K,2], tet_idx int64 [F]).
type MarchingTetsOut<'py> = (
    Bound<'py, PyArrayDyn<f32>>,
    Bound<'py, PyArrayDyn<i64>>,
    Bound<'py, PyArrayDyn<i64>>,
    Bound<'py, PyArrayDyn<i64>>,
);

/// Marching tets → (vertices float32 [K,3], faces int64 [F,3], edges int64 [K,2], tet_idx int64 [F]).
#[pyfunction]
fn marching_tets<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArrayDyn<'py, f32>,
    sdf: PyReadonlyArrayDyn<'py, f32>,
    tets: PyReadonlyArrayDyn<'py, i64>,
) -> PyResult<MarchingTetsOut<'py>> {
    let op = "marching_tets";
    check_shape(vertices.shape(), &[None, Some(3)], op, "vertices")?;
    check_shape(sdf.shape(), &[None], op, "sdf")?;
    check_shape(tets.shape(), &[None, Some(4)], op, "tets")?;
    let (v, s, t) = (
        slice(&vertices, op, "vertices")?,
        slice(&sdf, op, "sdf")?,
        slice(&tets, op, "tets")?,
    );
    let r = py
        .detach(|| rust_mesh::tet::marching_tets(v, s, t))
        .map_err(to_py_err)?;
    let (k, f) = (r.vertices.len() / 3, r.faces.len() / 3);
    Ok((
        out(py, r.vertices, &[k, 3])?,
        out(py, r.faces, &[f, 3])?,
        out(py, r.edges, &[k, 2])?,
        out(py, r.tet_idx, &[f])?,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kuhn_grid, m)?)?;
    m.add_function(wrap_pyfunction!(tet_edges, m)?)?;
    m.add_function(wrap_pyfunction!(marching_tets, m)?)?;
    Ok(())
}
