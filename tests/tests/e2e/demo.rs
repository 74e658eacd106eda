//! `oca demo`: start it on free ports, run every curl command it prints (as a person would,
//! with `sh -c` in the folder it was started from) and check each prints what its comment
//! promises; then SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oca_common::wire::Status;
use oca_tests::client::require_tool;
use oca_tests::fixture::Ports;
use oca_tests::server::{ChildGuard, oca_bin};

/// Start `oca demo` in `dir`; returns the guard and its stdout up to the "Ctrl-C" line, or
/// `Err(log)` if it exited first.
fn start_demo(
    dir: &std::path::Path,
    ports: Ports,
    attempt: usize,
) -> Result<(ChildGuard, String), String> {
    let log = dir.join(format!("demo-{attempt}.log"));
    let child = Command::new(oca_bin())
        .args([
            "demo",
            "--dir",
            "demo-data",
            "--https-port",
            &ports.https.to_string(),
            "--http-port",
            &ports.http.to_string(),
            "--admin-port",
            &ports.admin.to_string(),
        ])
        .current_dir(dir)
        .env_remove("OCA_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn oca demo");
    let mut guard = ChildGuard { child, log };
    let stdout = guard.child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let t0 = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line.contains("Ctrl-C") {
                    return Ok((guard, out));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = guard.wait_exit(Duration::from_secs(5));
                return Err(format!(
                    "oca demo exited ({st}); stdout:\n{out}\nlog:\n{}",
                    guard.log_text()
                ));
            }
        }
        if let Some(st) = guard.exited() {
            return Err(format!(
                "oca demo exited ({st}); stdout:\n{out}\nlog:\n{}",
                guard.log_text()
            ));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "oca demo printed no \"Ctrl-C\" line within 30 s; stdout:\n{out}\nlog:\n{}",
            guard.log_text()
        );
    }
}

#[test]
fn demo_prints_curl_commands_that_work() {
    require_tool("curl", "curl");
    let dir = tempfile::Builder::new()
        .prefix("oca-demo-")
        .tempdir()
        .expect("temp dir");
    let (mut demo, stdout) = {
        let mut last = String::new();
        let mut started = None;
        for attempt in 0..5 {
            match start_demo(dir.path(), Ports::free(), attempt) {
                Ok(x) => {
                    started = Some(x);
                    break;
                }
                Err(log) if log.contains("cannot listen on") => last = log,
                Err(log) => panic!("{log}"),
            }
        }
        started.unwrap_or_else(|| panic!("oca demo could not bind free ports: {last}"))
    };

    // (the comment above a command, the command)
    let mut commands = Vec::new();
    let mut comment = String::new();
    for line in stdout.lines() {
        if let Some(c) = line.strip_prefix('#') {
            comment = c.trim().to_string();
        } else if line.starts_with("curl ") {
            commands.push((comment.clone(), line.to_string()));
        }
    }
    assert_eq!(
        commands.len(),
        7,
        "the demo prints 7 curl commands:\n{stdout}"
    );

    let mut checked = 0;
    for (comment, cmd) in &commands {
        let o = Command::new("sh")
            .args(["-c", cmd])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("sh -c");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let what = format!(
            "# {comment}\n{cmd}\n-> {} stdout {out:?} stderr {:?}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{what}");
        let out = out.trim();
        if comment.contains("HTTP/1.1") && comment.contains("expect 206 and 1024 bytes") {
            assert_eq!(out, "206 1024 1.1", "{what}");
        } else if comment.contains("HTTP/2") && comment.contains("expect 206 and 1024 bytes") {
            assert_eq!(out, "206 1024 2", "{what}");
        } else if comment.contains("master playlist") {
            assert!(out.starts_with("#EXTM3U"), "{what}");
            assert!(out.contains("720p/index.m3u8"), "{what}");
        } else if comment.contains("expect 403") {
            assert_eq!(out, "403", "{what}");
        } else if comment.contains("expect 206 and 4096 bytes") {
            assert_eq!(out, "206 4096", "{what}");
        } else if cmd.contains("/metrics") {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("oca_http_requests_total{")),
                "{what}"
            );
        } else if cmd.contains("/v1/status") {
            let st: Status = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {what}"));
            assert_eq!(st.id, "oca-demo", "{what}");
            assert!(st.ready && st.objects >= 3, "{what}");
        } else {
            panic!("a demo command this test does not know how to check:\n{what}");
        }
        checked += 1;
    }
    assert_eq!(checked, 7);

    demo.assert_alive();
    demo.signal(Signal::SIGTERM);
    let st = demo.wait_exit(Duration::from_secs(15));
    assert!(
        st.success(),
        "oca demo after SIGTERM: {st}\n{}",
        demo.log_text()
    );
}
