//! Demand forecast (pure, no I/O): expected views per rendition and region for one day.
//!
//! Days are whole UTC days numbered from the Unix epoch (`unix_secs / 86400`). For each
//! (rendition, region) series in the history:
//! 1. **weekly seasonality**: a factor per weekday and region, the mean daily views of the
//!    region on that weekday over the mean of all days, once the region has at least
//!    `min_season_days` of history (else 1); factors are clamped to `[0.05, 20]`;
//! 2. **level**: the deseasonalised views of the last `history_days` complete days, weighted
//!    by `0.5^((k-1) / half_life_days)` for the day `k` days before the target (days before the
//!    series' first view do not count, so a young series is not diluted);
//! 3. forecast = level × the target weekday's factor.
//!
//! With `share_half_life_days` set, the level is formed per **title** (the sum of its
//! renditions' levels) and split over the title's renditions by their own shares with that
//! (longer) half-life: a title's total moves fast, the mix of its renditions and episodes is
//! stable, and per-rendition counts are too noisy to follow day by day. Then, with
//! `launch_decay`, titles whose launch (a calendar entry before the target day) is inside
//! the window are **projected along the launch decay**: the pooled day-over-day ratio `ρ` of
//! the views of every such title after its launch day (at most 1) is estimated from the
//! history, and each past day `k` days before the target counts as `views · ρ^k` (days before
//! the launch do not count). A title's views fall for days after its launch, so a plain
//! recent mean would overestimate it. With `launch_decay_by_age` the ratio is pooled per age
//! since launch (`ρ(a)` = views at age `a + 1` ÷ views at age `a`, summed over launches; an
//! age without data takes the age before it) and a day of age `a` is projected to the target
//! age `T` by `ρ(a)·…·ρ(T − 1)`: a launch's boost fades into the title's base demand, so the
//! decay slows with age.
//!
//! Then the **launch calendar**: a title launching on the target day gets, in every region it
//! launches in, a prior equal to the `launch_prior_quantile` of the region's per-title
//! forecasts (at least `launch_prior_min_views`; a launch's own `prior_quantile`, e.g. 1.0 for
//! a tentpole, overrides the quantile), spread over its renditions by the mix of rendition
//! names among the region's titles that cover at least half of the launch's names (the
//! region's whole mix when none does; uniform when unknown); a rendition keeps the larger of
//! prior and history. Last, **recommendation exposure**: `exposure_conversion × impressions` extra views
//! for the title in that region, spread over its renditions in proportion to their forecast.
//!
//! Inputs are plain lists, so a bench or the fill controller can drive it from any history
//! (see [`DailyViews`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oca_common::wire::RenditionId;
use serde::{Deserialize, Serialize};

/// Views of one rendition in one region on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyViews {
    /// Day number (`unix_secs / 86400`).
    pub day: i64,
    /// The rendition.
    pub rendition: RenditionId,
    /// Region.
    pub region: String,
    /// Views that day.
    pub views: f64,
}

impl DailyViews {
    /// Builds a history from `(day, title, rendition, region, views)` rows, e.g. a VODSYN
    /// view log aggregated per day. Fails on the first invalid title or rendition segment.
    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = (i64, &'a str, &'a str, &'a str, f64)>,
    ) -> Result<Vec<DailyViews>, oca_common::key::KeyError> {
        rows.into_iter()
            .map(|(day, title, rendition, region, views)| {
                Ok(DailyViews {
                    day,
                    rendition: RenditionId::new(title, rendition)?,
                    region: region.to_owned(),
                    views,
                })
            })
            .collect()
    }
}

/// A title on the launch calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// Title id.
    pub title: String,
    /// Launch day number.
    pub day: i64,
    /// Regions it launches in; empty = every region in the history.
    pub regions: Vec<String>,
    /// Its renditions.
    pub renditions: Vec<RenditionId>,
    /// Quantile of the region's per-title forecasts this launch starts at, instead of
    /// [`ForecastParams::launch_prior_quantile`] (a tentpole: 1.0, the top title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_quantile: Option<f64>,
}

/// Recommendation impressions of a title in a region (over the last day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// Title id.
    pub title: String,
    /// Region.
    pub region: String,
    /// Times it was shown in a recommendation row.
    pub impressions: f64,
}

/// Tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastParams {
    /// Half-life of the recent-days weighting, in days.
    pub half_life_days: f64,
    /// Half-life of the weighting of a title's rendition shares, in days; `None`: every
    /// rendition is forecast on its own (no per-title level).
    pub share_half_life_days: Option<f64>,
    /// Weight, in (decayed) views, of the pooled prior a title's rendition shares are shrunk
    /// towards: the mix of rendition names among the region's titles that have views on at
    /// least half of the title's names. 0 = the title's own shares only.
    pub share_prior_views: f64,
    /// How many days back to look.
    pub history_days: u32,
    /// Days of regional history needed before weekday factors are used.
    pub min_season_days: u32,
    /// Quantile (0..=1) of a region's per-title forecasts a launch starts at.
    pub launch_prior_quantile: f64,
    /// Floor of the launch prior, views per title and region.
    pub launch_prior_min_views: f64,
    /// Extra views per recommendation impression.
    pub exposure_conversion: f64,
    /// Project recently launched titles forward along the launch decay (needs
    /// `share_half_life_days`; see [`forecast`]).
    pub launch_decay: bool,
    /// With `launch_decay`: one pooled decay ratio per age since launch instead of one for
    /// all ages (a launch's boost fades, so the decay slows with age).
    pub launch_decay_by_age: bool,
}

impl Default for ForecastParams {
    fn default() -> Self {
        ForecastParams {
            half_life_days: 3.0,
            share_half_life_days: Some(14.0),
            share_prior_views: 0.0,
            history_days: 28,
            min_season_days: 14,
            launch_prior_quantile: 0.9,
            launch_prior_min_views: 10.0,
            exposure_conversion: 0.02,
            launch_decay: true,
            launch_decay_by_age: true,
        }
    }
}

/// Expected views of a rendition in a region on the target day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The rendition.
    pub rendition: RenditionId,
    /// Region.
    pub region: String,
    /// Expected views.
    pub views: f64,
}

/// Weekday of a day number, 0 = Monday (1970-01-01 was a Thursday).
pub fn weekday(day: i64) -> usize {
    (day + 3).rem_euclid(7) as usize
}

/// Per-region weekday factors from regional daily totals in `[first, target)`.
/// Daily views over the window `[from, from + len)`, and the first day with data.
struct Days {
    views: Vec<f64>,
    first: usize,
}

impl Days {
    fn new(len: usize) -> Days {
        Days {
            views: vec![0.0; len],
            first: len,
        }
    }

    fn add(&mut self, idx: usize, v: f64) {
        self.views[idx] += v;
        self.first = self.first.min(idx);
    }
}

/// Per-region weekday factors from the region's daily totals (`from` = day of index 0).
fn seasonality(totals: &Days, from: i64, min_days: u32) -> [f64; 7] {
    let span = totals.views.len().saturating_sub(totals.first);
    if span == 0 || span < min_days.max(7) as usize {
        return [1.0; 7];
    }
    let mut sum = [0.0; 7];
    let mut n = [0.0; 7];
    for (i, v) in totals.views.iter().enumerate().skip(totals.first) {
        let w = weekday(from + i as i64);
        sum[w] += v;
        n[w] += 1.0;
    }
    let overall = sum.iter().sum::<f64>() / n.iter().sum::<f64>();
    if overall <= 0.0 {
        return [1.0; 7];
    }
    let mut f = [1.0; 7];
    for w in 0..7 {
        if n[w] > 0.0 {
            f[w] = (sum[w] / n[w] / overall).clamp(0.05, 20.0);
        }
    }
    f
}

/// The mix of rendition names among the region's titles (other than the launch) that have
/// views on at least half of the launch's rendition names; `None` when no title does.
fn launch_mix<'a>(
    l: &Launch,
    region: &str,
    series: &HashMap<(&'a RenditionId, &'a str), Days>,
) -> Option<HashMap<&'a str, f64>> {
    let names: BTreeSet<&str> = l.renditions.iter().map(|r| r.rendition()).collect();
    names_mix(&names, &l.title, region, series)
}

/// The mix of rendition names among the region's titles other than `title` that have views
/// on at least half of `names`; `None` when no title does.
fn names_mix<'a>(
    names: &BTreeSet<&str>,
    title: &str,
    region: &str,
    series: &HashMap<(&'a RenditionId, &'a str), Days>,
) -> Option<HashMap<&'a str, f64>> {
    let mut covered: HashMap<&str, usize> = HashMap::new();
    for (rid, r) in series.keys() {
        if *r == region && rid.title() != title && names.contains(rid.rendition()) {
            *covered.entry(rid.title()).or_insert(0) += 1;
        }
    }
    let need = names.len().div_ceil(2).max(1);
    let mut mix: HashMap<&'a str, f64> = HashMap::new();
    for ((rid, r), days) in series {
        if *r == region && covered.get(rid.title()).is_some_and(|n| *n >= need) {
            *mix.entry(rid.rendition()).or_insert(0.0) += days.views.iter().sum::<f64>();
        }
    }
    (mix.values().sum::<f64>() > 0.0).then_some(mix)
}

fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    v.get(idx).copied()
}

/// Forecasts every (rendition, region) for `target_day` from the complete days
/// `[history_end - history_days, history_end)` of `history` (`history_end <= target_day`;
/// pass `target_day` when the day before is complete, today's day number when forecasting
/// tomorrow during a partial today). Day `d` weighs `0.5^((target_day - d - 1) / half_life)`.
/// Sorted by views, highest first.
pub fn forecast(
    target_day: i64,
    history_end: i64,
    history: &[DailyViews],
    launches: &[Launch],
    exposure: &[Exposure],
    params: &ForecastParams,
) -> Vec<Forecast> {
    let history_end = history_end.min(target_day);
    let len = params.history_days.max(1) as usize;
    let from = history_end.saturating_sub(len as i64);
    // Aggregate with borrowed keys: no allocation per row.
    let mut series: HashMap<(&RenditionId, &str), Days> = HashMap::new();
    let mut totals: HashMap<&str, Days> = HashMap::new();
    let mut title_days: HashMap<(&str, &str), Days> = HashMap::new();
    let mut mix: HashMap<&str, HashMap<&str, f64>> = HashMap::new();
    for h in history
        .iter()
        .filter(|h| h.day >= from && h.day < history_end && h.views.is_finite() && h.views >= 0.0)
    {
        let idx = (h.day - from) as usize;
        series
            .entry((&h.rendition, &h.region))
            .or_insert_with(|| Days::new(len))
            .add(idx, h.views);
        totals
            .entry(&h.region)
            .or_insert_with(|| Days::new(len))
            .add(idx, h.views);
        if params.share_half_life_days.is_some() {
            title_days
                .entry((h.rendition.title(), &h.region))
                .or_insert_with(|| Days::new(len))
                .add(idx, h.views);
        }
        *mix.entry(&h.region)
            .or_default()
            .entry(h.rendition.rendition())
            .or_insert(0.0) += h.views;
    }
    let season: HashMap<&str, [f64; 7]> = totals
        .iter()
        .map(|(r, t)| (*r, seasonality(t, from, params.min_season_days)))
        .collect();

    let hl = if params.half_life_days > 0.0 {
        params.half_life_days
    } else {
        f64::INFINITY
    };
    // weight[i] for the day of index i.
    let weight: Vec<f64> = (0..len)
        .map(|i| 0.5f64.powf((target_day as f64 - (from as f64 + i as f64) - 1.0) / hl))
        .collect();
    // Deseasonalised level of a day series: weighted mean from its first day with views.
    let level = |days: &Days, s: &[f64; 7]| -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, v) in days.views.iter().enumerate().skip(days.first) {
            let w = weight[i];
            num += w * v / s[weekday(from + i as i64)];
            den += w;
        }
        if den > 0.0 { num / den } else { 0.0 }
    };
    let mut out: BTreeMap<(RenditionId, String), f64> = BTreeMap::new();
    match params.share_half_life_days {
        None => {
            for ((rid, region), days) in &series {
                let s = season.get(region).copied().unwrap_or([1.0; 7]);
                out.insert(
                    ((*rid).clone(), (*region).to_owned()),
                    level(days, &s) * s[weekday(target_day)],
                );
            }
        }
        Some(share_hl) => {
            // Per-title level, split by the renditions' slower-moving shares.
            let share_hl = if share_hl > 0.0 {
                share_hl
            } else {
                f64::INFINITY
            };
            let share_w: Vec<f64> = (0..len)
                .map(|i| {
                    0.5f64.powf((target_day as f64 - (from as f64 + i as f64) - 1.0) / share_hl)
                })
                .collect();
            let mut share: HashMap<(&RenditionId, &str), f64> = HashMap::new();
            let mut share_sum: HashMap<(&str, &str), f64> = HashMap::new();
            for ((rid, region), days) in &series {
                let x: f64 = days.views.iter().zip(&share_w).map(|(v, w)| v * w).sum();
                share.insert((rid, region), x);
                *share_sum.entry((rid.title(), region)).or_insert(0.0) += x;
            }
            // Recent launches and the pooled day-over-day decay after them.
            let launched: HashMap<&str, usize> = launches
                .iter()
                .filter(|l| params.launch_decay && l.day >= from && l.day < history_end)
                .map(|l| (l.title.as_str(), (l.day - from) as usize))
                .collect();
            // Pooled day-over-day ratio after launch, overall and per age (days since the
            // launch): a launch's boost fades, so the ratio rises towards 1 with age.
            let (mut after, mut before) = (vec![0.0; len], vec![0.0; len]);
            for ((t, _), days) in &title_days {
                if let Some(&li) = launched.get(t) {
                    for i in li + 1..len {
                        after[i - 1 - li] += days.views[i];
                        before[i - 1 - li] += days.views[i - 1];
                    }
                }
            }
            let ratio = |a: f64, b: f64| (a > 0.0 && b > 0.0).then(|| (a / b).min(1.0));
            let rho = ratio(after.iter().sum(), before.iter().sum()).unwrap_or(1.0);
            // by_age[a]: the ratio from age a to a + 1 (with `launch_decay_by_age`); an age
            // without data takes the one before it, the overall ratio before the first.
            let mut by_age = vec![rho; len];
            if params.launch_decay_by_age {
                let mut last = rho;
                for (a, g) in by_age.iter_mut().enumerate() {
                    if let Some(x) = ratio(after[a], before[a]) {
                        last = x;
                    }
                    *g = last;
                }
            }
            // Factor from age `a` to age `b` (b >= a).
            let project = |a: usize, b: usize| -> f64 {
                (a..b)
                    .map(|x| by_age.get(x).or(by_age.last()).copied().unwrap_or(1.0))
                    .product()
            };
            let title_level: HashMap<(&str, &str), f64> = title_days
                .iter()
                .map(|((t, region), days)| {
                    let s = season.get(region).copied().unwrap_or([1.0; 7]);
                    let lvl = match launched.get(t) {
                        Some(&li) => {
                            let (mut num, mut den) = (0.0, 0.0);
                            let target_age = (target_day - (from + li as i64)).max(0) as usize;
                            for (i, v) in days.views.iter().enumerate().skip(li.max(days.first)) {
                                num += weight[i] * v * project(i - li, target_age)
                                    / s[weekday(from + i as i64)];
                                den += weight[i];
                            }
                            if den > 0.0 { num / den } else { 0.0 }
                        }
                        None => level(days, &s),
                    };
                    ((*t, *region), lvl * s[weekday(target_day)])
                })
                .collect();
            // Pooled prior shares, per distinct set of rendition names.
            let k = params.share_prior_views.max(0.0);
            let mut names: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
            if k > 0.0 {
                for (rid, region) in series.keys() {
                    names
                        .entry((rid.title(), region))
                        .or_default()
                        .insert(rid.rendition());
                }
            }
            let mut priors: HashMap<(&str, Vec<&str>), HashMap<&str, f64>> = HashMap::new();
            for ((_, region), set) in &names {
                let key = (*region, set.iter().copied().collect::<Vec<_>>());
                if priors.contains_key(&key) {
                    continue;
                }
                // Every title counts (the title's own views too), so titles with the same
                // names share one prior.
                let mix = names_mix(set, "", region, &series).unwrap_or_default();
                let sum: f64 = set.iter().map(|n| mix.get(n).copied().unwrap_or(0.0)).sum();
                let p = set
                    .iter()
                    .map(|n| {
                        let x = mix.get(n).copied().unwrap_or(0.0);
                        (
                            *n,
                            if sum > 0.0 {
                                x / sum
                            } else {
                                1.0 / set.len() as f64
                            },
                        )
                    })
                    .collect();
                priors.insert(key, p);
            }
            for ((rid, region), x) in &share {
                let key = (rid.title(), *region);
                let sum = share_sum.get(&key).copied().unwrap_or(0.0);
                let lvl = title_level.get(&key).copied().unwrap_or(0.0);
                let prior = names
                    .get(&key)
                    .and_then(|set| priors.get(&(*region, set.iter().copied().collect())))
                    .and_then(|p| p.get(rid.rendition()))
                    .copied()
                    .unwrap_or(0.0);
                let v = if sum + k > 0.0 {
                    lvl * (x + k * prior) / (sum + k)
                } else {
                    0.0
                };
                out.insert(((*rid).clone(), (*region).to_owned()), v);
            }
        }
    }

    // Launch prior.
    let all_regions: BTreeSet<String> = totals.keys().map(|r| (*r).to_owned()).collect();
    // region -> title -> forecast from history, computed once.
    let mut per_region_title: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for ((rid, r), v) in &out {
        *per_region_title
            .entry(r.clone())
            .or_default()
            .entry(rid.title().to_owned())
            .or_insert(0.0) += v;
    }
    for l in launches
        .iter()
        .filter(|l| l.day == target_day && !l.renditions.is_empty())
    {
        let regions: Vec<String> = if l.regions.is_empty() {
            all_regions.iter().cloned().collect()
        } else {
            l.regions.clone()
        };
        for region in regions {
            let per_title: Vec<f64> = per_region_title
                .get(&region)
                .map(|m| {
                    m.iter()
                        .filter(|(t, _)| **t != l.title)
                        .map(|(_, v)| *v)
                        .collect()
                })
                .unwrap_or_default();
            let q = l.prior_quantile.unwrap_or(params.launch_prior_quantile);
            let prior = quantile(per_title, q)
                .unwrap_or(0.0)
                .max(params.launch_prior_min_views);
            let m = launch_mix(l, &region, &series).or_else(|| mix.get(region.as_str()).cloned());
            let weights: Vec<f64> = l
                .renditions
                .iter()
                .map(|r| {
                    m.as_ref()
                        .and_then(|m| m.get(r.rendition()))
                        .copied()
                        .unwrap_or(0.0)
                })
                .collect();
            let wsum: f64 = weights.iter().sum();
            let n = l.renditions.len() as f64;
            for (rid, w) in l.renditions.iter().zip(weights) {
                let share = if wsum > 0.0 { w / wsum } else { 1.0 / n };
                let e = out.entry((rid.clone(), region.clone())).or_insert(0.0);
                *e = e.max(prior * share);
            }
        }
    }

    // Recommendation exposure.
    let mut groups: HashMap<(String, String), Vec<(RenditionId, String)>> = HashMap::new();
    for (rid, r) in out.keys() {
        groups
            .entry((rid.title().to_owned(), r.clone()))
            .or_default()
            .push((rid.clone(), r.clone()));
    }
    for x in exposure
        .iter()
        .filter(|x| x.impressions.is_finite() && x.impressions > 0.0)
    {
        let extra = params.exposure_conversion * x.impressions;
        let Some(keys) = groups.get(&(x.title.clone(), x.region.clone())) else {
            continue;
        };
        let sum: f64 = keys.iter().map(|k| out[k]).sum();
        let n = keys.len() as f64;
        for k in keys {
            let share = if sum > 0.0 { out[k] / sum } else { 1.0 / n };
            if let Some(v) = out.get_mut(k) {
                *v += extra * share;
            }
        }
    }

    let mut v: Vec<Forecast> = out
        .into_iter()
        .map(|((rendition, region), views)| Forecast {
            rendition,
            region,
            views,
        })
        .collect();
    v.sort_by(|a, b| {
        b.views
            .total_cmp(&a.views)
            .then_with(|| a.rendition.cmp(&b.rendition))
            .then_with(|| a.region.cmp(&b.region))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first Monday on or after day `d`.
    fn monday_on_or_after(d: i64) -> i64 {
        (d..d + 7).find(|d| weekday(*d) == 0).unwrap()
    }

    fn rid(s: &str) -> RenditionId {
        RenditionId::parse(s).unwrap()
    }

    fn dv(day: i64, r: &str, region: &str, views: f64) -> DailyViews {
        DailyViews {
            day,
            rendition: rid(r),
            region: region.into(),
            views,
        }
    }

    fn get(f: &[Forecast], r: &str, region: &str) -> f64 {
        f.iter()
            .find(|x| x.rendition.as_str() == r && x.region == region)
            .map_or(0.0, |x| x.views)
    }

    #[test]
    fn weekday_of_known_days() {
        assert_eq!(weekday(0), 3, "1970-01-01 was a Thursday");
        assert_eq!(weekday(20_414), 5, "2025-11-22 was a Saturday");
        assert_eq!(weekday(-1), 2);
    }

    #[test]
    fn flat_history_predicts_its_level() {
        let target = 20_500;
        let h: Vec<_> = (target - 28..target)
            .map(|d| dv(d, "t/720p", "NL", 100.0))
            .collect();
        let f = forecast(target, target, &h, &[], &[], &ForecastParams::default());
        assert_eq!(f.len(), 1);
        assert!((f[0].views - 100.0).abs() < 1e-9, "{}", f[0].views);
        // Forecasting tomorrow while today (target - 1) is partial: today is left out.
        let mut partial = h.clone();
        partial.retain(|x| x.day < target - 1);
        partial.push(dv(target - 1, "t/720p", "NL", 3.0));
        let f = forecast(
            target,
            target - 1,
            &partial,
            &[],
            &[],
            &ForecastParams::default(),
        );
        assert!((f[0].views - 100.0).abs() < 1e-9, "{}", f[0].views);
    }

    #[test]
    fn weekly_pattern_is_predicted() {
        // 100 views on weekdays, 300 on Saturday and Sunday, four weeks.
        let start = monday_on_or_after(20_400);
        let h: Vec<_> = (start..start + 28)
            .map(|d| {
                dv(
                    d,
                    "t/720p",
                    "NL",
                    if weekday(d) >= 5 { 300.0 } else { 100.0 },
                )
            })
            .collect();
        let p = ForecastParams::default();
        let sat = start + 28 + 5;
        // Forecast for the next Saturday and the next Monday, from the same four weeks.
        let h_sat: Vec<_> = h
            .iter()
            .cloned()
            .chain((start + 28..sat).map(|d| dv(d, "t/720p", "NL", 100.0)))
            .collect();
        let f_sat = get(&forecast(sat, sat, &h_sat, &[], &[], &p), "t/720p", "NL");
        let f_mon = get(
            &forecast(start + 28, start + 28, &h, &[], &[], &p),
            "t/720p",
            "NL",
        );
        assert!((f_mon - 100.0).abs() < 1.0, "monday {f_mon}");
        assert!((f_sat - 300.0).abs() < 3.0, "saturday {f_sat}");
        // Without enough history the factors are 1: no pattern.
        let short = ForecastParams {
            min_season_days: 60,
            ..p
        };
        let flat = get(
            &forecast(start + 28, start + 28, &h, &[], &[], &short),
            "t/720p",
            "NL",
        );
        assert!(flat > 110.0, "{flat}");
    }

    #[test]
    fn recent_days_weigh_more() {
        // A title rising from 10 to 100 views over the last days.
        let target = 20_500;
        let h: Vec<_> = (target - 10..target)
            .map(|d| {
                dv(
                    d,
                    "t/720p",
                    "NL",
                    if d >= target - 3 { 100.0 } else { 10.0 },
                )
            })
            .collect();
        let p = ForecastParams {
            min_season_days: 365,
            ..ForecastParams::default()
        };
        let f = get(&forecast(target, target, &h, &[], &[], &p), "t/720p", "NL");
        let plain_mean = (3.0 * 100.0 + 7.0 * 10.0) / 10.0;
        assert!(
            f > plain_mean + 10.0 && f < 100.0,
            "{f} vs mean {plain_mean}"
        );
        // Half-life 1 day: weights 1, 1/2, 1/4… → (100+50+25 + 10*(1/8+…)) / (2 - 2^-9).
        let fast = ForecastParams {
            half_life_days: 1.0,
            ..p
        };
        let f1 = get(
            &forecast(target, target, &h, &[], &[], &fast),
            "t/720p",
            "NL",
        );
        let w: Vec<f64> = (1..=10).map(|k| 0.5f64.powi(k - 1)).collect();
        let num: f64 = w[..3].iter().sum::<f64>() * 100.0 + w[3..].iter().sum::<f64>() * 10.0;
        assert!((f1 - num / w.iter().sum::<f64>()).abs() < 1e-9);
        // Old history outside the window is ignored.
        let old = vec![dv(target - 100, "t/720p", "NL", 1e6)];
        assert!(forecast(target, target, &old, &[], &[], &p).is_empty());
    }

    #[test]
    fn a_launch_gets_a_prior() {
        let target = 20_500;
        let mut h = Vec::new();
        for d in target - 14..target {
            for (t, v) in [("a", 10.0), ("b", 50.0), ("c", 200.0)] {
                h.push(dv(d, &format!("{t}/720p"), "NL", v * 0.75));
                h.push(dv(d, &format!("{t}/1080p"), "NL", v * 0.25));
            }
        }
        let launch = Launch {
            title: "new".into(),
            day: target,
            regions: vec![],
            renditions: vec![rid("new/720p"), rid("new/1080p")],
            prior_quantile: None,
        };
        let p = ForecastParams {
            launch_prior_quantile: 0.5,
            ..ForecastParams::default()
        };
        let f = forecast(target, target, &h, std::slice::from_ref(&launch), &[], &p);
        // The median title does 50 views a day, split 3:1 like the region's renditions.
        assert!((get(&f, "new/720p", "NL") - 37.5).abs() < 1e-6);
        assert!((get(&f, "new/1080p", "NL") - 12.5).abs() < 1e-6);
        // Not on another day.
        let later = Launch {
            day: target + 1,
            ..launch.clone()
        };
        assert_eq!(
            get(
                &forecast(target, target, &h, &[later], &[], &p),
                "new/720p",
                "NL"
            ),
            0.0
        );
        // A region with no history gets the floor, uniformly.
        let elsewhere = Launch {
            regions: vec!["BE".into()],
            ..launch
        };
        let f = forecast(target, target, &h, &[elsewhere], &[], &p);
        assert!((get(&f, "new/720p", "BE") - 5.0).abs() < 1e-9);
    }

    #[test]
    fn title_level_split_by_stable_shares() {
        // 13 days split 50/50, then one day all on 720p; the title does 100 a day throughout.
        let target = 20_500;
        let mut h = Vec::new();
        for d in target - 14..target - 1 {
            h.push(dv(d, "a/720p", "NL", 50.0));
            h.push(dv(d, "a/1080p", "NL", 50.0));
        }
        h.push(dv(target - 1, "a/720p", "NL", 100.0));
        let p = ForecastParams::default();
        let f = forecast(target, target, &h, &[], &[], &p);
        let (hd, sd) = (get(&f, "a/720p", "NL"), get(&f, "a/1080p", "NL"));
        assert!(
            (hd + sd - 100.0).abs() < 1e-9,
            "the title's level is kept: {hd} + {sd}"
        );
        assert!(
            hd / sd < 1.3,
            "one day does not flip the split: {hd} / {sd}"
        );
        // Per rendition, 1080p's level drops with its last day.
        let own = ForecastParams {
            share_half_life_days: None,
            ..p.clone()
        };
        let f = forecast(target, target, &h, &[], &[], &own);
        assert!(get(&f, "a/720p", "NL") / get(&f, "a/1080p", "NL") > 1.5);
    }

    #[test]
    fn shares_shrink_towards_the_pooled_mix() {
        let target = 20_500;
        let mut h = Vec::new();
        for d in target - 7..target {
            for t in ["b", "c", "d"] {
                h.push(dv(d, &format!("{t}/720p"), "NL", 300.0));
                h.push(dv(d, &format!("{t}/1080p"), "NL", 100.0));
            }
            h.push(dv(d, "a/720p", "NL", 10.0));
            h.push(dv(d, "a/1080p", "NL", 10.0));
        }
        let ratio = |k: f64| {
            let p = ForecastParams {
                share_prior_views: k,
                ..ForecastParams::default()
            };
            let f = forecast(target, target, &h, &[], &[], &p);
            get(&f, "a/720p", "NL") / get(&f, "a/1080p", "NL")
        };
        assert!((ratio(0.0) - 1.0).abs() < 1e-9, "own shares: 1:1");
        // The pool: b, c, d and a itself.
        let pooled = (900.0 + 10.0) / (300.0 + 10.0);
        assert!((ratio(1e12) - pooled).abs() < 1e-6, "{}", ratio(1e12));
        let mid = ratio(50.0);
        assert!(mid > 1.05 && mid < 2.95, "{mid}");
    }

    #[test]
    fn recent_launch_follows_its_decay() {
        // Launched four days ago, halving every day; an old title stays flat.
        let target = 20_500;
        let mut h: Vec<_> = (target - 14..target)
            .map(|d| dv(d, "old/720p", "NL", 100.0))
            .collect();
        for (k, v) in [(4, 800.0), (3, 400.0), (2, 200.0), (1, 100.0)] {
            h.push(dv(target - k, "new/720p", "NL", v));
        }
        let launch = Launch {
            title: "new".into(),
            day: target - 4,
            regions: vec![],
            renditions: vec![rid("new/720p")],
            prior_quantile: None,
        };
        let p = ForecastParams {
            min_season_days: 365,
            ..ForecastParams::default()
        };
        let f = forecast(target, target, &h, std::slice::from_ref(&launch), &[], &p);
        // Every past day projected by 0.5 per day gives 50.
        assert!(
            (get(&f, "new/720p", "NL") - 50.0).abs() < 1e-9,
            "{}",
            get(&f, "new/720p", "NL")
        );
        assert!((get(&f, "old/720p", "NL") - 100.0).abs() < 1e-9);
        let off = ForecastParams {
            launch_decay: false,
            ..p
        };
        let f = forecast(target, target, &h, &[launch], &[], &off);
        assert!(get(&f, "new/720p", "NL") > 150.0);
    }

    #[test]
    fn launch_decay_slows_with_age() {
        // Both launches follow 100 + 800·0.5^age: "a" launched 6 days ago, "b" 2 days ago.
        let target = 20_500;
        let curve = |age: i64| 100.0 + 800.0 * 0.5f64.powi(age as i32);
        let mut h = Vec::new();
        for k in 1..=6 {
            h.push(dv(target - k, "a/720p", "NL", curve(6 - k)));
        }
        for k in 1..=2 {
            h.push(dv(target - k, "b/720p", "NL", curve(2 - k)));
        }
        let launch = |t: &str, day: i64| Launch {
            title: t.into(),
            day,
            regions: vec![],
            renditions: vec![rid(&format!("{t}/720p"))],
            prior_quantile: None,
        };
        let launches = [launch("a", target - 6), launch("b", target - 2)];
        let p = ForecastParams {
            min_season_days: 365,
            ..ForecastParams::default()
        };
        let f = forecast(target, target, &h, &launches, &[], &p);
        // Per age, "b" is projected along "a"'s curve: age 0 → 2 by 500/900 · 300/500.
        let b = get(&f, "b/720p", "NL");
        assert!((b - curve(2)).abs() < 1e-9, "{b}");
        // One ratio for every age decays it too fast at first, too slow later: not 300.
        let flat = ForecastParams {
            launch_decay_by_age: false,
            ..p
        };
        let b1 = get(
            &forecast(target, target, &h, &launches, &[], &flat),
            "b/720p",
            "NL",
        );
        assert!((b1 - curve(2)).abs() > 5.0, "{b1}");
    }

    #[test]
    fn a_tentpole_starts_at_the_top_title() {
        let target = 20_500;
        let mut h = Vec::new();
        for d in target - 14..target {
            for (t, v) in [("a", 10.0), ("b", 50.0), ("c", 200.0)] {
                h.push(dv(d, &format!("{t}/720p"), "NL", v * 0.75));
                h.push(dv(d, &format!("{t}/1080p"), "NL", v * 0.25));
            }
        }
        let launch = Launch {
            title: "big".into(),
            day: target,
            regions: vec![],
            renditions: vec![rid("big/720p"), rid("big/1080p")],
            prior_quantile: Some(1.0),
        };
        let f = forecast(
            target,
            target,
            &h,
            &[launch],
            &[],
            &ForecastParams::default(),
        );
        assert!((get(&f, "big/720p", "NL") - 150.0).abs() < 1e-6);
        assert!((get(&f, "big/1080p", "NL") - 50.0).abs() < 1e-6);
        // The launch round-trips through JSON; `prior_quantile` may be left out.
        let j = r#"{"title":"x","day":1,"regions":[],"renditions":["x/720p"]}"#;
        let l: Launch = serde_json::from_str(j).unwrap();
        assert_eq!(l.prior_quantile, None);
    }

    #[test]
    fn exposure_adds_views() {
        let target = 20_500;
        let h: Vec<_> = (target - 7..target)
            .flat_map(|d| [dv(d, "a/720p", "NL", 30.0), dv(d, "a/1080p", "NL", 10.0)])
            .collect();
        let x = Exposure {
            title: "a".into(),
            region: "NL".into(),
            impressions: 1000.0,
        };
        let p = ForecastParams::default();
        let f = forecast(target, target, &h, &[], &[x], &p);
        // 2% of 1000 = 20 extra views, split 3:1.
        assert!((get(&f, "a/720p", "NL") - 45.0).abs() < 1e-9);
        assert!((get(&f, "a/1080p", "NL") - 15.0).abs() < 1e-9);
        assert_eq!(f[0].rendition.as_str(), "a/720p", "sorted by views");
    }

    #[test]
    fn history_from_rows() {
        let h = DailyViews::from_rows([(20_499, "a", "720p", "NL", 7.0)]).unwrap();
        assert_eq!(h[0].rendition.as_str(), "a/720p");
        let f = forecast(20_500, 20_500, &h, &[], &[], &ForecastParams::default());
        assert!((f[0].views - 7.0).abs() < 1e-9);
        assert!(DailyViews::from_rows([(1, "a/b", "720p", "NL", 1.0)]).is_err());
    }

    #[test]
    fn bad_values_are_ignored() {
        let target = 20_500;
        let h = vec![
            dv(target - 1, "a/720p", "NL", f64::NAN),
            dv(target - 1, "a/720p", "NL", -5.0),
            dv(target - 1, "a/720p", "NL", 8.0),
        ];
        let f = forecast(target, target, &h, &[], &[], &ForecastParams::default());
        assert!((f[0].views - 8.0).abs() < 1e-9);
    }
}
