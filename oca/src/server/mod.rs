//! Public listeners. [`tls`] serves HTTP/1.1 and HTTP/2 over rustls through hyper; [`plain`]
//! serves HTTP/1.1 on the plain port with `sendfile`; [`h3`] serves HTTP/3 over QUIC. All
//! call [`crate::handler::plan`].

pub mod h3;
pub mod plain;
pub mod tls;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use crate::handler::Shared;
use crate::metrics::{Listener, ListenerLabels};

/// Holds a connection slot: counts the connection as open until dropped.
#[derive(Debug)]
pub struct ConnGuard {
    shared: Arc<Shared>,
    listener: Listener,
    _permit: OwnedSemaphorePermit,
}

impl ConnGuard {
    pub fn new(shared: Arc<Shared>, listener: Listener, permit: OwnedSemaphorePermit) -> ConnGuard {
        shared.open_connections.fetch_add(1, Ordering::Relaxed);
        let l = ListenerLabels { listener };
        shared.metrics.connections.get_or_create(&l).inc();
        shared.metrics.connections_open.get_or_create(&l).inc();
        ConnGuard {
            shared,
            listener,
            _permit: permit,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.shared
            .metrics
            .connections_open
            .get_or_create(&ListenerLabels {
                listener: self.listener,
            })
            .dec();
    }
}

/// When bytes last moved on a connection, in milliseconds since `base`.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no bytes have moved for `idle`.
    pub async fn idle(&self, idle: Duration) {
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            let deadline = self.base + Duration::from_millis(last) + idle;
            tokio::time::sleep_until(deadline.into()).await;
            if self.last_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

/// An I/O wrapper that records activity, so a connection where nothing moves either way for
/// `idle-timeout` can be closed (a slow-header or stalled client holds no slot forever).
#[derive(Debug)]
pub struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> IdleIo<T> {
        IdleIo { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a closing connection keeps reading what the client still sends.
pub const LINGER: Duration = Duration::from_secs(5);

/// Lingering close (as nginx's `lingering_close`): half-close, then read and discard until
/// the client closes or `max` passes. Closing a socket that still has unread input makes the
/// kernel send RST, and an RST makes the client drop response bytes it has not read yet — the
/// tail of a response finished during a drain, for example (h2 clients keep sending
/// WINDOW_UPDATEs while they read).
pub async fn linger(mut s: tokio::net::TcpStream, max: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.shutdown().await;
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(max, async {
        while let Ok(n) = s.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Lingering close for a socket that another owner (hyper) has already dropped: `fd` is a
/// duplicate taken before handing the stream over, which kept the connection open.
pub async fn linger_fd(fd: std::os::fd::OwnedFd, max: Duration) {
    let std = std::net::TcpStream::from(fd);
    if std.set_nonblocking(true).is_err() {
        return;
    }
    if let Ok(s) = tokio::net::TcpStream::from_std(std) {
        linger(s, max).await;
    }
}

/// Set the socket options every public connection gets.
pub fn tune_socket(s: &tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
}
