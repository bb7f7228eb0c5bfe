//! Thin PyO3 glue: converts arguments, releases the GIL around work, maps `MeshError` to Python
//! exceptions. No algorithms live here. Nothing here may panic across the FFI boundary: every fallible
//! call returns `PyResult`.
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use rust_mesh::MeshError;

mod mesh;
mod pbr;
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

/// Runs core work `f` (typically inside `py.detach`), turning a panic into an error message instead of
/// unwinding into PyO3 (which would raise `PanicException`, a `BaseException`). The core is written not to
/// panic and to check sizes before allocating (an allocation failure aborts and cannot be caught); this
/// is defence in depth against a bug or a panicking dependency (an image decoder) on hostile input.
pub(crate) fn catch_panic<T>(
    f: impl FnOnce() -> rust_mesh::Result<T>,
) -> Result<rust_mesh::Result<T>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Maps `catch_panic`'s result: core errors as `to_py_err`, a panic as ValueError naming `op` and `what`.
pub(crate) fn unwrap_caught<T>(
    r: Result<rust_mesh::Result<T>, String>,
    op: &str,
    what: &std::path::Path,
) -> PyResult<T> {
    match r {
        Ok(r) => r.map_err(to_py_err),
        Err(msg) => Err(PyValueError::new_err(format!(
            "{op}(): internal error on {}: {msg} (please report this file)",
            what.display()
        ))),
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
    pbr::register(m)?;
    sdf::register(m)?;
    tet::register(m)?;
    uv::register(m)?;
    Ok(())
}
