//! A token bucket per appliance (DESIGN §6 "per-appliance rate cap"): pure, every call takes
//! `now`, so the schedule it produces is tested with a fixed clock.
//!
//! Reservation style: [`TokenBucket::take`] debits the bytes at once and returns how long the
//! caller must wait before sending them. Bytes leave no earlier than they are paid for, so in
//! any interval of length `T` at most `burst + rate × T` bytes are released. With the default
//! burst of a quarter second of rate, a 10 s window stays within 2.5 % of the cap.
//! What it does not do: sleep, or know about budgets (see `execute`).

use std::time::{Duration, Instant};

/// Burst allowance in seconds of rate, used by [`TokenBucket::with_default_burst`].
pub const DEFAULT_BURST_SECS: f64 = 0.25;

/// A token bucket in bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: f64,
    /// Largest balance, bytes.
    burst: f64,
    /// Current balance (negative while reservations wait).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    /// A bucket releasing `rate_bytes_per_sec` (at least 1) with a `burst` balance (bytes),
    /// starting full at `now`.
    pub fn new(rate_bytes_per_sec: u64, burst: u64, now: Instant) -> TokenBucket {
        let rate = rate_bytes_per_sec.max(1) as f64;
        TokenBucket {
            rate,
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
        }
    }

    /// A bucket with a burst of [`DEFAULT_BURST_SECS`] of rate (at least 1 byte).
    pub fn with_default_burst(rate_bytes_per_sec: u64, now: Instant) -> TokenBucket {
        let burst = ((rate_bytes_per_sec as f64) * DEFAULT_BURST_SECS).max(1.0) as u64;
        TokenBucket::new(rate_bytes_per_sec, burst, now)
    }

    /// The rate from a sites file's `fill-rate-bps` (bits per second).
    pub fn from_bps(bits_per_sec: u64, now: Instant) -> TokenBucket {
        TokenBucket::with_default_burst((bits_per_sec / 8).max(1), now)
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Reserve `n` bytes at `now`; the caller sends them after the returned wait.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_sends_its_burst_at_once_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 500, t0);
        assert_eq!(b.take(500, t0), Duration::ZERO);
        assert_eq!(b.take(250, t0), Duration::from_millis(250));
        // 250 ms later the debt is paid; 1000 more bytes wait one second.
        assert_eq!(
            b.take(1000, t0 + Duration::from_millis(250)),
            Duration::from_secs(1)
        );
        // Idle time refills no further than the burst.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(b.take(500, later), Duration::ZERO);
        assert!(b.take(1, later) > Duration::ZERO);
    }

    #[test]
    fn from_bps_converts_bits_to_bytes() {
        let b = TokenBucket::from_bps(16_000_000, Instant::now());
        assert_eq!(b.rate(), 2_000_000);
    }

    /// The speed rule on the bucket's own schedule: a sender that reserves 64 KiB
    /// chunks as fast as the bucket lets it, for 60 s at 2 MB/s; in every 10 s window (slid
    /// in 10 ms steps) the bytes released stay within cap × 10 s × 1.05.
    #[test]
    fn no_ten_second_window_exceeds_the_cap_by_more_than_five_percent() {
        let rate = 2_000_000u64;
        let t0 = Instant::now();
        let mut b = TokenBucket::with_default_burst(rate, t0);
        let chunk = 64 * 1024u64;
        let mut now = t0;
        let mut sends: Vec<(Duration, u64)> = Vec::new();
        while now - t0 < Duration::from_secs(60) {
            let wait = b.take(chunk, now);
            now += wait;
            sends.push((now - t0, chunk));
        }
        let total: u64 = sends.iter().map(|s| s.1).sum();
        // It is not idle either: over the minute it sends at least 95 % of the cap.
        assert!(total as f64 >= 0.95 * 60.0 * rate as f64, "{total}");
        let window = Duration::from_secs(10);
        let limit = 1.05 * 10.0 * rate as f64;
        let mut start = Duration::ZERO;
        while start + window <= Duration::from_secs(60) {
            let in_window: u64 = sends
                .iter()
                .filter(|(t, _)| *t >= start && *t < start + window)
                .map(|s| s.1)
                .sum();
            assert!(
                (in_window as f64) <= limit,
                "{in_window} bytes in the 10 s from {start:?}"
            );
            start += Duration::from_millis(10);
        }
    }
}
