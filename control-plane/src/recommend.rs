//! Recommendation (pure, no I/O): rows of titles for a user in a region at `now`.
//!
//! Inputs are view events and title metadata; the facade loads them from the store.
//! - **Popularity** per region: each view counts `0.5^(age / half-life)`.
//! - **Co-occurrence** (item to item): two titles co-occur when one user watched both; the
//!   similarity is the cosine `c(a,b) / sqrt(n(a) n(b))` over distinct viewers.
//! - **Personal rows**: `for-you` blends similarity to what the user watched, genre affinity,
//!   popularity and a bonus for new titles; `because-you-watched` follows the user's latest
//!   title; `top-in-region`; `new-releases`.
//!
//! A new user (no views) gets popularity, new releases and a `for-you` row that is popularity
//! plus the new-title bonus. A new title (no views) reaches users through `new-releases`, the
//! new-title bonus and genre affinity. Titles not available in the region never appear;
//! titles the user watched are left out of the personal rows. Ties break by title id, so the
//! answer is deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oca_common::wire::RenditionId;
use serde::{Deserialize, Serialize};

/// One view: a user played a rendition in a region at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewEvent {
    /// When, Unix seconds.
    pub at: u64,
    /// User id.
    pub user: String,
    /// The rendition played (its title is the title watched).
    pub rendition: RenditionId,
    /// The client's region (as in the catalog's `regions`).
    pub region: String,
}

/// What recommendation needs of a title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleMeta {
    /// Title id.
    pub id: String,
    /// Genres.
    pub genres: Vec<String>,
    /// Launch time, Unix seconds.
    pub launch: Option<u64>,
    /// Regions where it may be shown (empty = everywhere).
    pub regions: Vec<String>,
}

/// Tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendParams {
    /// Popularity half-life, seconds.
    pub half_life_secs: f64,
    /// A title launched less than this long ago is "new", seconds.
    pub new_title_window_secs: u64,
    /// Titles per row.
    pub row_len: usize,
}

/// Which row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowKind {
    /// Personal blend.
    ForYou,
    /// Similar to the user's latest title.
    BecauseYouWatched,
    /// Most watched in the region lately.
    TopInRegion,
    /// Launched recently.
    NewReleases,
}

/// One row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Which row.
    pub kind: RowKind,
    /// For `because-you-watched`: the title it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Title ids, best first.
    pub titles: Vec<String>,
}

/// The answer: non-empty rows, in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendations {
    /// Rows.
    pub rows: Vec<Row>,
}

impl Recommendations {
    /// The row of this kind.
    pub fn row(&self, kind: RowKind) -> Option<&Row> {
        self.rows.iter().find(|r| r.kind == kind)
    }
}

fn decay(now: u64, at: u64, half_life: f64) -> f64 {
    let age = now.saturating_sub(at) as f64;
    if half_life <= 0.0 {
        return 1.0;
    }
    0.5f64.powf(age / half_life)
}

/// Decayed view counts per title in `region` (only events at or before `now`).
pub fn popularity(
    events: &[ViewEvent],
    region: &str,
    now: u64,
    half_life: f64,
) -> HashMap<String, f64> {
    let mut pop = HashMap::new();
    for e in events.iter().filter(|e| e.region == region && e.at <= now) {
        *pop.entry(e.rendition.title().to_owned()).or_insert(0.0) += decay(now, e.at, half_life);
    }
    pop
}

/// Item-to-item cosine similarity over distinct viewers: `sim[a][b]`.
pub fn cooccurrence(events: &[ViewEvent]) -> HashMap<String, HashMap<String, f64>> {
    let mut by_user: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in events {
        by_user
            .entry(&e.user)
            .or_default()
            .insert(e.rendition.title());
    }
    let mut viewers: HashMap<&str, f64> = HashMap::new();
    let mut pair: HashMap<(&str, &str), f64> = HashMap::new();
    for titles in by_user.values() {
        for a in titles {
            *viewers.entry(a).or_insert(0.0) += 1.0;
            for b in titles {
                if a != b {
                    *pair.entry((a, b)).or_insert(0.0) += 1.0;
                }
            }
        }
    }
    let mut sim: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for ((a, b), c) in pair {
        let s = c / (viewers[a] * viewers[b]).sqrt();
        sim.entry(a.to_owned()).or_default().insert(b.to_owned(), s);
    }
    sim
}

fn top(scores: &HashMap<String, f64>, n: usize) -> Vec<String> {
    let mut v: Vec<(&String, f64)> = scores.iter().map(|(k, s)| (k, *s)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter().take(n).map(|(k, _)| k.clone()).collect()
}

/// Weights of the `for-you` blend.
const W_SIMILAR: f64 = 1.0;
const W_GENRE: f64 = 0.5;
const W_POPULAR: f64 = 0.3;
const W_NEW: f64 = 0.2;

/// The rows for `user` in `region` at `now`.
pub fn recommend(
    user: &str,
    region: &str,
    now: u64,
    titles: &[TitleMeta],
    events: &[ViewEvent],
    params: &RecommendParams,
) -> Recommendations {
    let available: Vec<&TitleMeta> = titles
        .iter()
        .filter(|t| t.regions.is_empty() || t.regions.iter().any(|r| r == region))
        .filter(|t| t.launch.is_none_or(|l| l <= now))
        .collect();
    let pop = popularity(events, region, now, params.half_life_secs);
    let max_pop = pop.values().copied().fold(0.0, f64::max);
    let is_new = |t: &TitleMeta| {
        t.launch
            .is_some_and(|l| l <= now && now - l < params.new_title_window_secs)
    };

    // The user's history: titles watched, latest first.
    let mut mine: Vec<&ViewEvent> = events
        .iter()
        .filter(|e| e.user == user && e.at <= now)
        .collect();
    mine.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.rendition.cmp(&b.rendition)));
    let watched: BTreeSet<&str> = mine.iter().map(|e| e.rendition.title()).collect();
    let sim = if mine.is_empty() {
        HashMap::new()
    } else {
        cooccurrence(events)
    };

    // Genre affinity: share of the user's watched titles in each genre.
    let mut genre_aff: HashMap<&str, f64> = HashMap::new();
    for t in titles.iter().filter(|t| watched.contains(t.id.as_str())) {
        for g in &t.genres {
            *genre_aff.entry(g).or_insert(0.0) += 1.0 / watched.len() as f64;
        }
    }

    let mut rows = Vec::new();

    let mut for_you = HashMap::new();
    for t in available
        .iter()
        .filter(|t| !watched.contains(t.id.as_str()))
    {
        let similar: f64 = watched
            .iter()
            .filter_map(|w| sim.get(*w).and_then(|m| m.get(&t.id)))
            .sum();
        let genre = t
            .genres
            .iter()
            .filter_map(|g| genre_aff.get(g.as_str()))
            .copied()
            .fold(0.0, f64::max);
        let popular = if max_pop > 0.0 {
            pop.get(&t.id).copied().unwrap_or(0.0) / max_pop
        } else {
            0.0
        };
        let new = if is_new(t) { 1.0 } else { 0.0 };
        let score = W_SIMILAR * similar + W_GENRE * genre + W_POPULAR * popular + W_NEW * new;
        for_you.insert(t.id.clone(), score);
    }
    rows.push(Row {
        kind: RowKind::ForYou,
        seed: None,
        titles: top(&for_you, params.row_len),
    });

    if let Some(latest) = mine.first() {
        let seed = latest.rendition.title();
        let scores: HashMap<String, f64> = sim
            .get(seed)
            .map(|m| {
                m.iter()
                    .filter(|(t, _)| !watched.contains(t.as_str()))
                    .filter(|(t, _)| available.iter().any(|a| &a.id == *t))
                    .map(|(t, s)| (t.clone(), *s))
                    .collect()
            })
            .unwrap_or_default();
        rows.push(Row {
            kind: RowKind::BecauseYouWatched,
            seed: Some(seed.to_owned()),
            titles: top(&scores, params.row_len),
        });
    }

    let top_scores: HashMap<String, f64> = available
        .iter()
        .filter_map(|t| pop.get(&t.id).map(|p| (t.id.clone(), *p)))
        .collect();
    rows.push(Row {
        kind: RowKind::TopInRegion,
        seed: None,
        titles: top(&top_scores, params.row_len),
    });

    let new_scores: HashMap<String, f64> = available
        .iter()
        .filter(|t| is_new(t))
        .map(|t| (t.id.clone(), t.launch.unwrap_or(0) as f64))
        .collect();
    rows.push(Row {
        kind: RowKind::NewReleases,
        seed: None,
        titles: top(&new_scores, params.row_len),
    });

    rows.retain(|r| !r.titles.is_empty());
    Recommendations { rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    fn params() -> RecommendParams {
        RecommendParams {
            half_life_secs: 7.0 * DAY as f64,
            new_title_window_secs: 30 * DAY,
            row_len: 10,
        }
    }

    fn title(id: &str, genres: &[&str], launch: Option<u64>, regions: &[&str]) -> TitleMeta {
        TitleMeta {
            id: id.into(),
            genres: genres.iter().map(|g| g.to_string()).collect(),
            launch,
            regions: regions.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn view(user: &str, title: &str, region: &str, at: u64) -> ViewEvent {
        ViewEvent {
            at,
            user: user.into(),
            rendition: RenditionId::new(title, "720p").unwrap(),
            region: region.into(),
        }
    }

    fn catalog() -> Vec<TitleMeta> {
        vec![
            title("alpha", &["drama"], Some(NOW - 400 * DAY), &[]),
            title("beta", &["drama"], Some(NOW - 400 * DAY), &[]),
            title("gamma", &["comedy"], Some(NOW - 400 * DAY), &[]),
            title("delta", &["comedy"], Some(NOW - 400 * DAY), &["US"]),
            title("fresh", &["drama"], Some(NOW - 2 * DAY), &[]),
            title("future", &["drama"], Some(NOW + 2 * DAY), &[]),
        ]
    }

    fn history() -> Vec<ViewEvent> {
        let mut v = Vec::new();
        // Many users watch alpha then beta: they co-occur.
        for u in 0..5 {
            v.push(view(&format!("u{u}"), "alpha", "NL", NOW - 3 * DAY));
            v.push(view(&format!("u{u}"), "beta", "NL", NOW - 2 * DAY));
        }
        // gamma: many views, but long ago.
        for u in 0..8 {
            v.push(view(&format!("g{u}"), "gamma", "NL", NOW - 60 * DAY));
        }
        // delta is popular, but only in the US.
        for u in 0..20 {
            v.push(view(&format!("d{u}"), "delta", "US", NOW - DAY));
        }
        v
    }

    #[test]
    fn popularity_decays_with_age() {
        let pop = popularity(&history(), "NL", NOW, 7.0 * DAY as f64);
        // 5 recent views beat 8 views two months old.
        assert!(pop["alpha"] > pop["gamma"]);
        let expect_gamma = 8.0 * 0.5f64.powf(60.0 / 7.0);
        assert!((pop["gamma"] - expect_gamma).abs() < 1e-9);
        assert!(!pop.contains_key("delta"));
    }

    #[test]
    fn cooccurrence_is_cosine_over_viewers() {
        let sim = cooccurrence(&history());
        assert!((sim["alpha"]["beta"] - 1.0).abs() < 1e-12);
        assert!(!sim.contains_key("gamma"));
    }

    #[test]
    fn a_user_who_watched_alpha_gets_beta() {
        let mut ev = history();
        ev.push(view("me", "alpha", "NL", NOW - 3600));
        let r = recommend("me", "NL", NOW, &catalog(), &ev, &params());
        let byw = r.row(RowKind::BecauseYouWatched).unwrap();
        assert_eq!(byw.seed.as_deref(), Some("alpha"));
        assert_eq!(byw.titles, vec!["beta"]);
        let fy = &r.row(RowKind::ForYou).unwrap().titles;
        assert_eq!(fy[0], "beta");
        assert!(
            !fy.contains(&"alpha".to_string()),
            "watched titles left out"
        );
        assert!(
            !fy.contains(&"delta".to_string()),
            "US-only title not shown in NL"
        );
        assert!(
            !fy.contains(&"future".to_string()),
            "unlaunched title not shown"
        );
        // Same genre as alpha, new: ranks above the old comedy.
        let pos = |t: &str| fy.iter().position(|x| x == t).unwrap();
        assert!(pos("fresh") < pos("gamma"));
    }

    #[test]
    fn a_new_user_gets_popular_and_new_titles() {
        let r = recommend("nobody", "NL", NOW, &catalog(), &history(), &params());
        assert!(r.row(RowKind::BecauseYouWatched).is_none());
        assert_eq!(
            r.row(RowKind::TopInRegion).unwrap().titles,
            vec!["beta", "alpha", "gamma"]
        );
        assert_eq!(r.row(RowKind::NewReleases).unwrap().titles, vec!["fresh"]);
        let fy = &r.row(RowKind::ForYou).unwrap().titles;
        assert_eq!(fy.len(), 4, "alpha, beta, gamma, fresh: {fy:?}");
        // US users see delta on top.
        let us = recommend("nobody", "US", NOW, &catalog(), &history(), &params());
        assert_eq!(us.row(RowKind::TopInRegion).unwrap().titles[0], "delta");
    }

    #[test]
    fn empty_history_still_answers() {
        let r = recommend("x", "NL", NOW, &catalog(), &[], &params());
        assert_eq!(r.row(RowKind::NewReleases).unwrap().titles, vec!["fresh"]);
        assert_eq!(r.row(RowKind::ForYou).unwrap().titles[0], "fresh");
        assert!(r.row(RowKind::TopInRegion).is_none());
        assert!(
            recommend("x", "NL", NOW, &[], &[], &params())
                .rows
                .is_empty()
        );
    }
}
