//! The admin listener (DESIGN §4 "Ports"): `/healthz` and `/readyz` for load balancers and
//! systemd; behind the admin bearer token `/metrics` for Prometheus, `/v1/status` for ops,
//! and the store's API for the fill controller: `PUT|DELETE /v1/objects/{key}` (ingest,
//! `x-oca-sha256` required, optional `x-oca-tier` and `x-oca-published`),
//! `PUT|DELETE /v1/renditions/{title}/{rendition}` (manifest commit) and
//! `GET /v1/inventory[?since=N]`. Errors are JSON `{"error": code, "message": text}`.
//! Plain HTTP/1.1: keep it on loopback or a management network.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use oca_common::wire::{OcaState, Status};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::Shared;

/// Accept loop of the admin listener.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.limits.header_read_timeout)
        .max_buf_size(64 << 10);
    loop {
        let (tcp, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    crate::server::tls::accept_error(e).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let builder = builder.clone();
        tracker.spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(shared, req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

pub(crate) fn json(status: StatusCode, body: String) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({ "error": code, "message": message }).to_string() + "\n",
    )
}

fn text(status: StatusCode, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Does the request carry the admin bearer token? The token is compared by its SHA-256 in
/// constant time, so the config holds no secret.
fn authorized(shared: &Shared, req: &hyper::Request<Incoming>) -> bool {
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.trim().as_bytes());
    let Ok(want) = hex::decode(&shared.config.admin.token_sha256) else {
        return false;
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(got.as_ref(), &want).is_ok()
}

fn not_allowed(allow: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("use {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn unauthorized() -> hyper::Response<Full<Bytes>> {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid admin bearer token is required",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn route(shared: Arc<Shared>, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/v1/objects/") {
        if req.method() != Method::PUT && req.method() != Method::DELETE {
            return not_allowed("PUT, DELETE");
        }
        if !authorized(&shared, &req) {
            return unauthorized();
        }
        let rest = rest.to_owned();
        return crate::ingest::object(&shared, &rest, req).await;
    }
    if let Some(rest) = path.strip_prefix("/v1/renditions/") {
        if req.method() != Method::PUT && req.method() != Method::DELETE {
            return not_allowed("PUT, DELETE");
        }
        if !authorized(&shared, &req) {
            return unauthorized();
        }
        let rest = rest.to_owned();
        return crate::ingest::rendition(&shared, &rest, req).await;
    }
    let shared = &*shared;
    let req = &req;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    match path.as_str() {
        "/healthz" => return text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            return if shared.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            };
        }
        "/metrics" | "/v1/status" | "/v1/inventory" => {}
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such admin path"),
    }
    if !authorized(shared, req) {
        return unauthorized();
    }
    if path == "/v1/inventory" {
        let since = match req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .map(str::parse::<u64>)
        }) {
            None => None,
            Some(Ok(g)) => Some(g),
            Some(Err(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "since must be a generation number",
                );
            }
        };
        let inv = shared.tiered.inventory(since);
        return json(
            StatusCode::OK,
            serde_json::to_string_pretty(&inv).unwrap_or_default() + "\n",
        );
    }
    if path == "/metrics" {
        crate::metrics::refresh_storage(&shared.metrics, &shared.tiered);
        let mut r = hyper::Response::new(Full::new(Bytes::from(shared.metrics.encode())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        return r;
    }
    json(StatusCode::OK, status_json(shared))
}

/// `GET /v1/status` (a wire type of `oca-common`).
pub fn status_json(shared: &Shared) -> String {
    let stats = shared.store.stats();
    let ready = shared.ready.load(Ordering::Relaxed);
    let status = Status {
        id: shared.config.server.id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        state: if ready {
            OcaState::Up
        } else {
            OcaState::Draining
        },
        ready,
        started_at: shared
            .started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        io_engine: shared.engine.kind().as_str().to_string(),
        objects: stats.objects,
        bytes: stats.bytes,
        connections: shared.open_connections.load(Ordering::Relaxed),
        tiers: shared.tiered.tier_status(),
    };
    serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"
}
