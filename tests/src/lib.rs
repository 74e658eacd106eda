//! Shared helpers of the end-to-end tests (`tests/e2e.rs`): they run the real `oca` binary as
//! a child process against real clients.
//!
//! - [`fixture`]: a temp dir with a sample title (random bytes, every content type, a 0-byte
//!   and an ≥ 8 MiB object), a self-signed certificate, a signing key, an admin token and a
//!   config on free loopback ports;
//! - [`server`]: `oca serve` as a child process that is killed on drop, started once its
//!   `/readyz` answers, with signal, metrics and admin helpers;
//! - [`client`]: hyper 1 clients over rustls (HTTP/1.1 and HTTP/2 by ALPN, trusting only the
//!   test certificates) and plain TCP, an HTTP/3 client (quinn + h3, ALPN `h3`), raw sockets
//!   for malformed input, and the `curl` binary;
//! - [`metrics`]: reading samples out of the scraped exposition text.
//!
//! Nothing here sleeps to synchronise: waits are bounded polls for an event (a port that
//! answers, a metric that moves, a process that exits).

pub mod client;
pub mod fixture;
pub mod metrics;
pub mod server;
pub mod steering;

use std::future::Future;
use std::time::{Duration, Instant};

pub use client::{Proto, Resp};
pub use fixture::{Fixture, Opts};
pub use server::Server;

/// Pause between two tries of a bounded poll.
pub const POLL_PAUSE: Duration = Duration::from_millis(25);

/// Try `f` until it returns `Some`, for at most `limit`; panics naming `what` otherwise.
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t0.elapsed() < limit,
            "gave up after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

/// The strong ETag the appliance must send for `data` (DESIGN §2): the first 16 bytes of its
/// SHA-256 in hex, quoted.
pub fn etag_of(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    format!("\"{}\"", hex::encode(&d.as_ref()[..16]))
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut v).expect("randomness");
    v
}
