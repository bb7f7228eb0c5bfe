//! Automatic UV unwrapping (xatlas-quality charts, parameterisation and bitmap packing) and UV layout
//! quality metrics.
pub mod metrics;
pub mod unwrap;

pub use metrics::{uv_metrics, UvMetrics};
pub use unwrap::{unwrap, Packing, UnwrapOptions, Unwrapped};

use rayon::prelude::*;

/// For every vertex, the smallest index of a vertex at exactly the same position (±0 treated as equal).
pub(crate) fn weld_map(positions: &[[f32; 3]]) -> Vec<u32> {
    let key = |p: &[f32; 3]| p.map(|x| if x == 0.0 { 0u32 } else { x.to_bits() });
    let mut order: Vec<u32> = (0..positions.len() as u32).collect();
    // Stable sort by position bits: within a group of equal positions, indices stay ascending.
    order.par_sort_by_key(|&i| key(&positions[i as usize]));
    let mut rep: Vec<u32> = (0..positions.len() as u32).collect();
    let mut start = 0;
    for j in 1..=order.len() {
        if j == order.len()
            || key(&positions[order[j] as usize]) != key(&positions[order[start] as usize])
        {
            for &i in &order[start..j] {
                rep[i as usize] = order[start];
            }
            start = j;
        }
    }
    rep
}
