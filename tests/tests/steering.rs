//! End-to-end tests of steering: a real `steering` process and real `oca` processes that
//! heartbeat to it every 200 ms (build the binaries first: `cargo build --release --bins`).
//! Client addresses are varied with `X-Forwarded-For` from the trusted loopback proxy.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oca_tests::fixture::{Fixture, SEG};
use oca_tests::steering::{
    INTERVAL, MAX_HEARTBEAT_BODY, Steering, commit_rendition, fixture_sharing_key, start_appliance,
    steering_bin,
};
use oca_tests::{Proto, Server, poll_until};

const R720: &str = "movie/720p";

/// Steering plus appliance `a` (cluster isp-a, 10.0.0.0/8 and 2001:db8::/32) and `b`
/// (cluster isp-b, the more specific 10.1.0.0/16 and 2001:db8:1::/48), both registered
/// with the 720p rendition in their inventory.
async fn two_appliances() -> (Steering, Server, Server) {
    let fx_a = Fixture::new();
    let fx_b = fixture_sharing_key(&fx_a);
    let steering = Steering::start(&fx_a.path("signing-keys.toml"), &["a", "b"]);
    let a = start_appliance(
        fx_a,
        &steering,
        "a",
        "isp-a",
        &["10.0.0.0/8", "2001:db8::/32"],
    );
    let b = start_appliance(
        fx_b,
        &steering,
        "b",
        "isp-b",
        &["10.1.0.0/16", "2001:db8:1::/48"],
    );
    for s in [&a, &b] {
        let st = commit_rendition(s, R720).await;
        assert!(
            matches!(st, 200..=204 | 404 | 405),
            "commit {R720}: {st}\n{}",
            s.log()
        );
    }
    poll_until(
        "both appliances registered with 720p",
        Duration::from_secs(10),
        || async {
            let ocas = steering.ocas().await;
            let ready = ocas.len() == 2
                && ocas
                    .iter()
                    .all(|o| o["renditions"].as_u64() >= Some(1) && o["stale"] == false);
            ready.then_some(())
        },
    )
    .await;
    (steering, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_by_prefix_specificity_v4_and_v6_and_urls_fetch() {
    let (steering, a, b) = two_appliances().await;

    // /v1/ocas carries what the heartbeats said.
    let ocas = steering.ocas().await;
    let ob = ocas.iter().find(|o| o["id"] == "b").expect("b listed");
    assert_eq!(ob["cluster"], "isp-b");
    assert_eq!(ob["state"], "up");
    assert_eq!(
        ob["bgp_prefixes"],
        serde_json::json!(["10.1.0.0/16", "2001:db8:1::/48"])
    );
    assert_eq!(
        ob["public_urls"][0],
        format!("https://127.0.0.1:{}", b.ports.https)
    );
    assert_eq!(ob["load"]["capacity_bps"], 10_000_000_000u64);

    // Most specific prefix first, both families; the origin is always last.
    let cases: &[(&str, &[&str])] = &[
        ("10.1.2.3", &["b", "a", "origin"]),
        ("10.200.0.1", &["a", "origin"]),
        ("2001:db8:1::5", &["b", "a", "origin"]),
        ("2001:db8:2::5", &["a", "origin"]),
    ];
    for (client, want) in cases {
        let r = steering.steer(R720, client).await;
        assert_eq!(Steering::order(&r), *want, "client {client}");
        let j = r.json();
        assert_eq!(j["client"], *client);
        assert_eq!(j["urls"][0]["kind"], "local");
        assert_eq!(
            j["urls"].as_array().unwrap().last().unwrap()["kind"],
            "origin"
        );
    }
    // A client no prefix covers: the sites file's fallback cluster (isp-a), a route miss.
    let r = steering.steer(R720, "192.0.2.1").await;
    assert_eq!(Steering::order(&r), ["a", "origin"]);
    assert_eq!(r.json()["urls"][0]["kind"], "fallback");
    // From an untrusted peer X-Forwarded-For would be ignored; from loopback without it the
    // client is 127.0.0.1, which no prefix covers either.
    let r = steering
        .get(&format!("/v1/steer?rendition={R720}"), &[])
        .await;
    assert_eq!(r.json()["client"], "127.0.0.1");

    // The signed URL fetches a segment from the appliance it names, and the decision id
    // reaches that appliance's access log.
    let r = steering.steer(R720, "10.1.2.3").await;
    let j = r.json();
    let decision = j["decision_id"].as_str().expect("decision id").to_string();
    let url = j["urls"][0]["url"].as_str().unwrap().to_string();
    let (base, query) = url.split_once('?').expect("?d= on appliance URLs");
    assert_eq!(query, format!("d={decision}"));
    let prefix = format!("https://127.0.0.1:{}", b.ports.https);
    let path = base.strip_prefix(&prefix).expect("URL on b").to_string();
    assert!(
        path.starts_with("/t/v1.") && path.ends_with("/movie/720p/"),
        "{path}"
    );
    let file = SEG.rsplit('/').next().unwrap();
    let resp = b.get(Proto::H1, &format!("{path}{file}?{query}")).await;
    assert_eq!(resp.status, 200, "{}", b.log());
    assert_eq!(&resp.body[..], b.fx.object(SEG));
    poll_until(
        "decision id in b's access log",
        Duration::from_secs(5),
        || async { b.log().contains(&decision).then_some(()) },
    )
    .await;
    // The token covers one rendition (n = 2): another rendition of the title is refused.
    let other = path.replace("/movie/720p/", "/movie/1080p/");
    let resp = b.get(Proto::H1, &format!("{other}seg-00001.m4s")).await;
    assert_eq!(resp.status, 403);
    // The same token works on the second-ranked appliance (shared signing key).
    let url_a = j["urls"][1]["url"].as_str().unwrap();
    let path_a = url_a
        .split_once('?')
        .unwrap()
        .0
        .strip_prefix(&format!("https://127.0.0.1:{}", a.ports.https))
        .expect("URL on a")
        .to_string();
    assert_eq!(
        a.get(Proto::H1, &format!("{path_a}{file}")).await.status,
        200
    );

    // Metrics on both sides.
    let m = steering.metrics().await;
    let v = |name: &str, labels: &[(&str, &str)]| oca_tests::metrics::value(&m, name, labels);
    assert!(
        v("steering_misses_total", &[("cause", "route")]) >= 2.0,
        "{m}"
    );
    assert_eq!(v("steering_misses_total", &[("cause", "content")]), 0.0);
    assert!(v("steering_decisions_total", &[("first", "local")]) >= 5.0);
    assert!(v("steering_decision_duration_seconds_count", &[]) >= 7.0);
    assert!(v("steering_heartbeats_total", &[("outcome", "ok")]) >= 2.0);
    assert_eq!(v("steering_appliances", &[("state", "up")]), 2.0);
    assert!(b.metric("oca_heartbeats_total", &[("outcome", "ok")]).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_appliance_leaves_rankings_within_three_intervals() {
    let (steering, _a, mut b) = two_appliances().await;
    assert_eq!(
        Steering::order(&steering.steer(R720, "10.1.2.3").await),
        ["b", "a", "origin"]
    );
    b.signal(Signal::SIGKILL);
    b.proc.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    poll_until("b out of the ranking", Duration::from_secs(10), || async {
        let order = Steering::order(&steering.steer(R720, "10.1.2.3").await);
        (order == ["a", "origin"]).then_some(())
    })
    .await;
    let took = killed.elapsed();
    // Stale after three intervals (600 ms) without a heartbeat; the bound leaves room for
    // a loaded machine, and is far below what a fixed timeout of seconds would give.
    assert!(
        took < INTERVAL * 3 + Duration::from_millis(900),
        "took {took:?}"
    );
    let ocas = steering.ocas().await;
    let ob = ocas.iter().find(|o| o["id"] == "b").unwrap();
    assert_eq!(ob["stale"], true);
    let m = steering.metrics().await;
    assert!(oca_tests::metrics::value(&m, "steering_misses_total", &[("cause", "health")]) >= 1.0);
    assert_eq!(
        oca_tests::metrics::value(&m, "steering_appliances", &[("state", "stale")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_appliance_is_out_at_once() {
    let (steering, mut a, _b) = two_appliances().await;
    assert_eq!(
        Steering::order(&steering.steer(R720, "10.200.0.1").await),
        ["a", "origin"]
    );
    a.signal(Signal::SIGTERM);
    // The last heartbeat says draining: a is out although it is not stale.
    let oa = poll_until("a reported draining", Duration::from_secs(5), || async {
        let ocas = steering.ocas().await;
        ocas.into_iter()
            .find(|o| o["id"] == "a" && o["state"] == "draining")
    })
    .await;
    assert_eq!(oa["stale"], false);
    let r = steering.steer(R720, "10.200.0.1").await;
    assert_eq!(Steering::order(&r), ["origin"]);
    let r = steering.steer(R720, "10.1.2.3").await;
    assert_eq!(Steering::order(&r), ["b", "origin"]);
    let m = steering.metrics().await;
    assert!(oca_tests::metrics::value(&m, "steering_misses_total", &[("cause", "health")]) >= 1.0);
    let st = a.proc.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "{st}");
}

/// A valid heartbeat body for appliance `id`.
fn heartbeat(id: &str, cluster: &str, renditions: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "id": id, "site": "s1", "cluster": cluster,
        "public_urls": [format!("https://{id}.example.net")],
        "state": "up",
        "load": {"egress_bps": 0, "capacity_bps": 1000, "connections": 0},
        "inventory": {"generation": 3, "full": true, "added": renditions.iter().map(|r| serde_json::json!({
            "rendition": r, "files_held": 1, "total_files": 1, "bytes": 1, "tier": "disk"
        })).collect::<Vec<_>>()},
        "bgp_prefixes": ["198.51.100.0/24"],
        "started_at": 1, "sent_at": 2, "version": "test"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_json_4xx() {
    let fx = Fixture::new();
    let steering = Steering::start(&fx.path("signing-keys.toml"), &["x", "y"]);
    let bearer = |id: &str| format!("Bearer {}", steering.tokens[id]);
    let json = [("content-type", "application/json")];
    let post_hb = |auth: Option<String>, body: Vec<u8>| {
        let steering = &steering;
        async move {
            let mut h: Vec<(&str, &str)> = json.to_vec();
            if let Some(a) = &auth {
                h.push(("authorization", a));
            }
            steering.post("/v1/oca/heartbeat", &h, body).await
        }
    };
    let check = |r: &oca_tests::steering::HttpResp, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let j = r.json();
        assert_eq!(j["error"], code, "{j}");
        assert!(!j["message"].as_str().unwrap_or("").is_empty(), "{j}");
    };
    let good = serde_json::to_vec(&heartbeat("x", "isp-a", &["movie/720p"])).unwrap();

    // A good heartbeat registers; then the rendition can be steered.
    let r = post_hb(Some(bearer("x")), good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["acked_generation"], 3);
    assert_eq!(r.json()["want_full_inventory"], false);
    let r = steering.steer(R720, "198.51.100.7").await;
    assert_eq!(Steering::order(&r), ["x", "origin"]);

    // Tokens: none 401, unknown 403, another appliance's 403.
    check(&post_hb(None, good.clone()).await, 401, "unauthorized");
    check(
        &post_hb(Some("Bearer nope".into()), good.clone()).await,
        403,
        "forbidden",
    );
    check(
        &post_hb(Some(bearer("y")), good.clone()).await,
        403,
        "forbidden",
    );
    // Malformed JSON, wrong shape, oversized body.
    check(
        &post_hb(Some(bearer("x")), b"{\"id\": ".to_vec()).await,
        400,
        "bad_json",
    );
    check(
        &post_hb(Some(bearer("x")), b"[1,2]".to_vec()).await,
        400,
        "bad_json",
    );
    let huge = vec![b' '; MAX_HEARTBEAT_BODY + 1];
    check(
        &post_hb(Some(bearer("x")), huge).await,
        413,
        "body_too_large",
    );
    // Well-formed but wrong for the sites file.
    let mut bad = heartbeat("x", "nowhere", &[]);
    check(
        &post_hb(Some(bearer("x")), serde_json::to_vec(&bad).unwrap()).await,
        422,
        "unknown_cluster",
    );
    bad = heartbeat("x", "isp-a", &[]);
    bad["bgp_prefixes"] = serde_json::json!(["10.0.0.0/99"]);
    check(
        &post_hb(Some(bearer("x")), serde_json::to_vec(&bad).unwrap()).await,
        422,
        "bad_prefix",
    );
    // Steering requests.
    check(
        &steering.steer("nobody/holds", "198.51.100.7").await,
        404,
        "unknown_rendition",
    );
    check(
        &steering.steer("movie/../x", "198.51.100.7").await,
        400,
        "bad_rendition",
    );
    check(
        &steering.steer("movie", "198.51.100.7").await,
        400,
        "bad_rendition",
    );
    check(
        &steering.get("/v1/steer", &[]).await,
        400,
        "missing_rendition",
    );
    check(&steering.get("/v1/nothing", &[]).await, 404, "not_found");
    let r = steering.post("/v1/steer", &[], Vec::new()).await;
    check(&r, 405, "method_not_allowed");
    assert_eq!(r.headers["allow"], "GET");
    // Phase-2 routes are documented and answer 501.
    check(
        &steering.post("/v1/playback", &json, b"{}".to_vec()).await,
        501,
        "not_implemented",
    );
    check(
        &steering.get("/v1/recommendations", &[]).await,
        501,
        "not_implemented",
    );
    let doc = steering.get("/openapi.json", &[]).await.json();
    assert!(doc["paths"]["/v1/playback"]["post"]["x-not-served"] == true);
    // Refused heartbeats changed nothing; steering still works.
    let r = steering.steer(R720, "198.51.100.7").await;
    assert_eq!(Steering::order(&r), ["x", "origin"]);
    let m = steering.metrics().await;
    assert!(
        oca_tests::metrics::value(&m, "steering_heartbeats_total", &[("outcome", "forbidden")])
            >= 2.0
    );
    steering_alive(steering);
}

fn steering_alive(mut s: Steering) {
    assert!(s.proc.exited().is_none(), "{}", s.proc.log_text());
}

#[test]
fn cli_help_and_bad_config_exit_64() {
    let out = std::process::Command::new(steering_bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, "[ranking]\ntop-n = 0\n").unwrap();
    let out = std::process::Command::new(steering_bin())
        .args(["check-config", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ranking.top-n"));
    // A good config whose sites file is missing is a config error too.
    std::fs::write(&cfg, "[ranking]\nsites-file = \"none.toml\"\n").unwrap();
    let out = std::process::Command::new(steering_bin())
        .args(["check-config", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.toml"));
    let out = std::process::Command::new(steering_bin())
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
