//! RAM-tier bytes in locked memory (DESIGN §4 "Zero-copy").
//!
//! A [`LockedRegion`] is an anonymous memory map that is `mlock`ed, filled once, made
//! read-only and then shared as [`Bytes`] (`Bytes::from_owner`), so serving it is a
//! reference-count bump and never a page fault or a disk read on a runtime worker. When
//! `mlock` is refused (usually `RLIMIT_MEMLOCK`), the region stays unlocked, a warning is
//! logged once per process, and the caller is told (`locked = false`). The last `Bytes`
//! dropped unlocks and unmaps it.
//!
//! Safe code only: `memmap2` wraps `mmap`, `mlock`, `mprotect` and `munmap`.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use memmap2::{Mmap, MmapMut};

static MLOCK_WARNED: AtomicBool = AtomicBool::new(false);

/// Locked, read-only anonymous memory backing RAM-tier `Bytes`.
pub struct LockedRegion {
    map: Mmap,
    locked: bool,
}

impl LockedRegion {
    /// Copies `data` into a new locked region and returns it as `Bytes`, with whether the
    /// memory could be locked.
    pub fn copy_from(data: &[u8]) -> io::Result<(Bytes, bool)> {
        Self::fill(data.len(), |dst| {
            dst.copy_from_slice(data);
            Ok(())
        })
    }

    /// Maps `len` bytes, locks them, lets `fill` write them, then seals the region read-only.
    /// Several objects can share one region (slice the returned `Bytes`), which saves a
    /// mapping and page rounding per object.
    pub fn fill(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
    ) -> io::Result<(Bytes, bool)> {
        if len == 0 {
            fill(&mut [])?;
            return Ok((Bytes::new(), true));
        }
        let mut map = MmapMut::map_anon(len)?;
        let locked = match map.lock() {
            Ok(()) => true,
            Err(e) => {
                if !MLOCK_WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        bytes = len,
                        "cannot mlock the RAM tier (raise RLIMIT_MEMLOCK, e.g. LimitMEMLOCK= \
                         in the unit); keeping it unlocked, it may be swapped out"
                    );
                }
                false
            }
        };
        fill(&mut map[..])?;
        let map = map.make_read_only()?;
        let region = LockedRegion { map, locked };
        Ok((Bytes::from_owner(region), locked))
    }

    /// Whether the region is locked in memory.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl AsRef<[u8]> for LockedRegion {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for LockedRegion {
    fn drop(&mut self) {
        if self.locked {
            // munmap unlocks too; this only makes the intent explicit.
            let _ = self.map.unlock();
        }
    }
}

impl fmt::Debug for LockedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockedRegion")
            .field("len", &self.map.len())
            .field("locked", &self.locked)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_round_trips() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (bytes, _locked) = LockedRegion::copy_from(&data).unwrap();
        assert_eq!(&bytes[..], &data[..]);
        let slice = bytes.slice(100..200);
        drop(bytes);
        assert_eq!(&slice[..], &data[100..200]);
    }

    #[test]
    fn empty_region() {
        let (bytes, locked) = LockedRegion::copy_from(&[]).unwrap();
        assert!(bytes.is_empty());
        assert!(locked);
    }

    #[test]
    fn small_region_locks_under_default_limit() {
        // 64 KiB is below every default RLIMIT_MEMLOCK (64 KiB or 8 MiB) only when nothing
        // else is locked, so the result is reported, not asserted.
        let (bytes, locked) = LockedRegion::copy_from(&[7u8; 4096]).unwrap();
        assert_eq!(bytes.len(), 4096);
        eprintln!("4 KiB region locked: {locked}");
    }

    #[test]
    fn fill_error_propagates() {
        let err = LockedRegion::fill(10, |_| Err(io::Error::other("boom"))).unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }
}
