//! Ranking (DESIGN §5): a pure function of (client address, rendition, registry snapshot,
//! now) to ranked appliances and, when the player misses the best local appliance, why.
//!
//! 1. Candidates: the appliances whose BGP prefixes cover the client, most specific prefix
//!    first (longest-prefix match in [`crate::trie`]); then the fallback clusters of the
//!    clusters matched (or, for a client no prefix covers, the sites file's top-level
//!    `fallback`); the origin comes after everything (added by the caller).
//! 2. Dropped: stale appliances (no heartbeat for three of their intervals), draining ones,
//!    ones without a public URL, and ones that do not hold the rendition.
//! 3. Inside each group (the appliances announcing one prefix, or one fallback cluster):
//!    rendezvous (highest random weight) hashing of the rendition, so each rendition sticks
//!    to the same appliance and only `1/n` move when one joins or leaves; appliances above
//!    the push-back share of their egress capacity go after the others.
//! 4. The top N; an appliance is listed once.
//!
//! Hashes are FNV-1a and a SplitMix64 finalizer, fixed functions, so every steering replica
//! ranks alike. No I/O, no clock, no lock: the snapshot is immutable.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use oca_common::wire::{InventoryEntry, OcaState, RenditionId};

use crate::holders::{HolderIndex, Row};
use crate::trie::PrefixTable;

/// A hasher for keys that are already good 64-bit hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Renditions an appliance holds, keyed by [`rendition_hash`]. The entry carries the id, so
/// a lookup compares it and a hash collision can never claim content that is not there (two
/// held renditions with one hash would keep only one: odds about 2^-64 per pair).
pub type Holdings = HashMap<u64, InventoryEntry, BuildHasherDefault<IdHasher>>;

/// Builds the [`HolderIndex`] of `appliances` from their inventories (only entries with at
/// least one file held count, as in [`ApplianceView::holds`]). The registry keeps its index
/// incrementally instead; this is the reference it must equal.
pub fn holder_index(appliances: &[Arc<ApplianceView>]) -> HolderIndex {
    let mut ix = HolderIndex::new();
    for (s, a) in appliances.iter().enumerate() {
        for (k, e) in a.holdings.iter() {
            if e.files_held > 0 {
                ix.set(*k, s as u32, true);
            }
        }
    }
    ix
}

/// The slots of the appliances announcing one prefix: up to four inline (no heap block to
/// miss in the cache when a decision reads them).
pub type Slots = smallvec::SmallVec<[u32; 4]>;

/// What a decision reads of one appliance besides its content, packed in one array
/// ([`Snapshot::hot`]) so a decision touches a few cache lines instead of one
/// `Arc<ApplianceView>` per candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hot {
    /// When its last heartbeat arrived, Unix milliseconds.
    pub last_heartbeat_ms: u64,
    /// Stale after this long without a heartbeat.
    pub stale_after_ms: u64,
    /// Reported egress, bit/s.
    pub egress_bps: u64,
    /// Egress capacity, bit/s (0 = unknown).
    pub capacity_bps: u64,
    /// [`mix64`] of the rendezvous seed (half of [`weight`], done once per snapshot).
    pub seed_mix: u64,
    /// Cluster index.
    pub cluster: u32,
    /// Not draining and has a URL.
    pub usable: bool,
}

impl Hot {
    /// The hot facts of `a`.
    pub fn of(a: &ApplianceView) -> Hot {
        Hot {
            last_heartbeat_ms: a.last_heartbeat_ms,
            stale_after_ms: a.stale_after_ms,
            egress_bps: a.egress_bps,
            capacity_bps: a.capacity_bps,
            seed_mix: mix64(a.seed),
            cluster: a.cluster,
            usable: a.state != OcaState::Draining && a.url.is_some(),
        }
    }

    /// Same as [`ApplianceView::healthy`].
    #[inline]
    pub fn healthy(&self, now_ms: u64) -> bool {
        self.usable && now_ms <= self.last_heartbeat_ms.saturating_add(self.stale_after_ms)
    }

    /// Same as [`ApplianceView::saturated`].
    #[inline]
    pub fn saturated(&self, permille: u32) -> bool {
        self.capacity_bps > 0
            && u128::from(self.egress_bps) * 1000
                > u128::from(self.capacity_bps) * u128::from(permille)
    }
}

// The rendezvous functions live in oca-common, so the fill controller places a rendition's
// first copy on the appliance steering ranks first.
pub use oca_common::rendezvous::{mix64, rendition_hash, weight};

/// What ranking needs to know about one appliance.
#[derive(Debug, Clone)]
pub struct ApplianceView {
    /// Appliance id.
    pub id: String,
    /// Index of its cluster in [`Topology::clusters`].
    pub cluster: u32,
    /// Base URL players use (the first public URL); `None` if it reported none.
    pub url: Option<String>,
    /// Reported state.
    pub state: OcaState,
    /// Reported egress, bit/s.
    pub egress_bps: u64,
    /// Reported egress capacity, bit/s (0 = unknown: never pushed back).
    pub capacity_bps: u64,
    /// When its last heartbeat arrived, Unix milliseconds.
    pub last_heartbeat_ms: u64,
    /// Stale once `now > last_heartbeat_ms + stale_after_ms` (three of its intervals).
    pub stale_after_ms: u64,
    /// [`rendition_hash`] of its id.
    pub seed: u64,
    /// Renditions held.
    pub holdings: Arc<Holdings>,
}

impl ApplianceView {
    /// Heartbeat recent enough.
    pub fn fresh(&self, now_ms: u64) -> bool {
        now_ms <= self.last_heartbeat_ms.saturating_add(self.stale_after_ms)
    }

    /// Fresh, not draining, and reachable (has a URL).
    pub fn healthy(&self, now_ms: u64) -> bool {
        self.fresh(now_ms) && self.state != OcaState::Draining && self.url.is_some()
    }

    /// Holds (at least a leading part of) the rendition.
    pub fn holds(&self, rendition: &RenditionId, hash: u64) -> bool {
        self.holdings
            .get(&hash)
            .is_some_and(|e| e.files_held > 0 && e.rendition == *rendition)
    }

    /// Above `permille` of its egress capacity.
    pub fn saturated(&self, permille: u32) -> bool {
        self.capacity_bps > 0
            && u128::from(self.egress_bps) * 1000
                > u128::from(self.capacity_bps) * u128::from(permille)
    }
}

/// One cluster of the sites file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster id.
    pub id: String,
    /// Its site.
    pub site: String,
    /// Fallback clusters, by index, in order.
    pub fallback: Vec<u32>,
}

/// The clusters of the sites file, by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Clusters; an appliance's `cluster` indexes this.
    pub clusters: Vec<ClusterInfo>,
    /// Index by id.
    pub by_id: HashMap<String, u32>,
    /// Fallback clusters for clients no prefix covers.
    pub default_fallback: Vec<u32>,
}

impl Topology {
    /// Builds the topology of a validated sites file.
    pub fn from_sites(sites: &oca_common::sites::Sites) -> Topology {
        let by_id: HashMap<String, u32> = sites
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i as u32))
            .collect();
        let idx = |list: &[String]| -> Vec<u32> {
            list.iter().filter_map(|c| by_id.get(c).copied()).collect()
        };
        Topology {
            clusters: sites
                .clusters
                .iter()
                .map(|c| ClusterInfo {
                    id: c.id.clone(),
                    site: c.site.clone(),
                    fallback: idx(&c.fallback),
                })
                .collect(),
            default_fallback: idx(&sites.fallback),
            by_id,
        }
    }
}

/// An immutable view of the registry, built by [`crate::registry`] on every change and read
/// by every decision without a lock.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Appliances by slot.
    pub appliances: Vec<Arc<ApplianceView>>,
    /// [`Hot`] facts by slot (built by [`Snapshot::new`] from `appliances`).
    pub hot: Vec<Hot>,
    /// Slots of each cluster's appliances, by cluster index.
    pub members: Arc<Vec<Vec<u32>>>,
    /// Who holds what: rendition → bitset of slots.
    pub holders: Arc<HolderIndex>,
    /// BGP prefix → slots of the appliances announcing it.
    pub routes: Arc<PrefixTable<Slots>>,
    /// Clusters and fallback order.
    pub topology: Arc<Topology>,
}

impl Snapshot {
    /// A snapshot; the [`Hot`] array is derived from `appliances`.
    pub fn new(
        appliances: Vec<Arc<ApplianceView>>,
        members: Arc<Vec<Vec<u32>>>,
        holders: Arc<HolderIndex>,
        routes: Arc<PrefixTable<Slots>>,
        topology: Arc<Topology>,
    ) -> Snapshot {
        Snapshot {
            hot: appliances.iter().map(|a| Hot::of(a)).collect(),
            appliances,
            members,
            holders,
            routes,
            topology,
        }
    }
}

/// Why a player did not get the best local appliance (`steering_misses_total{cause}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MissCause {
    /// Healthy local appliances exist, but none holds the rendition.
    Content,
    /// No local appliance is healthy (stale, draining, no URL).
    Health,
    /// The local appliances holding it are all above the push-back load.
    Saturated,
    /// No appliance's BGP prefixes cover the client.
    Route,
}

impl MissCause {
    /// All causes.
    pub const ALL: [MissCause; 4] = [
        MissCause::Content,
        MissCause::Health,
        MissCause::Saturated,
        MissCause::Route,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MissCause::Content => "content",
            MissCause::Health => "health",
            MissCause::Saturated => "saturated",
            MissCause::Route => "route",
        }
    }
}

/// Why a candidate was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Its BGP prefixes cover the client.
    Local,
    /// A fallback cluster.
    Fallback,
}

/// One ranked appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Slot in [`Snapshot::appliances`].
    pub slot: u32,
    /// Local or fallback.
    pub kind: Kind,
    /// Above the push-back load (ranked after the others of its group).
    pub saturated: bool,
}

/// Ranking knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Appliances returned at most.
    pub top_n: usize,
    /// Push-back threshold, per mille of egress capacity (900 = 90 %).
    pub push_back_permille: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            top_n: 4,
            push_back_permille: 900,
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranking {
    /// Appliances, best first (the origin is not listed: it always comes last).
    pub candidates: Vec<Candidate>,
    /// Most specific prefix covering the client, if any.
    pub matched: Option<IpNet>,
    /// Why the first candidate is not the best local appliance, if it is not.
    pub miss: Option<MissCause>,
}

/// Candidates one group can still add, at most, kept on the stack (more use the heap).
const KEEP_MAX: usize = 16;

/// Orders the eligible `slots` of one group (healthy, holding the rendition by `row`, not
/// yet listed) by (pushed back, rendezvous weight, slot) and appends the best of them to
/// `out` as `kind`, until `top_n`. Only the room left is kept while scanning (a bounded
/// insertion), so a large group costs no sort.
#[allow(clippy::too_many_arguments)]
fn add_group(
    snap: &Snapshot,
    slots: &[u32],
    row: Row<'_>,
    hash: u64,
    now_ms: u64,
    params: &Params,
    kind: Kind,
    out: &mut Vec<Candidate>,
) {
    let room = params.top_n.saturating_sub(out.len());
    if room == 0 {
        return;
    }
    // One sort key per candidate: (pushed back, highest weight first, slot), packed so a
    // comparison is one integer compare.
    let key = |saturated: bool, w: u64, slot: u32| -> u128 {
        (u128::from(saturated) << 96) | (u128::from(u64::MAX - w) << 32) | u128::from(slot)
    };
    let mut stack = [0u128; KEEP_MAX];
    let mut heap = Vec::new();
    let mut n = 0;
    for &slot in slots {
        let Some(h) = snap.hot.get(slot as usize) else {
            continue;
        };
        if !h.healthy(now_ms) || !row.has(slot) || out.iter().any(|c| c.slot == slot) {
            continue;
        }
        // `weight(hash, seed)` with the seed's half precomputed.
        let k = key(
            h.saturated(params.push_back_permille),
            mix64(hash ^ h.seed_mix),
            slot,
        );
        if room > KEEP_MAX {
            heap.push(k);
            continue;
        }
        // Bounded insertion: keep the `room` smallest keys, in order.
        let mut i = if n < room {
            n += 1;
            n - 1
        } else if k < stack[n - 1] {
            n - 1
        } else {
            continue;
        };
        stack[i] = k;
        while i > 0 && stack[i] < stack[i - 1] {
            stack.swap(i, i - 1);
            i -= 1;
        }
    }
    let best: &[u128] = if room > KEEP_MAX {
        heap.sort_unstable();
        heap.truncate(room);
        &heap
    } else {
        &stack[..n]
    };
    out.extend(best.iter().map(|&k| Candidate {
        slot: k as u32,
        kind,
        saturated: (k >> 96) != 0,
    }));
}

/// Why the best local group (the appliances of the most specific prefix) gave no unsaturated
/// candidate.
fn diagnose(snap: &Snapshot, slots: &[u32], row: Row<'_>, now_ms: u64) -> MissCause {
    let healthy = || {
        slots
            .iter()
            .copied()
            .filter(|&s| snap.hot.get(s as usize).is_some_and(|h| h.healthy(now_ms)))
    };
    if healthy().next().is_none() {
        MissCause::Health
    } else if !healthy().any(|s| row.has(s)) {
        MissCause::Content
    } else {
        MissCause::Saturated
    }
}

/// Most fallback clusters one decision collects.
const FALLBACK_MAX: usize = 32;

/// Ranks the appliances for `client` and `rendition` at `now_ms` (Unix milliseconds).
/// `hash` must be [`rendition_hash`]`(rendition)` (callers compute it once). Who holds the
/// rendition comes from one probe of the snapshot's [`HolderIndex`].
pub fn rank(snap: &Snapshot, client: IpAddr, hash: u64, now_ms: u64, params: &Params) -> Ranking {
    let row = snap.holders.row(hash);
    let mut out = Vec::with_capacity(params.top_n);
    let mut matched = None;
    let mut miss = None;
    // Fallback clusters in order, without duplicates (more than FALLBACK_MAX are cut).
    let mut fallback = [0u32; FALLBACK_MAX];
    let mut nf = 0;
    snap.routes.for_each_match(client, |prefix, slots| {
        let first = matched.is_none();
        if first {
            matched = Some(prefix);
        }
        for &s in slots {
            if let Some(c) = snap.hot.get(s as usize).map(|h| h.cluster)
                && let Some(info) = snap.topology.clusters.get(c as usize)
            {
                for f in &info.fallback {
                    if nf < FALLBACK_MAX && !fallback[..nf].contains(f) {
                        fallback[nf] = *f;
                        nf += 1;
                    }
                }
            }
        }
        let before = out.len();
        add_group(
            snap,
            slots,
            row,
            hash,
            now_ms,
            params,
            Kind::Local,
            &mut out,
        );
        if first && out.get(before).is_none_or(|c| c.saturated) {
            miss = Some(diagnose(snap, slots, row, now_ms));
        }
        // Keep walking shorter prefixes only while there is room; fallback lists of every
        // covering prefix's clusters are collected on the way.
        out.len() < params.top_n
    });
    if matched.is_none() {
        miss = Some(MissCause::Route);
    }
    let fallback: &[u32] = if nf == 0 {
        &snap.topology.default_fallback
    } else {
        &fallback[..nf]
    };
    for &c in fallback {
        if out.len() >= params.top_n {
            break;
        }
        if let Some(slots) = snap.members.get(c as usize) {
            add_group(
                snap,
                slots,
                row,
                hash,
                now_ms,
                params,
                Kind::Fallback,
                &mut out,
            );
        }
    }
    Ranking {
        candidates: out,
        matched,
        miss,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use oca_common::sites::Sites;
    use oca_common::wire::Tier;

    pub const NOW: u64 = 1_780_000_000_000;

    pub fn sites() -> Sites {
        Sites::parse(
            r#"
fallback = ["ixp"]
[[site]]
id = "s1"
time-zone = "UTC"
[[cluster]]
id = "isp-a"
site = "s1"
upstream = "ixp"
fallback = ["ixp"]
[[cluster]]
id = "isp-b"
site = "s1"
[[cluster]]
id = "ixp"
site = "s1"
"#,
        )
        .unwrap()
    }

    pub fn rid(s: &str) -> RenditionId {
        RenditionId::parse(s).unwrap()
    }

    pub fn holdings(list: &[&str]) -> Arc<Holdings> {
        Arc::new(
            list.iter()
                .map(|r| {
                    (
                        rendition_hash(r),
                        InventoryEntry {
                            rendition: rid(r),
                            files_held: 10,
                            total_files: 10,
                            bytes: 1000,
                            tier: Tier::Flash,
                        },
                    )
                })
                .collect(),
        )
    }

    /// Builds a snapshot from (id, cluster, prefixes, holdings) with everything fresh and up.
    pub struct Builder {
        pub topo: Topology,
        pub apps: Vec<ApplianceView>,
        pub prefixes: Vec<Vec<&'static str>>,
    }

    impl Builder {
        pub fn new() -> Builder {
            Builder {
                topo: Topology::from_sites(&sites()),
                apps: Vec::new(),
                prefixes: Vec::new(),
            }
        }

        pub fn add(
            &mut self,
            id: &str,
            cluster: &str,
            prefixes: &[&'static str],
            held: &[&str],
        ) -> &mut ApplianceView {
            self.apps.push(ApplianceView {
                id: id.into(),
                cluster: self.topo.by_id[cluster],
                url: Some(format!("https://{id}.example.net")),
                state: OcaState::Up,
                egress_bps: 1,
                capacity_bps: 100,
                last_heartbeat_ms: NOW - 1000,
                stale_after_ms: 15_000,
                seed: rendition_hash(id),
                holdings: holdings(held),
            });
            self.prefixes.push(prefixes.to_vec());
            self.apps.last_mut().unwrap()
        }

        pub fn build(&self) -> Snapshot {
            let mut routes: PrefixTable<Slots> = PrefixTable::new();
            let mut members = vec![Vec::new(); self.topo.clusters.len()];
            for (i, (a, ps)) in self.apps.iter().zip(&self.prefixes).enumerate() {
                members[a.cluster as usize].push(i as u32);
                for p in ps {
                    routes.entry_or_default(p.parse().unwrap()).push(i as u32);
                }
            }
            let appliances: Vec<Arc<ApplianceView>> =
                self.apps.iter().cloned().map(Arc::new).collect();
            let holders = holder_index(&appliances);
            Snapshot::new(
                appliances,
                Arc::new(members),
                Arc::new(holders),
                Arc::new(routes),
                Arc::new(self.topo.clone()),
            )
        }
    }

    const R: &str = "movie/720p";

    fn ids(snap: &Snapshot, r: &Ranking) -> Vec<String> {
        r.candidates
            .iter()
            .map(|c| snap.appliances[c.slot as usize].id.clone())
            .collect()
    }

    fn run(snap: &Snapshot, client: &str) -> Ranking {
        rank(
            snap,
            client.parse().unwrap(),
            rendition_hash(R),
            NOW,
            &Params::default(),
        )
    }

    #[test]
    fn most_specific_prefix_first_then_fallback() {
        let mut b = Builder::new();
        b.add("wide", "isp-a", &["10.0.0.0/8"], &[R]);
        b.add("narrow", "isp-b", &["10.1.0.0/16"], &[R]);
        b.add("ixp-1", "ixp", &[], &[R]);
        b.add("v6", "isp-b", &["2001:db8::/32"], &[R]);
        let snap = b.build();
        let r = run(&snap, "10.1.2.3");
        assert_eq!(ids(&snap, &r), ["narrow", "wide", "ixp-1"]);
        assert_eq!(r.matched, Some("10.1.0.0/16".parse().unwrap()));
        assert_eq!(r.miss, None);
        assert_eq!(r.candidates[2].kind, Kind::Fallback);
        let r = run(&snap, "10.200.0.1");
        assert_eq!(ids(&snap, &r), ["wide", "ixp-1"]);
        let r = run(&snap, "2001:db8:5::1");
        assert_eq!(ids(&snap, &r), ["v6", "ixp-1"]);
        assert_eq!(r.candidates[0].kind, Kind::Local);
        // No route: top-level fallback, miss = route.
        let r = run(&snap, "192.0.2.1");
        assert_eq!(ids(&snap, &r), ["ixp-1"]);
        assert_eq!(r.miss, Some(MissCause::Route));
        assert_eq!(r.matched, None);
    }

    #[test]
    fn stale_draining_and_content_are_dropped_with_causes() {
        let mut b = Builder::new();
        b.add("a", "isp-a", &["10.0.0.0/16"], &[R]);
        b.add("ixp-1", "ixp", &[], &[R]);
        // Stale: last heartbeat 16 s ago, three intervals of 5 s.
        b.apps[0].last_heartbeat_ms = NOW - 16_000;
        let snap = b.build();
        let r = run(&snap, "10.0.0.1");
        assert_eq!(ids(&snap, &r), ["ixp-1"]);
        assert_eq!(r.miss, Some(MissCause::Health));
        // Exactly at the limit it still counts.
        b.apps[0].last_heartbeat_ms = NOW - 15_000;
        assert_eq!(
            ids(&b.build(), &run(&b.build(), "10.0.0.1")),
            ["a", "ixp-1"]
        );
        b.apps[0].state = OcaState::Draining;
        let r = run(&b.build(), "10.0.0.1");
        assert_eq!(r.miss, Some(MissCause::Health));
        assert_eq!(r.candidates.len(), 1);
        b.apps[0].state = OcaState::Degraded;
        assert_eq!(run(&b.build(), "10.0.0.1").miss, None);
        b.apps[0].holdings = holdings(&["movie/1080p"]);
        let r = run(&b.build(), "10.0.0.1");
        assert_eq!(r.miss, Some(MissCause::Content));
        assert_eq!(ids(&b.build(), &r), ["ixp-1"]);
    }

    #[test]
    fn push_back_above_90_percent() {
        let mut b = Builder::new();
        for i in 0..4 {
            b.add(["p0", "p1", "p2", "p3"][i], "isp-a", &["10.0.0.0/16"], &[R]);
        }
        let snap = b.build();
        let order = ids(&snap, &run(&snap, "10.0.0.1"));
        // Saturate the winner: it moves to the back of its group, the rest keep their order.
        let top = snap
            .appliances
            .iter()
            .position(|a| a.id == order[0])
            .unwrap();
        b.apps[top].egress_bps = 91;
        let snap2 = b.build();
        let r = run(&snap2, "10.0.0.1");
        let mut want: Vec<String> = order[1..].to_vec();
        want.push(order[0].clone());
        assert_eq!(ids(&snap2, &r), want);
        assert!(r.candidates[3].saturated);
        assert_eq!(r.miss, None);
        // 90 % exactly is not above.
        b.apps[top].egress_bps = 90;
        assert_eq!(ids(&b.build(), &run(&b.build(), "10.0.0.1")), order);
        // All saturated: still listed, but counted as a saturation miss.
        for a in &mut b.apps {
            a.egress_bps = 95;
        }
        let r = run(&b.build(), "10.0.0.1");
        assert_eq!(r.candidates.len(), 4);
        assert_eq!(r.miss, Some(MissCause::Saturated));
    }

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let mut b = Builder::new();
        let names = ["c0", "c1", "c2", "c3", "c4"];
        let renditions: Vec<String> = (0..500).map(|i| format!("t{i}/720p")).collect();
        let held: Vec<&str> = renditions.iter().map(String::as_str).collect();
        for n in names {
            b.add(n, "isp-a", &["10.0.0.0/16"], &held);
        }
        let snap = b.build();
        let top = |snap: &Snapshot, r: &str| {
            let rk = rank(
                snap,
                "10.0.0.1".parse().unwrap(),
                rendition_hash(r),
                NOW,
                &Params {
                    top_n: 1,
                    ..Params::default()
                },
            );
            snap.appliances[rk.candidates[0].slot as usize].id.clone()
        };
        let before: Vec<String> = held.iter().map(|r| top(&snap, r)).collect();
        // Every appliance wins a fair share (100 expected each).
        for n in names {
            let c = before.iter().filter(|w| *w == n).count();
            assert!((50..=150).contains(&c), "{n}: {c}");
        }
        // Remove c2: only its renditions move.
        b.apps[2].last_heartbeat_ms = 0;
        let snap2 = b.build();
        for (r, w) in held.iter().zip(&before) {
            let now = top(&snap2, r);
            if w != "c2" {
                assert_eq!(&now, w, "{r} moved although its appliance stayed");
            } else {
                assert_ne!(now, "c2");
            }
        }
    }

    #[test]
    fn top_n_and_no_duplicates() {
        let mut b = Builder::new();
        // One appliance announces two covering prefixes: listed once.
        b.add("x", "isp-a", &["10.0.0.0/8", "10.0.0.0/16"], &[R]);
        for n in ["y1", "y2", "y3", "y4", "y5"] {
            b.add(n, "ixp", &[], &[R]);
        }
        let snap = b.build();
        let r = run(&snap, "10.0.0.1");
        assert_eq!(r.candidates.len(), 4);
        assert_eq!(ids(&snap, &r)[0], "x");
        assert_eq!(ids(&snap, &r).iter().filter(|i| *i == "x").count(), 1);
    }

    /// A long list (more than the stack keeps) and a short one order the same way: by
    /// (pushed back, rendezvous weight), the short one a prefix of the long one.
    #[test]
    fn long_and_short_lists_agree() {
        let mut b = Builder::new();
        let names: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            b.add(n, "isp-a", &["10.0.0.0/16"], &[R]);
            if i % 7 == 0 {
                b.apps[i].egress_bps = 95;
            }
        }
        let snap = b.build();
        let go = |top_n| {
            rank(
                &snap,
                "10.0.0.1".parse().unwrap(),
                rendition_hash(R),
                NOW,
                &Params {
                    top_n,
                    ..Params::default()
                },
            )
        };
        let long = go(KEEP_MAX + 10);
        assert_eq!(long.candidates.len(), KEEP_MAX + 10);
        let mut want: Vec<(bool, u64, u32)> = (0..30u32)
            .map(|s| {
                let a = &snap.appliances[s as usize];
                (
                    a.saturated(900),
                    u64::MAX - weight(rendition_hash(R), a.seed),
                    s,
                )
            })
            .collect();
        want.sort();
        let got: Vec<u32> = long.candidates.iter().map(|c| c.slot).collect();
        let want: Vec<u32> = want.iter().map(|w| w.2).take(KEEP_MAX + 10).collect();
        assert_eq!(got, want);
        assert!(long.candidates.last().unwrap().saturated);
        let short = go(5);
        assert_eq!(short.candidates[..], long.candidates[..5]);
    }
}
