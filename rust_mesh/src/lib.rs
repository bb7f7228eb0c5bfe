//! `rust_mesh`: the pure-Rust core of pgc-fast's mesh work. No PyO3 types live here, so `cargo test`
//! runs without Python; the thin bindings are in `rust_mesh/py`.
pub mod error;
pub mod io;
pub mod mesh;
pub mod ops;
pub mod raster;
pub mod sdf;
pub mod tangent;
pub mod tet;
pub mod uv;

pub use error::{MeshError, Result};

/// Version of this crate (also reported by `pgc_fast._rust_mesh.version()`).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_semver() {
        let v = super::version();
        assert_eq!(v.split('.').count(), 3, "{v}");
    }
}
