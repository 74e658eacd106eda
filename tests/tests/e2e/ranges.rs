//! RFC 9110 semantics over every protocol: byte ranges, conditional requests, HEAD, content
//! types, CORS — one table run over HTTP/1.1 and HTTP/2 over TLS, HTTP/3 over QUIC and plain
//! HTTP/1.1, with the same assertions; then curl over h1 and h2.

use std::time::Duration;

use oca_tests::client::{self, Ending, curl, raw_header, raw_status, read_until_close};
use oca_tests::fixture::{BIG, EMPTY, INIT, MASTER, MPD, PLAYLIST, SEG, TS, VTT};
use oca_tests::{Fixture, Opts, Proto, Resp, Server};
use tokio::io::AsyncWriteExt;

use super::util::{assert_error, assert_forbidden, assert_object_headers};

fn assert_partial(r: &Resp, data: &[u8], first: usize, last: usize, what: &str) {
    assert_eq!(
        r.status,
        206,
        "{what}: status (body {:?})",
        client::shorten(&r.text())
    );
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {first}-{last}/{}", data.len()).as_str()),
        "{what}: Content-Range"
    );
    let n = last - first + 1;
    assert_eq!(
        r.header("content-length"),
        Some(n.to_string().as_str()),
        "{what}: Content-Length"
    );
    assert_eq!(r.body.len(), n, "{what}: body length");
    assert!(
        r.body[..] == data[first..=last],
        "{what}: body bytes differ"
    );
    assert_object_headers(r, data, what);
}

fn assert_full(r: &Resp, data: &[u8], what: &str) {
    assert_eq!(
        r.status,
        200,
        "{what}: status (body {:?})",
        client::shorten(&r.text())
    );
    assert_eq!(
        r.header("content-range"),
        None,
        "{what}: no Content-Range on 200"
    );
    assert_eq!(
        r.header("content-length"),
        Some(data.len().to_string().as_str()),
        "{what}: Content-Length"
    );
    assert_eq!(r.body.len(), data.len(), "{what}: body length");
    assert!(r.body[..] == data[..], "{what}: body bytes differ");
    assert_object_headers(r, data, what);
}

/// The whole table against one protocol.
async fn range_table(proto: Proto) {
    let opts = Opts {
        h3: proto == Proto::H3,
        ..Opts::default()
    };
    let mut srv = Server::start(Fixture::new(), opts);
    let data = srv.fx.object(SEG).to_vec();
    let len = data.len();
    let path = srv.signed(SEG);
    let p = format!("{proto:?}");

    // Full GET.
    let r = srv.get(proto, &path).await;
    assert_full(&r, &data, &format!("{p} full GET"));
    assert_eq!(r.header("content-type"), Some("video/iso.segment"));
    let etag = r.must("etag").to_string();
    let last_modified = r.must("last-modified").to_string();
    if proto == Proto::H2 {
        assert_eq!(r.version, http::Version::HTTP_2);
    }
    if proto == Proto::H3 {
        assert_eq!(r.version, http::Version::HTTP_3);
    }

    // Satisfiable single ranges, one clamped past the end.
    let cases: Vec<(String, usize, usize)> = vec![
        ("bytes=0-0".into(), 0, 0),
        ("bytes=100-199".into(), 100, 199),
        ("bytes=-500".into(), len - 500, len - 1),
        ("bytes=1000-".into(), 1000, len - 1),
        (format!("bytes=50-{}", len + 10_000), 50, len - 1),
        (format!("bytes={}-{}", len - 1, len - 1), len - 1, len - 1),
        (format!("bytes=-{}", len * 2), 0, len - 1),
    ];
    for (h, first, last) in &cases {
        let r = srv.get_with(proto, &path, &[("range", h)]).await;
        assert_partial(&r, &data, *first, *last, &format!("{p} Range: {h}"));
    }

    // Unsatisfiable: 416 with Content-Range: bytes */len.
    for h in [
        format!("bytes={len}-"),
        "bytes=-0".to_string(),
        format!("bytes={}-{}", len + 5, len + 9),
    ] {
        let r = srv.get_with(proto, &path, &[("range", &h)]).await;
        assert_eq!(r.status, 416, "{p} Range: {h}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "{p} Range: {h}: Content-Range on 416"
        );
    }

    // Several ranges: the whole object (200). Malformed ranges are ignored (200 full).
    for h in [
        "bytes=0-1,5-9",
        "bytes=0-0, 100-199",
        "bytes=5-2",
        "bytes=abc",
        "items=0-1",
        "bytes=",
    ] {
        let r = srv.get_with(proto, &path, &[("range", h)]).await;
        assert_full(&r, &data, &format!("{p} Range: {h}"));
    }

    // HEAD: the headers, Content-Length = size, no body.
    let r = srv.request(proto, "HEAD", &path, &[]).await;
    assert_eq!(r.status, 200, "{p} HEAD");
    assert_eq!(
        r.header("content-length"),
        Some(len.to_string().as_str()),
        "{p} HEAD Content-Length"
    );
    assert!(r.body.is_empty(), "{p} HEAD has no body");
    assert_eq!(r.header("etag"), Some(etag.as_str()), "{p} HEAD ETag");
    assert_eq!(
        r.header("content-type"),
        Some("video/iso.segment"),
        "{p} HEAD type"
    );

    // Conditional requests.
    let r = srv
        .get_with(proto, &path, &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status, 304, "{p} If-None-Match with the ETag");
    assert!(r.body.is_empty(), "{p} 304 has no body");
    assert_eq!(
        r.header("etag"),
        Some(etag.as_str()),
        "{p} 304 carries the ETag"
    );
    let r = srv
        .get_with(proto, &path, &[("if-none-match", "\"something-else\"")])
        .await;
    assert_full(&r, &data, &format!("{p} If-None-Match with another ETag"));
    let r = srv
        .get_with(proto, &path, &[("if-modified-since", &last_modified)])
        .await;
    assert_eq!(r.status, 304, "{p} If-Modified-Since = Last-Modified");
    let r = srv
        .get_with(
            proto,
            &path,
            &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        )
        .await;
    assert_full(&r, &data, &format!("{p} If-Modified-Since long ago"));
    let r = srv
        .get_with(
            proto,
            &path,
            &[("range", "bytes=100-199"), ("if-range", &etag)],
        )
        .await;
    assert_partial(&r, &data, 100, 199, &format!("{p} If-Range with the ETag"));
    let r = srv
        .get_with(
            proto,
            &path,
            &[
                ("range", "bytes=100-199"),
                ("if-range", "\"0123456789abcdef0123456789abcdef\""),
            ],
        )
        .await;
    assert_full(&r, &data, &format!("{p} If-Range with another ETag"));
    let weak = format!("W/{etag}");
    let r = srv
        .get_with(
            proto,
            &path,
            &[("range", "bytes=100-199"), ("if-range", &weak)],
        )
        .await;
    assert_full(&r, &data, &format!("{p} If-Range with a weak ETag"));
    let r = srv
        .get_with(
            proto,
            &path,
            &[("range", "bytes=100-199"), ("if-range", &last_modified)],
        )
        .await;
    assert_partial(
        &r,
        &data,
        100,
        199,
        &format!("{p} If-Range with Last-Modified"),
    );
    let r = srv.get_with(proto, &path, &[("if-none-match", "*")]).await;
    assert_eq!(r.status, 304, "{p} If-None-Match: *");
    let r = srv
        .get_with(proto, &path, &[("if-match", &etag), ("range", "bytes=0-9")])
        .await;
    assert_partial(&r, &data, 0, 9, &format!("{p} If-Match with the ETag"));
    let r = srv
        .get_with(proto, &path, &[("if-match", "\"other\"")])
        .await;
    assert_error(
        &r,
        412,
        "precondition_failed",
        &format!("{p} If-Match with another ETag"),
    );
    let r = srv
        .get_with(
            proto,
            &path,
            &[("if-unmodified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        )
        .await;
    assert_error(
        &r,
        412,
        "precondition_failed",
        &format!("{p} If-Unmodified-Since long ago"),
    );
    // Range is for GET only (RFC 9110 §14.2): HEAD with a Range describes the whole object.
    let r = srv
        .request(proto, "HEAD", &path, &[("range", "bytes=0-9")])
        .await;
    assert_eq!(r.status, 200, "{p} HEAD with Range");
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    assert!(r.body.is_empty());

    // A RAM-tier object (playlist) takes ranges too.
    let pl = srv.fx.object(PLAYLIST).to_vec();
    let r = srv
        .get_with(proto, &srv.signed(PLAYLIST), &[("range", "bytes=10-1009")])
        .await;
    assert_partial(&r, &pl, 10, 1009, &format!("{p} RAM-tier range"));

    // The 0-byte object.
    let empty_path = srv.signed(EMPTY);
    let r = srv.get(proto, &empty_path).await;
    assert_full(&r, &[], &format!("{p} 0-byte object"));
    let r = srv.request(proto, "HEAD", &empty_path, &[]).await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("0")),
        "{p} HEAD 0-byte"
    );
    let r = srv
        .get_with(proto, &empty_path, &[("range", "bytes=0-0")])
        .await;
    assert_eq!(r.status, 416, "{p} any range of a 0-byte object");
    assert_eq!(r.header("content-range"), Some("bytes */0"));

    // The ≥ 8 MiB object: whole, and a range crossing 256 KiB read-buffer boundaries.
    let big = srv.fx.object(BIG).to_vec();
    let big_path = srv.signed(BIG);
    let r = srv.get(proto, &big_path).await;
    assert_full(&r, &big, &format!("{p} 8 MiB object"));
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    for (first, last) in [(262_000, 800_000), (big.len() - 300_000, big.len() - 1)] {
        let h = format!("bytes={first}-{last}");
        let r = srv.get_with(proto, &big_path, &[("range", &h)]).await;
        assert_partial(&r, &big, first, last, &format!("{p} 8 MiB object {h}"));
    }

    // Content types by extension.
    for (key, ty) in [
        (MASTER, "application/vnd.apple.mpegurl"),
        (PLAYLIST, "application/vnd.apple.mpegurl"),
        (MPD, "application/dash+xml"),
        (SEG, "video/iso.segment"),
        (INIT, "video/mp4"),
        (TS, "video/mp2t"),
        (VTT, "text/vtt"),
    ] {
        let r = srv.get(proto, &srv.signed(key)).await;
        assert_eq!(r.status, 200, "{p} {key}");
        assert_eq!(
            r.header("content-type"),
            Some(ty),
            "{p} content type of {key}"
        );
        assert!(r.body[..] == *srv.fx.object(key), "{p} {key} bytes");
    }

    // CORS: 403 too, and the preflight.
    let bad = path.replacen("/t/v1.", "/t/v1.9", 1);
    let r = srv.get(proto, &bad).await;
    assert_forbidden(&r, &format!("{p} forged token"));
    let r = srv
        .request(
            proto,
            "OPTIONS",
            &path,
            &[
                ("origin", "https://player.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await;
    assert_eq!(r.status, 204, "{p} OPTIONS preflight");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let methods = r.must("access-control-allow-methods");
    assert!(
        methods.split(',').any(|m| m.trim() == "GET"),
        "{p} Allow-Methods {methods}"
    );
    let allowed = r.must("access-control-allow-headers").to_ascii_lowercase();
    assert!(
        allowed.split(',').any(|h| h.trim() == "range"),
        "{p} Allow-Headers {allowed}"
    );
    assert!(r.body.is_empty());

    srv.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_h1_tls() {
    range_table(Proto::H1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_h2_tls() {
    range_table(Proto::H2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_h3() {
    range_table(Proto::H3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_plain_h1() {
    range_table(Proto::Plain).await;
}

/// HEAD really sends no body bytes on the wire (h1 over TLS, and the hand-written plain port),
/// and a 206 on the wire carries exactly Content-Length bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_range_on_the_wire() {
    let srv = Server::start_default();
    let data = srv.fx.object(SEG).to_vec();
    let path = srv.signed(SEG);
    for tls in [false, true] {
        for (method, range, want_status, want_body) in [
            ("HEAD", "", 200, Vec::new()),
            (
                "GET",
                "Range: bytes=100-199\r\n",
                206,
                data[100..200].to_vec(),
            ),
        ] {
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{range}Connection: close\r\n\r\n"
            );
            let (bytes, ending) = if tls {
                let mut s = client::tls_connect(srv.ports.https, &srv.fx.certs, &[b"http/1.1"])
                    .await
                    .expect("TLS connect");
                s.write_all(req.as_bytes()).await.expect("write");
                let (b, e, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
                (b, e)
            } else {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", srv.ports.http))
                    .await
                    .expect("connect");
                s.write_all(req.as_bytes()).await.expect("write");
                let (b, e, _) = read_until_close(&mut s, Duration::from_secs(10)).await;
                (b, e)
            };
            let what = format!("{method} tls={tls}");
            assert!(
                ending.closed(),
                "{what}: Connection: close is honoured ({ending:?})"
            );
            if !tls {
                assert_eq!(ending, Ending::Eof, "{what}: clean close on the plain port");
            }
            let (status, body_at) = raw_status(&bytes).unwrap_or_else(|| {
                panic!(
                    "{what}: no response head in {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(status, want_status, "{what}");
            let cl = raw_header(&bytes, "content-length").expect("content-length");
            if method == "HEAD" {
                assert_eq!(cl, data.len().to_string(), "{what}: Content-Length = size");
            } else {
                assert_eq!(cl, "100");
            }
            assert!(
                bytes[body_at..] == want_body[..],
                "{what}: {} body bytes on the wire, want {}",
                bytes.len() - body_at,
                want_body.len()
            );
        }
    }
}

/// The real curl, over HTTP/1.1 and HTTP/2, fetching a range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_ranges_over_h1_and_h2() {
    let srv = Server::start_default();
    let big = srv.fx.object(BIG).to_vec();
    let cacert = srv.fx.path("tls/cert.pem");
    let url = format!("https://localhost:{}{}", srv.ports.https, srv.signed(BIG));
    let resolve = format!("localhost:{}:127.0.0.1", srv.ports.https);
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = srv.fx.path(&format!("curl-{version}.bin"));
        let o = curl(&[
            "-sS",
            flag,
            "--cacert",
            cacert.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-r",
            "262000-800000",
            "-o",
            out.to_str().unwrap(),
            "-w",
            "%{http_code} %{http_version} %{size_download}",
            &url,
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "curl {flag} failed: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            stdout.trim(),
            format!("206 {version} 538001"),
            "curl {flag}"
        );
        let got = std::fs::read(&out).expect("curl output");
        assert!(
            got[..] == big[262_000..=800_000],
            "curl {flag}: bytes differ"
        );
    }
    // Plain HTTP/1.1 (sendfile) with curl too.
    let url = format!("http://127.0.0.1:{}{}", srv.ports.http, srv.signed(BIG));
    let out = srv.fx.path("curl-plain.bin");
    let o = curl(&[
        "-sS",
        "-H",
        "Range: bytes=-1048577",
        "-o",
        out.to_str().unwrap(),
        "-w",
        "%{http_code} %{http_version}",
        &url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "206 1.1");
    let got = std::fs::read(&out).expect("curl output");
    assert!(
        got[..] == big[big.len() - 1_048_577..],
        "curl plain: bytes differ"
    );
}
