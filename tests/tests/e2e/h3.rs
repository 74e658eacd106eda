//! HTTP/3 over QUIC (quinn + h3 client, trusting only the test certificate, ALPN `h3`): the
//! same handler as h1/h2 (the range table runs over h3 in `ranges.rs`), the 64 MiB object,
//! errors, HEAD, Alt-Svc on the TLS listener, metrics, many requests on one connection, a
//! certificate reload, a drain, and a lossy, reordering UDP relay that still yields
//! byte-exact bodies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use oca_tests::client::{self, h3_close, h3_connect, h3_send};
use oca_tests::fixture::{BIG, EMPTY, Fixture, HUGE, HUGE_LEN, INIT, Opts, SEG, TestCert};
use oca_tests::{Proto, Resp, Server, poll_until};
use tokio::net::UdpSocket;

use super::util::{assert_error, assert_forbidden, assert_object_headers};

fn h3_opts() -> Opts {
    Opts {
        h3: true,
        ..Opts::default()
    }
}

fn h3_addr(srv: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], srv.ports.h3))
}

/// A GET request for an h3 connection, with extra headers.
fn h3_req(srv: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    client::build(Proto::H3, srv.ports.h3, method, path, headers)
        .expect("request")
        .map(|_| ())
}

fn assert_body(r: &Resp, want: &[u8], what: &str) {
    assert_eq!(r.body.len(), want.len(), "{what}: body length");
    assert!(r.body[..] == want[..], "{what}: body bytes differ");
}

/// The 64 MiB object, whole and byte-exact, through the I/O engine in read-size chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_huge_object_whole_and_exact() {
    let mut srv = Server::start(Fixture::with_huge(), h3_opts());
    let r = srv.get(Proto::H3, &srv.signed(HUGE)).await;
    assert_eq!(r.status, 200, "h3 GET of the 64 MiB object");
    assert_eq!(r.version, http::Version::HTTP_3);
    assert_eq!(
        r.header("content-length"),
        Some(HUGE_LEN.to_string().as_str())
    );
    assert_body(&r, srv.fx.object(HUGE), "h3 64 MiB object");
    assert_object_headers(&r, srv.fx.object(HUGE), "h3 64 MiB object");
    srv.assert_alive();
}

/// Refused tokens (403 JSON with CORS), 416, HEAD, 404, 405 and a 0-byte object over h3; no
/// Alt-Svc on h3 responses themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_errors_head_and_416() {
    let mut srv = Server::start(Fixture::new(), h3_opts());
    let path = srv.signed(SEG);
    let len = srv.fx.object(SEG).len();

    let forged = path.replacen("/t/v1.", "/t/v1.9", 1);
    let r = srv.get(Proto::H3, &forged).await;
    assert_forbidden(&r, "h3 forged token");
    let tok_of_other_key = srv.signed(INIT).replace(INIT, "other/720p/seg-00001.m4s");
    let r = srv.get(Proto::H3, &tok_of_other_key).await;
    assert_forbidden(&r, "h3 token of another title");
    let r = srv
        .get(Proto::H3, "/t/garbage/movie/720p/seg-00001.m4s")
        .await;
    assert_forbidden(&r, "h3 garbage token");

    let r = srv
        .get_with(Proto::H3, &path, &[("range", &format!("bytes={len}-"))])
        .await;
    assert_error(&r, 416, "range_not_satisfiable", "h3 416");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    let r = srv.request(Proto::H3, "HEAD", &path, &[]).await;
    assert_eq!(r.status, 200, "h3 HEAD");
    assert_eq!(
        r.header("content-length"),
        Some(len.to_string().as_str()),
        "h3 HEAD Content-Length"
    );
    assert!(r.body.is_empty(), "h3 HEAD has no body");
    assert_object_headers(&r, srv.fx.object(SEG), "h3 HEAD");
    assert_eq!(r.header("alt-svc"), None, "no Alt-Svc over h3 itself");

    let r = srv.get(Proto::H3, "/nowhere").await;
    assert_error(&r, 404, "not_found", "h3 unknown path");
    let r = srv.request(Proto::H3, "DELETE", &path, &[]).await;
    assert_error(&r, 405, "method_not_allowed", "h3 DELETE");
    let r = srv.get(Proto::H3, &srv.signed(EMPTY)).await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("0")),
        "h3 0-byte"
    );
    assert!(r.body.is_empty());
    srv.assert_healthy().await;
}

/// HTTPS responses (h1 and h2) advertise h3 on its UDP port; the plain port and a server
/// without h3 do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_svc_advertises_h3_on_tls_responses() {
    let srv = Server::start(Fixture::new(), h3_opts());
    let want = format!("h3=\":{}\"; ma=86400", srv.ports.h3);
    for proto in [Proto::H1, Proto::H2] {
        for path in [srv.signed(SEG), "/nowhere".to_string()] {
            let r = srv.get(proto, &path).await;
            assert_eq!(
                r.header("alt-svc"),
                Some(want.as_str()),
                "{proto:?} {} Alt-Svc",
                r.status
            );
        }
    }
    let r = srv.get(Proto::Plain, &srv.signed(SEG)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("alt-svc"), None, "no Alt-Svc on the plain port");

    let without = Server::start_default();
    for proto in [Proto::H1, Proto::H2] {
        let r = without.get(proto, &without.signed(SEG)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("alt-svc"), None, "{proto:?}: no h3, no Alt-Svc");
    }
}

/// Requests, bytes and connections over h3 are counted with protocol/listener "h3".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_metrics_count_requests_bytes_and_connections() {
    let srv = Server::start(Fixture::new(), h3_opts());
    let ok = [("protocol", "h3"), ("code", "200")];
    let forbidden = [("protocol", "h3"), ("code", "403")];
    let req0 = srv.metric("oca_http_requests_total", &ok).await;
    let bytes0 = srv
        .metric("oca_http_response_bytes_total", &[("protocol", "h3")])
        .await;
    let conns0 = srv
        .metric("oca_connections_total", &[("listener", "h3")])
        .await;
    let big = srv.fx.object(BIG).len() as f64;
    let seg = srv.fx.object(SEG).len() as f64;

    // Three requests on one connection, one on another.
    let (endpoint, conn, mut send) = h3_connect(h3_addr(&srv), &srv.fx.certs)
        .await
        .expect("h3 connect");
    for key in [BIG, SEG, SEG] {
        let r = h3_send(&mut send, h3_req(&srv, "GET", &srv.signed(key), &[]))
            .await
            .expect("h3 request");
        assert_eq!(r.status, 200, "{key}");
        assert_body(&r, srv.fx.object(key), key);
    }
    drop(send);
    h3_close(endpoint, conn).await;
    let r = srv.get(Proto::H3, "/t/nope/movie/720p/seg-00001.m4s").await;
    assert_eq!(r.status, 403);

    let text = srv.metrics().await;
    let v = |name: &str, labels: &[(&str, &str)]| oca_tests::metrics::value(&text, name, labels);
    assert_eq!(v("oca_http_requests_total", &ok) - req0, 3.0, "h3 200s");
    assert!(v("oca_http_requests_total", &forbidden) >= 1.0, "h3 403s");
    let bytes = v("oca_http_response_bytes_total", &[("protocol", "h3")]) - bytes0;
    assert!(
        bytes >= big + 2.0 * seg,
        "h3 response bytes {bytes}, want at least {}",
        big + 2.0 * seg
    );
    assert_eq!(
        v("oca_connections_total", &[("listener", "h3")]) - conns0,
        2.0,
        "h3 connections"
    );
    assert!(
        text.lines().any(
            |l| l.starts_with("oca_http_response_header_duration_seconds")
                && l.contains("protocol=\"h3\"")
        ),
        "header-time histogram has an h3 series"
    );
    // The access log says h3.
    let log = srv.log();
    assert!(
        log.contains("\"protocol\":\"h3\""),
        "access log lines carry protocol h3"
    );
}

/// Many concurrent requests multiplexed on one connection, each byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_concurrent_requests_on_one_connection() {
    let mut srv = Server::start(Fixture::new(), h3_opts());
    let (endpoint, conn, send) = h3_connect(h3_addr(&srv), &srv.fx.certs)
        .await
        .expect("h3 connect");
    let big = srv.fx.object(BIG);
    let mut tasks = Vec::new();
    for i in 0..12usize {
        let mut send = send.clone();
        let first = i * 500_000;
        let last = first + 700_000 + i;
        let req = h3_req(
            &srv,
            "GET",
            &srv.signed(BIG),
            &[("range", &format!("bytes={first}-{last}"))],
        );
        tasks.push((
            first,
            last,
            tokio::spawn(async move { h3_send(&mut send, req).await }),
        ));
    }
    for (first, last, t) in tasks {
        let r = t.await.expect("task").expect("h3 request");
        assert_eq!(r.status, 206, "range {first}-{last}");
        assert_body(&r, &big[first..=last], &format!("range {first}-{last}"));
    }
    drop(send);
    h3_close(endpoint, conn).await;
    srv.assert_alive();
}

/// SIGHUP swaps the QUIC certificate too: new handshakes present the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_sighup_reloads_the_certificate() {
    let mut srv = Server::start(Fixture::new(), h3_opts());
    let addr = h3_addr(&srv);
    let presented = |certs: Vec<rustls::pki_types::CertificateDer<'static>>| async move {
        let (endpoint, conn, send) = h3_connect(addr, &certs).await.ok()?;
        let der = conn
            .peer_identity()
            .and_then(|i| {
                i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .map(|chain| chain[0].to_vec());
        drop(send);
        h3_close(endpoint, conn).await;
        der
    };
    let old = srv.fx.certs[0].to_vec();
    assert_eq!(presented(srv.fx.certs.clone()).await, Some(old));
    let new = TestCert::generate();
    srv.fx.write_cert(&new);
    srv.signal(Signal::SIGHUP);
    let want = new.der.to_vec();
    let certs = srv.fx.certs.clone();
    poll_until(
        "h3 handshakes present the new certificate",
        Duration::from_secs(10),
        || {
            let (c, w) = (certs.clone(), want.clone());
            async move { (presented(c).await.as_ref() == Some(&w)).then_some(()) }
        },
    )
    .await;
    let r = srv.get(Proto::H3, &srv.signed(SEG)).await;
    assert_eq!(r.status, 200);
    srv.assert_alive();
}

/// SIGTERM with a 64 MiB h3 response in flight: the response completes byte-exact, new
/// requests on the connection are refused (GOAWAY), and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_sigterm_lets_in_flight_responses_finish() {
    let mut srv = Server::start(
        Fixture::with_huge(),
        Opts {
            drain_deadline: "30s",
            ..h3_opts()
        },
    );
    let (endpoint, conn, mut send) = h3_connect(h3_addr(&srv), &srv.fx.certs)
        .await
        .expect("h3 connect");
    let mut stream = send
        .send_request(h3_req(&srv, "GET", &srv.signed(HUGE), &[]))
        .await
        .expect("h3 request");
    stream.finish().await.expect("finish");
    let head = stream.recv_response().await.expect("head");
    assert_eq!(head.status(), 200);
    let mut got = Vec::with_capacity(HUGE_LEN);
    {
        use bytes::Buf;
        let chunk = stream.recv_data().await.expect("data").expect("some data");
        got.extend_from_slice(chunk.chunk());
    }
    srv.signal(Signal::SIGTERM);
    let s = &srv;
    poll_until(
        "/readyz answers 503 while draining",
        Duration::from_secs(10),
        || async move { (s.admin("/readyz", None).await.status == 503).then_some(()) },
    )
    .await;
    while let Some(mut chunk) = stream.recv_data().await.expect("body while draining") {
        use bytes::Buf;
        while chunk.has_remaining() {
            let c = chunk.chunk();
            let n = c.len();
            got.extend_from_slice(c);
            chunk.advance(n);
        }
    }
    assert_eq!(got.len(), HUGE_LEN, "whole body after SIGTERM");
    assert!(got[..] == srv.fx.object(HUGE)[..], "bytes differ");
    drop(stream);
    drop(send);
    h3_close(endpoint, conn).await;
    let st = srv.proc.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "exit after drain: {st}\n{}", srv.log());
}

/// SplitMix64: a small seeded generator, so the relay's losses repeat run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Debug, Default)]
struct RelayStats {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    reordered: AtomicU64,
}

/// A UDP relay on 127.0.0.1 between one client and the server that drops `drop_pct`% of
/// datagrams and delays `reorder_pct`% behind the next one (or 5 ms), both ways. At most one
/// datagram per direction is held, so it is bounded; the task stops when dropped.
struct Relay {
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction's behaviour: send, drop or hold back `pkt`.
async fn pass(
    sock: &UdpSocket,
    to: SocketAddr,
    pkt: &[u8],
    held: &mut Option<Vec<u8>>,
    rng: &mut Rng,
    pct: (u64, u64),
    stats: &RelayStats,
) {
    let roll = rng.next() % 100;
    if roll < pct.0 {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if roll < pct.0 + pct.1 && held.is_none() {
        stats.reordered.fetch_add(1, Ordering::Relaxed);
        *held = Some(pkt.to_vec());
        return;
    }
    let _ = sock.send_to(pkt, to).await;
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    if let Some(h) = held.take() {
        let _ = sock.send_to(&h, to).await;
        stats.forwarded.fetch_add(1, Ordering::Relaxed);
    }
}

async fn relay(server: SocketAddr, seed: u64, drop_pct: u64, reorder_pct: u64) -> Relay {
    let front = UdpSocket::bind("127.0.0.1:0").await.expect("bind relay");
    let back = UdpSocket::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = front.local_addr().expect("relay addr");
    let stats = Arc::new(RelayStats::default());
    let st = stats.clone();
    let task = tokio::spawn(async move {
        let mut rng = Rng(seed);
        let pct = (drop_pct, reorder_pct);
        let mut client: Option<SocketAddr> = None;
        let (mut up_held, mut down_held): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
        let mut a = vec![0u8; 65536];
        let mut b = vec![0u8; 65536];
        loop {
            let holding = up_held.is_some() || down_held.is_some();
            tokio::select! {
                r = front.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { continue };
                    client = Some(from);
                    pass(&back, server, &a[..n], &mut up_held, &mut rng, pct, &st).await;
                }
                r = back.recv_from(&mut b) => {
                    let Ok((n, _)) = r else { continue };
                    if let Some(c) = client {
                        pass(&front, c, &b[..n], &mut down_held, &mut rng, pct, &st).await;
                    }
                }
                // A held datagram with nothing behind it goes out late rather than never.
                _ = tokio::time::sleep(Duration::from_millis(5)), if holding => {
                    if let Some(h) = up_held.take() {
                        let _ = back.send_to(&h, server).await;
                    }
                    if let (Some(h), Some(c)) = (down_held.take(), client) {
                        let _ = front.send_to(&h, c).await;
                    }
                }
            }
        }
    });
    Relay { addr, stats, task }
}

/// Through a relay that drops ~3% and reorders ~3% of datagrams both ways, QUIC recovers:
/// every body is byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_through_a_lossy_reordering_relay() {
    let mut srv = Server::start(Fixture::new(), h3_opts());
    let relay = relay(h3_addr(&srv), 0x0CA_5EED, 3, 3).await;
    let (endpoint, conn, mut send) =
        tokio::time::timeout(client::REQUEST_LIMIT, h3_connect(relay.addr, &srv.fx.certs))
            .await
            .expect("h3 connect through the relay in time")
            .expect("h3 connect through the relay");
    let big = srv.fx.object(BIG).to_vec();
    let three_mib = 3 << 20;
    // (path, Range header, expected body)
    let cases: Vec<(String, Option<String>, Vec<u8>)> = vec![
        (srv.signed(SEG), None, srv.fx.object(SEG).to_vec()),
        (
            srv.signed(BIG),
            Some(format!("bytes=1000-{}", 1000 + three_mib - 1)),
            big[1000..1000 + three_mib].to_vec(),
        ),
        (srv.signed(INIT), None, srv.fx.object(INIT).to_vec()),
        (
            srv.signed(BIG),
            Some(format!("bytes=-{three_mib}")),
            big[big.len() - three_mib..].to_vec(),
        ),
    ];
    for (path, range, want) in &cases {
        let h: Vec<(&str, &str)> = range.iter().map(|v| ("range", v.as_str())).collect();
        let r = tokio::time::timeout(
            client::REQUEST_LIMIT,
            h3_send(&mut send, h3_req(&srv, "GET", path, &h)),
        )
        .await
        .expect("response through the relay in time")
        .expect("h3 request through the relay");
        let want_status = if range.is_some() { 206 } else { 200 };
        assert_eq!(r.status, want_status, "through the relay, range {range:?}");
        assert_body(&r, want, &format!("through the relay, range {range:?}"));
    }
    drop(send);
    h3_close(endpoint, conn).await;
    let dropped = relay.stats.dropped.load(Ordering::Relaxed);
    let reordered = relay.stats.reordered.load(Ordering::Relaxed);
    let forwarded = relay.stats.forwarded.load(Ordering::Relaxed);
    assert!(
        dropped > 0 && reordered > 0,
        "the relay really dropped ({dropped}) and reordered ({reordered}) datagrams \
         (forwarded {forwarded})"
    );
    srv.assert_alive();
}
