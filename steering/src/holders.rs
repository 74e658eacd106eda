//! "Who holds what" (DESIGN §5, ranking step 2): rendition → the set of appliance slots
//! holding it, as one bitset row per rendition (1,000 appliances = 128 bytes), so a decision
//! costs one probe for all of its candidates, local and fallback alike.
//!
//! The index is split into [`SHARDS`] shards by the rendition's hash, each behind an `Arc`:
//! a heartbeat's inventory delta copies only the shards it touches (copy-on-write), and the
//! published snapshot keeps sharing the others. Rows are as wide as the highest slot a shard
//! has seen; a shard widens its rows (one copy) when a higher slot arrives. Keyed by the
//! 64-bit [`crate::rank::rendition_hash`] alone: two renditions with one hash (odds about
//! 2^-64 per pair) would share a row, and a player sent to an appliance without the content
//! falls back to its next URL. Pure data structure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use crate::rank::{IdHasher, mix64};

/// Number of copy-on-write shards.
pub const SHARDS: usize = 1024;

/// One shard: mixed rendition hash → row, and the rows.
#[derive(Debug, Clone, Default)]
struct Shard {
    /// `u64` words per row.
    words: usize,
    /// Mixed rendition hash ([`mix64`] of it, a bijection) → row index.
    rows: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    /// `rows.len()` rows (plus free ones) of `words` words each; bit `s` = slot `s`.
    bits: Vec<u64>,
    /// Rows no rendition uses (all zero).
    free: Vec<u32>,
}

impl Shard {
    fn row(&self, key: u64) -> Option<&[u64]> {
        let r = *self.rows.get(&key)? as usize;
        self.bits.get(r * self.words..(r + 1) * self.words)
    }

    /// Rows `words` wide (copies every row once).
    fn widen(&mut self, words: usize) {
        let n = self.bits.len() / self.words.max(1);
        let mut bits = vec![0u64; n * words];
        if self.words > 0 {
            for (new, old) in bits
                .chunks_exact_mut(words)
                .zip(self.bits.chunks_exact(self.words))
            {
                new[..self.words].copy_from_slice(old);
            }
        }
        self.bits = bits;
        self.words = words;
    }

    fn set(&mut self, key: u64, slot: u32, on: bool) {
        let (w, bit) = ((slot / 64) as usize, 1u64 << (slot % 64));
        if on {
            if w >= self.words {
                self.widen((w + 1).next_power_of_two());
            }
            let r = match self.rows.get(&key) {
                Some(&r) => r,
                None => {
                    let r = match self.free.pop() {
                        Some(r) => r,
                        None => {
                            let r = (self.bits.len() / self.words) as u32;
                            self.bits.resize(self.bits.len() + self.words, 0);
                            r
                        }
                    };
                    self.rows.insert(key, r);
                    r
                }
            };
            self.bits[r as usize * self.words + w] |= bit;
        } else if let Some(&r) = self.rows.get(&key)
            && w < self.words
        {
            let row = &mut self.bits[r as usize * self.words..(r as usize + 1) * self.words];
            row[w] &= !bit;
            if row.iter().all(|&x| x == 0) {
                self.rows.remove(&key);
                self.free.push(r);
            }
        }
    }
}

/// Rendition → bitset of the slots holding it (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct HolderIndex {
    /// [`SHARDS`] shards once anything was set; empty before.
    shards: Vec<Arc<Shard>>,
}

/// The row of a rendition: bit `s` set if slot `s` holds it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row<'a>(&'a [u64]);

impl Row<'_> {
    /// True if slot `slot` holds the rendition.
    #[inline]
    pub fn has(self, slot: u32) -> bool {
        self.0
            .get((slot / 64) as usize)
            .is_some_and(|w| (w >> (slot % 64)) & 1 == 1)
    }

    /// The slots set, in increasing order.
    pub fn slots(self) -> impl Iterator<Item = u32> {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u32)
                .filter(move |b| (w >> b) & 1 == 1)
                .map(move |b| i as u32 * 64 + b)
        })
    }
}

#[inline]
fn locate(hash: u64) -> (usize, u64) {
    let key = mix64(hash);
    // Bits 32..42 pick the shard: independent of the bits the map uses (low bits for the
    // bucket, top seven for the control byte).
    (((key >> 32) as usize) % SHARDS, key)
}

impl HolderIndex {
    /// An empty index.
    pub fn new() -> HolderIndex {
        HolderIndex::default()
    }

    /// The holders of the rendition with [`crate::rank::rendition_hash`] `hash` (an empty
    /// row if none).
    #[inline]
    pub fn row(&self, hash: u64) -> Row<'_> {
        let (s, key) = locate(hash);
        Row(self
            .shards
            .get(s)
            .and_then(|sh| sh.row(key))
            .unwrap_or_default())
    }

    /// Records that `slot` holds (`on`) or no longer holds the rendition `hash`. Copies the
    /// shard first if a snapshot still shares it.
    pub fn set(&mut self, hash: u64, slot: u32, on: bool) {
        if self.shards.is_empty() {
            if !on {
                return;
            }
            self.shards = (0..SHARDS).map(|_| Arc::default()).collect();
        }
        let (s, key) = locate(hash);
        Arc::make_mut(&mut self.shards[s]).set(key, slot, on);
    }

    /// Every rendition hash with its holders, in order (for tests and debugging).
    pub fn to_map(&self) -> BTreeMap<u64, Vec<u32>> {
        let mut m = BTreeMap::new();
        for sh in &self.shards {
            for (&key, _) in sh.rows.iter() {
                let slots: Vec<u32> = sh.row(key).map(|r| Row(r).slots().collect()).unwrap();
                m.insert(unmix64(key), slots);
            }
        }
        m
    }

    /// Number of renditions with at least one holder.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.rows.len()).sum()
    }

    /// True if nobody holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The inverse of [`mix64`].
fn unmix64(mut z: u64) -> u64 {
    z ^= (z >> 31) ^ (z >> 62);
    z = z.wrapping_mul(0x3196_42b2_d24d_8ec3);
    z ^= (z >> 27) ^ (z >> 54);
    z = z.wrapping_mul(0x96de_1b17_3f11_9089);
    z ^= (z >> 30) ^ (z >> 60);
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmix_inverts_mix() {
        for x in [0u64, 1, 42, u64::MAX, 0x9e37_79b9_7f4a_7c15, 1 << 63] {
            assert_eq!(unmix64(mix64(x)), x);
        }
    }

    #[test]
    fn set_clear_widen_and_reuse_rows() {
        let mut ix = HolderIndex::new();
        assert!(!ix.row(7).has(0));
        ix.set(7, 3, false);
        assert!(ix.is_empty());
        ix.set(7, 3, true);
        ix.set(7, 1000, true); // widens the shard's rows
        ix.set(8, 5, true);
        let r = ix.row(7);
        assert!(r.has(3) && r.has(1000) && !r.has(5) && !r.has(999) && !r.has(5000));
        assert_eq!(r.slots().collect::<Vec<_>>(), [3, 1000]);
        assert_eq!(ix.row(8).slots().collect::<Vec<_>>(), [5]);
        // A snapshot taken now does not see later changes.
        let snap = ix.clone();
        ix.set(7, 3, false);
        ix.set(7, 1000, false);
        assert!(!ix.row(7).has(3) && snap.row(7).has(3));
        assert_eq!(ix.to_map(), BTreeMap::from([(8, vec![5])]));
        assert_eq!(snap.len(), 2);
        // Rows freed and allocated again start empty.
        ix.set(7, 4, true);
        assert_eq!(ix.row(7).slots().collect::<Vec<_>>(), [4]);
        ix.set(9, 2, true);
        assert_eq!(ix.row(9).slots().collect::<Vec<_>>(), [2]);
        assert_eq!(ix.len(), 3);
    }
}
