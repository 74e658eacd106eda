//! The store's admin API (DESIGN §4 "Ports"): object ingest and delete, rendition manifest
//! commit and delete. The bytes of a `PUT /v1/objects/{key}` stream from the request body
//! into the tiered store's ingest (hashed while written through the I/O engine); nothing is
//! visible or kept unless the whole body arrived and matched `x-oca-sha256`.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use oca_common::ObjectKey;
use oca_common::wire::{RenditionId, RenditionManifest, Tier};
use oca_storage::{IngestOutcome, IngestStart, StorageError};

use crate::admin::{error, json};
use crate::handler::Shared;
use crate::metrics::{IngestLabels, IngestOutcome as Outcome};

type Resp = hyper::Response<Full<Bytes>>;

/// Largest rendition manifest accepted.
const MAX_MANIFEST_BYTES: usize = 16 << 20;

// The error is the finished HTTP answer (rare path); boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
fn header<'a>(req: &'a hyper::Request<Incoming>, name: &str) -> Result<Option<&'a str>, Resp> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("{name} is not ASCII"),
            )
        }),
    }
}

/// Status, error code and the metric outcome of a store error.
fn storage_error(e: &StorageError) -> (StatusCode, &'static str, Outcome) {
    match e {
        StorageError::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_request", Outcome::BadRequest),
        StorageError::Conflict(_) => (StatusCode::CONFLICT, "conflict", Outcome::Conflict),
        StorageError::ChecksumMismatch { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "checksum_mismatch",
            Outcome::Checksum,
        ),
        StorageError::NoSpace(_) => (
            StatusCode::INSUFFICIENT_STORAGE,
            "no_space",
            Outcome::NoSpace,
        ),
        StorageError::DriveFailed(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "drive_failed",
            Outcome::Error,
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "io_error",
            Outcome::Error,
        ),
    }
}

fn count(shared: &Shared, outcome: Outcome) {
    shared
        .metrics
        .ingests
        .get_or_create(&IngestLabels { outcome })
        .inc();
}

fn fail(shared: &Shared, e: &StorageError) -> Resp {
    let (status, code, outcome) = storage_error(e);
    count(shared, outcome);
    if status.is_server_error() {
        tracing::error!(error = %e, "ingest failed");
    }
    error(status, code, &e.to_string())
}

fn bad(shared: &Shared, message: &str) -> Resp {
    count(shared, Outcome::BadRequest);
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// `PUT` or `DELETE /v1/objects/{key}`.
pub async fn object(shared: &Shared, key: &str, req: hyper::Request<Incoming>) -> Resp {
    let key = match ObjectKey::parse(key) {
        Ok(k) => k,
        Err(e) => return bad(shared, &format!("bad object key: {e}")),
    };
    if req.method() == Method::DELETE {
        return match shared.tiered.delete(&key).await {
            Ok(Some(path)) => {
                shared.files.forget(&path);
                json(
                    StatusCode::OK,
                    serde_json::json!({ "key": key, "deleted": true }).to_string() + "\n",
                )
            }
            Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such object"),
            Err(e) => fail(shared, &e),
        };
    }
    #[allow(clippy::result_large_err)] // as in `header`
    let parsed = (|| -> Result<_, Resp> {
        let sha = header(&req, "x-oca-sha256")?
            .ok_or_else(|| bad(shared, "x-oca-sha256 is required"))?
            .to_ascii_lowercase();
        let tier = match header(&req, "x-oca-tier")? {
            None => None,
            Some(t) => Some(
                t.parse::<Tier>()
                    .map_err(|_| bad(shared, "x-oca-tier must be flash or disk"))?,
            ),
        };
        let published = match header(&req, "x-oca-published")? {
            None => None,
            Some(p) => Some(
                p.parse::<u64>()
                    .map_err(|_| bad(shared, "x-oca-published must be Unix seconds"))?,
            ),
        };
        let len = match header(&req, "content-length")? {
            None => {
                count(shared, Outcome::BadRequest);
                return Err(error(
                    StatusCode::LENGTH_REQUIRED,
                    "length_required",
                    "Content-Length is required (the space is reserved before writing)",
                ));
            }
            Some(l) => l
                .parse::<u64>()
                .map_err(|_| bad(shared, "bad Content-Length"))?,
        };
        Ok((sha, tier, published, len))
    })();
    let (sha, tier, published, len) = match parsed {
        Ok(p) => p,
        Err(r) => return r,
    };
    if len > shared.config.storage.max_ingest_bytes {
        count(shared, Outcome::BadRequest);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!(
                "objects above storage.max-ingest-bytes ({} bytes) are refused",
                shared.config.storage.max_ingest_bytes
            ),
        );
    }
    let mut ing = match shared
        .tiered
        .begin_ingest(key.clone(), &sha, len, tier, published)
        .await
    {
        Ok(IngestStart::AlreadyPresent) => {
            count(shared, Outcome::Present);
            return json(
                StatusCode::OK,
                serde_json::json!({ "key": key, "status": "present" }).to_string() + "\n",
            );
        }
        Ok(IngestStart::Started(ing)) => *ing,
        Err(e) => return fail(shared, &e),
    };
    let idle = shared.config.limits.idle_timeout;
    let mut body = req.into_body();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                count(shared, Outcome::BadRequest);
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    &format!("no body bytes for {}", humantime::format_duration(idle)),
                );
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return bad(shared, &format!("request body: {e}"));
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
            && let Err(e) = ing.write(data).await
        {
            return fail(shared, &e);
        }
    }
    match ing.finish().await {
        Ok(IngestOutcome::Created { tier, size }) => {
            count(shared, Outcome::Created);
            shared.metrics.ingest_bytes.inc_by(size);
            json(
                StatusCode::CREATED,
                serde_json::json!({ "key": key, "status": "created", "tier": tier, "size": size })
                    .to_string()
                    + "\n",
            )
        }
        Ok(IngestOutcome::AlreadyPresent) => {
            count(shared, Outcome::Present);
            json(
                StatusCode::OK,
                serde_json::json!({ "key": key, "status": "present" }).to_string() + "\n",
            )
        }
        Err(e) => fail(shared, &e),
    }
}

/// `PUT` or `DELETE /v1/renditions/{title}/{rendition}`.
pub async fn rendition(shared: &Shared, rest: &str, req: hyper::Request<Incoming>) -> Resp {
    let id = match RenditionId::parse(rest) {
        Ok(id) => id,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("bad rendition (want /v1/renditions/{{title}}/{{rendition}}): {e}"),
            );
        }
    };
    if req.method() == Method::DELETE {
        return match shared.tiered.delete_rendition(&id).await {
            Ok(Some(paths)) => {
                for p in &paths {
                    shared.files.forget(p);
                }
                json(
                    StatusCode::OK,
                    serde_json::json!({ "rendition": id, "deleted": true, "files": paths.len() })
                        .to_string()
                        + "\n",
                )
            }
            Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such rendition held"),
            Err(e) => {
                let (status, code, _) = storage_error(&e);
                error(status, code, &e.to_string())
            }
        };
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_MANIFEST_BYTES);
    let bytes = match tokio::time::timeout(Duration::from_secs(60), limited.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_body",
                &format!("manifest body: {e} (at most {MAX_MANIFEST_BYTES} bytes)"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "manifest body too slow",
            );
        }
    };
    let manifest: RenditionManifest = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_manifest",
                &format!("manifest is not valid JSON for a rendition manifest: {e}"),
            );
        }
    };
    match shared.tiered.commit_rendition(&id, manifest) {
        Ok(entry) => json(
            StatusCode::OK,
            serde_json::to_string_pretty(&entry).unwrap_or_default() + "\n",
        ),
        Err(e) => {
            let (status, code, _) = storage_error(&e);
            error(status, code, &e.to_string())
        }
    }
}

/// Heartbeats report the tiered store's inventory and tiers.
impl crate::heartbeat::InventorySource for oca_storage::TieredStore {
    fn inventory(&self, since: Option<u64>) -> oca_common::wire::Inventory {
        oca_storage::TieredStore::inventory(self, since)
    }

    fn tiers(&self) -> Vec<oca_common::wire::TierStatus> {
        self.tier_status()
    }
}
