//! HTTP/3 load client for benches/http/run.sh: `--connections` QUIC connections (ALPN `h3`,
//! TLS 1.3, rustls with aws-lc-rs, trusting only `--cacert`), each with `--streams` requests
//! in flight, over `{prefix}{i:05}.m4s` for i = 1..=objects in round robin; optionally one
//! random aligned `--range-bytes` range per request. Every response's status (200, or 206 with
//! a range) and body length are checked; bodies are discarded. Prints one line:
//! `requests=N bytes=B secs=S errors=E p99_ms=X`; exits 2 if any request failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, Bytes};
use clap::Parser;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "oca-h3-load",
    about = "HTTP/3 load generator (quinn + h3) for the oca benchmark"
)]
struct Args {
    /// Server UDP address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    addr: SocketAddr,
    /// TLS server name (SNI and certificate check).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// PEM file with the certificate(s) to trust (nothing else is trusted).
    #[arg(long)]
    cacert: std::path::PathBuf,
    /// Request paths are `{prefix}{i:05}.m4s`, i = 1..=objects.
    #[arg(long, default_value = "/o/bench/r1/seg-")]
    path_prefix: String,
    /// Number of objects, requested in round robin.
    #[arg(long, default_value_t = 64)]
    objects: u64,
    /// Size of every object (the expected 200 body length, and the range space).
    #[arg(long, default_value_t = 2_097_152)]
    object_bytes: u64,
    /// Ask a random `range-bytes`-aligned range of this many bytes per request (expect 206).
    #[arg(long)]
    range_bytes: Option<u64>,
    /// QUIC connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Concurrent requests per connection.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 8)]
    duration: u64,
    /// The one TLS 1.3 suite offered (IANA name): TLS_AES_128_GCM_SHA256,
    /// TLS_AES_256_GCM_SHA384 or TLS_CHACHA20_POLY1305_SHA256.
    #[arg(long, default_value = "TLS_AES_128_GCM_SHA256")]
    cipher: String,
    /// Stop after this many requests (started) in all.
    #[arg(long, default_value_t = 100_000_000)]
    max_requests: u64,
    /// UDP receive and send buffer size asked of the kernel (bytes; it caps them at
    /// net.core.rmem_max / wmem_max). With the Linux default (~208 KiB) one client socket
    /// receiving from several fast connections overflows and drops datagrams, which the
    /// server then retransmits: a client artefact, not the server's cost. 0 keeps the default.
    #[arg(long, default_value_t = 4 << 20)]
    udp_buffer: usize,
}

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

struct Shared {
    args: Args,
    next: AtomicU64,
    deadline: Instant,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    bytes: u64,
    errors: u64,
    lat_us: Vec<u32>,
    first_error: Option<String>,
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(errors) => std::process::exit(if errors > 0 { 2 } else { 0 }),
        Err(e) => {
            eprintln!("oca-h3-load: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> Result<u64> {
    if args.objects == 0 || args.connections == 0 || args.streams == 0 || args.duration == 0 {
        bail!("--objects, --connections, --streams and --duration must be at least 1");
    }
    if let Some(r) = args.range_bytes
        && (r == 0 || r > args.object_bytes)
    {
        bail!("--range-bytes must be in 1..=--object-bytes");
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&args.cacert)
        .with_context(|| format!("read {}", args.cacert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parse {}", args.cacert.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", args.cacert.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).context("add certificate to the root store")?;
        }
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        let want = args.cipher.replace("TLS_", "TLS13_");
        provider
            .cipher_suites
            .retain(|cs| format!("{:?}", cs.suite()) == want);
        if provider.cipher_suites.is_empty() {
            bail!("unknown TLS 1.3 suite {}", args.cipher);
        }
        let provider = Arc::new(provider);
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let client_cfg = quinn::ClientConfig::new(Arc::new(quic));
        let endpoint = client_endpoint(args.udp_buffer).context("QUIC client endpoint")?;

        // Connect all first (bounded), then start the clock.
        let mut conns = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let conn = tokio::time::timeout(
                Duration::from_secs(10),
                endpoint.connect_with(client_cfg.clone(), args.addr, &args.server_name)?,
            )
            .await
            .context("QUIC handshake timed out")?
            .with_context(|| format!("QUIC handshake with {}", args.addr))?;
            let alpn = conn
                .handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.protocol);
            if alpn.as_deref() != Some(&b"h3"[..]) {
                bail!("ALPN: offered h3, the server chose {alpn:?}");
            }
            let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
                .await
                .context("h3 setup")?;
            tokio::spawn(async move {
                let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
            });
            if conns.is_empty() {
                eprintln!(
                    "oca-h3-load: connected, ALPN h3, offered only {}",
                    args.cipher
                );
            }
            conns.push((conn, send));
        }

        let start = Instant::now();
        let shared = Arc::new(Shared {
            args: args.clone(),
            next: AtomicU64::new(0),
            deadline: start + Duration::from_secs(args.duration),
        });
        let mut tasks = Vec::new();
        for (ci, (_, send)) in conns.iter().enumerate() {
            for si in 0..args.streams {
                let sh = shared.clone();
                let send = send.clone();
                let seed = 0x9E37_79B9_7F4A_7C15u64
                    ^ ((ci as u64) << 32 | si as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)
                    ^ u64::from(start.elapsed().subsec_nanos());
                tasks.push(tokio::spawn(worker(sh, send, seed | 1)));
            }
        }
        let mut total = Stats::default();
        // Every worker stops at the deadline; a hung one is abandoned 15 s after it.
        let hard = shared.deadline + Duration::from_secs(15);
        for t in tasks {
            match tokio::time::timeout_at(hard.into(), t).await {
                Ok(Ok(s)) => {
                    total.requests += s.requests;
                    total.bytes += s.bytes;
                    total.errors += s.errors;
                    total.lat_us.extend(s.lat_us);
                    if total.first_error.is_none() {
                        total.first_error = s.first_error;
                    }
                }
                Ok(Err(e)) => {
                    total.errors += 1;
                    total
                        .first_error
                        .get_or_insert(format!("worker panicked: {e}"));
                }
                Err(_) => {
                    total.errors += 1;
                    total
                        .first_error
                        .get_or_insert("worker did not stop 15 s after the deadline".into());
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        // What the transport did, summed over the connections (the server's packets seen
        // from this side): packets, ACK frames sent back (the server's per-ACK work scales
        // with the ACK count), the path MTU reached, losses. (quinn's
        // `udp_rx.ios` counts datagrams per connection, not receive system calls.)
        let (mut pk, mut acks, mut lost, mut mtu) = (0u64, 0u64, 0u64, 0u16);
        for (conn, _) in &conns {
            let st = conn.stats();
            pk += st.udp_rx.datagrams;
            acks += st.frame_tx.acks;
            lost += st.path.lost_packets;
            mtu = mtu.max(st.path.current_mtu);
        }
        eprintln!(
            "oca-h3-load: quic: {pk} packets received, {acks} ACK frames sent ({:.1} packets per ACK), \
             path MTU {mtu}, {lost} packets lost (sent by this side)",
            pk as f64 / acks.max(1) as f64
        );
        for (conn, _) in &conns {
            conn.close(0u32.into(), b"done");
        }
        drop(conns);
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;

        total.lat_us.sort_unstable();
        let p99_ms = if total.lat_us.is_empty() {
            0.0
        } else {
            let i = ((total.lat_us.len() - 1) as f64 * 0.99).round() as usize;
            f64::from(total.lat_us[i]) / 1e3
        };
        if let Some(e) = &total.first_error {
            eprintln!("oca-h3-load: {} errors; first: {e}", total.errors);
        }
        println!(
            "requests={} bytes={} secs={secs:.6} errors={} p99_ms={p99_ms:.3}",
            total.requests, total.bytes, total.errors
        );
        Ok(total.errors)
    })
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

async fn worker(sh: Arc<Shared>, mut send: Sender, mut rng: u64) -> Stats {
    let a = &sh.args;
    let mut st = Stats::default();
    loop {
        if Instant::now() >= sh.deadline {
            break;
        }
        let n = sh.next.fetch_add(1, Ordering::Relaxed);
        if n >= a.max_requests {
            break;
        }
        let path = format!("{}{:05}.m4s", a.path_prefix, n % a.objects + 1);
        let uri = format!("https://{}{}", a.server_name, path);
        let mut req = http::Request::get(uri);
        let (want_status, want_len) = match a.range_bytes {
            Some(r) => {
                let slots = a.object_bytes / r;
                let start = (xorshift(&mut rng) % slots) * r;
                req = req.header("range", format!("bytes={}-{}", start, start + r - 1));
                (206u16, r)
            }
            None => (200u16, a.object_bytes),
        };
        let req = match req.body(()) {
            Ok(r) => r,
            Err(e) => {
                st.errors += 1;
                st.first_error.get_or_insert(format!("build request: {e}"));
                break;
            }
        };
        let t0 = Instant::now();
        // Each request is bounded: it may run at most 10 s past the deadline.
        let limit = sh.deadline + Duration::from_secs(10);
        let r = tokio::time::timeout_at(limit.into(), one(&mut send, req)).await;
        let res = match r {
            Ok(r) => r,
            Err(_) => Err("request timed out".to_string()),
        };
        match res {
            Ok((status, len)) if status == want_status && len == want_len => {
                st.requests += 1;
                st.bytes += len;
                st.lat_us
                    .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok((status, len)) => {
                st.errors += 1;
                st.first_error.get_or_insert(format!(
                    "{path}: status {status} with {len} body bytes, expected {want_status} with {want_len}"
                ));
            }
            Err(e) => {
                st.errors += 1;
                st.first_error.get_or_insert(format!("{path}: {e}"));
                // A broken connection would fail every later request at once: stop this worker.
                break;
            }
        }
    }
    st
}

async fn one(send: &mut Sender, req: http::Request<()>) -> Result<(u16, u64), String> {
    let mut stream = send
        .send_request(req)
        .await
        .map_err(|e| format!("h3 request: {e}"))?;
    // The server may answer before reading the end of the request (RFC 9114 §4.1).
    let _ = stream.finish().await;
    let resp = stream
        .recv_response()
        .await
        .map_err(|e| format!("h3 response head: {e}"))?;
    let mut len = 0u64;
    while let Some(chunk) = stream
        .recv_data()
        .await
        .map_err(|e| format!("h3 body after {len} bytes: {e}"))?
    {
        len += chunk.remaining() as u64;
    }
    Ok((resp.status().as_u16(), len))
}

/// A client endpoint on 127.0.0.1 whose UDP socket asks for `buffer` bytes of receive and
/// send buffer (0: the kernel's defaults).
fn client_endpoint(buffer: usize) -> Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if buffer > 0 {
        sock.set_recv_buffer_size(buffer)?;
        sock.set_send_buffer_size(buffer)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        sock.into(),
        Arc::new(quinn::TokioRuntime),
    )?)
}
