//! The HTTP API (DESIGN §5) on hyper 1 (HTTP/1.1, keep-alive): `GET /v1/steer`,
//! `GET /v1/ocas`, `POST /v1/oca/heartbeat`, `GET /metrics`, `GET /healthz` and
//! `GET /openapi.json`. The phase-2 routes (`POST /v1/playback`, `POST /v1/license`,
//! `GET /v1/recommendations`, `POST /v1/events`) are listed in [`ROUTES`] and the OpenAPI
//! document and answer 501 until `control-plane` is wired in.
//!
//! Errors are JSON `{"error": code, "message": text}` with a 4xx status; bodies are read
//! with a size limit (413 beyond it). The client address is the socket peer, or — only when
//! the peer is a trusted proxy — the right-most `X-Forwarded-For` address that is not one.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use oca_common::ObjectKey;
use oca_common::sites::Sites;
use oca_common::token::{ClientPrefix, KeySet, TokenParams};
use oca_common::wire::{Heartbeat, RankedUrl, RenditionId};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::SteeringError;
use crate::metrics::{
    ApplianceState, DecisionLabels, First, HbLabels, HbOutcome, Metrics, MissLabels, RequestLabels,
    Route, StateLabels,
};
use crate::rank::{self, Kind, Params, Topology};
use crate::registry::{AuthError, Registry, authorize, known_token};

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path.
    pub path: &'static str,
    /// False for phase-2 routes, which answer 501.
    pub served: bool,
    /// Metrics label.
    pub label: Route,
}

const fn r(method: &'static str, path: &'static str, served: bool, label: Route) -> RouteSpec {
    RouteSpec {
        method,
        path,
        served,
        label,
    }
}

/// Every route; the OpenAPI document lists exactly these (a test checks it).
pub const ROUTES: &[RouteSpec] = &[
    r("GET", "/v1/steer", true, Route::Steer),
    r("GET", "/v1/ocas", true, Route::Ocas),
    r("POST", "/v1/oca/heartbeat", true, Route::Heartbeat),
    r("GET", "/metrics", true, Route::Metrics),
    r("GET", "/healthz", true, Route::Healthz),
    r("GET", "/openapi.json", true, Route::OpenApi),
    r("POST", "/v1/playback", false, Route::NotImplemented),
    r("POST", "/v1/license", false, Route::NotImplemented),
    r("GET", "/v1/recommendations", false, Route::NotImplemented),
    r("POST", "/v1/events", false, Route::NotImplemented),
];

/// `GET /v1/steer` answer.
#[derive(Debug, Clone, Serialize)]
pub struct SteerResponse {
    /// Decision id, also in each appliance URL as `?d=`.
    pub decision_id: String,
    /// The rendition.
    pub rendition: String,
    /// The client address the decision was made for.
    pub client: String,
    /// When the signed URLs expire, Unix seconds.
    pub expires_at: u64,
    /// Ranked base URLs, best first; the origin last.
    pub urls: Vec<RankedUrl>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    /// The configuration.
    pub cfg: Config,
    /// Appliances.
    pub registry: Registry,
    /// Metrics.
    pub metrics: Metrics,
    keys: KeySet,
    params: Params,
    instance: u32,
    counter: AtomicU64,
}

/// Read the sites file.
pub fn load_sites(path: &Path) -> Result<Sites, SteeringError> {
    let text = std::fs::read_to_string(path).map_err(|e| SteeringError::Sites {
        file: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    Sites::parse(&text).map_err(|e| SteeringError::Sites {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Read the signing key file.
pub fn load_keys(path: &Path) -> Result<KeySet, SteeringError> {
    let text = std::fs::read_to_string(path).map_err(|e| SteeringError::Keys {
        file: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    KeySet::from_toml(&text).map_err(|e| SteeringError::Keys {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl App {
    /// Loads the sites file and signing keys named by `cfg` (what `check-config` checks).
    pub fn load(cfg: Config) -> Result<App, SteeringError> {
        let sites = load_sites(&cfg.ranking.sites_file)?;
        let keys = load_keys(&cfg.urls.keys_file)?;
        let mut seed = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        Ok(App {
            registry: Registry::new(Topology::from_sites(&sites), cfg.heartbeat.interval),
            metrics: Metrics::new(),
            keys,
            params: Params {
                top_n: cfg.ranking.top_n,
                push_back_permille: cfg.ranking.push_back_percent * 10,
            },
            instance: u32::from_be_bytes(seed),
            counter: AtomicU64::new(0),
            cfg,
        })
    }

    fn decision_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}{n:x}", self.instance)
    }

    /// One steering decision for `client` (the body of `GET /v1/steer`). `Err` is the
    /// status, code and message of a refusal.
    pub fn steer(
        &self,
        client: IpAddr,
        rendition: &RenditionId,
        now: SystemTime,
    ) -> Result<SteerResponse, (StatusCode, &'static str, String)> {
        let t0 = Instant::now();
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let snap = self.registry.snapshot();
        let hash = rank::rendition_hash(rendition.as_str());
        let ranking = rank::rank(&snap, client, rendition, hash, now_ms, &self.params);
        if ranking.candidates.is_empty()
            && !snap.appliances.iter().any(|a| a.holds(rendition, hash))
        {
            return Err((
                StatusCode::NOT_FOUND,
                "unknown_rendition",
                format!("no appliance holds {rendition}"),
            ));
        }
        let expires_at = now_ms / 1000 + self.cfg.urls.expiry.as_secs();
        let id = self.decision_id();
        let mut urls = Vec::with_capacity(ranking.candidates.len() + 1);
        if !ranking.candidates.is_empty() {
            let token = self.sign(client, rendition, expires_at)?;
            for c in &ranking.candidates {
                let a = &snap.appliances[c.slot as usize];
                let Some(base) = &a.url else { continue };
                urls.push(RankedUrl {
                    url: format!("{base}/t/{token}/{rendition}/?d={id}"),
                    oca_id: Some(a.id.clone()),
                    kind: match c.kind {
                        Kind::Local => RankedUrl::LOCAL,
                        Kind::Fallback => RankedUrl::FALLBACK,
                    }
                    .to_string(),
                });
            }
        }
        urls.push(RankedUrl {
            url: format!(
                "{}/{rendition}/",
                self.cfg.ranking.origin_url.trim_end_matches('/')
            ),
            oca_id: None,
            kind: RankedUrl::ORIGIN.to_string(),
        });
        let first = match ranking.candidates.first().map(|c| c.kind) {
            Some(Kind::Local) => First::Local,
            Some(Kind::Fallback) => First::Fallback,
            None => First::Origin,
        };
        let m = &self.metrics;
        m.decisions.get_or_create(&DecisionLabels { first }).inc();
        if let Some(cause) = ranking.miss {
            m.misses
                .get_or_create(&MissLabels {
                    cause: cause.into(),
                })
                .inc();
        }
        m.decision_duration.observe(t0.elapsed().as_secs_f64());
        Ok(SteerResponse {
            decision_id: id,
            rendition: rendition.to_string(),
            client: client.to_string(),
            expires_at,
            urls,
        })
    }

    /// The rendition-scoped token (n = 2) all appliance URLs of a decision share.
    fn sign(
        &self,
        client: IpAddr,
        rendition: &RenditionId,
        exp: u64,
    ) -> Result<String, (StatusCode, &'static str, String)> {
        let internal = |m: String| (StatusCode::INTERNAL_SERVER_ERROR, "signing", m);
        let key = self
            .keys
            .newest()
            .ok_or_else(|| internal("no signing key".into()))?;
        let object = ObjectKey::parse(rendition.as_str()).map_err(|e| internal(e.to_string()))?;
        let client_prefix = if self.cfg.urls.bind_client_prefix {
            let client = crate::trie::canonical(client);
            let len = match client {
                IpAddr::V4(_) => self.cfg.urls.client_prefix_v4,
                IpAddr::V6(_) => self.cfg.urls.client_prefix_v6,
            };
            let net = IpNet::new(client, len)
                .map_err(|e| internal(e.to_string()))?
                .trunc();
            Some(ClientPrefix::new(net.addr(), len).map_err(|e| internal(e.to_string()))?)
        } else {
            None
        };
        let params = TokenParams {
            exp,
            kid: key.kid.clone(),
            n: 2,
            client_prefix,
        };
        oca_common::token::sign(key, &params, &object).map_err(|e| internal(e.to_string()))
    }
}

/// The client address: `peer`, unless `peer` is a trusted proxy and `X-Forwarded-For` is
/// present; then the right-most listed address that is not a trusted proxy (the left-most if
/// all are). An unparsable entry stops the walk at the last good address.
pub fn client_addr(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = crate::trie::canonical(peer);
    let is_trusted = |a: IpAddr| trusted.iter().any(|n| n.contains(&a));
    let Some(xff) = xff else { return peer };
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for part in xff.rsplit(',') {
        let Ok(a) = part.trim().parse::<IpAddr>() else {
            break;
        };
        client = crate::trie::canonical(a);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Value of query parameter `name`, percent-decoded (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            let b = v.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'%' if i + 2 < b.len() => {
                        let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 3;
                    }
                    b'%' => return None,
                    b'+' => {
                        out.push(b' ');
                        i += 1;
                    }
                    c => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            return String::from_utf8(out).ok();
        }
    }
    None
}

type Resp = hyper::Response<Full<Bytes>>;

fn json_resp(status: StatusCode, body: String) -> Resp {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON error response.
pub fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_resp(
        status,
        serde_json::json!({ "error": code, "message": message }).to_string() + "\n",
    )
}

fn ok_json<T: Serialize>(v: &T) -> Resp {
    match serde_json::to_string(v) {
        Ok(s) => json_resp(StatusCode::OK, s + "\n"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "encode", &e.to_string()),
    }
}

/// Reads a body of at most `limit` bytes; 413 beyond it.
async fn read_body(req: hyper::Request<Incoming>, limit: u64) -> Result<Bytes, Resp> {
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the body is larger than {limit} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Err(too_big());
    }
    match Limited::new(req.into_body(), limit as usize)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, "bad_body", &e.to_string())),
    }
}

/// Routes one request.
pub async fn handle(app: Arc<App>, peer: SocketAddr, req: hyper::Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let spec = ROUTES.iter().filter(|r| r.path == path).collect::<Vec<_>>();
    let method = req.method().clone();
    let Some(route) = spec
        .iter()
        .find(|r| r.method == method.as_str() || (r.method == "GET" && method == Method::HEAD))
    else {
        let (label, resp) = if spec.is_empty() {
            (
                Route::Other,
                error(StatusCode::NOT_FOUND, "not_found", "no such path"),
            )
        } else {
            let allow = spec.iter().map(|r| r.method).collect::<Vec<_>>().join(", ");
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &format!("use {allow}"),
            );
            if let Ok(v) = HeaderValue::from_str(&allow) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            (spec[0].label, r)
        };
        count(&app, label, &resp);
        return resp;
    };
    let label = route.label;
    let resp = if !route.served {
        error(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            &format!(
                "{} {} comes with control-plane (phase 2)",
                route.method, route.path
            ),
        )
    } else {
        match label {
            Route::Steer => steer(&app, peer, &req),
            Route::Ocas => ok_json(&app.registry.entries(now_ms())),
            Route::Heartbeat => heartbeat(&app, req).await,
            Route::Metrics => metrics(&app),
            Route::Healthz => {
                let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"ok\n")));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                r
            }
            _ => json_resp(StatusCode::OK, OPENAPI.to_string()),
        }
    };
    count(&app, label, &resp);
    resp
}

fn count(app: &App, route: Route, resp: &Resp) {
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            code: resp.status().as_u16().into(),
        })
        .inc();
}

fn steer(app: &App, peer: SocketAddr, req: &hyper::Request<Incoming>) -> Resp {
    let query = req.uri().query().unwrap_or("");
    let Some(raw) = query_param(query, "rendition") else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_rendition",
            "give ?rendition={title}/{rendition}",
        );
    };
    let rendition = match RenditionId::parse(&raw) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_rendition",
                &format!("rendition must be {{title}}/{{rendition}}: {e}"),
            );
        }
    };
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = client_addr(peer.ip(), xff, &app.cfg.server.trusted_proxies);
    match app.steer(client, &rendition, SystemTime::now()) {
        Ok(s) => ok_json(&s),
        Err((status, code, msg)) => error(status, code, &msg),
    }
}

fn metrics(app: &App) -> Resp {
    let c = app.registry.counts(now_ms());
    for (state, n) in [
        ApplianceState::Up,
        ApplianceState::Degraded,
        ApplianceState::Draining,
        ApplianceState::Stale,
    ]
    .into_iter()
    .zip(c)
    {
        app.metrics
            .appliances
            .get_or_create(&StateLabels { state })
            .set(n as i64);
    }
    let mut r = hyper::Response::new(Full::new(Bytes::from(app.metrics.encode())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn heartbeat(app: &App, req: hyper::Request<Incoming>) -> Resp {
    let hb_count = |outcome| {
        app.metrics
            .heartbeats
            .get_or_create(&HbLabels { outcome })
            .inc()
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let unauthorized = || {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an appliance bearer token is required",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    };
    let forbidden = || {
        error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the bearer token is not this appliance's",
        )
    };
    // Before reading a large body: the token must be some appliance's.
    let Some(token) = bearer.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        hb_count(HbOutcome::Unauthorized);
        return unauthorized();
    };
    if !known_token(&app.cfg.heartbeat.tokens, token) {
        hb_count(HbOutcome::Forbidden);
        return forbidden();
    }
    let body = match read_body(req, app.cfg.server.max_heartbeat_body).await {
        Ok(b) => b,
        Err(r) => {
            hb_count(HbOutcome::Invalid);
            return r;
        }
    };
    let hb: Heartbeat = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            hb_count(HbOutcome::Invalid);
            let msg: String = e.to_string().chars().take(200).collect();
            return error(StatusCode::BAD_REQUEST, "bad_json", &msg);
        }
    };
    match authorize(&app.cfg.heartbeat.tokens, &hb.id, bearer.as_deref()) {
        Ok(()) => {}
        Err(AuthError::Missing) => {
            hb_count(HbOutcome::Unauthorized);
            return unauthorized();
        }
        Err(AuthError::Wrong) => {
            hb_count(HbOutcome::Forbidden);
            return forbidden();
        }
    }
    match app.registry.heartbeat(&hb, now_ms()) {
        Ok((resp, changes)) => {
            if changes.new {
                tracing::info!(id = %hb.id, cluster = %hb.cluster, "appliance registered");
            }
            hb_count(if resp.want_full_inventory {
                HbOutcome::WantFull
            } else {
                HbOutcome::Ok
            });
            ok_json(&resp)
        }
        Err(e) => {
            hb_count(HbOutcome::Invalid);
            error(StatusCode::UNPROCESSABLE_ENTITY, e.code(), &e.to_string())
        }
    }
}

/// A running steering server.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state.
    pub app: Arc<App>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    /// Loads the sites file and keys, binds and serves.
    pub async fn start(cfg: Config) -> Result<Running, SteeringError> {
        let listen = cfg.server.listen;
        let app = Arc::new(App::load(cfg)?);
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SteeringError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SteeringError::Bind {
                addr: listen,
                source,
            })?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tokio::spawn(accept_loop(
            listener,
            app.clone(),
            tracker.clone(),
            cancel.clone(),
        ));
        tracing::info!(%addr, "steering ready");
        Ok(Running {
            addr,
            app,
            cancel,
            tracker,
        })
    }

    /// Stops accepting and waits (bounded) for open connections' requests to finish.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.tracker.wait()).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.cfg.server.header_read_timeout)
        .max_buf_size(64 << 10);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, peer, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// `steering serve`: run until SIGTERM or SIGINT.
pub async fn serve(cfg: Config) -> Result<(), SteeringError> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |k| {
        signal(k).map_err(|source| SteeringError::Io {
            what: "installing signal handlers".into(),
            source,
        })
    };
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let running = Running::start(cfg).await?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_addr(ip("127.0.0.1"), None, &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_addr(ip("127.0.0.1"), Some("203.0.113.7"), &trusted),
            ip("203.0.113.7")
        );
        // The right-most untrusted hop wins; a spoofed left-most entry does not.
        assert_eq!(
            client_addr(
                ip("127.0.0.1"),
                Some("1.1.1.1, 203.0.113.7, 10.1.1.1"),
                &trusted
            ),
            ip("203.0.113.7")
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client_addr(ip("198.51.100.1"), Some("203.0.113.7"), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_addr(ip("127.0.0.1"), Some("2001:db8::5"), &trusted),
            ip("2001:db8::5")
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(
            client_addr(ip("127.0.0.1"), Some("nonsense, 10.2.2.2"), &trusted),
            ip("10.2.2.2")
        );
        assert_eq!(
            client_addr(ip("::ffff:127.0.0.1"), Some("203.0.113.9"), &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("a=1&rendition=movie%2F720p", "rendition").as_deref(),
            Some("movie/720p")
        );
        assert_eq!(
            query_param("rendition=a/b", "rendition").as_deref(),
            Some("a/b")
        );
        assert_eq!(query_param("x=1", "rendition"), None);
        assert_eq!(query_param("rendition=%zz", "rendition"), None);
        assert_eq!(query_param("rendition=%2", "rendition"), None);
        assert_eq!(query_param("rendition=%", "rendition"), None);
        assert_eq!(query_param("rendition=%ff", "rendition"), None);
    }

    /// The OpenAPI document lists exactly the routes of [`ROUTES`], and the unserved ones are
    /// marked so (`x-not-served: true` and a 501 response).
    #[test]
    fn openapi_matches_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut listed = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().unwrap() {
                let m = method.to_uppercase();
                let spec = ROUTES
                    .iter()
                    .find(|r| r.path == path && r.method == m)
                    .unwrap_or_else(|| panic!("{m} {path} is documented but not routed"));
                let not_served = op["x-not-served"].as_bool().unwrap_or(false);
                assert_eq!(not_served, !spec.served, "{m} {path}: x-not-served");
                if !spec.served {
                    assert!(op["responses"]["501"].is_object(), "{m} {path}: 501");
                }
                assert!(op["operationId"].is_string(), "{m} {path}: operationId");
                listed.push((m, path.clone()));
            }
        }
        for r in ROUTES {
            assert!(
                listed.iter().any(|(m, p)| m == r.method && p == r.path),
                "{} {} is routed but not documented",
                r.method,
                r.path
            );
        }
        assert_eq!(listed.len(), ROUTES.len());
    }
}
