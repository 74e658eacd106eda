//! The HTTP API (DESIGN §5) on hyper 1 (HTTP/1.1, keep-alive): `POST /v1/playback`,
//! `GET /v1/steer`, `POST /v1/license`, `GET /v1/recommendations`, `POST /v1/events`,
//! `GET /v1/ocas`, `POST /v1/oca/heartbeat`, `GET /metrics`, `GET /healthz` and
//! `GET /openapi.json` ([`ROUTES`]; the OpenAPI document lists exactly these).
//!
//! The player routes take a control-plane player token (`Authorization: Bearer …`) and call
//! the embedded [`ControlPlane`] on tokio's blocking pool (its calls take a mutex over one
//! SQLite connection), never on an async worker. With `control-plane.enabled = false` they
//! answer 503. Heartbeats carry a control-plane appliance token (`oa1.{id}.{secret}`) or a
//! static token from `heartbeat.tokens`.
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

use arc_swap::ArcSwap;
use bytes::Bytes;
use control_plane::ControlPlane;
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
use oca_common::wire::{Heartbeat, PlaybackRendition, PlaybackResponse, RankedUrl, RenditionId};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::SteeringError;
use crate::metrics::{
    ApplianceState, DecisionLabels, First, HbLabels, HbOutcome, Metrics, MissLabels,
    PlaybackLabels, PlaybackOutcome, PlayerAuth, PlayerAuthLabels, RequestLabels, Route,
    StateLabels,
};
use crate::rank::{self, Kind, Params, Topology};
use crate::registry::{AuthError, Registry, authorize, known_token};
use prometheus_client::metrics::counter::Counter;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path.
    pub path: &'static str,
    /// Metrics label.
    pub label: Route,
}

const fn r(method: &'static str, path: &'static str, label: Route) -> RouteSpec {
    RouteSpec {
        method,
        path,
        label,
    }
}

/// Every route; the OpenAPI document lists exactly these (a test checks it).
pub const ROUTES: &[RouteSpec] = &[
    r("POST", "/v1/playback", Route::Playback),
    r("GET", "/v1/steer", Route::Steer),
    r("POST", "/v1/license", Route::License),
    r("GET", "/v1/recommendations", Route::Recommendations),
    r("POST", "/v1/events", Route::Events),
    r("GET", "/v1/ocas", Route::Ocas),
    r("POST", "/v1/oca/heartbeat", Route::Heartbeat),
    r("GET", "/metrics", Route::Metrics),
    r("GET", "/healthz", Route::Healthz),
    r("GET", "/openapi.json", Route::OpenApi),
];

/// `POST /v1/playback` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybackRequest {
    /// Title id.
    pub title: String,
    /// What the device can play.
    #[serde(default)]
    pub device: Device,
}

/// Device capabilities of a playback request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Tallest video it can show; audio (height 0) always passes.
    #[serde(default)]
    pub max_height: Option<u32>,
    /// Codec families or RFC 6381 strings it decodes (`avc1`, `hvc1.2.4.L153.B0`); empty =
    /// any.
    #[serde(default)]
    pub codecs: Vec<String>,
}

impl Device {
    /// True if the device can play a rendition of this codec and height.
    pub fn supports(&self, codec: &str, height: u32) -> bool {
        let height_ok = height == 0 || self.max_height.is_none_or(|m| height <= m);
        let codec_ok = self.codecs.is_empty()
            || self.codecs.iter().any(|c| {
                codec == c
                    || codec
                        .strip_prefix(c.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            });
        height_ok && codec_ok
    }
}

/// `POST /v1/events` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// View events of the token's user.
    pub events: Vec<EventIn>,
}

/// One view event as a player sends it (the user comes from the token, never the body).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// The rendition played.
    pub rendition: RenditionId,
    /// The client's region.
    pub region: String,
    /// When, Unix seconds; default now.
    #[serde(default)]
    pub at: Option<u64>,
}

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
    /// The embedded control plane (`None` when `control-plane.enabled = false`).
    pub control_plane: Option<Arc<ControlPlane>>,
    keys: ArcSwap<KeySet>,
    params: Params,
    instance: u32,
    counter: AtomicU64,
    /// `steering_decisions_total` per first URL kind (local, fallback, origin), looked up
    /// once so a decision does not hash labels.
    decided: [Counter; 3],
    /// `steering_misses_total` per cause, in [`rank::MissCause::ALL`] order.
    missed: [Counter; 4],
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

/// Opens the control plane of control-plane's config file `path`.
pub fn open_control_plane(path: &Path) -> Result<ControlPlane, SteeringError> {
    let err = |e: control_plane::Error| SteeringError::ControlPlane {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let cfg = control_plane::Config::load(path).map_err(err)?;
    ControlPlane::open(&cfg).map_err(err)
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
    /// Loads the sites file, opens the control plane (its database, migrated, and its
    /// key-encryption key) and loads the signing keys named by `cfg` (what `check-config`
    /// checks).
    pub fn load(cfg: Config) -> Result<App, SteeringError> {
        let sites = load_sites(&cfg.ranking.sites_file)?;
        let cp = if cfg.control_plane.enabled {
            Some(Arc::new(open_control_plane(
                &cfg.control_plane.config_file,
            )?))
        } else {
            None
        };
        let keys = match &cp {
            Some(cp) if cfg.urls.keys_file.as_os_str().is_empty() => {
                cp.signing_keys().map_err(|e| SteeringError::ControlPlane {
                    file: cfg.control_plane.config_file.clone(),
                    message: format!("signing keys: {e}"),
                })?
            }
            _ => load_keys(&cfg.urls.keys_file)?,
        };
        let mut metrics = Metrics::new();
        if let Some(cp) = &cp {
            cp.register_metrics(metrics.registry_mut());
        }
        let mut seed = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        let decided = [First::Local, First::Fallback, First::Origin].map(|first| {
            metrics
                .decisions
                .get_or_create(&DecisionLabels { first })
                .clone()
        });
        let missed = rank::MissCause::ALL.map(|c| {
            metrics
                .misses
                .get_or_create(&MissLabels { cause: c.into() })
                .clone()
        });
        Ok(App {
            decided,
            missed,
            registry: Registry::new(Topology::from_sites(&sites), cfg.heartbeat.interval),
            metrics,
            control_plane: cp,
            keys: ArcSwap::from_pointee(keys),
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
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let snap = self.registry.snapshot();
        let id = self.decision_id();
        let expires_at = now_ms / 1000 + self.cfg.urls.expiry.as_secs();
        let urls = self.ranked_urls(&snap, client, rendition, now_ms, expires_at, &id, true)?;
        Ok(SteerResponse {
            decision_id: id,
            rendition: rendition.to_string(),
            client: client.to_string(),
            expires_at,
            urls,
        })
    }

    /// The body of `POST /v1/playback` for renditions the caller already checked (entitled
    /// and playable on the device): one decision id, each rendition ranked and signed like
    /// `GET /v1/steer` (a rendition no appliance holds gets the origin only).
    pub fn playback(
        &self,
        client: IpAddr,
        title: &str,
        renditions: &[control_plane::EntitledRendition],
        now: SystemTime,
    ) -> Result<PlaybackResponse, (StatusCode, &'static str, String)> {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let snap = self.registry.snapshot();
        let id = self.decision_id();
        let expires_at = now_ms / 1000 + self.cfg.urls.expiry.as_secs();
        let mut out = Vec::with_capacity(renditions.len());
        for e in renditions {
            let urls = self.ranked_urls(&snap, client, &e.id, now_ms, expires_at, &id, false)?;
            out.push(PlaybackRendition {
                rendition: e.id.clone(),
                codec: e.rendition.codec.clone(),
                width: e.rendition.width,
                height: e.rendition.height,
                bitrate_kbps: e.rendition.bitrate_kbps,
                urls,
            });
        }
        Ok(PlaybackResponse {
            title: title.to_owned(),
            decision_id: id,
            expires_at,
            license_url: Some(self.cfg.urls.license_url.clone()),
            renditions: out,
        })
    }

    /// Ranks, signs and counts one rendition's URLs (origin last). With `require_held`, a
    /// rendition no appliance holds is 404 `unknown_rendition`.
    #[allow(clippy::too_many_arguments)]
    fn ranked_urls(
        &self,
        snap: &rank::Snapshot,
        client: IpAddr,
        rendition: &RenditionId,
        now_ms: u64,
        expires_at: u64,
        id: &str,
        require_held: bool,
    ) -> Result<Vec<RankedUrl>, (StatusCode, &'static str, String)> {
        let t0 = Instant::now();
        let hash = rank::rendition_hash(rendition.as_str());
        let ranking = rank::rank(snap, client, hash, now_ms, &self.params);
        if require_held
            && ranking.candidates.is_empty()
            && !snap.appliances.iter().any(|a| a.holds(rendition, hash))
        {
            return Err((
                StatusCode::NOT_FOUND,
                "unknown_rendition",
                format!("no appliance holds {rendition}"),
            ));
        }
        let mut urls = Vec::with_capacity(ranking.candidates.len() + 1);
        if !ranking.candidates.is_empty() {
            let token = self.sign(client, rendition, expires_at)?;
            for c in &ranking.candidates {
                let a = &snap.appliances[c.slot as usize];
                let Some(base) = &a.url else { continue };
                // `{base}/t/{token}/{rendition}/?d={id}`, without the formatting machinery.
                let r = rendition.as_str();
                let mut url =
                    String::with_capacity(base.len() + token.len() + r.len() + id.len() + 8);
                for part in [base.as_str(), "/t/", &token, "/", r, "/?d=", id] {
                    url.push_str(part);
                }
                urls.push(RankedUrl {
                    url,
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
            Some(Kind::Local) => 0,
            Some(Kind::Fallback) => 1,
            None => 2,
        };
        self.decided[first].inc();
        if let Some(cause) = ranking.miss
            && let Some(i) = rank::MissCause::ALL.iter().position(|c| *c == cause)
        {
            self.missed[i].inc();
        }
        self.metrics
            .decision_duration
            .observe(t0.elapsed().as_secs_f64());
        Ok(urls)
    }

    /// The rendition-scoped token (n = 2) all appliance URLs of a decision share.
    fn sign(
        &self,
        client: IpAddr,
        rendition: &RenditionId,
        exp: u64,
    ) -> Result<String, (StatusCode, &'static str, String)> {
        let internal = |m: String| (StatusCode::INTERNAL_SERVER_ERROR, "signing", m);
        let keys = self.keys.load();
        let key = keys
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
        keys.sign(&params, &object)
            .map_err(|e| internal(e.to_string()))
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
    // One buffer, sized for a typical answer, so encoding seldom reallocates.
    let mut buf = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut buf, v) {
        Ok(()) => {
            buf.push(b'\n');
            let mut r = hyper::Response::new(Full::new(Bytes::from(buf)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
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
    let path = req.uri().path();
    let method = req.method();
    let found = ROUTES.iter().find(|r| {
        r.path == path
            && (r.method == method.as_str() || (r.method == "GET" && method == Method::HEAD))
    });
    let Some(route) = found else {
        let spec = ROUTES.iter().filter(|r| r.path == path).collect::<Vec<_>>();
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
    let resp = match label {
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
        Route::Playback => playback(&app, peer, req).await,
        Route::License => license(&app, req).await,
        Route::Recommendations => recommendations(&app, req).await,
        Route::Events => events(&app, req).await,
        _ => json_resp(StatusCode::OK, OPENAPI.to_string()),
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

fn now_secs() -> u64 {
    now_ms() / 1000
}

fn bearer(req: &hyper::Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn unauthorized(code: &str, message: &str) -> Resp {
    let mut r = error(StatusCode::UNAUTHORIZED, code, message);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The JSON error answer of a control-plane error: its status and code (a refused player
/// token is 401 with a `WWW-Authenticate` header).
fn cp_error(e: &control_plane::Error) -> Resp {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::UNAUTHORIZED {
        return unauthorized(e.code(), &e.to_string());
    }
    if status.is_server_error() {
        tracing::error!(error = %e, "control-plane call failed");
    }
    error(status, e.code(), &e.to_string())
}

fn disabled() -> Resp {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "control_plane_disabled",
        "this steering instance runs without a control plane (control-plane.enabled = false)",
    )
}

/// Runs `f` on the control plane on tokio's blocking pool (SQLite calls block). 503 when the
/// control plane is disabled; the control plane's errors are returned as they are.
async fn with_cp<T, F>(app: &App, f: F) -> Result<control_plane::Result<T>, Resp>
where
    T: Send + 'static,
    F: FnOnce(&ControlPlane) -> control_plane::Result<T> + Send + 'static,
{
    let Some(cp) = app.control_plane.clone() else {
        return Err(disabled());
    };
    let t0 = Instant::now();
    let r = tokio::task::spawn_blocking(move || f(&cp)).await;
    app.metrics
        .control_plane_duration
        .observe(t0.elapsed().as_secs_f64());
    r.map_err(|e| {
        tracing::error!(error = %e, "control-plane task failed");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "control-plane call failed",
        )
    })
}

/// Checks the player bearer token; returns it with its claims, or the 401/503 answer.
async fn player(
    app: &App,
    req: &hyper::Request<Incoming>,
) -> Result<(String, control_plane::PlayerClaims), Resp> {
    let count = |outcome| {
        app.metrics
            .player_auth
            .get_or_create(&PlayerAuthLabels { outcome })
            .inc()
    };
    if app.control_plane.is_none() {
        return Err(disabled());
    }
    let Some(token) = bearer(req) else {
        count(PlayerAuth::Missing);
        return Err(unauthorized(
            "unauthorized",
            "a player bearer token is required (Authorization: Bearer …)",
        ));
    };
    let t = token.clone();
    let now = now_secs();
    match with_cp(app, move |cp| cp.verify_player_token(&t, now)).await? {
        Ok(claims) => {
            count(PlayerAuth::Ok);
            Ok((token, claims))
        }
        Err(e) => {
            if let control_plane::Error::PlayerToken(r) = &e {
                count(match r {
                    control_plane::TokenRejection::Malformed => PlayerAuth::Malformed,
                    control_plane::TokenRejection::Expired => PlayerAuth::Expired,
                    control_plane::TokenRejection::BadSignature => PlayerAuth::BadSignature,
                    control_plane::TokenRejection::Revoked => PlayerAuth::Revoked,
                });
            }
            Err(cp_error(&e))
        }
    }
}

fn bad_json(e: &serde_json::Error) -> Resp {
    let msg: String = e.to_string().chars().take(200).collect();
    error(StatusCode::BAD_REQUEST, "bad_json", &msg)
}

fn valid_segment(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn playback(app: &Arc<App>, peer: SocketAddr, req: hyper::Request<Incoming>) -> Resp {
    let outcome = |o| {
        app.metrics
            .playbacks
            .get_or_create(&PlaybackLabels { outcome: o })
            .inc()
    };
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let client = client_addr(peer.ip(), xff.as_deref(), &app.cfg.server.trusted_proxies);
    let (_, claims) = match player(app, &req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(req, app.cfg.server.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let pr: PlaybackRequest = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad_json(&e),
    };
    if !valid_segment(&pr.title) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_title",
            "title must be 1-128 characters of [A-Za-z0-9._-]",
        );
    }
    let title = pr.title.clone();
    let entitled = match with_cp(app, move |cp| cp.entitled_renditions(&claims, &title)).await {
        Ok(Ok(v)) => v,
        Ok(Err(control_plane::Error::NotFound { what: "title", id })) => {
            outcome(PlaybackOutcome::UnknownTitle);
            return error(
                StatusCode::NOT_FOUND,
                "unknown_title",
                &format!("title {id:?} is not in the catalog"),
            );
        }
        Ok(Err(e)) => {
            outcome(PlaybackOutcome::Error);
            return cp_error(&e);
        }
        Err(r) => return r,
    };
    if entitled.is_empty() {
        outcome(PlaybackOutcome::NotEntitled);
        return error(
            StatusCode::FORBIDDEN,
            "not_entitled",
            &format!("the plan allows no rendition of {:?}", pr.title),
        );
    }
    let playable: Vec<_> = entitled
        .into_iter()
        .filter(|e| pr.device.supports(&e.rendition.codec, e.rendition.height))
        .collect();
    if playable.is_empty() {
        outcome(PlaybackOutcome::NoPlayable);
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_playable_rendition",
            "no rendition the plan allows fits the device's max_height and codecs",
        );
    }
    match app.playback(client, &pr.title, &playable, SystemTime::now()) {
        Ok(p) => {
            outcome(PlaybackOutcome::Ok);
            let mut r = ok_json(&p);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err((status, code, msg)) => {
            outcome(PlaybackOutcome::Error);
            error(status, code, &msg)
        }
    }
}

async fn license(app: &Arc<App>, req: hyper::Request<Incoming>) -> Resp {
    // The token is checked (and counted) before the body is read.
    let (token, _) = match player(app, &req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(req, app.cfg.server.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let now = now_secs();
    match with_cp(app, move |cp| cp.license(&token, &body, now)).await {
        Ok(Ok(l)) => {
            let mut r = ok_json(&l.response);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Ok(Err(e)) => cp_error(&e),
        Err(r) => r,
    }
}

fn valid_region(r: &str) -> bool {
    (1..=32).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn recommendations(app: &Arc<App>, req: hyper::Request<Incoming>) -> Resp {
    let (_, claims) = match player(app, &req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(region) = query_param(req.uri().query().unwrap_or(""), "region") else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing_region",
            "give ?region= (e.g. NL)",
        );
    };
    if !valid_region(&region) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_region",
            "region must be 1-32 characters of [A-Za-z0-9_-]",
        );
    }
    let now = now_secs();
    match with_cp(app, move |cp| {
        cp.recommendations(&claims.user, &region, now)
    })
    .await
    {
        Ok(Ok(r)) => ok_json(&r),
        Ok(Err(e)) => cp_error(&e),
        Err(r) => r,
    }
}

async fn events(app: &Arc<App>, req: hyper::Request<Incoming>) -> Resp {
    let (_, claims) = match player(app, &req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(req, app.cfg.server.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let er: EventsRequest = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return bad_json(&e),
    };
    let max = app.cfg.control_plane.max_events;
    if er.events.len() > max {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            &format!("{} events; at most {max} per request", er.events.len()),
        );
    }
    let now = now_secs();
    let oldest = now.saturating_sub(app.cfg.control_plane.max_event_age.as_secs());
    let mut list = Vec::with_capacity(er.events.len());
    for (i, e) in er.events.into_iter().enumerate() {
        let at = e.at.unwrap_or(now);
        if at > now + 60 || at < oldest {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_event",
                &format!(
                    "events[{i}].at is in the future or older than control-plane.max-event-age"
                ),
            );
        }
        if !valid_region(&e.region) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_event",
                &format!("events[{i}].region must be 1-32 characters of [A-Za-z0-9_-]"),
            );
        }
        list.push(control_plane::ViewEvent {
            at,
            user: claims.user.clone(),
            rendition: e.rendition,
            region: e.region,
        });
    }
    let n = list.len();
    match with_cp(app, move |cp| cp.record_views(&list)).await {
        Ok(Ok(())) => {
            app.metrics.events.inc_by(n as u64);
            ok_json(&serde_json::json!({ "recorded": n }))
        }
        Ok(Err(e)) => cp_error(&e),
        Err(r) => r,
    }
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

async fn heartbeat(app: &Arc<App>, req: hyper::Request<Incoming>) -> Resp {
    let hb_count = |outcome| {
        app.metrics
            .heartbeats
            .get_or_create(&HbLabels { outcome })
            .inc()
    };
    let no_token = || unauthorized("unauthorized", "an appliance bearer token is required");
    let forbidden = || {
        error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the bearer token is not this appliance's",
        )
    };
    // Before reading a large body: the token must be some appliance's. A control-plane
    // token (`oa1.{id}.{secret}`) names its appliance; a static one is checked against every
    // configured hash, and against the heartbeat's id once the body is read.
    let Some(token) = bearer(&req) else {
        hb_count(HbOutcome::Unauthorized);
        return no_token();
    };
    let mut cp_id = None;
    if token.starts_with("oa1.") && app.control_plane.is_some() {
        let t = token.clone();
        match with_cp(app, move |cp| cp.verify_appliance_token(&t)).await {
            Ok(Ok(id)) => cp_id = Some(id),
            Ok(Err(control_plane::Error::ApplianceToken)) => {
                hb_count(HbOutcome::Forbidden);
                return forbidden();
            }
            Ok(Err(e)) => return cp_error(&e),
            Err(r) => return r,
        }
    } else if !known_token(&app.cfg.heartbeat.tokens, &token) {
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
            return bad_json(&e);
        }
    };
    let auth = match &cp_id {
        Some(id) if *id == hb.id => Ok(()),
        Some(_) => Err(AuthError::Wrong),
        None => authorize(&app.cfg.heartbeat.tokens, &hb.id, Some(&token)),
    };
    match auth {
        Ok(()) => {}
        Err(AuthError::Missing) => {
            hb_count(HbOutcome::Unauthorized);
            return no_token();
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
        if app.control_plane.is_some() && app.cfg.urls.keys_file.as_os_str().is_empty() {
            tokio::spawn(refresh_keys(app.clone(), cancel.clone()));
        }
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

/// Re-reads the control plane's live signing keys every `urls.keys-refresh`, so a rotation
/// reaches the URLs steering signs without a restart.
async fn refresh_keys(app: Arc<App>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(app.cfg.urls.keys_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match with_cp(&app, |cp| cp.signing_keys()).await {
            Ok(Ok(keys)) if !keys.is_empty() => app.keys.store(Arc::new(keys)),
            Ok(Ok(_)) => tracing::warn!("the control plane has no live signing key"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot re-read signing keys"),
            Err(_) => {}
        }
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
    // systemd Type=notify (steering.service); no-ops without NOTIFY_SOCKET.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        // WATCHDOG=1 at half of WatchdogSec from a runtime task: a wedged runtime stops the
        // pings and systemd restarts the service.
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every / 2);
            loop {
                t.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
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

    /// The OpenAPI document lists exactly the routes of [`ROUTES`]; each operation has an id
    /// and a 200 answer, and the player routes document their 401.
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
                assert!(op["responses"]["200"].is_object(), "{m} {path}: 200");
                if matches!(
                    spec.label,
                    Route::Playback | Route::License | Route::Recommendations | Route::Events
                ) {
                    assert!(op["responses"]["401"].is_object(), "{m} {path}: 401");
                    assert!(op["security"].is_array(), "{m} {path}: security");
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
