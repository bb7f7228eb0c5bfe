//! Automatic UV unwrapping (xatlas-quality charts, parameterisation and bitmap packing) and UV layout
//! quality metrics.
pub mod metrics;
pub mod unwrap;

pub use metrics::{uv_metrics, UvMetrics};
pub use unwrap::{unwrap, Packing, UnwrapOptions, Unwrapped};
