//! The fill controller's configuration: serde TOML, kebab-case keys, human units,
//! [`Config::validate`] right after parsing. `fill-controller/etc/fill-controller.toml` is the
//! commented template; a test parses it and compares it with the defaults. Relative paths are
//! relative to the config file's folder.
//!
//! Where the planner's inputs come from (decided here, see the README):
//! - clusters and their upstream chains, fill windows, rate caps and budgets: the **sites
//!   file** shared with steering (`sites-file`);
//! - appliances: a **static appliances file** (`inputs.appliances-file`, [`crate::inputs`]):
//!   one `[[appliance]]` per box with its cluster, admin URL, admin token file, tier
//!   capacities, state and inventory. The admin URL and token are needed to ingest anyway,
//!   and steering's `GET /v1/ocas` carries neither the inventory nor an admin endpoint;
//! - the catalog: control-plane's catalog TOML (`inputs.catalog-file`);
//! - demand: a JSON forecast file (`inputs.forecast-file`, rows of control-plane's
//!   `Forecast`: rendition, region, views), mapped to clusters by `[regions]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FillError;
use crate::plan::PlanParams;

/// Top-level configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// The sites file (DESIGN §6), shared with steering.
    pub sites_file: PathBuf,
    /// Journal and state folder of the executor.
    pub state_dir: PathBuf,
    /// Where appliances, catalog and demand are read from.
    pub inputs: InputsConfig,
    /// Forecast regions per cluster id; a cluster not listed takes the region named like its
    /// site id.
    pub regions: BTreeMap<String, Vec<String>>,
    /// Planner tuning.
    pub plan: PlanConfig,
    /// The origin store.
    pub origin: OriginConfig,
    /// Executor limits.
    pub limits: LimitsConfig,
    /// `fill-controller daemon`.
    pub daemon: DaemonConfig,
    /// How peer fills read other appliances.
    pub peers: PeersConfig,
}

/// Peer fills: appliances read each other's plain HTTP port (`plain-url` in the appliances
/// file) with `/t/{token}/{key}` URLs signed like steering's (`oca-common::token`), so the
/// key must be one the appliances accept (a kid of their `[tokens] keys-file`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeersConfig {
    /// A signing key file in the appliances' format (one `[kid]` table with a base64
    /// `secret` per key). Empty: peer URLs are unsigned `/o/{key}`, which only appliances
    /// with `require-token = false` serve.
    pub signing_keys_file: PathBuf,
    /// Kid to sign with; empty: the file's newest (greatest) kid.
    pub kid: String,
}

impl PeersConfig {
    /// The key peer URLs are signed with, read from `signing-keys-file` (`None` when it is
    /// empty). Errors (a config error: exit 64) name the key file and the kid, never a
    /// secret.
    pub fn signing_key(&self) -> Result<Option<oca_common::token::SigningKey>, FillError> {
        if self.signing_keys_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let err = |message: String| FillError::Config {
            file: self.signing_keys_file.clone(),
            message: format!("peers.signing-keys-file: {message}"),
        };
        let text = std::fs::read_to_string(&self.signing_keys_file)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        let keys = oca_common::token::KeySet::from_toml(&text).map_err(|e| err(e.to_string()))?;
        let key = if self.kid.is_empty() {
            keys.newest()
        } else {
            keys.get(&self.kid)
        };
        key.cloned()
            .map(Some)
            .ok_or_else(|| err(format!("no key with kid {:?} (peers.kid)", self.kid)))
    }
}

/// The daemon: where it serves `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of the Prometheus endpoint (`/metrics`, `/healthz`).
    pub metrics_listen: std::net::SocketAddr,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            metrics_listen: ([127, 0, 0, 1], 9464).into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sites_file: "/etc/oca/sites.toml".into(),
            state_dir: "/var/lib/fill-controller".into(),
            inputs: InputsConfig::default(),
            regions: BTreeMap::new(),
            plan: PlanConfig::default(),
            origin: OriginConfig::default(),
            limits: LimitsConfig::default(),
            daemon: DaemonConfig::default(),
            peers: PeersConfig::default(),
        }
    }
}

/// Input files.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct InputsConfig {
    /// The static appliances file ([`crate::inputs`]).
    pub appliances_file: PathBuf,
    /// control-plane's catalog TOML.
    pub catalog_file: PathBuf,
    /// Demand: a JSON array of `{"rendition", "region", "views"}` rows.
    pub forecast_file: PathBuf,
}

impl Default for InputsConfig {
    fn default() -> Self {
        InputsConfig {
            appliances_file: "/etc/fill-controller/appliances.toml".into(),
            catalog_file: "/etc/fill-controller/catalog.toml".into(),
            forecast_file: "/var/lib/fill-controller/forecast.json".into(),
        }
    }
}

/// Planner tuning (see [`crate::plan`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlanConfig {
    /// Most copies of one rendition in one cluster (1-16).
    pub max_copies: u32,
    /// Share of an appliance's fair egress one copy may carry before another copy is added,
    /// in percent (1-100).
    pub copy_share_percent: u32,
    /// Share of each tier's capacity the planner fills, in percent (1-100).
    pub max_fill_percent: u32,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            max_copies: 3,
            copy_share_percent: 10,
            max_fill_percent: 95,
        }
    }
}

impl PlanConfig {
    /// The planner's parameters.
    pub fn params(&self) -> PlanParams {
        PlanParams {
            max_copies: self.max_copies,
            copy_share: f64::from(self.copy_share_percent) / 100.0,
            max_fill: f64::from(self.max_fill_percent) / 100.0,
        }
    }
}

/// Kind of origin store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginKind {
    /// A local directory of `{title}/{rendition}/{file}` (the embedded default).
    #[default]
    Dir,
    /// An S3-compatible bucket.
    S3,
}

/// The origin store. Credentials are read from the environment variables named here, never
/// from this file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct OriginConfig {
    /// `dir` or `s3`.
    pub kind: OriginKind,
    /// `dir`: the folder.
    pub path: PathBuf,
    /// `s3`: the bucket.
    pub bucket: String,
    /// `s3`: endpoint URL for non-AWS stores (MinIO, Ceph); empty for AWS.
    pub endpoint: String,
    /// `s3`: region (empty = `us-east-1`).
    pub region: String,
    /// `s3`: environment variable holding the access key id.
    pub access_key_id_env: String,
    /// `s3`: environment variable holding the secret access key.
    pub secret_access_key_env: String,
    /// Key prefix inside the store, without slashes at the ends; empty for none.
    pub prefix: String,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            kind: OriginKind::Dir,
            path: "/srv/origin".into(),
            bucket: String::new(),
            endpoint: String::new(),
            region: String::new(),
            access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
            prefix: String::new(),
        }
    }
}

/// Executor limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LimitsConfig {
    /// Renditions filled at once per appliance (1-64).
    pub parallel_per_appliance: u32,
    /// Timeout of one request to the origin, a peer or an appliance.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub request_timeout: Duration,
    /// Attempts per object before a fill is given up for the night (1-20).
    pub attempts: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            parallel_per_appliance: 4,
            request_timeout: Duration::from_secs(30),
            attempts: 3,
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

fn write_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl Config {
    /// Reads, parses and validates a config file. Errors name the file and the key.
    pub fn load(path: &Path) -> Result<Config, FillError> {
        let text = std::fs::read_to_string(path).map_err(|e| FillError::Config {
            file: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used in messages and to resolve relative
    /// paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, FillError> {
        let err = |message: String| FillError::Config {
            file: path.to_path_buf(),
            message,
        };
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.sites_file,
            &mut cfg.state_dir,
            &mut cfg.inputs.appliances_file,
            &mut cfg.inputs.catalog_file,
            &mut cfg.inputs.forecast_file,
            &mut cfg.origin.path,
            &mut cfg.peers.signing_keys_file,
        ] {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Checks what serde cannot express. Each message starts with the key it is about.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs: Vec<String> = Vec::new();
        for (key, p) in [
            ("sites-file", &self.sites_file),
            ("state-dir", &self.state_dir),
            ("inputs.appliances-file", &self.inputs.appliances_file),
            ("inputs.catalog-file", &self.inputs.catalog_file),
            ("inputs.forecast-file", &self.inputs.forecast_file),
        ] {
            if p.as_os_str().is_empty() {
                errs.push(format!("{key}: must not be empty"));
            }
        }
        let p = &self.plan;
        if !(1..=16).contains(&p.max_copies) {
            errs.push("plan.max-copies: must be between 1 and 16".into());
        }
        if !(1..=100).contains(&p.copy_share_percent) {
            errs.push("plan.copy-share-percent: must be between 1 and 100".into());
        }
        if !(1..=100).contains(&p.max_fill_percent) {
            errs.push("plan.max-fill-percent: must be between 1 and 100".into());
        }
        for (cluster, regions) in &self.regions {
            if regions.is_empty() || regions.iter().any(|r| r.trim().is_empty()) {
                errs.push(format!(
                    "regions.{cluster}: must list one or more non-empty region names"
                ));
            }
        }
        let o = &self.origin;
        match o.kind {
            OriginKind::Dir => {
                if o.path.as_os_str().is_empty() {
                    errs.push("origin.path: required when origin.kind = \"dir\"".into());
                }
            }
            OriginKind::S3 => {
                if o.bucket.is_empty() {
                    errs.push("origin.bucket: required when origin.kind = \"s3\"".into());
                }
                let http = o.endpoint.starts_with("http://") || o.endpoint.starts_with("https://");
                if !o.endpoint.is_empty() && !http {
                    errs.push("origin.endpoint: must be an http(s) URL or empty".into());
                }
                for (key, v) in [
                    ("origin.access-key-id-env", &o.access_key_id_env),
                    ("origin.secret-access-key-env", &o.secret_access_key_env),
                ] {
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        errs.push(format!("{key}: must be an environment variable name"));
                    }
                }
            }
        }
        if o.prefix.starts_with('/') || o.prefix.ends_with('/') {
            errs.push("origin.prefix: no slash at either end".into());
        }
        let l = &self.limits;
        if !(1..=64).contains(&l.parallel_per_appliance) {
            errs.push("limits.parallel-per-appliance: must be between 1 and 64".into());
        }
        if l.request_timeout < Duration::from_secs(1)
            || l.request_timeout > Duration::from_secs(3600)
        {
            errs.push("limits.request-timeout: must be between 1s and 1h".into());
        }
        if !(1..=20).contains(&l.attempts) {
            errs.push("limits.attempts: must be between 1 and 20".into());
        }
        let kid = &self.peers.kid;
        if !kid.is_empty()
            && (kid.len() > 16
                || !kid
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            errs.push("peers.kid: must be [a-z0-9]{1,16} or empty".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Forecast regions of a cluster: the `[regions]` entry, else its site id.
    pub fn regions_of<'a>(&'a self, cluster: &str, site: &'a str) -> Vec<&'a str> {
        match self.regions.get(cluster) {
            Some(r) => r.iter().map(String::as_str).collect(),
            None => vec![site],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../etc/fill-controller.toml");

    #[test]
    fn template_parses_and_equals_defaults() {
        let cfg: Config = toml::from_str(TEMPLATE).expect("template parses");
        assert_eq!(cfg, Config::default());
        assert!(Config::default().validate().is_ok());
        // Every key of the defaults appears in the template (commented or not).
        let text = toml::to_string(&Config::default()).expect("serializes");
        for line in text.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(TEMPLATE.contains(key.trim()), "template lacks {key}");
            }
        }
    }

    #[test]
    fn mistakes_name_the_key() {
        let path = Path::new("/etc/fc/fill-controller.toml");
        let cases: &[(&str, &str)] = &[
            ("[plan]\nmax-copies = 0\n", "plan.max-copies"),
            ("[plan]\nmax-fill-percent = 101\n", "plan.max-fill-percent"),
            (
                "[plan]\ncopy-share-percent = 0\n",
                "plan.copy-share-percent",
            ),
            ("[origin]\nkind = \"s3\"\n", "origin.bucket"),
            (
                "[origin]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"ftp://x\"\n",
                "origin.endpoint",
            ),
            ("[origin]\nkind = \"gcs\"\n", "unknown variant"),
            ("[origin]\nprefix = \"/media\"\n", "origin.prefix"),
            ("[limits]\nrequest-timeout = \"soon\"\n", "bad duration"),
            (
                "[limits]\nrequest-timeout = \"0s\"\n",
                "limits.request-timeout",
            ),
            (
                "[limits]\nparallel-per-appliance = 0\n",
                "limits.parallel-per-appliance",
            ),
            ("[regions]\nisp1-fra-a = []\n", "regions.isp1-fra-a"),
            ("bogus = 1\n", "unknown field"),
            ("sites-file = \"\"\n", "sites-file"),
            ("[peers]\nkid = \"K 1\"\n", "peers.kid"),
        ];
        for (text, needle) in cases {
            let err = Config::parse(text, path).expect_err(text).to_string();
            assert!(err.contains(needle), "{text} -> {err}");
            assert!(err.starts_with("/etc/fc/fill-controller.toml"), "{err}");
        }
    }

    #[test]
    fn the_peer_signing_key_comes_from_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.toml");
        // base64 of 32 bytes "aaaa…" and "bbbb…".
        let a = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=";
        let b = "YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=";
        std::fs::write(
            &file,
            format!("[k1]\nsecret = \"{a}\"\n[k2]\nsecret = \"{b}\"\n"),
        )
        .unwrap();
        let mut p = PeersConfig::default();
        assert!(p.signing_key().unwrap().is_none(), "no file: unsigned");
        p.signing_keys_file = file.clone();
        let k = p.signing_key().unwrap().unwrap();
        assert_eq!(
            (k.kid.as_str(), k.secret.as_slice()),
            ("k2", &[b'b'; 32][..])
        );
        p.kid = "k1".into();
        assert_eq!(p.signing_key().unwrap().unwrap().secret, vec![b'a'; 32]);
        p.kid = "k9".into();
        let e = p.signing_key().unwrap_err().to_string();
        assert!(e.contains("no key with kid \"k9\""), "{e}");
        std::fs::write(&file, "[k1]\nsecret = \"not base64!\"\n").unwrap();
        p.kid = String::new();
        let e = p.signing_key().unwrap_err();
        assert!(matches!(e, FillError::Config { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("keys.toml") && e.contains("peers.signing-keys-file"),
            "{e}"
        );
        assert!(!e.contains("not base64"), "{e}");
    }

    #[test]
    fn relative_paths_and_regions() {
        let text = "sites-file = \"sites.toml\"\n[inputs]\ncatalog-file = \"/abs/c.toml\"\n\
                    [regions]\nisp1-fra-a = [\"DE\", \"AT\"]\n";
        let cfg = Config::parse(text, Path::new("/etc/fc/fc.toml")).unwrap();
        assert_eq!(cfg.sites_file, Path::new("/etc/fc/sites.toml"));
        assert_eq!(cfg.inputs.catalog_file, Path::new("/abs/c.toml"));
        assert_eq!(cfg.regions_of("isp1-fra-a", "isp1-fra"), vec!["DE", "AT"]);
        assert_eq!(cfg.regions_of("ixp-fra", "ixp-fra"), vec!["ixp-fra"]);
        let p = cfg.plan.params();
        assert_eq!((p.max_copies, p.copy_share, p.max_fill), (3, 0.1, 0.95));
    }
}
