//! End-to-end tests of steering: a real `steering` process and real `oca` processes that
//! heartbeat to it every 200 ms (build the binaries first: `cargo build --release --bins`).
//! Client addresses are varied with `X-Forwarded-For` from the trusted loopback proxy.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oca_tests::fixture::{Fixture, SEG};
use oca_tests::steering::{
    ControlPlaneDb, INTERVAL, MAX_HEARTBEAT_BODY, Steering, commit_rendition, fixture_sharing_key,
    start_appliance, steering_bin,
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
    // Without a control plane the player routes are documented and answer 503.
    check(
        &steering.post("/v1/playback", &json, b"{}".to_vec()).await,
        503,
        "control_plane_disabled",
    );
    check(
        &steering.get("/v1/recommendations", &[]).await,
        503,
        "control_plane_disabled",
    );
    let doc = steering.get("/openapi.json", &[]).await.json();
    assert!(doc["paths"]["/v1/playback"]["post"]["responses"]["401"].is_object());
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
    // So is a control plane that cannot be opened (its config file is missing).
    std::fs::write(dir.path().join("sites.toml"), oca_tests::steering::SITES).unwrap();
    std::fs::write(
        &cfg,
        "[ranking]\nsites-file = \"sites.toml\"\n[control-plane]\nconfig-file = \"nocp.toml\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(steering_bin())
        .args(["check-config", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nocp.toml"));
    let out = std::process::Command::new(steering_bin())
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// Playback, licenses, events and recommendations against a real control-plane database:
/// steering signs with the control plane's key (the appliances get the same key file),
/// appliances heartbeat with control-plane appliance tokens, and the player routes refuse
/// bad input with clear JSON 4xx answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_and_license_with_a_real_control_plane() {
    let mut fx_a = Fixture::new();
    let db = ControlPlaneDb::new(&fx_a, &["a", "b"]);
    let (kid, secret) = db.signing_key();
    fx_a.write_keys(&[(&kid, secret.clone())]);
    let mut fx_b = Fixture::new();
    fx_b.write_keys(&[(&kid, secret)]);
    let steering = Steering::start_with_control_plane(&db);
    let a = start_appliance(fx_a, &steering, "a", "isp-a", &["10.0.0.0/8"]);
    let b = start_appliance(fx_b, &steering, "b", "isp-b", &["10.1.0.0/16"]);
    for s in [&a, &b] {
        for r in ["movie/720p", "movie/1080p"] {
            let st = commit_rendition(s, r).await;
            assert!(matches!(st, 200..=204 | 404 | 405), "commit {r}: {st}");
        }
    }
    poll_until(
        "both appliances registered with 2 renditions",
        Duration::from_secs(10),
        || async {
            let ocas = steering.ocas().await;
            let ready = ocas.len() == 2
                && ocas
                    .iter()
                    .all(|o| o["renditions"].as_u64() >= Some(2) && o["stale"] == false);
            ready.then_some(())
        },
    )
    .await;

    let alice = db.player_token("alice");
    let bob = db.player_token("bob");
    let carol = db.player_token("carol");
    let auth = |t: &str| format!("Bearer {t}");
    let play = |token: Option<String>, body: Vec<u8>| {
        let steering = &steering;
        async move {
            let mut h = vec![("x-forwarded-for", "10.1.2.3".to_string())];
            if let Some(t) = token {
                h.push(("authorization", t));
            }
            let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            steering.post("/v1/playback", &hs, body).await
        }
    };
    let movie = br#"{"title": "movie"}"#.to_vec();

    // alice (hd) gets both renditions, tallest first, each ranked b (local, most specific),
    // a, origin; one decision id; the license URL.
    let r = play(Some(auth(&alice)), movie.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["title"], "movie");
    assert_eq!(j["license_url"], "/v1/license");
    assert!(j["expires_at"].as_u64().unwrap() > oca_tests::now_unix());
    let decision = j["decision_id"].as_str().unwrap().to_string();
    let rends = j["renditions"].as_array().unwrap();
    let names: Vec<&str> = rends
        .iter()
        .map(|r| r["rendition"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["movie/1080p", "movie/720p"]);
    assert_eq!(rends[1]["height"], 720);
    assert_eq!(rends[1]["codec"], "avc1.64001f");
    for rend in rends {
        let ids: Vec<&str> = rend["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["oca_id"].as_str().unwrap_or("origin"))
            .collect();
        assert_eq!(ids, ["b", "a", "origin"], "{rend}");
    }
    // The first URL of 720p fetches the segment byte-exact from b, signed with the control
    // plane's key; a's URL works too.
    for (i, server) in [(0usize, &b), (1, &a)] {
        let url = rends[1]["urls"][i]["url"].as_str().unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(query, format!("d={decision}"));
        let path = base
            .strip_prefix(&format!("https://127.0.0.1:{}", server.ports.https))
            .expect("URL on the ranked appliance");
        let resp = server
            .get(Proto::H1, &format!("{path}seg-00001.m4s?{query}"))
            .await;
        assert_eq!(resp.status, 200, "{}", server.log());
        assert_eq!(&resp.body[..], server.fx.object(SEG));
    }

    // Device caps filter; bob's plan (sd) stops at 720p; carol's plan (audio) allows nothing.
    let r = play(
        Some(auth(&alice)),
        br#"{"title": "movie", "device": {"max_height": 720, "codecs": ["avc1"]}}"#.to_vec(),
    )
    .await;
    assert_eq!(r.json()["renditions"].as_array().unwrap().len(), 1);
    let r = play(
        Some(auth(&alice)),
        br#"{"title": "movie", "device": {"codecs": ["hvc1"]}}"#.to_vec(),
    )
    .await;
    assert_json_error(&r, 422, "no_playable_rendition");
    let r = play(Some(auth(&bob)), movie.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["renditions"][0]["rendition"], "movie/720p");
    assert_eq!(r.json()["renditions"].as_array().unwrap().len(), 1);
    assert_json_error(
        &play(Some(auth(&carol)), movie.clone()).await,
        403,
        "not_entitled",
    );

    // Licenses: bob gets the 720p key, and 403 for the 1080p key his plan does not cover.
    let now = oca_tests::now_unix();
    let kid720 = db
        .cp
        .content_key_id(&"movie/720p".parse().unwrap(), now)
        .unwrap()
        .to_b64url();
    let kid1080 = db
        .cp
        .content_key_id(&"movie/1080p".parse().unwrap(), now)
        .unwrap()
        .to_b64url();
    let license = |token: &str, kids: &[&str]| {
        let body = serde_json::json!({ "kids": kids, "type": "temporary" }).to_string();
        let h = auth(token);
        let steering = &steering;
        async move {
            steering
                .post("/v1/license", &[("authorization", &h)], body.into_bytes())
                .await
        }
    };
    let r = license(&bob, &[&kid720]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let keys = r.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], kid720.as_str());
    assert_eq!(keys[0]["kty"], "oct");
    let (_, clear) = db
        .cp
        .content_key_for_packager(&"movie/720p".parse().unwrap(), now)
        .unwrap();
    use base64::Engine as _;
    assert_eq!(
        keys[0]["k"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(clear)
    );
    assert_json_error(&license(&bob, &[&kid1080]).await, 403, "not_entitled");
    assert_eq!(license(&alice, &[&kid1080]).await.status, 200);
    let r = steering
        .post(
            "/v1/license",
            &[("authorization", &auth(&bob))],
            b"{kids".to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Bad tokens, unknown title, malformed JSON, oversized body.
    let r = play(None, movie.clone()).await;
    assert_json_error(&r, 401, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(
        play(Some("Bearer nonsense".into()), movie.clone())
            .await
            .status,
        401
    );
    let mut forged = alice.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(play(Some(auth(&forged)), movie.clone()).await.status, 401);
    let revoked = db.player_token("alice");
    db.cp.revoke_player_token(&revoked, now).unwrap();
    assert_json_error(
        &play(Some(auth(&revoked)), movie.clone()).await,
        401,
        "token_revoked",
    );
    assert_json_error(
        &play(Some(auth(&alice)), br#"{"title": "nope"}"#.to_vec()).await,
        404,
        "unknown_title",
    );
    assert_json_error(
        &play(Some(auth(&alice)), br#"{"title": "../x"}"#.to_vec()).await,
        400,
        "bad_title",
    );
    assert_json_error(
        &play(Some(auth(&alice)), b"{\"title\": ".to_vec()).await,
        400,
        "bad_json",
    );
    assert_json_error(
        &play(
            Some(auth(&alice)),
            br#"{"title": "movie", "extra": 1}"#.to_vec(),
        )
        .await,
        400,
        "bad_json",
    );
    let mut big = br#"{"title": "movie", "pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 8 << 10));
    big.extend(br#""}"#);
    assert_json_error(&play(Some(auth(&alice)), big).await, 413, "body_too_large");

    // View events (the user comes from the token) and recommendations.
    let ev = br#"{"events": [{"rendition": "movie/720p", "region": "NL"}]}"#.to_vec();
    let r = steering
        .post(
            "/v1/events",
            &[("authorization", &auth(&alice))],
            ev.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["recorded"], 1);
    let r = steering
        .post(
            "/v1/events",
            &[("authorization", &auth(&alice))],
            br#"{"events": [{"rendition": "movie/720p", "region": "N L"}]}"#.to_vec(),
        )
        .await;
    assert_json_error(&r, 400, "bad_event");
    assert_eq!(steering.post("/v1/events", &[], ev).await.status, 401);
    let r = steering
        .get(
            "/v1/recommendations?region=NL",
            &[("authorization", &auth(&bob))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = r.json()["rows"].as_array().unwrap().clone();
    assert!(
        rows.iter().any(|row| row["titles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "movie")),
        "{rows:?}"
    );
    assert_json_error(
        &steering
            .get("/v1/recommendations", &[("authorization", &auth(&bob))])
            .await,
        400,
        "missing_region",
    );

    // A control-plane appliance token is bound to its appliance id.
    let mut hb = heartbeat("b", "isp-b", &[]);
    hb["id"] = "a".into();
    let r = steering
        .post(
            "/v1/oca/heartbeat",
            &[("authorization", &auth(&db.appliance_tokens["b"]))],
            serde_json::to_vec(&hb).unwrap(),
        )
        .await;
    assert_json_error(&r, 403, "forbidden");

    let m = steering.metrics().await;
    let v = |name: &str, labels: &[(&str, &str)]| oca_tests::metrics::value(&m, name, labels);
    assert!(
        v("steering_playbacks_total", &[("outcome", "ok")]) >= 3.0,
        "{m}"
    );
    assert_eq!(
        v("steering_playbacks_total", &[("outcome", "not_entitled")]),
        1.0
    );
    assert!(v("steering_player_auth_total", &[("outcome", "revoked")]) >= 1.0);
    assert_eq!(v("steering_view_events_total", &[]), 1.0);
    assert!(v("steering_control_plane_call_duration_seconds_count", &[]) >= 10.0);
    assert!(v("steering_heartbeats_total", &[("outcome", "ok")]) >= 2.0);
}

fn assert_json_error(r: &oca_tests::steering::HttpResp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"], code, "{j}");
    assert!(j["message"].is_string());
}
