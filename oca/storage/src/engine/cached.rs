//! The page-cache fast path: `preadv2(RWF_NOWAIT)` on the caller's thread.
//!
//! A read whose bytes are already in the page cache is a memory copy; sending it to the ring
//! thread costs two context switches on a busy core (measured: 25–35% of the CPU of a 16 KiB
//! HTTPS response, `benches/README.md`). `RWF_NOWAIT` makes the kernel return `EAGAIN`
//! instead of starting disk I/O or sleeping on a page lock, so this never blocks a runtime
//! worker and never faults (no memory map): DESIGN §4's rule still holds. Anything not cached
//! goes to the engine as before. Filesystems or kernels without `RWF_NOWAIT` for buffered
//! reads answer `EOPNOTSUPP`; the fast path then turns itself off.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use crate::pool::BufferPool;

/// Page-cache reads on the caller's thread, with hit/miss counters.
#[derive(Debug)]
pub(crate) struct CachedReader {
    enabled: AtomicBool,
    hits: AtomicU64,
}

impl CachedReader {
    pub(crate) fn new(enabled: bool) -> CachedReader {
        CachedReader {
            enabled: AtomicBool::new(enabled),
            hits: AtomicU64::new(0),
        }
    }

    /// Reads served from the page cache so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// `Some` when the read was answered from the page cache (possibly short, when only a
    /// leading part was cached; empty at end of file); `None` when the engine must do it.
    pub(crate) fn try_read(
        &self,
        pool: &BufferPool,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Option<io::Result<Bytes>> {
        if !self.enabled.load(Ordering::Relaxed) || len > pool.buffer_size() {
            return None;
        }
        let offset = i64::try_from(offset).ok()?;
        let mut buf = pool.get();
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: `iov` points into `buf`, a pool buffer of at least `len` bytes
        // (`len <= buffer_size`) that lives until after the call returns; the call is
        // synchronous, so the kernel writes into it only during the call. The descriptor
        // belongs to `file`, which outlives the call.
        #[allow(unsafe_code)]
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
        if n >= 0 {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(Ok(buf.freeze(n as usize)));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => {
                if self.enabled.swap(false, Ordering::Relaxed) {
                    tracing::info!(error = %err, "page-cache fast path (RWF_NOWAIT) unsupported here; every read goes to the engine");
                }
                None
            }
            // EAGAIN: not cached. EINTR, or any real error: let the engine do it and report.
            _ => None,
        }
    }
}
