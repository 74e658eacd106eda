//! Chunk-level cache simulation: LRU, S3-FIFO, Belady and oca's [`RamPolicy`], all
//! byte-bounded, fed one request at a time, with the spec's peak-window hit ratios.

use std::collections::{BTreeSet, VecDeque};

use oca_storage::policy::{Access, RamPolicy};

use super::IdMap;
use super::trace::NEVER;

/// A byte-bounded cache under simulation.
pub trait CachePolicy: Send {
    /// One request; `next` is the index of the next request for `id` ([`NEVER`] if none;
    /// only Belady looks at it). Returns whether it was a hit.
    fn access(&mut self, id: u64, bytes: u32, next: u64) -> bool;
}

/// The policies the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// S3-FIFO (Yang et al., SOSP'23) as in libCacheSim's `S3FIFO.c`.
    S3Fifo,
    /// Belady's MIN with forced admission.
    Belady,
    /// oca's RAM-tier policy ([`RamPolicy`]: size-aware W-TinyLFU).
    Oca,
}

impl PolicyKind {
    /// Every policy, in table order.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Lru,
        PolicyKind::S3Fifo,
        PolicyKind::Belady,
        PolicyKind::Oca,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "LRU",
            PolicyKind::S3Fifo => "S3-FIFO",
            PolicyKind::Belady => "Belady",
            PolicyKind::Oca => "oca RamPolicy",
        }
    }

    /// A new empty cache of `capacity` bytes.
    pub fn build(self, capacity: u64) -> Box<dyn CachePolicy> {
        match self {
            PolicyKind::Lru => Box::new(Lru::new(capacity)),
            PolicyKind::S3Fifo => Box::new(S3Fifo::new(capacity)),
            PolicyKind::Belady => Box::new(Belady::new(capacity)),
            PolicyKind::Oca => Box::new(OcaPolicy(RamPolicy::new(capacity, capacity))),
        }
    }
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct LruNode {
    id: u64,
    bytes: u32,
    prev: u32,
    next: u32,
}

/// Byte-bounded LRU (admit every miss that fits).
#[derive(Debug)]
pub struct Lru {
    capacity: u64,
    used: u64,
    map: IdMap<u32>,
    nodes: Vec<LruNode>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
}

impl Lru {
    /// An empty LRU of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Lru {
            capacity,
            used: 0,
            map: IdMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, s: u32) {
        let LruNode { prev, next, .. } = self.nodes[s as usize];
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
    }

    fn push_front(&mut self, s: u32) {
        self.nodes[s as usize].prev = NIL;
        self.nodes[s as usize].next = self.head;
        if self.head != NIL {
            self.nodes[self.head as usize].prev = s;
        }
        self.head = s;
        if self.tail == NIL {
            self.tail = s;
        }
    }
}

impl CachePolicy for Lru {
    fn access(&mut self, id: u64, bytes: u32, _next: u64) -> bool {
        if let Some(&s) = self.map.get(&id) {
            if self.head != s {
                self.unlink(s);
                self.push_front(s);
            }
            return true;
        }
        if u64::from(bytes) > self.capacity {
            return false;
        }
        while self.used + u64::from(bytes) > self.capacity {
            let t = self.tail;
            self.unlink(t);
            let n = self.nodes[t as usize];
            self.used -= u64::from(n.bytes);
            self.map.remove(&n.id);
            self.free.push(t);
        }
        let node = LruNode {
            id,
            bytes,
            prev: NIL,
            next: NIL,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.push_front(s);
        self.map.insert(id, s);
        self.used += u64::from(bytes);
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S3Queue {
    Small,
    Main,
}

#[derive(Debug, Clone, Copy)]
struct S3Meta {
    bytes: u32,
    freq: u8,
}

/// S3-FIFO following libCacheSim's `S3FIFO.c`: small FIFO of 10 % of the bytes, main FIFO
/// (2-bit CLOCK: reinserted with `min(freq, 3) − 1` while `freq ≥ 1`), ghost FIFO of 90 % of
/// the bytes holding ids evicted from small. A hit increments `freq`; a small-queue object
/// moves to main when `freq ≥ 2` (libCacheSim's `move-to-main-threshold=2`); a ghost hit
/// inserts into main; before the first eviction, inserts go to main once small is full.
#[derive(Debug)]
pub struct S3Fifo {
    capacity: u64,
    small_cap: u64,
    main_cap: u64,
    ghost_cap: u64,
    small_bytes: u64,
    main_bytes: u64,
    ghost_bytes: u64,
    meta: IdMap<S3Meta>,
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    /// Ghost entries: (id, bytes, generation); a stale generation was removed by a hit.
    ghost: VecDeque<(u64, u32, u64)>,
    ghost_map: IdMap<u64>,
    ghost_gen: u64,
    has_evicted: bool,
}

impl S3Fifo {
    /// An empty S3-FIFO of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        let small_cap = (capacity as f64 * 0.10) as u64;
        S3Fifo {
            capacity,
            small_cap,
            main_cap: capacity - small_cap,
            ghost_cap: (capacity as f64 * 0.90) as u64,
            small_bytes: 0,
            main_bytes: 0,
            ghost_bytes: 0,
            meta: IdMap::default(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_map: IdMap::default(),
            ghost_gen: 0,
            has_evicted: false,
        }
    }

    fn ghost_insert(&mut self, id: u64, bytes: u32) {
        if self.ghost_map.contains_key(&id) {
            return;
        }
        if u64::from(bytes) > self.ghost_cap {
            return;
        }
        while self.ghost_bytes + u64::from(bytes) > self.ghost_cap {
            let Some((gid, gb, generation)) = self.ghost.pop_front() else {
                break;
            };
            if self.ghost_map.get(&gid) == Some(&generation) {
                self.ghost_map.remove(&gid);
                self.ghost_bytes -= u64::from(gb);
            }
        }
        self.ghost_gen += 1;
        self.ghost.push_back((id, bytes, self.ghost_gen));
        self.ghost_map.insert(id, self.ghost_gen);
        self.ghost_bytes += u64::from(bytes);
    }

    fn ghost_remove(&mut self, id: u64, bytes: u32) -> bool {
        if self.ghost_map.remove(&id).is_some() {
            self.ghost_bytes -= u64::from(bytes);
            true
        } else {
            false
        }
    }

    fn evict_small(&mut self) {
        while let Some(id) = self.small.pop_front() {
            let m = self.meta[&id];
            self.small_bytes -= u64::from(m.bytes);
            if m.freq >= 2 {
                self.main.push_back(id);
                self.main_bytes += u64::from(m.bytes);
                self.meta.insert(
                    id,
                    S3Meta {
                        bytes: m.bytes,
                        freq: 0,
                    },
                );
            } else {
                self.meta.remove(&id);
                self.ghost_insert(id, m.bytes);
                return;
            }
        }
    }

    fn evict_main(&mut self) {
        while let Some(id) = self.main.pop_front() {
            let m = self.meta.get_mut(&id).expect("main object has metadata");
            if m.freq >= 1 {
                m.freq = m.freq.min(3) - 1;
                self.main.push_back(id);
            } else {
                self.main_bytes -= u64::from(m.bytes);
                self.meta.remove(&id);
                return;
            }
        }
    }
}

impl CachePolicy for S3Fifo {
    fn access(&mut self, id: u64, bytes: u32, _next: u64) -> bool {
        if let Some(m) = self.meta.get_mut(&id) {
            m.freq = m.freq.saturating_add(1);
            return true;
        }
        let hit_on_ghost = self.ghost_remove(id, bytes);
        if u64::from(bytes) >= self.small_cap && !hit_on_ghost {
            return false;
        }
        if u64::from(bytes) > self.capacity {
            return false;
        }
        while self.small_bytes + self.main_bytes + u64::from(bytes) > self.capacity {
            self.has_evicted = true;
            if self.main_bytes > self.main_cap || self.small_bytes == 0 {
                self.evict_main();
            } else {
                self.evict_small();
            }
        }
        let queue = if hit_on_ghost || (!self.has_evicted && self.small_bytes >= self.small_cap) {
            S3Queue::Main
        } else {
            S3Queue::Small
        };
        match queue {
            S3Queue::Main => {
                self.main.push_back(id);
                self.main_bytes += u64::from(bytes);
            }
            S3Queue::Small => {
                self.small.push_back(id);
                self.small_bytes += u64::from(bytes);
            }
        }
        self.meta.insert(id, S3Meta { bytes, freq: 0 });
        false
    }
}

/// Belady's MIN with forced admission: every miss is inserted, then the resident objects
/// whose next request is furthest (never first) are evicted until the bytes fit.
#[derive(Debug)]
pub struct Belady {
    capacity: u64,
    used: u64,
    resident: IdMap<(u64, u32)>,
    by_next: BTreeSet<(u64, u64)>,
}

impl Belady {
    /// An empty Belady cache of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Belady {
            capacity,
            used: 0,
            resident: IdMap::default(),
            by_next: BTreeSet::new(),
        }
    }
}

impl CachePolicy for Belady {
    fn access(&mut self, id: u64, bytes: u32, next: u64) -> bool {
        if let Some(e) = self.resident.get_mut(&id) {
            self.by_next.remove(&(e.0, id));
            e.0 = next;
            self.by_next.insert((next, id));
            return true;
        }
        if u64::from(bytes) > self.capacity {
            return false;
        }
        self.resident.insert(id, (next, bytes));
        self.by_next.insert((next, id));
        self.used += u64::from(bytes);
        while self.used > self.capacity {
            let Some((_, victim)) = self.by_next.pop_last() else {
                break;
            };
            if let Some((_, b)) = self.resident.remove(&victim) {
                self.used -= u64::from(b);
            }
        }
        false
    }
}

/// oca's RAM-tier policy driven as a cache: `Admit` loads, `Reject` leaves it a miss.
#[derive(Debug)]
pub struct OcaPolicy(pub RamPolicy<u64>);

impl CachePolicy for OcaPolicy {
    fn access(&mut self, id: u64, bytes: u32, _next: u64) -> bool {
        matches!(self.0.access(id, u64::from(bytes)), Access::Hit)
    }
}

/// Hit counters of one simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HitStats {
    /// Requests in the measured window.
    pub requests: u64,
    /// Hits in the measured window.
    pub hits: u64,
    /// Requested bytes in the measured window.
    pub bytes: u64,
    /// Hit bytes in the measured window.
    pub hit_bytes: u64,
    /// Hits over the whole trace (for tests and sanity checks).
    pub all_hits: u64,
}

impl HitStats {
    /// Byte hit ratio.
    pub fn bhr(&self) -> f64 {
        self.hit_bytes as f64 / (self.bytes as f64).max(1.0)
    }
    /// Object hit ratio.
    pub fn ohr(&self) -> f64 {
        self.hits as f64 / (self.requests as f64).max(1.0)
    }
}

/// One request as the simulator sees it.
#[derive(Debug, Clone, Copy)]
pub struct SimRequest {
    /// Object id.
    pub id: u64,
    /// Object bytes.
    pub bytes: u32,
    /// Next request index for the id, or [`NEVER`].
    pub next: u64,
    /// Whether it counts for the hit ratios (peak window).
    pub measured: bool,
}

/// Runs `cache` over `requests`, counting hits of the measured ones.
pub fn simulate(
    cache: &mut dyn CachePolicy,
    requests: impl IntoIterator<Item = SimRequest>,
) -> HitStats {
    let mut s = HitStats::default();
    for r in requests {
        let hit = cache.access(r.id, r.bytes, r.next);
        s.all_hits += u64::from(hit);
        if r.measured {
            s.requests += 1;
            s.bytes += u64::from(r.bytes);
            if hit {
                s.hits += 1;
                s.hit_bytes += u64::from(r.bytes);
            }
        }
    }
    s
}

/// Convenience: next index as the simulator wants it from a `u32` table.
pub fn next_u64(n: u32) -> u64 {
    if n == u32::MAX { NEVER } else { u64::from(n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a policy over `(id, bytes)` pairs with next indices computed here.
    fn run(kind: PolicyKind, cap: u64, trace: &[(u64, u32)]) -> u64 {
        let mut next = vec![NEVER; trace.len()];
        let mut last = IdMap::default();
        for (i, &(id, _)) in trace.iter().enumerate().rev() {
            if let Some(j) = last.insert(id, i as u64) {
                next[i] = j;
            }
        }
        let mut c = kind.build(cap);
        simulate(
            c.as_mut(),
            trace
                .iter()
                .zip(&next)
                .map(|(&(id, bytes), &n)| SimRequest {
                    id,
                    bytes,
                    next: n,
                    measured: true,
                }),
        )
        .hits
    }

    fn unit(ids: &[u64]) -> Vec<(u64, u32)> {
        ids.iter().map(|&i| (i, 1)).collect()
    }

    #[test]
    fn lru_hand_made() {
        // Capacity 3 unit objects. a b c a d b a c: hits on a (3rd pos) and a (7th).
        let t = unit(&[1, 2, 3, 1, 4, 2, 1, 3]);
        // 1 2 3 | 1 hit | 4 evicts 2 | 2 miss evicts 3 | 1 hit | 3 miss.
        assert_eq!(run(PolicyKind::Lru, 3, &t), 2);
        // Byte-bounded: a 2-byte object pushes out two 1-byte ones.
        let t = vec![(1, 1), (2, 1), (3, 2), (1, 1), (2, 1), (3, 2)];
        assert_eq!(run(PolicyKind::Lru, 3, &t), 0);
        let t = vec![(1, 1), (2, 1), (3, 1), (1, 1), (2, 1), (3, 1)];
        assert_eq!(run(PolicyKind::Lru, 3, &t), 3);
    }

    #[test]
    fn belady_hand_made() {
        // Classic: capacity 3, 1 2 3 4 1 2 5 1 2 3 4 5 → MIN gets 5 hits (7 misses).
        let t = unit(&[1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5]);
        assert_eq!(run(PolicyKind::Belady, 3, &t), 5);
        // LRU on the same string: 2 hits.
        assert_eq!(run(PolicyKind::Lru, 3, &t), 2);
    }

    #[test]
    fn s3fifo_hand_made() {
        // Capacity 20 unit objects: small 2, main 18, ghost 18.
        // 1 2 → small; 3..=20 → main (small full, nothing evicted yet); 21 evicts 1 from
        // small (freq 0) to the ghost; 1 is a ghost hit → main (evicting 2 from small);
        // 1 and 3 then hit.
        let mut t = unit(&(1..=21).collect::<Vec<_>>());
        t.extend(unit(&[1, 1, 3]));
        assert_eq!(run(PolicyKind::S3Fifo, 20, &t), 2);
        // A one-hit scan goes through small; main keeps 1 and 3 (3 is reinserted once).
        t.extend(unit(&(100..200).collect::<Vec<_>>()));
        t.extend(unit(&[1, 3]));
        assert_eq!(run(PolicyKind::S3Fifo, 20, &t), 4);
        // LRU of the same size: 1 and 3 hit before the scan, not after.
        assert_eq!(run(PolicyKind::Lru, 20, &t), 2);
    }

    #[test]
    fn belady_beats_every_policy_on_a_random_trace() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut trace = Vec::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Skewed ids, unit sizes (where MIN is provably optimal).
            let id = if x.is_multiple_of(3) {
                x % 40
            } else {
                (x >> 8) % 600
            };
            trace.push((id, 1));
        }
        for cap in [10, 50, 200] {
            let b = run(PolicyKind::Belady, cap, &trace);
            for k in [PolicyKind::Lru, PolicyKind::S3Fifo, PolicyKind::Oca] {
                let h = run(k, cap, &trace);
                assert!(b >= h, "Belady {b} < {} {h} at capacity {cap}", k.name());
            }
            assert!(b > 0);
        }
    }
}
