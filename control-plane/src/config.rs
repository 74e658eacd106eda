//! Configuration: serde TOML, kebab-case keys, human units, [`Config::validate`] after
//! parsing. `control-plane/etc/control-plane.toml` is the commented template; a test parses it
//! and compares it with the defaults. Steering embeds this as a `[control-plane]` table of its
//! own config or reads the file with [`Config::from_toml`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::forecast::ForecastParams;
use crate::recommend::RecommendParams;

/// Top-level configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// The SQLite database.
    pub database: DatabaseConfig,
    /// Where the key-encryption key comes from.
    pub kek: KekConfig,
    /// Player tokens.
    pub tokens: TokensConfig,
    /// URL-signing keys.
    pub signing: SigningConfig,
    /// ClearKey licenses.
    pub licenses: LicensesConfig,
    /// Recommendation.
    pub recommend: RecommendConfig,
    /// Demand forecast.
    pub forecast: ForecastConfig,
}

/// The SQLite database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Database file (created if missing; WAL mode).
    pub path: PathBuf,
    /// How long a call waits for a lock held by another process.
    #[serde(deserialize_with = "duration")]
    pub busy_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            path: PathBuf::from("/var/lib/oca/control-plane.db"),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The key-encryption key: 32 bytes in standard base64, read from `key-file` when set, else
/// from the environment variable `key-env`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct KekConfig {
    /// File holding the base64 key (mode 0600).
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the base64 key.
    pub key_env: String,
}

impl Default for KekConfig {
    fn default() -> Self {
        KekConfig {
            key_file: None,
            key_env: "OCA_CONTROL_PLANE_KEK".into(),
        }
    }
}

/// Player tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TokensConfig {
    /// Lifetime of a player token.
    #[serde(deserialize_with = "duration")]
    pub player_token_ttl: Duration,
    /// Clock skew allowed when checking expiry.
    #[serde(deserialize_with = "duration")]
    pub clock_skew: Duration,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            player_token_ttl: Duration::from_secs(24 * 3600),
            clock_skew: Duration::from_secs(30),
        }
    }
}

/// URL-signing keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SigningConfig {
    /// Keys kept live after a rotation (the newest signs; older ones still verify).
    pub max_live_keys: usize,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig { max_live_keys: 3 }
    }
}

/// ClearKey licenses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LicensesConfig {
    /// How long a license is valid (never past the player token).
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
}

impl Default for LicensesConfig {
    fn default() -> Self {
        LicensesConfig {
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Recommendation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RecommendConfig {
    /// Half-life of a view's weight in popularity.
    #[serde(deserialize_with = "duration")]
    pub popularity_half_life: Duration,
    /// A title is "new" this long after launch.
    #[serde(deserialize_with = "duration")]
    pub new_title_window: Duration,
    /// How far back view events are read.
    #[serde(deserialize_with = "duration")]
    pub history: Duration,
    /// Titles per row.
    pub row_length: usize,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig {
            popularity_half_life: Duration::from_secs(7 * 86_400),
            new_title_window: Duration::from_secs(30 * 86_400),
            history: Duration::from_secs(90 * 86_400),
            row_length: 20,
        }
    }
}

impl RecommendConfig {
    /// The pure function's parameters.
    pub fn params(&self) -> RecommendParams {
        RecommendParams {
            half_life_secs: self.popularity_half_life.as_secs_f64(),
            new_title_window_secs: self.new_title_window.as_secs(),
            row_len: self.row_length,
        }
    }
}

/// Demand forecast.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ForecastConfig {
    /// Half-life of the recent-days weighting.
    #[serde(deserialize_with = "duration")]
    pub half_life: Duration,
    /// How many days of views to read.
    pub history_days: u32,
    /// Days of regional history before weekday factors are used.
    pub min_season_days: u32,
    /// Quantile of a region's per-title forecasts a launching title starts at.
    pub launch_prior_quantile: f64,
    /// Floor of the launch prior, views per title and region.
    pub launch_prior_min_views: f64,
    /// Extra views per recommendation impression.
    pub exposure_conversion: f64,
    /// Half-life of the weighting of a title's rendition shares; "0s" = every rendition is
    /// forecast on its own (no per-title level).
    #[serde(deserialize_with = "duration")]
    pub share_half_life: Duration,
    /// Weight (views) of the pooled prior a title's rendition shares are shrunk towards; 0 =
    /// the title's own shares only.
    pub share_prior_views: f64,
    /// Project recently launched titles forward along the launch decay seen in the history.
    pub launch_decay: bool,
    /// With `launch-decay`: one decay ratio per age since launch (the decay slows as the
    /// launch boost fades) instead of one for all ages.
    pub launch_decay_by_age: bool,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        let p = ForecastParams::default();
        ForecastConfig {
            half_life: Duration::from_secs_f64(p.half_life_days * 86_400.0),
            history_days: p.history_days,
            min_season_days: p.min_season_days,
            launch_prior_quantile: p.launch_prior_quantile,
            launch_prior_min_views: p.launch_prior_min_views,
            exposure_conversion: p.exposure_conversion,
            share_half_life: Duration::from_secs_f64(
                p.share_half_life_days.unwrap_or(0.0) * 86_400.0,
            ),
            share_prior_views: p.share_prior_views,
            launch_decay: p.launch_decay,
            launch_decay_by_age: p.launch_decay_by_age,
        }
    }
}

impl ForecastConfig {
    /// The pure function's parameters.
    pub fn params(&self) -> ForecastParams {
        ForecastParams {
            half_life_days: self.half_life.as_secs_f64() / 86_400.0,
            history_days: self.history_days,
            min_season_days: self.min_season_days,
            launch_prior_quantile: self.launch_prior_quantile,
            launch_prior_min_views: self.launch_prior_min_views,
            exposure_conversion: self.exposure_conversion,
            share_half_life_days: (!self.share_half_life.is_zero())
                .then(|| self.share_half_life.as_secs_f64() / 86_400.0),
            share_prior_views: self.share_prior_views,
            launch_decay: self.launch_decay,
            launch_decay_by_age: self.launch_decay_by_age,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration like \"30s\" or \"7d\": {e}"
        ))
    })
}

impl Config {
    /// Parses and validates TOML text; errors name the line or the key.
    pub fn from_toml(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
            let msg = e.message().trim_end().to_owned();
            Error::Config(match line {
                Some(line) => format!("line {line}: {msg}"),
                None => msg,
            })
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file; relative paths in it (`database.path`,
    /// `kek.key-file`) are relative to the file's folder. Errors name the file.
    pub fn load(path: &std::path::Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mut cfg = Config::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        if cfg.database.path.is_relative() {
            cfg.database.path = base.join(&cfg.database.path);
        }
        if let Some(k) = &mut cfg.kek.key_file
            && k.is_relative()
        {
            *k = base.join(&*k);
        }
        Ok(cfg)
    }

    /// Checks that serde cannot express. Each message starts with the key it is about.
    pub fn validate(&self) -> Result<()> {
        let mut errs = Vec::new();
        if self.database.path.as_os_str().is_empty() {
            errs.push("database.path: must not be empty".to_owned());
        }
        if self.kek.key_file.is_none() && self.kek.key_env.is_empty() {
            errs.push("kek: set key-file or key-env".to_owned());
        }
        if self.tokens.player_token_ttl.is_zero() {
            errs.push("tokens.player-token-ttl: must be more than 0s".to_owned());
        }
        if self.signing.max_live_keys == 0 {
            errs.push("signing.max-live-keys: must be at least 1".to_owned());
        }
        if self.licenses.ttl.is_zero() {
            errs.push("licenses.ttl: must be more than 0s".to_owned());
        }
        if self.recommend.row_length == 0 || self.recommend.row_length > 1000 {
            errs.push("recommend.row-length: must be 1-1000".to_owned());
        }
        if self.forecast.history_days == 0 || self.forecast.history_days > 3660 {
            errs.push("forecast.history-days: must be 1-3660".to_owned());
        }
        if !(0.0..=1.0).contains(&self.forecast.launch_prior_quantile) {
            errs.push("forecast.launch-prior-quantile: must be within 0-1".to_owned());
        }
        for (k, v) in [
            (
                "forecast.launch-prior-min-views",
                self.forecast.launch_prior_min_views,
            ),
            (
                "forecast.exposure-conversion",
                self.forecast.exposure_conversion,
            ),
            (
                "forecast.share-prior-views",
                self.forecast.share_prior_views,
            ),
        ] {
            if !v.is_finite() || v < 0.0 {
                errs.push(format!("{k}: must be a number ≥ 0"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errs.join("\n")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../etc/control-plane.toml");

    #[test]
    fn template_parses_and_equals_defaults() {
        let cfg = Config::from_toml(TEMPLATE).expect("template parses");
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn load_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        std::fs::write(
            &path,
            "[database]\npath = \"cp.db\"\n[kek]\nkey-file = \"kek\"\n",
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.database.path, dir.path().join("cp.db"));
        assert_eq!(cfg.kek.key_file, Some(dir.path().join("kek")));
        let err = Config::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
        std::fs::write(&path, "[database]\nbogus = 1\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("cp.toml") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn mistakes_are_named() {
        let cases: &[(&str, &str)] = &[
            ("[database]\nbogus = 1\n", "bogus"),
            ("[nope]\n", "nope"),
            ("[database]\nbusy-timeout = \"soon\"\n", "soon"),
            ("[signing]\nmax-live-keys = 0\n", "signing.max-live-keys"),
            ("[licenses]\nttl = \"0s\"\n", "licenses.ttl"),
            (
                "[forecast]\nlaunch-prior-quantile = 2.0\n",
                "launch-prior-quantile",
            ),
            (
                "[forecast]\nexposure-conversion = -1.0\n",
                "exposure-conversion",
            ),
            (
                "[forecast]\nshare-prior-views = -5.0\n",
                "forecast.share-prior-views",
            ),
            ("[forecast]\nshare-half-life = \"soon\"\n", "soon"),
            ("[kek]\nkey-env = \"\"\n", "kek"),
            ("[recommend]\nrow-length = 0\n", "recommend.row-length"),
        ];
        for (text, want) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
