//! The fill controller's fortnight on VODSYN (issue 7, item 6): `fill-controller`'s planner
//! ([`fill_controller::plan::plan`]) placing **whole renditions** by `control-plane`'s
//! forecast night after night, each plan applied the way the executor applies it under the
//! nightly budget, and the next day's requests served from what is held; next to LRU and
//! S3-FIFO ([`super::sim`]) and the chunk-level placement of [`super::placed`] at the same
//! capacity on the same trace.
//!
//! What it does, per seed:
//! - **Nights**: at 02:00 of serving day `s` ([`placed::serving_day`]), the forecast
//!   ([`placed::Ours`], calendar days `< s` and the launch calendar) predicts chunk requests
//!   per VODSYN file (= one rendition, video × rung). It becomes planner demand by
//!   `fill-controller/src/inputs.rs`' rule, *demand = views × rendition bytes*, with a view
//!   = one play of the whole rendition = `n_chunks` chunk requests ([`demand_bytes`]). One
//!   cluster; the appliances' inventory is what the previous nights left.
//! - **Execution** ([`execute`]): the executor's rules (`fill-controller/src/execute.rs`):
//!   per appliance, fills in plan order; a fill whose bytes exceed what is left of the
//!   nightly budget stops the appliance for the night; a fill's `needs_deletes` run right
//!   before it; deletions no fill needs run only after all of the appliance's fills. The
//!   budget is the spec's fill cap (5 % of the mean peak-window demand rate × 12 h), split
//!   evenly over the appliances; the first night with a non-empty plan is an unconstrained
//!   bulk fill (the spec's rule).
//! - **Serving**: a request hits iff some appliance holds its chunk's rendition (the
//!   executor fills whole renditions, so `Held.bytes` is never a leading part here; a
//!   leading part would count only the chunks inside it, see [`Inventory`]). Misses are not
//!   admitted (they go to the origin).
//! - **Rows**: the planner with the product's `max-fill` (0.95 by default: 95 % of C is
//!   usable), the same at `max-fill` 1 (all of C, as the other rows), optionally a cluster
//!   of N appliances of C/N (copy counts by the planner; a request hits if any appliance
//!   holds its rendition); the chunk-level PF of [`placed`] with the same forecast and fill
//!   cap, and the same with `R ≡ 1` (no position curve: whole files ranked by predicted
//!   requests per chunk, which isolates what chunk granularity is worth); LRU and S3-FIFO.
//! - **Metrics** ([`Meter`]), the spec's: peak-window byte hit ratio over days 7–13, origin
//!   egress at peak (miss bytes per 5-minute bin → Gbps, mean and p95), fill, miss and origin
//!   total bytes per day, fill as a share of the requested bytes.
//!
//! What it does not do: model the fill window's duration or the per-appliance rate cap (a
//! night's fills are assumed done by 14:00), fetch failures, upstream tiers or peers (fills
//! count as origin bytes), the RAM tier, or any serving difference between flash and disk.
//! The planner and the forecast are called, never changed.

use std::collections::{BTreeMap, HashMap};

use control_plane::forecast::ForecastParams;
use fill_controller::execute::fits_budget;
use fill_controller::plan::{
    ApplianceInput, ClusterInput, Held, Plan, PlanInput, PlanParams, RenditionInput, plan,
};
use oca_common::wire::{RenditionId, Tier};

use super::generate::split_id;
use super::placed::{self, BINS, Bench, Placement, bin_of, bin_start};
use super::sim::PolicyKind;
use super::{Catalog, Request};

const DAY_MS: u64 = 86_400_000;
/// Origin egress bins, ms (the spec's 5 minutes).
const BIN_MS: u64 = 300_000;
/// The one cluster of the bench.
pub const CLUSTER: &str = "vodsyn";

/// Demand of one rendition in bytes, by `inputs.rs`' rule (`views × rendition bytes`), where
/// a view is one play of the whole rendition: `chunk_requests / n_chunks` views.
pub fn demand_bytes(chunk_requests: f64, n_chunks: u32, rendition_bytes: u64) -> f64 {
    if n_chunks == 0 || !chunk_requests.is_finite() || chunk_requests <= 0.0 {
        return 0.0;
    }
    chunk_requests / f64::from(n_chunks) * rendition_bytes as f64
}

/// What one appliance holds: rendition → (bytes held, tier). Bytes below the rendition's
/// size would be a leading part; [`execute`] only ever commits whole renditions.
pub type Inventory = HashMap<RenditionId, (u64, Tier)>;

/// What [`execute`] did on one appliance in one night.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplianceNight {
    /// Bytes filled.
    pub filled: u64,
    /// Bytes deleted.
    pub deleted: u64,
    /// Fills done.
    pub fills_done: u64,
    /// Fills not reached (the budget stopped the appliance).
    pub fills_left: u64,
    /// Whether the budget stopped it.
    pub stopped: bool,
}

/// Applies one night's `plan` to the inventories (appliance id → [`Inventory`]) as the
/// executor does (see the module doc; the budget test is the executor's own
/// [`fits_budget`]); `budget` is per appliance, `None` = unlimited.
/// Pure: no I/O, no clock.
pub fn execute(
    plan: &Plan,
    inv: &mut BTreeMap<String, Inventory>,
    budget: Option<u64>,
) -> BTreeMap<String, ApplianceNight> {
    let mut out = BTreeMap::new();
    for (id, held) in inv.iter_mut() {
        let fills: Vec<_> = plan.fills.iter().filter(|f| &f.appliance == id).collect();
        let mine: Vec<usize> = (0..plan.deletes.len())
            .filter(|&i| &plan.deletes[i].appliance == id)
            .collect();
        let mut done = vec![false; plan.deletes.len()];
        let mut night = ApplianceNight::default();
        let mut left = budget.unwrap_or(u64::MAX);
        let mut delete = |i: usize, held: &mut Inventory, night: &mut ApplianceNight| {
            if !std::mem::replace(&mut done[i], true)
                && held.remove(&plan.deletes[i].rendition).is_some()
            {
                night.deleted += plan.deletes[i].bytes;
            }
        };
        for (k, f) in fills.iter().enumerate() {
            // In flight: nothing (renditions run one after another here), so the reserved
            // bytes are 0 and the executor's wait-then-recheck is the same test.
            if !fits_budget(f.bytes, left, 0) {
                night.stopped = true;
                night.fills_left = (fills.len() - k) as u64;
                break;
            }
            for &d in &f.needs_deletes {
                if (d as usize) < plan.deletes.len() {
                    delete(d as usize, held, &mut night);
                }
            }
            let prev = held.get(&f.rendition).map_or(0, |e| e.0);
            held.insert(f.rendition.clone(), (prev + f.bytes, f.tier));
            left -= f.bytes;
            night.filled += f.bytes;
            night.fills_done += 1;
        }
        if !night.stopped {
            for &i in &mine {
                if !fills.iter().any(|f| f.needs_deletes.contains(&(i as u32))) {
                    delete(i, held, &mut night);
                }
            }
        }
        out.insert(id.clone(), night);
    }
    out
}

/// A bench diagnostic, **not** the executor's rule: like [`execute`], but room for a fill is
/// made by deleting, among the plan's deletions on that appliance and tier, the **least
/// valuable** held rendition first (`value`: predicted bytes served per byte stored
/// tonight) instead of following the plan's `needs_deletes`. Since the planner lists those
/// least valuable first too (issue 7 fix, 2026-11-22), its row equals the plain max-fill 1
/// row: it is kept as a check that it stays so. A fill that moves a
/// held rendition to another tier deletes the old copy first. `room` is each tier's
/// planned capacity (`max_fill ×` flash, disk).
pub fn execute_by_value(
    plan: &Plan,
    inv: &mut BTreeMap<String, Inventory>,
    budget: Option<u64>,
    value: &dyn Fn(&RenditionId) -> f64,
    room: [u64; 2],
) -> BTreeMap<String, ApplianceNight> {
    let slot = |t: Tier| usize::from(t == Tier::Disk);
    let mut out = BTreeMap::new();
    for (id, held) in inv.iter_mut() {
        let fills: Vec<_> = plan.fills.iter().filter(|f| &f.appliance == id).collect();
        let mut dels: Vec<(f64, usize)> = (0..plan.deletes.len())
            .filter(|&i| &plan.deletes[i].appliance == id)
            .map(|i| (value(&plan.deletes[i].rendition), i))
            .collect();
        dels.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut used = [0u64; 2];
        for &(b, t) in held.values() {
            used[slot(t)] += b;
        }
        let mut night = ApplianceNight::default();
        let mut left = budget.unwrap_or(u64::MAX);
        for (k, f) in fills.iter().enumerate() {
            if !fits_budget(f.bytes, left, 0) {
                night.stopped = true;
                night.fills_left = (fills.len() - k) as u64;
                break;
            }
            let t = slot(f.tier);
            if let Some(&(b, old)) = held.get(&f.rendition)
                && slot(old) != t
            {
                held.remove(&f.rendition);
                used[slot(old)] -= b;
                night.deleted += b;
            }
            let mut i = 0;
            while used[t] + f.bytes > room[t] && i < dels.len() {
                let d = &plan.deletes[dels[i].1];
                if slot(d.tier) == t
                    && let Some((b, _)) = held.remove(&d.rendition)
                {
                    used[t] -= b;
                    night.deleted += b;
                }
                i += 1;
            }
            let prev = held.get(&f.rendition).map_or(0, |e| e.0);
            held.insert(f.rendition.clone(), (prev + f.bytes, f.tier));
            used[t] += f.bytes;
            left -= f.bytes;
            night.filled += f.bytes;
            night.fills_done += 1;
        }
        if !night.stopped {
            for &(_, i) in &dels {
                if let Some((b, _)) = held.remove(&plan.deletes[i].rendition) {
                    night.deleted += b;
                }
            }
        }
        out.insert(id.clone(), night);
    }
    out
}

/// The renditions of a catalog: ids, bytes and chunk counts by file index (video × rung).
#[derive(Debug)]
pub struct Files {
    /// Rendition id per file ([`placed::rendition_id`]).
    pub ids: Vec<RenditionId>,
    /// Bytes per file.
    pub bytes: Vec<u64>,
    /// Chunks per file.
    pub chunks: Vec<u32>,
    /// Release day of each file's title.
    pub release: Vec<u32>,
    index: HashMap<RenditionId, usize>,
}

impl Files {
    /// The files of `cat` in the layout's order.
    pub fn new(cat: &Catalog, layout: &placed::Layout) -> Files {
        let n = layout.files();
        let ids: Vec<RenditionId> = (0..n).map(|f| placed::rendition_id(layout, f)).collect();
        let mut bytes = vec![0; n];
        let mut chunks = vec![0; n];
        let mut release = vec![0; n];
        for v in &cat.videos {
            for r in 0..layout.rungs {
                let f = v.id as usize * layout.rungs + r;
                bytes[f] = v.rung_bytes.get(r).copied().unwrap_or(0);
                chunks[f] = v.n_chunks;
                release[f] = cat.titles[v.title as usize].release_day;
            }
        }
        let index = ids
            .iter()
            .enumerate()
            .map(|(f, id)| (id.clone(), f))
            .collect();
        Files {
            ids,
            bytes,
            chunks,
            release,
            index,
        }
    }

    /// File index of a rendition id.
    pub fn file(&self, id: &RenditionId) -> Option<usize> {
        self.index.get(id).copied()
    }
}

/// The appliances of one planner run.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Appliances (each `flash` + `disk` bytes).
    pub appliances: u32,
    /// Flash bytes per appliance.
    pub flash: u64,
    /// Disk bytes per appliance.
    pub disk: u64,
    /// Planner tuning.
    pub params: PlanParams,
}

impl Cluster {
    /// `n` appliances sharing `capacity` bytes, `flash_share` of each on flash.
    pub fn new(capacity: u64, n: u32, flash_share: f64, params: PlanParams) -> Cluster {
        let per = capacity / u64::from(n.max(1));
        let flash = (per as f64 * flash_share.clamp(0.0, 1.0)) as u64;
        Cluster {
            appliances: n.max(1),
            flash,
            disk: per - flash,
            params,
        }
    }

    /// Appliance ids.
    pub fn ids(&self) -> Vec<String> {
        (1..=self.appliances)
            .map(|i| format!("oca-{i:02}"))
            .collect()
    }
}

/// The planner's input for one night: one cluster (upstream = origin), the released
/// renditions with their demand, the appliances with their inventories.
pub fn plan_input(
    files: &Files,
    demand: &[f64],
    day: i64,
    cluster: &Cluster,
    inv: &BTreeMap<String, Inventory>,
) -> PlanInput {
    let renditions = (0..files.ids.len())
        .filter(|&f| i64::from(files.release[f]) <= day && files.bytes[f] > 0)
        .map(|f| {
            let mut d = BTreeMap::new();
            if demand[f] > 0.0 {
                d.insert(CLUSTER.to_owned(), demand[f]);
            }
            RenditionInput {
                id: files.ids[f].clone(),
                bytes: files.bytes[f],
                demand: d,
            }
        })
        .collect();
    let appliances = inv
        .iter()
        .map(|(id, held)| {
            let mut held: Vec<Held> = held
                .iter()
                .map(|(r, &(bytes, tier))| Held {
                    rendition: r.clone(),
                    bytes,
                    tier,
                })
                .collect();
            held.sort_by(|a, b| a.rendition.cmp(&b.rendition));
            ApplianceInput {
                id: id.clone(),
                cluster: CLUSTER.to_owned(),
                flash_bytes: cluster.flash,
                disk_bytes: cluster.disk,
                accepts_new: true,
                held,
            }
        })
        .collect();
    PlanInput {
        clusters: vec![ClusterInput {
            id: CLUSTER.to_owned(),
            upstream: "origin".to_owned(),
        }],
        appliances,
        renditions,
        params: cluster.params.clone(),
    }
}

/// The spec's metrics of one policy over the evaluation days.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meter {
    /// Peak-window requested bytes.
    pub peak_bytes: u64,
    /// Peak-window hit bytes.
    pub peak_hit_bytes: u64,
    /// Requested bytes on the evaluation days (00:00 day `warmup` to the trace's end).
    pub eval_bytes: u64,
    /// Miss bytes on the evaluation days.
    pub eval_miss_bytes: u64,
    /// Miss bytes per 5-minute bin of the peak windows of the evaluation days.
    pub peak_miss_bins: Vec<u64>,
    /// Fill bytes of the evaluation nights (placements for serving days `warmup..days`).
    pub fill_bytes: u64,
    /// Evaluation days.
    pub eval_days: u32,
    warmup: u32,
    hours: [u32; 2],
}

impl Meter {
    /// An empty meter for `cat`'s evaluation days and peak window.
    pub fn new(cat: &Catalog) -> Meter {
        let eval_days = cat.days.saturating_sub(cat.warmup_days);
        let per_day = (cat.peak_hours[1].saturating_sub(cat.peak_hours[0]) * 12) as usize;
        Meter {
            peak_miss_bins: vec![0; eval_days as usize * per_day],
            eval_days,
            warmup: cat.warmup_days,
            hours: cat.peak_hours,
            ..Meter::default()
        }
    }

    /// One request at `t_ms`, hit or not.
    pub fn record(&mut self, t_ms: u32, bytes: u32, hit: bool) {
        let t = u64::from(t_ms);
        let day = t / DAY_MS;
        if day < u64::from(self.warmup) {
            return;
        }
        let b = u64::from(bytes);
        self.eval_bytes += b;
        if !hit {
            self.eval_miss_bytes += b;
        }
        let in_day = t % DAY_MS;
        let (p0, p1) = (
            u64::from(self.hours[0]) * 3_600_000,
            u64::from(self.hours[1]) * 3_600_000,
        );
        if in_day < p0 || in_day >= p1 {
            return;
        }
        self.peak_bytes += b;
        if hit {
            self.peak_hit_bytes += b;
        } else {
            let per_day = (p1 - p0) / BIN_MS;
            let i = (day - u64::from(self.warmup)) * per_day + (in_day - p0) / BIN_MS;
            if let Some(x) = self.peak_miss_bins.get_mut(i as usize) {
                *x += b;
            }
        }
    }

    /// Peak-window byte hit ratio.
    pub fn bhr(&self) -> f64 {
        self.peak_hit_bytes as f64 / (self.peak_bytes as f64).max(1.0)
    }

    /// Origin egress (misses) at peak, Gbps per bin.
    fn gbps(&self) -> Vec<f64> {
        let secs = BIN_MS as f64 / 1000.0;
        self.peak_miss_bins
            .iter()
            .map(|&b| b as f64 * 8.0 / secs / 1e9)
            .collect()
    }

    /// Mean origin egress at peak, Gbps.
    pub fn egress_mean_gbps(&self) -> f64 {
        let g = self.gbps();
        g.iter().sum::<f64>() / (g.len().max(1) as f64)
    }

    /// 95th percentile (nearest rank) of the peak bins' origin egress, Gbps.
    pub fn egress_p95_gbps(&self) -> f64 {
        let mut g = self.gbps();
        if g.is_empty() {
            return 0.0;
        }
        g.sort_by(f64::total_cmp);
        g[((g.len() as f64 * 0.95).ceil() as usize).clamp(1, g.len()) - 1]
    }

    fn per_day(&self, bytes: u64) -> f64 {
        bytes as f64 / f64::from(self.eval_days.max(1))
    }

    /// Fill bytes per evaluation day.
    pub fn fill_per_day(&self) -> f64 {
        self.per_day(self.fill_bytes)
    }

    /// Miss bytes per evaluation day.
    pub fn miss_per_day(&self) -> f64 {
        self.per_day(self.eval_miss_bytes)
    }

    /// Requested bytes per evaluation day.
    pub fn requested_per_day(&self) -> f64 {
        self.per_day(self.eval_bytes)
    }

    /// Fill as a share of the requested bytes.
    pub fn fill_share(&self) -> f64 {
        self.fill_bytes as f64 / (self.eval_bytes as f64).max(1.0)
    }
}

/// One night of a planner run (summed over the appliances).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Night {
    /// Serving day the plan is for.
    pub day: i64,
    /// Budget of the night, all appliances (`None`: the bulk fill).
    pub budget: Option<u64>,
    /// Bytes filled.
    pub filled: u64,
    /// Bytes deleted.
    pub deleted: u64,
    /// Bytes held after the night.
    pub held: u64,
    /// Bytes the plan places (kept or filled).
    pub planned: u64,
    /// Fills the budget left for later nights.
    pub fills_left: u64,
    /// Bytes of planned fills of renditions the appliance already held (tier moves).
    pub moved_planned: u64,
    /// Every appliance within its budget and every tier within its capacity.
    pub ok: bool,
}

/// The rows of one capacity, in table order.
#[derive(Debug, Clone)]
pub struct Row {
    /// Display name.
    pub name: String,
    /// Metrics.
    pub meter: Meter,
    /// Planner rows: every night.
    pub nights: Vec<Night>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cache sizes, percent of the day-0 catalog bytes.
    pub fracs: Vec<f64>,
    /// Appliances of the extra multi-appliance row (1 = no extra row).
    pub appliances: u32,
    /// Share of each appliance on flash.
    pub flash_share: f64,
    /// Planner tuning of the main row (the product defaults unless told).
    pub params: PlanParams,
    /// Forecast parameters ([`placed::bench_params`]).
    pub forecast: ForecastParams,
    /// Worker threads.
    pub jobs: usize,
}

/// Results of one seed: per capacity, the rows.
#[derive(Debug, Clone)]
pub struct SeedResult {
    /// Seed.
    pub seed: u64,
    /// Capacity per frac, bytes.
    pub caps: Vec<u64>,
    /// Per frac, the rows.
    pub rows: Vec<Vec<Row>>,
    /// The nightly budget (the spec's fill cap), bytes.
    pub fill_cap: u64,
}

struct PlannerState {
    name: String,
    cluster: Cluster,
    inv: BTreeMap<String, Inventory>,
    held: Vec<bool>,
    meter: Meter,
    nights: Vec<Night>,
    bulk_done: bool,
    /// Diagnostic: [`execute_by_value`] instead of [`execute`].
    by_value: bool,
}

impl PlannerState {
    fn new(name: String, cluster: Cluster, cat: &Catalog, files: usize) -> PlannerState {
        let inv = cluster
            .ids()
            .into_iter()
            .map(|id| (id, Inventory::new()))
            .collect();
        PlannerState {
            name,
            cluster,
            inv,
            held: vec![false; files],
            meter: Meter::new(cat),
            nights: Vec::new(),
            bulk_done: false,
            by_value: false,
        }
    }

    /// Plans and executes the night before serving day `s`.
    fn night(&mut self, files: &Files, demand: &[f64], s: i64, cap: u64, eval: bool) {
        let input = plan_input(files, demand, s, &self.cluster, &self.inv);
        let p = plan(&input);
        let n = u64::from(self.cluster.appliances);
        let per_app = self.bulk_done.then(|| cap / n);
        // Bytes of fills of renditions the appliance already held (moved between tiers).
        let moved: u64 = p
            .fills
            .iter()
            .filter(|f| {
                self.inv
                    .get(&f.appliance)
                    .is_some_and(|h| h.contains_key(&f.rendition))
            })
            .map(|f| f.bytes)
            .sum();
        let done = if self.by_value {
            let value = |r: &RenditionId| {
                files
                    .file(r)
                    .map_or(0.0, |f| demand[f] / (files.bytes[f].max(1) as f64))
            };
            let mf = self.cluster.params.max_fill.clamp(0.0, 1.0);
            let room = [
                (self.cluster.flash as f64 * mf) as u64,
                (self.cluster.disk as f64 * mf) as u64,
            ];
            execute_by_value(&p, &mut self.inv, per_app, &value, room)
        } else {
            execute(&p, &mut self.inv, per_app)
        };
        let filled: u64 = done.values().map(|x| x.filled).sum();
        if filled > 0 {
            self.bulk_done = true;
        }
        let mut ok = done.values().all(|x| per_app.is_none_or(|b| x.filled <= b));
        self.held.iter_mut().for_each(|h| *h = false);
        let mut held_bytes = 0;
        for inv in self.inv.values() {
            let mut used = [0u64; 2];
            for (r, &(bytes, tier)) in inv {
                held_bytes += bytes;
                used[usize::from(tier == Tier::Disk)] += bytes;
                if let Some(f) = files.file(r)
                    && bytes >= files.bytes[f]
                {
                    self.held[f] = true;
                }
            }
            ok &= used[0] <= self.cluster.flash && used[1] <= self.cluster.disk;
        }
        if eval {
            self.meter.fill_bytes += filled;
        }
        self.nights.push(Night {
            day: s,
            budget: per_app.map(|b| b * n),
            filled,
            deleted: done.values().map(|x| x.deleted).sum(),
            held: held_bytes,
            planned: p.clusters.iter().map(|c| c.bytes_placed).sum(),
            fills_left: done.values().map(|x| x.fills_left).sum(),
            moved_planned: moved,
            ok,
        });
    }
}

struct ChunkState {
    cap: u64,
    /// Whether scores use the retention curve `R` (else `R ≡ 1`: every chunk of a file
    /// scores the same, so the greedy placement takes whole files but the boundary one).
    retention: bool,
    prev: Placement,
    meter: Meter,
}

/// The placed rows (planner runs and the chunk-level PF) of every capacity, one pass over
/// the serving days with one forecast per day.
fn run_placed(bench: &Bench, files: &Files, caps: &[u64], opts: &Options) -> Vec<Vec<Row>> {
    let cat = bench.catalog;
    let l = &bench.layout;
    let fill_cap = bench.fill_cap();
    let usable = opts.params.max_fill;
    let mut planners: Vec<Vec<PlannerState>> = Vec::new();
    for &cap in caps {
        let mut v = vec![PlannerState::new(
            format!(
                "planner, 1 appliance, max-fill {usable} (usable {:.0} % of C)",
                usable * 100.0
            ),
            Cluster::new(cap, 1, opts.flash_share, opts.params.clone()),
            cat,
            files.ids.len(),
        )];
        if usable < 1.0 {
            v.push(PlannerState::new(
                "planner, 1 appliance, max-fill 1 (all of C)".into(),
                Cluster::new(
                    cap,
                    1,
                    opts.flash_share,
                    PlanParams {
                        max_fill: 1.0,
                        ..opts.params.clone()
                    },
                ),
                cat,
                files.ids.len(),
            ));
        }
        let mut diag = PlannerState::new(
            "diagnostic: planner, 1 appliance, max-fill 1, deletions least valuable first".into(),
            Cluster::new(
                cap,
                1,
                opts.flash_share,
                PlanParams {
                    max_fill: 1.0,
                    ..opts.params.clone()
                },
            ),
            cat,
            files.ids.len(),
        );
        diag.by_value = true;
        v.push(diag);
        if opts.appliances > 1 {
            v.push(PlannerState::new(
                format!(
                    "planner, {} appliances of C/{}, max-fill {usable}",
                    opts.appliances, opts.appliances
                ),
                Cluster::new(cap, opts.appliances, opts.flash_share, opts.params.clone()),
                cat,
                files.ids.len(),
            ));
        }
        planners.push(v);
    }
    let mut chunks: Vec<ChunkState> = caps
        .iter()
        .flat_map(|&cap| {
            [true, false].map(|retention| ChunkState {
                cap,
                retention,
                prev: vec![0; l.files() * BINS],
                meter: Meter::new(cat),
            })
        })
        .collect();
    for s in 0..i64::from(cat.days) {
        let a = bench.ours.forecast(l, s);
        let demand: Vec<f64> = (0..files.ids.len())
            .map(|f| demand_bytes(a[f], files.chunks[f], files.bytes[f]))
            .collect();
        let eval = s >= i64::from(cat.warmup_days);
        let range = bench
            .history
            .ranges
            .get((s + 1) as usize)
            .cloned()
            .unwrap_or(0..0);
        let reqs = &bench.requests[range];
        for v in &mut planners {
            for p in v.iter_mut() {
                p.night(files, &demand, s, fill_cap, eval);
                for q in reqs {
                    let (vid, rung, _) = split_id(q.id);
                    let f = vid as usize * l.rungs + rung as usize;
                    p.meter.record(q.t_ms, q.bytes, p.held[f]);
                }
            }
        }
        let r = bench.history.retention(l, s);
        let scores = placed::group_scores(l, &a, &r);
        let flat = placed::group_scores(l, &a, &[1.0; BINS]);
        for c in &mut chunks {
            let scores = if c.retention { &scores } else { &flat };
            let want = placed::greedy(l, scores, c.cap);
            let p = if c.prev.iter().any(|&n| n > 0) {
                placed::fill_capped(l, &c.prev, &want, scores, c.cap, fill_cap)
            } else {
                want
            };
            if eval {
                c.meter.fill_bytes += placed::fill_bytes(l, &c.prev, &p);
            }
            for q in reqs {
                let (vid, rung, k) = split_id(q.id);
                let n = l.n[vid as usize];
                let b = bin_of(k, n);
                let g = (vid as usize * l.rungs + rung as usize) * BINS + b;
                c.meter
                    .record(q.t_ms, q.bytes, k - bin_start(b, n) < u32::from(p[g]));
            }
            c.prev = p;
        }
    }
    planners
        .into_iter()
        .zip(chunks.chunks_mut(2))
        .map(|(v, c)| {
            let mut rows: Vec<Row> = v
                .into_iter()
                .map(|p| Row {
                    name: p.name,
                    meter: p.meter,
                    nights: p.nights,
                })
                .collect();
            for c in c.iter_mut() {
                rows.push(Row {
                    name: if c.retention {
                        "chunk-level PF (placed.rs), ours + fillcap 5%, all of C".into()
                    } else {
                        "chunk-level PF with R ≡ 1 (whole files), ours + fillcap 5%, all of C"
                            .into()
                    },
                    meter: std::mem::take(&mut c.meter),
                    nights: Vec::new(),
                });
            }
            rows
        })
        .collect()
}

/// A reactive cache of `cap` bytes over the whole trace (every miss admitted).
fn run_reactive(cat: &Catalog, requests: &[Request], kind: PolicyKind, cap: u64) -> Row {
    let mut c = kind.build(cap);
    let mut m = Meter::new(cat);
    for q in requests {
        let hit = c.access(q.id, q.bytes, super::trace::NEVER);
        m.record(q.t_ms, q.bytes, hit);
    }
    Row {
        name: format!("{}, all of C", kind.name()),
        meter: m,
        nights: Vec::new(),
    }
}

/// Runs every row of one generated trace.
pub fn run_seed(seed: u64, catalog: &Catalog, requests: &[Request], opts: &Options) -> SeedResult {
    let caps: Vec<u64> = opts
        .fracs
        .iter()
        .map(|f| (catalog.catalog_bytes_day0 as f64 * f / 100.0) as u64)
        .collect();
    enum Work {
        Placed,
        Reactive(PolicyKind, usize),
    }
    let mut work = vec![Work::Placed];
    for i in 0..caps.len() {
        work.push(Work::Reactive(PolicyKind::Lru, i));
        work.push(Work::Reactive(PolicyKind::S3Fifo, i));
    }
    let bench = Bench::new(catalog, requests, opts.forecast.clone());
    let files = Files::new(catalog, &bench.layout);
    let fill_cap = bench.fill_cap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let placed_rows = std::sync::Mutex::new(None);
    let reactive = std::sync::Mutex::new(vec![Vec::new(); caps.len()]);
    std::thread::scope(|sc| {
        for _ in 0..opts.jobs.clamp(1, work.len()) {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match work.get(i) {
                        None => break,
                        Some(Work::Placed) => {
                            let r = run_placed(&bench, &files, &caps, opts);
                            *placed_rows.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                        }
                        Some(Work::Reactive(k, ci)) => {
                            let r = run_reactive(catalog, requests, *k, caps[*ci]);
                            reactive.lock().unwrap_or_else(|e| e.into_inner())[*ci].push((*k, r));
                        }
                    }
                }
            });
        }
    });
    let mut rows = placed_rows
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .expect("the placed rows ran");
    let reactive = reactive.into_inner().unwrap_or_else(|e| e.into_inner());
    for (ci, mut rs) in reactive.into_iter().enumerate() {
        rs.sort_by_key(|(k, _)| PolicyKind::ALL.iter().position(|x| x == k));
        rows[ci].extend(rs.into_iter().map(|(_, r)| r));
    }
    SeedResult {
        seed,
        caps,
        rows,
        fill_cap,
    }
}

/// The spec's reference BHR rows (profile S, seed 1) at `frac` percent.
pub fn spec_rows(frac: f64) -> Vec<(&'static str, f64)> {
    const ROWS: [(&str, [f64; 4]); 4] = [
        ("spec LRU", [0.347, 0.475, 0.616, 0.757]),
        ("spec S3-FIFO", [0.465, 0.573, 0.675, 0.778]),
        (
            "spec PF-title-model + fill cap 5%",
            [0.499, 0.591, 0.696, 0.801],
        ),
        (
            "spec PF-title-oracle (perfect title forecast)",
            [0.526, 0.644, 0.771, 0.895],
        ),
    ];
    let Some(col) = [2.5, 5.0, 10.0, 20.0]
        .iter()
        .position(|f| (f - frac).abs() < 1e-9)
    else {
        return Vec::new();
    };
    ROWS.iter().map(|(n, r)| (*n, r[col])).collect()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn cell(xs: &[f64], digits: usize) -> String {
    let (m, sd) = super::stats::mean_sd(xs);
    format!("{m:.digits$} ± {sd:.digits$} ({:.digits$})", median(xs))
}

/// Whether every planner night of every seed stayed within its budget and capacity.
pub fn all_nights_ok(res: &[SeedResult]) -> bool {
    res.iter()
        .flat_map(|r| r.rows.iter().flatten())
        .flat_map(|row| &row.nights)
        .all(|n| n.ok)
}

/// The largest fill share of requested bytes over every row with fills, every seed.
pub fn max_fill_share(res: &[SeedResult]) -> f64 {
    res.iter()
        .flat_map(|r| r.rows.iter().flatten())
        .map(|row| row.meter.fill_share())
        .fold(0.0, f64::max)
}

/// The markdown report of `vodsyn fortnight`; `nights` adds every planner night.
pub fn report(name: &str, res: &[SeedResult], opts: &Options, secs: f64, nights: bool) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let seeds: Vec<u64> = res.iter().map(|r| r.seed).collect();
    let _ = writeln!(
        o,
        "# {name}: the fill controller's fortnight, seeds {seeds:?} ({secs:.0} s wall)\n"
    );
    let caps: Vec<f64> = res.iter().map(|r| r.fill_cap as f64 / 1e12).collect();
    let p = &opts.params;
    let _ = writeln!(
        o,
        "Planner `fill_controller::plan::plan` (max-copies {}, copy-share {}, max-fill {}) on \
         control-plane's forecast, whole renditions; each appliance {:.0} % flash / {:.0} % \
         disk; nightly budget = the spec's fill cap, {:.3} TB/day mean over seeds (split \
         evenly over appliances; the first non-empty night is a bulk fill). Evaluation: days \
         {}–{}, peak window {}:00–{}:00. Cells: mean ± sd (median) over seeds.\n",
        p.max_copies,
        p.copy_share,
        p.max_fill,
        opts.flash_share * 100.0,
        (1.0 - opts.flash_share) * 100.0,
        super::stats::mean_sd(&caps).0,
        res.first().map_or(0, |r| r.rows[0][0].meter.warmup),
        res.first().map_or(0, |r| {
            r.rows[0][0].meter.warmup + r.rows[0][0].meter.eval_days - 1
        }),
        res.first().map_or(0, |r| r.rows[0][0].meter.hours[0]),
        res.first().map_or(0, |r| r.rows[0][0].meter.hours[1]),
    );
    for (fi, frac) in opts.fracs.iter().enumerate() {
        let cap: Vec<f64> = res.iter().map(|r| r.caps[fi] as f64 / 1e12).collect();
        let _ = writeln!(
            o,
            "## C = {frac} % of day-0 catalog bytes ({:.2} TB mean)\n",
            super::stats::mean_sd(&cap).0
        );
        let _ = writeln!(
            o,
            "| policy | BHR_peak | origin at peak, mean Gbps | origin at peak, p95 Gbps | \
             fill TB/day | fill / requested | miss TB/day | origin total TB/day |\n\
             |---|---|---|---|---|---|---|---|"
        );
        let nrows = res.first().map_or(0, |r| r.rows[fi].len());
        for ri in 0..nrows {
            let get = |f: &dyn Fn(&Meter) -> f64| -> Vec<f64> {
                res.iter().map(|r| f(&r.rows[fi][ri].meter)).collect()
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                res[0].rows[fi][ri].name,
                cell(&get(&|m| m.bhr()), 3),
                cell(&get(&|m| m.egress_mean_gbps()), 3),
                cell(&get(&|m| m.egress_p95_gbps()), 3),
                cell(&get(&|m| m.fill_per_day() / 1e12), 3),
                cell(&get(&|m| m.fill_share() * 100.0), 2).replace(" (", " % ("),
                cell(&get(&|m| m.miss_per_day() / 1e12), 3),
                cell(&get(&|m| (m.miss_per_day() + m.fill_per_day()) / 1e12), 3),
            );
        }
        for (n, v) in spec_rows(*frac) {
            let _ = writeln!(o, "| {n} (seed 1) | {v:.3} | | | | | | |");
        }
        let _ = writeln!(o, "\nBHR_peak per seed {seeds:?}:\n");
        for ri in 0..nrows {
            let xs: Vec<String> = res
                .iter()
                .map(|r| format!("{:.3}", r.rows[fi][ri].meter.bhr()))
                .collect();
            let _ = writeln!(o, "- {}: {}", res[0].rows[fi][ri].name, xs.join(" "));
        }
        let req: Vec<f64> = res
            .iter()
            .map(|r| r.rows[fi][0].meter.requested_per_day() / 1e12)
            .collect();
        let _ = writeln!(
            o,
            "\nRequested {:.3} TB/day mean (evaluation days).\n",
            super::stats::mean_sd(&req).0
        );
        let _ = writeln!(
            o,
            "Planned fills that move a held rendition to the other tier (delete + refill from \
             the origin), TB/night on evaluation nights, mean over seeds (share of the \
             budget):\n"
        );
        for ri in 0..nrows {
            if res[0].rows[fi][ri].nights.is_empty() {
                continue;
            }
            let (mut moved, mut budget) = (Vec::new(), Vec::new());
            for r in res {
                let row = &r.rows[fi][ri];
                let eval: Vec<&Night> = row
                    .nights
                    .iter()
                    .filter(|n| n.day >= i64::from(row.meter.warmup))
                    .collect();
                let k = eval.len().max(1) as f64;
                moved.push(eval.iter().map(|n| n.moved_planned as f64).sum::<f64>() / k / 1e12);
                budget.push(
                    eval.iter()
                        .map(|n| n.budget.unwrap_or(0) as f64)
                        .sum::<f64>()
                        / k
                        / 1e12,
                );
            }
            let (m, b) = (
                super::stats::mean_sd(&moved).0,
                super::stats::mean_sd(&budget).0,
            );
            let _ = writeln!(
                o,
                "- {}: {m:.3} TB ({:.0} %)",
                res[0].rows[fi][ri].name,
                m / b.max(1e-12) * 100.0
            );
        }
        let _ = writeln!(o);
    }
    let share = max_fill_share(res);
    let _ = writeln!(
        o,
        "Check: fill ≤ nightly budget and tiers ≤ capacity on every planner night of every \
         seed: {}. Largest fill share of requested bytes (any row, any seed): {:.2} % (≤ 5 %: \
         {}).",
        if all_nights_ok(res) { "OK" } else { "FAILED" },
        share * 100.0,
        if share <= 0.05 { "OK" } else { "OFF" }
    );
    if nights {
        let _ = writeln!(
            o,
            "\n## Nights\n\n| seed | C % | row | night | budget B | filled B | deleted B | held B | \
             planned B | fills left | ok |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in res {
            for (fi, frac) in opts.fracs.iter().enumerate() {
                for (ri, row) in r.rows[fi].iter().enumerate() {
                    for n in &row.nights {
                        let _ = writeln!(
                            o,
                            "| {} | {frac} | {ri} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            r.seed,
                            n.day,
                            n.budget.map_or("bulk".to_owned(), |b| b.to_string()),
                            n.filled,
                            n.deleted,
                            n.held,
                            n.planned,
                            n.fills_left,
                            if n.ok { "yes" } else { "NO" }
                        );
                    }
                }
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use fill_controller::plan::{Delete, Fill, Source};

    fn rid(s: &str) -> RenditionId {
        RenditionId::new("t", s).expect("valid")
    }

    fn fill(r: &str, bytes: u64, needs: Vec<u32>) -> Fill {
        Fill {
            appliance: "a".into(),
            cluster: CLUSTER.into(),
            rendition: rid(r),
            bytes,
            tier: Tier::Flash,
            value: 1.0,
            source: Source::Origin,
            needs_deletes: needs,
        }
    }

    fn del(r: &str, bytes: u64) -> Delete {
        Delete {
            appliance: "a".into(),
            rendition: rid(r),
            bytes,
            tier: Tier::Flash,
        }
    }

    fn inv(held: &[(&str, u64)]) -> BTreeMap<String, Inventory> {
        let i = held
            .iter()
            .map(|(r, b)| (rid(r), (*b, Tier::Flash)))
            .collect();
        BTreeMap::from([("a".to_owned(), i)])
    }

    #[test]
    fn execute_mirrors_the_executor() {
        // Fills in order; x needs the deletion of old1; z does not fit what is left of the
        // budget: the appliance stops, y' (after z) is not reached, old2 (needed by no fill)
        // is not deleted because the appliance stopped.
        let plan = Plan {
            fills: vec![
                fill("x", 40, vec![0]),
                fill("y", 30, vec![]),
                fill("z", 50, vec![]),
                fill("w", 5, vec![]),
            ],
            deletes: vec![del("old1", 60), del("old2", 10)],
            clusters: vec![],
        };
        let mut i = inv(&[("old1", 60), ("old2", 10)]);
        let done = execute(&plan, &mut i, Some(100));
        let a = done["a"];
        assert_eq!(
            (a.filled, a.deleted, a.fills_done, a.fills_left),
            (70, 60, 2, 2)
        );
        assert!(a.stopped);
        let held = &i["a"];
        assert!(held.contains_key(&rid("x")) && held.contains_key(&rid("y")));
        assert!(!held.contains_key(&rid("old1")) && held.contains_key(&rid("old2")));
        assert!(!held.contains_key(&rid("w")), "nothing after the stop");
        // Without a budget everything runs, and the free deletion runs last.
        let mut i = inv(&[("old1", 60), ("old2", 10)]);
        let a = execute(&plan, &mut i, None)["a"];
        assert_eq!((a.filled, a.deleted, a.fills_left), (125, 70, 0));
        assert_eq!(i["a"].len(), 4);
    }

    #[test]
    fn demand_and_meter() {
        // 700 chunk requests of a 350-chunk rendition of 1 GB: two plays, 2 GB.
        assert_eq!(demand_bytes(700.0, 350, 1_000_000_000), 2e9);
        assert_eq!(demand_bytes(-1.0, 350, 1), 0.0);
        assert_eq!(demand_bytes(5.0, 0, 1), 0.0);
        let p = super::super::load_profile("S").expect("S");
        let g = super::super::generate(&p.tiny(4, 3, 0.001), 1);
        let mut m = Meter::new(&g.catalog);
        // Warm-up day 0 is not counted; day 1 at 20:00 is peak, 10:00 is not.
        m.record(20 * 3_600_000, 100, false);
        let day1 = 86_400_000u32;
        m.record(day1 + 20 * 3_600_000, 1_000, true);
        m.record(day1 + 20 * 3_600_000 + 1, 3_000, false);
        m.record(day1 + 10 * 3_600_000, 500, false);
        assert_eq!((m.peak_bytes, m.peak_hit_bytes), (4_000, 1_000));
        assert_eq!((m.eval_bytes, m.eval_miss_bytes), (4_500, 3_500));
        assert_eq!(m.bhr(), 0.25);
        let bin = (20 - g.catalog.peak_hours[0]) as usize * 12;
        assert_eq!(m.peak_miss_bins[bin], 3_000);
        assert_eq!(m.peak_miss_bins.iter().sum::<u64>(), 3_000);
    }
}
