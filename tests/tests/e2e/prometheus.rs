//! DESIGN §7: a real Prometheus server (Debian's) scrapes the admin port with the bearer
//! token and answers queries over what it scraped.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use oca_tests::client::require_tool;
use oca_tests::fixture::{Ports, SEG};
use oca_tests::server::ChildGuard;
use oca_tests::{Proto, Server, poll_until};

/// `GET /api/v1/query?query=…` on Prometheus; the `data.result` array, if the server answers.
fn query(port: u16, promql: &str) -> Option<Vec<serde_json::Value>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    write!(
        s,
        "GET /api/v1/query?query={q} HTTP/1.0\r\nHost: prometheus\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The value of a one-series instant vector, as a string (`"1"`).
fn single_value(result: &[serde_json::Value]) -> Option<String> {
    result.first()?["value"][1].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_admin_port() {
    require_tool("prometheus", "prometheus");
    let srv = Server::start_default();
    // Some traffic, so the request counters have series.
    let r = srv.get(Proto::H1, &srv.signed(SEG)).await;
    assert_eq!(r.status, 200);
    let r = srv.get(Proto::H2, &srv.signed(SEG)).await;
    assert_eq!(r.status, 200);

    let dir = srv.fx.path("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: oca\n    authorization:\n      type: Bearer\n      credentials: {token}\n    \
             static_configs:\n      - targets: ['127.0.0.1:{admin}']\n",
            token = srv.fx.admin_token,
            admin = srv.ports.admin,
        ),
    )
    .expect("write prometheus.yml");
    let port = Ports::free().admin;
    let log = dir.join("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start prometheus");
    let prom = ChildGuard { child, log };

    // The scrape succeeded: `up` is 1 and the appliance's own gauges are there.
    let up = poll_until(
        "Prometheus reports up{job=\"oca\"} = 1",
        Duration::from_secs(60),
        || async {
            query(port, "up{job=\"oca\"}")
                .and_then(|r| single_value(&r))
                .filter(|v| v == "1")
        },
    )
    .await;
    assert_eq!(up, "1", "{}", prom.log_text());
    let ready = poll_until(
        "oca_ready in Prometheus",
        Duration::from_secs(30),
        || async { query(port, "oca_ready").and_then(|r| single_value(&r)) },
    )
    .await;
    assert_eq!(ready, "1");
    // Counters keep their labels: one series per protocol that carried a 200.
    let series = poll_until(
        "oca_http_requests_total series in Prometheus",
        Duration::from_secs(30),
        || async { query(port, "oca_http_requests_total{code=\"200\"}").filter(|r| r.len() >= 2) },
    )
    .await;
    let mut protocols: Vec<String> = series
        .iter()
        .filter_map(|s| s["metric"]["protocol"].as_str().map(str::to_owned))
        .collect();
    protocols.sort();
    assert_eq!(protocols, ["h1", "h2"], "{series:?}");
    // A label set from a fixed enum: the engine in use.
    let engine = poll_until("oca_io_engine_info", Duration::from_secs(30), || async {
        query(port, "oca_io_engine_info == 1").filter(|r| !r.is_empty())
    })
    .await;
    let name = engine[0]["metric"]["engine"].as_str().unwrap_or_default();
    assert!(name == "io_uring" || name == "pread", "{engine:?}");
}
