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
    Parse {
        path: String,
        line: usize,
        msg: String,
    },
    /// A binary file is malformed at a byte offset (PLY binary body, GLB chunks).
    #[error("{path}: byte {offset}: {msg}")]
    ParseAt {
        path: String,
        offset: usize,
        msg: String,
    },
    /// The loader refuses a file or a reference: outside the mesh's folder, not a regular file, an
    /// unsupported URI, or a mesh with no usable face. `line` is 1-based, 0 when the statement has no line
    /// (binary formats, glTF JSON paths). Maps to `ValueError`.
    #[error("{}", located(path, *line, msg))]
    Refused {
        path: String,
        line: usize,
        msg: String,
    },
    /// A load limit is exceeded (references, bytes read, image pixels, vertices, faces); checked before the
    /// allocation it guards. Unlike other texture problems this fails the load. Maps to `ValueError`.
    #[error("{}", located(path, *line, msg))]
    Limit {
        path: String,
        line: usize,
        msg: String,
    },
    /// An argument is invalid (`op(): arg must be …, got …`).
    #[error("{0}")]
    Invalid(String),
}

fn located(path: &str, line: usize, msg: &str) -> String {
    if line == 0 {
        format!("{path}: {msg}")
    } else {
        format!("{path}:{line}: {msg}")
    }
}

pub type Result<T> = std::result::Result<T, MeshError>;

impl MeshError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        MeshError::Io {
            path: path.display().to_string(),
            source,
        }
    }
    pub(crate) fn parse(path: &std::path::Path, line: usize, msg: impl Into<String>) -> Self {
        MeshError::Parse {
            path: path.display().to_string(),
            line,
            msg: msg.into(),
        }
    }
    pub(crate) fn refused(path: &std::path::Path, line: usize, msg: impl Into<String>) -> Self {
        MeshError::Refused {
            path: path.display().to_string(),
            line,
            msg: msg.into(),
        }
    }
    pub(crate) fn limit(path: &std::path::Path, line: usize, msg: impl Into<String>) -> Self {
        MeshError::Limit {
            path: path.display().to_string(),
            line,
            msg: msg.into(),
        }
    }
    pub(crate) fn parse_at(path: &std::path::Path, offset: usize, msg: impl Into<String>) -> Self {
        MeshError::ParseAt {
            path: path.display().to_string(),
            offset,
            msg: msg.into(),
        }
    }
}
