//! A pool of fixed-size, 4096-aligned read buffers.
//!
//! Engines read into a [`PoolBuf`] and hand it to the caller frozen as a [`Bytes`]
//! ([`PoolBuf::freeze`]); when the last clone of that `Bytes` is dropped the buffer goes
//! back to the pool's free list, which holds at most `max_free` buffers (more are allocated
//! on demand and freed on return). Buffers start at a 4096-byte boundary so that `O_DIRECT`
//! reads can use them later.
//!
//! This module is safe code: alignment is obtained by over-allocating a `Vec<u8>` by one
//! alignment unit and using the aligned window inside it (a heap block never moves, so the
//! window stays aligned for the buffer's life).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// Alignment of every pooled buffer, in bytes.
pub const BUFFER_ALIGN: usize = 4096;

/// Counters of a [`BufferPool`], for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Size of each buffer in bytes.
    pub buffer_size: usize,
    /// Buffers currently waiting in the free list.
    pub free: usize,
    /// Buffers currently lent out (being read into, or held by live `Bytes`).
    pub in_use: usize,
    /// Buffers allocated fresh since the pool was made (the free list was empty).
    pub allocated_total: u64,
    /// Buffers handed out from the free list since the pool was made.
    pub reused_total: u64,
    /// Buffers freed on return because the free list was full.
    pub discarded_total: u64,
}

/// A cheaply clonable handle to a pool of fixed-size aligned buffers.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

struct Inner {
    buffer_size: usize,
    max_free: usize,
    free: Mutex<Vec<AlignedBuf>>,
    in_use: AtomicUsize,
    allocated: AtomicU64,
    reused: AtomicU64,
    discarded: AtomicU64,
}

impl Inner {
    fn free_list(&self) -> MutexGuard<'_, Vec<AlignedBuf>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn put_back(&self, buf: AlignedBuf) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        let mut free = self.free_list();
        if free.len() < self.max_free {
            free.push(buf);
        } else {
            drop(free);
            self.discarded.fetch_add(1, Ordering::Relaxed);
            drop(buf);
        }
    }
}

impl BufferPool {
    /// A pool of `buffer_size`-byte buffers keeping at most `max_free` of them for reuse.
    /// Nothing is allocated up front.
    pub fn new(buffer_size: usize, max_free: usize) -> BufferPool {
        BufferPool {
            inner: Arc::new(Inner {
                buffer_size,
                max_free,
                free: Mutex::new(Vec::with_capacity(max_free.min(1024))),
                in_use: AtomicUsize::new(0),
                allocated: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                discarded: AtomicU64::new(0),
            }),
        }
    }

    /// Size of every buffer of this pool.
    pub fn buffer_size(&self) -> usize {
        self.inner.buffer_size
    }

    /// Takes a buffer from the free list, or allocates one when it is empty.
    /// Its content is unspecified (zeroes or a previous read).
    pub fn get(&self) -> PoolBuf {
        let reused = self.inner.free_list().pop();
        let buf = match reused {
            Some(buf) => {
                self.inner.reused.fetch_add(1, Ordering::Relaxed);
                buf
            }
            None => {
                self.inner.allocated.fetch_add(1, Ordering::Relaxed);
                AlignedBuf::new(self.inner.buffer_size)
            }
        };
        self.inner.in_use.fetch_add(1, Ordering::Relaxed);
        PoolBuf {
            buf: Some(buf),
            pool: Arc::clone(&self.inner),
        }
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        let free = self.inner.free_list().len();
        PoolStats {
            buffer_size: self.inner.buffer_size,
            free,
            in_use: self.inner.in_use.load(Ordering::Relaxed),
            allocated_total: self.inner.allocated.load(Ordering::Relaxed),
            reused_total: self.inner.reused.load(Ordering::Relaxed),
            discarded_total: self.inner.discarded.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("stats", &self.stats())
            .field("max_free", &self.inner.max_free)
            .finish()
    }
}

/// A zero-initialised heap block with a `BUFFER_ALIGN`-aligned window of `len` bytes.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        // `vec![0; n]` is a calloc: large blocks come straight from fresh zeroed pages.
        let storage = vec![0u8; len + BUFFER_ALIGN];
        let misalign = storage.as_ptr().addr() % BUFFER_ALIGN;
        let start = (BUFFER_ALIGN - misalign) % BUFFER_ALIGN;
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// A buffer lent by a [`BufferPool`]; returns to the pool when dropped.
///
/// Its heap block never moves while the `PoolBuf` lives (moving the `PoolBuf` moves only
/// the handle), so a pointer taken from it stays valid until it is dropped.
pub struct PoolBuf {
    buf: Option<AlignedBuf>,
    pool: Arc<Inner>,
}

impl PoolBuf {
    /// Turns the first `len` bytes (clamped to the buffer size) into a `Bytes`; the buffer
    /// goes back to the pool when the last clone of that `Bytes` is dropped.
    pub fn freeze(self, len: usize) -> Bytes {
        let len = len.min(self.len());
        Bytes::from_owner(Frozen { buf: self, len })
    }
}

impl Deref for PoolBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => buf.as_slice(),
            None => &[],
        }
    }
}

impl DerefMut for PoolBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Some(buf) => buf.as_mut_slice(),
            None => &mut [],
        }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.put_back(buf);
        }
    }
}

impl fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuf").field("len", &self.len()).finish()
    }
}

/// Owner behind a frozen buffer's `Bytes`.
struct Frozen {
    buf: PoolBuf,
    len: usize,
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_sized() {
        let pool = BufferPool::new(10_000, 4);
        let bufs: Vec<PoolBuf> = (0..8).map(|_| pool.get()).collect();
        for b in &bufs {
            assert_eq!(b.len(), 10_000);
            assert_eq!(b.as_ptr().addr() % BUFFER_ALIGN, 0);
        }
        assert_eq!(pool.stats().in_use, 8);
        drop(bufs);
        let s = pool.stats();
        assert_eq!(s.in_use, 0);
        assert_eq!(s.free, 4, "free list is bounded");
        assert_eq!(s.discarded_total, 4);
        assert_eq!(s.allocated_total, 8);
    }

    #[test]
    fn frozen_bytes_return_buffer_on_last_drop() {
        let pool = BufferPool::new(4096, 2);
        let mut b = pool.get();
        b[..5].copy_from_slice(b"hello");
        let bytes = b.freeze(5);
        let clone = bytes.slice(1..3);
        assert_eq!(&bytes[..], b"hello");
        drop(bytes);
        assert_eq!(pool.stats().in_use, 1, "a slice still holds the buffer");
        assert_eq!(&clone[..], b"el");
        drop(clone);
        let s = pool.stats();
        assert_eq!((s.in_use, s.free), (0, 1));
        let again = pool.get();
        assert_eq!(&again[..5], b"hello", "the same buffer came back");
        assert_eq!(pool.stats().reused_total, 1);
    }

    #[test]
    fn freeze_clamps_length() {
        let pool = BufferPool::new(16, 1);
        assert_eq!(pool.get().freeze(100).len(), 16);
        let zero = BufferPool::new(0, 0);
        assert!(zero.get().freeze(3).is_empty());
    }
}
