//! The one error type of the `oca` crate. On the serve path, request errors are not `OcaError`s
//! but [`crate::handler::Reject`] values that decide the status and the metric label.

use std::path::PathBuf;

/// Everything that can stop the appliance from starting, reloading or running.
#[derive(Debug, thiserror::Error)]
pub enum OcaError {
    /// The config file cannot be read, parsed or validated. Exit code 64.
    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },
    /// A TLS certificate or key file is missing or invalid.
    #[error("TLS: {0}")]
    Tls(String),
    /// The signing key file is missing or invalid.
    #[error("signing keys {file}: {message}")]
    Keys { file: PathBuf, message: String },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The storage engine failed to start.
    #[error("storage: {0}")]
    Storage(#[from] oca_storage::StorageError),
    /// Any other I/O failure, with what was being done.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl OcaError {
    /// The process exit code for this error: 64 (EX_USAGE) for bad configuration, inputs
    /// and key/certificate files; 69 (EX_UNAVAILABLE) for things the host refused.
    pub fn exit_code(&self) -> i32 {
        match self {
            OcaError::Config { .. } | OcaError::Tls(_) | OcaError::Keys { .. } => 64,
            OcaError::Bind { .. } | OcaError::Storage(_) | OcaError::Io { .. } => 69,
        }
    }
}
