//! oca patch: the sent-packet table of a packet number space.
//!
//! quinn-proto 0.11.19 keeps sent packets in a `BTreeMap<u64, SentPacket>`. Serving video, a
//! connection inserts and removes ~700k packets per GB, and the B-tree's insert, remove and
//! range walks were ~9% of the server's CPU. Packet numbers are handed out in increasing order
//! (a few are skipped on purpose), so a deque indexed by `number - base` does the same job:
//! appending and removing are O(1) and a range is a slice walk. Holes (skipped or already
//! removed numbers) are `None`; holes at the front are dropped as soon as they appear, so the
//! deque spans from the oldest tracked packet to the newest.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use super::spaces::SentPacket;

/// Packets sent and not yet acknowledged or declared lost, by packet number
#[derive(Default)]
pub(super) struct SentPackets {
    /// Packet number of `slots[0]`
    base: u64,
    slots: VecDeque<Option<SentPacket>>,
    /// Number of `Some` slots
    len: usize,
}

impl SentPackets {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Number of tracked packets
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn index(&self, number: u64) -> Option<usize> {
        let i = number.checked_sub(self.base)?;
        (i < self.slots.len() as u64).then_some(i as usize)
    }

    /// The packet numbered `number`, if tracked
    pub(super) fn get(&self, number: u64) -> Option<&SentPacket> {
        self.slots.get(self.index(number)?)?.as_ref()
    }

    /// Track `packet` as `number`, replacing any packet tracked under that number
    ///
    /// Numbers normally grow; an older number is still stored correctly, at the cost of
    /// growing the deque at the front.
    pub(super) fn insert(&mut self, number: u64, packet: SentPacket) {
        if self.len == 0 {
            self.slots.clear();
            self.base = number;
        }
        if number < self.base {
            for _ in number..self.base {
                self.slots.push_front(None);
            }
            self.base = number;
        }
        let i = (number - self.base) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(None);
        }
        if self.slots[i].replace(packet).is_none() {
            self.len += 1;
        }
    }

    /// Stop tracking `number` and return its packet
    pub(super) fn remove(&mut self, number: u64) -> Option<SentPacket> {
        let i = self.index(number)?;
        let packet = self.slots[i].take()?;
        self.len -= 1;
        if self.len == 0 {
            self.slots.clear();
        } else {
            while let Some(None) = self.slots.front() {
                self.slots.pop_front();
                self.base += 1;
            }
            while let Some(None) = self.slots.back() {
                self.slots.pop_back();
            }
        }
        Some(packet)
    }

    /// Tracked packets numbered within `range`, in increasing order
    pub(super) fn range(
        &self,
        range: impl RangeBounds<u64>,
    ) -> impl Iterator<Item = (u64, &SentPacket)> {
        let lo = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&n) => n.saturating_add(1),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => u64::MAX,
        };
        let n = self.slots.len() as u64;
        let start = lo.saturating_sub(self.base).min(n);
        let end = hi.saturating_sub(self.base).min(n).max(start);
        let first = self.base + start;
        self.slots
            .range(start as usize..end as usize)
            .enumerate()
            .filter_map(move |(i, p)| Some((first + i as u64, p.as_ref()?)))
    }

    /// The smallest tracked number greater than `number`
    pub(super) fn first_after(&self, number: u64) -> Option<u64> {
        self.range((Bound::Excluded(number), Bound::Unbounded))
            .next()
            .map(|(n, _)| n)
    }

    /// Tracked packets in increasing order of number
    pub(super) fn values(&self) -> impl Iterator<Item = &SentPacket> {
        self.slots.iter().flatten()
    }

    /// Tracked packets in increasing order of number
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut SentPacket> {
        self.slots.iter_mut().flatten()
    }

    /// All tracked packets, in increasing order of number
    pub(super) fn into_values(self) -> impl Iterator<Item = SentPacket> {
        self.slots.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    //! oca patch: `SentPackets` against the `BTreeMap` it replaces, over random operations.

    use std::collections::BTreeMap;

    use super::*;
    use crate::Instant;

    fn packet(size: u16) -> SentPacket {
        SentPacket {
            path_generation: 0,
            time_sent: Instant::now(),
            size,
            ack_eliciting: true,
            largest_acked: None,
            retransmits: Default::default(),
            stream_frames: Default::default(),
        }
    }

    /// A small xorshift generator, so failures repeat
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn same(ours: &SentPackets, model: &BTreeMap<u64, SentPacket>) {
        assert_eq!(ours.len(), model.len());
        let a: Vec<(u64, u16)> = ours.range(..).map(|(n, p)| (n, p.size)).collect();
        let b: Vec<(u64, u16)> = model.iter().map(|(&n, p)| (n, p.size)).collect();
        assert_eq!(a, b);
        assert_eq!(
            ours.values().map(|p| p.size).collect::<Vec<_>>(),
            model.values().map(|p| p.size).collect::<Vec<_>>()
        );
    }

    #[test]
    fn matches_btreemap() {
        for seed in 1..=20u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut ours = SentPackets::new();
            let mut model = BTreeMap::new();
            let mut next_pn = next(&mut rng) % 1000;
            for step in 0..5_000u32 {
                match next(&mut rng) % 10 {
                    // send, sometimes skipping a number (as the packet number filter does)
                    0..=4 => {
                        next_pn += 1 + u64::from(next(&mut rng) % 8 == 0);
                        let size = (step % 1400) as u16;
                        ours.insert(next_pn, packet(size));
                        model.insert(next_pn, packet(size));
                    }
                    // acknowledge or lose one, usually an old one
                    5..=7 => {
                        let n = next_pn.saturating_sub(next(&mut rng) % 64);
                        let a = ours.remove(n).map(|p| p.size);
                        let b = model.remove(&n).map(|p| p.size);
                        assert_eq!(a, b);
                    }
                    // walk a range, as ACK processing and loss detection do
                    8 => {
                        let hi = next_pn.saturating_sub(next(&mut rng) % 32);
                        let lo = hi.saturating_sub(next(&mut rng) % 64);
                        let a: Vec<u64> = ours.range(lo..=hi).map(|(n, _)| n).collect();
                        let b: Vec<u64> = model.range(lo..=hi).map(|(&n, _)| n).collect();
                        assert_eq!(a, b);
                        let a: Vec<u64> = ours.range(lo..hi).map(|(n, _)| n).collect();
                        let b: Vec<u64> = model.range(lo..hi).map(|(&n, _)| n).collect();
                        assert_eq!(a, b);
                        let a = ours.first_after(lo);
                        let b = model.range(lo + 1..).next().map(|(&n, _)| n);
                        assert_eq!(a, b);
                    }
                    // point lookups, including numbers never sent
                    _ => {
                        let n = next_pn + 2 - next(&mut rng) % 80;
                        assert_eq!(
                            ours.get(n).map(|p| p.size),
                            model.get(&n).map(|p| p.size)
                        );
                    }
                }
                same(&ours, &model);
            }
            // an out-of-order insert below the oldest tracked number still lands in order
            let low = ours.range(..).next().map_or(5, |(n, _)| n.saturating_sub(5));
            ours.insert(low, packet(1));
            model.insert(low, packet(1));
            same(&ours, &model);
            let all: Vec<u16> = std::mem::take(&mut ours).into_values().map(|p| p.size).collect();
            assert_eq!(all, model.into_values().map(|p| p.size).collect::<Vec<_>>());
        }
    }
}
