//! The appliance registry (DESIGN §4 "Heartbeat", §5): state from heartbeats, and the
//! immutable [`Snapshot`] ranking reads.
//!
//! [`State::apply`] is the pure part: it validates a heartbeat against the sites file,
//! records state, load, tiers, prefixes and the process start time, and keeps the inventory
//! by generation — a full set replaces it; a delta is applied only when its `base` equals the
//! generation held, otherwise the answer asks for the full set (`want_full_inventory`). A new
//! `started_at` (a restart) forgets the old inventory. [`Registry`] wraps it in a mutex for
//! writers and publishes a new snapshot through an `ArcSwap` after each change, so ranking
//! never takes a lock. The prefix table is rebuilt only when prefixes or membership change,
//! and, when a whole fleet registers at once, at most once per twice the last rebuild's cost
//! (until then the snapshot keeps the previous table). Cluster membership is rebuilt at once
//! when an appliance joins or moves, and the "who holds what" index
//! ([`crate::holders::HolderIndex`]) follows each inventory delta, copying only the shards
//! it touches.
//!
//! Staleness (three missed intervals) is decided at ranking time from `now`, so nothing has
//! to run on a timer. What it does not do: persist anything (the registry is rebuilt from
//! heartbeats within one interval after a restart), authenticate (see [`authorize`]), or
//! forget appliances (a stale one stays listed as stale in `/v1/ocas`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use oca_common::wire::{Heartbeat, HeartbeatResponse, Load, OcaEntry, OcaState, TierStatus};

use crate::config::valid_appliance_id;
use crate::error::SteeringError;
use crate::holders::HolderIndex;
use crate::rank::{
    ApplianceView, Holdings, Slots, Snapshot, Topology, holder_index, rendition_hash,
};
use crate::trie::PrefixTable;

/// Shortest interval an appliance may claim (so a bad value cannot make it stale at once).
const MIN_INTERVAL_MS: u64 = 50;
/// Longest interval an appliance may claim (so a dead one leaves rankings in bounded time).
const MAX_INTERVAL_MS: u64 = 300_000;
/// Prefix tables at least this large get the IPv4 fast path ([`PrefixTable::freeze`]).
pub const FREEZE_FROM: usize = 10_000;
/// Most BGP prefixes one heartbeat may carry.
pub const MAX_PREFIXES: usize = 1 << 20;

/// What the registry keeps per appliance beyond its [`ApplianceView`].
#[derive(Debug, Clone)]
struct Entry {
    view: Arc<ApplianceView>,
    site: String,
    public_urls: Vec<String>,
    load: Load,
    tiers: Vec<TierStatus>,
    prefixes: Vec<IpNet>,
    started_at: u64,
    generation: u64,
}

/// The registry's mutable state (behind [`Registry`]'s mutex).
#[derive(Debug, Default)]
pub struct State {
    entries: Vec<Entry>,
    by_id: HashMap<String, u32>,
    routes: Arc<PrefixTable<Slots>>,
    members: Arc<Vec<Vec<u32>>>,
    /// Prefixes or membership changed since the last [`State::rebuild_routes`].
    routes_dirty: bool,
    /// Cluster membership changed since `members` was last built.
    members_dirty: bool,
    /// Who holds what (copy-on-write: a snapshot shares the shards not changed since).
    holders: Arc<HolderIndex>,
    /// Changes not yet applied to `holders` ([`State::refresh_holders`]).
    holder_ops: Vec<HolderOp>,
}

/// One pending change of the holders index: appliance `slot` now holds the renditions `add`
/// and no longer holds `remove` (by [`rendition_hash`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HolderOp {
    slot: u32,
    add: Vec<u64>,
    remove: Vec<u64>,
}

/// Held = listed with at least one file (as [`ApplianceView::holds`] counts it).
fn held(h: &Holdings, k: u64) -> bool {
    h.get(&k).is_some_and(|e| e.files_held > 0)
}

fn held_keys(h: &Holdings) -> Vec<u64> {
    h.iter()
        .filter(|(_, e)| e.files_held > 0)
        .map(|(k, _)| *k)
        .collect()
}

/// What one heartbeat changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changes {
    /// A new appliance registered.
    pub new: bool,
    /// The inventory changed.
    pub inventory: bool,
    /// Prefixes or cluster membership changed (the prefix table must be rebuilt).
    pub routes: bool,
}

fn parse_prefixes(list: &[String]) -> Result<Vec<IpNet>, SteeringError> {
    if list.len() > MAX_PREFIXES {
        return Err(SteeringError::BadPrefix(format!(
            "{} prefixes (at most {MAX_PREFIXES})",
            list.len()
        )));
    }
    let mut v: Vec<IpNet> = list
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| SteeringError::BadPrefix(s.chars().take(64).collect()))
        })
        .collect::<Result<_, _>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

fn check_url(u: &str) -> Result<(), SteeringError> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    match rest {
        Some(r)
            if !r.is_empty()
                && u.len() <= 512
                && !r.starts_with('/')
                && !u.contains(['?', '#', ' ', '"', '<', '>', '\\']) =>
        {
            Ok(())
        }
        _ => Err(SteeringError::BadUrl(u.chars().take(128).collect())),
    }
}

impl State {
    /// Applies one heartbeat received at `now_ms` (Unix milliseconds). `default_interval` is
    /// assumed when the heartbeat does not carry `interval_ms`. Refused heartbeats change
    /// nothing.
    pub fn apply(
        &mut self,
        hb: &Heartbeat,
        now_ms: u64,
        topo: &Topology,
        default_interval: Duration,
    ) -> Result<(HeartbeatResponse, Changes), SteeringError> {
        if !valid_appliance_id(&hb.id) {
            return Err(SteeringError::BadApplianceId(
                hb.id.chars().take(64).collect(),
            ));
        }
        let Some(&cluster) = topo.by_id.get(&hb.cluster) else {
            return Err(SteeringError::UnknownCluster(
                hb.cluster.chars().take(64).collect(),
            ));
        };
        let want_site = &topo.clusters[cluster as usize].site;
        if *want_site != hb.site {
            return Err(SteeringError::SiteMismatch {
                cluster: hb.cluster.clone(),
                want: want_site.clone(),
                got: hb.site.chars().take(64).collect(),
            });
        }
        for u in &hb.public_urls {
            check_url(u)?;
        }
        let prefixes = parse_prefixes(&hb.bgp_prefixes)?;
        let interval_ms = hb
            .interval_ms
            .unwrap_or(default_interval.as_millis() as u64)
            .clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS);

        let mut changes = Changes::default();
        let slot = match self.by_id.get(&hb.id) {
            Some(&s) => s,
            None => {
                let s = self.entries.len() as u32;
                self.entries.push(Entry {
                    view: Arc::new(ApplianceView {
                        id: hb.id.clone(),
                        cluster,
                        url: None,
                        state: hb.state,
                        egress_bps: 0,
                        capacity_bps: 0,
                        last_heartbeat_ms: now_ms,
                        stale_after_ms: 3 * interval_ms,
                        seed: rendition_hash(&hb.id),
                        holdings: Arc::new(Holdings::default()),
                    }),
                    site: hb.site.clone(),
                    public_urls: Vec::new(),
                    load: hb.load.clone(),
                    tiers: Vec::new(),
                    prefixes: Vec::new(),
                    started_at: hb.started_at,
                    generation: 0,
                });
                self.by_id.insert(hb.id.clone(), s);
                changes.new = true;
                changes.routes = true;
                s
            }
        };
        let entry = &mut self.entries[slot as usize];
        let mut view = (*entry.view).clone();
        let old_cluster = view.cluster;
        let old_holdings = view.holdings.clone();
        // Renditions a delta touched; `None` once the inventory is replaced as a whole.
        let mut touched: Option<Vec<u64>> = Some(Vec::new());
        if view.cluster != cluster {
            changes.routes = true;
        }
        if entry.prefixes != prefixes {
            changes.routes = true;
        }
        // A restart: the old inventory and generation mean nothing any more.
        if entry.started_at != hb.started_at {
            entry.started_at = hb.started_at;
            entry.generation = 0;
            if !view.holdings.is_empty() {
                view.holdings = Arc::new(Holdings::default());
                changes.inventory = true;
                touched = None;
            }
        }
        let inv = &hb.inventory;
        let mut want_full = false;
        if inv.full {
            let mut h = Holdings::default();
            h.reserve(inv.added.len());
            for e in &inv.added {
                h.insert(rendition_hash(e.rendition.as_str()), e.clone());
            }
            view.holdings = Arc::new(h);
            entry.generation = inv.generation;
            changes.inventory = true;
            touched = None;
        } else if inv.base == Some(entry.generation) && !changes.new {
            if !inv.added.is_empty() || !inv.removed.is_empty() {
                if let Some(t) = &mut touched {
                    t.extend(inv.removed.iter().map(|r| rendition_hash(r.as_str())));
                    t.extend(
                        inv.added
                            .iter()
                            .map(|e| rendition_hash(e.rendition.as_str())),
                    );
                }
                let h = Arc::make_mut(&mut view.holdings);
                for r in &inv.removed {
                    let k = rendition_hash(r.as_str());
                    if h.get(&k).is_some_and(|e| e.rendition == *r) {
                        h.remove(&k);
                    }
                }
                for e in &inv.added {
                    h.insert(rendition_hash(e.rendition.as_str()), e.clone());
                }
                changes.inventory = true;
            }
            entry.generation = inv.generation;
        } else if !(inv.base.is_none()
            && inv.added.is_empty()
            && inv.removed.is_empty()
            && inv.generation == entry.generation
            && !changes.new)
        {
            want_full = true;
        }
        view.cluster = cluster;
        view.url = hb
            .public_urls
            .first()
            .map(|u| u.trim_end_matches('/').to_owned());
        view.state = hb.state;
        view.egress_bps = hb.load.egress_bps;
        view.capacity_bps = hb.load.capacity_bps;
        view.last_heartbeat_ms = now_ms;
        view.stale_after_ms = 3 * interval_ms;
        let new_holdings = view.holdings.clone();
        entry.view = Arc::new(view);
        entry.site = hb.site.clone();
        entry.public_urls = hb.public_urls.clone();
        entry.load = hb.load.clone();
        entry.tiers = hb.tiers.clone();
        entry.prefixes = prefixes;
        if changes.routes {
            self.routes_dirty = true;
        }
        // The holders index follows from the inventory delta (or, when the inventory was
        // replaced as a whole, from a diff of the two), not from a rebuild. It is by slot, so
        // a cluster move changes membership only.
        if old_cluster != cluster || changes.new {
            self.members_dirty = true;
        }
        if !Arc::ptr_eq(&old_holdings, &new_holdings) {
            let (mut add, mut remove) = (Vec::new(), Vec::new());
            match touched {
                Some(mut keys) => {
                    keys.sort_unstable();
                    keys.dedup();
                    for k in keys {
                        match (held(&old_holdings, k), held(&new_holdings, k)) {
                            (false, true) => add.push(k),
                            (true, false) => remove.push(k),
                            _ => {}
                        }
                    }
                }
                None => {
                    add.extend(
                        held_keys(&new_holdings)
                            .into_iter()
                            .filter(|&k| !held(&old_holdings, k)),
                    );
                    remove.extend(
                        held_keys(&old_holdings)
                            .into_iter()
                            .filter(|&k| !held(&new_holdings, k)),
                    );
                }
            }
            if !add.is_empty() || !remove.is_empty() {
                self.holder_ops.push(HolderOp { slot, add, remove });
            }
        }
        Ok((
            HeartbeatResponse {
                acked_generation: self.entries[slot as usize].generation,
                want_full_inventory: want_full,
                interval_secs: None,
            },
            changes,
        ))
    }

    /// Applies the pending inventory changes to the holders index (only the shards touched
    /// are copied; the published snapshot still shares the old ones), and rebuilds cluster
    /// membership if an appliance joined or moved (cheap: one pass over the appliances; the
    /// prefix table has its own, rate-limited, rebuild).
    pub fn refresh_holders(&mut self, topo: &Topology) {
        if !self.holder_ops.is_empty() {
            let ix = Arc::make_mut(&mut self.holders);
            for op in std::mem::take(&mut self.holder_ops) {
                for k in op.remove {
                    ix.set(k, op.slot, false);
                }
                for k in op.add {
                    ix.set(k, op.slot, true);
                }
            }
        }
        if self.members_dirty || self.members.len() != topo.clusters.len() {
            self.rebuild_members(topo);
        }
    }

    fn rebuild_members(&mut self, topo: &Topology) {
        let mut members = vec![Vec::new(); topo.clusters.len()];
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(m) = members.get_mut(e.view.cluster as usize) {
                m.push(i as u32);
            }
        }
        self.members = Arc::new(members);
        self.members_dirty = false;
    }

    /// The holders index rebuilt from every appliance's inventory (what the incremental
    /// [`State::refresh_holders`] must equal).
    pub fn holders_rebuilt(&self) -> HolderIndex {
        let views: Vec<Arc<ApplianceView>> = self.entries.iter().map(|e| e.view.clone()).collect();
        holder_index(&views)
    }

    /// The current (incremental) holders index.
    pub fn holders(&self) -> &HolderIndex {
        &self.holders
    }

    /// True if prefixes or membership changed since the last rebuild.
    pub fn routes_dirty(&self) -> bool {
        self.routes_dirty
    }

    /// Rebuilds the prefix table and cluster membership from every appliance (the snapshot
    /// keeps using the previous ones until then).
    pub fn rebuild_routes(&mut self, topo: &Topology) {
        self.routes_dirty = false;
        let mut routes: PrefixTable<Slots> = PrefixTable::new();
        for (i, e) in self.entries.iter().enumerate() {
            for p in &e.prefixes {
                routes.entry_or_default(*p).push(i as u32);
            }
        }
        // The IPv4 fast path costs 64 MiB; small tables are fast enough without it.
        if routes.len() >= FREEZE_FROM {
            routes.freeze();
        }
        self.routes = Arc::new(routes);
        self.rebuild_members(topo);
    }

    /// The snapshot ranking reads.
    pub fn snapshot(&self, topo: &Arc<Topology>) -> Snapshot {
        Snapshot::new(
            self.entries.iter().map(|e| e.view.clone()).collect(),
            self.members.clone(),
            self.holders.clone(),
            self.routes.clone(),
            topo.clone(),
        )
    }

    /// The registry as `GET /v1/ocas` lists it, in registration order.
    pub fn entries(&self, now_ms: u64) -> Vec<OcaEntry> {
        self.entries
            .iter()
            .map(|e| OcaEntry {
                id: e.view.id.clone(),
                site: e.site.clone(),
                cluster: e.view.cluster.to_string(),
                public_urls: e.public_urls.clone(),
                state: e.view.state,
                load: e.load.clone(),
                tiers: e.tiers.clone(),
                renditions: e.view.holdings.len() as u64,
                bgp_prefixes: e.prefixes.iter().map(ToString::to_string).collect(),
                last_heartbeat: e.view.last_heartbeat_ms / 1000,
                stale: !e.view.fresh(now_ms),
            })
            .collect()
    }

    /// Counts of appliances by state at `now_ms`: (up, degraded, draining, stale).
    pub fn counts(&self, now_ms: u64) -> [u64; 4] {
        let mut c = [0u64; 4];
        for e in &self.entries {
            let i = if !e.view.fresh(now_ms) {
                3
            } else {
                match e.view.state {
                    OcaState::Up => 0,
                    OcaState::Degraded => 1,
                    OcaState::Draining => 2,
                }
            };
            c[i] += 1;
        }
        c
    }
}

/// The registry shared by the HTTP handlers: a mutex for heartbeats, an `ArcSwap` snapshot
/// for decisions.
#[derive(Debug)]
pub struct Registry {
    state: Mutex<State>,
    snapshot: ArcSwap<Snapshot>,
    topology: Arc<Topology>,
    default_interval: Duration,
    /// When the prefix table was last rebuilt, and what that cost.
    rebuild: Mutex<(Option<std::time::Instant>, Duration)>,
}

impl Registry {
    /// An empty registry over the clusters of the sites file.
    pub fn new(topology: Topology, default_interval: Duration) -> Registry {
        let topology = Arc::new(topology);
        let state = State::default();
        let snap = state.snapshot(&topology);
        Registry {
            state: Mutex::new(state),
            snapshot: ArcSwap::from_pointee(snap),
            topology,
            default_interval,
            rebuild: Mutex::new((None, Duration::ZERO)),
        }
    }

    /// Applies a heartbeat and publishes the new snapshot.
    pub fn heartbeat(
        &self,
        hb: &Heartbeat,
        now_ms: u64,
    ) -> Result<(HeartbeatResponse, Changes), SteeringError> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let r = st.apply(hb, now_ms, &self.topology, self.default_interval)?;
        st.refresh_holders(&self.topology);
        if st.routes_dirty() {
            // Rebuilding a large prefix table costs time (about half a second for 1M
            // prefixes): when a fleet registers at once, rebuild at most once per twice the
            // last rebuild's cost, so rebuilds take at most half a core. Small tables are
            // rebuilt at once.
            let mut rb = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
            let due = rb.0.is_none_or(|last| last.elapsed() >= rb.1 * 2);
            if due {
                let t0 = std::time::Instant::now();
                st.rebuild_routes(&self.topology);
                *rb = (Some(std::time::Instant::now()), t0.elapsed());
            }
        }
        self.snapshot.store(Arc::new(st.snapshot(&self.topology)));
        Ok(r)
    }

    /// Rebuilds the prefix table now if it is behind (see [`Registry::heartbeat`]).
    pub fn flush_routes(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.routes_dirty() {
            st.rebuild_routes(&self.topology);
            self.snapshot.store(Arc::new(st.snapshot(&self.topology)));
        }
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// `GET /v1/ocas`, with cluster ids spelled out.
    pub fn entries(&self, now_ms: u64) -> Vec<OcaEntry> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v = st.entries(now_ms);
        for e in &mut v {
            if let Some(c) = e
                .cluster
                .parse::<usize>()
                .ok()
                .and_then(|i| self.topology.clusters.get(i))
            {
                e.cluster = c.id.clone();
            }
        }
        v
    }

    /// Appliance counts by state: (up, degraded, draining, stale).
    pub fn counts(&self, now_ms: u64) -> [u64; 4] {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts(now_ms)
    }

    /// The clusters.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }
}

/// Why a heartbeat's bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header (401).
    Missing,
    /// A token, but not the one configured for this appliance id, or no token configured
    /// for it (403).
    Wrong,
}

/// Checks `bearer` against the SHA-256 configured for appliance `id`, in constant time.
pub fn authorize(
    tokens: &std::collections::BTreeMap<String, String>,
    id: &str,
    bearer: Option<&str>,
) -> Result<(), AuthError> {
    let Some(token) = bearer.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(AuthError::Missing);
    };
    let Some(want) = tokens.get(id).and_then(|h| hex::decode(h).ok()) else {
        return Err(AuthError::Wrong);
    };
    let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(got.as_ref(), &want)
        .map_err(|_| AuthError::Wrong)
}

/// True if `token` is the token of some configured appliance (hashed once, compared in
/// constant time with each configured hash).
pub fn known_token(tokens: &std::collections::BTreeMap<String, String>, token: &str) -> bool {
    let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.trim().as_bytes());
    let mut found = false;
    for h in tokens.values() {
        if let Ok(want) = hex::decode(h) {
            found |= aws_lc_rs::constant_time::verify_slices_are_equal(got.as_ref(), &want).is_ok();
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::tests::{NOW, rid, sites};
    use oca_common::wire::{Inventory, InventoryEntry, Tier};

    fn entry(r: &str) -> InventoryEntry {
        InventoryEntry {
            rendition: rid(r),
            files_held: 3,
            total_files: 3,
            bytes: 300,
            tier: Tier::Disk,
        }
    }

    fn hb(id: &str, inventory: Inventory) -> Heartbeat {
        Heartbeat {
            id: id.into(),
            site: "s1".into(),
            cluster: "isp-a".into(),
            public_urls: vec![format!("https://{id}.example.net/")],
            state: OcaState::Up,
            load: Load {
                egress_bps: 10,
                capacity_bps: 100,
                connections: 1,
            },
            tiers: Vec::new(),
            inventory,
            bgp_prefixes: vec!["10.0.0.0/16".into(), "2001:db8::/32".into()],
            started_at: 1000,
            sent_at: 1001,
            version: "0.1.0".into(),
            interval_ms: Some(200),
        }
    }

    fn full(generation: u64, list: &[&str]) -> Inventory {
        Inventory {
            generation,
            full: true,
            added: list.iter().map(|r| entry(r)).collect(),
            removed: Vec::new(),
            base: None,
        }
    }

    fn delta(base: u64, generation: u64, add: &[&str], rm: &[&str]) -> Inventory {
        Inventory {
            generation,
            full: false,
            added: add.iter().map(|r| entry(r)).collect(),
            removed: rm.iter().map(|r| rid(r)).collect(),
            base: Some(base),
        }
    }

    fn held(st: &State, topo: &Arc<Topology>) -> Vec<String> {
        let snap = st.snapshot(topo);
        let mut v: Vec<String> = snap.appliances[0]
            .holdings
            .values()
            .map(|e| e.rendition.to_string())
            .collect();
        v.sort();
        v
    }

    /// The incremental holders index equals a rebuild after every step of a long random
    /// sequence of joins, full inventories, deltas (adds, removes, entries with no file
    /// held, removes of what is not held), restarts that empty the inventory (leaves) and
    /// cluster moves.
    #[test]
    fn incremental_holders_equal_rebuild() {
        let topo = Arc::new(Topology::from_sites(&sites()));
        let clusters = ["isp-a", "isp-b", "ixp"];
        let mut st = State::default();
        let names: Vec<String> = (0..40).map(|i| format!("t{i}/720p")).collect();
        // Per appliance: (generation, cluster index, started_at).
        let mut apps: Vec<(u64, usize, u64)> = Vec::new();
        struct Rng(u64);
        impl Rng {
            fn below(&mut self, n: u64) -> u64 {
                self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
                crate::rank::mix64(self.0) % n
            }
        }
        let mut rng = Rng(0x1234_5678);
        let names_of = |rng: &mut Rng, k: u64| -> Vec<String> {
            (0..k)
                .map(|_| names[rng.below(names.len() as u64) as usize].clone())
                .collect()
        };
        let mut steps = [0usize; 5];
        for step in 0..600u64 {
            let now = NOW + step;
            let pick = rng.below(8) as usize;
            let who = if apps.len() < 6 && (apps.is_empty() || pick == 0) {
                apps.push((0, rng.below(3) as usize, 1000));
                apps.len() - 1
            } else {
                rng.below(apps.len() as u64) as usize
            };
            let id = format!("oca-{who}");
            let (generation, cluster, started) = apps[who];
            let (inventory, kind) = match rng.below(10) {
                _ if generation == 0 => {
                    let l = {
                        let k = rng.below(15);
                        names_of(&mut rng, k)
                    };
                    let r: Vec<&str> = l.iter().map(String::as_str).collect();
                    (full(generation + 1, &r), 0)
                }
                0 => {
                    let l = {
                        let k = rng.below(15);
                        names_of(&mut rng, k)
                    };
                    let r: Vec<&str> = l.iter().map(String::as_str).collect();
                    (full(generation + 1, &r), 0)
                }
                1 => {
                    // A cluster move (with a small delta).
                    apps[who].1 = (cluster + 1 + rng.below(2) as usize) % 3;
                    let a = names_of(&mut rng, 2);
                    let ar: Vec<&str> = a.iter().map(String::as_str).collect();
                    (delta(generation, generation + 1, &ar, &[]), 1)
                }
                2 => {
                    // A restart: the inventory is forgotten, then re-sent empty (a leave).
                    apps[who].2 = started + 1;
                    (full(1, &[]), 2)
                }
                _ => {
                    let a = {
                        let k = rng.below(4);
                        names_of(&mut rng, k)
                    };
                    let r = {
                        let k = rng.below(4);
                        names_of(&mut rng, k)
                    };
                    let ar: Vec<&str> = a.iter().map(String::as_str).collect();
                    let rr: Vec<&str> = r.iter().map(String::as_str).collect();
                    let mut inv = delta(generation, generation + 1, &ar, &rr);
                    // Sometimes an entry with no file held (listed, not held).
                    if let Some(e) = inv.added.first_mut()
                        && rng.below(4) == 0
                    {
                        e.files_held = 0;
                    }
                    (inv, 3 + usize::from(!inv_is_small(&ar, &rr)))
                }
            };
            steps[kind] += 1;
            let mut h = hb(&id, inventory);
            h.cluster = clusters[apps[who].1].into();
            h.started_at = apps[who].2;
            let (resp, _) = st.apply(&h, now, &topo, Duration::from_secs(1)).unwrap();
            apps[who].0 = resp.acked_generation;
            assert!(!resp.want_full_inventory, "step {step}: delta refused");
            st.refresh_holders(&topo);
            assert_eq!(
                st.holders().to_map(),
                st.holders_rebuilt().to_map(),
                "step {step} (kind {kind})"
            );
            // Membership follows cluster moves at once.
            for (slot, &(_, c, _)) in apps.iter().enumerate() {
                assert!(st.members[c].contains(&(slot as u32)), "step {step}");
            }
        }
        // The sequence exercised every kind of change.
        assert!(steps.iter().all(|&n| n > 0), "{steps:?}");
        assert!(!st.holders().is_empty(), "the index is not trivially empty");
    }

    fn inv_is_small(a: &[&str], r: &[&str]) -> bool {
        a.len() + r.len() <= 2
    }

    #[test]
    fn inventory_by_generation() {
        let topo = Arc::new(Topology::from_sites(&sites()));
        let d = Duration::from_secs(5);
        let mut st = State::default();
        // A first delta from an unknown appliance: registered, asked for the full set.
        let (r, c) = st
            .apply(&hb("a", delta(0, 1, &["t/1"], &[])), NOW, &topo, d)
            .unwrap();
        assert!(r.want_full_inventory && c.new && c.routes);
        assert_eq!(r.acked_generation, 0);
        assert!(held(&st, &topo).is_empty());
        let (r, c) = st
            .apply(&hb("a", full(5, &["t/1", "t/2"])), NOW, &topo, d)
            .unwrap();
        assert_eq!((r.acked_generation, r.want_full_inventory), (5, false));
        assert!(c.inventory && !c.routes && !c.new);
        assert_eq!(held(&st, &topo), ["t/1", "t/2"]);
        // A delta on the held generation applies.
        let (r, _) = st
            .apply(&hb("a", delta(5, 7, &["t/3"], &["t/1"])), NOW, &topo, d)
            .unwrap();
        assert_eq!((r.acked_generation, r.want_full_inventory), (7, false));
        assert_eq!(held(&st, &topo), ["t/2", "t/3"]);
        // A delta on another base is refused: full set wanted, nothing changes.
        let (r, c) = st
            .apply(&hb("a", delta(6, 8, &["t/9"], &[])), NOW, &topo, d)
            .unwrap();
        assert_eq!((r.acked_generation, r.want_full_inventory), (7, true));
        assert!(!c.inventory);
        assert_eq!(held(&st, &topo), ["t/2", "t/3"]);
        // An empty delta on the held generation keeps it.
        let (r, _) = st
            .apply(&hb("a", delta(7, 7, &[], &[])), NOW, &topo, d)
            .unwrap();
        assert_eq!((r.acked_generation, r.want_full_inventory), (7, false));
        // A restart (new started_at) forgets the inventory and asks for it.
        let mut restarted = hb("a", delta(7, 8, &["t/4"], &[]));
        restarted.started_at = 2000;
        let (r, c) = st.apply(&restarted, NOW, &topo, d).unwrap();
        assert!(r.want_full_inventory && c.inventory);
        assert_eq!(r.acked_generation, 0);
        assert!(held(&st, &topo).is_empty());
    }

    #[test]
    fn state_load_prefixes_and_staleness() {
        let topo = Arc::new(Topology::from_sites(&sites()));
        let d = Duration::from_secs(5);
        let mut st = State::default();
        st.apply(&hb("a", full(1, &["t/1"])), NOW, &topo, d)
            .unwrap();
        let mut b = hb("b", full(1, &[]));
        b.interval_ms = None;
        b.state = OcaState::Draining;
        st.apply(&b, NOW, &topo, d).unwrap();
        assert!(st.routes_dirty());
        st.rebuild_routes(&topo);
        assert!(!st.routes_dirty());
        let snap = st.snapshot(&topo);
        assert_eq!(
            snap.appliances[0].url.as_deref(),
            Some("https://a.example.net")
        );
        assert_eq!(snap.appliances[0].stale_after_ms, 600);
        assert_eq!(snap.appliances[1].stale_after_ms, 15_000);
        assert_eq!(snap.routes.len(), 2);
        assert_eq!(
            snap.routes.matches("10.0.1.1".parse().unwrap())[0]
                .1
                .as_slice(),
            [0, 1]
        );
        assert_eq!(snap.members[0], vec![0, 1]);
        // The holders index of cluster isp-a is behind until refreshed.
        st.refresh_holders(&topo);
        let snap = st.snapshot(&topo);
        let row = snap.holders.row(rendition_hash("t/1"));
        assert_eq!(row.slots().collect::<Vec<_>>(), [0]);
        assert!(
            snap.holders
                .row(rendition_hash("t/2"))
                .slots()
                .next()
                .is_none()
        );
        assert_eq!(st.counts(NOW), [1, 0, 1, 0]);
        // 3 intervals of 200 ms: stale after 600 ms.
        assert_eq!(st.counts(NOW + 601), [0, 0, 1, 1]);
        let e = st.entries(NOW + 601);
        assert!(e[0].stale && !e[1].stale);
        assert_eq!(e[0].renditions, 1);
        assert_eq!(e[0].bgp_prefixes, ["10.0.0.0/16", "2001:db8::/32"]);
        // Changed prefixes rebuild the table.
        let mut a2 = hb("a", delta(1, 1, &[], &[]));
        a2.bgp_prefixes = vec!["10.9.0.0/16".into()];
        let (_, c) = st.apply(&a2, NOW, &topo, d).unwrap();
        assert!(c.routes);
        // The snapshot keeps the old table until the rebuild.
        assert!(
            st.snapshot(&topo)
                .routes
                .matches("10.9.1.1".parse().unwrap())
                .is_empty()
        );
        st.rebuild_routes(&topo);
        let snap = st.snapshot(&topo);
        assert_eq!(
            snap.routes.matches("10.9.1.1".parse().unwrap())[0]
                .1
                .as_slice(),
            [0]
        );
    }

    #[test]
    fn bad_heartbeats_are_refused_and_change_nothing() {
        let topo = Arc::new(Topology::from_sites(&sites()));
        let d = Duration::from_secs(5);
        let mut st = State::default();
        let mut cases: Vec<(Heartbeat, &str)> = Vec::new();
        let mut h = hb("a", full(1, &[]));
        h.cluster = "nope".into();
        cases.push((h, "unknown_cluster"));
        let mut h = hb("a", full(1, &[]));
        h.site = "other".into();
        cases.push((h, "site_mismatch"));
        let mut h = hb("a", full(1, &[]));
        h.bgp_prefixes = vec!["10.0.0.0/33".into()];
        cases.push((h, "bad_prefix"));
        let mut h = hb("a", full(1, &[]));
        h.public_urls = vec!["ftp://x".into()];
        cases.push((h, "bad_url"));
        cases.push((hb("bad id", full(1, &[])), "bad_appliance_id"));
        for (h, code) in cases {
            let e = st.apply(&h, NOW, &topo, d).unwrap_err();
            assert_eq!(e.code(), code);
        }
        assert!(st.entries(NOW).is_empty());
    }

    #[test]
    fn bearer_tokens() {
        let mut tokens = std::collections::BTreeMap::new();
        let hash = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            b"secret-a",
        ));
        tokens.insert("a".to_string(), hash);
        assert_eq!(authorize(&tokens, "a", Some("secret-a")), Ok(()));
        assert_eq!(authorize(&tokens, "a", None), Err(AuthError::Missing));
        assert_eq!(authorize(&tokens, "a", Some(" ")), Err(AuthError::Missing));
        assert_eq!(
            authorize(&tokens, "a", Some("secret-b")),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            authorize(&tokens, "b", Some("secret-a")),
            Err(AuthError::Wrong)
        );
        assert!(known_token(&tokens, "secret-a"));
        assert!(!known_token(&tokens, "secret-b"));
    }
}
