//! The profile JSON of the VODSYN spec (`shared/workload/profile_S.json`, `profile_M.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::VodsynError;

/// A whole profile: catalog, popularity, load, viewing and evaluation parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name, e.g. `VODSYN-v1-S`.
    pub name: String,
    /// The seed the spec's reference numbers used.
    pub seed: u64,
    /// Days generated.
    pub days: u32,
    /// Warm-up days (not evaluated).
    pub warmup_days: u32,
    /// Catalog shape.
    pub catalog: CatalogParams,
    /// Title popularity and releases.
    pub popularity: PopularityParams,
    /// Session arrivals.
    pub load: LoadParams,
    /// One viewing's shape.
    pub viewing: ViewingParams,
    /// Evaluation windows.
    pub eval: EvalParams,
}

/// Catalog parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogParams {
    /// Initial movies.
    pub n_movies: u32,
    /// Initial series.
    pub n_series: u32,
    /// Episodes per series, inclusive range.
    pub episodes_per_series: [u32; 2],
    /// Movie length in minutes.
    pub movie_minutes: Minutes,
    /// Episode length in minutes.
    pub episode_minutes: Minutes,
    /// Segment duration.
    pub segment_seconds: f64,
    /// Video renditions, kbit/s.
    pub ladder_kbps: Vec<f64>,
    /// σ of the per-chunk log-normal VBR factor.
    pub vbr_sigma: f64,
    /// Smallest chunk.
    pub min_chunk_bytes: u32,
}

/// A clipped normal length distribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Minutes {
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Lower clip.
    pub min: f64,
    /// Upper clip.
    pub max: f64,
    /// Per-episode sd around the series mean (episodes only).
    #[serde(default)]
    pub within_series_sd: f64,
}

/// Popularity parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopularityParams {
    /// Zipf exponent of the intrinsic rank.
    pub zipf_alpha: f64,
    /// AR(1) coefficient of the daily log multiplier.
    pub daily_ar1_rho: f64,
    /// Stationary sd of the daily log multiplier.
    pub daily_log_sd: f64,
    /// Expected new titles per day as a share of the initial titles.
    pub new_titles_per_day_frac: f64,
    /// Probability a new title is a movie.
    pub new_title_movie_prob: f64,
    /// Median launch boost.
    pub launch_boost_median: f64,
    /// sd of the log launch boost.
    pub launch_boost_log_sd: f64,
    /// τ of the boost decay, days.
    pub launch_decay_days: f64,
    /// Days with a tentpole series release.
    pub tentpole_days: Vec<u32>,
    /// Tentpole rank is uniform in this top share.
    pub tentpole_rank_top_frac: f64,
    /// Episode choice decay (P(e) ∝ decay^(e−1)).
    pub episode_decay: f64,
    /// Probability to continue with the next episode.
    pub binge_prob: f64,
    /// Most extra episodes in one session.
    pub binge_max_extra: u32,
    /// Gap between binge episodes, seconds.
    pub binge_gap_s: f64,
    /// Share of all title weight a tentpole holds on its release day.
    pub tentpole_launch_share: f64,
}

/// Load parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadParams {
    /// Session arrival rate at the daily peak, sessions/s.
    pub peak_sessions_per_s: f64,
    /// Hourly multipliers of the peak rate (24 values, local time).
    pub diurnal: Vec<f64>,
}

/// Viewing parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewingParams {
    /// Probability a viewing resumes mid-video.
    pub resume_prob: f64,
    /// Resume point is uniform below this share of the video.
    pub resume_max_frac: f64,
    /// Probability of an early quit.
    pub early_quit_prob: f64,
    /// Most chunks of an early quit.
    pub early_quit_max_chunks: u32,
    /// Probability of a partial viewing.
    pub partial_prob: f64,
    /// Target rung distribution per session.
    pub rung_mix: Vec<f64>,
    /// Startup chunks at a lower rung.
    pub startup_chunks: u32,
    /// How many rungs lower startup chunks are.
    pub startup_rung_drop: u32,
    /// Spacing of the startup requests, seconds.
    pub startup_spacing_s: f64,
    /// Probability of a one-rung ABR dip per later chunk.
    pub abr_dip_prob: f64,
}

/// Evaluation parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    /// Peak window, local hours `[from, to)`.
    pub peak_hours: [u32; 2],
    /// Proactive fill window, local hours.
    pub fill_window: [u32; 2],
    /// Egress bin width, seconds.
    pub bin_seconds: u32,
    /// Cache sizes as shares of the day-0 catalog bytes.
    pub cache_fracs_of_catalog: Vec<f64>,
}

impl Profile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Profile, VodsynError> {
        let text = std::fs::read_to_string(path).map_err(|e| VodsynError::io(path, e))?;
        let p: Profile = serde_json::from_str(&text).map_err(|e| VodsynError::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Checks the values the generator relies on.
    pub fn validate(&self) -> Result<(), VodsynError> {
        let bad = |m: &str| Err(VodsynError::BadProfile(m.to_string()));
        if self.days == 0 || self.warmup_days >= self.days {
            return bad("need days > warmup_days");
        }
        if self.load.diurnal.len() != 24 {
            return bad("load.diurnal needs 24 values");
        }
        if self.catalog.ladder_kbps.is_empty() || self.catalog.ladder_kbps.len() > 8 {
            return bad("catalog.ladder_kbps needs 1..=8 rungs");
        }
        if self.viewing.rung_mix.len() != self.catalog.ladder_kbps.len() {
            return bad("viewing.rung_mix must have one share per rung");
        }
        let [lo, hi] = self.catalog.episodes_per_series;
        if lo == 0 || lo > hi {
            return bad("catalog.episodes_per_series must be 1 <= lo <= hi");
        }
        if self.catalog.movie_minutes.max * 60.0 / self.catalog.segment_seconds > 4095.0
            || self.catalog.episode_minutes.max * 60.0 / self.catalog.segment_seconds > 4095.0
        {
            return bad("videos longer than 4095 chunks do not fit the object id");
        }
        if self.catalog.n_movies + self.catalog.n_series == 0 {
            return bad("empty catalog");
        }
        if !(0.0..1.0).contains(&self.popularity.tentpole_launch_share) {
            return bad("popularity.tentpole_launch_share must be in [0, 1)");
        }
        let [a, b] = self.eval.peak_hours;
        if a >= b || b > 24 {
            return bad("eval.peak_hours must be 0 <= from < to <= 24");
        }
        Ok(())
    }

    /// A tiny profile for tests: `titles` initial titles (half movies), `days` days, one
    /// warm-up day, the load scaled down by `load_scale`.
    pub fn tiny(&self, titles: u32, days: u32, load_scale: f64) -> Profile {
        let mut p = self.clone();
        p.catalog.n_movies = titles.div_ceil(2);
        p.catalog.n_series = titles / 2;
        p.days = days;
        p.warmup_days = days.saturating_sub(1).min(1);
        p.load.peak_sessions_per_s *= load_scale;
        p.popularity.tentpole_days.retain(|d| *d < days);
        p
    }
}
