//! Connection reuse: HTTP/1.1 keep-alive and pipelining (HEAD framing included) on both
//! ports, and many concurrent HTTP/2 streams on one connection, all byte-exact.

use std::time::Duration;

use oca_tests::Server;
use oca_tests::client::{self, Ending, build, collect, read_until_close};
use oca_tests::fixture::{BIG, EMPTY, INIT, PLAYLIST, SEG, SEG2};
use oca_tests::{Proto, Resp};
use tokio::io::AsyncWriteExt;

/// Split a byte stream of HTTP/1.1 responses; `head_only[i]` says response i answers a HEAD.
fn split_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    for &head in head_only {
        let (status, body_at) = client::raw_status(bytes).unwrap_or_else(|| {
            panic!(
                "response {} missing; rest: {:?}",
                out.len(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        });
        // 304 has no body whatever it says (RFC 9110 §15.4.5); every other response here is
        // framed by Content-Length.
        let body_len = if status == 304 {
            0
        } else {
            let cl: usize = client::raw_header(bytes, "content-length")
                .unwrap_or_else(|| {
                    panic!("response {} ({status}) has no Content-Length", out.len())
                })
                .parse()
                .expect("numeric content-length");
            if head { 0 } else { cl }
        };
        out.push((status, bytes[body_at..body_at + body_len].to_vec()));
        bytes = &bytes[body_at + body_len..];
    }
    assert!(
        bytes.is_empty(),
        "{} stray bytes after the last response: {:?}",
        bytes.len(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_keep_their_framing() {
    let srv = Server::start_default();
    let seg = srv.fx.object(SEG).to_vec();
    let etag = oca_tests::etag_of(&seg);
    let reqs = [
        (
            format!("HEAD {} HTTP/1.1\r\nHost: l\r\n\r\n", srv.signed(SEG)),
            true,
        ),
        (
            format!(
                "GET {} HTTP/1.1\r\nHost: l\r\nRange: bytes=100-199\r\n\r\n",
                srv.signed(SEG)
            ),
            false,
        ),
        (
            format!(
                "GET {} HTTP/1.1\r\nHost: l\r\nIf-None-Match: {etag}\r\n\r\n",
                srv.signed(SEG)
            ),
            false,
        ),
        (
            format!("GET {} HTTP/1.1\r\nHost: l\r\n\r\n", srv.signed(EMPTY)),
            false,
        ),
        (
            format!("GET /t/bad/{SEG} HTTP/1.1\r\nHost: l\r\n\r\n"),
            false,
        ),
        (
            format!("GET {} HTTP/1.1\r\nHost: l\r\n\r\n", srv.signed(SEG2)),
            false,
        ),
        (
            format!(
                "GET {} HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n",
                srv.signed(INIT)
            ),
            false,
        ),
    ];
    let wire: String = reqs.iter().map(|(r, _)| r.as_str()).collect();
    let head_only: Vec<bool> = reqs.iter().map(|(_, h)| *h).collect();
    for tls in [false, true] {
        let (bytes, ending) = if tls {
            let mut s = client::tls_connect(srv.ports.https, &srv.fx.certs, &[b"http/1.1"])
                .await
                .expect("TLS");
            s.write_all(wire.as_bytes()).await.unwrap();
            let (b, e, _) = read_until_close(&mut s, Duration::from_secs(20)).await;
            (b, e)
        } else {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.ports.http))
                .await
                .unwrap();
            s.write_all(wire.as_bytes()).await.unwrap();
            let (b, e, _) = read_until_close(&mut s, Duration::from_secs(20)).await;
            (b, e)
        };
        assert!(
            ending.closed(),
            "tls={tls}: closed after Connection: close ({ending:?})"
        );
        if !tls {
            assert_eq!(ending, Ending::Eof);
        }
        let got = split_responses(&bytes, &head_only);
        let want: Vec<(u16, Vec<u8>)> = vec![
            (200, Vec::new()),
            (206, seg[100..200].to_vec()),
            (304, Vec::new()),
            (200, Vec::new()),
            (403, got[4].1.clone()),
            (200, srv.fx.object(SEG2).to_vec()),
            (200, srv.fx.object(INIT).to_vec()),
        ];
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.0, w.0, "tls={tls} response {i} status");
            assert!(
                g.1 == w.1,
                "tls={tls} response {i} body ({} bytes, want {})",
                g.1.len(),
                w.1.len()
            );
        }
        assert!(String::from_utf8_lossy(&got[4].1).contains("forbidden"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_connections_with_hyper() {
    let srv = Server::start_default();
    for (tls, port, proto) in [
        (true, srv.ports.https, Proto::H1),
        (false, srv.ports.http, Proto::Plain),
    ] {
        let mut tx = client::h1_connection(port, &srv.fx.certs, tls).await;
        for key in [SEG, INIT, PLAYLIST, SEG2, EMPTY, SEG] {
            let req = build(proto, port, "GET", &srv.signed(key), &[]).unwrap();
            tx.ready().await.unwrap_or_else(|e| {
                panic!("{proto:?}: the server closed a keep-alive connection: {e}")
            });
            let r = collect(
                tx.send_request(req)
                    .await
                    .expect("request on a kept-alive connection"),
            )
            .await
            .expect("body");
            assert_eq!(r.status, 200, "{proto:?} {key}");
            assert!(r.body[..] == *srv.fx.object(key), "{proto:?} {key} bytes");
        }
    }
}

/// 48 concurrent streams on one HTTP/2 connection: ranges of the 8 MiB object (disk, read
/// through the I/O engine), whole segments and RAM-tier playlists, every one byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_h2_streams_on_one_connection() {
    let srv = Server::start_default();
    let tx = client::h2_connection(srv.ports.https, &srv.fx.certs).await;
    let big_path = srv.signed(BIG);
    let big_len = srv.fx.object(BIG).len();
    let mut jobs = Vec::new();
    for i in 0..48usize {
        let (path, range, key) = match i % 4 {
            0 | 1 => {
                let first = (i * 170_017) % (big_len - 700_000);
                let last = first + 300_000 + i * 7919;
                (big_path.clone(), Some((first, last)), BIG)
            }
            2 => (srv.signed(SEG), None, SEG),
            _ => (srv.signed(PLAYLIST), None, PLAYLIST),
        };
        let h = range.map(|(a, b)| format!("bytes={a}-{b}"));
        let headers: Vec<(&str, &str)> =
            h.as_deref().map(|h| vec![("range", h)]).unwrap_or_default();
        let req = build(Proto::H2, srv.ports.https, "GET", &path, &headers).unwrap();
        let mut tx = tx.clone();
        jobs.push((
            key,
            range,
            tokio::spawn(async move {
                let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
                collect(resp).await
            }),
        ));
    }
    for (i, (key, range, job)) in jobs.into_iter().enumerate() {
        let r: Resp = tokio::time::timeout(Duration::from_secs(60), job)
            .await
            .expect("stream finished in time")
            .expect("task")
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        let data = srv.fx.object(key);
        match range {
            Some((a, b)) => {
                assert_eq!(r.status, 206, "stream {i}");
                assert!(
                    r.body[..] == data[a..=b],
                    "stream {i}: bytes {a}-{b} of {key} differ"
                );
            }
            None => {
                assert_eq!(r.status, 200, "stream {i}");
                assert!(r.body[..] == *data, "stream {i}: {key} differs");
            }
        }
    }
}

/// An HTTP/1.0 client asking for `Connection: keep-alive` must be told the connection
/// persists (`Connection: keep-alive` in the response, RFC 9112 §9.3 and Appendix C.2.2,
/// RFC 2068 §19.7.1) — or see it closed. A server that keeps the connection open without
/// saying so leaves HTTP/1.0 clients (ApacheBench `ab -k`, old proxies) waiting for a close
/// until idle-timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_is_confirmed_or_closed() {
    let srv = Server::start_default();
    let req = format!(
        "GET {} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        srv.signed(INIT)
    );
    let init = srv.fx.object(INIT).to_vec();
    for tls in [true, false] {
        let what = if tls { "TLS port" } else { "plain port" };
        let mut plain_s;
        let mut tls_s;
        let s: &mut dyn client::AsyncStream = if tls {
            tls_s = client::tls_connect(srv.ports.https, &srv.fx.certs, &[b"http/1.1"])
                .await
                .expect("TLS");
            &mut tls_s
        } else {
            plain_s = tokio::net::TcpStream::connect(("127.0.0.1", srv.ports.http))
                .await
                .unwrap();
            &mut plain_s
        };
        s.write_all(req.as_bytes()).await.unwrap();
        let (bytes, status) = client::read_one_response(s, false, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(status, 200, "{what}");
        assert!(bytes.ends_with(&init), "{what}: body");
        let confirmed = client::raw_header(&bytes, "connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"));
        if confirmed {
            s.write_all(req.as_bytes()).await.unwrap();
            let (_, status) = client::read_one_response(s, false, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| {
                    panic!("{what}: second request on a kept-alive connection: {e}")
                });
            assert_eq!(status, 200, "{what}: second request");
        } else {
            let (_, ending, took) = read_until_close(s, Duration::from_secs(3)).await;
            assert!(
                ending.closed(),
                "{what}: an HTTP/1.0 keep-alive request was answered without \
                 `Connection: keep-alive`, yet the connection stays open (still open after \
                 {took:?}; idle-timeout is 60 s). Response head:\n{}",
                String::from_utf8_lossy(&bytes[..bytes.len() - init.len()])
            );
        }
    }
}
