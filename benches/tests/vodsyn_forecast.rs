//! End-to-end check of `vodsyn forecast` on a tiny profile: the report parses (one WMAPE row
//! per forecast, one BHR row per placed policy and cache size); the figures are not checked.

mod common;
use common::{first_number, vodsyn};

use oca_benches::vodsyn::load_profile;

#[test]
fn forecast_report_parses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("tiny.json");
    let tiny = load_profile("S").expect("S").tiny(24, 4, 0.05);
    std::fs::write(&profile, serde_json::to_string(&tiny).expect("json")).expect("write");
    let out = vodsyn()
        .args([
            "forecast",
            "--seeds",
            "1-2",
            "--fracs",
            "10,50",
            "--profile",
        ])
        .arg(&profile)
        .output()
        .expect("run forecast");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no {name:?} row in\n{text}"));
        line.split('|')
            .skip(2)
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    };
    // WMAPE table: rendition and title WMAPE, then the per-seed values.
    for name in ["same as yesterday", "ours (control-plane forecast)"] {
        let cells = row(name);
        assert!(cells.len() >= 3, "{cells:?}");
        for c in &cells[..2] {
            let x = first_number(c);
            assert!(x.is_finite() && x >= 0.0, "{name}: {c}");
        }
        assert_eq!(
            cells[2].split_whitespace().count(),
            2,
            "two seeds: {cells:?}"
        );
    }
    // BHR table: one ratio per size plus the fill column, for every placed policy.
    for name in [
        "PF-title-oracle",
        "PF-title-model + fillcap 5%",
        "same as yesterday + fillcap 5%",
        "ours (control-plane forecast)",
        "ours (control-plane forecast) + fillcap 5%",
    ] {
        let bhr = text
            .split_once("Peak-window byte hit ratio")
            .map(|(_, b)| b)
            .expect("BHR table");
        let line = bhr
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no BHR row {name:?} in\n{text}"));
        let cells: Vec<&str> = line.split('|').skip(2).map(str::trim).collect();
        for c in &cells[..2] {
            let x = first_number(c);
            assert!((0.0..=1.0).contains(&x), "{name}: {c}");
        }
        assert!(first_number(cells[2]) >= 0.0, "fill TB/day: {line}");
    }
    assert!(text.contains("Fill cap"), "{text}");
}

#[test]
fn forecast_bad_usage_exits_64() {
    for args in [
        &["forecast", "--half-life", "0"][..],
        &["forecast", "--fracs", "0"],
        &["forecast", "--seeds", "x"],
    ] {
        let out = vodsyn().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
