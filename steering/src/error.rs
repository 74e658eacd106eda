//! The one error type of the steering crate.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong in steering: configuration at start (exit 64), binding, and
/// heartbeats refused by the registry (answered with a 4xx JSON error).
#[derive(Debug, thiserror::Error)]
pub enum SteeringError {
    /// The config file is unreadable or invalid; `message` names the key.
    #[error("{file}: {message}")]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong, starting with the key.
        message: String,
    },
    /// The sites file is unreadable or invalid.
    #[error("sites file {file}: {message}")]
    Sites {
        /// The sites file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The signing key file is unreadable or invalid (the message never quotes secrets).
    #[error("signing keys {file}: {message}")]
    Keys {
        /// The key file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The embedded control plane could not be opened (its config file, database or
    /// key-encryption key); the message never quotes secrets.
    #[error("control plane ({file}): {message}")]
    ControlPlane {
        /// control-plane's config file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another I/O failure (signals, runtime).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A heartbeat names an appliance id that is not 1-64 characters of `[A-Za-z0-9._-]`.
    #[error("appliance id {0:?} must be 1-64 characters of [A-Za-z0-9._-]")]
    BadApplianceId(String),
    /// A heartbeat names a cluster that is not in the sites file.
    #[error("cluster {0:?} is not in the sites file")]
    UnknownCluster(String),
    /// A heartbeat's site is not the site its cluster belongs to.
    #[error("cluster {cluster:?} belongs to site {want:?}, not {got:?}")]
    SiteMismatch {
        /// The cluster named.
        cluster: String,
        /// The site the sites file gives it.
        want: String,
        /// The site the heartbeat named.
        got: String,
    },
    /// A BGP prefix in a heartbeat is not CIDR notation.
    #[error("bgp prefix {0:?} is not an IPv4 or IPv6 prefix in CIDR notation")]
    BadPrefix(String),
    /// A public URL in a heartbeat is not an absolute http(s) URL without query.
    #[error("public url {0:?} must be http:// or https:// with a host and no query")]
    BadUrl(String),
}

impl SteeringError {
    /// Stable snake_case code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            SteeringError::Config { .. } => "bad_config",
            SteeringError::Sites { .. } => "bad_sites_file",
            SteeringError::Keys { .. } => "bad_keys",
            SteeringError::ControlPlane { .. } => "control_plane",
            SteeringError::Bind { .. } => "bind",
            SteeringError::Io { .. } => "io",
            SteeringError::BadApplianceId(_) => "bad_appliance_id",
            SteeringError::UnknownCluster(_) => "unknown_cluster",
            SteeringError::SiteMismatch { .. } => "site_mismatch",
            SteeringError::BadPrefix(_) => "bad_prefix",
            SteeringError::BadUrl(_) => "bad_url",
        }
    }

    /// True for configuration problems (the binary exits 64).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            SteeringError::Config { .. }
                | SteeringError::Sites { .. }
                | SteeringError::Keys { .. }
                | SteeringError::ControlPlane { .. }
        )
    }
}
