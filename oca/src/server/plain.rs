//! Plain HTTP/1.1 on the optional port, for peer fill and internal clients (DESIGN §4
//! "Zero-copy"): the request head is parsed with `httparse`, the same [`handler::plan`] decides
//! the response, and file bytes go from the page cache to the socket with `sendfile(2)`, never
//! through user space.
//!
//! Hand-written rather than hyper because hyper's body path copies every byte through a
//! user-space buffer; `sendfile` is what lets the plain port match nginx's CPU per GB
//! (DESIGN §9 measured ~230–320 CPU-ms/GB for sendfile vs ~260 for hyper with mmap'd bytes,
//! and hyper with reads costs more).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Buf, BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Duration, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::{self, Plan, PlanBody, Request, Shared};
use crate::metrics::{Listener, Proto, RefuseLabels, RefuseReason};
use crate::server::tls::{accept_error, canonical};
use crate::server::{ConnGuard, tune_socket};

const MAX_HEADERS: usize = 64;

/// Accept loop of the plain listener.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared
                .metrics
                .connections_refused
                .get_or_create(&RefuseLabels {
                    listener: Listener::Http,
                    reason: RefuseReason::ConnectionCap,
                })
                .inc();
            drop(tcp);
            continue;
        };
        tune_socket(&tcp);
        let guard = ConnGuard::new(shared.clone(), Listener::Http, permit);
        let shared = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _guard = guard;
            let mut tcp = tcp;
            if let Err(e) = connection(&mut tcp, peer, &shared, &cancel).await {
                tracing::debug!(%peer, error = %e, "plain connection ended with an error");
            }
            let linger = crate::server::LINGER.min(shared.config.limits.idle_timeout);
            crate::server::linger(tcp, linger).await;
        });
    }
}

/// What the head parser produced.
struct Head {
    method: Method,
    target: String,
    headers: HeaderMap,
    keep_alive: bool,
    /// HTTP/1.0: keep-alive must be confirmed with a `Connection: keep-alive` header.
    http10: bool,
    has_body: bool,
}

enum ParseOutcome {
    Complete(Head, usize),
    Partial,
    Bad(StatusCode, &'static str),
}

/// Parse a request head from the start of `buf`; a head longer than `max_head` bytes (whole,
/// or still incomplete at that size) is a 431.
fn parse_head(buf: &[u8], max_head: usize) -> ParseOutcome {
    const TOO_LARGE: ParseOutcome = ParseOutcome::Bad(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request head too large",
    );
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > max_head => return TOO_LARGE,
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return TOO_LARGE,
        Ok(httparse::Status::Partial) => return ParseOutcome::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return ParseOutcome::Bad(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            );
        }
        Err(_) => return ParseOutcome::Bad(StatusCode::BAD_REQUEST, "malformed request"),
    };
    let (Some(m), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return ParseOutcome::Bad(StatusCode::BAD_REQUEST, "malformed request");
    };
    let Ok(method) = Method::from_bytes(m.as_bytes()) else {
        return ParseOutcome::Bad(StatusCode::BAD_REQUEST, "malformed method");
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return ParseOutcome::Bad(StatusCode::BAD_REQUEST, "malformed header field");
        };
        headers.append(name, value);
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is a 400.
    if version == 1 && headers.get_all(header::HOST).iter().count() != 1 {
        return ParseOutcome::Bad(StatusCode::BAD_REQUEST, "HTTP/1.1 needs one Host header");
    }
    let conn_has = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let keep_alive = if version == 1 {
        !conn_has("close")
    } else {
        conn_has("keep-alive")
    };
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    // Absolute-form targets (RFC 9112 §3.2.2) are reduced to their path.
    let target = match path.find("://") {
        Some(i) => path[i + 3..].find('/').map_or("/", |j| &path[i + 3 + j..]),
        None => path,
    };
    ParseOutcome::Complete(
        Head {
            method,
            target: target.to_owned(),
            headers,
            keep_alive,
            http10: version == 0,
            has_body,
        },
        n,
    )
}

async fn connection(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) -> io::Result<()> {
    let limits = &shared.config.limits;
    let max_head = limits.max_header_bytes as usize;
    let idle = limits.idle_timeout;
    let client = canonical(peer.ip());
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Read one request head: the idle timeout runs until its first byte, then the
        // header-read timeout until its end.
        let mut deadline = None;
        let head = loop {
            if !buf.is_empty() {
                match parse_head(&buf, max_head) {
                    ParseOutcome::Complete(head, n) => {
                        buf.advance(n);
                        break head;
                    }
                    ParseOutcome::Partial => {}
                    ParseOutcome::Bad(status, msg) => {
                        return bad(tcp, shared, client, status, msg).await;
                    }
                }
            }
            let read = if buf.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    r = timeout(idle, read_some(tcp, &mut buf, max_head)) => r,
                }
            } else {
                let d = *deadline.get_or_insert_with(|| {
                    tokio::time::Instant::now() + limits.header_read_timeout
                });
                timeout_at(d, read_some(tcp, &mut buf, max_head)).await
            };
            match read {
                Err(_) | Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => {
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + limits.header_read_timeout);
                    }
                }
                Ok(Err(e)) => return Err(e),
            }
        };
        let req = Request {
            method: &head.method,
            target: &head.target,
            headers: &head.headers,
            client,
            proto: Proto::H1Plain,
        };
        let plan = handler::handle(shared, &req);
        // This port does not read request bodies: answer, then close.
        let keep = if head.keep_alive && !head.has_body && !cancel.is_cancelled() {
            if head.http10 {
                Keep::Confirm
            } else {
                Keep::Implicit
            }
        } else {
            Keep::Close
        };
        send(tcp, shared, plan, keep, idle).await?;
        if keep == Keep::Close {
            return Ok(());
        }
    }
}

/// Read at most enough to see whether a head exceeds `max_head` (pipelined requests beyond
/// that wait for the next read).
async fn read_some(tcp: &mut TcpStream, buf: &mut BytesMut, max_head: usize) -> io::Result<usize> {
    let room = (max_head + 1).saturating_sub(buf.len()).max(1);
    buf.reserve(room);
    let mut limited = (&mut *buf).limit(room);
    tcp.read_buf(&mut limited).await
}

#[cold]
async fn bad(
    tcp: &mut TcpStream,
    shared: &Arc<Shared>,
    client: IpAddr,
    status: StatusCode,
    message: &'static str,
) -> io::Result<()> {
    let code = if status == StatusCode::BAD_REQUEST {
        "bad_request"
    } else {
        "header_too_large"
    };
    let plan = handler::reject(
        handler::Reject {
            status,
            code,
            message,
        },
        None,
        None,
    );
    shared.record(Proto::H1Plain, &plan, Duration::ZERO);
    tracing::debug!(%client, %status, message, "bad request on the plain port");
    send(
        tcp,
        shared,
        plan,
        Keep::Close,
        shared.config.limits.idle_timeout,
    )
    .await?;
    let _ = tcp.shutdown().await;
    Ok(())
}

/// What happens to the connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Close after this response (`Connection: close`).
    Close,
    /// HTTP/1.1 persistence, the default.
    Implicit,
    /// HTTP/1.0 client that asked for keep-alive: confirm it (RFC 9112 Appendix C.2.2).
    Confirm,
}

fn write_head(out: &mut Vec<u8>, plan: &Plan, keep: Keep) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(plan.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(plan.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &plan.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    out.extend_from_slice(match keep {
        Keep::Implicit => b"\r\n\r\n".as_slice(),
        Keep::Confirm => b"\r\nconnection: keep-alive\r\n\r\n".as_slice(),
        Keep::Close => b"\r\nconnection: close\r\n\r\n".as_slice(),
    });
}

async fn send(
    tcp: &mut TcpStream,
    shared: &Arc<Shared>,
    plan: Plan,
    keep: Keep,
    idle: Duration,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    write_head(&mut head, &plan, keep);
    let tier = plan.tier;
    let stalled = || io::Error::new(io::ErrorKind::TimedOut, "client stopped reading");
    match plan.body {
        PlanBody::Empty => {
            timeout(idle, tcp.write_all(&head))
                .await
                .map_err(|_| stalled())??;
        }
        PlanBody::Bytes(b) => {
            if b.len() <= 16 << 10 {
                head.extend_from_slice(&b);
                timeout(idle, tcp.write_all(&head))
                    .await
                    .map_err(|_| stalled())??;
            } else {
                timeout(idle, tcp.write_all(&head))
                    .await
                    .map_err(|_| stalled())??;
                timeout(idle, tcp.write_all(&b))
                    .await
                    .map_err(|_| stalled())??;
            }
            shared.count_bytes(Proto::H1Plain, tier, b.len() as u64);
        }
        PlanBody::File { path, offset, len } => {
            // Open off the runtime (ring thread or blocking pool).
            let file = match shared.open_file(path).await {
                Ok(f) => f,
                Err(e) => {
                    shared.metrics.read_errors.inc();
                    return Err(e);
                }
            };
            // The head goes with MSG_MORE so it leaves in the same segment as the first
            // file bytes.
            let mut sent = 0;
            while sent < head.len() {
                let n = timeout(
                    idle,
                    tcp.async_io(Interest::WRITABLE, || {
                        nix::sys::socket::send(
                            std::os::fd::AsRawFd::as_raw_fd(&*tcp),
                            &head[sent..],
                            nix::sys::socket::MsgFlags::from_bits_retain(
                                libc::MSG_MORE | libc::MSG_NOSIGNAL,
                            ),
                        )
                        .map_err(io::Error::from)
                    }),
                )
                .await
                .map_err(|_| stalled())??;
                sent += n;
            }
            let mut off = offset as i64;
            let end = (offset + len) as i64;
            while off < end {
                let want = (end - off).min(1 << 30) as usize;
                let n = timeout(
                    idle,
                    tcp.async_io(Interest::WRITABLE, || {
                        nix::sys::sendfile::sendfile64(
                            tcp.as_fd(),
                            file.as_fd(),
                            Some(&mut off),
                            want,
                        )
                        .map_err(io::Error::from)
                    }),
                )
                .await
                .map_err(|_| stalled())??;
                if n == 0 {
                    shared.metrics.read_errors.inc();
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object file shorter than its index entry",
                    ));
                }
                shared.count_bytes(Proto::H1Plain, tier, n as u64);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Head {
        match parse_head(buf, 16 << 10) {
            ParseOutcome::Complete(h, n) => {
                assert_eq!(n, buf.len());
                h
            }
            _ => panic!("not complete: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn heads() {
        let h = complete(b"GET /o/a/b HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n");
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.target, "/o/a/b");
        assert!(h.keep_alive && !h.has_body);
        let h =
            complete(b"GET http://x:80/o/a/b?d=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(h.target, "/o/a/b?d=1");
        assert!(!h.keep_alive);
        let h = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive);
        let h = complete(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
        assert!(h.has_body);
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHo", 16 << 10),
            ParseOutcome::Partial
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\n\r\n", 16 << 10),
            ParseOutcome::Bad(StatusCode::BAD_REQUEST, _)
        ));
        assert!(matches!(
            parse_head(b"G\0T / HTTP/1.1\r\nHost: x\r\n\r\n", 16 << 10),
            ParseOutcome::Bad(StatusCode::BAD_REQUEST, _)
        ));
        // A whole head over the limit, and an unfinished one that reached it, are 431.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200)
        );
        assert!(matches!(
            parse_head(big.as_bytes(), 128),
            ParseOutcome::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
        ));
        assert!(matches!(
            parse_head(&big.as_bytes()[..128], 128),
            ParseOutcome::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
        ));
        assert!(matches!(
            parse_head(big.as_bytes(), big.len()),
            ParseOutcome::Complete(..)
        ));
        let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert!(matches!(
            parse_head(req.as_bytes(), 16 << 10),
            ParseOutcome::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, _)
        ));
    }
}
