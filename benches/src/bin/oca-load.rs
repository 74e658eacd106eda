//! `oca-load`: a small HTTP/1.1 keep-alive load client for plain-HTTP benchmarks on loopback.
//!
//! On loopback the receiver pays for copying every byte out of the socket, so a client that
//! reads bodies into user space (wrk, curl) is often the bottleneck, not the server. This one
//! parses each response head and then discards the body in the kernel with
//! `recv(MSG_TRUNC)`: on TCP, Linux drops the bytes without copying them, so the server is
//! what limits the run.
//!
//! One thread, one epoll loop, N connections, one request in flight per connection. A run
//! ends at `--duration` or after `--requests` responses, whichever comes first. Each response
//! is checked: status (200 for whole objects, 206 for `--range-bytes`) and `Content-Length`
//! (when `--object-bytes` or `--range-bytes` says what to expect); any mismatch counts as an
//! error and makes the exit status 2.

#![allow(unsafe_code)] // epoll and recv(MSG_TRUNC) through libc, each call commented.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use socket2::{Domain, Protocol, Socket, Type};

/// HTTP/1.1 keep-alive load client that discards bodies in the kernel (recv MSG_TRUNC).
///
/// Sends GET requests for random paths from --path/--paths-file over N keep-alive
/// connections, one request in flight per connection, and prints requests/s, GB/s (payload
/// bytes, 10^9) and p50/p99 latency. Exits 2 if any response had an unexpected status or
/// length, 1 on other errors.
#[derive(Debug, Parser)]
#[command(version)]
#[command(after_help = "Examples:
  oca-load http://127.0.0.1:8080 --path /o/t/r/seg-00001.m4s -c 16 -d 10s
  oca-load http://127.0.0.1:8080 --paths-file paths.txt --object-bytes 2097152 --range-bytes 16384
  oca-load http://127.0.0.1:8080 --paths-file paths.txt -n 100000 --kv   # one key=value line")]
struct Args {
    /// Base URL: http://HOST:PORT (plain HTTP only; no TLS).
    url: String,
    /// A request path (repeatable); each request picks one at random.
    #[arg(long = "path")]
    paths: Vec<String>,
    /// A file of request paths, one a line (added to --path).
    #[arg(long)]
    paths_file: Option<std::path::PathBuf>,
    /// Keep-alive connections.
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Stop after this long.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many responses (0 = no limit).
    #[arg(short = 'n', long, default_value_t = 0)]
    requests: u64,
    /// Size of every object; with --range-bytes, ranges are drawn inside it. Without
    /// --range-bytes, responses must be 200 with exactly this Content-Length.
    #[arg(long)]
    object_bytes: Option<u64>,
    /// Ask for random `Range: bytes=a-b` of this size, aligned to it, inside --object-bytes;
    /// responses must be 206 with this Content-Length.
    #[arg(long)]
    range_bytes: Option<u64>,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Give up on a response after this long without progress on its connection.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Seed of the path/range random generator.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Print one machine-readable `key=value` line instead of the human summary.
    #[arg(long)]
    kv: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 10s, 500ms, 1m)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// xorshift64*: enough for picking paths and ranges.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 { 0 } else { self.next() % n }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Writing the request (`written` bytes of `req` sent).
    Send,
    /// Reading the response head into `buf`.
    Head,
    /// Discarding `body_left` body bytes.
    Body,
    Closed,
}

struct Conn {
    sock: Socket,
    phase: Phase,
    req: Vec<u8>,
    written: usize,
    buf: Vec<u8>,
    filled: usize,
    body_left: u64,
    expect_status: u16,
    expect_len: Option<u64>,
    started: Instant,
    last_progress: Instant,
    close_after: bool,
}

#[derive(Default)]
struct Stats {
    ok: u64,
    errors: u64,
    payload_bytes: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

impl Stats {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

struct Target {
    host_header: String,
    addr: SocketAddr,
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("only http:// URLs are supported (got {url:?})");
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {with_port}"))?
        .next()
        .with_context(|| format!("{with_port} has no address"))?;
    Ok(Target {
        host_header: authority.to_owned(),
        addr,
    })
}

fn connect(addr: SocketAddr) -> anyhow::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.connect(&addr.into())
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

struct Load<'a> {
    args: &'a Args,
    target: &'a Target,
    paths: &'a [String],
    rng: Rng,
    extra_headers: String,
}

impl Load<'_> {
    /// Build the next request for `c` and put it in the Send phase.
    fn next_request(&mut self, c: &mut Conn) {
        let path = &self.paths[self.rng.below(self.paths.len() as u64) as usize];
        c.req.clear();
        let _ = write!(
            c.req,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: oca-load\r\n{}",
            self.target.host_header, self.extra_headers
        );
        match (self.args.range_bytes, self.args.object_bytes) {
            (Some(r), Some(total)) => {
                let slots = (total / r).max(1);
                let a = self.rng.below(slots) * r;
                let b = (a + r).min(total) - 1;
                let _ = write!(c.req, "Range: bytes={a}-{b}\r\n");
                c.expect_status = 206;
                c.expect_len = Some(b - a + 1);
            }
            (None, total) => {
                c.expect_status = 200;
                c.expect_len = total;
            }
            (Some(_), None) => unreachable!("checked in main"),
        }
        c.req.extend_from_slice(b"\r\n");
        c.written = 0;
        c.filled = 0;
        c.body_left = 0;
        c.close_after = false;
        c.phase = Phase::Send;
        c.started = Instant::now();
        c.last_progress = c.started;
    }
}

/// Outcome of parsing a response head.
enum HeadParse {
    Partial,
    Done {
        head_len: usize,
        status: u16,
        content_length: Option<u64>,
        close: bool,
    },
    Bad(String),
}

fn parse_head(buf: &[u8]) -> HeadParse {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return HeadParse::Partial;
    };
    let head_len = end + 4;
    let Ok(text) = std::str::from_utf8(&buf[..end]) else {
        return HeadParse::Bad("response head is not UTF-8".into());
    };
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return HeadParse::Bad(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return HeadParse::Bad(format!("bad status line {status_line:?}"));
    }
    let Ok(status) = code.parse::<u16>() else {
        return HeadParse::Bad(format!("bad status line {status_line:?}"));
    };
    let mut content_length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return HeadParse::Bad(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(v) => content_length = Some(v),
                Err(_) => return HeadParse::Bad(format!("bad content-length {value:?}")),
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return HeadParse::Bad("chunked responses are not supported".into());
        }
    }
    HeadParse::Done {
        head_len,
        status,
        content_length,
        close,
    }
}

/// Discard up to `len` bytes queued on a TCP socket without copying them to user space.
/// Returns Ok(0) at EOF, Err(WouldBlock) when nothing is queued.
fn recv_discard(fd: i32, len: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel skips the copy to user space and never
    // dereferences the buffer pointer (tcp_recvmsg only copies when MSG_TRUNC is clear), so a
    // null pointer with any length is valid; fd is an open socket owned by the caller.
    let n = unsafe {
        libc::recv(
            fd,
            std::ptr::null_mut(),
            len,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

enum Step {
    /// Progress was made; keep going.
    Again,
    /// Would block: wait for the next event.
    Wait,
    /// A response completed.
    Done,
    /// The connection failed.
    Fail(String),
}

/// Drive one connection as far as it can go without blocking.
fn step(c: &mut Conn) -> Step {
    let fd = c.sock.as_raw_fd();
    match c.phase {
        Phase::Closed => Step::Wait,
        Phase::Send => match c
            .sock
            .send_with_flags(&c.req[c.written..], libc::MSG_NOSIGNAL)
        {
            Ok(n) => {
                c.written += n;
                c.last_progress = Instant::now();
                if c.written == c.req.len() {
                    c.phase = Phase::Head;
                }
                Step::Again
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Wait,
            Err(e) => Step::Fail(format!("send: {e}")),
        },
        Phase::Head => {
            if c.filled == c.buf.len() {
                if c.buf.len() >= 64 << 10 {
                    return Step::Fail("response head larger than 64 KiB".into());
                }
                c.buf.resize(c.buf.len() * 2, 0);
            }
            let n = match (&c.sock).read(&mut c.buf[c.filled..]) {
                Ok(0) => return Step::Fail("connection closed before the response head".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) => return Step::Fail(format!("recv: {e}")),
            };
            c.filled += n;
            c.last_progress = Instant::now();
            match parse_head(&c.buf[..c.filled]) {
                HeadParse::Partial => Step::Again,
                HeadParse::Bad(why) => Step::Fail(why),
                HeadParse::Done {
                    head_len,
                    status,
                    content_length,
                    close,
                } => {
                    if status != c.expect_status {
                        return Step::Fail(format!(
                            "status {status}, expected {}",
                            c.expect_status
                        ));
                    }
                    let Some(cl) = content_length else {
                        return Step::Fail("response without Content-Length".into());
                    };
                    if let Some(want) = c.expect_len
                        && cl != want
                    {
                        return Step::Fail(format!("Content-Length {cl}, expected {want}"));
                    }
                    let already = (c.filled - head_len) as u64;
                    if already > cl {
                        return Step::Fail(
                            "more bytes than Content-Length (pipelining is off)".into(),
                        );
                    }
                    c.body_left = cl - already;
                    c.close_after = close;
                    c.expect_len = Some(cl);
                    if c.body_left == 0 {
                        Step::Done
                    } else {
                        c.phase = Phase::Body;
                        Step::Again
                    }
                }
            }
        }
        Phase::Body => {
            let want = c.body_left.min(1 << 30) as usize;
            match recv_discard(fd, want) {
                Ok(0) => Step::Fail("connection closed in the middle of a body".into()),
                Ok(n) => {
                    c.body_left -= n.min(want) as u64;
                    c.last_progress = Instant::now();
                    if c.body_left == 0 {
                        Step::Done
                    } else {
                        Step::Again
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Wait,
                Err(e) => Step::Fail(format!("recv: {e}")),
            }
        }
    }
}

struct Epoll(i32);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Epoll(fd))
        }
    }

    fn ctl(&self, op: i32, fd: i32, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: events is a valid, writable slice of epoll_event of the given length.
        let n = unsafe {
            libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            }
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.0) };
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)])
}

fn run(args: &Args) -> anyhow::Result<(Stats, Duration)> {
    let target = parse_url(&args.url)?;
    let mut paths: Vec<String> = args.paths.clone();
    if let Some(f) = &args.paths_file {
        let file = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
        for line in io::BufReader::new(file).lines() {
            let line = line?;
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                paths.push(line.to_owned());
            }
        }
    }
    if paths.is_empty() {
        bail!("no paths: give --path or --paths-file");
    }
    if let Some(p) = paths
        .iter()
        .find(|p| !p.starts_with('/') || p.contains(char::is_whitespace))
    {
        bail!("bad path {p:?}: paths start with / and contain no spaces");
    }
    if args.range_bytes.is_some() && args.object_bytes.is_none() {
        bail!("--range-bytes needs --object-bytes");
    }
    if args.range_bytes == Some(0) {
        bail!("--range-bytes must be positive");
    }
    if args.connections == 0 {
        bail!("--connections must be positive");
    }
    let mut extra_headers = String::new();
    for h in &args.headers {
        if !h.contains(':') || h.contains(['\r', '\n']) {
            bail!("bad header {h:?}: use \"Name: value\"");
        }
        extra_headers.push_str(h);
        extra_headers.push_str("\r\n");
    }
    let mut load = Load {
        args,
        target: &target,
        paths: &paths,
        rng: Rng(args.seed | 1),
        extra_headers,
    };

    let epoll = Epoll::new()?;
    let mut conns = Vec::with_capacity(args.connections);
    let now = Instant::now();
    for i in 0..args.connections {
        let sock = connect(target.addr)?;
        epoll.ctl(
            libc::EPOLL_CTL_ADD,
            sock.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET | libc::EPOLLRDHUP) as u32,
            i as u64,
        )?;
        conns.push(Conn {
            sock,
            phase: Phase::Closed,
            req: Vec::with_capacity(256),
            written: 0,
            buf: vec![0; 2048],
            filled: 0,
            body_left: 0,
            expect_status: 200,
            expect_len: None,
            started: now,
            last_progress: now,
            close_after: false,
        });
    }

    let mut stats = Stats {
        latencies_us: Vec::with_capacity(1 << 20),
        ..Stats::default()
    };
    let start = Instant::now();
    let deadline = start + args.duration;
    let limit = if args.requests == 0 {
        u64::MAX
    } else {
        args.requests
    };
    let mut issued = 0u64;
    let mut open = 0usize;
    // Edge-triggered: every connection starts with a request and is driven until it blocks.
    let mut ready: Vec<usize> = Vec::with_capacity(conns.len());
    for (i, c) in conns.iter_mut().enumerate() {
        if issued < limit {
            load.next_request(c);
            issued += 1;
            open += 1;
            ready.push(i);
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns.len().max(1)];
    let mut last_sweep = Instant::now();
    let mut end = start;
    'outer: loop {
        while let Some(i) = ready.pop() {
            let c = &mut conns[i];
            loop {
                match step(c) {
                    Step::Again => continue,
                    Step::Wait => break,
                    Step::Done => {
                        let t = Instant::now();
                        stats.ok += 1;
                        stats.payload_bytes += c.expect_len.unwrap_or(0);
                        stats.latencies_us.push(
                            t.duration_since(c.started)
                                .as_micros()
                                .min(u128::from(u32::MAX)) as u32,
                        );
                        end = t;
                        if t >= deadline || stats.ok >= limit {
                            break 'outer;
                        }
                        if c.close_after || issued >= limit {
                            c.phase = Phase::Closed;
                            open -= 1;
                            if c.close_after {
                                stats.error(
                                    "server closed the connection (Connection: close)".into(),
                                );
                            }
                            if open == 0 {
                                break 'outer;
                            }
                            break;
                        }
                        load.next_request(c);
                        issued += 1;
                    }
                    Step::Fail(why) => {
                        stats.error(why);
                        c.phase = Phase::Closed;
                        open -= 1;
                        if open == 0 {
                            break 'outer;
                        }
                        break;
                    }
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            end = now;
            break;
        }
        if now.duration_since(last_sweep) >= Duration::from_millis(200) {
            last_sweep = now;
            for c in &mut conns {
                if c.phase != Phase::Closed && now.duration_since(c.last_progress) > args.timeout {
                    stats.error(format!("no progress for {:?}", args.timeout));
                    c.phase = Phase::Closed;
                    open -= 1;
                }
            }
            if open == 0 {
                end = now;
                break;
            }
        }
        let wait_ms = deadline.duration_since(now).as_millis().clamp(1, 100) as i32;
        let n = epoll.wait(&mut events, wait_ms)?;
        for ev in &events[..n] {
            let i = ev.u64 as usize;
            if conns[i].phase != Phase::Closed {
                ready.push(i);
            }
        }
    }
    Ok((stats, end.duration_since(start)))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (mut stats, elapsed) = match run(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("oca-load: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    stats.latencies_us.sort_unstable();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rps = stats.ok as f64 / secs;
    let gbps = stats.payload_bytes as f64 / secs / 1e9;
    let p50 = percentile(&stats.latencies_us, 50.0) / 1000.0;
    let p99 = percentile(&stats.latencies_us, 99.0) / 1000.0;
    let max = stats
        .latencies_us
        .last()
        .copied()
        .map_or(0.0, |v| f64::from(v) / 1000.0);
    if args.kv {
        println!(
            "requests={} errors={} bytes={} secs={:.3} rps={:.1} gbps={:.4} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
            stats.ok, stats.errors, stats.payload_bytes, secs, rps, gbps, p50, p99, max
        );
    } else {
        println!(
            "{} responses in {:.2} s over {} connections, {} errors",
            stats.ok, secs, args.connections, stats.errors
        );
        println!("  requests/s   {rps:.0}");
        println!(
            "  payload      {gbps:.3} GB/s ({} bytes)",
            stats.payload_bytes
        );
        println!("  latency      p50 {p50:.3} ms   p99 {p99:.3} ms   max {max:.3} ms");
    }
    if let Some(e) = &stats.first_error {
        eprintln!("oca-load: {} errors; first: {e}", stats.errors);
        return std::process::ExitCode::from(2);
    }
    if stats.ok == 0 {
        eprintln!("oca-load: no response completed");
        return std::process::ExitCode::from(2);
    }
    std::process::ExitCode::SUCCESS
}
