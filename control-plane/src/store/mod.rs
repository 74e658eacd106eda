//! The storage boundary: the [`Store`] trait and its SQLite implementation
//! ([`SqliteStore`]). The facade ([`crate::ControlPlane`]) holds one store behind a mutex and
//! does all decision-making itself, so a PostgreSQL store only has to implement these
//! row-level calls (and its own migrations).
//!
//! Secrets cross this boundary **wrapped** (AES-256-GCM under the key-encryption key): a
//! store never sees a content key or signing secret in clear.

mod sqlite;

pub use sqlite::{MIGRATIONS, SqliteStore};

use oca_common::wire::RenditionId;

use crate::auth::Plan;
use crate::catalog::Title;
use crate::drm::KeyId;
use crate::error::Result;
use crate::forecast::{DailyViews, Exposure};
use crate::recommend::ViewEvent;

/// A content key row (key wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContentKey {
    /// The rendition it encrypts.
    pub rendition: RenditionId,
    /// Key id.
    pub kid: KeyId,
    /// `nonce || ciphertext || tag`.
    pub wrapped: Vec<u8>,
}

/// A URL-signing key row (secret wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// Key id, `k` + 10 digits of `seq`.
    pub kid: String,
    /// Rotation sequence number, 1, 2, …
    pub seq: u64,
    /// The wrapped secret.
    pub wrapped: Vec<u8>,
    /// When created, Unix seconds.
    pub created_at: u64,
    /// When retired, if it was.
    pub retired_at: Option<u64>,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub id: String,
    /// Plan name.
    pub plan: String,
}

/// Row-level storage. Every call is short; implementations may block (on disk or network).
pub trait Store: Send {
    /// Highest migration applied.
    fn schema_version(&self) -> Result<u32>;

    /// A named opaque value (wrapped secrets, the KEK check).
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Sets a named value.
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()>;

    /// Inserts or replaces whole titles (renditions and files included), atomically.
    fn put_titles(&mut self, titles: &[Title]) -> Result<()>;
    /// One title with renditions and files.
    fn title(&self, id: &str) -> Result<Option<Title>>;
    /// All titles with renditions and files, by id.
    fn titles(&self) -> Result<Vec<Title>>;

    /// Stores a content key unless the rendition has one; returns the rendition's key.
    fn put_content_key_if_absent(
        &mut self,
        key: &StoredContentKey,
        now: u64,
    ) -> Result<StoredContentKey>;
    /// The content key of a rendition.
    fn content_key(&self, rendition: &RenditionId) -> Result<Option<StoredContentKey>>;
    /// The content key with this kid.
    fn content_key_by_kid(&self, kid: &KeyId) -> Result<Option<StoredContentKey>>;

    /// Inserts or updates a plan.
    fn put_plan(&mut self, plan: &Plan) -> Result<()>;
    /// A plan by name.
    fn plan(&self, name: &str) -> Result<Option<Plan>>;
    /// All plans, by name.
    fn plans(&self) -> Result<Vec<Plan>>;

    /// Inserts or updates a user (the plan must exist).
    fn put_user(&mut self, user: &User) -> Result<()>;
    /// A user by id.
    fn user(&self, id: &str) -> Result<Option<User>>;

    /// Adds a token id to the revocation list until `expires_at`.
    fn revoke_token(&mut self, token_id: &str, expires_at: u64) -> Result<()>;
    /// True if the token id is revoked.
    fn is_revoked(&self, token_id: &str) -> Result<bool>;
    /// Drops revocations of tokens expired before `now`; returns how many.
    fn prune_revocations(&mut self, now: u64) -> Result<usize>;

    /// Inserts or replaces an appliance's secret hash.
    fn put_appliance(&mut self, id: &str, secret_sha256: &[u8]) -> Result<()>;
    /// An appliance's secret hash.
    fn appliance_secret_hash(&self, id: &str) -> Result<Option<Vec<u8>>>;

    /// Adds a signing key.
    fn add_signing_key(&mut self, key: &StoredSigningKey) -> Result<()>;
    /// Signing keys by `seq`, retired ones too.
    fn signing_keys(&self) -> Result<Vec<StoredSigningKey>>;
    /// Marks a key retired; false if no live key has this kid.
    fn retire_signing_key(&mut self, kid: &str, at: u64) -> Result<bool>;

    /// Appends view events.
    fn record_views(&mut self, events: &[ViewEvent]) -> Result<()>;
    /// View events with `from <= at < to`.
    fn views(&self, from: u64, to: u64) -> Result<Vec<ViewEvent>>;
    /// View counts per UTC day, rendition and region for days `from_day..to_day`.
    fn daily_views(&self, from_day: i64, to_day: i64) -> Result<Vec<DailyViews>>;

    /// Adds recommendation impressions of titles in a region on a day.
    fn record_impressions(&mut self, day: i64, region: &str, titles: &[String]) -> Result<()>;
    /// Impressions on days `from_day..to_day`, summed per title and region.
    fn impressions(&self, from_day: i64, to_day: i64) -> Result<Vec<Exposure>>;
}
