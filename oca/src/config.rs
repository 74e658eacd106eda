//! The appliance's configuration: serde TOML, kebab-case keys, human units, `validate()` right
//! after parsing. `oca/etc/oca.toml` is the commented template; a test parses it and compares
//! it with the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oca_storage::EnginePref;
use serde::{Deserialize, Deserializer};

use crate::error::OcaError;

/// Top-level configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub tokens: TokenConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub heartbeat: HeartbeatConfig,
    pub bgp: BgpConfig,
}

/// Identity and listeners.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerConfig {
    /// Appliance id, reported to steering and in `/v1/status`.
    pub id: String,
    /// HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN).
    pub https_listen: Option<SocketAddr>,
    /// Optional plain HTTP/1.1 listener (sendfile); for peer fill and internal clients.
    pub http_listen: Option<SocketAddr>,
    /// Optional HTTP/3 (QUIC, UDP) listener; same certificate and key as `[tls]`. When set,
    /// responses on the HTTPS listener advertise it with `Alt-Svc`.
    pub h3_listen: Option<SocketAddr>,
    /// When false, `GET /o/{key}` serves without a token (benches and local tests only).
    pub require_token: bool,
    /// How long in-flight requests may run after SIGTERM.
    #[serde(deserialize_with = "duration")]
    pub drain_deadline: Duration,
    /// Tokio worker threads; 0 = one per core.
    pub worker_threads: usize,
}

/// TLS certificate chain and key (PEM), reloaded on SIGHUP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Signed-URL checking (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TokenConfig {
    /// Key file: one TOML table per kid with `secret` in base64. Reloaded on SIGHUP.
    pub keys_file: PathBuf,
    /// Allowed clock skew when checking expiry.
    #[serde(deserialize_with = "duration")]
    pub clock_skew: Duration,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// SHA-256 (hex) of the admin bearer token; `oca hash-token` prints it.
    pub token_sha256: String,
}

/// One drive of the tiered store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DriveEntry {
    /// `flash` or `disk`.
    pub tier: oca_common::wire::Tier,
    /// The drive's mounted directory.
    pub path: PathBuf,
    /// Bytes the store may use on it.
    #[serde(with = "oca_common::units::bytes")]
    pub capacity: u64,
}

/// Storage: hand-placed objects under `root`, and the tiered store's drives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct StorageConfig {
    /// Hand-placed objects, indexed at start (read-only); `""` for none.
    pub root: PathBuf,
    /// The store's own state: failed drives, rendition manifests, inventory generation.
    pub state_dir: PathBuf,
    /// Drives of the `flash` and `disk` tiers (ingest writes here).
    pub drives: Vec<DriveEntry>,
    /// Journal records per drive before its index is compacted into a snapshot.
    pub compact_after: u64,
    /// Byte rate of promotions from disk to flash (0 = no promotion).
    #[serde(with = "oca_common::units::bytes")]
    pub promote_rate: u64,
    /// Frequency estimate (1–15) at which a disk object is promoted.
    pub promote_min_frequency: u8,
    /// Largest object accepted by `PUT /v1/objects/{key}` (413 above).
    #[serde(with = "oca_common::units::bytes")]
    pub max_ingest_bytes: u64,
    /// `auto` tries io_uring and falls back to pread; `io-uring` insists; `pread` forces it.
    pub io_engine: EnginePref,
    /// Bytes of the hottest small objects kept in locked memory.
    #[serde(with = "oca_common::units::bytes")]
    pub ram_bytes: u64,
    /// Larger objects never go to RAM.
    #[serde(with = "oca_common::units::bytes")]
    pub ram_max_object: u64,
    /// Read size per I/O (and pooled buffer size).
    #[serde(with = "oca_common::units::bytes")]
    pub read_size: u64,
    /// Object files kept open between requests (0 = open and close per request).
    pub open_files: usize,
    /// Read bytes already in the page cache on the worker with `preadv2(RWF_NOWAIT)`, which
    /// never blocks; only uncached reads go to the I/O engine.
    pub page_cache_fast_path: bool,
}

/// Protocol limits and timeouts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_connections: usize,
    #[serde(with = "oca_common::units::bytes")]
    pub max_header_bytes: u64,
    pub max_url_bytes: usize,
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub tls_handshake_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    #[serde(with = "oca_common::units::bytes")]
    pub h2_stream_window: u64,
    #[serde(with = "oca_common::units::bytes")]
    pub h2_connection_window: u64,
    /// HTTP/3: interleave the responses in flight on one connection packet by packet (quinn's
    /// fair queueing). false (the default) sends them one after another in request order, as
    /// RFC 9218 asks for non-incremental responses (the default priority); that also costs
    /// the server slightly less CPU per GB (one object's bytes packed in a row).
    pub h3_interleave_responses: bool,
    /// HTTP/3: ask clients to acknowledge once per this many ack-eliciting packets (the QUIC
    /// ACK-frequency extension; clients that do not support it ignore the request). 0 = do
    /// not ask (clients use their own rule, RFC 9000: about every second packet).
    pub h3_ack_every_packets: u32,
}

/// Heartbeats to steering (DESIGN §4 "Heartbeat"); off while `endpoints` is empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Steering base URLs (`http://host:port`); every one gets every heartbeat.
    pub endpoints: Vec<String>,
    /// File holding this appliance's bearer token (first line).
    pub token_file: PathBuf,
    /// Time between heartbeats (steering may ask for another).
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Site id from the sites file.
    pub site: String,
    /// Cluster id from the sites file.
    pub cluster: String,
    /// Base URLs players use to reach this appliance, e.g. `https://oca-1.example.net`.
    pub public_urls: Vec<String>,
    /// Egress capacity, bit/s (an integer, or e.g. "10Gbps"); 0 = unknown.
    #[serde(with = "oca_common::sites::bps")]
    pub capacity_bps: u64,
    /// Client prefixes this appliance serves, CIDR, when `[bgp]` is off (BIRD reports the
    /// learned ones otherwise).
    pub bgp_prefixes: Vec<String>,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            endpoints: Vec::new(),
            token_file: "/etc/oca/heartbeat-token".into(),
            interval: Duration::from_secs(5),
            site: String::new(),
            cluster: String::new(),
            public_urls: Vec::new(),
            capacity_bps: 10_000_000_000,
            bgp_prefixes: Vec::new(),
        }
    }
}

/// BGP through BIRD (DESIGN §4 "BGP"): the appliance's BIRD config is rendered from this
/// section (`oca bgp-config`), and with `enabled` the learned client prefixes are read from
/// BIRD's control socket and reported in heartbeats instead of `heartbeat.bgp-prefixes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct BgpConfig {
    /// Read prefixes from BIRD and report them.
    pub enabled: bool,
    /// BIRD's control socket (`bird -s`).
    pub bird_socket: PathBuf,
    /// Time between two reads of the learned routes.
    #[serde(deserialize_with = "duration")]
    pub refresh_interval: Duration,
    /// How long the last prefixes are kept while BIRD does not answer; then the appliance
    /// reports no prefixes and state `degraded`.
    #[serde(deserialize_with = "duration")]
    pub grace_period: Duration,
    /// BGP router id (an IPv4 address), for the rendered BIRD config.
    pub router_id: Option<std::net::Ipv4Addr>,
    /// The appliance's AS number.
    pub local_as: u32,
    /// Routes accepted per session before BIRD blocks more (`import limit`).
    pub max_prefixes: u32,
    /// The IPv4 session.
    pub ipv4: BgpSession<Ipv4>,
    /// The IPv6 session.
    pub ipv6: BgpSession<Ipv6>,
}

/// Address family of a [`BgpSession`]: its default prefix-length bounds.
pub trait SessionFamily: std::fmt::Debug + Clone + PartialEq + Default {
    /// Default `(min-length, max-length)`.
    const BOUNDS: (u8, u8);
}

/// The IPv4 session's family marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv4;
/// The IPv6 session's family marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv6;

impl SessionFamily for Ipv4 {
    const BOUNDS: (u8, u8) = (8, 24);
}
impl SessionFamily for Ipv6 {
    const BOUNDS: (u8, u8) = (16, 48);
}

/// One BGP session (one address family) to the ISP router.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    default,
    rename_all = "kebab-case",
    deny_unknown_fields,
    bound(deserialize = "F: SessionFamily")
)]
pub struct BgpSession<F: SessionFamily> {
    /// The ISP router's address in this family; absent = no session for the family.
    pub neighbor: Option<std::net::IpAddr>,
    /// The ISP's AS number.
    pub neighbor_as: u32,
    /// The appliance's source address for the session (optional).
    pub local_address: Option<std::net::IpAddr>,
    /// Shortest prefix accepted (a default route is always refused).
    pub min_length: u8,
    /// Longest prefix accepted.
    pub max_length: u8,
    #[serde(skip)]
    family: std::marker::PhantomData<F>,
}

impl<F: SessionFamily> BgpSession<F> {
    /// The same session with the IPv4 marker (for code that handles both families alike).
    pub fn erase(self) -> BgpSession<Ipv4> {
        BgpSession {
            neighbor: self.neighbor,
            neighbor_as: self.neighbor_as,
            local_address: self.local_address,
            min_length: self.min_length,
            max_length: self.max_length,
            family: std::marker::PhantomData,
        }
    }
}

impl<F: SessionFamily> Default for BgpSession<F> {
    /// No session; accepted lengths /8–/24 for IPv4, /16–/48 for IPv6.
    fn default() -> Self {
        let (min_length, max_length) = F::BOUNDS;
        BgpSession {
            neighbor: None,
            neighbor_as: 0,
            local_address: None,
            min_length,
            max_length,
            family: std::marker::PhantomData,
        }
    }
}

impl Default for BgpConfig {
    fn default() -> Self {
        BgpConfig {
            enabled: false,
            bird_socket: "/run/bird/bird.ctl".into(),
            refresh_interval: Duration::from_secs(5),
            grace_period: Duration::from_secs(300),
            router_id: None,
            local_as: 0,
            max_prefixes: 100_000,
            ipv4: BgpSession::default(),
            ipv6: BgpSession::default(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `oca=debug`.
    pub level: String,
    /// One JSON line per request on the `oca::access` target.
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Human,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            id: "oca-1".into(),
            https_listen: Some(SocketAddr::from(([0, 0, 0, 0], 443))),
            http_listen: None,
            h3_listen: None,
            require_token: true,
            drain_deadline: Duration::from_secs(30),
            worker_threads: 0,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: "/etc/oca/tls/cert.pem".into(),
            key: "/etc/oca/tls/key.pem".into(),
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            keys_file: "/etc/oca/signing-keys.toml".into(),
            clock_skew: Duration::from_secs(30),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9443)),
            token_sha256: String::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            root: "/srv/oca/objects".into(),
            state_dir: "/var/lib/oca".into(),
            drives: Vec::new(),
            compact_after: 100_000,
            promote_rate: 50 << 20,
            promote_min_frequency: 3,
            max_ingest_bytes: 4 << 30,
            io_engine: EnginePref::Auto,
            ram_bytes: 1 << 30,
            ram_max_object: 4 << 20,
            read_size: 256 << 10,
            open_files: 4096,
            page_cache_fast_path: true,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 20_000,
            max_header_bytes: 16 << 10,
            max_url_bytes: 2048,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 128,
            h2_stream_window: 1 << 20,
            h2_connection_window: 8 << 20,
            h3_interleave_responses: false,
            h3_ack_every_packets: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
            access_log: true,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "bad duration {s:?}: {e} (use e.g. \"30s\", \"5m\")"
        ))
    })
}

impl Config {
    /// Read, parse and validate a config file. Errors name the file, the key and the problem.
    pub fn load(path: &Path) -> Result<Config, OcaError> {
        let text = std::fs::read_to_string(path).map_err(|e| OcaError::Config {
            file: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is used in messages and to resolve relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, OcaError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| OcaError::Config {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_relative(base);
        cfg.validate().map_err(|message| OcaError::Config {
            file: path.to_path_buf(),
            message,
        })?;
        Ok(cfg)
    }

    /// Relative paths in a config file are relative to the file's folder.
    fn resolve_relative(&mut self, base: &Path) {
        for d in &mut self.storage.drives {
            if d.path.is_relative() {
                d.path = base.join(&d.path);
            }
        }
        for p in [
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.tokens.keys_file,
            &mut self.storage.root,
            &mut self.storage.state_dir,
            &mut self.heartbeat.token_file,
            &mut self.bgp.bird_socket,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Checks that serde cannot express. Each message starts with the key it is about.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.server.id.is_empty()
            || self.server.id.len() > 64
            || !self
                .server
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            errs.push("server.id: must be 1-64 characters of [A-Za-z0-9._-]".to_string());
        }
        if self.server.https_listen.is_none() && self.server.http_listen.is_none() {
            errs.push("server: at least one of https-listen and http-listen must be set".into());
        }
        if let (Some(a), Some(b)) = (self.server.https_listen, self.server.http_listen)
            && a == b
        {
            errs.push(format!("server.http-listen: {b} is also https-listen"));
        }
        if Some(self.admin.listen) == self.server.https_listen
            || Some(self.admin.listen) == self.server.http_listen
        {
            errs.push(format!(
                "admin.listen: {} is also a public listener",
                self.admin.listen
            ));
        }
        if self.admin.token_sha256.len() != 64
            || !self
                .admin
                .token_sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        {
            errs.push(
                "admin.token-sha256: must be 64 hex characters (run `oca hash-token TOKEN`)".into(),
            );
        }
        if self.limits.max_connections == 0 {
            errs.push("limits.max-connections: must be at least 1".into());
        }
        if !(8 << 10..=1 << 20).contains(&self.limits.max_header_bytes) {
            errs.push("limits.max-header-bytes: must be between 8KiB and 1MiB".into());
        }
        if !(64..=65536).contains(&self.limits.max_url_bytes) {
            errs.push("limits.max-url-bytes: must be between 64 and 65536".into());
        }
        for (name, d) in [
            (
                "limits.header-read-timeout",
                self.limits.header_read_timeout,
            ),
            ("limits.idle-timeout", self.limits.idle_timeout),
            (
                "limits.tls-handshake-timeout",
                self.limits.tls_handshake_timeout,
            ),
        ] {
            if d.is_zero() {
                errs.push(format!("{name}: must be more than 0s"));
            }
        }
        if self.limits.h2_max_concurrent_streams == 0 {
            errs.push("limits.h2-max-concurrent-streams: must be at least 1".into());
        }
        let win = 65_535..=(1u64 << 31) - 1;
        if !win.contains(&self.limits.h2_stream_window) {
            errs.push("limits.h2-stream-window: must be between 65535 and 2^31-1 bytes".into());
        }
        if !win.contains(&self.limits.h2_connection_window) {
            errs.push("limits.h2-connection-window: must be between 65535 and 2^31-1 bytes".into());
        }
        if self.limits.h3_ack_every_packets > 1000 {
            errs.push("limits.h3-ack-every-packets: must be between 0 (off) and 1000".into());
        }
        if !(4096..=16 << 20).contains(&self.storage.read_size)
            || !self.storage.read_size.is_multiple_of(4096)
        {
            errs.push(
                "storage.read-size: must be a multiple of 4KiB between 4KiB and 16MiB".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, d) in self.storage.drives.iter().enumerate() {
            if d.tier == oca_common::wire::Tier::Ram {
                errs.push(format!(
                    "storage.drives[{i}].tier: must be \"flash\" or \"disk\" (the RAM tier is storage.ram-bytes)"
                ));
            }
            if d.capacity == 0 {
                errs.push(format!("storage.drives[{i}].capacity: must be more than 0"));
            }
            if !seen.insert(d.path.clone()) {
                errs.push(format!(
                    "storage.drives[{i}].path: {} is listed twice",
                    d.path.display()
                ));
            }
        }
        if !(1..=15).contains(&self.storage.promote_min_frequency) {
            errs.push("storage.promote-min-frequency: must be between 1 and 15".into());
        }
        if self.storage.compact_after == 0 {
            errs.push("storage.compact-after: must be at least 1".into());
        }
        if self.tokens.clock_skew > Duration::from_secs(600) {
            errs.push("tokens.clock-skew: at most 10m".into());
        }
        errs.extend(self.validate_heartbeat());
        if self.bgp.enabled {
            errs.extend(self.bgp.session_errors());
            if !self.heartbeat.bgp_prefixes.is_empty() {
                errs.push(
                    "heartbeat.bgp-prefixes: must be empty when bgp.enabled (BIRD reports the prefixes)"
                        .into(),
                );
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errs.push(format!(
                "log.level: {:?} is not a valid filter",
                self.log.level
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }
}

impl Config {
    fn validate_heartbeat(&self) -> Vec<String> {
        let hb = &self.heartbeat;
        let mut errs = Vec::new();
        if hb.interval < Duration::from_millis(50) || hb.interval > Duration::from_secs(300) {
            errs.push("heartbeat.interval: must be between 50ms and 5m".to_string());
        }
        for e in &hb.endpoints {
            let ok = e
                .strip_prefix("http://")
                .is_some_and(|r| !r.is_empty() && !r.contains(['?', '#']))
                && e.parse::<http::Uri>().is_ok();
            if !ok {
                errs.push(format!(
                    "heartbeat.endpoints: {e:?} must be http://host:port (TLS to steering is not built)"
                ));
            }
        }
        for u in &hb.public_urls {
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.contains(['?', '#']) {
                errs.push(format!(
                    "heartbeat.public-urls: {u:?} must be an http(s) base URL"
                ));
            }
        }
        for p in &hb.bgp_prefixes {
            if oca_common::token::ClientPrefix::parse_cidr(p).is_err() {
                errs.push(format!(
                    "heartbeat.bgp-prefixes: {p:?} is not a prefix in CIDR notation"
                ));
            }
        }
        if !hb.endpoints.is_empty() {
            if hb.site.is_empty() || hb.cluster.is_empty() {
                errs.push("heartbeat: site and cluster must be set when endpoints are".into());
            }
            if hb.public_urls.is_empty() {
                errs.push("heartbeat.public-urls: at least one when endpoints are set".into());
            }
        }
        errs
    }
}

impl BgpConfig {
    /// What the BGP sessions need (checked when `enabled`, and by `oca bgp-config`). Each
    /// message starts with the key it is about.
    pub fn session_errors(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let ms = |d: Duration| d.as_millis();
        if !(100..=300_000).contains(&ms(self.refresh_interval)) {
            errs.push("bgp.refresh-interval: must be between 100ms and 5m".to_string());
        }
        if self.grace_period < self.refresh_interval {
            errs.push("bgp.grace-period: must be at least bgp.refresh-interval".into());
        }
        if self.bird_socket.as_os_str().is_empty() {
            errs.push("bgp.bird-socket: must be set".into());
        }
        match self.router_id {
            None => errs.push("bgp.router-id: must be set (an IPv4 address of this host)".into()),
            Some(id) if id.is_unspecified() => {
                errs.push("bgp.router-id: must not be 0.0.0.0".into())
            }
            Some(_) => {}
        }
        if self.local_as == 0 {
            errs.push("bgp.local-as: must be set (1-4294967295)".into());
        }
        if self.max_prefixes == 0 {
            errs.push("bgp.max-prefixes: must be at least 1".into());
        }
        if self.ipv4.neighbor.is_none() && self.ipv6.neighbor.is_none() {
            errs.push(
                "bgp: set ipv4.neighbor and/or ipv6.neighbor (one session per family)".into(),
            );
        }
        let sessions = [
            ("ipv4", self.ipv4.clone().erase(), 32u8, true),
            ("ipv6", self.ipv6.clone().erase(), 128, false),
        ];
        for (fam, s, bits, v4) in sessions {
            for (key, a) in [("neighbor", s.neighbor), ("local-address", s.local_address)] {
                if let Some(a) = a
                    && a.is_ipv4() != v4
                {
                    errs.push(format!("bgp.{fam}.{key}: {a} is not an {fam} address"));
                }
            }
            if s.local_address.is_some() && s.neighbor.is_none() {
                errs.push(format!(
                    "bgp.{fam}.local-address: set without bgp.{fam}.neighbor"
                ));
            }
            if s.neighbor.is_some() && s.neighbor_as == 0 {
                errs.push(format!(
                    "bgp.{fam}.neighbor-as: must be set with bgp.{fam}.neighbor"
                ));
            }
            if s.min_length == 0 || s.min_length > s.max_length || s.max_length > bits {
                errs.push(format!(
                    "bgp.{fam}: need 1 <= min-length <= max-length <= {bits} (got {}..{})",
                    s.min_length, s.max_length
                ));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../etc/oca.toml");

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/oca/oca.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn template_parses_and_equals_defaults() {
        let cfg = parse(TEMPLATE).expect("template parses");
        let mut want = Config::default();
        // The template fills in the one value without a usable default.
        want.admin.token_sha256 = cfg.admin.token_sha256.clone();
        assert_eq!(cfg, want);
    }

    #[test]
    fn mistakes_are_named() {
        let ok = "[admin]\ntoken-sha256 = \"".to_string() + &"a".repeat(64) + "\"\n";
        assert!(parse(&ok).is_ok());
        let cases: &[(&str, &str)] = &[
            ("[server]\nbogus = 1\n", "bogus"),
            ("[nope]\n", "nope"),
            ("[server]\nhttps-listen = \"not an addr\"\n", "https-listen"),
            ("[server]\ndrain-deadline = \"soon\"\n", "drain-deadline"),
            ("[storage]\nram-bytes = \"12 parsecs\"\n", "ram-bytes"),
            ("[storage]\nio-engine = \"magic\"\n", "io-engine"),
            ("[limits]\nmax-connections = 0\n", "limits.max-connections"),
            ("[limits]\nmax-connections = -1\n", "max-connections"),
            ("[limits]\nidle-timeout = \"0s\"\n", "limits.idle-timeout"),
            (
                "[limits]\nh2-stream-window = \"1KiB\"\n",
                "h2-stream-window",
            ),
            ("[limits]\nmax-header-bytes = 10\n", "max-header-bytes"),
            (
                "[limits]\nh3-ack-every-packets = 5000\n",
                "limits.h3-ack-every-packets",
            ),
            (
                "[limits]\nh3-interleave-responses = 1\n",
                "h3-interleave-responses",
            ),
            ("[server]\nid = \"bad id!\"\n", "server.id"),
            (
                "[server]\nhttps-listen = \"127.0.0.1:9443\"\n",
                "admin.listen",
            ),
            ("[log]\nformat = \"xml\"\n", "format"),
            ("[heartbeat]\ninterval = \"1ms\"\n", "heartbeat.interval"),
            (
                "[heartbeat]\nendpoints = [\"https://s:1\"]\n",
                "heartbeat.endpoints",
            ),
            (
                "[heartbeat]\nbgp-prefixes = [\"10.0.0.0/33\"]\n",
                "heartbeat.bgp-prefixes",
            ),
            (
                "[heartbeat]\nendpoints = [\"http://s:1\"]\n",
                "heartbeat: site and cluster",
            ),
            ("[heartbeat]\ncapacity-bps = \"fast\"\n", "capacity-bps"),
            ("[bgp]\nenabled = true\n", "bgp.router-id"),
            ("[bgp]\nenabled = true\n", "bgp.local-as"),
            ("[bgp]\nenabled = true\n", "bgp: set ipv4.neighbor"),
            (
                "[bgp]\nenabled = true\n[bgp.ipv4]\nneighbor = \"2001:db8::1\"\n",
                "bgp.ipv4.neighbor: 2001:db8::1 is not an ipv4 address",
            ),
            (
                "[bgp]\nenabled = true\n[bgp.ipv4]\nneighbor = \"192.0.2.1\"\n",
                "bgp.ipv4.neighbor-as",
            ),
            (
                "[bgp]\nenabled = true\n[bgp.ipv6]\nmin-length = 64\nmax-length = 48\n",
                "bgp.ipv6: need 1 <= min-length",
            ),
            (
                "[bgp]\nenabled = true\ngrace-period = \"1s\"\n",
                "bgp.grace-period",
            ),
            (
                "[heartbeat]\nbgp-prefixes = [\"81.2.0.0/16\"]\n[bgp]\nenabled = true\n",
                "heartbeat.bgp-prefixes: must be empty when bgp.enabled",
            ),
            ("[bgp]\nrouter-id = \"fe80::1\"\n", "router-id"),
            ("[bgp.ipv4]\nneighbour = \"192.0.2.1\"\n", "neighbour"),
            ("this is not toml", "expected"),
        ];
        for (text, needle) in cases {
            let text = format!("{text}\n{ok}");
            // Put the admin table last so a [section] header in `text` does not swallow it.
            let err = parse(&text).expect_err(text.as_str());
            assert!(err.contains(needle), "{text:?} -> {err}");
            assert!(err.contains("/etc/oca/oca.toml"), "{err}");
        }
        let err = parse("").expect_err("empty config lacks the admin token");
        assert!(err.contains("admin.token-sha256"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let text = "[storage]\nroot = \"objects\"\n[admin]\ntoken-sha256 = \"".to_string()
            + &"b".repeat(64)
            + "\"\n";
        let cfg = Config::parse(&text, Path::new("/srv/x/oca.toml")).unwrap();
        assert_eq!(cfg.storage.root, PathBuf::from("/srv/x/objects"));
    }
}
