//! The crate's one error type. Every variant says what went wrong and, where it applies, where
//! (catalog path, config key, kid); none carries secret material, so all are safe to log.

use std::fmt;

use crate::auth::TokenRejection;
use crate::drm::LicenseError;

/// A catalog validation problem: which title/rendition/file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogIssue {
    /// Where: e.g. `title "tos" rendition "1080p" file "seg-1.m4s"` or `listing[3]`.
    pub path: String,
    /// The field at fault (`id`, `sha256`, `height`, `key`…).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for CatalogIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.field, self.message)
    }
}

/// Everything that can fail in the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store (SQLite) failed: cannot open the file, disk full, locked past the busy timeout.
    #[error("database: {0}")]
    Database(String),
    /// The database was written by a newer version of this crate (schema version too high).
    #[error("database schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew {
        /// Version recorded in the database.
        found: u32,
        /// Highest migration this build has.
        known: u32,
    },
    /// Bad configuration; the message names the file (when read from one) and the line or
    /// key it is about.
    #[error("config: {0}")]
    Config(String),
    /// The key-encryption key is missing or malformed (not 32 bytes of base64).
    #[error("key-encryption key: {0}")]
    Kek(String),
    /// The key-encryption key does not decrypt the secrets in this database: it is not the key
    /// the database was created with.
    #[error("key-encryption key does not match this database (wrong key?)")]
    WrongKek,
    /// Stored data failed a consistency check (a row that cannot be decoded).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A catalog file is not valid TOML or JSON of the expected shape (with line where known).
    #[error("catalog file: {0}")]
    CatalogSyntax(String),
    /// A catalog failed validation: every issue found, each naming title/rendition/file and
    /// field.
    #[error("catalog invalid: {}", join_issues(.0))]
    Catalog(Vec<CatalogIssue>),
    /// Something asked for does not exist (title, rendition, user, plan, appliance, kid).
    #[error("{what} {id:?} not found")]
    NotFound {
        /// Kind of thing (`title`, `user`…).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// An id given by a caller is malformed (user id, plan name, appliance id, region).
    #[error("invalid {what} {id:?}: {reason}")]
    InvalidId {
        /// Kind of id.
        what: &'static str,
        /// The id as given.
        id: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A player token was refused.
    #[error("player token refused: {0}")]
    PlayerToken(#[from] TokenRejection),
    /// An appliance bearer token was refused (unknown appliance or wrong secret).
    #[error("appliance token refused")]
    ApplianceToken,
    /// A ClearKey license request was refused.
    #[error("license refused: {0}")]
    License(#[from] LicenseError),
    /// URL-signing keys could not be built into a key set.
    #[error("signing keys: {0}")]
    SigningKeys(#[from] oca_common::token::KeyFileError),
    /// The system random generator or a cipher failed unexpectedly.
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
}

fn join_issues(issues: &[CatalogIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Database(e.to_string())
    }
}

impl Error {
    /// Stable snake_case code for the JSON error body (`{"error": code, "message": text}`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Database(_) => "database",
            Error::SchemaTooNew { .. } => "schema_too_new",
            Error::Config(_) => "bad_config",
            Error::Kek(_) => "bad_kek",
            Error::WrongKek => "wrong_kek",
            Error::Corrupt(_) => "corrupt",
            Error::CatalogSyntax(_) => "catalog_syntax",
            Error::Catalog(_) => "catalog_invalid",
            Error::NotFound { .. } => "not_found",
            Error::InvalidId { .. } => "invalid_id",
            Error::PlayerToken(r) => r.reason(),
            Error::ApplianceToken => "bad_appliance_token",
            Error::License(l) => l.code(),
            Error::SigningKeys(_) => "signing_keys",
            Error::Crypto(_) => "crypto",
        }
    }

    /// The HTTP status a service should answer with: 4xx for the caller's mistakes, 5xx for
    /// the server's.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::CatalogSyntax(_) | Error::Catalog(_) | Error::InvalidId { .. } => 400,
            Error::PlayerToken(_) | Error::ApplianceToken => 401,
            Error::License(l) => l.http_status(),
            Error::NotFound { .. } => 404,
            _ => 500,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
