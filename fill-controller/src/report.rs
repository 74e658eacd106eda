//! What `fill-controller plan` prints: per appliance the fills and deletions, their bytes, the
//! time the fills take at the site's fill rate cap (ETA), and whether they fit the nightly
//! byte budget and the fill window. Pure: a [`Plan`] and the sites file in, a [`Report`] out
//! (serialized for `--json`, or written as text lines by [`Report::write_text`]).
//!
//! The ETA is `fill bytes × 8 / fill-rate-bps`, the best case at the cap; the window is the
//! site's fill window length. Fills beyond the budget wait for the next night.

use std::collections::BTreeMap;
use std::io::Write;

use oca_common::sites::{FillWindow, Sites};
use oca_common::units::format_bytes;
use serde::Serialize;

use crate::inputs::{ApplianceEntry, Skipped};
use crate::plan::{ClusterSummary, Delete, Fill, Plan, Source};

/// One appliance's share of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplianceReport {
    /// Appliance id.
    pub id: String,
    /// Its cluster.
    pub cluster: String,
    /// Its site (empty if the cluster's site is unknown).
    pub site: String,
    /// Fills planned.
    pub fills: u64,
    /// Their bytes.
    pub fill_bytes: u64,
    /// Deletions planned.
    pub deletes: u64,
    /// Bytes they free.
    pub delete_bytes: u64,
    /// The site's per-appliance fill rate cap, bit/s.
    pub fill_rate_bps: u64,
    /// Seconds the fills take at the cap.
    pub eta_secs: u64,
    /// The site's nightly budget, bytes.
    pub nightly_budget: u64,
    /// Fill bytes within the nightly budget.
    pub fits_budget: bool,
    /// Length of the site's fill window, seconds.
    pub window_secs: u64,
    /// ETA within the window.
    pub fits_window: bool,
}

/// Totals over the plan.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Fills.
    pub fills: u64,
    /// Fill bytes.
    pub fill_bytes: u64,
    /// Deletions.
    pub deletes: u64,
    /// Bytes deleted.
    pub delete_bytes: u64,
    /// Fills from a peer in the same cluster.
    pub from_peer: u64,
    /// Fills from the upstream cluster.
    pub from_upstream: u64,
    /// Fills from the origin.
    pub from_origin: u64,
    /// Forecast rows for renditions not in the catalog.
    pub skipped_unknown_renditions: u64,
    /// Forecast rows for regions no cluster serves.
    pub skipped_unmapped_regions: u64,
}

/// The whole report (`plan --json` prints this).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Totals.
    pub totals: Totals,
    /// Per appliance, by id (appliances with nothing to do included).
    pub appliances: Vec<ApplianceReport>,
    /// Per cluster.
    pub clusters: Vec<ClusterSummary>,
    /// Every fill, most valuable first.
    pub fills: Vec<Fill>,
    /// Every deletion.
    pub deletes: Vec<Delete>,
}

/// Seconds to move `bytes` at `bps` bit/s, rounded up (0 bps: `u64::MAX`).
pub fn eta_secs(bytes: u64, bps: u64) -> u64 {
    if bps == 0 {
        return u64::MAX;
    }
    let bits = u128::from(bytes) * 8;
    u64::try_from(bits.div_ceil(u128::from(bps))).unwrap_or(u64::MAX)
}

/// Length of a fill window in seconds.
pub fn window_secs(w: &FillWindow) -> u64 {
    let (s, e) = (u64::from(w.start_min), u64::from(w.end_min));
    (if e > s { e - s } else { 24 * 60 - s + e }) * 60
}

/// `1h05m`, `42s`.
pub fn format_secs(s: u64) -> String {
    if s == u64::MAX {
        return "never".into();
    }
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// Builds the report.
pub fn report(
    plan: &Plan,
    sites: &Sites,
    appliances: &[ApplianceEntry],
    skipped: &Skipped,
) -> Report {
    let mut per: BTreeMap<&str, ApplianceReport> = BTreeMap::new();
    for a in appliances {
        let site = sites.cluster(&a.cluster).and_then(|c| sites.site(&c.site));
        let (rate, budget, window) = site.map_or((0, 0, 0), |s| {
            (
                s.fill_rate_bps,
                s.nightly_budget,
                FillWindow::parse(&s.fill_window).map_or(0, |w| window_secs(&w)),
            )
        });
        per.insert(
            &a.id,
            ApplianceReport {
                id: a.id.clone(),
                cluster: a.cluster.clone(),
                site: site.map(|s| s.id.clone()).unwrap_or_default(),
                fills: 0,
                fill_bytes: 0,
                deletes: 0,
                delete_bytes: 0,
                fill_rate_bps: rate,
                eta_secs: 0,
                nightly_budget: budget,
                fits_budget: true,
                window_secs: window,
                fits_window: true,
            },
        );
    }
    let mut totals = Totals {
        skipped_unknown_renditions: skipped.unknown_renditions,
        skipped_unmapped_regions: skipped.unmapped_regions,
        ..Totals::default()
    };
    for f in &plan.fills {
        totals.fills += 1;
        totals.fill_bytes += f.bytes;
        match f.source {
            Source::Peer { .. } => totals.from_peer += 1,
            Source::Upstream { .. } => totals.from_upstream += 1,
            Source::Origin => totals.from_origin += 1,
        }
        if let Some(r) = per.get_mut(f.appliance.as_str()) {
            r.fills += 1;
            r.fill_bytes += f.bytes;
        }
    }
    for d in &plan.deletes {
        totals.deletes += 1;
        totals.delete_bytes += d.bytes;
        if let Some(r) = per.get_mut(d.appliance.as_str()) {
            r.deletes += 1;
            r.delete_bytes += d.bytes;
        }
    }
    for r in per.values_mut() {
        r.eta_secs = if r.fill_bytes == 0 {
            0
        } else {
            eta_secs(r.fill_bytes, r.fill_rate_bps)
        };
        r.fits_budget = r.fill_bytes <= r.nightly_budget;
        r.fits_window = r.eta_secs <= r.window_secs;
    }
    Report {
        totals,
        appliances: per.into_values().collect(),
        clusters: plan.clusters.clone(),
        fills: plan.fills.clone(),
        deletes: plan.deletes.clone(),
    }
}

fn source_text(s: &Source) -> String {
    match s {
        Source::Peer { appliance } => format!("peer {appliance}"),
        Source::Upstream {
            cluster,
            appliance,
            ready,
        } => format!(
            "upstream {cluster}/{appliance}{}",
            if *ready { "" } else { " (after its fill)" }
        ),
        Source::Origin => "origin".into(),
    }
}

impl Report {
    /// Writes the plan as plain lines: totals, then per appliance a summary line and, when
    /// `detail`, one line per fill (`+`) and deletion (`-`).
    pub fn write_text(&self, out: &mut dyn Write, detail: bool) -> std::io::Result<()> {
        let t = &self.totals;
        writeln!(
            out,
            "plan: {} fills ({}), {} deletions ({}); sources: {} peer, {} upstream, {} origin",
            t.fills,
            format_bytes(t.fill_bytes),
            t.deletes,
            format_bytes(t.delete_bytes),
            t.from_peer,
            t.from_upstream,
            t.from_origin
        )?;
        if t.skipped_unknown_renditions + t.skipped_unmapped_regions > 0 {
            writeln!(
                out,
                "skipped forecast rows: {} for renditions not in the catalog, {} for regions no \
                 cluster serves",
                t.skipped_unknown_renditions, t.skipped_unmapped_regions
            )?;
        }
        for c in &self.clusters {
            writeln!(
                out,
                "cluster {}: {} appliances, {} renditions wanted, {}/{} copies placed ({}), {} \
                 found no room ({})",
                c.id,
                c.appliances,
                c.renditions,
                c.copies_placed,
                c.copies_wanted,
                format_bytes(c.bytes_placed),
                c.copies_unplaced,
                format_bytes(c.bytes_unplaced)
            )?;
        }
        for a in &self.appliances {
            writeln!(
                out,
                "{} ({}): {} fills {}, {} deletions {}; ETA {} at {} Mbit/s; budget {}: {}; \
                 window {}: {}",
                a.id,
                a.cluster,
                a.fills,
                format_bytes(a.fill_bytes),
                a.deletes,
                format_bytes(a.delete_bytes),
                format_secs(a.eta_secs),
                a.fill_rate_bps / 1_000_000,
                format_bytes(a.nightly_budget),
                if a.fits_budget { "fits" } else { "EXCEEDED" },
                format_secs(a.window_secs),
                if a.fits_window { "fits" } else { "EXCEEDED" },
            )?;
            if detail {
                for d in self.deletes.iter().filter(|d| d.appliance == a.id) {
                    writeln!(
                        out,
                        "  - {} {} {}",
                        d.rendition,
                        format_bytes(d.bytes),
                        d.tier
                    )?;
                }
                for f in self.fills.iter().filter(|f| f.appliance == a.id) {
                    writeln!(
                        out,
                        "  + {} {} {} from {} (value {:.3})",
                        f.rendition,
                        format_bytes(f.bytes),
                        f.tier,
                        source_text(&f.source),
                        f.value
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_windows() {
        // 1 GB at 1 Gbit/s = 8 s; rounding up.
        assert_eq!(eta_secs(1_000_000_000, 1_000_000_000), 8);
        assert_eq!(eta_secs(1, 1_000_000_000), 1);
        assert_eq!(eta_secs(5, 0), u64::MAX);
        let w = FillWindow::parse("02:00-14:00").unwrap();
        assert_eq!(window_secs(&w), 12 * 3600);
        let wrap = FillWindow::parse("22:30-06:00").unwrap();
        assert_eq!(window_secs(&wrap), 7 * 3600 + 1800);
        assert_eq!(format_secs(42), "42s");
        assert_eq!(format_secs(3 * 3600 + 5 * 60 + 9), "3h05m");
        assert_eq!(format_secs(65), "1m05s");
    }
}
