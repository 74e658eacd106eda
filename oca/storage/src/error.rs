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
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}
