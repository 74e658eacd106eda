//! HTTP/1.1 and HTTP/2 over TLS (rustls with aws-lc-rs), protocol chosen by ALPN.

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{Counted, OcaBody};
use crate::error::OcaError;
use crate::handler::{self, Request, Shared};
use crate::metrics::{Listener, Proto, RefuseLabels, RefuseReason};
use crate::server::{Activity, ConnGuard, IdleIo, tune_socket};

/// Read a PEM certificate chain and private key.
fn load_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), OcaError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| OcaError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| OcaError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(OcaError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| OcaError::Tls(format!("{}: {e}", key.display())))?;
    Ok((certs, key))
}

/// Load a certificate chain and key into a server config with ALPN `h2`, `http/1.1`.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, OcaError> {
    let (certs, key) = load_pem(cert, key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OcaError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| OcaError::Tls(format!("certificate and key do not go together: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Session tickets: returning players skip the full handshake.
    if let Ok(t) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        cfg.ticketer = t;
    }
    Ok(Arc::new(cfg))
}

/// The same certificate and key as [`load_tls`], as QUIC crypto for HTTP/3: TLS 1.3 only,
/// ALPN `h3`, no 0-RTT.
pub fn load_quic(
    cert: &Path,
    key: &Path,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, OcaError> {
    let (certs, key) = load_pem(cert, key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| OcaError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| OcaError::Tls(format!("certificate and key do not go together: {e}")))?;
    cfg.alpn_protocols = vec![b"h3".to_vec()];
    cfg.max_early_data_size = 0;
    if let Ok(t) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        cfg.ticketer = t;
    }
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(cfg)
        .map_err(|e| OcaError::Tls(format!("QUIC: {e}")))?;
    Ok(Arc::new(quic))
}

/// hyper connection builders, configured once from the limits.
#[derive(Debug, Clone)]
pub struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    pub fn new(shared: &Shared) -> Builders {
        let l = &shared.config.limits;
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(l.header_read_timeout)
            // Bounds the request head; a larger head is answered 431 by hyper.
            .max_buf_size(l.max_header_bytes as usize)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(l.h2_max_concurrent_streams)
            .initial_stream_window_size(l.h2_stream_window as u32)
            .initial_connection_window_size(l.h2_connection_window as u32)
            .max_header_list_size(l.max_header_bytes as u32)
            .max_send_buf_size(1 << 20);
        Builders { h1, h2 }
    }
}

/// Accept loop of the HTTPS listener. Returns when `cancel` fires; connections keep running
/// under `tracker` and shut down gracefully.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Arc<ArcSwap<ServerConfig>>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    h3_port: Option<u16>,
) {
    let builders = Builders::new(&shared);
    // `Alt-Svc: h3=":PORT"; ma=86400` on every TLS response when HTTP/3 is served.
    let alt_svc =
        h3_port.and_then(|p| HeaderValue::from_str(&format!("h3=\":{p}\"; ma=86400")).ok());
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
            refuse(&shared, RefuseReason::ConnectionCap);
            drop(tcp);
            continue;
        };
        tune_socket(&tcp);
        // A duplicate of the socket outlives hyper's stream, for the lingering close.
        let dup = std::os::fd::AsFd::as_fd(&tcp).try_clone_to_owned().ok();
        let guard = ConnGuard::new(shared.clone(), Listener::Https, permit);
        let acceptor = TlsAcceptor::from(tls.load_full());
        let shared = shared.clone();
        let builders = builders.clone();
        let cancel = cancel.clone();
        let alt_svc = alt_svc.clone();
        tracker.spawn(async move {
            let _guard = guard;
            let limits = &shared.config.limits;
            let stream =
                match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        refuse(&shared, RefuseReason::TlsHandshake);
                        return;
                    }
                    Err(_) => {
                        refuse(&shared, RefuseReason::HandshakeTimeout);
                        return;
                    }
                };
            let proto = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                Proto::H2
            } else {
                Proto::H1
            };
            let idle = limits.idle_timeout;
            let activity = Activity::new();
            let io = TokioIo::new(IdleIo::new(stream, activity.clone()));
            let client = canonical(peer.ip());
            let svc_shared = shared.clone();
            let svc = service_fn(move |req| {
                let mut resp = respond(&svc_shared, req, client, proto);
                if let Some(v) = &alt_svc {
                    resp.headers_mut().insert(http::header::ALT_SVC, v.clone());
                }
                std::future::ready(Ok::<_, Infallible>(resp))
            });
            macro_rules! drive {
                ($conn:expr) => {{
                    let conn = $conn;
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        _ = cancel.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            tokio::select! {
                                _ = conn.as_mut() => {}
                                _ = activity.idle(idle) => {}
                            }
                        }
                        _ = activity.idle(idle) => {
                            tracing::debug!(%peer, "idle timeout");
                        }
                    }
                }};
            }
            match proto {
                Proto::H2 => drive!(builders.h2.serve_connection(io, svc)),
                _ => drive!(builders.h1.serve_connection(io, svc)),
            }
            if let Some(fd) = dup {
                crate::server::linger_fd(fd, crate::server::LINGER.min(idle)).await;
            }
        });
    }
}

/// One request through the shared handler, as a hyper response.
pub fn respond(
    shared: &Arc<Shared>,
    req: hyper::Request<Incoming>,
    client: IpAddr,
    proto: Proto,
) -> hyper::Response<OcaBody> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let r = Request {
        method: req.method(),
        target,
        headers: req.headers(),
        client,
        proto,
    };
    let plan = handler::handle(shared, &r);
    let counted = Counted {
        shared: shared.clone(),
        proto,
        tier: plan.tier,
    };
    let mut resp = hyper::Response::new(OcaBody::from_plan(plan.body, counted));
    *resp.status_mut() = plan.status;
    *resp.headers_mut() = plan.headers;
    resp
}

/// IPv4-mapped IPv6 peers (dual-stack sockets) are treated as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn refuse(shared: &Shared, reason: RefuseReason) {
    refuse_on(shared, Listener::Https, reason);
}

/// Count a connection closed before serving anything.
pub fn refuse_on(shared: &Shared, listener: Listener, reason: RefuseReason) {
    shared
        .metrics
        .connections_refused
        .get_or_create(&RefuseLabels { listener, reason })
        .inc();
}

/// accept() fails on EMFILE/ENFILE/ENOMEM; back off briefly instead of spinning.
pub async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}
