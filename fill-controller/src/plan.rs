//! The planner (DESIGN §6 step 2): a pure function from demand, catalog sizes, clusters and
//! appliance capacities and inventories to fills and deletions. No I/O, no clock.
//!
//! For each cluster (upstream clusters first, so a downstream fill can name an upstream copy
//! that is only planned):
//! 1. **Eligible appliances**: those with `accepts_new` (not draining, not stale). Others get
//!    no fills and no deletions, and their copies do not count (the cluster places its copies
//!    on the eligible ones).
//! 2. **Rank** the renditions with predicted demand in the cluster (`demand` > 0, in bytes
//!    served tomorrow) by **value** = predicted bytes served per byte stored, highest first
//!    (ties by id). Renditions without demand are not placed.
//! 3. **Copy count**: with `D` the cluster's total demand and `N` its eligible appliances, an
//!    appliance's fair share of egress is `D / N`; a rendition gets
//!    `ceil(demand / (copy_share × D / N))` copies, clamped to `1..=min(max_copies, N)`. So
//!    the tail gets one copy and a rendition that alone would take more than `copy_share` of
//!    an appliance's share is spread over more appliances, up to `max_copies`.
//! 4. **Place** the copies on the first appliances of the rendition's rendezvous order
//!    ([`oca_common::rendezvous`], the order steering ranks a cluster's holders in), skipping
//!    any without room, in two passes. *Which*: most valuable first, an appliance keeps or
//!    gets the rendition if its **total room** (flash and disk together) still has room for
//!    it; an appliance that already holds it keeps it **on the tier it is on** (no churn),
//!    provided that tier can still hold it next to the more valuable held copies kept there,
//!    else the copy is moved (deleted, then filled as a new copy, the fill listing that
//!    deletion) — e.g. when a failed drive shrank the tier. *Where*: per appliance, kept
//!    held copies are charged to their own tier first; then new copies, most valuable
//!    first, go to `flash` if it has room, else `disk`. A held copy is never moved because
//!    more valuable new ones took its tier: the planner's tier is only a hint for new copies
//!    (the appliance's own tiering deals with heat). Room is `max_fill × capacity` per
//!    tier, counted from zero: what is not placed is deleted. Copies that find no room
//!    (including a new copy that fits the total but neither tier once held copies are
//!    charged) are counted in [`ClusterSummary`], never squeezed in.
//! 5. **Diff** against the inventory: a placed copy the appliance does not hold (or holds
//!    only a leading part of) is a [`Fill`]; a held rendition that is not placed on that
//!    appliance is a [`Delete`]. Fills are sorted most valuable first. Deletions are listed
//!    per appliance and tier **least valuable first** (value as in step 2 in the appliance's
//!    cluster; a held rendition without demand there, or not in the catalog, has value 0),
//!    ties by bytes (largest first), then id. A fill whose bytes do not fit in the tier's
//!    free space today lists in `needs_deletes` the deletions (indices into
//!    [`Plan::deletes`], in that order) that make room for it, so when the night's budget
//!    runs out the most valuable held renditions are still there: **a fill may start once
//!    its own `needs_deletes` and those of every earlier fill on the same appliance and tier
//!    are done**. Deletions no fill needs can run at any time.
//! 6. **Source** of each fill: an eligible peer in the same cluster that holds the whole
//!    rendition (one that keeps it first, then by rendezvous order), else an appliance of the
//!    cluster's `upstream` cluster that holds it or is planned to (`ready = false`: its own
//!    fill must finish first), else the origin.
//!
//! Held entries on the `ram` tier count as `flash`. Ids are assumed unique (the loader
//! checks); the result does not depend on the order of any input list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use oca_common::rendezvous::{mix64, rendition_hash};
use oca_common::wire::{RenditionId, Tier};
use serde::{Deserialize, Serialize};

/// Tuning of the planner (the config's `[plan]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanParams {
    /// Most copies of one rendition in one cluster.
    pub max_copies: u32,
    /// Share of one appliance's fair egress that one copy may carry before the rendition gets
    /// another copy (0 < share; see the module doc, step 3).
    pub copy_share: f64,
    /// Share of each tier's capacity the planner fills (0 < max_fill <= 1).
    pub max_fill: f64,
}

impl Default for PlanParams {
    fn default() -> Self {
        PlanParams {
            max_copies: 3,
            copy_share: 0.1,
            max_fill: 0.95,
        }
    }
}

/// A cluster of the sites file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInput {
    /// Cluster id.
    pub id: String,
    /// The cluster it fills from, or `origin`.
    pub upstream: String,
}

/// One rendition an appliance holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The rendition.
    pub rendition: RenditionId,
    /// Bytes held (less than the rendition's size when only a leading part is held).
    pub bytes: u64,
    /// Tier it is on.
    pub tier: Tier,
}

/// One appliance: where it is, what it can store, what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplianceInput {
    /// Appliance id.
    pub id: String,
    /// Its cluster.
    pub cluster: String,
    /// Flash capacity, bytes (drives in service).
    pub flash_bytes: u64,
    /// Disk capacity, bytes (drives in service).
    pub disk_bytes: u64,
    /// False for draining or stale appliances: no fills, no deletions, copies not counted.
    pub accepts_new: bool,
    /// Its inventory.
    pub held: Vec<Held>,
}

/// One rendition of the catalog with its demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionInput {
    /// The rendition.
    pub id: RenditionId,
    /// Its size, all files.
    pub bytes: u64,
    /// Predicted bytes served tomorrow, per cluster id (missing = 0).
    pub demand: BTreeMap<String, f64>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlanInput {
    /// Clusters (from the sites file).
    pub clusters: Vec<ClusterInput>,
    /// Appliances; those in a cluster not listed are ignored.
    pub appliances: Vec<ApplianceInput>,
    /// Renditions with their demand.
    pub renditions: Vec<RenditionInput>,
    /// Tuning.
    pub params: PlanParams,
}

/// Where a fill copies from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// An appliance of the same cluster that holds the whole rendition now.
    Peer {
        /// The appliance.
        appliance: String,
    },
    /// An appliance of the upstream cluster.
    Upstream {
        /// The upstream cluster.
        cluster: String,
        /// The appliance there.
        appliance: String,
        /// True if it holds the rendition now; false if its own fill (in this plan) must
        /// finish first.
        ready: bool,
    },
    /// The origin store.
    Origin,
}

/// Copy a rendition to an appliance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    /// Target appliance.
    pub appliance: String,
    /// Its cluster.
    pub cluster: String,
    /// The rendition.
    pub rendition: RenditionId,
    /// Bytes to copy (the rendition's size less the leading part already held).
    pub bytes: u64,
    /// Tier to store it on (the `x-oca-tier` hint).
    pub tier: Tier,
    /// Predicted bytes served per byte stored in this cluster (what "most valuable" means).
    pub value: f64,
    /// Where to copy from.
    pub source: Source,
    /// Indices into [`Plan::deletes`] to run first (see the module doc, step 5).
    pub needs_deletes: Vec<u32>,
}

/// Remove a rendition from an appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {
    /// The appliance.
    pub appliance: String,
    /// The rendition.
    pub rendition: RenditionId,
    /// Bytes it frees.
    pub bytes: u64,
    /// Tier it is on.
    pub tier: Tier,
}

/// What the plan does in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// Cluster id.
    pub id: String,
    /// Eligible appliances.
    pub appliances: u32,
    /// Renditions with demand here.
    pub renditions: u64,
    /// Copies wanted (sum of copy counts).
    pub copies_wanted: u64,
    /// Copies placed (held and kept, or filled).
    pub copies_placed: u64,
    /// Bytes placed.
    pub bytes_placed: u64,
    /// Wanted copies that found no room.
    pub copies_unplaced: u64,
    /// Their bytes.
    pub bytes_unplaced: u64,
}

/// The result: fills (most valuable first), deletions, and per-cluster totals.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Fills, most valuable first.
    pub fills: Vec<Fill>,
    /// Deletions: by appliance, tier, then least valuable first (see the module doc, step 5).
    pub deletes: Vec<Delete>,
    /// Per cluster, upstream clusters first.
    pub clusters: Vec<ClusterSummary>,
}

fn tier_slot(t: Tier) -> usize {
    match t {
        Tier::Ram | Tier::Flash => 0,
        Tier::Disk => 1,
    }
}

const TIERS: [Tier; 2] = [Tier::Flash, Tier::Disk];

/// One placed copy, by indices.
#[derive(Debug, Clone, Copy)]
struct Placed {
    appliance: u32,
    rendition: u32,
    tier: usize,
    value: f64,
    /// Bytes it takes on that tier (the rendition's size, or more if more is held).
    need: u64,
    /// Bytes already held on that tier (0 for a new copy).
    held: u64,
    /// The appliance holds it, on this tier, and keeps it.
    kept: bool,
    /// False if it found no room on either tier once held copies were charged (pass 2).
    ok: bool,
}

/// Orders clusters so that every cluster comes after its upstream (depth, then id).
fn cluster_order(clusters: &[ClusterInput]) -> Vec<usize> {
    let idx: HashMap<&str, usize> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let depth = |mut i: usize| -> usize {
        let mut d = 0;
        while let Some(&u) = idx.get(clusters[i].upstream.as_str()) {
            d += 1;
            if d > clusters.len() {
                break; // a cycle (the sites file rejects them): stop counting
            }
            i = u;
        }
        d
    };
    let mut order: Vec<(usize, usize)> = (0..clusters.len()).map(|i| (depth(i), i)).collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(clusters[a.1].id.cmp(&clusters[b.1].id)));
    order.into_iter().map(|(_, i)| i).collect()
}

/// A fast hasher for small keys (integers, short ids): FxHash's multiply-rotate. Not
/// DoS-resistant, which does not matter for a planner's own indices.
#[derive(Debug, Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ (bytes.len() as u64) << 56);
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<Fx>>;

/// The entries of a `(rendition, appliance)` list sorted by rendition, for one rendition.
fn entries_of(list: &[(u32, u32)], r: u32) -> &[(u32, u32)] {
    let lo = list.partition_point(|e| e.0 < r);
    let hi = lo + list[lo..].partition_point(|e| e.0 == r);
    &list[lo..hi]
}

/// Plans fills and deletions (see the module doc).
pub fn plan(input: &PlanInput) -> Plan {
    let p = &input.params;
    // Canonical order: by id, first of each id kept.
    let mut clusters: Vec<&ClusterInput> = input.clusters.iter().collect();
    clusters.sort_by(|a, b| a.id.cmp(&b.id));
    clusters.dedup_by(|a, b| a.id == b.id);
    let clusters: Vec<ClusterInput> = clusters.into_iter().cloned().collect();
    let mut apps: Vec<&ApplianceInput> = input.appliances.iter().collect();
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    apps.dedup_by(|a, b| a.id == b.id);
    let mut rends: Vec<&RenditionInput> = input.renditions.iter().collect();
    rends.sort_by(|a, b| a.id.cmp(&b.id));
    rends.dedup_by(|a, b| a.id == b.id);

    let cluster_idx: FastMap<&str, usize> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let rend_idx: FastMap<&str, u32> = rends
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i as u32))
        .collect();
    let rhash: Vec<u64> = rends
        .iter()
        .map(|r| rendition_hash(r.id.as_str()))
        .collect();
    let seeds: Vec<u64> = apps.iter().map(|a| rendition_hash(&a.id)).collect();
    // `weight(rh, seed)` is `mix64(rh ^ mix64(seed))`: the inner mix once per appliance.
    let mixed: Vec<u64> = seeds.iter().map(|&s| mix64(s)).collect();

    // Holdings per appliance, sorted by rendition index: (rendition, bytes, tier slot).
    // Renditions not in the catalog are only deleted (`unknown`: indices into `held`).
    let mut holdings: Vec<Vec<(u32, u64, usize)>> = Vec::with_capacity(apps.len());
    let mut unknown: Vec<Vec<usize>> = Vec::with_capacity(apps.len());
    for a in &apps {
        let mut h = Vec::with_capacity(a.held.len());
        let mut u = Vec::new();
        for (i, x) in a.held.iter().enumerate() {
            match rend_idx.get(x.rendition.as_str()) {
                Some(&r) => h.push((r, x.bytes, tier_slot(x.tier))),
                None => u.push(i),
            }
        }
        h.sort_unstable();
        h.dedup_by_key(|e| e.0);
        u.sort_by(|&i, &j| a.held[i].rendition.cmp(&a.held[j].rendition));
        u.dedup_by(|i, j| a.held[*i].rendition == a.held[*j].rendition);
        holdings.push(h);
        unknown.push(u);
    }

    // Members per cluster (eligible only), and whole-rendition holders per cluster.
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); clusters.len()];
    let mut app_cluster: Vec<Option<usize>> = vec![None; apps.len()];
    for (i, a) in apps.iter().enumerate() {
        if let Some(&c) = cluster_idx.get(a.cluster.as_str()) {
            app_cluster[i] = Some(c);
            if a.accepts_new {
                members[c].push(i as u32);
            }
        }
    }
    let rbytes: Vec<u64> = rends.iter().map(|r| r.bytes).collect();
    // Per cluster, what its eligible members hold, indexed by rendition: `held[c]` sorted by
    // (rendition, appliance), `start[c][r]..start[c][r + 1]` the entries of rendition `r`.
    let mut held: Vec<Vec<(u32, u32, u64, usize)>> = vec![Vec::new(); clusters.len()];
    let mut start: Vec<Vec<u32>> = vec![Vec::new(); clusters.len()];
    for (c, ms) in members.iter().enumerate() {
        let list = &mut held[c];
        for &a in ms {
            list.extend(
                holdings[a as usize]
                    .iter()
                    .map(|&(r, bytes, t)| (r, a, bytes, t)),
            );
        }
        list.sort_unstable();
        let mut st = vec![0u32; rends.len() + 1];
        for e in list.iter() {
            st[e.0 as usize + 1] += 1;
        }
        for i in 0..rends.len() {
            st[i + 1] += st[i];
        }
        start[c] = st;
    }
    let held_in = |c: usize, r: u32| -> &[(u32, u32, u64, usize)] {
        match start[c].get(r as usize..r as usize + 2) {
            Some(w) => &held[c][w[0] as usize..w[1] as usize],
            None => &[],
        }
    };

    // Demand per cluster: (rendition, bytes served, value).
    let mut demand: Vec<Vec<(u32, f64, f64)>> = vec![Vec::new(); clusters.len()];
    for (r, rend) in rends.iter().enumerate() {
        if rend.bytes == 0 {
            continue;
        }
        for (cid, &d) in &rend.demand {
            if let Some(&c) = cluster_idx.get(cid.as_str())
                && d.is_finite()
                && d > 0.0
            {
                demand[c].push((r as u32, d, d / rend.bytes as f64));
            }
        }
    }

    let is_upstream: Vec<bool> = {
        let mut v = vec![false; clusters.len()];
        for c in &clusters {
            if let Some(&u) = cluster_idx.get(c.upstream.as_str()) {
                v[u] = true;
            }
        }
        v
    };
    // Per upstream cluster: (rendition, appliance) planned, in rendezvous order per rendition.
    let mut planned_by: Vec<Vec<(u32, u32)>> = vec![Vec::new(); clusters.len()];
    let max_fill = if p.max_fill.is_finite() {
        p.max_fill.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let room: Vec<[u64; 2]> = apps
        .iter()
        .map(|a| {
            [
                (a.flash_bytes as f64 * max_fill) as u64,
                (a.disk_bytes as f64 * max_fill) as u64,
            ]
        })
        .collect();

    // Pass-1 room per appliance: `left` is the room left on both tiers together, `pin` each
    // tier's room left for held copies alone. (Per-tier room for new copies is pass 2's: a
    // pass-1 decision that depended on where a new copy lands would not survive re-planning
    // once it is held.)
    let mut left: Vec<u64> = room.iter().map(|r| r[0].saturating_add(r[1])).collect();
    let mut pin: Vec<[u64; 2]> = room.clone();
    // Pass-2 room per appliance and tier: exact, held copies charged first.
    let mut exact: Vec<[u64; 2]> = room.clone();

    let mut placed: Vec<Placed> = Vec::new();
    let mut cand: Vec<Placed> = Vec::new();
    // Per ranked rendition: (list index, copies wanted, range in `cand`).
    let mut spans: Vec<(usize, u64, usize, usize)> = Vec::new();
    let mut retier: FastSet<(u32, u32)> = FastSet::default();
    let mut fills: Vec<Fill> = Vec::new();
    // Sort key of each fill: value, appliance index, rendition index (indices follow ids).
    let mut fill_keys: Vec<(f64, u32, u32)> = Vec::new();
    let mut summaries = Vec::with_capacity(clusters.len());
    let mut order: Vec<(u64, u32)> = Vec::new();
    for c in cluster_order(&clusters) {
        let ms = &members[c];
        let n = ms.len() as u64;
        let mut sum = ClusterSummary {
            id: clusters[c].id.clone(),
            appliances: ms.len() as u32,
            ..ClusterSummary::default()
        };
        let list = &mut demand[c];
        // Value = demand / bytes, highest first; ties by id (rendition index order).
        list.sort_unstable_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        sum.renditions = list.len() as u64;
        if n == 0 {
            sum.copies_wanted = list.len() as u64;
            sum.copies_unplaced = sum.copies_wanted;
            sum.bytes_unplaced = list.iter().map(|x| rends[x.0 as usize].bytes).sum();
            summaries.push(sum);
            continue;
        }
        let total: f64 = list.iter().map(|x| x.1).sum();
        let per_copy = p.copy_share.max(f64::MIN_POSITIVE) * total / n as f64;
        let max_k = u64::from(p.max_copies.max(1)).min(n);
        let upstream = cluster_idx.get(clusters[c].upstream.as_str()).copied();

        // Pass 1: which appliances keep or get each rendition, most valuable first.
        cand.clear();
        spans.clear();
        for (li, &(r, d, value)) in list.iter().enumerate() {
            let bytes = rbytes[r as usize];
            let rh = rhash[r as usize];
            let want = ((d / per_copy).ceil() as u64).clamp(1, max_k);
            let here = held_in(c, r);
            order.clear();
            order.extend(
                ms.iter()
                    .map(|&a| (u64::MAX - mix64(rh ^ mixed[a as usize]), a)),
            );
            let first = cand.len();
            let mut got = 0;
            // Rendezvous order, best first, picked lazily (most walks stop after one or two).
            while got < want && !order.is_empty() {
                let (best, _) = order
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, k)| **k)
                    .unwrap_or((0, &(0, 0)));
                let (_, a) = order.swap_remove(best);
                let ai = a as usize;
                let held = here.iter().find(|e| e.1 == a).map(|e| (e.2, e.3));
                let slot = match held {
                    // Kept on its own tier if that tier can still hold it next to the more
                    // valuable held copies, and the appliance has room for it at all.
                    Some((h, t)) if pin[ai][t] >= bytes.max(h) && left[ai] >= bytes.max(h) => {
                        let need = bytes.max(h);
                        pin[ai][t] -= need;
                        left[ai] -= need;
                        Some((t, need, h, true))
                    }
                    // A new copy (or a held one its tier can no longer hold: moved); its tier
                    // is pass 2's.
                    _ if left[ai] >= bytes && room[ai].iter().any(|&t| t >= bytes) => {
                        left[ai] -= bytes;
                        if held.is_some() {
                            retier.insert((a, r));
                        }
                        Some((0, bytes, 0, false))
                    }
                    _ => None,
                };
                if let Some((t, need, held, kept)) = slot {
                    cand.push(Placed {
                        appliance: a,
                        rendition: r,
                        tier: t,
                        value,
                        need,
                        held,
                        kept,
                        ok: true,
                    });
                    got += 1;
                }
            }
            spans.push((li, want, first, cand.len()));
        }

        // Pass 2: tiers. Held copies are charged to their own tier first, then new copies,
        // most valuable first, go to flash if it has room, else disk, else nowhere.
        for x in cand.iter().filter(|x| x.kept) {
            let e = &mut exact[x.appliance as usize][x.tier];
            *e = e.saturating_sub(x.need);
        }
        for x in cand.iter_mut().filter(|x| !x.kept) {
            let e = &mut exact[x.appliance as usize];
            match (0..2).find(|&t| e[t] >= x.need) {
                Some(t) => {
                    e[t] -= x.need;
                    x.tier = t;
                }
                None => x.ok = false,
            }
        }

        // Pass 3: summaries, fills and their sources.
        for &(li, want, from, to) in &spans {
            let (r, _, _) = list[li];
            let bytes = rbytes[r as usize];
            let rh = rhash[r as usize];
            let here = held_in(c, r);
            let first_fill = placed.len();
            placed.extend(cand[from..to].iter().filter(|x| x.ok));
            let got = (placed.len() - first_fill) as u64;
            sum.copies_wanted += want;
            sum.copies_placed += got;
            sum.bytes_placed += got * bytes;
            sum.copies_unplaced += want - got;
            sum.bytes_unplaced += (want - got) * bytes;
            if is_upstream[c] {
                planned_by[c].extend(placed[first_fill..].iter().map(|x| (r, x.appliance)));
            }
            let mine = &placed[first_fill..];
            for x in mine {
                if x.kept && x.held >= bytes {
                    continue;
                }
                let kept = |b: u32| mine.iter().any(|y| y.appliance == b && y.kept);
                let mut best: Option<(bool, u64, u32)> = None;
                for &(_, h, hb, _) in here {
                    if h == x.appliance || hb < bytes {
                        continue;
                    }
                    let key = (!kept(h), u64::MAX - mix64(rh ^ mixed[h as usize]), h);
                    if best.is_none_or(|b| key < b) {
                        best = Some(key);
                    }
                }
                let source = if let Some((_, _, h)) = best {
                    Source::Peer {
                        appliance: apps[h as usize].id.clone(),
                    }
                } else if let Some(u) = upstream {
                    let whole = held_in(u, r).iter().filter(|e| e.2 >= bytes).map(|e| e.1);
                    upstream_source(
                        &clusters[u].id,
                        whole,
                        entries_of(&planned_by[u], r),
                        rh,
                        &mixed,
                        &apps,
                    )
                } else {
                    Source::Origin
                };
                fill_keys.push((x.value, x.appliance, r));
                fills.push(Fill {
                    appliance: apps[x.appliance as usize].id.clone(),
                    cluster: clusters[c].id.clone(),
                    rendition: rends[r as usize].id.clone(),
                    bytes: bytes - x.held.min(bytes),
                    tier: TIERS[x.tier],
                    value: x.value,
                    source,
                    needs_deletes: Vec::new(),
                });
            }
        }
        if is_upstream[c] {
            // Stable: keeps each rendition's appliances in rendezvous order.
            planned_by[c].sort_by_key(|e| e.0);
        }
        summaries.push(sum);
    }

    // Deletions: held (by eligible appliances) and not kept there. Per appliance (in id
    // order): by tier, then least valuable first (value in the appliance's cluster; 0 without
    // demand or for a rendition not in the catalog), then largest first, then rendition id.
    let mut kept_by: Vec<Vec<u32>> = vec![Vec::new(); apps.len()];
    for x in placed.iter().filter(|x| x.kept) {
        kept_by[x.appliance as usize].push(x.rendition);
    }
    let mut deletes: Vec<Delete> = Vec::new();
    // (appliance, tier slot) -> range of its deletions in `deletes`.
    let mut del_range: FastMap<(usize, usize), (usize, usize)> = FastMap::default();
    for (i, a) in apps.iter().enumerate() {
        if !a.accepts_new || app_cluster[i].is_none() {
            continue;
        }
        let kept = &mut kept_by[i];
        kept.sort_unstable();
        let cid = clusters[app_cluster[i].unwrap_or(0)].id.as_str();
        let mut mine: Vec<(usize, f64, u64, &RenditionId)> = Vec::new();
        for &(r, bytes, t) in &holdings[i] {
            if kept.binary_search(&r).is_err() {
                let rend = rends[r as usize];
                mine.push((t, value_in(rend, cid), bytes, &rend.id));
            }
        }
        for &u in &unknown[i] {
            let h = &a.held[u];
            mine.push((tier_slot(h.tier), 0.0, h.bytes, &h.rendition));
        }
        mine.sort_unstable_by(|x, y| {
            x.0.cmp(&y.0)
                .then(x.1.total_cmp(&y.1))
                .then(y.2.cmp(&x.2))
                .then(x.3.cmp(y.3))
        });
        let mut k = 0;
        while k < mine.len() {
            let t = mine[k].0;
            let start = deletes.len();
            while k < mine.len() && mine[k].0 == t {
                deletes.push(Delete {
                    appliance: a.id.clone(),
                    rendition: mine[k].3.clone(),
                    bytes: mine[k].2,
                    tier: TIERS[t],
                });
                k += 1;
            }
            del_range.insert((i, t), (start, deletes.len()));
        }
    }

    let mut perm: Vec<u32> = (0..fills.len() as u32).collect();
    perm.sort_unstable_by(|&i, &j| {
        let (x, y) = (fill_keys[i as usize], fill_keys[j as usize]);
        y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2))
    });
    let mut slots: Vec<Option<Fill>> = fills.into_iter().map(Some).collect();
    let mut fills: Vec<Fill> = perm
        .iter()
        .filter_map(|&i| slots[i as usize].take())
        .collect();

    // Which deletions each fill needs: walk fills in order per (appliance, tier), taking
    // that pair's deletions (least valuable first) while the free space is short.
    let app_idx: FastMap<&str, usize> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    let mut free: Vec<[i128; 2]> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut used = [0i128; 2];
            for h in &a.held {
                used[tier_slot(h.tier)] += i128::from(h.bytes);
            }
            [
                i128::from(room[i][0]) - used[0],
                i128::from(room[i][1]) - used[1],
            ]
        })
        .collect();
    let own_delete = |a: usize, r: &RenditionId| -> Option<u32> {
        (0..2).find_map(|t| {
            let &(s, e) = del_range.get(&(a, t))?;
            (s..e)
                .find(|&i| deletes[i].rendition == *r)
                .map(|i| i as u32)
        })
    };
    let mut next_del = del_range.clone();
    for f in &mut fills {
        let a = app_idx[f.appliance.as_str()];
        let t = tier_slot(f.tier);
        let need = i128::from(f.bytes);
        if !retier.is_empty()
            && retier.contains(&(a as u32, rend_idx[f.rendition.as_str()]))
            && let Some(d) = own_delete(a, &f.rendition)
        {
            f.needs_deletes.push(d);
        }
        if let Some((next, end)) = next_del.get_mut(&(a, t)) {
            while free[a][t] < need && *next < *end {
                free[a][t] += i128::from(deletes[*next].bytes);
                f.needs_deletes.push(*next as u32);
                *next += 1;
            }
        }
        free[a][t] -= need;
    }

    Plan {
        fills,
        deletes,
        clusters: summaries,
    }
}

/// Value of a rendition in a cluster (step 2): predicted bytes served per byte stored, 0
/// without demand there.
fn value_in(r: &RenditionInput, cluster: &str) -> f64 {
    match r.demand.get(cluster) {
        Some(&d) if r.bytes > 0 && d.is_finite() && d > 0.0 => d / r.bytes as f64,
        _ => 0.0,
    }
}

/// The upstream source: a holder now (best rendezvous weight), else the first planned copy.
fn upstream_source(
    cluster: &str,
    holders: impl Iterator<Item = u32>,
    planned: &[(u32, u32)],
    rh: u64,
    mixed: &[u64],
    apps: &[&ApplianceInput],
) -> Source {
    let best = holders.min_by_key(|&h| (u64::MAX - mix64(rh ^ mixed[h as usize]), h));
    if let Some(h) = best {
        return Source::Upstream {
            cluster: cluster.to_owned(),
            appliance: apps[h as usize].id.clone(),
            ready: true,
        };
    }
    if let Some(&(_, h)) = planned.first() {
        return Source::Upstream {
            cluster: cluster.to_owned(),
            appliance: apps[h as usize].id.clone(),
            ready: false,
        };
    }
    Source::Origin
}

#[cfg(test)]
mod tests;
