//! The crate's one error type. The PyO3 glue maps `Io` to `OSError` and everything else to `ValueError`.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MeshError {
    /// Reading or writing a file failed (maps to `OSError`).
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file could be read but its contents are malformed; `line` is 1-based when known.
    #[error("{path}:{line}: {msg}")]
    Parse { path: String, line: usize, msg: String },
    /// An argument is invalid (`op(): arg must be …, got …`).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, MeshError>;
