//! `fill-controller plan` and `check-config` as a user runs them: the real binary on a temp
//! config, sites, appliances, catalog and forecast, one appliance's inventory from a file and
//! one fetched from a real `oca` appliance's admin port; exit codes for bad config (64), bad
//! input data (65) and an appliance that refuses (69); `run`, `status` and `cancel` against a
//! real appliance filled from a directory origin.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use oca_tests::{Opts, Server, sha256_hex};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fill-controller"));
    c.env_remove("FILL_CONTROLLER_CONFIG");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run fill-controller")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const SITES: &str = r#"
[[site]]
id = "isp1"
time-zone = "Europe/Berlin"
fill-window = "02:00-14:00"
fill-rate-bps = "1Gbps"
nightly-budget = "1GB"

[[site]]
id = "ixp"
time-zone = "UTC"

[[cluster]]
id = "isp1-a"
site = "isp1"
upstream = "ixp-a"

[[cluster]]
id = "ixp-a"
site = "ixp"
"#;

/// A catalog of `t{i}/720p` renditions, each one file of `size` bytes.
fn catalog(sizes: &[u64]) -> String {
    let mut s = String::new();
    for (i, size) in sizes.iter().enumerate() {
        s += &format!(
            "[[title]]\nid = \"t{i}\"\nname = \"T{i}\"\n\n[[title.rendition]]\nid = \"720p\"\n\
             codec = \"avc1.64001f\"\nwidth = 1280\nheight = 720\nbitrate-kbps = 3000\n\n\
             [[title.rendition.file]]\nname = \"seg-1.m4s\"\nsize = {size}\nsha256 = \"{}\"\n\n",
            sha256_hex(format!("t{i}").as_bytes())
        );
    }
    s
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }
}

/// Files for two clusters: `oca-a1` (isp1-a, inventory file: holds t0 and an old title),
/// `oca-x1` (ixp-a, inventory file, empty) and `extra` appended to the appliances file.
fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup {
        config: dir.path().join("fc.toml"),
        dir,
    };
    s.write("sites.toml", SITES);
    // Renditions of 100 MB (t2: 1000 bytes, as ingested into the real appliance below);
    // demand in DE (isp1-a via [regions]) and ixp (the IXP cluster's site id).
    s.write(
        "catalog.toml",
        &catalog(&[100_000_000, 100_000_000, 1000, 100_000_000]),
    );
    s.write(
        "forecast.json",
        r#"[
          {"rendition": "t0/720p", "region": "DE", "views": 50},
          {"rendition": "t1/720p", "region": "DE", "views": 40},
          {"rendition": "t2/720p", "region": "DE", "views": 10000000},
          {"rendition": "t3/720p", "region": "ixp", "views": 5},
          {"rendition": "t1/720p", "region": "ixp", "views": 5},
          {"rendition": "nope/720p", "region": "DE", "views": 5}
        ]"#,
    );
    s.write(
        "inv-a1.json",
        r#"{"generation": 7, "full": true, "added": [
          {"rendition": "t0/720p", "files_held": 1, "total_files": 1, "bytes": 100000000, "tier": "flash"},
          {"rendition": "old/720p", "files_held": 1, "total_files": 1, "bytes": 250000000, "tier": "disk"}
        ]}"#,
    );
    s.write("inv-x1.json", r#"{"generation": 1, "full": true}"#);
    s.write(
        "appliances.toml",
        &format!(
            "[[appliance]]\nid = \"oca-a1\"\ncluster = \"isp1-a\"\nadmin-url = \"http://127.0.0.1:1\"\n\
             flash = \"1GB\"\ndisk = \"1GB\"\ninventory-file = \"inv-a1.json\"\n\n\
             [[appliance]]\nid = \"oca-x1\"\ncluster = \"ixp-a\"\nadmin-url = \"http://127.0.0.1:1\"\n\
             disk = \"1TB\"\ninventory-file = \"inv-x1.json\"\n\n{extra}"
        ),
    );
    s.write(
        "fc.toml",
        "sites-file = \"sites.toml\"\nstate-dir = \"state\"\n[inputs]\n\
         appliances-file = \"appliances.toml\"\ncatalog-file = \"catalog.toml\"\n\
         forecast-file = \"forecast.json\"\n[regions]\nisp1-a = [\"DE\"]\n",
    );
    s
}

fn plan_json(config: &Path) -> serde_json::Value {
    let out = run(&[
        "plan",
        "--dry-run",
        "--json",
        "-c",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("plan --json prints JSON")
}

#[test]
fn plan_json_from_files_and_a_real_appliance() {
    // A real appliance in isp1-a, its inventory fetched from its admin port. It holds t2
    // after a real ingest, so the plan must not fill t2 there.
    let server = Server::start(
        oca_tests::Fixture::new(),
        Opts {
            drives: vec![("disk", "drive-d0", "1GiB")],
            ..Opts::default()
        },
    );
    let seg = vec![7u8; 1000];
    let seg_path = server.fx.path("seg.bin");
    std::fs::write(&seg_path, &seg).unwrap();
    let (code, body) = server.admin_curl(
        "PUT",
        "/v1/objects/t2/720p/seg-1.m4s",
        Some(&seg_path),
        &[("x-oca-sha256", sha256_hex(&seg))],
    );
    assert!(code == 201 || code == 200, "{code} {body}");
    let manifest = serde_json::json!({
        "title": "t2", "rendition": "720p",
        "files": [{"name": "seg-1.m4s", "size": 1000, "sha256": sha256_hex(&seg)}],
        "total_files": 1
    });
    let mpath = server.fx.path("manifest.json");
    std::fs::write(&mpath, manifest.to_string()).unwrap();
    let (code, body) = server.admin_curl("PUT", "/v1/renditions/t2/720p", Some(&mpath), &[]);
    assert!((200..300).contains(&code), "{code} {body}");

    let s = setup("");
    let token = s.path("tok");
    std::fs::write(&token, format!("{}\n", server.fx.admin_token)).unwrap();
    let mut apps = std::fs::read_to_string(s.path("appliances.toml")).unwrap();
    apps += &format!(
        "[[appliance]]\nid = \"oca-a2\"\ncluster = \"isp1-a\"\n\
         admin-url = \"http://127.0.0.1:{}\"\nadmin-token-file = \"tok\"\nflash = \"1GB\"\ndisk = \"1GB\"\n",
        server.ports.admin
    );
    s.write("appliances.toml", &apps);

    let v = plan_json(&s.config);
    let fills = v["fills"].as_array().unwrap();
    let has = |app: &str, r: &str| {
        fills
            .iter()
            .any(|f| f["appliance"] == app && f["rendition"] == r)
    };
    // t2 is held by oca-a2 (fetched inventory): kept there, and its second copy on oca-a1
    // comes from that peer.
    assert!(!has("oca-a2", "t2/720p"), "{v:#}");
    let t2 = fills
        .iter()
        .find(|f| f["appliance"] == "oca-a1" && f["rendition"] == "t2/720p")
        .expect("t2 filled on oca-a1");
    assert_eq!(t2["source"]["kind"], "peer");
    assert_eq!(t2["source"]["appliance"], "oca-a2");
    // t0 is held by oca-a1: kept there, not filled there.
    assert!(!has("oca-a1", "t0/720p"), "{v:#}");
    // The old title on oca-a1 is deleted.
    let dels = v["deletes"].as_array().unwrap();
    assert!(
        dels.iter()
            .any(|d| d["appliance"] == "oca-a1" && d["rendition"] == "old/720p"),
        "{v:#}"
    );
    // ixp-a wants t3 and t1: both from the origin on oca-x1.
    for r in ["t1/720p", "t3/720p"] {
        let f = fills
            .iter()
            .find(|f| f["appliance"] == "oca-x1" && f["rendition"] == r)
            .unwrap_or_else(|| panic!("no fill of {r} on oca-x1: {v:#}"));
        assert_eq!(f["source"]["kind"], "origin");
        assert_eq!(f["tier"], "disk");
    }
    // t1 in isp1-a comes from the upstream cluster's planned copy.
    let t1 = fills
        .iter()
        .find(|f| f["cluster"] == "isp1-a" && f["rendition"] == "t1/720p")
        .expect("t1 placed in isp1-a");
    assert_eq!(t1["source"]["kind"], "upstream");
    assert_eq!(t1["source"]["appliance"], "oca-x1");
    assert_eq!(t1["source"]["ready"], false);
    // Per appliance: ETA at the site's cap (1 Gbit/s: 0.8 s per 100 MB), budget 1 GB.
    let apps = v["appliances"].as_array().unwrap();
    let a1 = apps.iter().find(|a| a["id"] == "oca-a1").unwrap();
    let bytes = a1["fill_bytes"].as_u64().unwrap();
    assert!(bytes > 0);
    assert_eq!(
        a1["eta_secs"].as_u64().unwrap(),
        (bytes * 8).div_ceil(1_000_000_000)
    );
    assert_eq!(a1["fits_budget"], true);
    assert_eq!(a1["window_secs"], 12 * 3600);
    assert_eq!(v["totals"]["skipped_unknown_renditions"], 1);
    let total: u64 = fills.iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    assert_eq!(v["totals"]["fill_bytes"].as_u64().unwrap(), total);

    // A wrong token: the appliance refuses, exit 69.
    std::fs::write(&token, "wrong").unwrap();
    let out = run(&["plan", "--dry-run", "-c", s.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert!(text(&out).contains("oca-a2"), "{}", text(&out));
}

#[test]
fn plan_text_and_saved_plan() {
    let s = setup("");
    let cfg = s.config.to_str().unwrap();
    let out = run(&["plan", "--detail", "-c", cfg]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("oca-a1 (isp1-a):"), "{t}");
    assert!(t.contains("  - old/720p"), "{t}");
    assert!(t.contains("  + t1/720p"), "{t}");
    // Without --dry-run the plan is saved for `run`.
    let saved = std::fs::read_to_string(s.path("state/plan.json")).expect("plan.json saved");
    let saved: fill_controller::nightly::SavedPlan = serde_json::from_str(&saved).unwrap();
    assert!(!saved.plan.fills.is_empty());
    assert_eq!(saved.id.len(), 16);
    // --dry-run saves nothing.
    std::fs::remove_file(s.path("state/plan.json")).unwrap();
    assert!(run(&["plan", "--dry-run", "-c", cfg]).status.success());
    assert!(!s.path("state/plan.json").exists());
}

#[test]
fn exit_codes() {
    let s = setup("");
    let cfg = s.config.to_str().unwrap();
    assert_eq!(run(&["check-config", "-c", cfg]).status.code(), Some(0));

    // Bad config: 64, naming the key.
    s.write("bad.toml", "[plan]\nmax-copies = 0\n");
    let bad = s.path("bad.toml");
    let out = run(&["plan", "-c", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("plan.max-copies"), "{}", text(&out));
    let out = run(&[
        "check-config",
        "-c",
        s.path("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    // Bad usage: 64.
    assert_eq!(run(&["plan", "--bogus"]).status.code(), Some(64));

    // Bad input data: 65, naming the file.
    s.write("forecast.json", "[{\"rendition\": \"t0/720p\"}]");
    let out = run(&["plan", "--dry-run", "-c", cfg]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(text(&out).contains("forecast.json"), "{}", text(&out));
    let s2 = setup(
        "[[appliance]]\nid = \"oca-z\"\ncluster = \"nowhere\"\nadmin-url = \"http://x\"\ndisk = \"1GB\"\n",
    );
    let out = run(&["check-config", "-c", s2.config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        text(&out).contains("unknown cluster \"nowhere\""),
        "{}",
        text(&out)
    );

    // No saved plan: run and status say to plan first (65); no run: cancel says so (65).
    for cmd in [&["run", "--now"][..], &["status"]] {
        let mut args = cmd.to_vec();
        args.extend(["-c", cfg]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(65), "{cmd:?}: {}", text(&out));
        assert!(
            text(&out).contains("run `fill-controller plan` first"),
            "{}",
            text(&out)
        );
    }
    let out = run(&["cancel", "-c", cfg]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        text(&out).contains("no run is in progress"),
        "{}",
        text(&out)
    );

    // --help: examples and exit codes.
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out);
    assert!(
        t.contains("Examples:") && t.contains("65  bad input data"),
        "{t}"
    );
}

/// `plan`, `status`, `run --now`, `status`, a second `run` (nothing to redo) against a real
/// appliance, filled from a directory origin.
#[test]
fn plan_then_run_then_status_fill_a_real_appliance() {
    let server = Server::start(
        oca_tests::Fixture::new(),
        Opts {
            drives: vec![("disk", "drive-d0", "1GiB")],
            ..Opts::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel);
    let seg: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    one_title_one_appliance(
        dir.path(),
        &seg,
        "",
        server.ports.admin,
        &server.fx.admin_token,
    );
    std::fs::write(
        p("fc.toml"),
        "sites-file = \"sites.toml\"\nstate-dir = \"state\"\n[inputs]\n\
         appliances-file = \"appliances.toml\"\ncatalog-file = \"catalog.toml\"\n\
         forecast-file = \"forecast.json\"\n[origin]\nkind = \"dir\"\npath = \"origin\"\n",
    )
    .unwrap();
    let cfg = p("fc.toml");
    let cfg = cfg.to_str().unwrap();

    let out = run(&["plan", "-c", cfg]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["status", "-c", cfg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not running"), "{}", text(&out));
    assert!(text(&out).contains("oca-a1: fills 0/1"), "{}", text(&out));

    let out = run(&["run", "--now", "-c", cfg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("oca-a1: 1 rendition(s) filled, 0 deleted, 0 failed, 300000 bytes"),
        "{}",
        text(&out)
    );
    // Not a terminal: progress as plain lines on stderr, the last one per appliance at the end.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oca-a1: 1/1 renditions, 300.00 kB of 300.00 kB (100%)"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no terminal escapes in a pipe: {err}"
    );
    let out = run(&["status", "-c", cfg]);
    assert!(text(&out).contains("oca-a1: fills 1/1"), "{}", text(&out));
    // The appliance holds it, byte for byte.
    let (code, body) = server.admin_curl("GET", "/v1/inventory?since=0", None, &[]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("t0/720p"), "{body}");
    // A rerun of the same plan resumes from the journal: nothing is sent again.
    let out = run(&["run", "--now", "-c", cfg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("oca-a1: 0 rendition(s) filled, 0 deleted, 0 failed, 0 bytes"),
        "{}",
        text(&out)
    );
}

/// Writes, under `dir`, a directory origin with one rendition `t0/720p` of one file `seg`,
/// its catalog, a sites file with one site (`site_extra`: more keys of its `[[site]]`), a
/// forecast asking for it, and an appliances file naming one real appliance (admin port
/// `admin_port`, token `admin_token`).
fn one_title_one_appliance(
    dir: &Path,
    seg: &[u8],
    site_extra: &str,
    admin_port: u16,
    admin_token: &str,
) {
    let p = |rel: &str| dir.join(rel);
    std::fs::create_dir_all(p("origin/t0/720p")).unwrap();
    std::fs::write(p("origin/t0/720p/seg-1.m4s"), seg).unwrap();
    std::fs::write(
        p("catalog.toml"),
        format!(
            "[[title]]\nid = \"t0\"\nname = \"T0\"\n\n[[title.rendition]]\nid = \"720p\"\n\
             codec = \"avc1.64001f\"\nwidth = 1280\nheight = 720\nbitrate-kbps = 3000\n\n\
             [[title.rendition.file]]\nname = \"seg-1.m4s\"\nsize = {}\nsha256 = \"{}\"\n",
            seg.len(),
            sha256_hex(seg)
        ),
    )
    .unwrap();
    std::fs::write(
        p("sites.toml"),
        format!(
            "[[site]]\nid = \"isp1\"\ntime-zone = \"UTC\"\n{site_extra}\
             [[cluster]]\nid = \"isp1-a\"\nsite = \"isp1\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        p("forecast.json"),
        r#"[{"rendition": "t0/720p", "region": "isp1", "views": 10}]"#,
    )
    .unwrap();
    std::fs::write(p("tok"), format!("{admin_token}\n")).unwrap();
    std::fs::write(
        p("appliances.toml"),
        format!(
            "[[appliance]]\nid = \"oca-a1\"\ncluster = \"isp1-a\"\n\
             admin-url = \"http://127.0.0.1:{admin_port}\"\nadmin-token-file = \"tok\"\ndisk = \"1GB\"\n"
        ),
    )
    .unwrap();
}

/// A UTC fill window that opened 5 minutes ago and closes in 30.
fn window_around_now() -> String {
    let min = (oca_tests::now_unix() / 60 % 1440) as i64;
    let hm = |m: i64| {
        let m = m.rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    format!("{}-{}", hm(min - 5), hm(min + 30))
}

/// `GET path` on 127.0.0.1:port: (status, body), or `None` if nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `fill-controller daemon` (the real binary) inside an open fill window fills a real
/// appliance from a directory origin, and serves `/metrics` on `[daemon] metrics-listen`:
/// the `fill_*` families are there with the night's figures, and Prometheus' own linter
/// (`promtool check metrics`) accepts the text. SIGTERM stops it cleanly (exit 0).
#[test]
fn the_daemon_fills_in_its_window_and_serves_metrics_that_promtool_accepts() {
    oca_tests::client::require_tool("promtool", "prometheus");
    let server = Server::start(
        oca_tests::Fixture::new(),
        Opts {
            drives: vec![("disk", "drive-d0", "1GiB")],
            ..Opts::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel);
    let seg: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let window = format!("fill-window = \"{}\"\n", window_around_now());
    one_title_one_appliance(
        dir.path(),
        &seg,
        &window,
        server.ports.admin,
        &server.fx.admin_token,
    );
    // A port that was free a moment ago; another process may take it first, so retry.
    let mut daemon = None;
    for attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            p("fc.toml"),
            format!(
                "sites-file = \"sites.toml\"\nstate-dir = \"state\"\n[inputs]\n\
                 appliances-file = \"appliances.toml\"\ncatalog-file = \"catalog.toml\"\n\
                 forecast-file = \"forecast.json\"\n[origin]\nkind = \"dir\"\npath = \"origin\"\n\
                 [daemon]\nmetrics-listen = \"127.0.0.1:{port}\"\n"
            ),
        )
        .unwrap();
        let log = p(&format!("daemon-{attempt}.log"));
        let child = bin()
            .args(["daemon", "-c", p("fc.toml").to_str().unwrap()])
            .env("FILL_CONTROLLER_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut guard = oca_tests::server::ChildGuard { child, log };
        let t0 = std::time::Instant::now();
        let up = loop {
            if guard.exited().is_some() {
                break false;
            }
            if http_get(port, "/healthz").is_some_and(|(s, _)| s == 200) {
                break true;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "daemon not up: {}",
                guard.log_text()
            );
            std::thread::sleep(oca_tests::POLL_PAUSE);
        };
        if up {
            daemon = Some((guard, port));
            break;
        }
        assert!(
            guard.log_text().contains("metrics-listen"),
            "daemon exited: {}",
            guard.log_text()
        );
    }
    let (mut guard, port) = daemon.expect("the daemon could bind a free port in 5 tries");
    // The window is open: tonight's plan runs at once. Poll until the rendition is in.
    let t0 = std::time::Instant::now();
    let text = loop {
        let (status, body) = http_get(port, "/metrics").expect("scrape /metrics");
        assert_eq!(status, 200);
        let v = oca_tests::metrics::value(&body, "fill_renditions_committed_total", &[]);
        if v >= 1.0 {
            break body;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no rendition committed; metrics:\n{body}\nlog:\n{}",
            guard.log_text()
        );
        std::thread::sleep(oca_tests::POLL_PAUSE);
    };
    let bytes = oca_tests::metrics::value(&text, "fill_bytes_total", &[("source", "origin")]);
    assert_eq!(bytes, seg.len() as f64, "{text}");
    assert_eq!(
        oca_tests::metrics::value(&text, "fill_objects_total", &[("outcome", "created")]),
        1.0,
        "{text}"
    );
    for name in [
        "fill_bytes",
        "fill_objects",
        "fill_errors",
        "fill_renditions_committed",
        "fill_deletions",
        "fill_budget_remaining_bytes",
        "fill_active_appliances",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}: {text}");
    }
    let (code, body) = server.admin_curl("GET", "/v1/inventory?since=0", None, &[]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("t0/720p"), "{body}");

    // promtool check metrics, tolerating only Debian promtool's known complaint about
    // OpenMetrics counter names (DESIGN §9), as the appliance's own test does.
    oca_tests::metrics::assert_promtool_accepts(&text);

    // SIGTERM: a clean stop.
    let kill = Command::new("kill")
        .args(["-TERM", &guard.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let st = guard.wait_exit(std::time::Duration::from_secs(10));
    assert!(st.success(), "{st}: {}", guard.log_text());
}
