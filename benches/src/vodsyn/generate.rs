//! The VODSYN-v1 generator (spec section "Generator").
//!
//! Everything random is drawn from one `Pcg64Mcg` seeded with the seed, in this order:
//! initial catalog, releases, daily multipliers, then sessions day by day and hour by hour.
//! Chunk sizes do not use that stream: they are a pure function of the object id
//! ([`chunk_bytes`]), so any implementation of the spec gives the same sizes.

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal, Poisson};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::Profile;

/// splitmix64 as a function of its state: `z = x + 0x9E3779B97F4A7C15`, then the finaliser.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The object's standard-normal VBR draw: `h1 = splitmix64(id)`,
/// `h2 = splitmix64(h1 ^ 0xD1B54A32D192ED03)`, `u = top 53 bits / 2^53` of each, then
/// Box–Muller `z = sqrt(−2 ln u1) · cos(2π u2)`. (`u1 = 0`, probability 2^−53, is taken as
/// 2^−53 so the logarithm stays finite.)
pub fn vbr_z(obj_id: u64) -> f64 {
    const TWO_53: f64 = (1u64 << 53) as f64;
    let h1 = splitmix64(obj_id);
    let h2 = splitmix64(h1 ^ 0xD1B5_4A32_D192_ED03);
    let u1 = ((h1 >> 11) as f64 / TWO_53).max(1.0 / TWO_53);
    let u2 = (h2 >> 11) as f64 / TWO_53;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Bytes of one chunk: `rint(kbps·1000·T_seg/8 · exp(σz − σ²/2))`, at least `min_bytes`.
pub fn chunk_bytes(
    obj_id: u64,
    kbps: f64,
    segment_seconds: f64,
    sigma: f64,
    min_bytes: u32,
) -> u32 {
    let z = vbr_z(obj_id);
    let b = (kbps * 1000.0 * segment_seconds / 8.0 * (sigma * z - sigma * sigma / 2.0).exp())
        .round_ties_even();
    (b as u32).max(min_bytes)
}

/// Object id of a chunk: `((video·8 + rung) << 12) | chunk`.
pub fn object_id(video: u32, rung: u32, chunk: u32) -> u64 {
    ((u64::from(video) * 8 + u64::from(rung)) << 12) | u64::from(chunk)
}

/// `(video, rung, chunk)` of an object id.
pub fn split_id(id: u64) -> (u32, u32, u32) {
    (
        (id >> 15) as u32,
        ((id >> 12) & 7) as u32,
        (id & 0xFFF) as u32,
    )
}

/// Movie or series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One video.
    Movie,
    /// Several episodes, released together.
    Series,
}

/// One title of the catalog/calendar.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Title {
    /// Index in [`Catalog::titles`].
    pub id: u32,
    /// Movie or series.
    pub kind: Kind,
    /// Release day (00:00); 0 for the initial catalog.
    pub release_day: u32,
    /// Whether it was released after day-0's start (a new release, tentpoles included).
    pub new_release: bool,
    /// Whether it is a tentpole.
    pub tentpole: bool,
    /// Intrinsic rank.
    pub rank: u32,
    /// Intrinsic weight `rank^−α`.
    pub w0: f64,
    /// Launch boost `A` (0 for the back catalog).
    pub boost: f64,
    /// Video ids, episode order.
    pub videos: Vec<u32>,
    /// Daily log multipliers, one per day.
    #[serde(skip)]
    pub log_m: Vec<f64>,
}

/// One video (a movie or an episode).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Video {
    /// Index in [`Catalog::videos`].
    pub id: u32,
    /// Its title.
    pub title: u32,
    /// Episode number, 1-based (1 for movies).
    pub episode: u32,
    /// Length in minutes.
    pub minutes: f64,
    /// Chunks per rendition.
    pub n_chunks: u32,
    /// Bytes of each rendition file (sum of its chunks).
    pub rung_bytes: Vec<u64>,
}

/// The catalog and release calendar (written as the trace's JSON companion).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    /// Profile name.
    pub profile: String,
    /// Seed used.
    pub seed: u64,
    /// Days in the trace.
    pub days: u32,
    /// Warm-up days (evaluation starts after them).
    pub warmup_days: u32,
    /// Peak window, local hours `[from, to)`.
    pub peak_hours: [u32; 2],
    /// Ladder, kbit/s.
    pub ladder_kbps: Vec<f64>,
    /// Segment duration, seconds.
    pub segment_seconds: f64,
    /// VBR σ.
    pub vbr_sigma: f64,
    /// Smallest chunk.
    pub min_chunk_bytes: u32,
    /// Catalog bytes of the titles released by day 0 (the cache-size base).
    pub catalog_bytes_day0: u64,
    /// Catalog bytes at the end (all titles).
    pub catalog_bytes_end: u64,
    /// Titles.
    pub titles: Vec<Title>,
    /// Videos.
    pub videos: Vec<Video>,
}

impl Catalog {
    /// Whether a request at `t_ms` (ms since day 0, 00:00) is in the evaluated peak window.
    pub fn in_peak(&self, t_ms: u64) -> bool {
        peak(t_ms, self.warmup_days, self.peak_hours)
    }
}

/// Peak-window test: day ≥ `warmup` and local hour in `hours`.
pub fn peak(t_ms: u64, warmup: u32, hours: [u32; 2]) -> bool {
    let day = t_ms / 86_400_000;
    let hour = (t_ms % 86_400_000 / 3_600_000) as u32;
    day >= u64::from(warmup) && hour >= hours[0] && hour < hours[1]
}

/// One chunk request (16 bytes, so profile S fits in ~370 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Request time, ms since 00:00 of day 0 (floor of the spec's `t`).
    pub t_ms: u32,
    /// Chunk bytes.
    pub bytes: u32,
    /// Object id.
    pub id: u64,
}

impl Request {
    /// The trace timestamp: `floor(t) + 1` seconds.
    pub fn trace_time(&self) -> u32 {
        self.t_ms / 1000 + 1
    }
}

/// A generated trace with its catalog and counters.
#[derive(Debug)]
pub struct Generated {
    /// Catalog and calendar.
    pub catalog: Catalog,
    /// Requests sorted by time (stable).
    pub requests: Vec<Request>,
    /// Sessions started.
    pub sessions: u64,
    /// Viewings (first episodes and binge continuations).
    pub viewings: u64,
}

fn clipped_normal(rng: &mut Pcg64Mcg, mean: f64, sd: f64, lo: f64, hi: f64) -> f64 {
    let n = Normal::new(mean, sd).expect("finite sd");
    n.sample(rng).clamp(lo, hi)
}

fn std_normal(rng: &mut Pcg64Mcg) -> f64 {
    rand_distr::StandardNormal.sample(rng)
}

struct Builder<'a> {
    p: &'a Profile,
    titles: Vec<Title>,
    videos: Vec<Video>,
}

impl Builder<'_> {
    fn add_title(
        &mut self,
        rng: &mut Pcg64Mcg,
        kind: Kind,
        rank: u32,
        release_day: u32,
        new_release: bool,
    ) -> u32 {
        let c = &self.p.catalog;
        let id = self.titles.len() as u32;
        let minutes: Vec<f64> = match kind {
            Kind::Movie => {
                let m = &c.movie_minutes;
                vec![clipped_normal(rng, m.mean, m.sd, m.min, m.max)]
            }
            Kind::Series => {
                let e = &c.episode_minutes;
                let [lo, hi] = c.episodes_per_series;
                let n = rng.random_range(lo..=hi);
                let mean = clipped_normal(rng, e.mean, e.sd, e.min, e.max);
                (0..n)
                    .map(|_| clipped_normal(rng, mean, e.within_series_sd, e.min, e.max))
                    .collect()
            }
        };
        let mut vids = Vec::with_capacity(minutes.len());
        for (i, &min) in minutes.iter().enumerate() {
            let vid = self.videos.len() as u32;
            let n_chunks = (min * 60.0 / c.segment_seconds).ceil() as u32;
            self.videos.push(Video {
                id: vid,
                title: id,
                episode: i as u32 + 1,
                minutes: min,
                n_chunks,
                rung_bytes: Vec::new(),
            });
            vids.push(vid);
        }
        self.titles.push(Title {
            id,
            kind,
            release_day,
            new_release,
            tentpole: false,
            rank,
            w0: f64::from(rank).powf(-self.p.popularity.zipf_alpha),
            boost: 0.0,
            videos: vids,
            log_m: Vec::new(),
        });
        id
    }
}

/// Weight of a title on day `d` (0 before its release): `w0·m(d)·(1 + A·exp(−age/τ))`.
pub fn weight(t: &Title, d: u32, tau: f64) -> f64 {
    if d < t.release_day {
        return 0.0;
    }
    let age = f64::from(d - t.release_day);
    t.w0 * t.log_m[d as usize].exp() * (1.0 + t.boost * (-age / tau).exp())
}

/// Generates the whole trace for `profile` and `seed`.
pub fn generate(profile: &Profile, seed: u64) -> Generated {
    let p = profile;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let c = &p.catalog;
    let pop = &p.popularity;
    let days = p.days;
    let n0 = c.n_movies + c.n_series;

    // Initial catalog: a random permutation of ranks 1..=N0.
    let mut ranks: Vec<u32> = (1..=n0).collect();
    ranks.shuffle(&mut rng);
    let mut b = Builder {
        p,
        titles: Vec::new(),
        videos: Vec::new(),
    };
    for (i, &rank) in ranks.iter().enumerate() {
        let kind = if (i as u32) < c.n_movies {
            Kind::Movie
        } else {
            Kind::Series
        };
        b.add_title(&mut rng, kind, rank, 0, false);
    }

    // Releases: K ~ Poisson(frac·N0) per day, and a tentpole series on tentpole days.
    let boost = LogNormal::new(pop.launch_boost_median.ln(), pop.launch_boost_log_sd)
        .expect("finite boost parameters");
    let releases_per_day = pop.new_titles_per_day_frac * f64::from(n0);
    let top = ((pop.tentpole_rank_top_frac * f64::from(n0)).round() as u32).max(1);
    let mut tentpoles = Vec::new();
    for d in 0..days {
        let k = if releases_per_day > 0.0 {
            Poisson::new(releases_per_day)
                .expect("positive rate")
                .sample(&mut rng) as u32
        } else {
            0
        };
        for _ in 0..k {
            let kind = if rng.random_bool(pop.new_title_movie_prob) {
                Kind::Movie
            } else {
                Kind::Series
            };
            let rank = rng.random_range(1..=n0);
            let id = b.add_title(&mut rng, kind, rank, d, true);
            b.titles[id as usize].boost = boost.sample(&mut rng);
        }
        if pop.tentpole_days.contains(&d) {
            let rank = rng.random_range(1..=top);
            let id = b.add_title(&mut rng, Kind::Series, rank, d, true);
            b.titles[id as usize].tentpole = true;
            tentpoles.push(id);
        }
    }

    // Daily AR(1) log multipliers (stationary sd `daily_log_sd`) for every title.
    let rho = pop.daily_ar1_rho;
    let sd = pop.daily_log_sd;
    let innov = sd * (1.0 - rho * rho).sqrt();
    for t in &mut b.titles {
        let mut lm = Vec::with_capacity(days as usize);
        let mut x = sd * std_normal(&mut rng);
        lm.push(x);
        for _ in 1..days {
            x = rho * x + innov * std_normal(&mut rng);
            lm.push(x);
        }
        t.log_m = lm;
    }

    // Tentpole boost, solved so that the title holds `share` of all weight on its day.
    let tau = pop.launch_decay_days;
    for &tp in &tentpoles {
        let d = b.titles[tp as usize].release_day;
        let others: f64 = b
            .titles
            .iter()
            .filter(|t| t.id != tp)
            .map(|t| weight(t, d, tau))
            .sum();
        let share = pop.tentpole_launch_share;
        let target = share / (1.0 - share) * others;
        let t = &mut b.titles[tp as usize];
        let base = t.w0 * t.log_m[d as usize].exp();
        t.boost = (target / base - 1.0).max(0.0);
    }

    let Builder {
        mut titles,
        mut videos,
        ..
    } = b;

    // Rendition bytes (catalog bytes).
    for v in &mut videos {
        v.rung_bytes = c
            .ladder_kbps
            .iter()
            .enumerate()
            .map(|(r, &kbps)| {
                (0..v.n_chunks)
                    .map(|k| {
                        u64::from(chunk_bytes(
                            object_id(v.id, r as u32, k),
                            kbps,
                            c.segment_seconds,
                            c.vbr_sigma,
                            c.min_chunk_bytes,
                        ))
                    })
                    .sum()
            })
            .collect();
    }
    let title_bytes = |t: &Title| -> u64 {
        t.videos
            .iter()
            .map(|&v| videos[v as usize].rung_bytes.iter().sum::<u64>())
            .sum()
    };
    let catalog_bytes_day0 = titles
        .iter()
        .filter(|t| !t.new_release)
        .map(title_bytes)
        .sum();
    let catalog_bytes_end = titles.iter().map(title_bytes).sum();

    // Per-day cumulative weights for title choice.
    let cdfs: Vec<Vec<f64>> = (0..days)
        .map(|d| {
            let mut acc = 0.0;
            titles
                .iter()
                .map(|t| {
                    acc += weight(t, d, tau);
                    acc
                })
                .collect()
        })
        .collect();

    // Sessions.
    let v = &p.viewing;
    let rung_cdf: Vec<f64> = v
        .rung_mix
        .iter()
        .scan(0.0, |a, &x| {
            *a += x;
            Some(*a)
        })
        .collect();
    let end_s = f64::from(days) * 86_400.0;
    let expected: f64 = p.load.diurnal.iter().sum::<f64>() * 3600.0 * p.load.peak_sessions_per_s;
    let mut requests: Vec<Request> =
        Vec::with_capacity((expected * f64::from(days) * 800.0) as usize);
    let mut sessions = 0u64;
    let mut viewings = 0u64;
    let q = pop.episode_decay;
    for d in 0..days {
        let cdf = &cdfs[d as usize];
        let total = *cdf.last().unwrap_or(&0.0);
        for h in 0..24u32 {
            let lambda = p.load.peak_sessions_per_s * p.load.diurnal[h as usize] * 3600.0;
            let n = if lambda > 0.0 {
                Poisson::new(lambda)
                    .expect("positive rate")
                    .sample(&mut rng) as u64
            } else {
                0
            };
            for _ in 0..n {
                sessions += 1;
                let t0 =
                    f64::from(d) * 86_400.0 + f64::from(h) * 3600.0 + rng.random::<f64>() * 3600.0;
                let u = rng.random::<f64>() * total;
                let ti = cdf.partition_point(|&x| x <= u).min(titles.len() - 1);
                let title = &titles[ti];
                let ur = rng.random::<f64>() * rung_cdf.last().copied().unwrap_or(1.0);
                let rstar = rung_cdf
                    .partition_point(|&x| x <= ur)
                    .min(rung_cdf.len() - 1) as u32;
                // Episode: truncated geometric inverse CDF, P(e) ∝ q^(e−1), e in 1..=E.
                let e_count = title.videos.len() as u32;
                let mut ep = if e_count <= 1 || q >= 1.0 {
                    if e_count <= 1 {
                        1
                    } else {
                        rng.random_range(1..=e_count)
                    }
                } else {
                    let u: f64 = rng.random();
                    let x = (1.0 - u * (1.0 - q.powi(e_count as i32))).ln() / q.ln();
                    (1 + x.floor() as u32).min(e_count)
                };
                let mut t_view = t0;
                let mut first = true;
                let mut extra = 0;
                loop {
                    viewings += 1;
                    let vid = &videos[title.videos[ep as usize - 1] as usize];
                    let n = vid.n_chunks;
                    let k0 = if first && rng.random_bool(v.resume_prob) {
                        (rng.random::<f64>() * f64::from(n) * v.resume_max_frac).floor() as u32
                    } else {
                        0
                    };
                    let ue: f64 = rng.random();
                    let k_end = if ue < v.early_quit_prob {
                        (k0 + rng.random_range(1..=v.early_quit_max_chunks)).min(n)
                    } else if ue < v.early_quit_prob + v.partial_prob {
                        let add = (rng.random::<f64>() * f64::from(n - k0)).ceil() as u32;
                        (k0 + add).max(k0 + 1)
                    } else {
                        n
                    };
                    let len = k_end - k0;
                    let offset = |j: u32| -> f64 {
                        if j < v.startup_chunks {
                            v.startup_spacing_s * f64::from(j)
                        } else {
                            v.startup_spacing_s * f64::from(v.startup_chunks - 1)
                                + c.segment_seconds * f64::from(j - (v.startup_chunks - 1))
                        }
                    };
                    for j in 0..len {
                        let t = t_view + offset(j);
                        if t >= end_s {
                            break;
                        }
                        let rung = if j < v.startup_chunks {
                            rstar.saturating_sub(v.startup_rung_drop)
                        } else if rng.random_bool(v.abr_dip_prob) {
                            rstar.saturating_sub(1)
                        } else {
                            rstar
                        };
                        let id = object_id(vid.id, rung, k0 + j);
                        requests.push(Request {
                            t_ms: (t * 1000.0).floor() as u32,
                            bytes: chunk_bytes(
                                id,
                                c.ladder_kbps[rung as usize],
                                c.segment_seconds,
                                c.vbr_sigma,
                                c.min_chunk_bytes,
                            ),
                            id,
                        });
                    }
                    let binge = k_end == n
                        && ep < e_count
                        && extra < pop.binge_max_extra
                        && rng.random_bool(pop.binge_prob);
                    if !binge {
                        break;
                    }
                    t_view += offset(len - 1) + c.segment_seconds + pop.binge_gap_s;
                    if t_view >= end_s {
                        break;
                    }
                    ep += 1;
                    extra += 1;
                    first = false;
                }
            }
        }
    }
    requests.sort_by_key(|r| r.t_ms);
    for t in &mut titles {
        t.videos.shrink_to_fit();
    }
    videos.shrink_to_fit();
    Generated {
        catalog: Catalog {
            profile: p.name.clone(),
            seed,
            days,
            warmup_days: p.warmup_days,
            peak_hours: p.eval.peak_hours,
            ladder_kbps: c.ladder_kbps.clone(),
            segment_seconds: c.segment_seconds,
            vbr_sigma: c.vbr_sigma,
            min_chunk_bytes: c.min_chunk_bytes,
            catalog_bytes_day0,
            catalog_bytes_end,
            titles,
            videos,
        },
        requests,
        sessions,
        viewings,
    }
}
