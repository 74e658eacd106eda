//! Proactive fill ("placed" caches) and demand-forecast error on a VODSYN trace, per the
//! spec's "Proactive fill (PF)" section.
//!
//! What it does:
//! - **Serving days**: serving day `s` is `[02:00 day s, 02:00 day s+1)`; the trace's first
//!   two hours are serving day −1. [`History`] counts requests per file (video × rung) and
//!   per position bin (20 bins of `k/n`) for every serving day.
//! - **Placement** for serving day `s` is computed from serving days `< s` (plus the release
//!   calendar, or the true day-`s` title counts for the oracle): every chunk gets a score =
//!   predicted requests, `A(video, rung) · R(bin) / n_video`, and the highest-score chunks
//!   whose cumulative bytes fit the capacity are placed (greedy). Misses are not admitted;
//!   a request of serving day `s` hits iff its chunk is in `P_s`. Within a (video, rung, bin)
//!   group every chunk has the same score, so placements are kept per group (how many of
//!   its chunks, in chunk order) and sorting is over ~400 k groups, not 16 M chunks.
//! - `+fillcap`: the spec's daily fill limit (5 % of the mean peak-window demand rate ×
//!   12 h): adds in descending score order, evicting chunks only in `P_{s−1}` lowest score
//!   first and only as needed; the first non-empty placement is a bulk fill.
//! - **File forecasts** `A`: the spec's `PF-title-model` (EWMA of the last 7 serving days,
//!   weights `0.5^(j−1)`, title total spread by `s(video|title)` with a prior of 5 requests
//!   ∝ `0.85^e` and the global rung share, release-calendar prior q0.95 / max for titles
//!   released on day `s` or `s+1`); `PF-title-oracle` (the same with the true day-`s` title
//!   totals); "same as yesterday" (the file's counts on `s−1`); and **ours**:
//!   `control_plane::forecast::forecast` fed per-rendition daily views (one region).
//! - **WMAPE** per file (= control-plane rendition) and per title on held-out serving days.
//!
//! - `+LRU10%`: the spec's hybrid, placement in 90 % of the capacity and a reactive LRU of
//!   10 % fed the PF-miss sub-stream of every hour from serving day 0 on.
//!
//! What it does not do: the chunk/file EWMA and chunk/file oracle policies, origin-egress
//! bins, recommendation exposure (VODSYN has no recommendation rows).

use std::collections::HashMap;
use std::ops::Range;

use control_plane::forecast::{self, DailyViews, ForecastParams, Launch};
use oca_common::wire::RenditionId;

use super::generate::{chunk_bytes, object_id, split_id};
use super::sim::{CachePolicy, Lru};
use super::trace::NEVER;
use super::{Catalog, Request};

/// Position bins of the retention curve `R`.
pub const BINS: usize = 20;
const DAY_MS: i64 = 86_400_000;
/// Serving days start at 02:00.
const SERVE_OFFSET_MS: i64 = 2 * 3_600_000;
/// History of the spec's EWMA, serving days.
const EWMA_DAYS: i64 = 7;
/// Prior of `s(video|title)`, requests.
const EPISODE_PRIOR_REQUESTS: f64 = 5.0;
/// `P(e) ∝ q^(e−1)` of the prior.
const EPISODE_DECAY: f64 = 0.85;
/// Day number of serving day 0 for the control-plane forecast (a Monday; VODSYN has no
/// weekly pattern, and the bench turns weekday factors off anyway).
pub const DAY_BASE: i64 = 20_412;
/// The one region of VODSYN.
pub const REGION: &str = "all";

/// Serving day of a request time (ms since 00:00 of day 0); the first two hours are −1.
pub fn serving_day(t_ms: u32) -> i64 {
    (i64::from(t_ms) - SERVE_OFFSET_MS).div_euclid(DAY_MS)
}

/// First chunk of position bin `b` in a video of `n` chunks: `k` is in bin
/// `floor(BINS·k/n)`.
pub fn bin_start(b: usize, n: u32) -> u32 {
    ((b as u64 * u64::from(n)).div_ceil(BINS as u64)) as u32
}

/// Position bin of chunk `k` of `n`.
pub fn bin_of(k: u32, n: u32) -> usize {
    ((u64::from(k) * BINS as u64 / u64::from(n.max(1))) as usize).min(BINS - 1)
}

/// Static layout of the catalog: files, groups (video × rung × bin) and their bytes.
#[derive(Debug)]
pub struct Layout {
    /// Rungs per video.
    pub rungs: usize,
    /// Chunks per video.
    pub n: Vec<u32>,
    /// Title of each video.
    pub video_title: Vec<u32>,
    /// Episode (1-based) of each video.
    pub video_ep: Vec<u32>,
    /// Videos of each title.
    pub title_videos: Vec<Vec<u32>>,
    /// Release day of each title.
    pub release: Vec<u32>,
    /// Whether a title is a tentpole.
    pub tentpole: Vec<bool>,
    /// Bytes of each group `(video·rungs + rung)·BINS + bin`.
    pub group_bytes: Vec<u64>,
    ladder: Vec<f64>,
    seg: f64,
    sigma: f64,
    min_bytes: u32,
}

impl Layout {
    /// Builds the layout (computes every chunk size once).
    pub fn new(cat: &Catalog) -> Layout {
        let rungs = cat.ladder_kbps.len();
        let mut group_bytes = vec![0u64; cat.videos.len() * rungs * BINS];
        for v in &cat.videos {
            for (r, &kbps) in cat.ladder_kbps.iter().enumerate() {
                for k in 0..v.n_chunks {
                    let b = bin_of(k, v.n_chunks);
                    let g = (v.id as usize * rungs + r) * BINS + b;
                    group_bytes[g] += u64::from(chunk_bytes(
                        object_id(v.id, r as u32, k),
                        kbps,
                        cat.segment_seconds,
                        cat.vbr_sigma,
                        cat.min_chunk_bytes,
                    ));
                }
            }
        }
        Layout {
            rungs,
            n: cat.videos.iter().map(|v| v.n_chunks).collect(),
            video_title: cat.videos.iter().map(|v| v.title).collect(),
            video_ep: cat.videos.iter().map(|v| v.episode).collect(),
            title_videos: cat.titles.iter().map(|t| t.videos.clone()).collect(),
            release: cat.titles.iter().map(|t| t.release_day).collect(),
            tentpole: cat.titles.iter().map(|t| t.tentpole).collect(),
            group_bytes,
            ladder: cat.ladder_kbps.clone(),
            seg: cat.segment_seconds,
            sigma: cat.vbr_sigma,
            min_bytes: cat.min_chunk_bytes,
        }
    }

    /// Number of files (video × rung).
    pub fn files(&self) -> usize {
        self.n.len() * self.rungs
    }

    fn chunk(&self, v: usize, r: usize, k: u32) -> u64 {
        u64::from(chunk_bytes(
            object_id(v as u32, r as u32, k),
            self.ladder[r],
            self.seg,
            self.sigma,
            self.min_bytes,
        ))
    }

    /// Bytes of chunks `[from, to)` (group-relative) of group `g`.
    fn group_range_bytes(&self, g: usize, from: u16, to: u16) -> u64 {
        let (v, r, b) = (g / BINS / self.rungs, g / BINS % self.rungs, g % BINS);
        let start = bin_start(b, self.n[v]);
        (u32::from(from)..u32::from(to))
            .map(|i| self.chunk(v, r, start + i))
            .sum()
    }

    fn group_len(&self, g: usize) -> u16 {
        let (v, b) = (g / BINS / self.rungs, g % BINS);
        (bin_start(b + 1, self.n[v]) - bin_start(b, self.n[v])) as u16
    }
}

/// Per-serving-day counts of a trace.
#[derive(Debug)]
pub struct History {
    /// Serving days −1 ..= `days − 1` (index = day + 1).
    pub counts: Vec<Vec<u32>>,
    /// Requests per position bin, per serving day.
    pub bins: Vec<[f64; BINS]>,
    /// Request index range of each serving day.
    pub ranges: Vec<Range<usize>>,
    /// Per-file counts per calendar day `0..days` (00:00 to 00:00), for our forecast.
    pub calendar: Vec<Vec<u32>>,
}

impl History {
    /// Counts `requests` (sorted by time) of a trace of `days` days.
    pub fn new(layout: &Layout, requests: &[Request], days: u32) -> History {
        let nd = days as usize + 1;
        let mut counts = vec![vec![0u32; layout.files()]; nd];
        let mut bins = vec![[0.0; BINS]; nd];
        let mut ranges = vec![0..0; nd];
        let mut calendar = vec![vec![0u32; layout.files()]; days as usize];
        let mut start = 0;
        let mut cur = 0usize;
        for (i, r) in requests.iter().enumerate() {
            let d = ((serving_day(r.t_ms) + 1).max(0) as usize).min(nd - 1);
            if d != cur {
                ranges[cur] = start..i;
                for x in ranges.iter_mut().take(d).skip(cur + 1) {
                    *x = i..i;
                }
                start = i;
                cur = d;
            }
            let (v, rung, k) = split_id(r.id);
            let f = v as usize * layout.rungs + rung as usize;
            counts[d][f] += 1;
            if let Some(c) = calendar.get_mut((r.t_ms / DAY_MS as u32) as usize) {
                c[f] += 1;
            }
            bins[d][bin_of(k, layout.n[v as usize])] += 1.0;
        }
        ranges[cur] = start..requests.len();
        for x in ranges.iter_mut().skip(cur + 1) {
            *x = requests.len()..requests.len();
        }
        History {
            counts,
            bins,
            ranges,
            calendar,
        }
    }

    /// Counts of serving day `d` (−1 ..), empty outside the trace.
    pub fn day(&self, d: i64) -> Option<&[u32]> {
        usize::try_from(d + 1)
            .ok()
            .and_then(|i| self.counts.get(i))
            .map(|v| v.as_slice())
    }

    /// Uniform-within-video expectation of the bin counts of serving day `d`.
    fn uniform_bins(&self, layout: &Layout, d: i64) -> [f64; BINS] {
        let mut u = [0.0; BINS];
        let Some(c) = self.day(d) else { return u };
        for (v, &n) in layout.n.iter().enumerate() {
            let views: u32 = c[v * layout.rungs..(v + 1) * layout.rungs].iter().sum();
            if views == 0 || n == 0 {
                continue;
            }
            for (b, x) in u.iter_mut().enumerate() {
                let len = bin_start(b + 1, n) - bin_start(b, n);
                *x += f64::from(views) * f64::from(len) / f64::from(n);
            }
        }
        u
    }

    /// The spec's EWMA weights for target day `s`: `(day, 0.5^(j−1))` for `j = 1..=7`
    /// over the days the trace has.
    fn ewma_days(&self, s: i64) -> Vec<(i64, f64)> {
        (1..=EWMA_DAYS)
            .map(|j| (s - j, 0.5f64.powi(j as i32 - 1)))
            .filter(|(d, _)| self.day(*d).is_some())
            .collect()
    }

    /// Retention ratio `R(bin)` (actual ÷ uniform-within-video, global) over the EWMA days.
    pub fn retention(&self, layout: &Layout, s: i64) -> [f64; BINS] {
        let mut act = [0.0; BINS];
        let mut uni = [0.0; BINS];
        for (d, w) in self.ewma_days(s) {
            let u = self.uniform_bins(layout, d);
            let a = &self.bins[(d + 1) as usize];
            for b in 0..BINS {
                act[b] += w * a[b];
                uni[b] += w * u[b];
            }
        }
        let mut r = [1.0; BINS];
        for b in 0..BINS {
            if uni[b] > 0.0 {
                r[b] = act[b] / uni[b];
            }
        }
        r
    }
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The spec's EWMA of the file counts for serving day `s` (weights normalised).
fn ewma_files(layout: &Layout, h: &History, s: i64) -> Vec<f64> {
    let mut e = vec![0.0; layout.files()];
    let days = h.ewma_days(s);
    let wsum: f64 = days.iter().map(|(_, w)| w).sum();
    for (d, w) in &days {
        let c = h.day(*d).expect("ewma day exists");
        for (x, &n) in e.iter_mut().zip(c) {
            *x += w * f64::from(n) / wsum;
        }
    }
    e
}

/// Per-title sums of a file vector.
pub fn title_sums(layout: &Layout, files: &[f64]) -> Vec<f64> {
    let rungs = layout.rungs;
    layout
        .title_videos
        .iter()
        .map(|vs| {
            vs.iter()
                .flat_map(|&v| &files[v as usize * rungs..(v as usize + 1) * rungs])
                .sum()
        })
        .collect()
}

/// The spec's `PF-title-model` file forecast for serving day `s` (`oracle`: with the true
/// day-`s` title totals and no calendar prior).
pub fn title_model(layout: &Layout, h: &History, s: i64, oracle: bool) -> Vec<f64> {
    let e = ewma_files(layout, h, s);
    let mut title = title_sums(layout, &e);
    if oracle {
        if let Some(c) = h.day(s) {
            let c: Vec<f64> = c.iter().map(|&n| f64::from(n)).collect();
            title = title_sums(layout, &c);
        }
    } else {
        let live: Vec<f64> = title
            .iter()
            .enumerate()
            .filter(|(t, x)| i64::from(layout.release[*t]) < s && **x > 0.0)
            .map(|(_, x)| *x)
            .collect();
        let max = live.iter().copied().fold(0.0, f64::max);
        let q95 = quantile(live, 0.95);
        for (t, x) in title.iter_mut().enumerate() {
            let rd = i64::from(layout.release[t]);
            if layout.release[t] > 0 && (rd == s || rd == s + 1) {
                *x = x.max(if layout.tentpole[t] { max } else { q95 });
            }
        }
    }
    spread(layout, h, s, &title)
}

/// The spec's title-model split of per-title forecasts `title` over files for serving day
/// `s`: `s(video|title)` from the EWMA video counts plus a prior worth 5 requests ∝
/// `0.85^(e−1)`, times the global EWMA rung share.
pub fn spread(layout: &Layout, h: &History, s: i64, title: &[f64]) -> Vec<f64> {
    let files = layout.files();
    let e = ewma_files(layout, h, s);
    let rungs = layout.rungs;
    let mut rung = vec![0.0; rungs];
    for (f, x) in e.iter().enumerate() {
        rung[f % rungs] += x;
    }
    let rs: f64 = rung.iter().sum();
    for x in &mut rung {
        *x = if rs > 0.0 {
            *x / rs
        } else {
            1.0 / rungs as f64
        };
    }
    let video: Vec<f64> = (0..layout.n.len())
        .map(|v| e[v * rungs..(v + 1) * rungs].iter().sum())
        .collect();
    let hist_title = title_sums(layout, &e);
    let mut a = vec![0.0; files];
    for (t, vs) in layout.title_videos.iter().enumerate() {
        if title[t] <= 0.0 {
            continue;
        }
        let norm: f64 = vs
            .iter()
            .map(|&v| EPISODE_DECAY.powi(layout.video_ep[v as usize] as i32 - 1))
            .sum();
        for &v in vs {
            let v = v as usize;
            let prior = EPISODE_DECAY.powi(layout.video_ep[v] as i32 - 1) / norm;
            let share = (video[v] + EPISODE_PRIOR_REQUESTS * prior)
                / (hist_title[t] + EPISODE_PRIOR_REQUESTS);
            for r in 0..rungs {
                a[v * rungs + r] = title[t] * share * rung[r];
            }
        }
    }
    a
}

/// "Same as yesterday": the file's counts on serving day `s − 1`.
pub fn yesterday(layout: &Layout, h: &History, s: i64) -> Vec<f64> {
    h.day(s - 1).map_or_else(
        || vec![0.0; layout.files()],
        |c| c.iter().map(|&n| f64::from(n)).collect(),
    )
}

/// Our forecast: `control_plane::forecast` over per-rendition daily views.
#[derive(Debug)]
pub struct Ours {
    history: Vec<DailyViews>,
    ids: Vec<RenditionId>,
    index: HashMap<String, usize>,
    params: ForecastParams,
}

/// Rendition id of a file: title `t{title}`, rendition `e{episode}-r{rung}`.
pub fn rendition_id(layout: &Layout, f: usize) -> RenditionId {
    let v = f / layout.rungs;
    RenditionId::new(
        &format!("t{}", layout.video_title[v]),
        &format!("e{}-r{}", layout.video_ep[v], f % layout.rungs),
    )
    .expect("generated ids are valid segments")
}

impl Ours {
    /// Turns the per-file counts of calendar days into control-plane history rows (day `d`
    /// is day number `DAY_BASE + d`). Calendar days, not serving days: the control plane
    /// works in whole days, and launches at 00:00 then start a day instead of leaving a
    /// two-hour fragment in the day before. The forecast for serving day `s` so uses the
    /// days before 00:00 of day `s`, two hours less than the spec allows.
    pub fn new(layout: &Layout, h: &History, params: ForecastParams) -> Ours {
        let ids: Vec<RenditionId> = (0..layout.files())
            .map(|f| rendition_id(layout, f))
            .collect();
        let mut history = Vec::new();
        for (i, c) in h.calendar.iter().enumerate() {
            for (f, &n) in c.iter().enumerate() {
                if n > 0 {
                    history.push(DailyViews {
                        day: DAY_BASE + i as i64,
                        rendition: ids[f].clone(),
                        region: REGION.to_owned(),
                        views: f64::from(n),
                    });
                }
            }
        }
        let index = ids
            .iter()
            .enumerate()
            .map(|(f, id)| (id.as_str().to_owned(), f))
            .collect();
        Ours {
            history,
            ids,
            index,
            params,
        }
    }

    /// File forecast for serving day `s` from calendar days `< s` and the launch calendar
    /// (every release up to day `s`: day `s` for the launch prior, earlier ones for the
    /// launch decay; one region).
    pub fn forecast(&self, layout: &Layout, s: i64) -> Vec<f64> {
        let launches: Vec<Launch> = layout
            .release
            .iter()
            .enumerate()
            .filter(|(_, d)| **d > 0 && i64::from(**d) <= s)
            .map(|(t, _)| Launch {
                title: format!("t{t}"),
                day: DAY_BASE + i64::from(layout.release[t]),
                regions: vec![],
                renditions: layout.title_videos[t]
                    .iter()
                    .flat_map(|&v| (0..layout.rungs).map(move |r| v as usize * layout.rungs + r))
                    .map(|f| self.ids[f].clone())
                    .collect(),
                // The calendar marks tentpoles (as the spec's title model uses): start at
                // the top title's forecast.
                prior_quantile: layout.tentpole[t].then_some(1.0),
            })
            .collect();
        let out = forecast::forecast(
            DAY_BASE + s,
            DAY_BASE + s,
            &self.history,
            &launches,
            &[],
            &self.params,
        );
        let mut a = vec![0.0; layout.files()];
        for f in out {
            if let Some(&i) = self.index.get(f.rendition.as_str()) {
                a[i] += f.views;
            }
        }
        a
    }
}

/// Chunks placed per group (a prefix of the group's chunks).
pub type Placement = Vec<u16>;

/// Per-group score: `A(file) · R(bin) / n_video`.
pub fn group_scores(layout: &Layout, a: &[f64], r: &[f64; BINS]) -> Vec<f64> {
    (0..a.len() * BINS)
        .map(|g| {
            let f = g / BINS;
            let n = layout.n[f / layout.rungs];
            if n == 0 {
                0.0
            } else {
                a[f] * r[g % BINS] / f64::from(n)
            }
        })
        .collect()
}

/// Greedy placement: the highest-score chunks whose cumulative bytes fit `cap` (chunks of
/// score 0 are never placed).
pub fn greedy(layout: &Layout, scores: &[f64], cap: u64) -> Placement {
    let mut order: Vec<usize> = (0..scores.len()).filter(|&g| scores[g] > 0.0).collect();
    order.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]).then(x.cmp(&y)));
    let mut p = vec![0u16; scores.len()];
    let mut used = 0u64;
    for g in order {
        let gb = layout.group_bytes[g];
        if used + gb <= cap {
            used += gb;
            p[g] = layout.group_len(g);
            continue;
        }
        // The boundary group: chunk by chunk, then stop.
        let (v, r, b) = (g / BINS / layout.rungs, g / BINS % layout.rungs, g % BINS);
        let start = bin_start(b, layout.n[v]);
        for i in 0..layout.group_len(g) {
            let cb = layout.chunk(v, r, start + u32::from(i));
            if used + cb > cap {
                break;
            }
            used += cb;
            p[g] = i + 1;
        }
        break;
    }
    p
}

/// The `+fillcap` update: from `prev` towards `want` (a [`greedy`] placement under the same
/// `scores`), adding at most `budget` bytes in descending score order and evicting chunks
/// that are only in `prev`, lowest score first, only as needed to stay within `cap`.
pub fn fill_capped(
    layout: &Layout,
    prev: &Placement,
    want: &Placement,
    scores: &[f64],
    cap: u64,
    budget: u64,
) -> Placement {
    let mut p = prev.clone();
    let mut used: u64 = p
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(g, &n)| layout.group_range_bytes(g, 0, n))
        .sum();
    let mut adds: Vec<usize> = (0..p.len()).filter(|&g| want[g] > p[g]).collect();
    adds.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]).then(x.cmp(&y)));
    let mut evict: Vec<usize> = (0..p.len()).filter(|&g| p[g] > want[g]).collect();
    evict.sort_by(|&x, &y| scores[x].total_cmp(&scores[y]).then(x.cmp(&y)));
    let mut ev = evict.into_iter().peekable();
    let mut filled = 0u64;
    'adds: for g in adds {
        while p[g] < want[g] {
            let cb = layout.group_range_bytes(g, p[g], p[g] + 1);
            if filled + cb > budget {
                break 'adds;
            }
            while used + cb > cap {
                let Some(&e) = ev.peek() else {
                    break 'adds;
                };
                if p[e] <= want[e] {
                    ev.next();
                    continue;
                }
                used -= layout.group_range_bytes(e, p[e] - 1, p[e]);
                p[e] -= 1;
            }
            used += cb;
            filled += cb;
            p[g] += 1;
        }
    }
    p
}

/// Bytes of `new \ old`.
pub fn fill_bytes(layout: &Layout, old: &Placement, new: &Placement) -> u64 {
    new.iter()
        .zip(old)
        .enumerate()
        .filter(|(_, (n, o))| n > o)
        .map(|(g, (&n, &o))| layout.group_range_bytes(g, o, n))
        .sum()
}

/// Which file forecast a placed cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The spec's `PF-title-model`.
    TitleModel,
    /// The spec's `PF-title-oracle` (true next-day title totals).
    TitleOracle,
    /// Each file's counts of the day before.
    Yesterday,
    /// `control_plane::forecast`.
    Ours,
}

impl Method {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Method::TitleModel => "PF-title-model",
            Method::TitleOracle => "PF-title-oracle",
            Method::Yesterday => "same as yesterday",
            Method::Ours => "ours (control-plane forecast)",
        }
    }
}

/// One placed-cache result.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlacedStats {
    /// Peak-window requested bytes.
    pub bytes: u64,
    /// Peak-window hit bytes.
    pub hit_bytes: u64,
    /// Mean fill bytes per evaluation day.
    pub fill_per_day: f64,
}

impl PlacedStats {
    /// Peak-window byte hit ratio.
    pub fn bhr(&self) -> f64 {
        self.hit_bytes as f64 / (self.bytes as f64).max(1.0)
    }
}

/// Everything a seed's run needs.
#[derive(Debug)]
pub struct Bench<'a> {
    /// The catalog.
    pub catalog: &'a Catalog,
    /// Requests, sorted by time.
    pub requests: &'a [Request],
    /// Layout.
    pub layout: Layout,
    /// Per-day counts.
    pub history: History,
    /// Our forecaster.
    pub ours: Ours,
}

impl<'a> Bench<'a> {
    /// Counts the trace and builds our forecaster's input.
    pub fn new(catalog: &'a Catalog, requests: &'a [Request], params: ForecastParams) -> Self {
        let layout = Layout::new(catalog);
        let history = History::new(&layout, requests, catalog.days);
        let ours = Ours::new(&layout, &history, params);
        Bench {
            catalog,
            requests,
            layout,
            history,
            ours,
        }
    }

    /// File forecast of `m` for serving day `s`.
    pub fn files(&self, m: Method, s: i64) -> Vec<f64> {
        match m {
            Method::TitleModel => title_model(&self.layout, &self.history, s, false),
            Method::TitleOracle => title_model(&self.layout, &self.history, s, true),
            Method::Yesterday => yesterday(&self.layout, &self.history, s),
            Method::Ours => self.ours.forecast(&self.layout, s),
        }
    }

    /// The spec's fill cap: 5 % of the mean peak-window demand rate × 12 h, in bytes/day.
    pub fn fill_cap(&self) -> u64 {
        let c = self.catalog;
        let peak: u64 = self
            .requests
            .iter()
            .filter(|r| c.in_peak(u64::from(r.t_ms)))
            .map(|r| u64::from(r.bytes))
            .sum();
        let hours = f64::from((c.days - c.warmup_days) * (c.peak_hours[1] - c.peak_hours[0]));
        (0.05 * peak as f64 / hours * 12.0) as u64
    }

    /// Runs placed caches of `caps` bytes for method `m` (with the fill cap `budget` when
    /// `Some`, as the `+LRU10%` hybrid when `lru`) over every serving day; returns one
    /// result per capacity.
    pub fn run(&self, m: Method, caps: &[u64], budget: Option<u64>, lru: bool) -> Vec<PlacedStats> {
        self.run_with(&|s| self.files(m, s), caps, budget, lru)
    }

    /// [`Bench::run`] with any file forecast `files(s)` for serving day `s`.
    pub fn run_with(
        &self,
        files: &(dyn Fn(i64) -> Vec<f64> + Sync),
        caps: &[u64],
        budget: Option<u64>,
        lru: bool,
    ) -> Vec<PlacedStats> {
        let l = &self.layout;
        self.run_scored(
            &|s| group_scores(l, &files(s), &self.history.retention(l, s)),
            caps,
            budget,
            lru,
        )
    }

    /// [`Bench::run`] with any group scores `scores(s)` for serving day `s`; `lru`: the
    /// spec's `+LRU10%` hybrid (placement in 90 % of each capacity, a reactive LRU of 10 %
    /// on the PF-miss sub-stream of every hour from serving day 0 on).
    pub fn run_scored(
        &self,
        group_scores: &(dyn Fn(i64) -> Vec<f64> + Sync),
        caps: &[u64],
        budget: Option<u64>,
        lru: bool,
    ) -> Vec<PlacedStats> {
        let c = self.catalog;
        let l = &self.layout;
        let mut prev: Vec<Placement> = vec![vec![0; l.files() * BINS]; caps.len()];
        let mut out = vec![PlacedStats::default(); caps.len()];
        let mut fill = vec![0u64; caps.len()];
        let mut lrus: Vec<Option<Lru>> = caps
            .iter()
            .map(|&cap| lru.then(|| Lru::new(cap / 10)))
            .collect();
        for s in 0..i64::from(c.days) {
            let scores = group_scores(s);
            let eval = s >= i64::from(c.warmup_days);
            for (i, &cap) in caps.iter().enumerate() {
                let pf_cap = if lru { cap - cap / 10 } else { cap };
                let want = greedy(l, &scores, pf_cap);
                let p = match budget {
                    Some(b) if prev[i].iter().any(|&n| n > 0) => {
                        fill_capped(l, &prev[i], &want, &scores, pf_cap, b)
                    }
                    _ => want,
                };
                if eval {
                    fill[i] += fill_bytes(l, &prev[i], &p);
                }
                if eval || lru {
                    let range = self.history.ranges[(s + 1) as usize].clone();
                    for q in &self.requests[range] {
                        let peak = eval && c.in_peak(u64::from(q.t_ms));
                        if !peak && !lru {
                            continue;
                        }
                        let (v, rung, k) = split_id(q.id);
                        let n = l.n[v as usize];
                        let b = bin_of(k, n);
                        let g = (v as usize * l.rungs + rung as usize) * BINS + b;
                        let mut hit = k - bin_start(b, n) < u32::from(p[g]);
                        if !hit && let Some(cache) = lrus[i].as_mut() {
                            hit = cache.access(q.id, q.bytes, NEVER);
                        }
                        if peak {
                            out[i].bytes += u64::from(q.bytes);
                            if hit {
                                out[i].hit_bytes += u64::from(q.bytes);
                            }
                        }
                    }
                }
                prev[i] = p;
            }
        }
        let eval_days = f64::from(c.days - c.warmup_days).max(1.0);
        for (o, f) in out.iter_mut().zip(fill) {
            o.fill_per_day = f as f64 / eval_days;
        }
        out
    }

    /// Held-out serving days for the forecast error: evaluation days that are complete in
    /// the trace (the last serving day ends two hours after the trace does).
    pub fn held_out_days(&self) -> Range<i64> {
        i64::from(self.catalog.warmup_days)..i64::from(self.catalog.days) - 1
    }

    /// Weighted MAPE `Σ|F − A| / ΣA` of method `m` over the held-out days, per file and per
    /// title (pooled over the days). `None` without a held-out day.
    pub fn wmape(&self, m: Method) -> Option<(f64, f64)> {
        let l = &self.layout;
        let (mut ef, mut et, mut sum) = (0.0, 0.0, 0.0);
        for s in self.held_out_days() {
            let f = self.files(m, s);
            let a = self.history.day(s)?;
            for (x, &y) in f.iter().zip(a) {
                ef += (x - f64::from(y)).abs();
                sum += f64::from(y);
            }
            for vs in &l.title_videos {
                let files = || {
                    vs.iter()
                        .flat_map(|&v| v as usize * l.rungs..(v as usize + 1) * l.rungs)
                };
                let ft: f64 = files().map(|i| f[i]).sum();
                let at: f64 = files().map(|i| f64::from(a[i])).sum();
                et += (ft - at).abs();
            }
        }
        (sum > 0.0).then(|| (ef / sum, et / sum))
    }
}

/// One row of the bench: a method, with or without the fill cap or the LRU hybrid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// File forecast.
    pub method: Method,
    /// Whether `+fillcap5%` applies.
    pub fill_cap: bool,
    /// Whether `+LRU10%` applies (placement in 90 % of the capacity, a reactive LRU of
    /// 10 % on the PF-miss sub-stream).
    pub lru: bool,
}

impl Policy {
    /// The rows of `vodsyn forecast`, in table order.
    pub const ALL: [Policy; 9] = [
        Policy {
            method: Method::TitleOracle,
            fill_cap: false,
            lru: false,
        },
        Policy {
            method: Method::TitleModel,
            fill_cap: true,
            lru: false,
        },
        Policy {
            method: Method::TitleModel,
            fill_cap: false,
            lru: false,
        },
        Policy {
            method: Method::TitleModel,
            fill_cap: false,
            lru: true,
        },
        Policy {
            method: Method::Yesterday,
            fill_cap: false,
            lru: false,
        },
        Policy {
            method: Method::Yesterday,
            fill_cap: true,
            lru: false,
        },
        Policy {
            method: Method::Ours,
            fill_cap: false,
            lru: false,
        },
        Policy {
            method: Method::Ours,
            fill_cap: true,
            lru: false,
        },
        Policy {
            method: Method::Ours,
            fill_cap: false,
            lru: true,
        },
    ];

    /// Display name.
    pub fn name(self) -> String {
        let mut n = self.method.name().to_owned();
        if self.fill_cap {
            n.push_str(" + fillcap 5%");
        }
        if self.lru {
            n.push_str(" + LRU10%");
        }
        n
    }

    /// The spec's reference BHR (profile S, seed 1) at `frac` percent, where it has one.
    pub fn spec(self, frac: f64) -> Option<f64> {
        if self.lru {
            return None;
        }
        let row = match (self.method, self.fill_cap) {
            (Method::TitleModel, true) => [0.499, 0.591, 0.696, 0.801],
            (Method::TitleOracle, false) => [0.526, 0.644, 0.771, 0.895],
            _ => return None,
        };
        [2.5, 5.0, 10.0, 20.0]
            .iter()
            .position(|f| (f - frac).abs() < 1e-9)
            .map(|i| row[i])
    }
}

/// The forecasts whose error is reported, in table order.
pub const WMAPE_METHODS: [Method; 3] = [Method::Yesterday, Method::TitleModel, Method::Ours];

/// Results of one seed.
#[derive(Debug, Clone)]
pub struct SeedResult {
    /// Per [`WMAPE_METHODS`]: (per-file, per-title) WMAPE, `None` without a held-out day.
    pub wmape: Vec<Option<(f64, f64)>>,
    /// Per [`Policy::ALL`], per capacity.
    pub placed: Vec<Vec<PlacedStats>>,
    /// Fill cap used, bytes per day.
    pub fill_cap: u64,
    /// Peak-window requested bytes per evaluation day.
    pub peak_bytes_per_day: f64,
}

/// Runs every forecast and placed cache of one generated trace; `fracs` in percent of the
/// day-0 catalog bytes; `jobs` threads over the policies.
pub fn run_seed(
    catalog: &Catalog,
    requests: &[Request],
    fracs: &[f64],
    params: ForecastParams,
    jobs: usize,
) -> SeedResult {
    let bench = Bench::new(catalog, requests, params);
    let caps: Vec<u64> = fracs
        .iter()
        .map(|f| (catalog.catalog_bytes_day0 as f64 * f / 100.0) as u64)
        .collect();
    let fill_cap = bench.fill_cap();
    let wmape = WMAPE_METHODS.iter().map(|&m| bench.wmape(m)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: std::sync::Mutex<Vec<Option<Vec<PlacedStats>>>> =
        std::sync::Mutex::new(vec![None; Policy::ALL.len()]);
    std::thread::scope(|sc| {
        for _ in 0..jobs.clamp(1, Policy::ALL.len()) {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(p) = Policy::ALL.get(i) else { break };
                    let r = bench.run(p.method, &caps, p.fill_cap.then_some(fill_cap), p.lru);
                    slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    let placed = slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every policy ran"))
        .collect();
    let peak_bytes_per_day =
        fill_cap as f64 / 0.05 / 12.0 * f64::from(catalog.peak_hours[1] - catalog.peak_hours[0]);
    SeedResult {
        wmape,
        placed,
        fill_cap,
        peak_bytes_per_day,
    }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    super::stats::mean_sd(xs)
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

/// The markdown report of `vodsyn forecast`.
pub fn report(name: &str, seeds: &[u64], fracs: &[f64], res: &[SeedResult], secs: f64) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# {name}: demand forecast and placed caches, seeds {seeds:?} ({secs:.0} s)\n"
    );
    let _ = writeln!(
        o,
        "Forecast error, WMAPE = Σ|F−A|/ΣA of chunk requests on each held-out serving day \
         (evaluation days that are complete), per rendition (video × rung) and per title; \
         mean ± sd (median) over seeds:\n"
    );
    let _ = writeln!(
        o,
        "| forecast | WMAPE per rendition | WMAPE per title | per seed (rendition) |\n|---|---|---|---|"
    );
    for (i, m) in WMAPE_METHODS.iter().enumerate() {
        let xs: Vec<(f64, f64)> = res.iter().filter_map(|r| r.wmape[i]).collect();
        if xs.is_empty() {
            let _ = writeln!(o, "| {} | n/a | n/a | |", m.name());
            continue;
        }
        let f: Vec<f64> = xs.iter().map(|x| x.0).collect();
        let t: Vec<f64> = xs.iter().map(|x| x.1).collect();
        let (fm, fs) = mean_sd(&f);
        let (tm, ts) = mean_sd(&t);
        let per: Vec<String> = f.iter().map(|x| format!("{x:.3}")).collect();
        let _ = writeln!(
            o,
            "| {} | {fm:.3} ± {fs:.3} ({:.3}) | {tm:.3} ± {ts:.3} ({:.3}) | {} |",
            m.name(),
            median(&f),
            median(&t),
            per.join(" ")
        );
    }
    let _ = writeln!(
        o,
        "\nPeak-window byte hit ratio of placed caches (placement at 02:00 from serving days \
         before, misses not admitted), cache = share of day-0 catalog bytes; mean ± sd \
         (median) over seeds; spec = its profile S seed-1 row:\n"
    );
    let head: Vec<String> = fracs.iter().map(|f| format!("{f}%")).collect();
    let _ = writeln!(
        o,
        "| policy | {} | fill TB/day at {} |\n|---|{}---|",
        head.join(" | "),
        head.last().map_or("", |s| s.as_str()),
        "---|".repeat(fracs.len())
    );
    for (pi, p) in Policy::ALL.iter().enumerate() {
        let mut cells = Vec::new();
        for (fi, &f) in fracs.iter().enumerate() {
            let xs: Vec<f64> = res.iter().map(|r| r.placed[pi][fi].bhr()).collect();
            let (m, sd) = mean_sd(&xs);
            let spec = p
                .spec(f)
                .map_or(String::new(), |s| format!(", spec {s:.3}"));
            cells.push(format!("{m:.3} ± {sd:.3} ({:.3}){spec}", median(&xs)));
        }
        let fill: Vec<f64> = res
            .iter()
            .filter_map(|r| r.placed[pi].last().map(|x| x.fill_per_day / 1e12))
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {:.3} |",
            p.name(),
            cells.join(" | "),
            mean_sd(&fill).0
        );
    }
    let _ = writeln!(o, "\nBHR per seed (seeds {seeds:?}):\n");
    let _ = writeln!(
        o,
        "| policy | {} |\n|---|{}",
        head.join(" | "),
        "---|".repeat(fracs.len())
    );
    for (pi, p) in Policy::ALL.iter().enumerate() {
        let cells: Vec<String> = (0..fracs.len())
            .map(|fi| {
                res.iter()
                    .map(|r| format!("{:.3}", r.placed[pi][fi].bhr()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let _ = writeln!(o, "| {} | {} |", p.name(), cells.join(" | "));
    }
    let caps: Vec<f64> = res.iter().map(|r| r.fill_cap as f64 / 1e12).collect();
    let peak: Vec<f64> = res.iter().map(|r| r.peak_bytes_per_day / 1e12).collect();
    let _ = writeln!(
        o,
        "\nFill cap (5 % of mean peak demand × 12 h): {:.3} TB/day mean; peak-window demand {:.3} TB/day mean.",
        mean_sd(&caps).0,
        mean_sd(&peak).0
    );
    o
}

/// The control-plane forecast parameters the bench uses: the control plane's defaults but a
/// 2-day half-life, and a pooled rendition-share prior worth 100 000 views, because VODSYN's
/// "views" are chunk requests (~700 per play): the same weight as ~140 plays.
pub fn bench_params() -> ForecastParams {
    ForecastParams {
        half_life_days: 2.0,
        share_prior_views: 100_000.0,
        ..ForecastParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vodsyn::{generate, load_profile};

    #[test]
    fn serving_days_and_bins() {
        assert_eq!(serving_day(0), -1);
        assert_eq!(serving_day(7_199_999), -1);
        assert_eq!(serving_day(7_200_000), 0);
        assert_eq!(serving_day(86_400_000 + 7_199_999), 0);
        assert_eq!(serving_day(86_400_000 + 7_200_000), 1);
        // n = 45: bins of 2 or 3 chunks, every chunk in the bin that starts before it.
        for n in [1u32, 7, 20, 45, 1350] {
            for k in 0..n {
                let b = bin_of(k, n);
                assert!(bin_start(b, n) <= k && k < bin_start(b + 1, n), "{k}/{n}");
            }
            assert_eq!(bin_start(BINS, n), n);
        }
    }

    #[test]
    fn greedy_and_fill_cap_respect_their_limits() {
        let p = load_profile("S").expect("S").tiny(6, 2, 0.01);
        let g = generate(&p, 3);
        let l = Layout::new(&g.catalog);
        let groups = l.files() * BINS;
        // Scores falling with the group index: the placement is a prefix of the groups.
        let scores: Vec<f64> = (0..groups)
            .map(|g| {
                if l.group_bytes[g] > 0 {
                    1.0 / (1 + g) as f64
                } else {
                    0.0
                }
            })
            .collect();
        let bytes = |p: &Placement| -> u64 {
            p.iter()
                .enumerate()
                .map(|(g, &n)| l.group_range_bytes(g, 0, n))
                .sum()
        };
        let cap = l.group_bytes.iter().sum::<u64>() / 3;
        let p = greedy(&l, &scores, cap);
        assert!(
            bytes(&p) <= cap && bytes(&p) > cap * 9 / 10,
            "{} of {cap}",
            bytes(&p)
        );
        let first_gap = (0..groups)
            .find(|&g| l.group_bytes[g] > 0 && p[g] < l.group_len(g))
            .expect("not everything fits");
        assert!(p[first_gap + 1..].iter().all(|&n| n == 0), "a prefix");
        // Reverse the scores: the capped update adds at most the budget, stays within the
        // capacity, and evicts only what it must.
        let rev: Vec<f64> = (0..groups)
            .map(|g| {
                if l.group_bytes[g] > 0 {
                    (1 + g) as f64
                } else {
                    0.0
                }
            })
            .collect();
        let want = greedy(&l, &rev, cap);
        let budget = cap / 10;
        let q = fill_capped(&l, &p, &want, &rev, cap, budget);
        let added = fill_bytes(&l, &p, &q);
        assert!(added <= budget && added > 0, "{added} of {budget}");
        assert!(bytes(&q) <= cap);
        assert!(bytes(&q) + budget >= bytes(&p), "no needless eviction");
        // Without a limit the update reaches the wanted placement.
        assert_eq!(fill_capped(&l, &p, &want, &rev, cap, u64::MAX), want);
    }

    #[test]
    fn lru_hybrid_catches_what_placement_misses() {
        let p = load_profile("S").expect("S").tiny(6, 2, 0.01);
        let g = generate(&p, 5);
        let b = Bench::new(&g.catalog, &g.requests, bench_params());
        let caps = [g.catalog.catalog_bytes_day0 / 10];
        let files = b.layout.files();
        // Nothing placed: the plain placed cache hits nothing, the hybrid's LRU does.
        let empty = |_: i64| vec![0.0; files];
        let plain = b.run_with(&empty, &caps, None, false)[0];
        let hybrid = b.run_with(&empty, &caps, None, true)[0];
        assert!(plain.bytes > 0 && plain.hit_bytes == 0, "{plain:?}");
        assert_eq!(hybrid.bytes, plain.bytes, "same peak window");
        assert!(hybrid.hit_bytes > 0, "{hybrid:?}");
        // With a forecast, the hybrid's placement gets 90 % of the bytes.
        let ours = b.run(Method::Ours, &caps, None, true)[0];
        assert!(
            ours.bhr() > hybrid.bhr(),
            "{} vs {}",
            ours.bhr(),
            hybrid.bhr()
        );
    }
}
