//! The one error type of the fill-controller crate.

use std::path::PathBuf;

/// Everything that can go wrong in the fill controller. Each variant says what and where;
/// none quotes a secret.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// The config file is unreadable or invalid; `message` names the key.
    #[error("{file}: {message}")]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong, starting with the key.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A site's fill window or time zone cannot be used.
    #[error("site {site:?}: {message}")]
    Window {
        /// The site id.
        site: String,
        /// What is wrong.
        message: String,
    },
    /// The origin is misconfigured or unreachable in a way retrying does not fix.
    #[error("origin {origin}: {message}")]
    Origin {
        /// The origin, e.g. `s3://bucket at http://host:port` or `dir /srv/media`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The origin refused the credentials (HTTP 401/403): the run stops, nothing is retried.
    #[error("origin {origin} refused the credentials: {message}")]
    OriginAuth {
        /// The origin.
        origin: String,
        /// The store's answer.
        message: String,
    },
    /// An appliance refused the fill controller (bad admin token) or is unknown.
    #[error("appliance {appliance}: {message}")]
    Appliance {
        /// The appliance id.
        appliance: String,
        /// What is wrong.
        message: String,
    },
    /// The fill journal is unreadable or cannot be appended to.
    #[error("journal {path}: {message}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An input file of the planner (sites, appliances, inventory, catalog, forecast) is
    /// unreadable or invalid; `message` names the entry. CLI exit 65.
    #[error("{file}: {message}")]
    Input {
        /// The input file.
        file: PathBuf,
        /// What is wrong, naming the entry.
        message: String,
    },
    /// The plan handed to the executor is inconsistent (e.g. a rendition without manifest).
    #[error("plan: {0}")]
    Plan(String),
    /// Fetching or ingesting one object failed; `kind` says how (and whether to retry).
    #[error("{from}: {key}: {message}")]
    Fetch {
        /// The source or appliance (`s3://bucket at …`, `peer oca-2`, `appliance oca-1`).
        from: String,
        /// The object key.
        key: String,
        /// How it failed.
        kind: crate::origin::FaultKind,
        /// The underlying error.
        message: String,
    },
}
