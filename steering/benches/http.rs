//! HTTP steering requests per second and p99 on loopback, next to a hyper hello-world in the
//! same run (target: steering ≥ 70 % of the hello-world's rate).
//!
//! Both servers run in this process on one single-worker runtime (one core); the load
//! generator runs on another single-worker runtime (the other core) with `CONNS` keep-alive
//! HTTP/1.1 connections, each sending requests back to back. Steering holds 1,000 appliances
//! in 100 clusters announcing 100 prefixes each (100k), and each request asks for a
//! rendition held by the fleet, from a client address inside an announced prefix (sent as
//! `X-Forwarded-For` from the trusted loopback proxy). The hello-world gets the same
//! requests. Phases alternate (hello, steer) `ROUNDS` times, each bounded by time and count;
//! the medians are printed.
//!
//! `cargo bench -p steering --bench http` (env: `SECS` per phase, default 3; `CONNS`,
//! default 16; `ROUNDS`, default 3).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oca_common::wire::{Heartbeat, Inventory, InventoryEntry, Load, OcaState, RenditionId, Tier};

const APPLIANCES: usize = 1_000;
const CLUSTERS: usize = 100;
const PREFIXES_EACH: usize = 100;
const RENDITIONS: usize = 10_000;
const MAX_REQUESTS: usize = 20_000_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mix(i: u64) -> u64 {
    steering::rank::mix64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Appliance `i` announces 10.x.y.0/24 prefixes derived from its index and holds every
/// 10th rendition starting at its own index modulo 10.
fn heartbeat(i: usize) -> Heartbeat {
    let id = format!("oca-{i:04}");
    Heartbeat {
        id: id.clone(),
        site: "s".into(),
        cluster: format!("c{}", i % CLUSTERS),
        public_urls: vec![format!("https://{id}.example.net")],
        state: OcaState::Up,
        load: Load {
            egress_bps: mix(i as u64) % 10_000_000_000,
            capacity_bps: 10_000_000_000,
            connections: 0,
        },
        tiers: Vec::new(),
        inventory: Inventory {
            generation: 1,
            full: true,
            added: (0..RENDITIONS / 10)
                .map(|k| InventoryEntry {
                    rendition: rendition(k * 10 + i % 10),
                    files_held: 10,
                    total_files: 10,
                    bytes: 1 << 30,
                    tier: Tier::Flash,
                })
                .collect(),
            removed: Vec::new(),
            base: None,
        },
        bgp_prefixes: (0..PREFIXES_EACH)
            .map(|k| {
                let n = i * PREFIXES_EACH + k;
                format!("10.{}.{}.0/24", n / 256 % 256, n % 256)
            })
            .collect(),
        started_at: 1,
        sent_at: 1,
        version: "bench".into(),
        interval_ms: Some(3_600_000 / 12),
    }
}

fn rendition(k: usize) -> RenditionId {
    RenditionId::parse(&format!("title-{:05}/r{}", k / 4, k % 4)).unwrap()
}

async fn hello(listener: tokio::net::TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                    b"hello\n",
                ))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

struct Phase {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: usize,
}

async fn load(addr: SocketAddr, reqs: Arc<Vec<(String, String)>>, secs: u64, conns: u64) -> Phase {
    let t0 = Instant::now();
    let limit = Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let reqs = reqs.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = tcp.set_nodelay(true);
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut i = c as usize * 7919;
            while t0.elapsed() < limit && lat.len() < MAX_REQUESTS / conns as usize {
                let (path, xff) = &reqs[i % reqs.len()];
                i += 1;
                let req = hyper::Request::get(path.as_str())
                    .header("host", "bench")
                    .header("x-forwarded-for", xff.as_str())
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let s = Instant::now();
                match tx.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        let _ = resp.into_body().collect().await;
                        if !ok {
                            errors += 1;
                        }
                        lat.push(s.elapsed().as_micros() as u32);
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    let dt = t0.elapsed().as_secs_f64();
    all.sort_unstable();
    let q = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
    };
    Phase {
        rps: all.len() as f64 / dt,
        p50_us: q(0.5),
        p99_us: q(0.99),
        errors,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let secs = env("SECS", 3);
    let conns = env("CONNS", 16);
    let rounds = env("ROUNDS", 3).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sites =
        String::from("fallback = [\"c0\"]\n[[site]]\nid = \"s\"\ntime-zone = \"UTC\"\n");
    for c in 0..CLUSTERS {
        sites += &format!(
            "[[cluster]]\nid = \"c{c}\"\nsite = \"s\"\nfallback = [\"c{}\"]\n",
            (c + 1) % CLUSTERS
        );
    }
    std::fs::write(dir.path().join("sites.toml"), sites).unwrap();
    std::fs::write(
        dir.path().join("keys.toml"),
        "[k1]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg=\"\n",
    )
    .unwrap();
    let cfg_text = "[server]\nlisten = \"127.0.0.1:0\"\ntrusted-proxies = [\"127.0.0.1\"]\n\
                    [ranking]\nsites-file = \"sites.toml\"\n[urls]\nkeys-file = \"keys.toml\"\n\
                    [control-plane]\nenabled = false\n\
                    [log]\nlevel = \"warn\"\n";
    let cfg = steering::Config::parse(cfg_text, &dir.path().join("steering.toml")).unwrap();

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let running = server_rt
        .block_on(steering::api::Running::start(cfg))
        .expect("steering starts");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..APPLIANCES {
        running
            .app
            .registry
            .heartbeat(&heartbeat(i), now_ms)
            .expect("heartbeat");
    }
    running.app.registry.flush_routes();
    let hello_l = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let hello_addr = hello_l.local_addr().unwrap();
    server_rt.spawn(hello(hello_l));

    let reqs: Arc<Vec<(String, String)>> = Arc::new(
        (0..4096u64)
            .map(|k| {
                let r = rendition((mix(k) % RENDITIONS as u64) as usize);
                let n = mix(k + 1) as usize % (APPLIANCES * PREFIXES_EACH);
                let xff = format!("10.{}.{}.{}", n / 256 % 256, n % 256, 1 + k % 250);
                (format!("/v1/steer?rendition={r}"), xff)
            })
            .collect(),
    );
    // Sanity: steering answers with appliances.
    let probe = client_rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(running.addr).await.unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let (path, xff) = &reqs[0];
        let resp = tx
            .send_request(
                hyper::Request::get(path.as_str())
                    .header("host", "bench")
                    .header("x-forwarded-for", xff.as_str())
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
    });
    assert!(probe.contains("\"kind\":\"local\""), "{probe}");

    let (mut h_rps, mut h_p99, mut s_rps, mut s_p99, mut s_p50, mut h_p50) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=rounds {
        for (name, addr) in [("hello", hello_addr), ("steer", running.addr)] {
            let p = client_rt.block_on(load(addr, reqs.clone(), secs, conns));
            println!(
                "round {round} {name:5}: {:>9.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  errors {}",
                p.rps, p.p50_us, p.p99_us, p.errors
            );
            assert_eq!(p.errors, 0, "{name}: errors");
            if name == "hello" {
                h_rps.push(p.rps);
                h_p99.push(p.p99_us);
                h_p50.push(p.p50_us);
            } else {
                s_rps.push(p.rps);
                s_p99.push(p.p99_us);
                s_p50.push(p.p50_us);
            }
        }
    }
    let (h, s) = (median(h_rps), median(s_rps));
    println!(
        "median of {rounds}: hello-world {h:.0} req/s (p50 {:.0} µs, p99 {:.0} µs); \
         /v1/steer {s:.0} req/s (p50 {:.0} µs, p99 {:.0} µs); steer/hello = {:.2} (target >= 0.70)",
        median(h_p50),
        median(h_p99),
        median(s_p50),
        median(s_p99),
        s / h
    );
    let m = running.app.metrics.encode();
    let line = m
        .lines()
        .find(|l| l.starts_with("steering_decision_duration_seconds_count"))
        .unwrap_or("");
    println!("{line}");
}
