//! The admin listener (DESIGN §4 "Ports"): `/healthz` and `/readyz` for load balancers and
//! systemd, `/metrics` for Prometheus and `/v1/status` for ops, the last two behind the admin
//! bearer token. Plain HTTP/1.1: keep it on loopback or a management network.

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
use oca_common::wire::{OcaState, Status, TierStatus};
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
                let resp = route(&shared, &req);
                std::future::ready(Ok::<_, Infallible>(resp))
            });
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

fn json(status: StatusCode, body: String) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> hyper::Response<Full<Bytes>> {
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

fn route(shared: &Shared, req: &hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/healthz" => return text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            return if shared.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            };
        }
        "/metrics" | "/v1/status" => {}
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such admin path"),
    }
    if !authorized(shared, req) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if path == "/metrics" {
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
        tiers: vec![
            TierStatus {
                tier: oca_common::wire::Tier::Ram,
                capacity_bytes: shared.config.storage.ram_bytes,
                used_bytes: stats.ram_bytes,
                drives: 1,
                failed_drives: 0,
            },
            TierStatus {
                tier: oca_common::wire::Tier::Disk,
                capacity_bytes: 0,
                used_bytes: stats.bytes,
                drives: 1,
                failed_drives: 0,
            },
        ],
    };
    serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"
}
