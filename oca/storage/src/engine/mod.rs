//! Disk read engines: io_uring on dedicated ring threads, or `pread` on tokio's blocking pool.
//!
//! Both implement [`IoEngine`]: `open` and `read_at` return `'static` futures that never do
//! blocking I/O on the polling thread, and reads land in buffers of a [`BufferPool`] that go
//! back to the pool when the returned `Bytes` is dropped. [`select_engine`] picks one at start.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::StorageError;
use crate::pool::PoolStats;

mod cached;
mod pread;
#[allow(unsafe_code)]
mod uring;

pub use pread::PreadEngine;
pub use uring::UringEngine;

/// The future type of the engines' operations.
pub type IoFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'static>>;

/// Which implementation an engine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// io_uring on dedicated ring threads.
    IoUring,
    /// `pread(2)` on tokio's blocking thread pool.
    Pread,
}

impl EngineKind {
    /// `"io_uring"` or `"pread"` (for logs and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::IoUring => "io_uring",
            EngineKind::Pread => "pread",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine asked for in the configuration (`auto`, `io-uring`, `pread`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnginePref {
    /// io_uring when it works here, else pread (with a warning saying why).
    Auto,
    /// io_uring or an error.
    IoUring,
    /// pread.
    Pread,
}

/// Sizes of an engine's buffers and rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Size of each pooled read buffer, the largest `len` of one `read_at` (default 256 KiB;
    /// 1 B ..= 64 MiB).
    pub buffer_size: usize,
    /// Buffers kept in the free list for reuse (default 256); more are allocated on demand.
    pub pooled_buffers: usize,
    /// Submission-queue entries of each ring (default 256; clamped to 2 ..= 32768). Also caps
    /// the operations in flight per ring; more wait in the ring thread's queue.
    pub ring_entries: u32,
    /// io_uring threads, each with its own ring (default 1; 1 ..= 64); requests are spread
    /// round-robin.
    pub ring_threads: usize,
    /// Try `preadv2(RWF_NOWAIT)` on the caller's thread first and use the engine only for
    /// bytes not in the page cache (default off here; the daemon turns it on from config).
    pub page_cache_fast_path: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            buffer_size: 256 * 1024,
            pooled_buffers: 256,
            ring_entries: 256,
            ring_threads: 1,
            page_cache_fast_path: false,
        }
    }
}

/// Largest accepted `buffer_size`.
pub const MAX_BUFFER_SIZE: usize = 64 * 1024 * 1024;

impl EngineOptions {
    pub(crate) fn validate(&self) -> Result<(), StorageError> {
        if self.buffer_size == 0 || self.buffer_size > MAX_BUFFER_SIZE {
            return Err(StorageError::InvalidOptions(format!(
                "buffer_size must be 1..={MAX_BUFFER_SIZE}, got {}",
                self.buffer_size
            )));
        }
        if self.ring_threads == 0 || self.ring_threads > 64 {
            return Err(StorageError::InvalidOptions(format!(
                "ring_threads must be 1..=64, got {}",
                self.ring_threads
            )));
        }
        Ok(())
    }
}

/// Asynchronous positioned reads of files, on whatever mechanism the engine uses.
pub trait IoEngine: Send + Sync + fmt::Debug + 'static {
    /// Which implementation this is.
    fn kind(&self) -> EngineKind;

    /// Opens `path` read-only off the async runtime (io_uring `OPENAT` on the ring thread,
    /// or a blocking thread for pread). A missing file is `ErrorKind::NotFound`.
    fn open(&self, path: PathBuf) -> IoFuture<Arc<std::fs::File>>;

    /// Reads up to `len` (≤ [`buffer_size`](IoEngine::buffer_size)) bytes at `offset` into a
    /// pooled buffer. The result is short only at end of file (empty at or after it). The
    /// returned `Bytes` gives the buffer back to the pool when its last clone is dropped.
    ///
    /// Dropping the future before it completes is safe: the engine keeps the buffer and the
    /// file until the read is done, then recycles the buffer.
    fn read_at(&self, file: Arc<std::fs::File>, offset: u64, len: usize) -> IoFuture<bytes::Bytes>;

    /// Creates `path` for writing (`O_WRONLY | O_CREAT | O_EXCL`, mode 0644) off the async
    /// runtime. An existing file is `ErrorKind::AlreadyExists`. Used by ingest for temp files.
    fn create(&self, path: PathBuf) -> IoFuture<Arc<std::fs::File>>;

    /// Writes all of `data` at `offset` (short writes are continued; `ENOSPC` and `EIO` come
    /// back as errors). Dropping the future is safe: the engine keeps `data` and the file
    /// until the kernel is done with them.
    fn write_at(&self, file: Arc<std::fs::File>, offset: u64, data: bytes::Bytes) -> IoFuture<()>;

    /// `fsync(2)` of `file` (data and metadata).
    fn fsync(&self, file: Arc<std::fs::File>) -> IoFuture<()>;

    /// Size of the pooled buffers, the largest `len` of one read.
    fn buffer_size(&self) -> usize;

    /// Counters of the engine's buffer pool (for metrics and tests).
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }

    /// Reads answered from the page cache on the caller's thread (the `RWF_NOWAIT` fast
    /// path) rather than by the engine.
    fn page_cache_reads(&self) -> u64 {
        0
    }
}

/// Builds the engine asked for.
///
/// `Auto` tries io_uring (creates the rings and submits a `NOP`, and checks that `READ` and
/// `OPENAT` are supported: the kernel or a seccomp filter may refuse with `EPERM`/`ENOSYS`),
/// logs a warning with the reason when it cannot be used and falls back to pread. `IoUring`
/// returns [`StorageError::Unavailable`] in that case. `Pread` always gives pread.
pub fn select_engine(
    pref: EnginePref,
    opts: &EngineOptions,
) -> Result<Arc<dyn IoEngine>, StorageError> {
    opts.validate()?;
    match pref {
        EnginePref::Pread => Ok(Arc::new(PreadEngine::new(opts)?)),
        EnginePref::IoUring => Ok(Arc::new(UringEngine::new(opts)?)),
        EnginePref::Auto => match UringEngine::new(opts) {
            Ok(engine) => Ok(Arc::new(engine)),
            Err(StorageError::Unavailable(reason)) => {
                tracing::warn!(
                    reason = %reason,
                    "io_uring is not available, falling back to the pread engine"
                );
                Ok(Arc::new(PreadEngine::new(opts)?))
            }
            Err(other) => Err(other),
        },
    }
}

/// Checks whether io_uring can be used here: creates a small ring, submits a `NOP` and waits
/// for it, and checks that `READ` and `OPENAT` are supported. `Err` says why not.
pub fn uring_available() -> Result<(), String> {
    uring::probe()
}
