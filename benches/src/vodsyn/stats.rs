//! The spec's calibration statistics ("Calibration statistics"), computed from a generated
//! trace, and the spec's reference values with their tolerances.

use super::generate::split_id;
use super::{Generated, IdMap};

const TB: f64 = 1e12;

/// How a statistic is compared with the spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Within ±x relative (counts and bytes: 0.10).
    Relative(f64),
    /// Within ±x absolute (shares: 0.03).
    Absolute(f64),
}

impl Tolerance {
    /// Whether `ours` matches `spec`.
    pub fn ok(self, ours: f64, spec: f64) -> bool {
        match self {
            Tolerance::Relative(r) => (ours - spec).abs() <= r * spec.abs(),
            Tolerance::Absolute(a) => (ours - spec).abs() <= a + 1e-12,
        }
    }

    /// Short text, e.g. `±10%`.
    pub fn text(self) -> String {
        match self {
            Tolerance::Relative(r) => format!("±{:.0}%", r * 100.0),
            Tolerance::Absolute(a) => format!("±{a}"),
        }
    }
}

/// One statistic's definition: name, spec value (S, seed 1), tolerance.
#[derive(Debug, Clone, Copy)]
pub struct StatDef {
    /// Name as printed.
    pub name: &'static str,
    /// The spec's value for profile S, seed 1.
    pub spec: f64,
    /// Tolerance.
    pub tol: Tolerance,
}

const REL: Tolerance = Tolerance::Relative(0.10);
const ABS: Tolerance = Tolerance::Absolute(0.03);

/// The spec's calibration values (profile S, seed 1), in [`Calibration::values`] order.
pub const SPEC_S: [StatDef; 29] = [
    StatDef {
        name: "requests",
        spec: 22_977_284.0,
        tol: REL,
    },
    StatDef {
        name: "sessions",
        spec: 29_973.0,
        tol: REL,
    },
    StatDef {
        name: "viewings",
        spec: 33_331.0,
        tol: REL,
    },
    StatDef {
        name: "titles (initial + released)",
        spec: 743.0,
        tol: REL,
    },
    StatDef {
        name: "titles released (incl. tentpoles)",
        spec: 23.0,
        tol: Tolerance::Relative(0.5),
    },
    StatDef {
        name: "videos",
        spec: 3_454.0,
        tol: REL,
    },
    StatDef {
        name: "mean video length, min",
        spec: 53.7,
        tol: REL,
    },
    StatDef {
        name: "catalog TB at day 0",
        spec: 21.41,
        tol: REL,
    },
    StatDef {
        name: "catalog TB at day 14",
        spec: 22.26,
        tol: REL,
    },
    StatDef {
        name: "requested TB",
        spec: 45.97,
        tol: REL,
    },
    StatDef {
        name: "requested TB/day, min",
        spec: 3.06,
        tol: REL,
    },
    StatDef {
        name: "requested TB/day, max",
        spec: 3.62,
        tol: REL,
    },
    StatDef {
        name: "unique objects",
        spec: 5_353_638.0,
        tol: REL,
    },
    StatDef {
        name: "unique TB",
        spec: 9.55,
        tol: REL,
    },
    StatDef {
        name: "one-hit-wonder fraction",
        spec: 0.475,
        tol: ABS,
    },
    StatDef {
        name: "peak-window demand, Gbps",
        spec: 0.588,
        tol: REL,
    },
    StatDef {
        name: "trough 03-06 demand, Gbps",
        spec: 0.088,
        tol: REL,
    },
    StatDef {
        name: "rung 0 share",
        spec: 0.020,
        tol: ABS,
    },
    StatDef {
        name: "rung 1 share",
        spec: 0.050,
        tol: ABS,
    },
    StatDef {
        name: "rung 2 share",
        spec: 0.109,
        tol: ABS,
    },
    StatDef {
        name: "rung 3 share",
        spec: 0.233,
        tol: ABS,
    },
    StatDef {
        name: "rung 4 share",
        spec: 0.343,
        tol: ABS,
    },
    StatDef {
        name: "rung 5 share",
        spec: 0.244,
        tol: ABS,
    },
    StatDef {
        name: "top 1% titles share",
        spec: 0.283,
        tol: ABS,
    },
    StatDef {
        name: "top 10% titles share",
        spec: 0.633,
        tol: ABS,
    },
    StatDef {
        name: "top-10% objects day overlap, min",
        spec: 0.47,
        tol: ABS,
    },
    StatDef {
        name: "top-10% objects day overlap, max",
        spec: 0.58,
        tol: ABS,
    },
    StatDef {
        name: "chunk bytes p50, MB",
        spec: 1.80,
        tol: REL,
    },
    StatDef {
        name: "chunk bytes p99, MB",
        spec: 5.62,
        tol: REL,
    },
];

/// The calibration statistics of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Values in [`SPEC_S`] order.
    pub values: Vec<f64>,
}

/// Computes the calibration statistics of a generated trace.
pub fn calibrate(g: &Generated) -> Calibration {
    let cat = &g.catalog;
    let reqs = &g.requests;
    let days = cat.days as usize;
    let warm = cat.warmup_days as u64;
    let eval_days = (cat.days - cat.warmup_days) as f64;

    let mut per_day = vec![0u64; days];
    let mut rung = [0u64; 8];
    let mut title_reqs = vec![0u64; cat.titles.len()];
    let mut total_bytes = 0u64;
    let mut peak_bytes = 0u64;
    let mut trough_bytes = 0u64;
    let mut seen: IdMap<u32> = IdMap::default();
    let mut unique_bytes = 0u64;
    for r in reqs {
        let t = u64::from(r.t_ms);
        let d = (t / 86_400_000) as usize;
        let h = (t % 86_400_000 / 3_600_000) as u32;
        let b = u64::from(r.bytes);
        total_bytes += b;
        per_day[d.min(days - 1)] += b;
        if cat.in_peak(t) {
            peak_bytes += b;
        }
        if d as u64 >= warm && (3..6).contains(&h) {
            trough_bytes += b;
        }
        let (video, rg, _) = split_id(r.id);
        rung[rg as usize] += 1;
        title_reqs[cat.videos[video as usize].title as usize] += 1;
        let c = seen.entry(r.id).or_insert(0);
        if *c == 0 {
            unique_bytes += b;
        }
        *c += 1;
    }
    let n = reqs.len().max(1) as f64;
    let one_hit = seen.values().filter(|&&c| c == 1).count() as f64 / seen.len().max(1) as f64;
    let peak_hours = f64::from(cat.peak_hours[1] - cat.peak_hours[0]);
    let gbps = |bytes: u64, hours: f64| bytes as f64 * 8.0 / (hours * 3600.0) / 1e9;

    let mut tr = title_reqs.clone();
    tr.sort_unstable_by(|a, b| b.cmp(a));
    let nt = tr.len() as f64;
    let top = |share: f64| {
        let k = ((share * nt).round() as usize).max(1);
        tr.iter().take(k).sum::<u64>() as f64 / n
    };

    // Day-to-day overlap of the top-10 % objects by requests.
    let mut overlaps = Vec::new();
    let mut prev: Option<std::collections::HashSet<u64>> = None;
    let mut start = 0;
    for d in 0..days {
        let end = reqs.partition_point(|r| u64::from(r.t_ms) < (d as u64 + 1) * 86_400_000);
        let mut counts: IdMap<u32> = IdMap::default();
        for r in &reqs[start..end] {
            *counts.entry(r.id).or_insert(0) += 1;
        }
        start = end;
        let mut v: Vec<(u32, u64)> = counts.into_iter().map(|(id, c)| (c, id)).collect();
        v.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let k = v.len() / 10;
        let set: std::collections::HashSet<u64> = v[..k].iter().map(|x| x.1).collect();
        if let Some(p) = &prev
            && !set.is_empty()
        {
            overlaps.push(set.intersection(p).count() as f64 / set.len() as f64);
        }
        prev = Some(set);
    }
    let ov_min = overlaps.iter().copied().fold(f64::INFINITY, f64::min);
    let ov_max = overlaps.iter().copied().fold(f64::NEG_INFINITY, f64::max);

    let mut sizes: Vec<u32> = reqs.iter().map(|r| r.bytes).collect();
    sizes.sort_unstable();
    let pct = |p: f64| {
        sizes
            .get(((sizes.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |&b| f64::from(b) / 1e6)
    };

    let released = cat.titles.iter().filter(|t| t.new_release).count() as f64;
    let mean_min =
        cat.videos.iter().map(|v| v.minutes).sum::<f64>() / cat.videos.len().max(1) as f64;
    let mut values = vec![
        reqs.len() as f64,
        g.sessions as f64,
        g.viewings as f64,
        cat.titles.len() as f64,
        released,
        cat.videos.len() as f64,
        mean_min,
        cat.catalog_bytes_day0 as f64 / TB,
        cat.catalog_bytes_end as f64 / TB,
        total_bytes as f64 / TB,
        per_day.iter().copied().min().unwrap_or(0) as f64 / TB,
        per_day.iter().copied().max().unwrap_or(0) as f64 / TB,
        seen.len() as f64,
        unique_bytes as f64 / TB,
        one_hit,
        gbps(peak_bytes, peak_hours * eval_days),
        gbps(trough_bytes, 3.0 * eval_days),
    ];
    for r in rung.iter().take(6) {
        values.push(*r as f64 / n);
    }
    values.extend([top(0.01), top(0.10), ov_min, ov_max, pct(0.5), pct(0.99)]);
    Calibration { values }
}

/// Mean and sample standard deviation.
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 {
        xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v.sqrt())
}
