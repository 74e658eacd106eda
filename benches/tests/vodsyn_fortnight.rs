//! End-to-end check of `vodsyn fortnight` on a tiny profile: the report parses (one row per
//! policy with a byte hit ratio, egress and fill figures), and on every planner night of
//! every seed the fill stays within the nightly budget, the first non-empty night being the
//! only bulk fill. The hit ratios themselves are not checked.

mod common;
use common::{cells, first_number, vodsyn};

use oca_benches::vodsyn::load_profile;

#[test]
fn fortnight_report_parses_and_fill_stays_within_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("tiny.json");
    // Three warm-up days, so the bulk fill (night 1) is not in the evaluated fill.
    let mut tiny = load_profile("S").expect("S").tiny(40, 6, 0.1);
    tiny.warmup_days = 3;
    std::fs::write(&profile, serde_json::to_string(&tiny).expect("json")).expect("write");
    let out = vodsyn()
        .args([
            "fortnight",
            "--seeds",
            "1-2",
            "--fracs",
            "10,30",
            "--appliances",
            "2",
            "--nights",
            "--profile",
        ])
        .arg(&profile)
        .output()
        .expect("run fortnight");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The main tables: every policy row, per capacity.
    let names = [
        "planner, 1 appliance, max-fill 0.95 (usable 95 % of C)",
        "planner, 1 appliance, max-fill 1 (all of C)",
        "diagnostic: planner, 1 appliance, max-fill 1, deletions least valuable first",
        "planner, 2 appliances of C/2, max-fill 0.95",
        "chunk-level PF (placed.rs), ours + fillcap 5%, all of C",
        "chunk-level PF with R ≡ 1 (whole files), ours + fillcap 5%, all of C",
        "LRU, all of C",
        "S3-FIFO, all of C",
    ];
    for name in names {
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("| {name} |")))
            .collect();
        assert_eq!(rows.len(), 2, "one {name:?} row per capacity in\n{text}");
        for line in rows {
            let c = cells(line);
            assert_eq!(c.len(), 8, "{line}");
            let bhr = first_number(c[1]);
            assert!((0.0..=1.0).contains(&bhr), "{line}");
            for x in &c[2..] {
                let v = first_number(x);
                assert!(v.is_finite() && v >= 0.0, "{line}");
            }
            // Fill share of requested bytes, percent: within the spec's 5 %.
            assert!(first_number(c[5]) <= 5.0, "{line}");
            if name.starts_with("LRU") || name.starts_with("S3-FIFO") {
                assert_eq!(
                    first_number(c[4]),
                    0.0,
                    "reactive caches do not fill: {line}"
                );
            } else {
                assert!(first_number(c[4]) > 0.0, "placed caches fill: {line}");
            }
        }
    }
    assert!(
        text.contains("every planner night of every seed: OK"),
        "{text}"
    );
    // Every night of every planner row: seed, C, row, night, budget, filled, deleted, held,
    // planned, fills left, ok.
    let nights: Vec<Vec<&str>> = text
        .split_once("## Nights")
        .expect("nights table")
        .1
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| seed"))
        .map(cells)
        .collect();
    // 2 seeds × 2 capacities × 4 planner rows (with the diagnostic one) × 6 nights.
    assert_eq!(nights.len(), 2 * 2 * 4 * 6, "{text}");
    let mut runs: std::collections::BTreeMap<(&str, &str, &str), Vec<&Vec<&str>>> =
        Default::default();
    for n in &nights {
        runs.entry((n[0], n[1], n[2])).or_default().push(n);
    }
    let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("not bytes: {s:?}")) };
    let mut budget_bound = 0;
    for (key, ns) in &runs {
        assert_eq!(ns.len(), 6, "{key:?}");
        let mut bulk_seen = false;
        let mut capped_fills = 0;
        for n in ns {
            assert_eq!(n[10], "yes", "{key:?}: {n:?}");
            let filled = num(n[5]);
            if n[4] == "bulk" {
                assert!(!bulk_seen, "one bulk night only: {key:?} {ns:?}");
                bulk_seen = filled > 0;
                continue;
            }
            assert!(bulk_seen, "a budget only after the bulk fill: {key:?}");
            let budget = num(n[4]);
            assert!(filled <= budget, "over budget: {key:?} {n:?}");
            capped_fills += u64::from(filled > 0);
            budget_bound += u64::from(num(n[9]) > 0);
        }
        assert!(bulk_seen, "a bulk fill: {key:?}");
        assert!(
            capped_fills > 0,
            "fills after the bulk night: {key:?} {ns:?}"
        );
    }
    assert!(
        budget_bound > 0,
        "the budget never held a fill back:\n{text}"
    );
}

#[test]
fn fortnight_bad_usage_exits_64() {
    for args in [
        &["fortnight", "--appliances", "0"][..],
        &["fortnight", "--max-fill", "1.5"],
        &["fortnight", "--flash-share", "-0.1"],
        &["fortnight", "--fracs", "0"],
        &["fortnight", "--seeds", "x"],
    ] {
        let out = vodsyn().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
