//! `control-plane`: the library `steering` and `fill-controller` embed (DESIGN §1, §5, §6).
//!
//! What it does:
//! - [`catalog`]: titles, renditions and files, imported from a TOML catalog file or an origin
//!   listing, with validation errors that name the title/rendition/file and the field;
//! - [`auth`]: signed, revocable player bearer tokens (user, plan, expiry), plans that cap
//!   resolution, appliance tokens for heartbeats (secrets stored hashed);
//! - URL-signing keys for [`oca_common::token`], rotated with several kids live at once
//!   ([`signing`]);
//! - [`drm`]: per-rendition content keys encrypted at rest under a key-encryption key, and W3C
//!   EME ClearKey licenses issued only for renditions the user's plan allows;
//! - [`recommend`]: regional popularity with decay, item-to-item co-occurrence, personal rows;
//! - [`forecast`]: next-day views per rendition and region (decay, weekly seasonality, launch
//!   calendar, recommendation exposure);
//! - [`store`]: the [`store::Store`] trait and its SQLite implementation (migrations, WAL).
//!
//! Decision logic (token checks, license policy, ranking, forecasting) is pure functions in
//! those modules, tested on fixed inputs with a fixed `now`; [`ControlPlane`] loads their
//! inputs from the store. What it does not do: HTTP (steering serves the endpoints), clocks
//! (every call takes `now`, Unix seconds), media encryption (the packager uses the content
//! keys), or placement (the fill controller). It is never a dependency of `oca`.
//!
//! # API for steering
//!
//! ```no_run
//! use control_plane::{Config, ControlPlane};
//! # fn main() -> Result<(), control_plane::Error> {
//! let cfg = Config::load(std::path::Path::new("/etc/oca/control-plane.toml"))?;
//! let cp = ControlPlane::open(&cfg)?; // KEK from cfg.kek (file or environment)
//! let now = 1_800_000_000;
//! // POST /v1/playback: bearer player token → renditions the plan allows.
//! # let bearer = "";
//! let claims = cp.verify_player_token(bearer, now)?;
//! let renditions = cp.entitled_renditions(&claims, "tears-of-steel")?;
//! // Sign URLs with the newest live key (rotate with cp.rotate_signing_key(now)).
//! let keys = cp.signing_keys()?;
//! // POST /v1/license: ClearKey request body → JSON license.
//! # let body = b"";
//! let license = cp.license(bearer, body, now)?;
//! // POST /v1/oca/heartbeat: bearer appliance token → appliance id.
//! let appliance = cp.verify_appliance_token("oa1.oca-1.secret")?;
//! // POST /v1/events, GET /v1/recommendations; the fill controller reads the forecast.
//! let rows = cp.recommendations("alice", "NL", now)?;
//! let demand = cp.forecast(now)?;
//! # Ok(()) }
//! ```
//!
//! - [`ControlPlane`] is `Send + Sync`; share it in an `Arc`. Each call takes a mutex over one
//!   SQLite connection and **blocks briefly** (microseconds to a few milliseconds; catalog
//!   imports and forecasts over long histories longer): from async code call it inside
//!   `tokio::task::spawn_blocking`.
//! - Errors are [`Error`]: [`Error::code`] and [`Error::http_status`] give the JSON error body
//!   `{"error": code, "message": text}` and the status; messages never contain secrets.
//! - Metrics: [`ControlPlane::register_metrics`] adds `control_plane_*` counters to the
//!   daemon's registry.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod catalog;
pub mod config;
pub mod drm;
mod error;
pub mod forecast;
pub mod metrics;
pub mod recommend;
pub mod signing;
pub mod store;

use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oca_common::token::{KeySet, SigningKey};
use oca_common::wire::{RenditionId, RenditionManifest};

pub use auth::{Plan, PlayerClaims, TokenRejection};
pub use catalog::{FileEntry, ListingEntry, Rendition, Title};
pub use config::Config;
pub use drm::{Kek, KeyId, LicenseError, LicenseResponse};
pub use error::{CatalogIssue, Error, Result};
pub use forecast::{DailyViews, Exposure, Forecast, Launch};
pub use recommend::{Recommendations, Row, RowKind, ViewEvent};
pub use store::{SqliteStore, Store, User};

use crate::drm::KeyInfo;
use crate::metrics::{LicenseLabels, LicenseOutcome, Metrics, TokenLabels, TokenOutcome};
use crate::store::{StoredContentKey, StoredSigningKey};

const META_KEK_CHECK: &str = "kek-check";
const META_PLAYER_SECRET: &str = "player-token-secret";
const KEK_CHECK_PLAINTEXT: &[u8] = b"oca control-plane key-encryption key check v1";
const DAY: u64 = 86_400;

/// What an import changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Titles inserted or replaced.
    pub titles: usize,
    /// Renditions in those titles.
    pub renditions: usize,
    /// Files in those titles.
    pub files: usize,
    /// Content keys created for renditions that had none.
    pub new_content_keys: usize,
}

/// A freshly issued player token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// What it says.
    pub claims: PlayerClaims,
}

/// An issued ClearKey license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    /// The EME ClearKey JSON Web Key set (the response body).
    pub response: LicenseResponse,
    /// When it stops being valid (steering may send it as a header / `Expires`).
    pub expires_at: u64,
    /// Requested kids withheld because the plan does not allow their rendition.
    pub withheld: Vec<KeyId>,
}

/// A rendition the user may watch, with its content key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitledRendition {
    /// The rendition id.
    pub id: RenditionId,
    /// Its catalog entry.
    pub rendition: Rendition,
    /// Its ClearKey key id.
    pub kid: KeyId,
}

/// The control plane: one store, the key-encryption key and the configuration.
pub struct ControlPlane {
    store: Mutex<Box<dyn Store>>,
    kek: Kek,
    player_secret: Vec<u8>,
    cfg: Config,
    metrics: Metrics,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("database", &self.cfg.database.path)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the key-encryption key the config points at.
pub fn load_kek(cfg: &config::KekConfig) -> Result<Kek> {
    if let Some(path) = &cfg.key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Kek(format!("key-file {}: {e}", path.display())))?;
        return Kek::from_base64(&text)
            .map_err(|e| Error::Kek(format!("key-file {}: {e}", path.display())));
    }
    match std::env::var(&cfg.key_env) {
        Ok(v) => Kek::from_base64(&v)
            .map_err(|e| Error::Kek(format!("environment variable {}: {e}", cfg.key_env))),
        Err(_) => Err(Error::Kek(format!(
            "environment variable {} is not set (or set kek.key-file)",
            cfg.key_env
        ))),
    }
}

impl ControlPlane {
    /// Opens the SQLite database of `cfg` (creating and migrating it), with the KEK from
    /// `cfg.kek`.
    pub fn open(cfg: &Config) -> Result<ControlPlane> {
        cfg.validate()?;
        let kek = load_kek(&cfg.kek)?;
        Self::open_with_kek(cfg, kek)
    }

    /// Like [`ControlPlane::open`] with an explicit KEK.
    pub fn open_with_kek(cfg: &Config, kek: Kek) -> Result<ControlPlane> {
        cfg.validate()?;
        let store = SqliteStore::open(&cfg.database.path, cfg.database.busy_timeout)?;
        Self::with_store(Box::new(store), kek, cfg.clone())
    }

    /// Over any [`Store`]. Checks the KEK against the store (a wrong one is
    /// [`Error::WrongKek`]), creates the player-token secret and a first URL-signing key if
    /// missing.
    pub fn with_store(mut store: Box<dyn Store>, kek: Kek, cfg: Config) -> Result<ControlPlane> {
        match store.meta(META_KEK_CHECK)? {
            Some(blob) => {
                let plain = kek.unwrap(META_KEK_CHECK, &blob)?;
                if plain != KEK_CHECK_PLAINTEXT {
                    return Err(Error::WrongKek);
                }
            }
            None => {
                let blob = kek.wrap(META_KEK_CHECK, KEK_CHECK_PLAINTEXT)?;
                store.set_meta(META_KEK_CHECK, &blob)?;
            }
        }
        let player_secret = match store.meta(META_PLAYER_SECRET)? {
            Some(blob) => kek.unwrap(META_PLAYER_SECRET, &blob)?,
            None => {
                let secret = drm::random::<32>()?.to_vec();
                store.set_meta(META_PLAYER_SECRET, &kek.wrap(META_PLAYER_SECRET, &secret)?)?;
                secret
            }
        };
        let cp = ControlPlane {
            store: Mutex::new(store),
            kek,
            player_secret,
            cfg,
            metrics: Metrics::default(),
        };
        if cp.live_signing_keys()?.is_empty() {
            cp.rotate_signing_key(now_unix())?;
        }
        Ok(cp)
    }

    fn store(&self) -> MutexGuard<'_, Box<dyn Store>> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Adds this crate's counters to a Prometheus registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// The database's schema version.
    pub fn schema_version(&self) -> Result<u32> {
        self.store().schema_version()
    }

    // ---------------------------------------------------------------- catalog

    fn put_titles(&self, titles: &[Title], now: u64) -> Result<ImportSummary> {
        let mut store = self.store();
        store.put_titles(titles)?;
        let mut new_keys = 0;
        for t in titles {
            for r in &t.renditions {
                let rid = catalog::rendition_id(t, r)?;
                if store.content_key(&rid)?.is_none() {
                    let key = self.new_content_key(&rid)?;
                    store.put_content_key_if_absent(&key, now)?;
                    new_keys += 1;
                }
            }
        }
        Ok(ImportSummary {
            titles: titles.len(),
            renditions: titles.iter().map(|t| t.renditions.len()).sum(),
            files: titles
                .iter()
                .map(|t| t.files.len() + t.renditions.iter().map(|r| r.files.len()).sum::<usize>())
                .sum(),
            new_content_keys: new_keys,
        })
    }

    /// Imports a TOML catalog file ([`catalog`] describes the format): validates everything
    /// first (nothing is stored if anything is wrong), then inserts or replaces each title and
    /// creates content keys for new renditions.
    pub fn import_catalog_toml(&self, text: &str, now: u64) -> Result<ImportSummary> {
        let titles = catalog::parse_catalog_toml(text)?;
        self.put_titles(&titles, now)
    }

    /// Imports an origin listing (JSON array of `{"key","size","sha256"}`), merged into the
    /// stored catalog by [`catalog::merge_listing`].
    pub fn import_origin_listing_json(&self, text: &str, now: u64) -> Result<ImportSummary> {
        let entries = catalog::parse_listing_json(text)?;
        let existing = self.store().titles()?;
        let titles = catalog::merge_listing(&existing, &entries).map_err(Error::Catalog)?;
        self.put_titles(&titles, now)
    }

    /// One title.
    pub fn title(&self, id: &str) -> Result<Title> {
        self.store().title(id)?.ok_or_else(|| Error::NotFound {
            what: "title",
            id: id.to_owned(),
        })
    }

    /// All titles.
    pub fn titles(&self) -> Result<Vec<Title>> {
        self.store().titles()
    }

    /// The rendition manifest of a rendition (for the fill controller).
    pub fn rendition_manifest(&self, rendition: &RenditionId) -> Result<RenditionManifest> {
        self.title(rendition.title())?
            .manifest(rendition.rendition())
            .ok_or_else(|| Error::NotFound {
                what: "rendition",
                id: rendition.to_string(),
            })
    }

    // ---------------------------------------------------------------- users and tokens

    /// Adds or updates a plan.
    pub fn set_plan(&self, plan: &Plan) -> Result<()> {
        if !auth::valid_plan_name(&plan.name) {
            return Err(Error::InvalidId {
                what: "plan",
                id: plan.name.clone(),
                reason: "must match [a-z0-9-]{1,32}",
            });
        }
        self.store().put_plan(plan)
    }

    /// All plans.
    pub fn plans(&self) -> Result<Vec<Plan>> {
        self.store().plans()
    }

    /// Adds a user or changes their plan.
    pub fn put_user(&self, id: &str, plan: &str) -> Result<()> {
        if !auth::valid_user_id(id) {
            return Err(Error::InvalidId {
                what: "user",
                id: id.to_owned(),
                reason: "must match [A-Za-z0-9_-]{1,64}",
            });
        }
        let mut store = self.store();
        if store.plan(plan)?.is_none() {
            return Err(Error::NotFound {
                what: "plan",
                id: plan.to_owned(),
            });
        }
        store.put_user(&User {
            id: id.to_owned(),
            plan: plan.to_owned(),
        })
    }

    /// Issues a player token for a stored user, valid for `tokens.player-token-ttl`.
    pub fn issue_player_token(&self, user: &str, now: u64) -> Result<IssuedToken> {
        let u = self.store().user(user)?.ok_or_else(|| Error::NotFound {
            what: "user",
            id: user.to_owned(),
        })?;
        let claims = PlayerClaims {
            user: u.id,
            plan: u.plan,
            exp: now.saturating_add(self.cfg.tokens.player_token_ttl.as_secs()),
            token_id: URL_SAFE_NO_PAD.encode(drm::random::<16>()?),
        };
        Ok(IssuedToken {
            token: auth::sign_player_token(&self.player_secret, &claims),
            claims,
        })
    }

    /// Verifies a player token: syntax, expiry, signature, then the revocation list.
    pub fn verify_player_token(&self, token: &str, now: u64) -> Result<PlayerClaims> {
        let res = self.verify_player_token_inner(token, now);
        let outcome = match &res {
            Ok(_) => TokenOutcome::ok,
            Err(Error::PlayerToken(TokenRejection::Malformed)) => TokenOutcome::malformed,
            Err(Error::PlayerToken(TokenRejection::Expired)) => TokenOutcome::expired,
            Err(Error::PlayerToken(TokenRejection::BadSignature)) => TokenOutcome::bad_signature,
            Err(Error::PlayerToken(TokenRejection::Revoked)) => TokenOutcome::revoked,
            Err(_) => return res,
        };
        self.metrics
            .tokens
            .get_or_create(&TokenLabels { outcome })
            .inc();
        res
    }

    fn verify_player_token_inner(&self, token: &str, now: u64) -> Result<PlayerClaims> {
        let claims = auth::verify_player_token(
            &self.player_secret,
            token,
            now,
            self.cfg.tokens.clock_skew.as_secs(),
        )?;
        if self.store().is_revoked(&claims.token_id)? {
            return Err(TokenRejection::Revoked.into());
        }
        Ok(claims)
    }

    /// Revokes a player token (by its token id) until it expires. The token must verify
    /// (revoking a forged token is refused); revoking twice is fine.
    pub fn revoke_player_token(&self, token: &str, now: u64) -> Result<PlayerClaims> {
        let claims = auth::verify_player_token(
            &self.player_secret,
            token,
            now,
            self.cfg.tokens.clock_skew.as_secs(),
        )?;
        let mut store = self.store();
        store.revoke_token(
            &claims.token_id,
            claims
                .exp
                .saturating_add(self.cfg.tokens.clock_skew.as_secs()),
        )?;
        store.prune_revocations(now)?;
        Ok(claims)
    }

    /// The renditions of a title the token's plan allows (height cap), each with its content
    /// key id, tallest first: what `POST /v1/playback` lists.
    pub fn entitled_renditions(
        &self,
        claims: &PlayerClaims,
        title: &str,
    ) -> Result<Vec<EntitledRendition>> {
        let mut store = self.store();
        let plan = store.plan(&claims.plan)?.ok_or_else(|| Error::NotFound {
            what: "plan",
            id: claims.plan.clone(),
        })?;
        let t = store.title(title)?.ok_or_else(|| Error::NotFound {
            what: "title",
            id: title.to_owned(),
        })?;
        let mut out = Vec::new();
        for r in t.renditions.iter().filter(|r| plan.allows(r.height)) {
            let id = catalog::rendition_id(&t, r)?;
            let key = match store.content_key(&id)? {
                Some(k) => k,
                None => store.put_content_key_if_absent(&self.new_content_key(&id)?, now_unix())?,
            };
            out.push(EntitledRendition {
                id,
                rendition: r.clone(),
                kid: key.kid,
            });
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- appliances

    /// Registers an appliance (or replaces its secret) and returns its bearer token
    /// `oa1.{id}.{secret}`, shown once: only a hash is stored.
    pub fn register_appliance(&self, id: &str) -> Result<String> {
        if !auth::valid_appliance_id(id) {
            return Err(Error::InvalidId {
                what: "appliance",
                id: id.to_owned(),
                reason: "must match [A-Za-z0-9._-]{1,64}",
            });
        }
        let secret = URL_SAFE_NO_PAD.encode(drm::random::<32>()?);
        self.store()
            .put_appliance(id, &auth::hash_appliance_secret(&secret))?;
        Ok(format!("oa1.{id}.{secret}"))
    }

    /// Verifies an appliance bearer token; returns the appliance id.
    pub fn verify_appliance_token(&self, token: &str) -> Result<String> {
        let (id, secret) = auth::parse_appliance_token(token).ok_or(Error::ApplianceToken)?;
        let stored = self
            .store()
            .appliance_secret_hash(id)?
            .ok_or(Error::ApplianceToken)?;
        if auth::appliance_secret_matches(secret, &stored) {
            Ok(id.to_owned())
        } else {
            Err(Error::ApplianceToken)
        }
    }

    // ---------------------------------------------------------------- URL-signing keys

    fn live_signing_keys(&self) -> Result<Vec<(StoredSigningKey, SigningKey)>> {
        let rows = self.store().signing_keys()?;
        let mut out = Vec::new();
        for row in rows.into_iter().filter(|r| r.retired_at.is_none()) {
            let secret = self
                .kek
                .unwrap(&format!("signing-key:{}", row.kid), &row.wrapped)?;
            let key = SigningKey {
                kid: row.kid.clone(),
                secret,
            };
            out.push((row, key));
        }
        Ok(out)
    }

    /// The live URL-signing keys; [`KeySet::newest`] is the one to sign with.
    pub fn signing_keys(&self) -> Result<KeySet> {
        let keys: Vec<SigningKey> = self
            .live_signing_keys()?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        Ok(KeySet::new(keys)?)
    }

    /// The live keys as a key file for appliances (DESIGN §3; reloaded on SIGHUP).
    pub fn signing_key_file(&self) -> Result<String> {
        let keys: Vec<SigningKey> = self
            .live_signing_keys()?
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        Ok(signing::key_file(&keys))
    }

    /// Adds a new signing key (it becomes the newest) and retires the oldest live keys beyond
    /// `signing.max-live-keys`. Returns the new kid.
    pub fn rotate_signing_key(&self, now: u64) -> Result<String> {
        let mut store = self.store();
        let all = store.signing_keys()?;
        let seq = all.iter().map(|k| k.seq).max().unwrap_or(0) + 1;
        let kid = signing::kid_for_seq(seq);
        let secret = drm::random::<32>()?;
        store.add_signing_key(&StoredSigningKey {
            kid: kid.clone(),
            seq,
            wrapped: self.kek.wrap(&format!("signing-key:{kid}"), &secret)?,
            created_at: now,
            retired_at: None,
        })?;
        let live: Vec<u64> = all
            .iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.seq)
            .chain([seq])
            .collect();
        for old in signing::to_retire(&live, self.cfg.signing.max_live_keys) {
            store.retire_signing_key(&signing::kid_for_seq(old), now)?;
        }
        self.metrics.rotations.inc();
        Ok(kid)
    }

    /// Retires a key at once (e.g. after a leak). The last live key cannot be retired: rotate
    /// first.
    pub fn retire_signing_key(&self, kid: &str, now: u64) -> Result<()> {
        let mut store = self.store();
        let live: Vec<String> = store
            .signing_keys()?
            .into_iter()
            .filter(|k| k.retired_at.is_none())
            .map(|k| k.kid)
            .collect();
        if !live.iter().any(|k| k == kid) {
            return Err(Error::NotFound {
                what: "live signing key",
                id: kid.to_owned(),
            });
        }
        if live.len() == 1 {
            return Err(Error::InvalidId {
                what: "signing key",
                id: kid.to_owned(),
                reason: "it is the last live key; rotate first",
            });
        }
        store.retire_signing_key(kid, now)?;
        Ok(())
    }

    // ---------------------------------------------------------------- DRM

    fn new_content_key(&self, rendition: &RenditionId) -> Result<StoredContentKey> {
        let kid = KeyId(drm::random::<16>()?);
        let key = drm::random::<16>()?;
        Ok(StoredContentKey {
            rendition: rendition.clone(),
            kid,
            wrapped: self.kek.wrap(&content_key_aad(rendition, &kid), &key)?,
        })
    }

    fn unwrap_content_key(&self, k: &StoredContentKey) -> Result<[u8; 16]> {
        let plain = self
            .kek
            .unwrap(&content_key_aad(&k.rendition, &k.kid), &k.wrapped)?;
        plain
            .try_into()
            .map_err(|_| Error::Corrupt(format!("content key of {} is not 16 bytes", k.rendition)))
    }

    /// The content key id of a rendition (created if the rendition has none yet).
    pub fn content_key_id(&self, rendition: &RenditionId, now: u64) -> Result<KeyId> {
        let mut store = self.store();
        if let Some(k) = store.content_key(rendition)? {
            return Ok(k.kid);
        }
        Ok(store
            .put_content_key_if_absent(&self.new_content_key(rendition)?, now)?
            .kid)
    }

    /// The clear content key of a rendition, for the packager that encrypts it (an operator
    /// call, never exposed to players).
    pub fn content_key_for_packager(
        &self,
        rendition: &RenditionId,
        now: u64,
    ) -> Result<(KeyId, [u8; 16])> {
        let kid = self.content_key_id(rendition, now)?;
        let k = self
            .store()
            .content_key_by_kid(&kid)?
            .ok_or_else(|| Error::Corrupt("content key vanished".into()))?;
        Ok((kid, self.unwrap_content_key(&k)?))
    }

    /// Answers `POST /v1/license`: checks the player token, parses the ClearKey request and
    /// hands out the keys [`drm::license_policy`] allows.
    pub fn license(&self, player_token: &str, request: &[u8], now: u64) -> Result<License> {
        let res = self.license_inner(player_token, request, now);
        let outcome = match &res {
            Ok(_) => LicenseOutcome::issued,
            Err(Error::PlayerToken(_)) => LicenseOutcome::bad_token,
            Err(Error::License(LicenseError::UnknownKid(_))) => LicenseOutcome::unknown_kid,
            Err(Error::License(LicenseError::NotEntitled { .. })) => LicenseOutcome::not_entitled,
            Err(Error::License(_)) => LicenseOutcome::bad_request,
            Err(_) => return res,
        };
        self.metrics
            .licenses
            .get_or_create(&LicenseLabels { outcome })
            .inc();
        res
    }

    fn license_inner(&self, player_token: &str, request: &[u8], now: u64) -> Result<License> {
        let claims = self.verify_player_token(player_token, now)?;
        let kids = drm::parse_license_request(request)?;
        let store = self.store();
        let plan = store.plan(&claims.plan)?.ok_or_else(|| Error::NotFound {
            what: "plan",
            id: claims.plan.clone(),
        })?;
        let mut known = Vec::new();
        let mut rows = Vec::new();
        for kid in &kids {
            let Some(row) = store.content_key_by_kid(kid)? else {
                continue;
            };
            let height = store
                .title(row.rendition.title())?
                .and_then(|t| t.rendition(row.rendition.rendition()).map(|r| r.height));
            // A key whose rendition left the catalog is treated as unknown.
            if let Some(height) = height {
                known.push(KeyInfo {
                    kid: *kid,
                    rendition: row.rendition.clone(),
                    height,
                });
                rows.push(row);
            }
        }
        drop(store);
        let grant = drm::license_policy(
            &claims,
            &plan,
            &kids,
            &known,
            now,
            self.cfg.licenses.ttl.as_secs(),
        )?;
        let mut pairs = Vec::with_capacity(grant.kids.len());
        for kid in &grant.kids {
            if let Some(row) = rows.iter().find(|r| r.kid == *kid) {
                pairs.push((*kid, self.unwrap_content_key(row)?));
            }
        }
        Ok(License {
            response: LicenseResponse::temporary(&pairs),
            expires_at: grant.expires_at,
            withheld: grant.refused,
        })
    }

    // ---------------------------------------------------------------- events, recommendation, forecast

    /// Records view events (`POST /v1/events`). Every event must name a valid user id and
    /// region; nothing is stored if one is bad.
    pub fn record_views(&self, events: &[ViewEvent]) -> Result<()> {
        for e in events {
            if !auth::valid_user_id(&e.user) {
                return Err(Error::InvalidId {
                    what: "user",
                    id: e.user.clone(),
                    reason: "must match [A-Za-z0-9_-]{1,64}",
                });
            }
            if e.region.is_empty()
                || e.region.len() > 32
                || !e
                    .region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::InvalidId {
                    what: "region",
                    id: e.region.clone(),
                    reason: "must match [A-Za-z0-9_-]{1,32}",
                });
            }
        }
        self.store().record_views(events)?;
        self.metrics.views.inc_by(events.len() as u64);
        Ok(())
    }

    /// Recommendation rows for a user in a region (`GET /v1/recommendations`), from the views
    /// of the last `recommend.history`. The titles shown are recorded as impressions for
    /// today, which the forecast counts as exposure.
    pub fn recommendations(&self, user: &str, region: &str, now: u64) -> Result<Recommendations> {
        let (titles, events) = {
            let store = self.store();
            let since = now.saturating_sub(self.cfg.recommend.history.as_secs());
            (store.titles()?, store.views(since, now.saturating_add(1))?)
        };
        let meta: Vec<recommend::TitleMeta> = titles
            .into_iter()
            .map(|t| recommend::TitleMeta {
                id: t.id,
                genres: t.genres,
                launch: t.launch,
                regions: t.regions,
            })
            .collect();
        let recs = recommend::recommend(
            user,
            region,
            now,
            &meta,
            &events,
            &self.cfg.recommend.params(),
        );
        let mut shown: Vec<String> = recs
            .rows
            .iter()
            .flat_map(|r| r.titles.iter().cloned())
            .collect();
        shown.sort();
        shown.dedup();
        self.store()
            .record_impressions((now / DAY) as i64, region, &shown)?;
        Ok(recs)
    }

    /// Tomorrow's (UTC) expected views per rendition and region: the complete days of history
    /// before today from the store, the launch calendar from the catalog, today's
    /// recommendation impressions.
    pub fn forecast(&self, now: u64) -> Result<Vec<Forecast>> {
        let today = (now / DAY) as i64;
        let target = today + 1;
        let params = self.cfg.forecast.params();
        let (history, titles, exposure) = {
            let store = self.store();
            (
                store.daily_views(today - i64::from(params.history_days), today)?,
                store.titles()?,
                store.impressions(today, target)?,
            )
        };
        let mut launches = Vec::new();
        for t in &titles {
            if let Some(l) = t.launch
                && (l / DAY) as i64 == target
            {
                launches.push(Launch {
                    title: t.id.clone(),
                    day: target,
                    regions: t.regions.clone(),
                    renditions: t
                        .renditions
                        .iter()
                        .map(|r| catalog::rendition_id(t, r))
                        .collect::<Result<_>>()?,
                    prior_quantile: None,
                });
            }
        }
        // Today is still running: forecast from the complete days before it.
        Ok(forecast::forecast(
            target, today, &history, &launches, &exposure, &params,
        ))
    }
}

fn content_key_aad(rendition: &RenditionId, kid: &KeyId) -> String {
    format!("content-key:{rendition}:{}", kid.to_b64url())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn facade_is_send_and_sync() {
        assert_send_sync::<ControlPlane>();
    }
}
