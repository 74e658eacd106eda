//! The one request handler every protocol calls. It takes a request head and returns a
//! [`Plan`]: status, headers and where the body comes from. The protocol front ends (hyper for
//! h1/h2 over TLS, the sendfile responder on the plain port) only move bytes, so ranges,
//! tokens, CORS and errors behave the same everywhere.
//!
//! Checks run in the order of DESIGN §3: path and key syntax (400), method (405), token syntax,
//! known kid, expiry, signature, client prefix (403), then the object (404).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use oca_common::ObjectKey;
use oca_common::token::{self, KeySet};
use oca_storage::{IoEngine, ObjectData, ObjectStore};

use crate::config::Config;
use crate::http::conditional::{self, Conditions, Precondition};
use crate::http::range::{self, RangeDecision};
use crate::metrics::{Metrics, Proto, ReasonLabels, TierLabel, TokenReason};

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub keys: ArcSwap<KeySet>,
    pub store: Arc<dyn ObjectStore>,
    /// The same store with its ingest, inventory and drive API.
    pub tiered: Arc<oca_storage::TieredStore>,
    pub engine: Arc<dyn IoEngine>,
    pub files: crate::files::OpenFiles,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    pub open_connections: AtomicU64,
    pub started_at: SystemTime,
}

/// A request head as the handler needs it, whatever protocol carried it.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// Path and query, undecoded (origin-form).
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    pub client: IpAddr,
    pub proto: Proto,
}

/// Where a response body comes from.
#[derive(Debug)]
pub enum PlanBody {
    /// No body (HEAD, 204, 304; also the body of a HEAD answered 200/206).
    Empty,
    /// Bytes in memory: an error document, or a slice of a RAM-tier object.
    Bytes(Bytes),
    /// A byte range of an object file, read through the I/O engine (or sendfile).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

/// A response decided but not yet sent.
#[derive(Debug)]
pub struct Plan {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: PlanBody,
    /// The tier the bytes come from (for metrics and the access log).
    pub tier: TierLabel,
    /// The object key, when the path had a valid one.
    pub key: Option<ObjectKey>,
    /// Steering's decision id (`?d=`), when present and well formed.
    pub decision: Option<String>,
    /// The range served, for the access log.
    pub range: Option<(u64, u64)>,
    /// Why the request failed, for the log (never contains a secret).
    pub reason: Option<&'static str>,
}

const CACHE_IMMUTABLE: HeaderValue =
    HeaderValue::from_static("public, max-age=31536000, immutable");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const ALLOW: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
const CORS_EXPOSE: HeaderValue =
    HeaderValue::from_static("Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified");
const CORS_ALLOW_HEADERS: HeaderValue =
    HeaderValue::from_static("Range, If-Range, If-None-Match, If-Modified-Since, If-Match");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const BYTES: HeaderValue = HeaderValue::from_static("bytes");
const STAR: HeaderValue = HeaderValue::from_static("*");

enum Route<'a> {
    Signed { token: &'a str, key: ObjectKey },
    Unsigned { key: ObjectKey },
}

/// A request that fails before reaching the object.
#[derive(Debug, Clone, Copy)]
pub struct Reject {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
}

impl Reject {
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Reject {
        Reject {
            status,
            code,
            message,
        }
    }
}

/// What every front end does with a request head: decide the response, then count it in the
/// metrics and the access log (time to the response head included).
pub fn handle(shared: &Shared, req: &Request<'_>) -> Plan {
    let t0 = std::time::Instant::now();
    let plan = plan(shared, req, SystemTime::now());
    let dt = t0.elapsed();
    shared.record(req.proto, &plan, dt);
    if shared.config.log.access_log {
        access_log(req, &plan, body_len(&plan.body), dt);
    }
    plan
}

/// Decide the response to one request. No I/O: the store lookup is an in-memory index.
pub fn plan(shared: &Shared, req: &Request<'_>, now: SystemTime) -> Plan {
    let cfg = &shared.config;
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.target, None),
    };
    let decision = query.and_then(decision_id);
    if head_size(req) > cfg.limits.max_header_bytes {
        return reject(
            Reject::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
                "request head larger than max-header-bytes",
            ),
            None,
            decision,
        );
    }
    if req.target.len() > cfg.limits.max_url_bytes {
        return reject(
            Reject::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "request target too long",
            ),
            None,
            decision,
        );
    }
    let route = match parse_path(path, cfg.server.require_token) {
        Ok(r) => r,
        Err(r) => return reject(r, None, decision),
    };
    let key = match &route {
        Route::Signed { key, .. } | Route::Unsigned { key } => key.clone(),
    };

    // Method (405), after path syntax. OPTIONS is the CORS preflight: answered without a
    // token because browsers send preflights without credentials.
    match *req.method {
        Method::GET | Method::HEAD => {}
        Method::OPTIONS => return preflight(key, decision),
        _ => {
            let mut p = reject(
                Reject::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "only GET, HEAD and OPTIONS are allowed",
                ),
                Some(key),
                decision,
            );
            p.headers.insert(header::ALLOW, ALLOW);
            return p;
        }
    }

    if let Route::Signed { token, .. } = route {
        let keys = shared.keys.load();
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if let Err(e) = token::verify(
            token,
            &key,
            &keys,
            req.client,
            now_secs,
            cfg.tokens.clock_skew.as_secs(),
        ) {
            let reason = TokenReason::from(&e);
            shared
                .metrics
                .token_rejections
                .get_or_create(&ReasonLabels { reason })
                .inc();
            let mut p = reject(
                Reject::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the signed URL is not valid here",
                ),
                Some(key),
                decision,
            );
            p.reason = Some(e.reason());
            return p;
        }
    }

    let Some(obj) = shared.store.lookup(&key) else {
        return reject(
            Reject::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this appliance does not hold the object",
            ),
            Some(key),
            decision,
        );
    };
    let meta = &obj.meta;
    let etag = format!("\"{}\"", meta.etag);
    let mut headers = HeaderMap::with_capacity(12);
    headers.insert(header::CACHE_CONTROL, CACHE_IMMUTABLE);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&conditional::format_date(meta.last_modified)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    headers.insert(header::ACCEPT_RANGES, BYTES);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE);

    let h = |name: HeaderName| req.headers.get(name).map(HeaderValue::as_bytes);
    let conds = Conditions {
        if_match: h(header::IF_MATCH),
        if_none_match: h(header::IF_NONE_MATCH),
        if_modified_since: h(header::IF_MODIFIED_SINCE),
        if_unmodified_since: h(header::IF_UNMODIFIED_SINCE),
        if_range: h(header::IF_RANGE),
    };
    let tier = TierLabel::from(meta.tier);
    let base = |status, headers, body, range| Plan {
        status,
        headers,
        body,
        tier,
        key: Some(key.clone()),
        decision: decision.clone(),
        range,
        reason: None,
    };
    match conditional::evaluate(&conds, &etag, meta.last_modified) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            return base(StatusCode::NOT_MODIFIED, headers, PlanBody::Empty, None);
        }
        Precondition::Failed => {
            let mut p = reject(
                Reject::new(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition_failed",
                    "a precondition did not hold",
                ),
                Some(key.clone()),
                decision.clone(),
            );
            p.headers.extend(headers);
            p.headers.insert(header::CONTENT_TYPE, JSON);
            return p;
        }
    }

    let total = meta.size;
    // RFC 9110 §14.2: range handling is defined for GET only.
    let range_header = if req.method == Method::GET
        && conditional::if_range_allows(conds.if_range, &etag, meta.last_modified)
    {
        h(header::RANGE)
    } else {
        None
    };
    let (status, start, len) = match range::decide(range_header, total) {
        RangeDecision::Full => (StatusCode::OK, 0, total),
        RangeDecision::Partial { start, len } => {
            let v = format!("bytes {}-{}/{}", start, start + len - 1, total);
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, len)
        }
        RangeDecision::Unsatisfiable => {
            let mut p = reject(
                Reject::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    "the range is outside the object",
                ),
                Some(key.clone()),
                decision.clone(),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                p.headers.insert(header::CONTENT_RANGE, v);
            }
            p.headers.insert(header::ACCEPT_RANGES, BYTES);
            return p;
        }
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(oca_common::key::content_type_for(&key)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = if req.method == Method::HEAD || len == 0 {
        PlanBody::Empty
    } else {
        match &obj.data {
            // On the plain port every object goes by sendfile from the page cache: on TCP
            // that hands page references to the socket, cheaper than writing from RAM
            // (benches/README.md: 1.09x vs 0.76x nginx's CPU per GB).
            _ if req.proto == Proto::H1Plain => PlanBody::File {
                path: obj.path.clone(),
                offset: start,
                len,
            },
            ObjectData::Ram(bytes) => {
                // Zero-copy: a slice of the locked RAM-tier region.
                let (s, e) = (start as usize, (start + len) as usize);
                match bytes.get(s..e) {
                    Some(_) => PlanBody::Bytes(bytes.slice(s..e)),
                    None => {
                        return reject(
                            Reject::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "internal",
                                "object index and data disagree",
                            ),
                            Some(key.clone()),
                            decision.clone(),
                        );
                    }
                }
            }
            ObjectData::File(path) => PlanBody::File {
                path: path.clone(),
                offset: start,
                len,
            },
        }
    };
    let range = (status == StatusCode::PARTIAL_CONTENT).then_some((start, len));
    base(status, headers, body, range)
}

/// Size of a request head as HTTP/1.1 would carry it: the protocol parsers bound their
/// buffers only roughly (hyper grows them in powers of two), so the configured limit is
/// enforced here, the same for every protocol.
fn head_size(req: &Request<'_>) -> u64 {
    let fields: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    (req.method.as_str().len() + req.target.len() + 12 + fields) as u64
}

/// `/t/{token}/{key}` or `/o/{key}`. Keys are never percent-decoded: their alphabet has no
/// character that needs it, so `%2e%2e` is simply a bad key (400).
fn parse_path(path: &str, require_token: bool) -> Result<Route<'_>, Reject> {
    const BAD_KEY: Reject = Reject::new(StatusCode::BAD_REQUEST, "bad_key", "malformed object key");
    const NO_ROUTE: Reject = Reject::new(StatusCode::NOT_FOUND, "not_found", "no such path");
    if let Some(rest) = path.strip_prefix("/t/") {
        let (token, key) = rest.split_once('/').ok_or(BAD_KEY)?;
        let key = ObjectKey::parse(key).map_err(|_| BAD_KEY)?;
        return Ok(Route::Signed { token, key });
    }
    if let Some(rest) = path.strip_prefix("/o/") {
        let key = ObjectKey::parse(rest).map_err(|_| BAD_KEY)?;
        if require_token {
            return Err(Reject::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "unsigned paths are disabled (require-token = true)",
            ));
        }
        return Ok(Route::Unsigned { key });
    }
    Err(NO_ROUTE)
}

/// Steering's `d` query parameter: `[A-Za-z0-9_-]{1,64}`, else ignored. It is never signed
/// and never changes access (DESIGN §3).
fn decision_id(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("d="))
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
}

fn preflight(key: ObjectKey, decision: Option<String>) -> Plan {
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    headers.insert(header::ALLOW, ALLOW);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Plan {
        status: StatusCode::NO_CONTENT,
        headers,
        body: PlanBody::Empty,
        tier: TierLabel::None,
        key: Some(key),
        decision,
        range: None,
        reason: None,
    }
}

/// A JSON error response (`{"error": code, "message": text}`), with CORS so browser players
/// can read it.
#[cold]
pub fn reject(r: Reject, key: Option<ObjectKey>, decision: Option<String>) -> Plan {
    let body = Bytes::from(
        serde_json::json!({ "error": r.code, "message": r.message }).to_string() + "\n",
    );
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(header::CONTENT_TYPE, JSON);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Plan {
        status: r.status,
        headers,
        body: PlanBody::Bytes(body),
        tier: TierLabel::None,
        key,
        decision,
        range: None,
        reason: Some(r.code),
    }
}

/// Write one access-log line (JSON) for a finished response head (DESIGN §7). The token is
/// never logged: only the key.
pub fn access_log(req: &Request<'_>, plan: &Plan, bytes: u64, header_time: Duration) {
    if !tracing::enabled!(target: "oca::access", tracing::Level::INFO) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let line = serde_json::json!({
        "time": now.as_secs_f64(),
        "client": req.client.to_string(),
        "method": req.method.as_str(),
        "key": plan.key.as_ref().map(ObjectKey::as_str),
        "status": plan.status.as_u16(),
        "bytes": bytes,
        "range": plan.range.map(|(s, l)| format!("{}-{}", s, s + l - 1)),
        "protocol": req.proto.as_str(),
        "tier": plan.tier.as_str(),
        "decision": plan.decision,
        "reason": plan.reason,
        "ttfb_us": header_time.as_micros() as u64,
    });
    tracing::info!(target: "oca::access", "{line}");
}

/// Body length of a plan, as it will be sent.
pub fn body_len(body: &PlanBody) -> u64 {
    match body {
        PlanBody::Empty => 0,
        PlanBody::Bytes(b) => b.len() as u64,
        PlanBody::File { len, .. } => *len,
    }
}

impl Shared {
    /// An object file, from the open-file cache or opened off the runtime (ring thread or
    /// blocking pool) and then cached.
    pub async fn open_file(&self, path: PathBuf) -> std::io::Result<Arc<std::fs::File>> {
        if let Some(f) = self.files.get(&path) {
            return Ok(f);
        }
        // Tests make reads under a path fail with EIO: `FAILPOINTS=oca::read=return(/d1/)`.
        fail::fail_point!("oca::read", |arg: Option<String>| {
            if arg.is_none_or(|a| path.to_string_lossy().contains(&a)) {
                let e = std::io::Error::from_raw_os_error(libc::EIO);
                self.read_failed(&path, &e);
                Err(e)
            } else {
                self.engine_open_uncached(path.clone())
            }
        });
        let f = match self.engine.open(path.clone()).await {
            Ok(f) => f,
            Err(e) => {
                self.read_failed(&path, &e);
                return Err(e);
            }
        };
        self.files.insert(path, f.clone());
        Ok(f)
    }

    #[cfg(feature = "failpoints")]
    fn engine_open_uncached(&self, path: PathBuf) -> std::io::Result<Arc<std::fs::File>> {
        std::fs::File::open(path).map(Arc::new)
    }

    /// A read of the object file at `path` failed: a drive error takes its drive out.
    pub fn read_failed(&self, path: &std::path::Path, e: &std::io::Error) {
        self.tiered.read_failed_at(path, e);
    }

    /// Count a finished response head in the metrics.
    pub fn record(&self, proto: Proto, plan: &Plan, header_time: Duration) {
        let m = &self.metrics;
        m.requests
            .get_or_create(&crate::metrics::RequestLabels {
                protocol: proto,
                code: plan.status.as_u16().into(),
            })
            .inc();
        m.header_duration
            .get_or_create(&crate::metrics::ProtoLabels { protocol: proto })
            .observe(header_time.as_secs_f64());
    }

    /// Count body bytes handed to a connection.
    pub fn count_bytes(&self, proto: Proto, tier: TierLabel, n: u64) {
        self.metrics
            .response_bytes
            .get_or_create(&crate::metrics::BytesLabels {
                protocol: proto,
                tier,
            })
            .inc_by(n);
    }
}
