//! Steering's configuration: serde TOML, kebab-case keys, human units, [`Config::validate`]
//! right after parsing. `steering/etc/steering.toml` is the commented template; a test parses
//! it and compares it with the defaults. Relative paths are relative to the file's folder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::error::SteeringError;

/// Top-level configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Listener and request limits.
    pub server: ServerConfig,
    /// Ranking inputs and knobs.
    pub ranking: RankingConfig,
    /// Signed URLs.
    pub urls: UrlConfig,
    /// Appliance heartbeats.
    pub heartbeat: HeartbeatConfig,
    /// The embedded control plane (catalog, players, licenses, events).
    pub control_plane: ControlPlaneConfig,
    /// Logging.
    pub log: LogConfig,
}

/// The HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the API (players, appliances, ops).
    pub listen: SocketAddr,
    /// Peers whose `X-Forwarded-For` is believed (load balancers), CIDR notation.
    #[serde(deserialize_with = "nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request body of the player and ops API.
    #[serde(with = "oca_common::units::bytes")]
    pub max_body: u64,
    /// Largest heartbeat body (a full inventory can be large).
    #[serde(with = "oca_common::units::bytes")]
    pub max_heartbeat_body: u64,
    /// A client must send a whole request head within this time.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// Tokio worker threads; 0 = one per core.
    pub worker_threads: usize,
}

/// What ranking needs besides heartbeats.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RankingConfig {
    /// The sites file (DESIGN §6): clusters and their fallback order.
    pub sites_file: PathBuf,
    /// Appliance URLs returned per decision (the origin URL comes after them).
    pub top_n: usize,
    /// An appliance above this share of its egress capacity is pushed back, in percent.
    pub push_back_percent: u32,
    /// Origin base URL, the last resort; the rendition path is appended.
    pub origin_url: String,
}

/// Signed URLs (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct UrlConfig {
    /// Signing keys, one TOML table per kid with `secret` in base64 (the appliances' format);
    /// the newest kid signs. Empty: the control plane's live keys (re-read every
    /// `keys-refresh`).
    pub keys_file: PathBuf,
    /// How often the control plane's signing keys are re-read (rotation reaches steering
    /// within this time).
    #[serde(deserialize_with = "duration")]
    pub keys_refresh: Duration,
    /// The license URL put in playback answers (absolute, or a path on this service).
    pub license_url: String,
    /// How long a signed URL stays valid.
    #[serde(deserialize_with = "duration")]
    pub expiry: Duration,
    /// Bind each URL to the client's prefix (`cp` in the token).
    pub bind_client_prefix: bool,
    /// Prefix length used for IPv4 clients when binding.
    pub client_prefix_v4: u8,
    /// Prefix length used for IPv6 clients when binding.
    pub client_prefix_v6: u8,
}

/// Appliance heartbeats (DESIGN §4 "Heartbeat").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Interval assumed for appliances that do not say theirs; three missed intervals make an
    /// appliance stale.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// Per appliance id: SHA-256 (hex) of its bearer token (`oca hash-token` prints it).
    pub tokens: BTreeMap<String, String>,
}

/// The embedded control plane (DESIGN §5): player tokens, catalog, entitlements, ClearKey
/// licenses, recommendations, view events, appliance tokens and (when `urls.keys-file` is
/// empty) the URL-signing keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Off: the player routes answer 503, heartbeats need a `heartbeat.tokens` entry and
    /// `urls.keys-file` must be set.
    pub enabled: bool,
    /// control-plane's config file (database path, KEK source, token and license lifetimes:
    /// `control-plane/etc/control-plane.toml`).
    pub config_file: PathBuf,
    /// Most view events one `POST /v1/events` may carry.
    pub max_events: usize,
    /// How far in the past a view event may be dated.
    #[serde(deserialize_with = "duration")]
    pub max_event_age: Duration,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `steering=debug`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            trusted_proxies: Vec::new(),
            max_body: 64 << 10,
            max_heartbeat_body: 32 << 20,
            header_read_timeout: Duration::from_secs(10),
            worker_threads: 0,
        }
    }
}

impl Default for RankingConfig {
    fn default() -> Self {
        RankingConfig {
            sites_file: "/etc/oca/sites.toml".into(),
            top_n: 4,
            push_back_percent: 90,
            origin_url: "https://origin.example.net/o".into(),
        }
    }
}

impl Default for UrlConfig {
    fn default() -> Self {
        UrlConfig {
            keys_file: PathBuf::new(),
            keys_refresh: Duration::from_secs(60),
            license_url: "/v1/license".into(),
            expiry: Duration::from_secs(6 * 3600),
            bind_client_prefix: false,
            client_prefix_v4: 24,
            client_prefix_v6: 48,
        }
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(5),
            tokens: BTreeMap::new(),
        }
    }
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        ControlPlaneConfig {
            enabled: true,
            config_file: "/etc/oca/control-plane.toml".into(),
            max_events: 1000,
            max_event_age: Duration::from_secs(7 * 86400),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
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

fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{s:?} is not an address or a prefix such as 10.0.0.0/8"
                    ))
                })
        })
        .collect()
}

/// True if `id` is a valid appliance id: 1-64 characters of `[A-Za-z0-9._-]`.
pub fn valid_appliance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Config {
    /// Read, parse and validate a config file. Errors name the file, the key and the problem.
    pub fn load(path: &Path) -> Result<Config, SteeringError> {
        let text = std::fs::read_to_string(path).map_err(|e| SteeringError::Config {
            file: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is used in messages and to resolve relative
    /// paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, SteeringError> {
        let err = |message: String| SteeringError::Config {
            file: path.to_path_buf(),
            message,
        };
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.ranking.sites_file,
            &mut cfg.urls.keys_file,
            &mut cfg.control_plane.config_file,
        ] {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Checks that serde cannot express. Each message starts with the key it is about.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if !(1..=16).contains(&self.ranking.top_n) {
            errs.push("ranking.top-n: must be between 1 and 16".to_string());
        }
        if !(1..=100).contains(&self.ranking.push_back_percent) {
            errs.push("ranking.push-back-percent: must be between 1 and 100".into());
        }
        let o = &self.ranking.origin_url;
        if !(o.starts_with("https://") || o.starts_with("http://")) || o.contains(['?', '#', ' ']) {
            errs.push("ranking.origin-url: must be an http(s) URL without query".into());
        }
        if self.urls.expiry < Duration::from_secs(60)
            || self.urls.expiry > Duration::from_secs(7 * 86400)
        {
            errs.push("urls.expiry: must be between 1m and 7d".into());
        }
        if self.urls.keys_file.as_os_str().is_empty() && !self.control_plane.enabled {
            errs.push(
                "urls.keys-file: required when control-plane.enabled = false (the keys then \
                 cannot come from the control plane)"
                    .into(),
            );
        }
        if self.urls.keys_refresh < Duration::from_secs(1) {
            errs.push("urls.keys-refresh: at least 1s".into());
        }
        let l = &self.urls.license_url;
        if !(l.starts_with("https://") || l.starts_with("http://") || l.starts_with('/'))
            || l.contains(['#', ' ', '"'])
        {
            errs.push("urls.license-url: must be an http(s) URL or a path starting with /".into());
        }
        if self.control_plane.enabled && self.control_plane.config_file.as_os_str().is_empty() {
            errs.push("control-plane.config-file: must be set when enabled".into());
        }
        if !(1..=100_000).contains(&self.control_plane.max_events) {
            errs.push("control-plane.max-events: must be between 1 and 100000".into());
        }
        if self.control_plane.max_event_age < Duration::from_secs(60) {
            errs.push("control-plane.max-event-age: at least 1m".into());
        }
        if self.urls.client_prefix_v4 > 32 {
            errs.push("urls.client-prefix-v4: at most 32".into());
        }
        if self.urls.client_prefix_v6 > 128 {
            errs.push("urls.client-prefix-v6: at most 128".into());
        }
        if self.heartbeat.interval < Duration::from_millis(50)
            || self.heartbeat.interval > Duration::from_secs(300)
        {
            errs.push("heartbeat.interval: must be between 50ms and 5m".into());
        }
        for (id, hash) in &self.heartbeat.tokens {
            if !valid_appliance_id(id) {
                errs.push(format!(
                    "heartbeat.tokens: appliance id {id:?} must be 1-64 characters of [A-Za-z0-9._-]"
                ));
            }
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                errs.push(format!(
                    "heartbeat.tokens.{id}: must be the SHA-256 of the token, 64 hex characters"
                ));
            }
        }
        if self.server.max_body < 1024 || self.server.max_heartbeat_body < 1024 {
            errs.push("server.max-body, server.max-heartbeat-body: at least 1KiB".into());
        }
        if self.server.header_read_timeout.is_zero() {
            errs.push("server.header-read-timeout: must be more than 0s".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../etc/steering.toml");

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/steering/steering.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn template_parses_and_equals_defaults() {
        assert_eq!(parse(TEMPLATE).expect("template parses"), Config::default());
    }

    #[test]
    fn mistakes_are_named() {
        let cases: &[(&str, &str)] = &[
            ("[server]\nbogus = 1\n", "bogus"),
            ("[nope]\n", "nope"),
            ("[server]\nlisten = \"x\"\n", "listen"),
            (
                "[server]\ntrusted-proxies = [\"10.0.0.0/33\"]\n",
                "10.0.0.0/33",
            ),
            ("[server]\nmax-body = \"lots\"\n", "max-body"),
            ("[ranking]\ntop-n = 0\n", "ranking.top-n"),
            (
                "[ranking]\npush-back-percent = 101\n",
                "ranking.push-back-percent",
            ),
            (
                "[ranking]\norigin-url = \"ftp://x\"\n",
                "ranking.origin-url",
            ),
            ("[urls]\nexpiry = \"1s\"\n", "urls.expiry"),
            ("[urls]\nclient-prefix-v4 = 40\n", "urls.client-prefix-v4"),
            ("[heartbeat]\ninterval = \"1ms\"\n", "heartbeat.interval"),
            ("[heartbeat.tokens]\n\"bad id\" = \"00\"\n", "bad id"),
            (
                "[heartbeat.tokens]\noca-1 = \"00\"\n",
                "heartbeat.tokens.oca-1",
            ),
            ("[log]\nformat = \"xml\"\n", "format"),
            ("[control-plane]\nenabled = false\n", "urls.keys-file"),
            (
                "[control-plane]\nmax-events = 0\n",
                "control-plane.max-events",
            ),
            ("[control-plane]\nbogus = 1\n", "bogus"),
            ("[urls]\nlicense-url = \"ftp://x\"\n", "urls.license-url"),
            ("this is not toml", "expected"),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(needle), "{text:?} -> {err}");
            assert!(err.contains("/etc/steering/steering.toml"), "{err}");
        }
    }

    #[test]
    fn values_and_relative_paths() {
        let text = "[ranking]\nsites-file = \"sites.toml\"\n[server]\n\
                    trusted-proxies = [\"127.0.0.1\", \"10.1.2.3/8\"]\n\
                    [heartbeat.tokens]\noca-1 = \""
            .to_string()
            + &"a".repeat(64)
            + "\"\n";
        let cfg = Config::parse(&text, Path::new("/srv/s/steering.toml")).unwrap();
        assert_eq!(cfg.ranking.sites_file, PathBuf::from("/srv/s/sites.toml"));
        // An empty keys-file stays empty (keys from the control plane).
        assert_eq!(cfg.urls.keys_file, PathBuf::new());
        let cfg2 = Config::parse(
            "[control-plane]\nconfig-file = \"cp.toml\"\n",
            Path::new("/srv/s/steering.toml"),
        )
        .unwrap();
        assert_eq!(
            cfg2.control_plane.config_file,
            PathBuf::from("/srv/s/cp.toml")
        );
        assert_eq!(
            cfg.server.trusted_proxies,
            vec![
                "127.0.0.1/32".parse::<IpNet>().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ]
        );
        assert_eq!(cfg.heartbeat.tokens.len(), 1);
    }
}
