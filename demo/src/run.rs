//! Starts the parts, fills the appliances, plays the player's part, prints what to try.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::DemoError;
use crate::prepare::{Prepared, RENDITIONS, TITLE, prepare, segment_bytes};

/// How long the demo waits for anything to happen (registration, a fill, an answer).
const PATIENCE: Duration = Duration::from_secs(60);

/// An HTTP answer.
pub(crate) struct Resp {
    pub status: u16,
    pub body: Bytes,
}

/// One HTTP/1.1 request to `127.0.0.1:port`, over TLS when `tls` is given.
pub(crate) async fn request(
    port: u16,
    tls: Option<&tokio_rustls::TlsConnector>,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Resp, String> {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to port {port}: {e}"))?;
        let mut b = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", format!("localhost:{port}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = match tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .map_err(|e| e.to_string())?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                tx.send_request(req).await.map_err(|e| e.to_string())?
            }
            None => {
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                tx.send_request(req).await.map_err(|e| e.to_string())?
            }
        };
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Resp { status, body })
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .map_err(|_| format!("{method} {path_and_query}: no answer within 20s"))?
}

/// A TLS client that trusts the demo's self-signed certificate.
fn tls_client(cert: &Path) -> Result<tokio_rustls::TlsConnector, DemoError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert)
        .map_err(|e| DemoError::Setup(format!("reading {}: {e}", cert.display())))?
    {
        let c = c.map_err(|e| DemoError::Setup(format!("reading {}: {e}", cert.display())))?;
        roots
            .add(c)
            .map_err(|e| DemoError::Setup(format!("trusting {}: {e}", cert.display())))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DemoError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// Polls `check` every 100 ms until it gives `Some`, at most [`PATIENCE`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T, DemoError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if t0.elapsed() > PATIENCE {
            return Err(DemoError::Setup(format!(
                "gave up waiting {}s for {what}",
                PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the demo in `dir`; with `once`, returns after the player's part.
pub async fn run(dir: &Path, once: bool) -> Result<(), DemoError> {
    let p = tokio::task::spawn_blocking({
        let dir = dir.to_path_buf();
        move || prepare(&dir)
    })
    .await
    .map_err(|e| DemoError::Setup(e.to_string()))??;
    println!("oca-demo: files in {}", p.dir.display());

    let steering_cfg = steering::config::Config::load(&p.steering_config)?;
    let steering = steering::api::Running::start(steering_cfg).await?;
    let mut appliances = Vec::new();
    for path in &p.appliance_configs {
        let cfg = oca::config::Config::load(path)?;
        appliances.push(oca::app::Running::start(cfg).await?);
    }
    println!(
        "oca-demo: steering on 127.0.0.1:{}, appliances {} (ISP cluster) and {} (IXP)",
        p.steering_port, p.appliance_ids[0], p.appliance_ids[1]
    );
    let sp = p.steering_port;
    wait_for("both appliances to register with steering", || async move {
        let r = request(sp, None, "GET", "/v1/ocas", &[], Vec::new())
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let n = v.as_array().map_or(0, |a| {
            a.iter()
                .filter(|o| o["state"].as_str() == Some("up"))
                .count()
        });
        (n == 2).then_some(())
    })
    .await?;

    fill(&p).await?;

    let tls = tls_client(&p.cert)?;
    let report = player(&p, &tls).await;
    match &report {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("oca-demo: the player's part failed: {e}"),
    }
    if !once {
        println!("{}", instructions(&p));
        println!("oca-demo: serving; Ctrl-C stops.");
        let _ = tokio::signal::ctrl_c().await;
    }
    for a in appliances {
        a.drain().await;
    }
    steering.stop().await;
    report.map(|_| ())
}

/// The fill: the fill controller plans from the catalog, tomorrow's forecast and the
/// appliances' inventories, then pulls from the origin directory into both appliances now
/// (a real night would wait for each site's window).
async fn fill(p: &Prepared) -> Result<(), DemoError> {
    let cfg = fill_controller::config::Config::load(&p.fill_config)?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = fill_controller::metrics::Metrics::register(&mut registry);
    let (saved, report) = fill_controller::nightly::plan_and_run_now(&cfg, metrics).await?;
    println!(
        "oca-demo: fill plan {}: {} fill(s), {} deletion(s); done:",
        saved.id,
        saved.plan.fills.len(),
        saved.plan.deletes.len()
    );
    for (id, r) in &report {
        let filled: Vec<String> = r.filled.iter().map(|x| x.to_string()).collect();
        println!(
            "  {id}: {} bytes, filled [{}]{}",
            r.bytes,
            filled.join(", "),
            if r.failed.is_empty() {
                String::new()
            } else {
                format!(", FAILED {:?}", r.failed)
            }
        );
        if !r.failed.is_empty() {
            return Err(DemoError::Setup(format!(
                "the fill of {id} failed: {:?}",
                r.failed
            )));
        }
    }
    Ok(())
}

/// The player: asks steering for a playback (bearer token), fetches a segment from the first
/// URL over HTTPS, checks its bytes against the origin's.
async fn player(p: &Prepared, tls: &tokio_rustls::TlsConnector) -> Result<String, DemoError> {
    let (rendition, _, _, _, _, seg_bytes) = RENDITIONS[0];
    let (user, plan, token) = p.players[0].clone();
    let sp = p.steering_port;
    let auth = format!("Bearer {token}");
    let body = format!(r#"{{"title": "{TITLE}"}}"#).into_bytes();
    // Steering offers an appliance once its heartbeat has told it the rendition is held:
    // wait until both filled appliances are offered.
    let answer: oca_common::wire::PlaybackResponse =
        wait_for("steering to offer both appliances", || {
            let auth = auth.clone();
            let body = body.clone();
            async move {
                let r = request(
                    sp,
                    None,
                    "POST",
                    "/v1/playback",
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    body,
                )
                .await
                .ok()?;
                let v: oca_common::wire::PlaybackResponse = serde_json::from_slice(&r.body).ok()?;
                let offered = v
                    .renditions
                    .iter()
                    .find(|x| x.rendition.rendition() == rendition)?
                    .urls
                    .iter()
                    .filter(|u| u.oca_id.is_some())
                    .count()
                    == 2;
                offered.then_some(v)
            }
        })
        .await?;
    let chosen = answer
        .renditions
        .iter()
        .find(|x| x.rendition.rendition() == rendition)
        .ok_or_else(|| DemoError::Player(format!("no {rendition} in the playback answer")))?;
    let first = &chosen.urls[0];
    let url = url_for(&first.url, "seg-00001.m4s");
    let (port, path) =
        split_url(&url).ok_or_else(|| DemoError::Player(format!("odd URL {url}")))?;
    let r = request(port, Some(tls), "GET", &path, &[], Vec::new())
        .await
        .map_err(DemoError::Player)?;
    let want = segment_bytes(1000 + 1, seg_bytes);
    if r.status != 200 || r.body.as_ref() != want.as_slice() {
        return Err(DemoError::Player(format!(
            "GET {url}: status {}, {} bytes (want 200 and {} known bytes)",
            r.status,
            r.body.len(),
            want.len()
        )));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "oca-demo: playback for {user} (plan {plan}) of {TITLE}: {} rendition(s), decision {}",
        answer.renditions.len(),
        answer.decision_id
    );
    for x in &answer.renditions {
        let _ = writeln!(out, "  {} ({}p):", x.rendition, x.height);
        for u in &x.urls {
            let who = u.oca_id.as_deref().unwrap_or("origin");
            let _ = writeln!(out, "    {:<8} {:<9} {}", who, u.kind, u.url);
        }
    }
    let _ = writeln!(
        out,
        "oca-demo: fetched {TITLE}/{rendition}/seg-00001.m4s ({} bytes) from {} over HTTPS: bytes match the origin.",
        r.body.len(),
        first.oca_id.as_deref().unwrap_or("the origin")
    );
    Ok(out)
}

/// The URL of `file` under a signed base URL `base` (`https://host/t/r/?token` style).
fn url_for(base: &str, file: &str) -> String {
    match base.split_once('?') {
        Some((path, q)) => format!("{}{file}?{q}", path.trim_end_matches(file)),
        None => format!("{base}{file}"),
    }
}

/// `https://localhost:PORT/path?q` → (PORT, "/path?q").
fn split_url(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("https://")?;
    let (host, path) = rest.split_at(rest.find('/')?);
    let port = host.rsplit_once(':')?.1.parse().ok()?;
    Some((port, path.to_string()))
}

/// The commands to try by hand.
fn instructions(p: &Prepared) -> String {
    let mut out = String::new();
    let sp = p.steering_port;
    let _ = writeln!(out, "\n# Ask steering where to play {TITLE}/1080p from:");
    let _ = writeln!(
        out,
        "curl -s 'http://127.0.0.1:{sp}/v1/steer?rendition={TITLE}/1080p'"
    );
    let _ = writeln!(out, "\n# The appliances steering knows:");
    let _ = writeln!(out, "curl -s http://127.0.0.1:{sp}/v1/ocas");
    for (id, ports) in p.appliance_ids.iter().zip(&p.appliance_ports) {
        let _ = writeln!(out, "\n# {id}'s metrics and inventory:");
        let _ = writeln!(
            out,
            "curl -s -H 'Authorization: Bearer {}' http://127.0.0.1:{}/metrics | grep -E '^oca_(storage|ingest)'",
            p.admin_token, ports.admin
        );
        let _ = writeln!(
            out,
            "curl -s -H 'Authorization: Bearer {}' 'http://127.0.0.1:{}/v1/inventory?since=0'",
            p.admin_token, ports.admin
        );
    }
    out
}
