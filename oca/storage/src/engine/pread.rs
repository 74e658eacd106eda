//! The portable engine: `pread(2)` on tokio's blocking thread pool.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::{EngineKind, EngineOptions, IoEngine, IoFuture};
use crate::error::StorageError;
use crate::pool::{BufferPool, PoolBuf, PoolStats};

/// How many times an `EAGAIN` from a regular file is retried before giving up.
const MAX_WOULD_BLOCK_RETRIES: u32 = 1000;

/// Reads with `FileExt::read_at` inside `tokio::task::spawn_blocking`.
///
/// Dropping a read's future leaves the blocking task running; it owns the buffer and the
/// file and returns the buffer to the pool when it finishes.
#[derive(Debug)]
pub struct PreadEngine {
    pool: BufferPool,
    cached: super::cached::CachedReader,
}

impl PreadEngine {
    /// A pread engine with `opts.buffer_size` buffers (ring options are ignored).
    pub fn new(opts: &EngineOptions) -> Result<PreadEngine, StorageError> {
        opts.validate()?;
        Ok(PreadEngine {
            pool: BufferPool::new(opts.buffer_size, opts.pooled_buffers),
            cached: super::cached::CachedReader::new(opts.page_cache_fast_path),
        })
    }

    /// The engine's buffer pool.
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }
}

/// Runs `f` on tokio's blocking pool, or fails if there is no runtime (instead of panicking).
async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("pread engine needs a tokio runtime: {e}")))?;
    match handle.spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(io::Error::other(format!("pread task failed: {join}"))),
    }
}

/// Fills `buf[..len]` from `file` at `offset`, stopping early only at end of file.
pub(crate) fn pread_full(
    file: &File,
    mut buf: PoolBuf,
    offset: u64,
    len: usize,
) -> io::Result<Bytes> {
    let mut done = 0usize;
    let mut would_block = 0u32;
    while done < len {
        let pos = offset
            .checked_add(done as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset overflows"))?;
        match file.read_at(&mut buf[done..len], pos) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && would_block < MAX_WOULD_BLOCK_RETRIES =>
            {
                would_block += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
    Ok(buf.freeze(done))
}

/// `O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC`, mode 0644.
pub(crate) fn create_file(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

impl IoEngine for PreadEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Pread
    }

    fn open(&self, path: PathBuf) -> IoFuture<Arc<File>> {
        Box::pin(blocking(move || File::open(path).map(Arc::new)))
    }

    fn read_at(&self, file: Arc<File>, offset: u64, len: usize) -> IoFuture<Bytes> {
        if len == 0 {
            return Box::pin(async { Ok(Bytes::new()) });
        }
        if len > self.pool.buffer_size() {
            let size = self.pool.buffer_size();
            return Box::pin(async move {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("read of {len} bytes exceeds the buffer size {size}"),
                ))
            });
        }
        if let Some(r) = self.cached.try_read(&self.pool, &file, offset, len) {
            return Box::pin(std::future::ready(r));
        }
        let pool = self.pool.clone();
        Box::pin(blocking(move || pread_full(&file, pool.get(), offset, len)))
    }

    fn create(&self, path: PathBuf) -> IoFuture<Arc<File>> {
        Box::pin(blocking(move || create_file(&path).map(Arc::new)))
    }

    fn write_at(&self, file: Arc<File>, offset: u64, data: Bytes) -> IoFuture<()> {
        Box::pin(blocking(move || file.write_all_at(&data, offset)))
    }

    fn fsync(&self, file: Arc<File>) -> IoFuture<()> {
        Box::pin(blocking(move || file.sync_all()))
    }

    fn buffer_size(&self) -> usize {
        self.pool.buffer_size()
    }

    fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    fn page_cache_reads(&self) -> u64 {
        self.cached.hits()
    }
}
