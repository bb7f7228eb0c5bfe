//! Thin PyO3 glue: converts arguments, releases the GIL around work, maps `MeshError` to Python
//! exceptions. No algorithms live here. Nothing here may panic across the FFI boundary: every fallible
//! call returns `PyResult`.
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use rust_mesh::MeshError;

mod mesh;
mod sdf;
mod tet;
mod uv;

/// Maps the core error enum onto builtin Python exceptions (I/O → OSError, everything else → ValueError).
pub(crate) fn to_py_err(e: MeshError) -> PyErr {
    match e {
        MeshError::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Version of the compiled mesh core.
#[pyfunction]
fn version() -> &'static str {
    rust_mesh::version()
}

#[pymodule]
fn _rust_mesh(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    mesh::register(m)?;
    sdf::register(m)?;
    tet::register(m)?;
    uv::register(m)?;
    Ok(())
}
