//! HTTP/3 over QUIC (quinn + h3) on `server.h3-listen`, with the same certificate and key as
//! the TLS listener. Every request goes through [`crate::handler::plan`] like h1 and h2, so
//! ranges, tokens, CORS, limits, access logs and metrics behave the same.
//!
//! Connections count against the same connection cap as TCP. On drain a connection sends
//! GOAWAY, its in-flight requests finish, then it closes.
//!
//! The response head goes through `h3` (QPACK); the body does not: [`quic`] lets the responder
//! take the request stream's QUIC send half and write DATA frames whose payloads are the body's
//! own `Bytes`, so no body byte is copied before quinn packs it into packets (through
//! `h3-quinn` each byte was copied once more; ~12% of the server's user-space instructions
//! per GB on 2 MiB objects, measured with callgrind).

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

type H3Conn = ::h3::server::Connection<quic::Conn, Bytes>;
type H3Stream = ::h3::server::RequestStream<quic::Bidi, Bytes>;

/// The quinn server config: QUIC crypto from [`crate::server::tls::load_quic`] plus
/// [`transport_config`].
pub fn server_config(crypto: Arc<QuicServerConfig>, l: &LimitsConfig) -> quinn::ServerConfig {
    let mut cfg = quinn::ServerConfig::with_crypto(crypto);
    cfg.transport_config(Arc::new(transport_config(l)));
    cfg
}

/// The QUIC transport settings from `[limits]`. Left at quinn's defaults, on purpose: the
/// path MTU (discovery up to 1452-byte UDP payloads, right for 1500-byte networks), GSO
/// (on; quinn 0.11 sends at most 10 segments per `sendmsg`), Cubic and pacing.
pub fn transport_config(l: &LimitsConfig) -> TransportConfig {
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
    // Off (the default): a connection's responses go out one after another (RFC 9218 §4:
    // non-incremental responses of one urgency are served one at a time), so consecutive
    // packets carry consecutive bytes of one object. Round-robin per packet costs ~1.5% more
    // instructions per GB on 2 MiB objects (benches/README.md, "### HTTP/3").
    t.send_fairness(l.h3_interleave_responses);
    if l.h3_ack_every_packets > 0 {
        // Only clients that announce the ACK-frequency extension (min_ack_delay) act on it.
        let mut a = quinn::AckFrequencyConfig::default();
        a.ack_eliciting_threshold(VarInt::from_u32(l.h3_ack_every_packets - 1));
        t.ack_frequency_config(Some(a));
    }
    t
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
    let bodies = quic::Bodies::default();
    let built = ::h3::server::builder()
        .max_field_section_size(max_field)
        .build::<_, Bytes>(quic::Conn::new(conn.clone(), bodies.clone()))
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
                let bodies = bodies.clone();
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
                    if let Err(e) = respond(&shared, &bodies, req, stream, client).await {
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
    // What the transport did, for diagnosing throughput or CPU (log.level "oca=debug").
    let s = conn.stats();
    tracing::debug!(
        %peer,
        udp_tx_datagrams = s.udp_tx.datagrams,
        udp_tx_sends = s.udp_tx.ios,
        packets_sent = s.path.sent_packets,
        packets_lost = s.path.lost_packets,
        ack_frames_sent = s.frame_tx.acks,
        ack_frames_received = s.frame_rx.acks,
        stream_frames_sent = s.frame_tx.stream,
        rtt_us = s.path.rtt.as_micros() as u64,
        cwnd = s.path.cwnd,
        mtu = s.path.current_mtu,
        "HTTP/3 connection closed"
    );
}

/// One request through the shared handler; the response head through `h3`, the body as
/// DATA frames straight onto the QUIC stream (see [`quic`]).
async fn respond(
    shared: &Arc<Shared>,
    bodies: &quic::Bodies,
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
    let Some(mut out) = bodies.take(stream.id()) else {
        // Every request stream is registered when it is accepted; not finding it is a bug.
        stream.stop_stream(::h3::error::Code::H3_INTERNAL_ERROR);
        return Err("the request stream's send half is missing".into());
    };
    // The same body as h1/h2: RAM slices as they are, file ranges read through the I/O
    // engine one pooled buffer at a time with the next read in flight, bytes counted. Each
    // chunk is one DATA frame, handed to quinn without a copy.
    let counted = Counted {
        shared: shared.clone(),
        proto: Proto::H3,
        tier: plan.tier,
    };
    let mut body = OcaBody::from_plan(plan.body, counted);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    let mut chunks = [data_frame_header(data.len() as u64), data];
                    out.write_all_chunks(&mut chunks)
                        .await
                        .map_err(|e| format!("sending the body: {e}"))?;
                }
            }
            Err(e) => {
                // The head promised more bytes: reset the stream so the client sees an error
                // rather than a short body.
                let _ = out.reset(
                    VarInt::from_u64(u64::from(::h3::error::Code::H3_INTERNAL_ERROR))
                        .unwrap_or(VarInt::MAX),
                );
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
    out.finish()
        .map_err(|e| format!("finishing the stream: {e}"))
}

/// The HTTP/3 frame header of a DATA frame carrying `len` bytes (RFC 9114 §7.2.1): the type
/// (0x00) and the length, both QUIC variable-length integers (RFC 9000 §16).
fn data_frame_header(len: u64) -> Bytes {
    let mut h = Vec::with_capacity(9);
    h.push(0x00);
    match len {
        0..=0x3f => h.push(len as u8),
        0x40..=0x3fff => h.extend_from_slice(&(0x4000 | len as u16).to_be_bytes()),
        0x4000..=0x3fff_ffff => h.extend_from_slice(&(0x8000_0000 | len as u32).to_be_bytes()),
        _ => h.extend_from_slice(&(0xc000_0000_0000_0000 | len).to_be_bytes()),
    }
    Bytes::from(h)
}

/// The QUIC side of the `h3` crate's transport traits, for the server: `h3-quinn` for the
/// unidirectional (control and QPACK) streams, and request streams of our own whose send half
/// can be taken out by [`respond`], which then writes the body's DATA frames with
/// [`quinn::SendStream::write_all_chunks`]: the `Bytes` (RAM slices, pooled read buffers) go
/// into quinn's send buffer as they are, where `h3-quinn` copies every body byte into a `Vec`
/// (`SendStream::write(&[u8])`) before quinn copies it again into packets.
mod quic {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, MutexGuard, Weak};
    use std::task::{Context, Poll, ready};

    use bytes::{Buf, Bytes};
    use futures_util::StreamExt;
    use futures_util::stream::BoxStream;
    use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
    use tokio_util::sync::ReusableBoxFuture;

    /// A request stream's send half, `None` once the responder has taken it.
    type Slot = Arc<Mutex<Option<quinn::SendStream>>>;

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn h3_id(id: quinn::StreamId) -> Option<StreamId> {
        StreamId::try_from(u64::from(id)).ok()
    }

    /// The send halves of a connection's request streams, by stream id, so the responder can
    /// take one over once `h3` has written the response head.
    #[derive(Clone, Default)]
    pub(super) struct Bodies(Arc<Mutex<HashMap<StreamId, WeakSlot>>>);

    type WeakSlot = Weak<Mutex<Option<quinn::SendStream>>>;

    impl Bodies {
        fn insert(&self, id: StreamId, slot: &Slot) {
            let mut m = lock(&self.0);
            // Entries of requests that never reached the responder (bad heads, timeouts) die
            // with their stream; sweep them now and then.
            if m.len() >= 256 {
                m.retain(|_, w| w.strong_count() > 0);
            }
            m.insert(id, Arc::downgrade(slot));
        }

        /// The send half of request stream `id`, taken away from `h3` (which then writes
        /// nothing more on it: finishing and resetting it are the caller's job).
        pub(super) fn take(&self, id: StreamId) -> Option<quinn::SendStream> {
            let slot = lock(&self.0).remove(&id)?.upgrade()?;
            lock(&slot).take()
        }
    }

    type Accepted = Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError>;

    /// A server-side QUIC connection for `h3`.
    pub(super) struct Conn {
        inner: h3_quinn::Connection,
        incoming_bi: BoxStream<'static, Accepted>,
        bodies: Bodies,
    }

    impl Conn {
        pub(super) fn new(conn: quinn::Connection, bodies: Bodies) -> Conn {
            let incoming_bi = futures_util::stream::unfold(conn.clone(), |c| async {
                Some((c.accept_bi().await, c))
            })
            .boxed();
            Conn {
                inner: h3_quinn::Connection::new(conn),
                incoming_bi,
                bodies,
            }
        }
    }

    fn conn_error(e: quinn::ConnectionError) -> ConnectionErrorIncoming {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => {
                ConnectionErrorIncoming::ApplicationClose {
                    error_code: c.error_code.into_inner(),
                }
            }
            quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
            e => ConnectionErrorIncoming::Undefined(Arc::new(e)),
        }
    }

    fn read_error(e: quinn::ReadError) -> StreamErrorIncoming {
        match e {
            quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
                error_code: code.into_inner(),
            },
            quinn::ReadError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: conn_error(e),
            },
            e => StreamErrorIncoming::Unknown(Box::new(e)),
        }
    }

    fn write_error(e: quinn::WriteError) -> StreamErrorIncoming {
        match e {
            quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
                error_code: code.into_inner(),
            },
            quinn::WriteError::ConnectionLost(e) => StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: conn_error(e),
            },
            e => StreamErrorIncoming::Unknown(Box::new(e)),
        }
    }

    impl quic::Connection<Bytes> for Conn {
        type RecvStream = h3_quinn::RecvStream;
        type OpenStreams = Opener;

        fn poll_accept_recv(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Self::RecvStream, ConnectionErrorIncoming>> {
            quic::Connection::<Bytes>::poll_accept_recv(&mut self.inner, cx)
        }

        fn poll_accept_bidi(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Self::BidiStream, ConnectionErrorIncoming>> {
            let Some(accepted) = ready!(self.incoming_bi.poll_next_unpin(cx)) else {
                return Poll::Ready(Err(ConnectionErrorIncoming::InternalError(
                    "the stream of incoming QUIC streams ended".into(),
                )));
            };
            let (send, recv) = accepted.map_err(conn_error)?;
            let Some(id) = h3_id(send.id()) else {
                return Poll::Ready(Err(ConnectionErrorIncoming::InternalError(
                    "QUIC stream id out of range".into(),
                )));
            };
            let slot: Slot = Arc::new(Mutex::new(Some(send)));
            self.bodies.insert(id, &slot);
            Poll::Ready(Ok(Bidi {
                send: Send {
                    slot,
                    id,
                    writing: None,
                },
                recv: Recv::new(recv, id),
            }))
        }

        fn opener(&self) -> Self::OpenStreams {
            Opener(quic::Connection::<Bytes>::opener(&self.inner))
        }
    }

    /// Opens the server's unidirectional streams (through `h3-quinn`).
    pub(super) struct Opener(h3_quinn::OpenStreams);

    /// RFC 9114 §6.1: HTTP/3 servers do not open bidirectional streams.
    fn no_bidi() -> StreamErrorIncoming {
        StreamErrorIncoming::Unknown("an HTTP/3 server opens no bidirectional streams".into())
    }

    impl quic::OpenStreams<Bytes> for Opener {
        type BidiStream = Bidi;
        type SendStream = h3_quinn::SendStream<Bytes>;

        fn poll_open_bidi(
            &mut self,
            _cx: &mut Context<'_>,
        ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
            Poll::Ready(Err(no_bidi()))
        }

        fn poll_open_send(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
            quic::OpenStreams::<Bytes>::poll_open_send(&mut self.0, cx)
        }

        fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
            quic::OpenStreams::<Bytes>::close(&mut self.0, code, reason)
        }
    }

    impl quic::OpenStreams<Bytes> for Conn {
        type BidiStream = Bidi;
        type SendStream = h3_quinn::SendStream<Bytes>;

        fn poll_open_bidi(
            &mut self,
            _cx: &mut Context<'_>,
        ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
            Poll::Ready(Err(no_bidi()))
        }

        fn poll_open_send(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
            quic::OpenStreams::<Bytes>::poll_open_send(&mut self.inner, cx)
        }

        fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
            quic::OpenStreams::<Bytes>::close(&mut self.inner, code, reason)
        }
    }

    /// A request stream.
    pub(super) struct Bidi {
        send: Send,
        recv: Recv,
    }

    /// The send half of a request stream: `h3` writes the response head through it (copied,
    /// it is small); the body goes around it (see [`Bodies::take`]).
    pub(super) struct Send {
        slot: Slot,
        id: StreamId,
        writing: Option<WriteBuf<Bytes>>,
    }

    /// The receive half of a request stream (as `h3-quinn`'s: chunks as quinn holds them).
    pub(super) struct Recv {
        stream: Option<quinn::RecvStream>,
        id: StreamId,
        read: ReusableBoxFuture<
            'static,
            (
                quinn::RecvStream,
                Result<Option<quinn::Chunk>, quinn::ReadError>,
            ),
        >,
    }

    impl Recv {
        fn new(stream: quinn::RecvStream, id: StreamId) -> Recv {
            Recv {
                stream: Some(stream),
                id,
                read: ReusableBoxFuture::new(async { std::future::pending().await }),
            }
        }
    }

    impl quic::SendStream<Bytes> for Send {
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
            if let Some(data) = &mut self.writing {
                let mut slot = lock(&self.slot);
                let Some(stream) = slot.as_mut() else {
                    return Poll::Ready(Err(StreamErrorIncoming::Unknown(
                        "the response body writer owns this stream".into(),
                    )));
                };
                while data.has_remaining() {
                    let n = ready!(std::pin::Pin::new(&mut *stream).poll_write(cx, data.chunk()))
                        .map_err(write_error)?;
                    data.advance(n);
                }
            }
            self.writing = None;
            Poll::Ready(Ok(()))
        }

        fn send_data<T: Into<WriteBuf<Bytes>>>(
            &mut self,
            data: T,
        ) -> Result<(), StreamErrorIncoming> {
            if self.writing.is_some() {
                return Err(StreamErrorIncoming::Unknown(
                    "send_data while a write is pending".into(),
                ));
            }
            self.writing = Some(data.into());
            Ok(())
        }

        fn poll_finish(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
            match lock(&self.slot).as_mut() {
                Some(s) => Poll::Ready(
                    s.finish()
                        .map_err(|e| StreamErrorIncoming::Unknown(Box::new(e))),
                ),
                None => Poll::Ready(Ok(())),
            }
        }

        fn reset(&mut self, reset_code: u64) {
            if let Some(s) = lock(&self.slot).as_mut() {
                let _ = s.reset(quinn::VarInt::from_u64(reset_code).unwrap_or(quinn::VarInt::MAX));
            }
        }

        fn send_id(&self) -> StreamId {
            self.id
        }
    }

    impl quic::RecvStream for Recv {
        type Buf = Bytes;

        fn poll_data(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
            if let Some(mut stream) = self.stream.take() {
                self.read.set(async move {
                    let chunk = stream.read_chunk(usize::MAX, true).await;
                    (stream, chunk)
                });
            }
            let (stream, chunk) = ready!(self.read.poll(cx));
            self.stream = Some(stream);
            Poll::Ready(chunk.map(|c| c.map(|c| c.bytes)).map_err(read_error))
        }

        fn stop_sending(&mut self, error_code: u64) {
            if let Some(s) = self.stream.as_mut() {
                let _ = s.stop(quinn::VarInt::from_u64(error_code).unwrap_or(quinn::VarInt::MAX));
            }
        }

        fn recv_id(&self) -> StreamId {
            self.id
        }
    }

    impl quic::SendStream<Bytes> for Bidi {
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
            self.send.poll_ready(cx)
        }
        fn send_data<T: Into<WriteBuf<Bytes>>>(
            &mut self,
            data: T,
        ) -> Result<(), StreamErrorIncoming> {
            self.send.send_data(data)
        }
        fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
            self.send.poll_finish(cx)
        }
        fn reset(&mut self, reset_code: u64) {
            self.send.reset(reset_code)
        }
        fn send_id(&self) -> StreamId {
            self.send.send_id()
        }
    }

    impl quic::RecvStream for Bidi {
        type Buf = Bytes;
        fn poll_data(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
            self.recv.poll_data(cx)
        }
        fn stop_sending(&mut self, error_code: u64) {
            self.recv.stop_sending(error_code)
        }
        fn recv_id(&self) -> StreamId {
            self.recv.recv_id()
        }
    }

    impl quic::BidiStream<Bytes> for Bidi {
        type SendStream = Send;
        type RecvStream = Recv;
        fn split(self) -> (Send, Recv) {
            (self.send, self.recv)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{data_frame_header, transport_config};
    use crate::config::LimitsConfig;

    #[test]
    fn transport_config_follows_limits() {
        // quinn keeps the fields private; its Debug output names them.
        let d = format!("{:?}", transport_config(&LimitsConfig::default()));
        assert!(d.contains("send_fairness: false"), "{d}");
        assert!(d.contains("ack_frequency_config: None"), "{d}");
        assert!(d.contains("stream_receive_window: 1048576"), "{d}");
        assert!(d.contains("enable_segmentation_offload: true"), "{d}");

        let l = LimitsConfig {
            h3_interleave_responses: true,
            h3_ack_every_packets: 10,
            ..LimitsConfig::default()
        };
        let d = format!("{:?}", transport_config(&l));
        assert!(d.contains("send_fairness: true"), "{d}");
        assert!(d.contains("ack_eliciting_threshold: 9"), "{d}");
    }

    #[test]
    fn data_frame_header_is_type_zero_and_a_quic_varint_length() {
        // RFC 9000 §A.1 examples, plus each encoding's bounds.
        let cases: [(u64, &[u8]); 8] = [
            (0, &[0x00, 0x00]),
            (37, &[0x00, 0x25]),
            (63, &[0x00, 0x3f]),
            (64, &[0x00, 0x40, 0x40]),
            (15_293, &[0x00, 0x7b, 0xbd]),
            (16_384, &[0x00, 0x80, 0x00, 0x40, 0x00]),
            (494_878_333, &[0x00, 0x9d, 0x7f, 0x3e, 0x7d]),
            (
                151_288_809_941_952_652,
                &[0x00, 0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
            ),
        ];
        for (len, want) in cases {
            assert_eq!(&data_frame_header(len)[..], want, "length {len}");
        }
    }
}
