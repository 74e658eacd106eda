//! The fill executor (DESIGN §6 step 3): runs a plan's fills and deletions against real
//! appliances.
//!
//! - **One worker per appliance**, all started together; unless `ignore_window` (`run
//!   --now`), each waits for its site's window ([`crate::window`]) — every appliance of a site
//!   computes the same opening instant, so a site starts together — and stops for the night
//!   when it closes.
//! - **Plan order** (most valuable first), **up to `parallel` objects at once** per
//!   appliance (`limits.parallel-per-appliance`): transfers start in plan order — the
//!   earliest begun rendition's next file, then the next rendition's first — and all of an
//!   appliance's transfers share its [`TokenBucket`] (the rate cap holds for the sum) and its
//!   nightly budget. A fill's files stream from the source straight into the appliance's
//!   `PUT /v1/objects/{key}` with `Content-Length`, `x-oca-sha256` from the manifest and
//!   `x-oca-tier`; once all of them are in, the manifest is committed with
//!   `PUT /v1/renditions/{t}/{r}`. A file that fails stops the rest of its rendition. An
//!   appliance's first transfer runs alone (refused credentials cost one request).
//! - **Sources**: the plan's source (a peer, or the upstream cluster's appliances in id
//!   order), then the origin. 5xx, stalls (no byte for `idle_timeout`) and cut connections
//!   are retried on the same source with exponential backoff; a 404 or wrong bytes (the
//!   appliance's 422: nothing was kept) move to the next source; when the origin fails too,
//!   the rendition is given up for the night. Refused origin credentials stop the whole run
//!   at once with an error naming the origin.
//! - **Deletions** run only right before the fill they make room for (`Fill::needs_deletes`)
//!   begins, one at a time in plan order (so every earlier fill's deletions are done too,
//!   even while earlier fills are still in flight); nothing is deleted for a fill that the
//!   budget or the window never reaches; deletions tied to no fill run after the appliance's
//!   fills are all done.
//! - **Nightly budget**: a fill begins only if its bytes fit what is left after the fills in
//!   flight; if not, the worker waits for those, and a fill that still does not fit stops the
//!   appliance for the night. Bytes count as they are sent (journaled per object).
//! - **Window and cancel** are checked before each object starts; objects in flight finish.
//! - **Journal** ([`crate::journal`]): done objects, committed renditions and deletions are
//!   skipped on a rerun; an object the appliance already has answers 200 and is not sent.
//!
//! What it does not do: plan, re-read inventories during a run, or serve metrics (the
//! `daemon` serves the [`Metrics`] registered by the caller).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use oca_common::ObjectKey;
use oca_common::sites::Sites;
use oca_common::token::SigningKey;
use oca_common::wire::{ManifestFile, RenditionId, RenditionManifest, Tier};

use crate::bucket::TokenBucket;
use crate::error::FillError;
use crate::journal::{Entry, Journal};
use crate::metrics::{
    KindLabels, Metrics, ObjectOutcome, OutcomeLabels, SourceLabel, SourceLabels,
};
use crate::origin::{ByteStream, FaultKind, HttpClient, Origin, Peer, http_client};
use crate::plan::{Delete, Fill, Plan, Source};
use crate::window::{SiteWindow, WindowState};

/// How to reach one appliance.
#[derive(Debug, Clone)]
pub struct Appliance {
    /// Appliance id.
    pub id: String,
    /// Site id (sites file).
    pub site: String,
    /// Cluster id.
    pub cluster: String,
    /// `http://host:port` of its admin port (ingest).
    pub admin: String,
    /// Admin bearer token.
    pub admin_token: String,
    /// `http://host:port` of its plain HTTP port, if peers may read from it.
    pub plain: Option<String>,
}

/// Executor knobs.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Start now and ignore windows (`run --now`).
    pub ignore_window: bool,
    /// A source that sends no byte for this long is stalled.
    pub idle_timeout: Duration,
    /// Tries per source for retryable faults.
    pub attempts: u32,
    /// First pause between tries (doubles each time).
    pub backoff: Duration,
    /// Largest piece sent at once (bucket granularity).
    pub chunk: usize,
    /// Key for signing peer URLs (`None`: peers serve `/o/{key}`).
    pub peer_key: Option<SigningKey>,
    /// Object transfers at once per appliance (`limits.parallel-per-appliance`).
    pub parallel: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            ignore_window: false,
            idle_timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_secs(1),
            chunk: 64 * 1024,
            peer_key: None,
            parallel: 4,
        }
    }
}

impl ExecOptions {
    /// Options from the config's `[limits]`: `request-timeout` is the idle timeout (no byte
    /// for that long is a stall), `attempts` the tries per source, `parallel-per-appliance`
    /// the transfers at once per appliance. `run --now` sets `ignore_window`.
    pub fn from_limits(l: &crate::config::LimitsConfig, ignore_window: bool) -> ExecOptions {
        ExecOptions {
            ignore_window,
            idle_timeout: l.request_timeout,
            attempts: l.attempts.max(1),
            parallel: usize::try_from(l.parallel_per_appliance.max(1)).unwrap_or(1),
            ..ExecOptions::default()
        }
    }
}

/// Why an appliance's worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every fill and deletion was handled.
    Done,
    /// The next fill would exceed the nightly budget.
    Budget,
    /// The window closed.
    WindowClosed,
    /// Another worker hit a fatal error (refused origin credentials).
    Aborted,
}

/// What one appliance's worker did.
#[derive(Debug, Clone)]
pub struct ApplianceReport {
    /// Renditions committed in this run.
    pub filled: Vec<RenditionId>,
    /// Renditions given up for the night, with the reason.
    pub failed: Vec<(RenditionId, String)>,
    /// Renditions deleted in this run.
    pub deleted: Vec<RenditionId>,
    /// Bytes sent in this run.
    pub bytes: u64,
    /// Why it stopped.
    pub stop: Stop,
}

/// What a run did, per appliance id.
pub type Report = BTreeMap<String, ApplianceReport>;

/// Live progress of one appliance in a run, for progress bars and plain progress lines.
#[derive(Debug, Default)]
pub struct ApplianceProgress {
    /// Bytes of the plan's fills for it.
    pub planned_bytes: AtomicU64,
    /// Bytes done: sent in this run (retries included), plus what the journal says was
    /// done before.
    pub done_bytes: AtomicU64,
    /// Fills the plan has for it.
    pub fills: AtomicU64,
    /// Fills committed (in this run, or before per the journal).
    pub filled: AtomicU64,
    /// Fills given up for the night.
    pub failed: AtomicU64,
    /// Its worker has stopped.
    pub finished: AtomicBool,
}

/// Per-appliance progress of the current run, by appliance id; filled in when a run starts.
pub type Progress = Arc<Mutex<BTreeMap<String, Arc<ApplianceProgress>>>>;

struct SiteLimits {
    window: SiteWindow,
    rate_bps: u64,
    budget: u64,
}

/// Runs plans.
#[derive(Debug)]
pub struct Executor {
    origin: Origin,
    appliances: BTreeMap<String, Appliance>,
    sites: Sites,
    metrics: Metrics,
    opts: ExecOptions,
    state_dir: PathBuf,
    client: HttpClient,
    /// Set to stop every worker after the objects in flight (`fill-controller cancel`).
    stop: Arc<AtomicBool>,
    progress: Progress,
}

struct Ctx {
    origin: Origin,
    appliances: BTreeMap<String, Appliance>,
    metrics: Metrics,
    opts: ExecOptions,
    client: HttpClient,
    journal: Journal,
    plan_id: String,
    stop: Arc<AtomicBool>,
    progress: BTreeMap<String, Arc<ApplianceProgress>>,
}

impl Executor {
    /// Setting this flag stops every worker of the current run after the objects in flight;
    /// they report [`Stop::Aborted`].
    pub fn cancel_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The live progress of the current run (empty until a run starts).
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Report progress into `progress` (shared with a display) instead of a private one.
    pub fn with_progress(mut self, progress: Progress) -> Executor {
        self.progress = progress;
        self
    }

    /// An executor over `origin`, the known appliances, the sites file, writing its journal
    /// under `state_dir`.
    pub fn new(
        origin: Origin,
        appliances: Vec<Appliance>,
        sites: Sites,
        metrics: Metrics,
        opts: ExecOptions,
        state_dir: PathBuf,
    ) -> Executor {
        Executor {
            origin,
            appliances: appliances.into_iter().map(|a| (a.id.clone(), a)).collect(),
            sites,
            metrics,
            opts,
            state_dir,
            client: http_client(),
            stop: Arc::new(AtomicBool::new(false)),
            progress: Progress::default(),
        }
    }

    fn limits(&self, site: &str) -> Result<SiteLimits, FillError> {
        let s = self
            .sites
            .sites
            .iter()
            .find(|s| s.id == site)
            .ok_or_else(|| FillError::Plan(format!("site {site:?} is not in the sites file")))?;
        Ok(SiteLimits {
            window: SiteWindow::of_site(s)?,
            rate_bps: s.fill_rate_bps,
            budget: s.nightly_budget,
        })
    }

    /// Run `plan` (one night). `manifests` holds every filled rendition's full manifest
    /// (from the catalog). Returns per-appliance reports, or the first fatal error (refused
    /// origin credentials, a journal that cannot be written, an inconsistent plan).
    pub async fn run(
        &self,
        plan_id: &str,
        plan: &Plan,
        manifests: &BTreeMap<RenditionId, RenditionManifest>,
    ) -> Result<Report, FillError> {
        // Check the plan before touching anything.
        type Work = (Vec<(usize, Fill)>, Vec<(usize, Delete)>);
        let mut per: BTreeMap<String, Work> = BTreeMap::new();
        for (i, f) in plan.fills.iter().enumerate() {
            if !manifests.contains_key(&f.rendition) {
                return Err(FillError::Plan(format!(
                    "no manifest for {} (fill {i})",
                    f.rendition
                )));
            }
            per.entry(f.appliance.clone())
                .or_default()
                .0
                .push((i, f.clone()));
        }
        for (i, d) in plan.deletes.iter().enumerate() {
            per.entry(d.appliance.clone())
                .or_default()
                .1
                .push((i, d.clone()));
        }
        let mut limits = BTreeMap::new();
        for id in per.keys() {
            let a = self
                .appliances
                .get(id)
                .ok_or_else(|| FillError::Appliance {
                    appliance: id.clone(),
                    message: "not a known appliance".into(),
                })?;
            limits.insert(id.clone(), self.limits(&a.site)?);
        }
        let journal = Journal::open(&self.state_dir, plan_id)?;
        let progress: BTreeMap<String, Arc<ApplianceProgress>> = per
            .iter()
            .map(|(id, (fills, _))| {
                let p = ApplianceProgress::default();
                p.fills.store(fills.len() as u64, Ordering::Relaxed);
                p.planned_bytes
                    .store(fills.iter().map(|f| f.1.bytes).sum(), Ordering::Relaxed);
                (id.clone(), Arc::new(p))
            })
            .collect();
        if let Ok(mut g) = self.progress.lock() {
            g.clone_from(&progress);
        }
        let ctx = Arc::new(Ctx {
            origin: self.origin.clone(),
            appliances: self.appliances.clone(),
            metrics: self.metrics.clone(),
            opts: self.opts.clone(),
            client: self.client.clone(),
            journal,
            plan_id: plan_id.to_owned(),
            stop: self.stop.clone(),
            progress,
        });
        let manifests = Arc::new(manifests.clone());
        let mut set = tokio::task::JoinSet::new();
        for (id, (fills, deletes)) in per {
            let lim = limits
                .remove(&id)
                .ok_or_else(|| FillError::Plan(id.clone()))?;
            let ctx = ctx.clone();
            let manifests = manifests.clone();
            set.spawn(async move {
                let r = worker(ctx.clone(), id.clone(), lim, fills, deletes, manifests).await;
                if r.is_err() {
                    ctx.stop.store(true, Ordering::SeqCst);
                }
                (id, r)
            });
        }
        let mut report = Report::new();
        let mut fatal = None;
        while let Some(res) = set.join_next().await {
            match res {
                Ok((id, Ok(r))) => {
                    report.insert(id, r);
                }
                Ok((_, Err(e))) => {
                    fatal.get_or_insert(e);
                }
                Err(e) => {
                    fatal.get_or_insert(FillError::Plan(format!("worker failed: {e}")));
                }
            }
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

impl std::fmt::Debug for SiteLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteLimits")
            .field("rate_bps", &self.rate_bps)
            .field("budget", &self.budget)
            .finish()
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("plan", &self.plan_id).finish()
    }
}

fn night_of(state: WindowState) -> String {
    match state {
        WindowState::Open { night, .. } | WindowState::Closed { night, .. } => night.to_string(),
    }
}

/// A rendition a worker has begun: its files not yet in the journal, in playback order.
struct Active {
    /// Index into the worker's fills (plan order).
    pos: usize,
    /// Files still to send (not journaled when the rendition began).
    files: Vec<ManifestFile>,
    /// Next file of `files` to start.
    next: usize,
    /// Transfers running now.
    in_flight: usize,
    /// Bytes reserved against the budget when it began.
    need: u64,
    /// Bytes sent so far (retries included).
    sent: u64,
    /// The first error of one of its objects: no more of its files start.
    failed: Option<FillError>,
    /// Sources, in the order tried.
    srcs: Arc<Vec<Src>>,
}

/// Whether a rendition needing `need` more bytes may begin when `budget_left` bytes are left
/// tonight and the renditions in flight still hold `reserved` of them (pure).
pub fn fits_budget(need: u64, budget_left: u64, reserved: u64) -> bool {
    need <= budget_left.saturating_sub(reserved)
}

fn fatal(e: &FillError) -> bool {
    matches!(
        e,
        FillError::OriginAuth { .. } | FillError::Journal { .. } | FillError::Appliance { .. }
    )
}

type Outcome = Result<(ObjectOutcome, u64), (u64, FillError)>;

/// One appliance's night: up to `opts.parallel` object transfers at once, started in plan
/// order (the earliest begun rendition's next file first, then the next rendition), all
/// paced by one token bucket and held to one nightly budget. A rendition begins only when
/// its bytes fit the budget left after what the renditions in flight still need (else the
/// worker waits for them, and stops for the night when nothing is left in flight), and only
/// after its `needs_deletes` are done — deletions run one at a time, in plan order, before
/// the fill that needs them begins, so every earlier fill's deletions are done too.
async fn worker(
    ctx: Arc<Ctx>,
    id: String,
    lim: SiteLimits,
    fills: Vec<(usize, Fill)>,
    deletes: Vec<(usize, Delete)>,
    manifests: Arc<BTreeMap<RenditionId, RenditionManifest>>,
) -> Result<ApplianceReport, FillError> {
    let id = id.as_str();
    let app = ctx
        .appliances
        .get(id)
        .cloned()
        .ok_or_else(|| FillError::Plan(format!("unknown appliance {id}")))?;
    let state = lim
        .window
        .state(jiff::Timestamp::now())
        .ok_or_else(|| FillError::Plan("time out of range".into()))?;
    let (night, closes) = if ctx.opts.ignore_window {
        (night_of(state), None)
    } else {
        match state {
            WindowState::Open { night, closes } => (night.to_string(), Some(closes)),
            WindowState::Closed { night, opens } => {
                let wait = opens.duration_since(jiff::Timestamp::now());
                let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
                tracing::info!(appliance = id, %opens, "waiting for the fill window");
                tokio::time::sleep(wait).await;
                let closes = lim.window.bounds(night).map(|b| b.1);
                (night.to_string(), closes)
            }
        }
    };
    let mut report = ApplianceReport {
        filled: Vec::new(),
        failed: Vec::new(),
        deleted: Vec::new(),
        bytes: 0,
        stop: Stop::Done,
    };
    let mut budget_left = lim
        .budget
        .saturating_sub(ctx.journal.bytes_used(id, &night));
    let budget_gauge = i64::try_from(budget_left).unwrap_or(i64::MAX);
    ctx.metrics.budget_remaining.inc_by(budget_gauge);
    ctx.metrics.active.inc();
    let bucket = Arc::new(Mutex::new(TokenBucket::from_bps(
        lim.rate_bps,
        Instant::now(),
    )));
    let parallel = ctx.opts.parallel.max(1);
    let prog = ctx.progress.get(id).cloned().unwrap_or_default();
    let mut filled: Vec<(usize, RenditionId)> = Vec::new();
    let mut failed: Vec<(usize, RenditionId, String)> = Vec::new();
    let result = async {
        let mut tasks: tokio::task::JoinSet<(usize, String, Outcome)> = tokio::task::JoinSet::new();
        let mut active: BTreeMap<usize, Active> = BTreeMap::new();
        let mut next_fill = 0usize;
        let mut halt: Option<Stop> = None;
        let mut proven = false;
        loop {
            // Start what may start.
            // The first transfer runs alone: refused credentials or a dead appliance show
            // up after one request, not `parallel` of them.
            let width = if proven { parallel } else { 1 };
            while halt.is_none() && tasks.len() < width {
                if ctx.stop.load(Ordering::SeqCst) {
                    halt = Some(Stop::Aborted);
                    break;
                }
                if closes.is_some_and(|c| jiff::Timestamp::now() >= c) {
                    halt = Some(Stop::WindowClosed);
                    break;
                }
                // The earliest begun rendition's next file.
                if let Some(a) = active
                    .values_mut()
                    .find(|a| a.failed.is_none() && a.next < a.files.len())
                {
                    let f = a.files[a.next].clone();
                    a.next += 1;
                    a.in_flight += 1;
                    let fill = &fills[a.pos].1;
                    let key = fill
                        .rendition
                        .key(&f.name)
                        .map_err(|e| FillError::Plan(format!("{}: {e}", fill.rendition)))?;
                    let published = manifests.get(&fill.rendition).and_then(|m| m.published);
                    let (ctx2, app2, srcs, bucket2, tier, pos) = (
                        ctx.clone(),
                        app.clone(),
                        a.srcs.clone(),
                        bucket.clone(),
                        fill.tier,
                        a.pos,
                    );
                    tasks.spawn(async move {
                        let r = transfer(&ctx2, &app2, &srcs, &key, &f, tier, published, &bucket2)
                            .await;
                        (pos, key.to_string(), r)
                    });
                    continue;
                }
                // Else begin the next rendition.
                let Some((_, fill)) = fills.get(next_fill) else {
                    break;
                };
                let st = ctx.journal.state();
                let rid = fill.rendition.as_str().to_owned();
                if st.fills.contains(&(id.to_owned(), rid.clone())) {
                    prog.filled.fetch_add(1, Ordering::Relaxed);
                    prog.done_bytes.fetch_add(fill.bytes, Ordering::Relaxed);
                    next_fill += 1;
                    continue;
                }
                if st
                    .failed
                    .contains(&(id.to_owned(), rid.clone(), night.clone()))
                {
                    prog.failed.fetch_add(1, Ordering::Relaxed);
                    next_fill += 1;
                    continue;
                }
                let m = manifests
                    .get(&fill.rendition)
                    .ok_or_else(|| FillError::Plan(format!("no manifest for {rid}")))?;
                let mut pending = Vec::new();
                for f in &m.files {
                    if st
                        .files
                        .contains(&(id.to_owned(), format!("{rid}/{}", f.name)))
                    {
                        count_object(&ctx, ObjectOutcome::Journaled);
                        prog.done_bytes.fetch_add(f.size, Ordering::Relaxed);
                    } else {
                        pending.push(f.clone());
                    }
                }
                let need: u64 = pending.iter().map(|f| f.size).sum();
                let reserved: u64 = active.values().map(|a| a.need.saturating_sub(a.sent)).sum();
                if !fits_budget(need, budget_left, reserved) {
                    if tasks.is_empty() {
                        halt = Some(Stop::Budget);
                    }
                    // Else wait for the renditions in flight, then look again.
                    break;
                }
                let pos = next_fill;
                next_fill += 1;
                for (_, d) in deletes
                    .iter()
                    .filter(|(j, _)| fill.needs_deletes.iter().any(|n| *n as usize == *j))
                {
                    delete(&ctx, &app, d, &mut report).await?;
                }
                if pending.is_empty() {
                    // Every file is in: only the manifest is left (a crash came between).
                    match commit(&ctx, &app, fill, m).await {
                        Ok(()) => {
                            prog.filled.fetch_add(1, Ordering::Relaxed);
                            filled.push((pos, fill.rendition.clone()));
                        }
                        Err(e) if fatal(&e) => return Err(e),
                        Err(e) => give_up(&ctx, id, fill, &night, e, pos, &mut failed)?,
                    }
                    continue;
                }
                active.insert(
                    pos,
                    Active {
                        pos,
                        files: pending,
                        next: 0,
                        in_flight: 0,
                        need,
                        sent: 0,
                        failed: None,
                        srcs: Arc::new(sources(&ctx, &app, fill)),
                    },
                );
            }
            // Wait for one transfer.
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (pos, key, r) =
                joined.map_err(|e| FillError::Plan(format!("a transfer task failed: {e}")))?;
            let fill = &fills[pos].1;
            let a = active
                .get_mut(&pos)
                .ok_or_else(|| FillError::Plan(format!("no active fill {pos}")))?;
            a.in_flight -= 1;
            let n = match r {
                Ok((outcome, n)) => {
                    proven = true;
                    count_object(&ctx, outcome);
                    ctx.journal.append(&Entry::File {
                        plan: ctx.plan_id.clone(),
                        appliance: id.to_owned(),
                        key,
                    })?;
                    n
                }
                Err((n, e)) => {
                    count_object(&ctx, ObjectOutcome::Failed);
                    if fatal(&e) {
                        return Err(e);
                    }
                    a.failed.get_or_insert(e);
                    n
                }
            };
            report.bytes += n;
            a.sent += n;
            budget_left = budget_left.saturating_sub(n);
            ctx.metrics
                .budget_remaining
                .dec_by(i64::try_from(n).unwrap_or(i64::MAX));
            if n > 0 {
                ctx.journal.append(&Entry::Bytes {
                    appliance: id.to_owned(),
                    night: night.clone(),
                    bytes: n,
                })?;
            }
            if a.in_flight == 0 && (a.failed.is_some() || a.next == a.files.len()) {
                let a = active
                    .remove(&pos)
                    .ok_or_else(|| FillError::Plan(format!("no active fill {pos}")))?;
                match a.failed {
                    Some(e) => give_up(&ctx, id, fill, &night, e, pos, &mut failed)?,
                    None => {
                        let m = manifests.get(&fill.rendition).ok_or_else(|| {
                            FillError::Plan(format!("no manifest for {}", fill.rendition))
                        })?;
                        match commit(&ctx, &app, fill, m).await {
                            Ok(()) => {
                                prog.filled.fetch_add(1, Ordering::Relaxed);
                                filled.push((pos, fill.rendition.clone()));
                            }
                            Err(e) if fatal(&e) => return Err(e),
                            Err(e) => give_up(&ctx, id, fill, &night, e, pos, &mut failed)?,
                        }
                    }
                }
            }
        }
        if let Some(stop) = halt {
            report.stop = stop;
            return Ok(());
        }
        // Deletions no fill asked for run last.
        for (_, d) in deletes.iter().filter(|(j, _)| {
            !fills
                .iter()
                .any(|(_, f)| f.needs_deletes.iter().any(|n| *n as usize == *j))
        }) {
            delete(&ctx, &app, d, &mut report).await?;
        }
        Ok(())
    }
    .await;
    prog.finished.store(true, Ordering::Relaxed);
    ctx.metrics.active.dec();
    ctx.metrics.budget_remaining.dec_by(
        i64::try_from(budget_left)
            .unwrap_or(i64::MAX)
            .min(budget_gauge),
    );
    filled.sort_by_key(|f| f.0);
    failed.sort_by_key(|f| f.0);
    report.filled = filled.into_iter().map(|f| f.1).collect();
    report.failed = failed.into_iter().map(|f| (f.1, f.2)).collect();
    result.map(|()| report)
}

/// A rendition given up for the night: journaled, so a rerun the same night skips it.
fn give_up(
    ctx: &Ctx,
    id: &str,
    fill: &Fill,
    night: &str,
    e: FillError,
    pos: usize,
    failed: &mut Vec<(usize, RenditionId, String)>,
) -> Result<(), FillError> {
    tracing::warn!(appliance = id, rendition = %fill.rendition, error = %e, "fill given up for the night");
    ctx.journal.append(&Entry::Failed {
        plan: ctx.plan_id.clone(),
        appliance: id.to_owned(),
        rendition: fill.rendition.to_string(),
        night: night.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(p) = ctx.progress.get(id) {
        p.failed.fetch_add(1, Ordering::Relaxed);
    }
    failed.push((pos, fill.rendition.clone(), e.to_string()));
    Ok(())
}

fn bearer(app: &Appliance) -> String {
    format!("Bearer {}", app.admin_token)
}

async fn delete(
    ctx: &Ctx,
    app: &Appliance,
    d: &Delete,
    report: &mut ApplianceReport,
) -> Result<(), FillError> {
    let rid = d.rendition.as_str().to_owned();
    if ctx
        .journal
        .state()
        .deletes
        .contains(&(app.id.clone(), rid.clone()))
    {
        return Ok(());
    }
    let uri = format!("{}/v1/renditions/{rid}", app.admin.trim_end_matches('/'));
    let req = http::Request::delete(&uri)
        .header(http::header::AUTHORIZATION, bearer(app))
        .body(empty())
        .map_err(|e| appliance_err(app, e.to_string()))?;
    let resp = ctx
        .client
        .request(req)
        .await
        .map_err(|e| appliance_err(app, format!("DELETE {uri}: {e}")))?;
    match resp.status().as_u16() {
        200 | 404 => {}
        401 | 403 => return Err(appliance_err(app, "the admin token was refused".into())),
        s => return Err(appliance_err(app, format!("DELETE {uri}: {s}"))),
    }
    ctx.journal.append(&Entry::Delete {
        plan: ctx.plan_id.clone(),
        appliance: app.id.clone(),
        rendition: rid,
    })?;
    ctx.metrics.deletions.inc();
    report.deleted.push(d.rendition.clone());
    Ok(())
}

fn appliance_err(app: &Appliance, message: String) -> FillError {
    FillError::Appliance {
        appliance: app.id.clone(),
        message,
    }
}

fn empty() -> crate::origin::Body {
    Full::new(Bytes::new())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A source of bytes for one fill, in the order tried.
#[derive(Debug, Clone)]
enum Src {
    Peer(Peer, SourceLabel),
    Origin,
}

fn sources(ctx: &Ctx, app: &Appliance, fill: &Fill) -> Vec<Src> {
    let peer_of = |a: &Appliance, label| {
        a.plain.as_ref().map(|base| {
            Src::Peer(
                Peer {
                    id: a.id.clone(),
                    base: base.clone(),
                    key: ctx.opts.peer_key.clone(),
                },
                label,
            )
        })
    };
    let mut out = Vec::new();
    match &fill.source {
        Source::Peer { appliance } => {
            if let Some(a) = ctx.appliances.get(appliance).filter(|a| a.id != app.id) {
                out.extend(peer_of(a, SourceLabel::Peer));
            }
        }
        Source::Upstream { appliance, .. } => {
            // Not `ready`: its own fill may not have finished; a 404 falls to the origin.
            if let Some(a) = ctx.appliances.get(appliance).filter(|a| a.id != app.id) {
                out.extend(peer_of(a, SourceLabel::Upstream));
            }
        }
        Source::Origin => {}
    }
    out.push(Src::Origin);
    out
}

/// Commit a rendition's manifest once its files are in, and journal it.
async fn commit(
    ctx: &Ctx,
    app: &Appliance,
    fill: &Fill,
    m: &RenditionManifest,
) -> Result<(), FillError> {
    let body = serde_json::to_vec(m).map_err(|e| FillError::Plan(e.to_string()))?;
    let uri = format!(
        "{}/v1/renditions/{}",
        app.admin.trim_end_matches('/'),
        fill.rendition
    );
    let req = http::Request::put(&uri)
        .header(http::header::AUTHORIZATION, bearer(app))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|e| match e {})
                .boxed_unsync(),
        )
        .map_err(|e| appliance_err(app, e.to_string()))?;
    let resp = ctx
        .client
        .request(req)
        .await
        .map_err(|e| appliance_err(app, format!("PUT {uri}: {e}")))?;
    let status = resp.status();
    if status.as_u16() == 401 {
        return Err(appliance_err(app, "the admin token was refused".into()));
    }
    if !status.is_success() {
        let text = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(FillError::Fetch {
            from: format!("appliance {}", app.id),
            key: fill.rendition.to_string(),
            kind: FaultKind::Appliance,
            message: format!("manifest commit: {status}: {}", text.trim()),
        });
    }
    ctx.journal.append(&Entry::Fill {
        plan: ctx.plan_id.clone(),
        appliance: app.id.clone(),
        rendition: fill.rendition.to_string(),
    })?;
    ctx.metrics.renditions.inc();
    Ok(())
}

fn count_object(ctx: &Ctx, outcome: ObjectOutcome) {
    ctx.metrics
        .objects
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

fn count_error(ctx: &Ctx, kind: FaultKind) {
    ctx.metrics.errors.get_or_create(&KindLabels { kind }).inc();
}

fn kind_of(e: &FillError) -> FaultKind {
    match e {
        FillError::Fetch { kind, .. } => *kind,
        FillError::OriginAuth { .. } => FaultKind::Auth,
        _ => FaultKind::Other,
    }
}

/// One object from the first source that delivers it. `Ok((outcome, bytes sent))`.
#[allow(clippy::too_many_arguments)]
async fn transfer(
    ctx: &Ctx,
    app: &Appliance,
    srcs: &[Src],
    key: &ObjectKey,
    f: &ManifestFile,
    tier: Tier,
    published: Option<u64>,
    bucket: &Arc<Mutex<TokenBucket>>,
) -> Result<(ObjectOutcome, u64), (u64, FillError)> {
    let mut sent = 0u64;
    let mut last = None;
    for src in srcs {
        let mut pause = ctx.opts.backoff;
        for attempt in 1..=ctx.opts.attempts.max(1) {
            let n = Arc::new(AtomicU64::new(0));
            let r = put_object(ctx, app, src, key, f, tier, published, bucket, &n).await;
            sent += n.load(Ordering::Relaxed);
            let e = match r {
                Ok(outcome) => return Ok((outcome, sent)),
                Err(e) => e,
            };
            let kind = kind_of(&e);
            count_error(ctx, kind);
            tracing::warn!(appliance = %app.id, %key, attempt, error = %e, "fill attempt failed");
            match &e {
                FillError::OriginAuth { .. } | FillError::Appliance { .. } => {
                    return Err((sent, e));
                }
                _ => {}
            }
            let retry = kind.retryable() && attempt < ctx.opts.attempts;
            let permanent_at_appliance = kind == FaultKind::Appliance;
            last = Some(e);
            if permanent_at_appliance {
                return Err((
                    sent,
                    last.take().unwrap_or(FillError::Plan(key.to_string())),
                ));
            }
            if !retry {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2);
        }
    }
    Err((
        sent,
        last.unwrap_or_else(|| FillError::Plan(format!("{key}: no source"))),
    ))
}

/// One attempt: open the source, stream it into the appliance. `sent` counts bytes handed
/// to the connection.
#[allow(clippy::too_many_arguments)]
async fn put_object(
    ctx: &Ctx,
    app: &Appliance,
    src: &Src,
    key: &ObjectKey,
    f: &ManifestFile,
    tier: Tier,
    published: Option<u64>,
    bucket: &Arc<Mutex<TokenBucket>>,
    sent: &Arc<AtomicU64>,
) -> Result<ObjectOutcome, FillError> {
    let idle = ctx.opts.idle_timeout;
    let (label, from) = match src {
        Src::Peer(p, l) => (*l, format!("peer {}", p.id)),
        Src::Origin => (SourceLabel::Origin, ctx.origin.name().to_owned()),
    };
    let stall = |what: &str| FillError::Fetch {
        from: from.clone(),
        key: key.to_string(),
        kind: FaultKind::Stall,
        message: format!("no answer for {} ({what})", fmt_dur(idle)),
    };
    let opened = match src {
        Src::Peer(p, _) => tokio::time::timeout(idle, p.get(&ctx.client, key)).await,
        Src::Origin => tokio::time::timeout(idle, ctx.origin.get(key)).await,
    };
    let stream: ByteStream = opened.map_err(|_| stall("headers"))??;
    // The body: source bytes cut to `chunk`, each piece paid for in the bucket before it is
    // sent; a stall, a cut or a length other than the manifest's aborts the request (the
    // appliance then keeps nothing) and leaves the reason in `fault`.
    let fault: Arc<Mutex<Option<FillError>>> = Arc::new(Mutex::new(None));
    struct St {
        stream: ByteStream,
        pending: Bytes,
        total: u64,
        done: bool,
    }
    let st = St {
        stream,
        pending: Bytes::new(),
        total: 0,
        done: false,
    };
    let size = f.size;
    let chunk = ctx.opts.chunk.max(1);
    let metrics = ctx.metrics.clone();
    let prog = ctx.progress.get(&app.id).cloned();
    let (bucket2, sent2, fault2, from2, key2) = (
        bucket.clone(),
        sent.clone(),
        fault.clone(),
        from.clone(),
        key.to_string(),
    );
    let body_stream = futures_util::stream::unfold(st, move |mut st| {
        let (bucket, sent, fault, from, key, metrics, prog) = (
            bucket2.clone(),
            sent2.clone(),
            fault2.clone(),
            from2.clone(),
            key2.clone(),
            metrics.clone(),
            prog.clone(),
        );
        async move {
            if st.done {
                return None;
            }
            let fail = |st: &mut St, kind, message: String| {
                st.done = true;
                let e = FillError::Fetch {
                    from: from.clone(),
                    key: key.clone(),
                    kind,
                    message: message.clone(),
                };
                if let Ok(mut g) = fault.lock() {
                    g.get_or_insert(e);
                }
                let err: Box<dyn std::error::Error + Send + Sync> = message.into();
                Err::<Frame<Bytes>, _>(err)
            };
            while st.pending.is_empty() {
                match tokio::time::timeout(idle, st.stream.next()).await {
                    Err(_) => {
                        let r = fail(
                            &mut st,
                            FaultKind::Stall,
                            format!("no bytes for {}", fmt_dur(idle)),
                        );
                        return Some((r, st));
                    }
                    Ok(None) => {
                        if st.total != size {
                            let ended = format!("source ended after {} of {size} bytes", st.total);
                            let r = fail(&mut st, FaultKind::Cut, ended);
                            return Some((r, st));
                        }
                        return None;
                    }
                    Ok(Some(Err(e))) => {
                        let kind = kind_of(&e);
                        let r = fail(&mut st, kind, e.to_string());
                        return Some((r, st));
                    }
                    Ok(Some(Ok(b))) => {
                        st.total += b.len() as u64;
                        if st.total > size {
                            let r = fail(
                                &mut st,
                                FaultKind::Checksum,
                                format!("source sent more than the manifest's {size} bytes"),
                            );
                            return Some((r, st));
                        }
                        st.pending = b;
                    }
                }
            }
            let piece = st.pending.split_to(st.pending.len().min(chunk));
            let wait = bucket
                .lock()
                .map(|mut b| b.take(piece.len() as u64, Instant::now()))
                .unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
            if let Some(p) = &prog {
                p.done_bytes
                    .fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
            metrics
                .bytes
                .get_or_create(&SourceLabels { source: label })
                .inc_by(piece.len() as u64);
            Some((Ok(Frame::data(piece)), st))
        }
    });
    let body = BodyExt::boxed_unsync(StreamBody::new(body_stream));
    let uri = format!("{}/v1/objects/{key}", app.admin.trim_end_matches('/'));
    let mut req = http::Request::put(&uri)
        .header(http::header::AUTHORIZATION, bearer(app))
        .header(http::header::CONTENT_LENGTH, f.size)
        .header("x-oca-sha256", &f.sha256)
        .header("x-oca-tier", tier.as_str());
    if let Some(p) = published {
        req = req.header("x-oca-published", p);
    }
    let req = req
        .body(body)
        .map_err(|e| appliance_err(app, e.to_string()))?;
    let resp = ctx.client.request(req).await;
    let taken = fault.lock().ok().and_then(|mut g| g.take());
    let resp = match (resp, taken) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => {
            return Err(FillError::Fetch {
                from: format!("appliance {}", app.id),
                key: key.to_string(),
                kind: FaultKind::Other,
                message: format!("PUT {uri}: {e}"),
            });
        }
        (Ok(r), None) => r,
    };
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let at = |kind, what: &str| FillError::Fetch {
        from: if kind == FaultKind::Checksum {
            from.clone()
        } else {
            format!("appliance {}", app.id)
        },
        key: key.to_string(),
        kind,
        message: format!("{what}: {status}: {}", text.trim()),
    };
    match status.as_u16() {
        201 => Ok(ObjectOutcome::Created),
        200 => Ok(ObjectOutcome::Present),
        422 => Err(at(
            FaultKind::Checksum,
            "wrong bytes (the appliance kept nothing)",
        )),
        401 | 403 => Err(appliance_err(app, "the admin token was refused".into())),
        408 | 500..=599 => Err(at(FaultKind::ServerError, "appliance")),
        _ => Err(at(FaultKind::Appliance, "appliance refused the object")),
    }
}

fn fmt_dur(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendition_begins_only_if_it_fits_beside_the_ones_in_flight() {
        // 500 left tonight, 300 still held by fills in flight: 200 fits, 201 does not.
        assert!(fits_budget(200, 500, 300));
        assert!(!fits_budget(201, 500, 300));
        // Nothing in flight: the whole budget.
        assert!(fits_budget(500, 500, 0));
        assert!(!fits_budget(501, 500, 0));
        // In-flight reservations above what is left (retries overshoot): nothing fits but 0.
        assert!(!fits_budget(1, 100, 300));
        assert!(fits_budget(0, 100, 300));
    }
}
