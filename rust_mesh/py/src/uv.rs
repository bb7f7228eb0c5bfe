//! PyO3 glue for `rust_mesh::uv`: automatic UV unwrapping and UV layout metrics. Arrays arrive already
//! validated and C-contiguous from `pgc_fast.uv`; the work runs with the GIL released.
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rust_mesh::uv::{self, Packing, UnwrapOptions};

use crate::to_py_err;

fn rows<const N: usize, T: Copy + numpy::Element>(
    op: &str,
    name: &str,
    a: &PyReadonlyArray2<'_, T>,
) -> PyResult<Vec<[T; N]>> {
    let shape = a.shape();
    if shape[1] != N {
        return Err(PyValueError::new_err(format!(
            "{op}(): {name} must have shape [n, {N}], got {shape:?}"
        )));
    }
    let s = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{op}(): {name} must be C-contiguous")))?;
    Ok(s.chunks_exact(N)
        .map(|c| std::array::from_fn(|k| c[k]))
        .collect())
}

type UnwrapOut<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray2<i64>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyDict>,
);

/// unwrap(vertices f32 [V,3], faces u32 [F,3], resolution, padding, max_chart_angle, max_area_distortion,
/// rotate_charts, packing ("shape"|"fast"), max_chart_size, block_align, coarse_packing)
/// -> (vmapping i64 [V'], faces i64 [F,3], uvs f32 [V',2], info dict).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (vertices, faces, resolution, padding, max_chart_angle, max_area_distortion, rotate_charts, packing, max_chart_size, block_align, coarse_packing))]
fn uv_unwrap<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArray2<'py, f32>,
    faces: PyReadonlyArray2<'py, u32>,
    resolution: u32,
    padding: u32,
    max_chart_angle: f32,
    max_area_distortion: f32,
    rotate_charts: bool,
    packing: &str,
    max_chart_size: u32,
    block_align: bool,
    coarse_packing: bool,
) -> PyResult<UnwrapOut<'py>> {
    let packing = match packing {
        "shape" => Packing::Shape,
        "fast" => Packing::Fast,
        other => {
            return Err(PyValueError::new_err(format!(
                "unwrap(): packing must be 'shape' or 'fast', got {other:?}"
            )))
        }
    };
    let v = rows::<3, f32>("unwrap", "vertices", &vertices)?;
    let f = rows::<3, u32>("unwrap", "faces", &faces)?;
    let opts = UnwrapOptions {
        resolution,
        padding,
        max_chart_angle,
        max_area_distortion,
        rotate_charts,
        packing,
        max_chart_size,
        block_align,
        coarse_packing,
    };
    let out = py
        .detach(move || uv::unwrap(&v, &f, &opts))
        .map_err(to_py_err)?;
    let nf = out.faces.len();
    let nv = out.uvs.len();
    let vmap: Vec<i64> = out.vmapping.iter().map(|&i| i as i64).collect();
    let faces: Vec<i64> = out.faces.as_flattened().iter().map(|&i| i as i64).collect();
    let uvs: Vec<f32> = out.uvs.as_flattened().to_vec();
    let info = PyDict::new(py);
    info.set_item("chart_count", out.chart_count)?;
    info.set_item("width", out.width)?;
    info.set_item("height", out.height)?;
    info.set_item("utilisation", out.utilisation)?;
    Ok((
        vmap.into_pyarray(py),
        faces.into_pyarray(py).reshape([nf, 3])?,
        uvs.into_pyarray(py).reshape([nv, 2])?,
        info,
    ))
}

/// uv_metrics(vertices f32 [V,3], faces u32 [F,3], uvs f32 [U,2], uv_faces u32 [F,3], resolution) -> dict.
#[pyfunction]
fn uv_metrics<'py>(
    py: Python<'py>,
    vertices: PyReadonlyArray2<'py, f32>,
    faces: PyReadonlyArray2<'py, u32>,
    uvs: PyReadonlyArray2<'py, f32>,
    uv_faces: PyReadonlyArray2<'py, u32>,
    resolution: u32,
) -> PyResult<Bound<'py, PyDict>> {
    const OP: &str = "uv_metrics";
    let v = rows::<3, f32>(OP, "vertices", &vertices)?;
    let f = rows::<3, u32>(OP, "faces", &faces)?;
    let t = rows::<2, f32>(OP, "uvs", &uvs)?;
    let g = rows::<3, u32>(OP, "uv_faces", &uv_faces)?;
    let m = py
        .detach(move || uv::uv_metrics(&v, &f, &t, &g, resolution))
        .map_err(to_py_err)?;
    let d = PyDict::new(py);
    d.set_item("overlapping_pairs", m.overlapping_pairs)?;
    d.set_item("flipped", m.flipped)?;
    d.set_item("zero_area", m.zero_area)?;
    d.set_item("utilisation", m.utilisation)?;
    d.set_item("l2_stretch", m.l2_stretch)?;
    d.set_item("linf_stretch", m.linf_stretch)?;
    d.set_item("chart_count", m.chart_count)?;
    d.set_item("seam_edge_count", m.seam_edge_count)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(uv_unwrap, m)?)?;
    m.add_function(wrap_pyfunction!(uv_metrics, m)?)?;
    Ok(())
}
