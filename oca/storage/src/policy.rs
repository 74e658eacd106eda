//! The RAM tier's admission and eviction policy: a byte-bounded, size-aware W-TinyLFU
//! (DESIGN §4 "Storage": the RAM tier admits by frequency, so one-off reads do not flush it).
//!
//! What it does: given one request at a time (`key`, `size`), [`RamPolicy::access`] says
//! whether the object is resident ([`Access::Hit`]), should be loaded into RAM after dropping
//! some keys ([`Access::Admit`]) or should be served from its drive without entering RAM
//! ([`Access::Reject`]). It keeps only keys, sizes and counters: pure, no I/O, no clock, no
//! threads; the caller owns the bytes and must apply every decision (load, drop) it gets.
//!
//! What it does not do: hold the objects, lock anything (wrap it in a mutex or shard it),
//! adapt its window size (Caffeine's hill climber), or defend against hash flooding (keys are
//! the store's own hashes, not attacker-chosen strings).
//!
//! # Structure (Einziger, Friedman, Manes: "TinyLFU: A Highly Efficient Cache Admission
//! Policy", ACM ToS 2017)
//!
//! - **Frequency sketch**: a count-min sketch of 4-bit counters (4 rows), with a doorkeeper
//!   Bloom filter in front so that keys seen once cost one bit. Every access is one addition;
//!   after `10 × max(resident objects, 256)` additions every counter is halved and the
//!   doorkeeper cleared ("reset"), so old popularity fades.
//! - **Window**: an LRU holding 1 % of the byte capacity. New objects no larger than the
//!   window enter it unconditionally, which lets bursts of fresh objects hit a few times.
//! - **Main**: a segmented LRU for the remaining 99 %: *probation* (objects that came from the
//!   window) and *protected* (at most 80 % of main; objects hit again while in probation).
//!   Protected overflow is demoted to probation's MRU end.
//!
//! # Size-aware admission (the rule)
//!
//! When the cache is over capacity, the window's LRU objects become *candidates* for main,
//! oldest first. For a candidate `c` the policy needs `need = min(over, size_c)` bytes, where
//! `over` is how far the cache is above capacity. It walks main from its eviction end
//! (probation LRU → MRU, then protected LRU → MRU) and takes victims until their bytes cover
//! `need`, counting only the part of the last victim that is needed (`take_v`). The
//! candidate is admitted, and all those victims evicted, iff
//!
//! ```text
//! freq(c) · need  >  Σ_v freq(v) · take_v
//! ```
//!
//! i.e. iff its estimated frequency beats the byte-weighted mean frequency of the bytes it
//! would displace. Frequency per byte is what a byte hit ratio rewards (a cached byte of an
//! object requested `f` times saves `f` bytes), so a hot small object may push out a colder
//! large one, while a single cold large object cannot flush many hotter small ones. Ties go
//! to the incumbents (Caffeine's rule). With equal sizes this reduces to TinyLFU's
//! `freq(candidate) > freq(victim)`. A loser is evicted; a candidate that would need more than
//! 64 victims, or more bytes than main holds, loses. If the window's candidates run out and the
//! cache is still over capacity, main is evicted from its eviction end without a contest.
//!
//! An object larger than the window (1 % of capacity) skips the window: it is itself the
//! candidate, with `need = size − free bytes`, and a loss is [`Access::Reject`], so the caller
//! never copies into RAM an object that would be dropped at once. Objects larger than
//! `max_object_bytes` or than the capacity are always rejected (their frequency is still
//! counted).
//!
//! Cost: a hit is one hash-map lookup, one sketch update and a few list-pointer writes, with
//! no allocation; a miss adds at most 64 victim inspections per candidate, amortised O(1)
//! since each eviction removes an object that was inserted once.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Share of the capacity given to the window, in percent.
const WINDOW_PERCENT: u64 = 1;
/// Share of main given to its protected segment, in percent.
const PROTECTED_PERCENT: u64 = 80;
/// Most victims inspected for one candidate (keeps a miss O(1)).
const MAX_VICTIMS: usize = 64;
/// Sketch width bounds (counters per row) and the bytes per expected entry used to size it.
const MIN_WIDTH: usize = 1 << 12;
const MAX_WIDTH: usize = 1 << 22;
const BYTES_PER_ENTRY_GUESS: u64 = 256 * 1024;
/// The reset period is `SAMPLE_FACTOR × max(resident objects, MIN_SAMPLE_ENTRIES)` additions.
const SAMPLE_FACTOR: u64 = 10;
const MIN_SAMPLE_ENTRIES: u64 = 256;

const NIL: u32 = u32::MAX;

/// What the caller should do after one request.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Access<K> {
    /// The object is resident in RAM: serve it from there.
    Hit,
    /// Load the object into RAM, after dropping these keys (possibly none) from RAM.
    Admit {
        /// Keys that are no longer resident; drop their bytes first.
        evict: Vec<K>,
    },
    /// Serve the object from its drive; do not copy it into RAM.
    Reject,
}

/// The byte-bounded W-TinyLFU policy of the RAM tier. See the module docs for the rule.
#[derive(Debug)]
pub struct RamPolicy<K> {
    capacity: u64,
    max_object: u64,
    window_budget: u64,
    protected_budget: u64,
    used: u64,
    map: HashMap<K, u32>,
    nodes: Vec<Node<K>>,
    free: Vec<u32>,
    window: List,
    probation: List,
    protected: List,
    sketch: FrequencySketch,
    /// Reused buffer of victim slots for one contest.
    scratch: Vec<u32>,
    /// Reused buffer of window candidates for one miss.
    candidates: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Window,
    Probation,
    Protected,
    /// Unlinked: a candidate being decided, or a free slot.
    Detached,
}

#[derive(Debug)]
struct Node<K> {
    key: K,
    hash: u64,
    size: u64,
    prev: u32,
    next: u32,
    queue: Queue,
}

/// An intrusive doubly linked list over the node slab: `head` is MRU, `tail` is LRU.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    bytes: u64,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        bytes: 0,
    };
}

impl<K: Copy + Eq + Hash> RamPolicy<K> {
    /// A policy holding at most `capacity_bytes`, never admitting an object larger than
    /// `max_object_bytes`.
    pub fn new(capacity_bytes: u64, max_object_bytes: u64) -> Self {
        let window_budget =
            capacity_bytes / 100 * WINDOW_PERCENT + capacity_bytes % 100 * WINDOW_PERCENT / 100;
        let main = capacity_bytes - window_budget;
        let protected_budget =
            main / 100 * PROTECTED_PERCENT + main % 100 * PROTECTED_PERCENT / 100;
        let entries = (capacity_bytes / BYTES_PER_ENTRY_GUESS)
            .clamp(MIN_WIDTH as u64, MAX_WIDTH as u64) as usize;
        RamPolicy {
            capacity: capacity_bytes,
            max_object: max_object_bytes,
            window_budget,
            protected_budget,
            used: 0,
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            window: List::EMPTY,
            probation: List::EMPTY,
            protected: List::EMPTY,
            sketch: FrequencySketch::new(entries.next_power_of_two()),
            scratch: Vec::with_capacity(MAX_VICTIMS),
            candidates: Vec::new(),
        }
    }

    /// One request for `key` of `size` bytes. `Hit` if resident (updates recency and
    /// frequency); otherwise records the frequency and says whether the caller should load
    /// the object into RAM (`Admit`, with the keys it must drop first) or not (`Reject`).
    pub fn access(&mut self, key: K, size: u64) -> Access<K> {
        let hash = self.hash(&key);
        self.record(hash);
        if let Some(&slot) = self.map.get(&key) {
            self.on_hit(slot);
            return Access::Hit;
        }
        if size > self.max_object || size > self.capacity {
            return Access::Reject;
        }
        let mut evict = Vec::new();
        if size > self.window_budget {
            // Too big for the window: the new object is the candidate itself.
            let free = self.capacity - self.used;
            if size > free {
                let need = size - free;
                let freq = u64::from(self.sketch.estimate(hash));
                if !self.contest(freq, need, &mut evict) {
                    return Access::Reject;
                }
            }
            let slot = self.insert(key, hash, size);
            self.push_front(Queue::Probation, slot);
            return Access::Admit { evict };
        }
        let slot = self.insert(key, hash, size);
        self.push_front(Queue::Window, slot);
        self.rebalance(&mut evict);
        Access::Admit { evict }
    }

    /// Forgets `key` (purge, delete, drive failure). Returns whether it was resident.
    pub fn remove(&mut self, key: &K) -> bool {
        match self.map.remove(key) {
            Some(slot) => {
                self.unlink(slot);
                self.used -= self.nodes[slot as usize].size;
                self.free.push(slot);
                true
            }
            None => false,
        }
    }

    /// Whether `key` is resident.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Bytes of the resident objects (never above the capacity).
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Number of resident objects.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is resident.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The byte capacity given to [`RamPolicy::new`].
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity
    }

    /// The sketch's current frequency estimate for `key` (0–15, plus 1 when the doorkeeper
    /// has seen it), for diagnostics and tests.
    pub fn frequency(&self, key: &K) -> u8 {
        self.sketch.estimate(self.hash(key))
    }

    fn hash(&self, key: &K) -> u64 {
        // Fixed keys: deterministic across runs, which keeps decisions reproducible.
        std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(key)
    }

    fn record(&mut self, hash: u64) {
        self.sketch.increment(hash);
        let period = SAMPLE_FACTOR * (self.map.len() as u64).max(MIN_SAMPLE_ENTRIES);
        if self.sketch.additions >= period {
            self.sketch.reset();
        }
    }

    fn on_hit(&mut self, slot: u32) {
        match self.nodes[slot as usize].queue {
            Queue::Window => self.move_front(Queue::Window, slot),
            Queue::Protected => self.move_front(Queue::Protected, slot),
            Queue::Probation => {
                self.unlink(slot);
                self.push_front(Queue::Protected, slot);
                while self.protected.bytes > self.protected_budget {
                    let demoted = self.protected.tail;
                    if demoted == slot {
                        break;
                    }
                    self.unlink(demoted);
                    self.push_front(Queue::Probation, demoted);
                }
            }
            Queue::Detached => {}
        }
    }

    /// Moves window overflow into main through the admission contest, then evicts main
    /// without a contest while still over capacity.
    fn rebalance(&mut self, evict: &mut Vec<K>) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        while self.window.bytes > self.window_budget {
            let tail = self.window.tail;
            self.unlink(tail);
            candidates.push(tail);
        }
        for &c in &candidates {
            let (hash, size) = {
                let n = &self.nodes[c as usize];
                (n.hash, n.size)
            };
            if self.used > self.capacity {
                let need = (self.used - self.capacity).min(size);
                let freq = u64::from(self.sketch.estimate(hash));
                if !self.contest(freq, need, evict) {
                    self.drop_slot(c, evict);
                    continue;
                }
            }
            self.push_front(Queue::Probation, c);
        }
        self.candidates = candidates;
        while self.used > self.capacity {
            let victim = if self.probation.tail != NIL {
                self.probation.tail
            } else if self.protected.tail != NIL {
                self.protected.tail
            } else {
                self.window.tail
            };
            debug_assert_ne!(victim, NIL, "over capacity with nothing resident");
            if victim == NIL {
                break;
            }
            self.unlink(victim);
            self.drop_slot(victim, evict);
        }
    }

    /// Decides one candidate of frequency `freq` needing `need` bytes from main (see the
    /// module docs). On a win the victims are evicted (pushed to `evict`) and true returned.
    fn contest(&mut self, freq: u64, need: u64, evict: &mut Vec<K>) -> bool {
        let mut victims = std::mem::take(&mut self.scratch);
        victims.clear();
        let mut got = 0u64;
        let mut victim_cost = 0u128;
        let mut cursor = self.probation.tail;
        let mut in_protected = false;
        while got < need && victims.len() < MAX_VICTIMS {
            if cursor == NIL {
                if in_protected {
                    break;
                }
                in_protected = true;
                cursor = self.protected.tail;
                continue;
            }
            let n = &self.nodes[cursor as usize];
            let take = n.size.min(need - got);
            got += take;
            victim_cost += u128::from(self.sketch.estimate(n.hash)) * u128::from(take);
            victims.push(cursor);
            cursor = n.prev;
        }
        let win = got >= need && u128::from(freq) * u128::from(need) > victim_cost;
        if win {
            for &v in &victims {
                self.unlink(v);
                self.drop_slot(v, evict);
            }
        }
        self.scratch = victims;
        win
    }

    fn insert(&mut self, key: K, hash: u64, size: u64) -> u32 {
        let node = Node {
            key,
            hash,
            size,
            prev: NIL,
            next: NIL,
            queue: Queue::Detached,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 resident objects")
            }
        };
        self.map.insert(key, slot);
        self.used += size;
        slot
    }

    /// Forgets a detached slot and reports its key as evicted.
    fn drop_slot(&mut self, slot: u32, evict: &mut Vec<K>) {
        let n = &self.nodes[slot as usize];
        let key = n.key;
        self.used -= n.size;
        self.map.remove(&key);
        self.free.push(slot);
        evict.push(key);
    }

    fn list_mut(&mut self, q: Queue) -> &mut List {
        match q {
            Queue::Window => &mut self.window,
            Queue::Probation => &mut self.probation,
            Queue::Protected => &mut self.protected,
            Queue::Detached => unreachable!("detached nodes are in no list"),
        }
    }

    fn push_front(&mut self, q: Queue, slot: u32) {
        let size = self.nodes[slot as usize].size;
        let list = self.list_mut(q);
        let old_head = list.head;
        list.head = slot;
        if list.tail == NIL {
            list.tail = slot;
        }
        list.bytes += size;
        if old_head != NIL {
            self.nodes[old_head as usize].prev = slot;
        }
        let n = &mut self.nodes[slot as usize];
        n.prev = NIL;
        n.next = old_head;
        n.queue = q;
    }

    fn unlink(&mut self, slot: u32) {
        let (q, prev, next, size) = {
            let n = &self.nodes[slot as usize];
            (n.queue, n.prev, n.next, n.size)
        };
        if q == Queue::Detached {
            return;
        }
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
        let list = self.list_mut(q);
        if list.head == slot {
            list.head = next;
        }
        if list.tail == slot {
            list.tail = prev;
        }
        list.bytes -= size;
        let n = &mut self.nodes[slot as usize];
        n.prev = NIL;
        n.next = NIL;
        n.queue = Queue::Detached;
    }

    fn move_front(&mut self, q: Queue, slot: u32) {
        if self.list_mut(q).head != slot {
            self.unlink(slot);
            self.push_front(q, slot);
        }
    }
}

/// Count-min sketch of 4-bit counters (4 rows of `width` counters, 16 per `u64`) with a
/// doorkeeper Bloom filter (3 probes over `8 × width` bits).
#[derive(Debug)]
struct FrequencySketch {
    width_mask: u64,
    width: usize,
    table: Vec<u64>,
    door: Vec<u64>,
    door_mask: u64,
    /// Additions since the last reset.
    additions: u64,
}

const ROW_SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x85EB_CA77_C2B2_AE63,
];

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FrequencySketch {
    fn new(width: usize) -> Self {
        debug_assert!(width.is_power_of_two() && width >= 16);
        let door_bits = width * 8;
        FrequencySketch {
            width_mask: width as u64 - 1,
            width,
            table: vec![0; 4 * width / 16],
            door: vec![0; door_bits / 64],
            door_mask: door_bits as u64 - 1,
            additions: 0,
        }
    }

    fn counter_pos(&self, hash: u64, row: usize) -> (usize, u32) {
        let idx = (mix64(hash ^ ROW_SEEDS[row]) & self.width_mask) as usize + row * self.width;
        (idx / 16, ((idx % 16) * 4) as u32)
    }

    fn door_bits(&self, hash: u64) -> [u64; 3] {
        let h = mix64(hash.rotate_left(32) ^ 0xD6E8_FEB8_6659_FD93);
        let g = mix64(h);
        [
            h & self.door_mask,
            g & self.door_mask,
            (h ^ g.rotate_left(17)) & self.door_mask,
        ]
    }

    fn door_contains(&self, hash: u64) -> bool {
        self.door_bits(hash)
            .iter()
            .all(|&b| self.door[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }

    fn sketch_min(&self, hash: u64) -> u8 {
        (0..4)
            .map(|row| {
                let (w, s) = self.counter_pos(hash, row);
                ((self.table[w] >> s) & 0xF) as u8
            })
            .min()
            .unwrap_or(0)
    }

    /// Estimated frequency: the sketch's minimum counter plus one if the doorkeeper has it.
    fn estimate(&self, hash: u64) -> u8 {
        self.sketch_min(hash) + u8::from(self.door_contains(hash))
    }

    /// One access: the first one since the last reset sets the doorkeeper's bits, later ones
    /// increment the counters (saturating at 15).
    fn increment(&mut self, hash: u64) {
        self.additions += 1;
        if !self.door_contains(hash) {
            for b in self.door_bits(hash) {
                self.door[(b / 64) as usize] |= 1 << (b % 64);
            }
            return;
        }
        for row in 0..4 {
            let (w, s) = self.counter_pos(hash, row);
            if (self.table[w] >> s) & 0xF < 15 {
                self.table[w] += 1 << s;
            }
        }
    }

    /// Halves every counter, clears the doorkeeper and halves the addition count.
    fn reset(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.door.fill(0);
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    const KIB: u64 = 1024;

    /// A caller that applies every decision, to check the policy's bookkeeping.
    struct Model {
        policy: RamPolicy<u64>,
        resident: Map<u64, u64>,
        hits: u64,
        rejects: u64,
    }

    impl Model {
        fn new(cap: u64, max: u64) -> Self {
            Model {
                policy: RamPolicy::new(cap, max),
                resident: Map::new(),
                hits: 0,
                rejects: 0,
            }
        }

        fn access(&mut self, key: u64, size: u64) -> Access<u64> {
            let a = self.policy.access(key, size);
            match &a {
                Access::Hit => {
                    assert!(self.resident.contains_key(&key), "hit on {key} not loaded");
                    self.hits += 1;
                }
                Access::Admit { evict } => {
                    assert!(!self.resident.contains_key(&key));
                    for k in evict {
                        assert!(self.resident.remove(k).is_some(), "evicted {k} not loaded");
                        assert_ne!(*k, key);
                    }
                    self.resident.insert(key, size);
                }
                Access::Reject => self.rejects += 1,
            }
            let used: u64 = self.resident.values().sum();
            assert_eq!(used, self.policy.used_bytes());
            assert!(used <= self.policy.capacity_bytes());
            assert_eq!(self.resident.len(), self.policy.len());
            a
        }
    }

    /// xorshift64*: a fixed pseudo-random sequence for the property loops.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn scan_of_cold_objects_does_not_flush_the_hot_set() {
        // 200 objects of 1 KiB fit; 100 hot ones are requested 5 times each first.
        let mut m = Model::new(200 * KIB, 64 * KIB);
        for _ in 0..5 {
            for k in 0..100 {
                m.access(k, KIB);
            }
        }
        for k in 0..100 {
            assert!(m.policy.contains(&k));
        }
        // A scan of 20,000 cold objects, with the hot set requested again in between.
        for i in 0..20_000u64 {
            m.access(1_000_000 + i, KIB);
            if i % 1000 == 999 {
                for k in 0..100 {
                    m.access(k, KIB);
                }
            }
        }
        let hot_resident = (0..100).filter(|k| m.policy.contains(k)).count();
        assert_eq!(hot_resident, 100, "the scan flushed hot objects");
        // Every hot request after the warm-up was a hit (5 rounds warm + 20 rounds in scan).
        assert_eq!(m.hits, 4 * 100 + 20 * 100);
    }

    #[test]
    fn hit_admit_reject_and_eviction() {
        // 10 KiB: the window is 102 B, so 1 KiB objects are decided directly against main.
        let mut m = Model::new(10 * KIB, 4 * KIB);
        assert_eq!(m.access(1, KIB), Access::Admit { evict: vec![] });
        assert_eq!(m.access(1, KIB), Access::Hit);
        assert_eq!(
            m.access(2, 5 * KIB),
            Access::Reject,
            "above max object size"
        );
        assert!(!m.policy.contains(&2));
        for k in 2..=10 {
            assert_eq!(m.access(k, KIB), Access::Admit { evict: vec![] });
        }
        assert_eq!(m.policy.used_bytes(), 10 * KIB);
        // 2..=9 hit again (protected); 10 was seen once and is probation's LRU.
        for k in 2..=9 {
            assert_eq!(m.access(k, KIB), Access::Hit);
        }
        // A newcomer seen once does not beat 10 (tie goes to the incumbent) ...
        assert_eq!(m.access(11, KIB), Access::Reject);
        // ... seen twice it does, and 10 is the one dropped.
        assert_eq!(m.access(11, KIB), Access::Admit { evict: vec![10] });
        assert!(m.policy.contains(&11) && !m.policy.contains(&10));
        assert_eq!(m.hits, 1 + 8);
        assert_eq!(m.rejects, 2);
    }

    #[test]
    fn frequent_candidate_evicts_cold_victim() {
        // 1000 KiB: the window is 10 KiB, so 1 KiB objects go through it.
        let mut m = Model::new(1000 * KIB, 64 * KIB);
        for k in 0..1000 {
            m.access(k, KIB);
        }
        assert_eq!(m.policy.used_bytes(), 1000 * KIB);
        // A cold newcomer enters the window and pushes out the window's LRU, which loses.
        let Access::Admit { evict } = m.access(5000, KIB) else {
            panic!("small objects enter the window")
        };
        assert_eq!(evict.len(), 1);
        assert!(
            evict[0] >= 990,
            "a window object (seen once) loses: {evict:?}"
        );
        // Key 6000 is requested 6 times while too big for RAM, then at 1 KiB.
        for _ in 0..6 {
            assert_eq!(m.access(6000, 100 * KIB), Access::Reject);
        }
        m.access(6000, KIB);
        // Push it out of the window with fresh objects: it must win its contest.
        for k in 0..20 {
            m.access(7000 + k, KIB);
        }
        assert!(
            m.policy.contains(&6000),
            "frequent candidate was not admitted"
        );
        assert!(m.policy.frequency(&6000) >= 7);
    }

    #[test]
    fn large_object_must_beat_the_bytes_it_displaces() {
        // Window is 1 % of 1000 KiB = 10 KiB, so a 100 KiB object is decided directly.
        let mut m = Model::new(1000 * KIB, 200 * KIB);
        for _ in 0..3 {
            for k in 0..100 {
                m.access(k, 10 * KIB);
            }
        }
        assert_eq!(m.policy.used_bytes(), 1000 * KIB);
        // Seen once, it cannot displace 10 objects seen 3 times.
        assert_eq!(m.access(500, 100 * KIB), Access::Reject);
        assert!(!m.policy.contains(&500));
        // Requested again and again, it eventually beats them, all 10 at once.
        let mut tries = 1;
        let evict = loop {
            tries += 1;
            assert!(tries < 20, "never admitted");
            if let Access::Admit { evict } = m.access(500, 100 * KIB) {
                break evict;
            }
        };
        assert!(tries >= 3, "admitted at frequency {tries}, victims have 3");
        assert_eq!(evict.len(), 10);
        assert!(m.policy.contains(&500));
    }

    #[test]
    fn byte_bound_holds_on_a_random_sequence() {
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        let cap = 5 * 1024 * KIB;
        let mut m = Model::new(cap, 1024 * KIB);
        let mut sizes = Map::new();
        let mut admits = 0;
        for _ in 0..50_000 {
            // Skewed keys: a small hot range and a long tail; sizes fixed per key.
            let r = rng.next();
            let key = if r.is_multiple_of(4) {
                r % 50
            } else {
                r % 5000
            };
            let size = *sizes
                .entry(key)
                .or_insert_with(|| 1 + rng.next() % (1100 * KIB));
            if matches!(m.access(key, size), Access::Admit { .. }) {
                admits += 1;
            }
        }
        // Model::access checks the bound and the bookkeeping on every step.
        assert!(m.hits > 0 && m.rejects > 0 && admits > 0);
        assert!(m.policy.used_bytes() > cap / 2);
    }

    #[test]
    fn remove_forgets_an_object() {
        let mut m = Model::new(10 * KIB, 4 * KIB);
        m.access(7, 2 * KIB);
        m.access(8, KIB);
        assert!(m.policy.remove(&7));
        assert!(!m.policy.remove(&7));
        assert!(!m.policy.contains(&7));
        assert_eq!(m.policy.used_bytes(), KIB);
        assert_eq!(m.policy.len(), 1);
        m.resident.remove(&7);
        assert_eq!(m.access(7, 2 * KIB), Access::Admit { evict: vec![] });
        assert_eq!(m.policy.used_bytes(), 3 * KIB);
    }

    #[test]
    fn empty_and_tiny_capacities() {
        let mut p: RamPolicy<u128> = RamPolicy::new(0, 1024);
        assert!(p.is_empty());
        assert_eq!(p.access(1, 1), Access::Reject);
        assert_eq!(p.used_bytes(), 0);
        let mut p: RamPolicy<u128> = RamPolicy::new(100, 1024);
        assert_eq!(p.access(1, 101), Access::Reject, "larger than the capacity");
        assert_eq!(p.access(1, 100), Access::Admit { evict: vec![] });
        assert_eq!(p.capacity_bytes(), 100);
    }

    #[test]
    fn sketch_counts_saturate_and_halve() {
        let mut s = FrequencySketch::new(1024);
        let h = 42;
        s.increment(h);
        assert_eq!(s.estimate(h), 1, "doorkeeper only");
        for _ in 0..5 {
            s.increment(h);
        }
        assert_eq!(s.estimate(h), 6);
        for _ in 0..30 {
            s.increment(h);
        }
        assert_eq!(s.estimate(h), 16, "15 in the sketch + the doorkeeper bit");
        s.reset();
        assert_eq!(s.estimate(h), 7, "halved, doorkeeper cleared");
        assert_eq!(s.additions, 36 / 2);
        assert_eq!(s.estimate(7), 0);
    }

    #[test]
    fn policy_resets_the_sketch_periodically() {
        let mut p: RamPolicy<u64> = RamPolicy::new(64 * KIB, KIB);
        for _ in 0..20 {
            p.access(1, 2 * KIB); // rejected, but counted
        }
        assert_eq!(p.frequency(&1), 16);
        // 10 × 256 additions trigger a reset; after a few the old count has decayed.
        for i in 0..20_000u64 {
            p.access(10 + i, 2 * KIB);
        }
        assert!(p.frequency(&1) < 4, "got {}", p.frequency(&1));
    }
}
