//! The admin port: health and readiness without a token; metrics and status behind the admin
//! bearer token; the metrics text is OpenMetrics and passes promtool (but for the one
//! complaint Debian's promtool has about OpenMetrics counter names, DESIGN §9).

use std::time::Duration;

use oca_common::wire::{OcaState, Status};
use oca_tests::client::require_tool;
use oca_tests::fixture::{BIG, SEG};
use oca_tests::metrics;
use oca_tests::{Proto, Server, poll_until};

use super::util::assert_error;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_auth_metrics_and_status() {
    let srv = Server::start_default();
    let r = srv.admin("/healthz", None).await;
    assert_eq!(r.status, 200, "/healthz without a token");
    let r = srv.admin("/readyz", None).await;
    assert_eq!(r.status, 200, "/readyz without a token");

    for path in ["/metrics", "/v1/status"] {
        for token in [None, Some("wrong-token"), Some("")] {
            let r = srv.admin(path, token).await;
            assert_error(
                &r,
                401,
                "unauthorized",
                &format!("{path} with token {token:?}"),
            );
        }
        // The hash itself is not the token.
        let hash = oca_tests::sha256_hex(srv.fx.admin_token.as_bytes());
        assert_eq!(
            srv.admin(path, Some(&hash)).await.status,
            401,
            "{path} with the hash"
        );
    }
    let r = srv.admin("/nope", Some(&srv.fx.admin_token)).await;
    assert_eq!(r.status, 404);

    // Some traffic so the counters have samples.
    for proto in Proto::ALL {
        assert_eq!(srv.get(proto, &srv.signed(SEG)).await.status, 200);
        assert_eq!(
            srv.get_with(proto, &srv.signed(BIG), &[("range", "bytes=0-99")])
                .await
                .status,
            206
        );
        assert_eq!(srv.get(proto, &format!("/t/x/{SEG}")).await.status, 403);
    }

    // The plain port counts sendfile bytes right after each sendfile returns, so the
    // counter may trail the client's last byte by a moment: wait for it (bounded).
    let want = (srv.fx.object(SEG).len() + 100) as f64;
    let s = &srv;
    poll_until(
        "response bytes counted on every protocol",
        Duration::from_secs(5),
        || async move {
            let text = s.metrics().await;
            Proto::ALL
                .iter()
                .all(|p| {
                    metrics::value(
                        &text,
                        "oca_http_response_bytes_total",
                        &[("protocol", p.label())],
                    ) >= want
                })
                .then_some(())
        },
    )
    .await;

    let r = srv.admin("/metrics", Some(&srv.fx.admin_token)).await;
    assert_eq!(r.status, 200);
    let ct = r.must("content-type");
    assert!(
        ct.starts_with("application/openmetrics-text"),
        "content type {ct}"
    );
    let text = r.text();
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    for name in [
        "oca_http_requests_total",
        "oca_http_response_bytes_total",
        "oca_io_engine_info",
        "oca_ready",
        "oca_token_rejections_total",
        "oca_connections_total",
        "oca_process_start_time_seconds",
    ] {
        assert!(metrics::has(&text, name), "{name} in /metrics:\n{text}");
    }
    assert_eq!(metrics::value(&text, "oca_ready", &[]), 1.0, "oca_ready 1");
    assert!(
        text.lines().any(|l| l == "oca_ready 1"),
        "a literal `oca_ready 1` line"
    );
    for proto in Proto::ALL {
        let l = proto.label();
        let n = metrics::value(
            &text,
            "oca_http_requests_total",
            &[("protocol", l), ("code", "200")],
        );
        assert!(n >= 1.0, "requests{{protocol={l},code=200}} = {n}");
        let n = metrics::value(
            &text,
            "oca_http_requests_total",
            &[("protocol", l), ("code", "206")],
        );
        assert!(n >= 1.0, "requests{{protocol={l},code=206}} = {n}");
        let n = metrics::value(
            &text,
            "oca_http_requests_total",
            &[("protocol", l), ("code", "403")],
        );
        assert!(n >= 1.0, "requests{{protocol={l},code=403}} = {n}");
        let bytes = metrics::value(&text, "oca_http_response_bytes_total", &[("protocol", l)]);
        assert!(
            bytes >= (srv.fx.object(SEG).len() + 100) as f64,
            "response bytes for {l}: {bytes}"
        );
    }
    // Byte accounting is exact: a 100-byte range of a disk object adds 100 to its protocol's
    // counter; HEAD and 304 add nothing.
    let etag = oca_tests::etag_of(srv.fx.object(SEG));
    for proto in Proto::ALL {
        let labels = [("protocol", proto.label()), ("tier", "disk")];
        let before = srv.metric("oca_http_response_bytes_total", &labels).await;
        let path = srv.signed(SEG);
        assert_eq!(
            srv.get_with(proto, &path, &[("range", "bytes=0-99")])
                .await
                .status,
            206
        );
        assert_eq!(srv.request(proto, "HEAD", &path, &[]).await.status, 200);
        assert_eq!(
            srv.get_with(proto, &path, &[("if-none-match", &etag)])
                .await
                .status,
            304
        );
        let (s, l) = (&srv, &labels);
        poll_until(
            &format!("{proto:?}: exactly 100 more response bytes counted"),
            Duration::from_secs(5),
            || async move {
                let after = s.metric("oca_http_response_bytes_total", l).await;
                (after - before == 100.0).then_some(())
            },
        )
        .await;
    }
    let engines = metrics::value(&text, "oca_io_engine_info", &[]);
    assert_eq!(engines, 1.0, "exactly one engine reported");

    let r = srv.admin("/v1/status", Some(&srv.fx.admin_token)).await;
    assert_eq!(r.status, 200);
    let status: Status = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("/v1/status is a wire Status ({e}): {}", r.text()));
    assert_eq!(status.id, "oca-e2e");
    assert_eq!(status.objects, srv.fx.objects.len() as u64, "object count");
    let bytes: usize = srv.fx.objects.values().map(Vec::len).sum();
    assert_eq!(status.bytes, bytes as u64, "byte count");
    assert!(status.ready);
    assert_eq!(status.state, OcaState::Up);
    assert!(["io_uring", "pread"].contains(&status.io_engine.as_str()));
    let started = oca_tests::now_unix().abs_diff(status.started_at);
    assert!(started < 600, "started_at is recent: {}", status.started_at);
}

/// `promtool check metrics` on the scraped text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics() {
    require_tool("promtool", "prometheus");
    let srv = Server::start_default();
    for proto in Proto::ALL {
        assert_eq!(srv.get(proto, &srv.signed(SEG)).await.status, 200);
        assert_eq!(srv.get(proto, &format!("/t/x/{SEG}")).await.status, 403);
    }
    let text = srv.metrics().await;
    oca_tests::metrics::assert_promtool_accepts(&text);
}
