//! Clients: hyper 1 over rustls (HTTP/1.1 and HTTP/2 by ALPN, trusting only the fixture's
//! certificates, never the system store) and over plain TCP; HTTP/3 over quinn + h3 (TLS 1.3,
//! ALPN `h3`, the same trust); raw sockets for malformed input; and the real `curl` binary.

use std::io;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::server::Server;

/// Longest a whole request (connect, head, body) may take before the test fails.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// How a request reaches the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 over TLS (ALPN `http/1.1`).
    H1,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
    /// HTTP/1.1 on the plain port (sendfile).
    Plain,
    /// HTTP/3 over QUIC (ALPN `h3`); the server needs [`crate::Opts::h3`].
    H3,
}

impl Proto {
    /// Every public protocol.
    pub const ALL: [Proto; 3] = [Proto::H1, Proto::H2, Proto::Plain];

    /// The protocol label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
            Proto::Plain => "h1_plain",
            Proto::H3 => "h3",
        }
    }

    fn alpn(self) -> &'static [u8] {
        match self {
            Proto::H2 => b"h2",
            _ => b"http/1.1",
        }
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// A header as text (panics on a non-ASCII value).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_else(|_| panic!("non-ASCII {name}")))
    }

    /// A header that must be there.
    pub fn must(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {} {:?}", self.status, self.headers))
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A rustls client config with the aws-lc-rs provider, trusting exactly `certs`, offering
/// `alpn`.
pub fn tls_config(certs: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c.clone())
            .expect("add test certificate to the root store");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS connection to `127.0.0.1:port` for the name `localhost`.
pub async fn tls_connect(
    port: u16,
    certs: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = TlsConnector::from(tls_config(certs, alpn));
    let name = ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await
}

/// The DER of the certificate the server presents in a new TLS handshake.
pub async fn peer_cert(port: u16, certs: &[CertificateDer<'static>]) -> io::Result<Vec<u8>> {
    let tls = tls_connect(port, certs, &[b"http/1.1"]).await?;
    let (_, conn) = tls.get_ref();
    let chain = conn
        .peer_certificates()
        .ok_or_else(|| io::Error::other("no peer certificate"))?;
    Ok(chain[0].as_ref().to_vec())
}

/// Build a request. `path` is sent as is (never normalised or re-encoded).
pub fn build(
    proto: Proto,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<http::Request<Empty<Bytes>>, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let uri = match proto {
        // HTTP/2 and HTTP/3 take :scheme and :authority from an absolute URI.
        Proto::H2 | Proto::H3 => format!("https://localhost:{port}{path}"),
        _ => path.to_string(),
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(match proto {
            Proto::H2 => Version::HTTP_2,
            Proto::H3 => Version::HTTP_3,
            _ => Version::HTTP_11,
        })
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if !matches!(proto, Proto::H2 | Proto::H3) {
        let host = format!("localhost:{port}");
        req.headers_mut().insert(
            http::header::HOST,
            HeaderValue::from_str(&host).map_err(|e| e.to_string())?,
        );
    }
    for (k, v) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
            HeaderValue::from_str(v).map_err(|e| e.to_string())?,
        );
    }
    Ok(req)
}

async fn send_on<T>(
    io: T,
    h2: bool,
    req: http::Request<Empty<Bytes>>,
) -> Result<http::Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 {
        let (mut tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        tx.send_request(req)
            .await
            .map_err(|e| format!("h2 request: {e}"))
    } else {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(conn);
        tx.send_request(req)
            .await
            .map_err(|e| format!("h1 request: {e}"))
    }
}

/// Send one request on a new connection; the response head, body still streaming.
pub async fn send_streaming(
    port: u16,
    certs: &[CertificateDer<'static>],
    proto: Proto,
    req: http::Request<Empty<Bytes>>,
) -> Result<http::Response<Incoming>, String> {
    match proto {
        Proto::Plain => {
            let tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| format!("connect {port}: {e}"))?;
            send_on(TokioIo::new(tcp), false, req).await
        }
        Proto::H1 | Proto::H2 => {
            let tls = tls_connect(port, certs, &[proto.alpn()])
                .await
                .map_err(|e| format!("TLS connect {port}: {e}"))?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            if alpn.as_deref() != Some(proto.alpn()) {
                return Err(format!(
                    "ALPN: offered {:?}, the server chose {:?}",
                    String::from_utf8_lossy(proto.alpn()),
                    alpn.map(|a| String::from_utf8_lossy(&a).into_owned())
                ));
            }
            send_on(TokioIo::new(tls), proto == Proto::H2, req).await
        }
        Proto::H3 => Err("HTTP/3 responses are read whole: use client::fetch or h3_fetch".into()),
    }
}

/// One HTTP/2 connection to the TLS port, for many concurrent requests (the sender is
/// `Clone`; every clone multiplexes onto the same connection).
pub async fn h2_connection(
    port: u16,
    certs: &[CertificateDer<'static>],
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tls = tls_connect(port, certs, &[b"h2"])
        .await
        .expect("TLS connect");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    tx
}

/// One HTTP/1.1 keep-alive connection (TLS or plain) for several requests in turn.
pub async fn h1_connection(
    port: u16,
    certs: &[CertificateDer<'static>],
    tls: bool,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    if tls {
        let s = tls_connect(port, certs, &[b"http/1.1"])
            .await
            .expect("TLS connect");
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        tx
    } else {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        tx
    }
}

/// Read a whole response.
pub async fn collect(resp: http::Response<Incoming>) -> Result<Resp, String> {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("reading the body of a {} response: {e}", parts.status))?
        .to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

/// One request on a new connection, whole response, bounded by [`REQUEST_LIMIT`].
pub async fn fetch(
    port: u16,
    certs: &[CertificateDer<'static>],
    proto: Proto,
    req: http::Request<Empty<Bytes>>,
) -> Result<Resp, String> {
    let what = format!("{proto:?} {} {}", req.method(), req.uri());
    let fut = async {
        if proto == Proto::H3 {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            return h3_fetch(addr, certs, req.map(|_| ())).await;
        }
        let resp = send_streaming(port, certs, proto, req).await?;
        collect(resp).await
    };
    tokio::time::timeout(REQUEST_LIMIT, fut)
        .await
        .map_err(|_| format!("{what}: no response within {REQUEST_LIMIT:?}"))?
}

impl Server {
    /// The port a protocol is served on.
    pub fn port(&self, proto: Proto) -> u16 {
        match proto {
            Proto::Plain => self.ports.http,
            Proto::H3 => self.ports.h3,
            _ => self.ports.https,
        }
    }

    /// One request; `Err` on a transport error.
    pub async fn try_request(
        &self,
        proto: Proto,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let port = self.port(proto);
        let req = build(proto, port, method, path, headers)?;
        fetch(port, &self.fx.certs, proto, req).await
    }

    /// One request; panics on a transport error (with the server log).
    pub async fn request(
        &self,
        proto: Proto,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        match self.try_request(proto, method, path, headers).await {
            Ok(r) => r,
            Err(e) => panic!(
                "{proto:?} {method} {}: {e}\nserver log:\n{}",
                shorten(path),
                self.log()
            ),
        }
    }

    /// `GET path`.
    pub async fn get(&self, proto: Proto, path: &str) -> Resp {
        self.request(proto, "GET", path, &[]).await
    }

    /// `GET path` with headers.
    pub async fn get_with(&self, proto: Proto, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(proto, "GET", path, headers).await
    }

    /// A request whose body is read by the caller.
    pub async fn stream(
        &self,
        proto: Proto,
        path: &str,
        headers: &[(&str, &str)],
    ) -> http::Response<Incoming> {
        let port = self.port(proto);
        let req = build(proto, port, "GET", path, headers).expect("request");
        send_streaming(port, &self.fx.certs, proto, req)
            .await
            .unwrap_or_else(|e| panic!("{proto:?} GET {}: {e}", shorten(path)))
    }

    /// `GET path` on the admin port, with `Authorization: Bearer {token}` when given.
    pub async fn admin(&self, path: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let req = build(Proto::Plain, self.ports.admin, "GET", path, &headers).expect("request");
        fetch(self.ports.admin, &[], Proto::Plain, req)
            .await
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}\nserver log:\n{}", self.log()))
    }

    /// The scraped `/metrics` text (with the admin token).
    pub async fn metrics(&self) -> String {
        let r = self.admin("/metrics", Some(&self.fx.admin_token)).await;
        assert_eq!(r.status, 200, "/metrics: {}", r.text());
        r.text()
    }

    /// The value of one metric sample (0 when absent).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        crate::metrics::value(&self.metrics().await, name, labels)
    }

    /// Check the server still answers a good request on every protocol and is alive.
    pub async fn assert_healthy(&mut self) {
        self.assert_alive();
        let path = self.signed(crate::fixture::INIT);
        for proto in Proto::ALL {
            if proto == Proto::Plain && !self.opts.http {
                continue;
            }
            let r = self.get(proto, &path).await;
            assert_eq!(r.status, 200, "{proto:?} good request after bad input");
            assert_eq!(&r.body[..], self.fx.object(crate::fixture::INIT));
        }
        self.assert_alive();
    }
}

/// A long path, shortened for messages.
pub fn shorten(s: &str) -> String {
    if s.len() > 160 {
        format!("{}…({} bytes)", &s[..160], s.len())
    } else {
        s.to_string()
    }
}

/// A raw byte stream (TCP or TLS), for tests that treat both alike.
pub trait AsyncStream: AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

/// How a raw read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The peer closed the connection (FIN).
    Eof,
    /// The connection failed (reset, or TLS closed without close_notify).
    Error(String),
    /// Nothing ended it within the limit.
    Timeout,
}

impl Ending {
    /// The connection is gone (closed or reset), as opposed to still open.
    pub fn closed(&self) -> bool {
        !matches!(self, Ending::Timeout)
    }
}

/// Read until the peer closes, at most `limit`: the bytes, how it ended and when.
pub async fn read_until_close<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    limit: Duration,
) -> (Vec<u8>, Ending, Duration) {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, Ending::Timeout, t0.elapsed()),
            Ok(Ok(0)) => return (out, Ending::Eof, t0.elapsed()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (out, Ending::Error(e.to_string()), t0.elapsed()),
        }
    }
}

/// Read exactly one HTTP/1.x response framed by Content-Length (or without a body when
/// `head_only`), leaving the connection open: (the bytes of head and body, status).
pub async fn read_one_response<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    head_only: bool,
    limit: Duration,
) -> Result<(Vec<u8>, u16), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if let Some((status, body_at)) = raw_status(&out) {
            let len = if head_only || status == 304 || status == 204 {
                0
            } else {
                raw_header(&out, "content-length")
                    .ok_or("no Content-Length")?
                    .parse::<usize>()
                    .map_err(|e| e.to_string())?
            };
            if out.len() >= body_at + len {
                if out.len() > body_at + len {
                    return Err(format!(
                        "{} bytes past the response",
                        out.len() - body_at - len
                    ));
                }
                return Ok((out, status));
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return Err(format!("no whole response within {limit:?}")),
            Ok(Ok(0)) => return Err(format!("closed after {} bytes", out.len())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e.to_string()),
        }
    }
}

/// The status code of a raw HTTP/1.x response, and where its body starts.
pub fn raw_status(bytes: &[u8]) -> Option<(u16, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let code = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()?;
    Some((code, end))
}

/// A header of a raw HTTP/1.x response head (case-insensitive name).
pub fn raw_header(bytes: &[u8], name: &str) -> Option<String> {
    let (_, end) = raw_status(bytes)?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Run the `curl` binary. Fails (never skips) when curl is not installed: `.ci/run` installs
/// it.
pub fn curl(args: &[&str]) -> Output {
    curl_in(args, None)
}

/// Run `curl ARGS` in `dir`.
pub fn curl_in(args: &[&str], dir: Option<&std::path::Path>) -> Output {
    require_tool("curl", "curl");
    let mut cmd = Command::new("curl");
    cmd.args(args).stdin(Stdio::null());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.output().expect("running curl")
}

/// Panic with an install hint unless `tool --version` runs.
pub fn require_tool(tool: &str, debian_package: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is not installed: these tests need it and never skip. .ci/run installs it \
         (Debian package `{debian_package}`: apt-get install -y {debian_package})"
    );
}

/// A QUIC client config with the aws-lc-rs provider: TLS 1.3, ALPN `h3`, trusting exactly
/// `certs`.
pub fn quic_client_config(certs: &[CertificateDer<'static>]) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c.clone())
            .expect("add test certificate to the root store");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).expect("QUIC client config");
    quinn::ClientConfig::new(Arc::new(quic))
}

/// One HTTP/3 connection to `addr` (the name `localhost`): the endpoint (keep it alive), the
/// QUIC connection (to close it) and the h3 request sender. The h3 driver runs in a task.
pub async fn h3_connect(
    addr: std::net::SocketAddr,
    certs: &[CertificateDer<'static>],
) -> Result<
    (
        quinn::Endpoint,
        quinn::Connection,
        h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    ),
    String,
> {
    let endpoint = quinn::Endpoint::client(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("QUIC client endpoint: {e}"))?;
    let conn = endpoint
        .connect_with(quic_client_config(certs), addr, "localhost")
        .map_err(|e| format!("QUIC connect {addr}: {e}"))?
        .await
        .map_err(|e| format!("QUIC handshake with {addr}: {e}"))?;
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(&b"h3"[..]) {
        return Err(format!("ALPN: offered h3, the server chose {alpn:?}"));
    }
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| format!("h3 setup: {e}"))?;
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    Ok((endpoint, conn, send))
}

/// One request on an existing HTTP/3 connection; the whole response.
pub async fn h3_send(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    req: http::Request<()>,
) -> Result<Resp, String> {
    use bytes::{Buf, BufMut};
    let mut stream = send
        .send_request(req)
        .await
        .map_err(|e| format!("h3 request: {e}"))?;
    // A server may answer before it has read the end of the request and stop the request
    // side (RFC 9114 §4.1: clients must not discard the response then), so a failed finish
    // is not a failed request.
    let _ = stream.finish().await;
    let resp = stream
        .recv_response()
        .await
        .map_err(|e| format!("h3 response head: {e}"))?;
    let mut body = bytes::BytesMut::new();
    while let Some(mut chunk) = stream
        .recv_data()
        .await
        .map_err(|e| format!("h3 body after {} bytes: {e}", body.len()))?
    {
        while chunk.has_remaining() {
            let c = chunk.chunk();
            let n = c.len();
            body.put_slice(c);
            chunk.advance(n);
        }
    }
    let (parts, ()) = resp.into_parts();
    Ok(Resp {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body: body.freeze(),
    })
}

/// Close an HTTP/3 connection cleanly and let the close frame leave.
pub async fn h3_close(endpoint: quinn::Endpoint, conn: quinn::Connection) {
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

/// One HTTP/3 request on a new connection to `addr`, whole response.
pub async fn h3_fetch(
    addr: std::net::SocketAddr,
    certs: &[CertificateDer<'static>],
    req: http::Request<()>,
) -> Result<Resp, String> {
    let (endpoint, conn, mut send) = h3_connect(addr, certs).await?;
    let r = h3_send(&mut send, req).await;
    drop(send);
    h3_close(endpoint, conn).await;
    r
}
