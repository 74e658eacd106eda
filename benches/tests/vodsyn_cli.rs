//! End-to-end checks of the `vodsyn` binary: help, usage errors, `gen` then `sim --trace`.

mod common;
use common::vodsyn;

use oca_benches::vodsyn::load_profile;

#[test]
fn help_has_examples_and_bad_usage_exits_64() {
    let out = vodsyn().arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Examples:") && text.contains("vodsyn sim --trace"));
    for args in [
        &["sim", "--no-such-flag"][..],
        &["sim", "--seeds", "5-1"],
        &["sim", "--fracs", "0"],
        &["calibrate", "--profile", "/nonexistent.json"],
    ] {
        let out = vodsyn().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn gen_then_stream_the_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("tiny.json");
    let tiny = load_profile("S").expect("S").tiny(10, 2, 0.01);
    std::fs::write(&profile, serde_json::to_string(&tiny).expect("json")).expect("write");
    let out_dir = dir.path().join("out");
    let out = vodsyn()
        .args(["gen", "--seed", "4", "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run gen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = out_dir.join("trace.oracleGeneral.bin");
    let len = std::fs::metadata(&trace).expect("trace").len();
    assert!(len > 0 && len.is_multiple_of(24));
    let out = vodsyn()
        .arg("sim")
        .arg("--trace")
        .arg(&trace)
        .arg("--catalog")
        .arg(out_dir.join("catalog.json"))
        .args(["--fracs", "5,50"])
        .output()
        .expect("run sim");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // One row per policy with a BHR / OHR pair per size; Belady's BHR at 50 % is not below LRU's.
    let row = |name: &str| -> Vec<f64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no {name} row in\n{text}"));
        line.split('|')
            .skip(2)
            .filter(|c| c.contains('/'))
            .map(|c| c.split('/').next().unwrap().trim().parse().expect("ratio"))
            .collect()
    };
    let lru = row("LRU");
    let belady = row("Belady");
    assert_eq!(lru.len(), 2);
    assert_eq!(row("S3-FIFO").len(), 2);
    assert_eq!(row("oca RamPolicy").len(), 2);
    assert!(belady[1] >= lru[1] && belady[1] > 0.0, "{text}");
}
