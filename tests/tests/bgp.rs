//! End-to-end test of BGP route learning (issue 8): a real BGP exchange on this machine.
//!
//! The test makes two network namespaces joined by a veth pair: an "ISP router" (BIRD 2)
//! announces IPv4 and IPv6 client prefixes plus routes the appliance must refuse (default
//! routes, bogons, prefixes outside the length bounds); the appliance's BIRD, configured by
//! `oca bgp-config` from the appliance's own config, learns them. `oca serve` (in the root
//! namespace) reads the learned prefixes from that BIRD's control socket, reports them to a
//! real `steering` process in heartbeats, and steering ranks a client inside an announced
//! prefix to the appliance. Then the router changes its announcements, and finally the
//! appliance's BIRD goes away: the last prefixes are kept for the grace period, then the
//! appliance reports none and turns `degraded`.
//!
//! Needs root (namespaces), `ip` and `bird` (Debian's bird2; `scripts/test.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oca_tests::fixture::Fixture;
use oca_tests::server::{ChildGuard, READY_LIMIT, Server, oca_bin};
use oca_tests::steering::{Steering, commit_rendition, start_appliance_with};
use oca_tests::{POLL_PAUSE, poll_until};

const R720: &str = "movie/720p";
const ID: &str = "bgp1";
/// The prefixes the router announces that pass the appliance's filters.
const GOOD: [&str; 3] = ["81.2.0.0/16", "81.3.4.0/24", "2a02:1200::/32"];
/// How long the appliance keeps the last prefixes while BIRD is silent.
const GRACE: Duration = Duration::from_secs(4);

/// Runs a command, panicking with its output when it fails.
fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces (`router`, `appliance`) joined by a veth pair, deleted on drop (which also
/// removes the veth pair). Addresses: router 10.255.0.1/30 and fd00:255::1/64, appliance
/// 10.255.0.2/30 and fd00:255::2/64.
struct Netns {
    router: String,
    appliance: String,
}

impl Netns {
    fn new() -> Netns {
        assert!(
            sh("id", &["-u"]).trim() == "0",
            "the BGP test makes network namespaces: run it as root (CI does)"
        );
        let tag = std::process::id();
        let n = Netns {
            router: format!("oca-bgp-{tag}-r"),
            appliance: format!("oca-bgp-{tag}-a"),
        };
        // Leftovers of a crashed run with the same pid.
        n.delete();
        sh("ip", &["netns", "add", &n.router]);
        sh("ip", &["netns", "add", &n.appliance]);
        let (vr, va) = (format!("ob{tag}r"), format!("ob{tag}a"));
        sh(
            "ip",
            &[
                "link",
                "add",
                &vr,
                "netns",
                &n.router,
                "type",
                "veth",
                "peer",
                "name",
                &va,
                "netns",
                &n.appliance,
            ],
        );
        for (ns, dev, v4, v6) in [
            (&n.router, &vr, "10.255.0.1/30", "fd00:255::1/64"),
            (&n.appliance, &va, "10.255.0.2/30", "fd00:255::2/64"),
        ] {
            sh("ip", &["-n", ns, "addr", "add", v4, "dev", dev]);
            sh("ip", &["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
            sh("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        n
    }

    fn delete(&self) {
        for ns in [&self.router, &self.appliance] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Starts `bird -f` inside namespace `ns` with config `conf` and control socket `sock`;
/// waits until the socket accepts connections.
fn start_bird(ns: &str, conf: &Path, sock: &Path, log: PathBuf) -> ChildGuard {
    sh("bird", &["-p", "-c", &conf.to_string_lossy()]);
    let err = std::fs::File::create(&log).expect("log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "bird", "-f", "-c"])
        .arg(conf)
        .arg("-s")
        .arg(sock)
        .arg("-P")
        .arg(sock.with_extension("pid"))
        .stdin(Stdio::null())
        .stdout(err.try_clone().expect("clone"))
        .stderr(err)
        .spawn()
        .expect("spawn bird");
    let mut g = ChildGuard { child, log };
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if let Some(st) = g.exited() {
            panic!("bird exited ({st}): {}", g.log_text());
        }
        assert!(
            t0.elapsed() < READY_LIMIT,
            "bird socket {sock:?} never answered"
        );
        std::thread::sleep(POLL_PAUSE);
    }
    g
}

/// The router's BIRD config: a static protocol per family with `routes` (the appliance's
/// filters decide what it keeps) and a BGP session per family that exports them all.
fn router_conf(v4: &[&str], v6: &[&str]) -> String {
    let routes = |rs: &[&str]| {
        rs.iter()
            .map(|r| format!("    route {r} blackhole;\n"))
            .collect::<String>()
    };
    format!(
        r#"router id 10.255.0.1;
protocol device {{ }}
protocol static s4 {{
    ipv4;
{}}}
protocol static s6 {{
    ipv6;
{}}}
protocol bgp appliance4 {{
    local 10.255.0.1 as 64500;
    neighbor 10.255.0.2 as 64512;
    connect delay time 1;
    connect retry time 2;
    error wait time 1, 2;
    ipv4 {{ import none; export all; }};
}}
protocol bgp appliance6 {{
    local fd00:255::1 as 64500;
    neighbor fd00:255::2 as 64512;
    connect delay time 1;
    connect retry time 2;
    error wait time 1, 2;
    ipv6 {{ import none; export all; }};
}}
"#,
        routes(v4),
        routes(v6)
    )
}

/// Everything the router announces first: the good prefixes and what the filters refuse
/// (default routes, RFC 1918 and documentation space, too long, too short, not 2000::/3).
fn first_announcements() -> (Vec<&'static str>, Vec<&'static str>) {
    (
        vec![
            "81.2.0.0/16",
            "81.3.4.0/24",
            "0.0.0.0/0",
            "10.0.0.0/8",
            "192.0.2.0/24",
            "81.5.0.0/25",
            "4.0.0.0/7",
        ],
        vec![
            "2a02:1200::/32",
            "::/0",
            "2001:db8::/32",
            "fd00:1::/48",
            "2a00::/12",
            "2a04:1::/64",
        ],
    )
}

/// `oca serve` as appliance `ID` of cluster `isp-b`, heartbeating to `steering`, with
/// `extra` appended to its config.
fn start_oca(fx: Fixture, steering: &Steering, extra: &str) -> Server {
    start_appliance_with(fx, steering, ID, "isp-b", extra)
}

/// The appliance's entry in steering's registry.
async fn entry(steering: &Steering) -> Option<serde_json::Value> {
    steering.ocas().await.into_iter().find(|o| o["id"] == ID)
}

fn prefixes_of(e: &serde_json::Value) -> Vec<String> {
    e["bgp_prefixes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learns_prefixes_over_bgp_reports_them_and_steering_ranks_by_them() {
    let net = Netns::new();
    let fx = Fixture::new();
    let dir = tempfile::Builder::new()
        .prefix("oca-bgp-")
        .tempdir()
        .expect("temp dir");
    let (rsock, asock) = (dir.path().join("router.ctl"), dir.path().join("appl.ctl"));

    // The ISP router.
    let (v4, v6) = first_announcements();
    let rconf = dir.path().join("router.conf");
    std::fs::write(&rconf, router_conf(&v4, &v6)).expect("router conf");
    let _router = start_bird(&net.router, &rconf, &rsock, dir.path().join("router.log"));

    // The appliance: its config has the [bgp] section; its BIRD config is rendered from it.
    let steering = Steering::start(&fx.path("signing-keys.toml"), &[ID]);
    let bgp = format!(
        r#"
[bgp]
enabled = true
bird-socket = "{}"
refresh-interval = "200ms"
grace-period = "{}s"
router-id = "10.255.0.2"
local-as = 64512
[bgp.ipv4]
neighbor = "10.255.0.1"
neighbor-as = 64500
local-address = "10.255.0.2"
[bgp.ipv6]
neighbor = "fd00:255::1"
neighbor-as = 64500
local-address = "fd00:255::2"
"#,
        asock.display(),
        GRACE.as_secs()
    );
    let oca = start_oca(fx, &steering, &bgp);
    let aconf = dir.path().join("appliance.conf");
    let out = Command::new(oca_bin())
        .args(["bgp-config", "-c"])
        .arg(&oca.config)
        .arg("-o")
        .arg(&aconf)
        .output()
        .expect("oca bgp-config");
    assert!(out.status.success(), "{out:?}");
    let rendered = std::fs::read_to_string(&aconf).expect("rendered");
    assert!(rendered.contains("protocol bgp isp4") && rendered.contains("export none;"));
    let mut appl_bird = start_bird(
        &net.appliance,
        &aconf,
        &asock,
        dir.path().join("appliance.log"),
    );

    // Steering learns exactly the good prefixes from the heartbeats.
    let want: Vec<String> = GOOD.iter().map(|s| s.to_string()).collect();
    let st = commit_rendition(&oca, R720).await;
    assert!(matches!(st, 200..=204 | 404 | 405), "commit: {st}");
    poll_until(
        "steering lists the prefixes BIRD learned",
        Duration::from_secs(60),
        || async {
            let e = entry(&steering).await?;
            (prefixes_of(&e) == want && e["renditions"].as_u64() >= Some(1)).then_some(())
        },
    )
    .await;
    let e = entry(&steering).await.expect("registered");
    assert_eq!(e["state"], "up");
    assert_eq!(
        oca.metric("oca_bgp_prefixes", &[("family", "ipv4")]).await,
        2.0
    );
    assert_eq!(
        oca.metric("oca_bgp_prefixes", &[("family", "ipv6")]).await,
        1.0
    );
    assert_eq!(oca.metric("oca_bgp_bird_up", &[]).await, 1.0);
    assert!(
        oca.metric("oca_bgp_reads_total", &[("outcome", "ok")])
            .await
            >= 1.0
    );

    // Steering ranks clients inside the announced prefixes to the appliance, both families;
    // a client in a refused announcement (10.0.0.0/8) is not routed to it.
    for client in ["81.3.4.77", "81.2.200.1", "2a02:1200:5::9"] {
        let r = steering.steer(R720, client).await;
        assert_eq!(Steering::order(&r), [ID, "origin"], "client {client}");
        assert_eq!(r.json()["urls"][0]["kind"], "local", "client {client}");
    }
    for client in ["10.1.2.3", "81.5.0.1", "2001:db8::1"] {
        let r = steering.steer(R720, client).await;
        assert_ne!(
            r.json()["urls"][0]["kind"],
            "local",
            "client {client} is in a refused announcement"
        );
    }

    // The router withdraws 81.3.4.0/24 and announces 81.6.0.0/16: the change reaches
    // steering without a restart.
    std::fs::write(
        &rconf,
        router_conf(&["81.2.0.0/16", "81.6.0.0/16"], &["2a02:1200::/32"]),
    )
    .expect("router conf");
    sh("birdc", &["-s", &rsock.to_string_lossy(), "configure"]);
    let want2 = ["81.2.0.0/16", "81.6.0.0/16", "2a02:1200::/32"];
    poll_until(
        "steering sees the new announcements",
        Duration::from_secs(30),
        || async { (prefixes_of(&entry(&steering).await?) == want2).then_some(()) },
    )
    .await;
    assert_eq!(
        Steering::order(&steering.steer(R720, "81.6.1.1").await),
        [ID, "origin"]
    );
    assert_ne!(
        steering.steer(R720, "81.3.4.77").await.json()["urls"][0]["kind"],
        "local"
    );

    // The appliance's BIRD goes away: the last prefixes stay for the grace period...
    appl_bird.signal(Signal::SIGKILL);
    appl_bird.wait_exit(Duration::from_secs(5));
    let gone = Instant::now();
    poll_until(
        "oca notices BIRD is gone",
        Duration::from_secs(10),
        || async { (oca.metric("oca_bgp_bird_up", &[]).await == 0.0).then_some(()) },
    )
    .await;
    let e = entry(&steering).await.expect("registered");
    assert_eq!(
        prefixes_of(&e),
        want2,
        "prefixes kept during the grace period"
    );
    assert_eq!(e["state"], "up");
    assert!(
        oca.metric("oca_bgp_reads_total", &[("outcome", "error")])
            .await
            >= 1.0
    );
    // ...then none are reported and the appliance is degraded.
    poll_until(
        "degraded with no prefixes after the grace period",
        GRACE + Duration::from_secs(15),
        || async {
            let e = entry(&steering).await?;
            (e["state"] == "degraded" && prefixes_of(&e).is_empty()).then_some(())
        },
    )
    .await;
    let took = gone.elapsed();
    assert!(
        took + Duration::from_millis(500) >= GRACE,
        "degraded after {took:?}, before the grace period of {GRACE:?}"
    );
    assert_eq!(
        oca.metric("oca_bgp_prefixes", &[("family", "ipv4")]).await,
        0.0
    );
    assert_ne!(
        steering.steer(R720, "81.2.0.1").await.json()["urls"][0]["kind"],
        "local"
    );
    assert!(
        oca.log().contains("grace period"),
        "the log says why: {}",
        oca.log()
    );
}

/// The rendered example in `bgp-config/` is what `oca bgp-config` renders from the example
/// appliance config, and BIRD accepts it (`bird -p -c`).
#[test]
fn rendered_example_is_current_and_bird_accepts_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bgp-config");
    let out = Command::new(oca_bin())
        .args(["bgp-config", "--source", "/etc/oca/oca.toml", "-c"])
        .arg(root.join("example-oca.toml"))
        .output()
        .expect("oca bgp-config");
    assert!(out.status.success(), "{out:?}");
    let example = std::fs::read_to_string(root.join("bird.conf.example")).expect("example");
    assert_eq!(String::from_utf8_lossy(&out.stdout), example);
    sh(
        "bird",
        &[
            "-p",
            "-c",
            &root.join("bird.conf.example").to_string_lossy(),
        ],
    );
    // BIRD's parser is a real check: a broken filter is refused.
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.conf");
    std::fs::write(&broken, example.replace("then reject;", "then rejekt;")).unwrap();
    let st = Command::new("bird")
        .args(["-p", "-c"])
        .arg(&broken)
        .output()
        .expect("bird");
    assert!(!st.status.success());
    // An appliance config without the BGP keys: exit 64 naming them.
    let cfg = dir.path().join("oca.toml");
    std::fs::write(
        &cfg,
        format!("[admin]\ntoken-sha256 = \"{}\"\n", "a".repeat(64)),
    )
    .unwrap();
    let out = Command::new(oca_bin())
        .args(["bgp-config", "-c"])
        .arg(&cfg)
        .output()
        .expect("oca bgp-config");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bgp.router-id") && err.contains("bgp.local-as"),
        "{err}"
    );
}
