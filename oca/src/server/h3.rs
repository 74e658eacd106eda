//! HTTP/3 over QUIC (quinn + h3) on `server.h3-listen`, with the same certificate and key as
//! the TLS listener. Every request goes through [`crate::handler::plan`] like h1 and h2, so
//! ranges, tokens, CORS, limits, access logs and metrics behave the same.
//!
//! Connections count against the same connection cap as TCP. On drain a connection sends
//! GOAWAY, its in-flight requests finish, then it closes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::LimitsConfig;
use crate::error::OcaError;
use http_body_util::BodyExt;

use crate::body::{Counted, OcaBody};
use crate::handler::{self, Request, Shared};
use crate::metrics::{Listener, Proto, RefuseReason};
use crate::server::ConnGuard;
use crate::server::tls::{canonical, refuse_on};

/// UDP socket buffers: a few MiB so a burst of video packets is not dropped by the kernel
/// before quinn reads it (the kernel caps them at `net.core.rmem_max`/`wmem_max`).
const UDP_BUFFER: usize = 8 << 20;

type H3Conn = ::h3::server::Connection<h3_quinn::Connection, Bytes>;
type H3Stream = ::h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// The quinn server config: QUIC crypto from [`crate::server::tls::load_quic`] plus the
/// transport limits from `[limits]`.
pub fn server_config(crypto: Arc<QuicServerConfig>, l: &LimitsConfig) -> quinn::ServerConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(l.h2_max_concurrent_streams));
    // The client's control stream and two QPACK streams, with room for extensions.
    t.max_concurrent_uni_streams(VarInt::from_u32(16));
    t.max_idle_timeout(IdleTimeout::try_from(l.idle_timeout).ok());
    let window = |n: u64| VarInt::from_u64(n).unwrap_or(VarInt::MAX);
    t.stream_receive_window(window(l.h2_stream_window));
    t.receive_window(window(l.h2_connection_window));
    // Responses are large: let a connection have several MiB in flight.
    t.send_window(l.h2_connection_window.max(8 << 20));
    let mut cfg = quinn::ServerConfig::with_crypto(crypto);
    cfg.transport_config(Arc::new(t));
    cfg
}

/// Bind the UDP socket (buffers sized for video) and start a quinn endpoint on it.
pub fn bind(addr: SocketAddr, cfg: quinn::ServerConfig) -> Result<Endpoint, OcaError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| OcaError::Bind { addr, source };
    let sock =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        // Dual stack on [::], as the TCP listeners.
        let _ = sock.set_only_v6(false);
    }
    // Best effort: the kernel clamps these to its maximums.
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    sock.set_nonblocking(true).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    let std: std::net::UdpSocket = sock.into();
    Endpoint::new(
        EndpointConfig::default(),
        Some(cfg),
        std,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(err)
}

/// Accept loop of the HTTP/3 listener. Returns when `cancel` fires (new connections are then
/// refused); connections keep running under `tracker` and shut down gracefully.
pub async fn serve(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse_on(&shared, Listener::H3, RefuseReason::ConnectionCap);
            incoming.refuse();
            continue;
        };
        let guard = ConnGuard::new(shared.clone(), Listener::H3, permit);
        let shared = shared.clone();
        let cancel = cancel.clone();
        let requests = tracker.clone();
        tracker.spawn(async move {
            let _guard = guard;
            let peer = incoming.remote_address();
            let limit = shared.config.limits.tls_handshake_timeout;
            let conn = match tokio::time::timeout(limit, incoming).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "QUIC handshake failed");
                    refuse_on(&shared, Listener::H3, RefuseReason::TlsHandshake);
                    return;
                }
                Err(_) => {
                    refuse_on(&shared, Listener::H3, RefuseReason::HandshakeTimeout);
                    return;
                }
            };
            connection(conn, shared, requests, cancel).await;
        });
    }
    // Refuse new connections while the existing ones drain.
    endpoint.set_server_config(None);
}

/// Serve one QUIC connection until the client closes it, it idles out, or a drain finishes.
async fn connection(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    requests: TaskTracker,
    cancel: CancellationToken,
) {
    let peer = conn.remote_address();
    let client = canonical(peer.ip());
    let max_field = shared.config.limits.max_header_bytes.saturating_mul(2) + 4096;
    let built = ::h3::server::builder()
        .max_field_section_size(max_field)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
        .await;
    let mut h3c: H3Conn = match built {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 connection setup failed");
            return;
        }
    };
    let mut going_away = false;
    loop {
        let next = tokio::select! {
            r = h3c.accept() => r,
            _ = cancel.cancelled(), if !going_away => {
                going_away = true;
                // GOAWAY just past the last accepted request: no new ones; accept() returns
                // None once the in-flight ones finish.
                if let Err(e) = h3c.shutdown(1).await {
                    tracing::debug!(%peer, error = %e, "HTTP/3 GOAWAY failed");
                    break;
                }
                continue;
            }
        };
        match next {
            Ok(Some(resolver)) => {
                let shared = shared.clone();
                requests.spawn(async move {
                    // The request head must arrive within header-read-timeout, as on TCP.
                    let limit = shared.config.limits.header_read_timeout;
                    let (req, stream) =
                        match tokio::time::timeout(limit, resolver.resolve_request()).await {
                            Ok(Ok(x)) => x,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "bad HTTP/3 request");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "HTTP/3 request head timed out");
                                return;
                            }
                        };
                    if let Err(e) = respond(&shared, req, stream, client).await {
                        tracing::debug!(%peer, error = %e, "HTTP/3 response ended early");
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() {
                    tracing::debug!(%peer, error = %e, "HTTP/3 connection ended with an error");
                }
                break;
            }
        }
    }
    // Let the client read the last bytes and close (it does once it has its responses);
    // dropping the last handle would close the connection at once.
    let linger = shared.config.limits.idle_timeout.min(crate::server::LINGER);
    let _ = tokio::time::timeout(linger, conn.closed()).await;
}

/// One request through the shared handler; the response head and body onto the stream.
async fn respond(
    shared: &Arc<Shared>,
    req: http::Request<()>,
    mut stream: H3Stream,
    client: std::net::IpAddr,
) -> Result<(), String> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let r = Request {
        method: req.method(),
        target,
        headers: req.headers(),
        client,
        proto: Proto::H3,
    };
    let plan = handler::handle(shared, &r);
    let mut resp = http::Response::new(());
    *resp.status_mut() = plan.status;
    *resp.headers_mut() = plan.headers;
    stream
        .send_response(resp)
        .await
        .map_err(|e| format!("sending the head: {e}"))?;
    // The same body as h1/h2: RAM slices as they are, file ranges read through the I/O
    // engine one pooled buffer at a time with the next read in flight, bytes counted.
    let counted = Counted {
        shared: shared.clone(),
        proto: Proto::H3,
        tier: plan.tier,
    };
    let mut body = OcaBody::from_plan(plan.body, counted);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    stream
                        .send_data(data)
                        .await
                        .map_err(|e| format!("sending the body: {e}"))?;
                }
            }
            Err(e) => {
                // The head promised more bytes: reset the stream so the client sees an error
                // rather than a short body.
                stream.stop_stream(::h3::error::Code::H3_INTERNAL_ERROR);
                return Err(format!("reading the object: {e}"));
            }
        }
    }
    // RFC 9114 §4.1: a complete response may precede the end of the request. If the client
    // has not finished its side, ask it to stop with H3_NO_ERROR (dropping the stream would
    // stop it with code 0, which clients may take for an error).
    {
        use futures_util::FutureExt;
        if !matches!(stream.recv_data().now_or_never(), Some(Ok(None))) {
            stream.stop_sending(::h3::error::Code::H3_NO_ERROR);
        }
    }
    stream
        .finish()
        .await
        .map_err(|e| format!("finishing the stream: {e}"))
}
