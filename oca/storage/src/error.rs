//! Errors of the storage crate.

use std::io;
use std::path::PathBuf;

/// What can go wrong when building an I/O engine or opening a store.
///
/// Per-read failures are plain [`io::Error`]s (they come out of the engines'
/// futures); this type covers setup.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error on a given path (reading the store's tree, a file, the ETag cache…).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// io_uring was asked for explicitly but cannot be used here (old kernel,
    /// `io_uring_disabled` sysctl, a seccomp filter, missing opcodes…). The text says why.
    #[error("io_uring is not available: {0}")]
    Unavailable(String),
    /// The store's root directory is missing or is not a directory.
    #[error("bad storage root: {0}")]
    BadRoot(String),
    /// Engine or store options out of range (e.g. a zero buffer size).
    #[error("invalid storage options: {0}")]
    InvalidOptions(String),
    /// A request the store cannot take as given (bad digest, body length, tier…): HTTP 400.
    #[error("{0}")]
    BadInput(String),
    /// The key holds other content, or another ingest of it is running, or a rendition is
    /// not complete here: HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The bytes did not hash to the SHA-256 announced; nothing was kept: HTTP 422.
    #[error("checksum mismatch for {key}: expected {expected}, got {actual}; nothing was kept")]
    ChecksumMismatch {
        /// The object key.
        key: String,
        /// The announced digest (hex).
        expected: String,
        /// The digest of the bytes received (hex).
        actual: String,
    },
    /// No drive of the tier has room (or the drive filled up); nothing half-written remains:
    /// HTTP 507.
    #[error("no space: {0}")]
    NoSpace(String),
    /// The drive went out of service (I/O errors): HTTP 503.
    #[error("drive failed: {0}")]
    DriveFailed(String),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}
