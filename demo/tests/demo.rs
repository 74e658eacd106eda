//! The README's main command, as a user runs it: `oca-demo --once` prepares everything, runs
//! the fill, asks steering for a playback and fetches a segment, and exits 0 only if the
//! bytes match the origin's.

use std::process::Command;

#[test]
fn the_demo_fills_steers_and_serves_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oca-demo"))
        .args(["--once", "--dir"])
        .arg(dir.path().join("demo-data"))
        .output()
        .expect("run oca-demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // The fill put both renditions on both appliances.
    assert!(
        text.contains("oca-1: ") && text.contains("filled [demo-title/1080p, demo-title/720p]"),
        "{text}"
    );
    // Steering ranked the ISP's appliance first (the player is on loopback, which oca-1
    // announces), the IXP's second, the origin last.
    let local = text.find("oca-1    local").expect(&text);
    let fallback = text.find("oca-2    fallback").expect(&text);
    let origin = text.find("origin   origin").expect(&text);
    assert!(local < fallback && fallback < origin, "{text}");
    assert!(text.contains("bytes match the origin"), "{text}");
}

#[test]
fn help_explains_and_bad_flags_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_oca-demo"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
    let out = Command::new(env!("CARGO_BIN_EXE_oca-demo"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
