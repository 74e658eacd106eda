//! Where a fill's bytes come from (DESIGN §6): the **origin** — any S3-compatible store
//! through `object_store` (SigV4), or a local directory, the embedded default — and **peer**
//! appliances, read over their plain HTTP port.
//!
//! Layout: an object lives in the origin under its object key, `{title}/{rendition}/{file}`
//! (DESIGN §2), below an optional prefix. Rendition manifests (sizes and SHA-256 per file)
//! come from the catalog (`control-plane`), not from the origin; the appliance checks every
//! byte against them (`x-oca-sha256`), so a source that sends wrong bytes ingests nothing.
//!
//! A peer is read with `GET /t/{token}/{key}` on its plain HTTP port, signed with a URL-signing
//! key the controller holds (a whole-title token, no client prefix, one hour), or
//! `GET /o/{key}` when no key is configured (appliances with `require-token = false`). The
//! plain port serves with `sendfile`, which is why it, not the admin port, is the peer path.
//!
//! What this module does not do: retry (the executor does, per [`FaultKind`]), rate-limit,
//! or list the origin.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use oca_common::ObjectKey;
use oca_common::token::{SigningKey, TokenParams};

use crate::error::FillError;

/// A stream of an object's bytes; an error mid-stream is a cut connection.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, FillError>> + Send>>;

/// Request bodies the controller sends.
pub type Body =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The HTTP/1.1 client for appliances (ingest on the admin port, peer reads on the plain port).
pub type HttpClient = Client<HttpConnector, Body>;

/// A client with Nagle off and a 5 s connect timeout.
pub fn http_client() -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new()).build(conn)
}

/// Why fetching or ingesting one object failed, as counted in `fill_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The source answered 5xx.
    ServerError,
    /// No bytes for longer than the idle timeout.
    Stall,
    /// The connection broke mid-object.
    Cut,
    /// The source does not have the object.
    NotFound,
    /// The source refused the credentials.
    Auth,
    /// The appliance found the bytes did not match the manifest's SHA-256 (422).
    Checksum,
    /// The appliance refused or failed the ingest (409, 5xx, 507…).
    Appliance,
    /// Anything else (connection refused, bad answer).
    Other,
}

impl FaultKind {
    /// Every kind (the label values of `fill_errors_total`).
    pub const ALL: [FaultKind; 8] = [
        FaultKind::ServerError,
        FaultKind::Stall,
        FaultKind::Cut,
        FaultKind::NotFound,
        FaultKind::Auth,
        FaultKind::Checksum,
        FaultKind::Appliance,
        FaultKind::Other,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::ServerError => "server_error",
            FaultKind::Stall => "stall",
            FaultKind::Cut => "cut",
            FaultKind::NotFound => "not_found",
            FaultKind::Auth => "auth",
            FaultKind::Checksum => "checksum",
            FaultKind::Appliance => "appliance",
            FaultKind::Other => "other",
        }
    }

    /// Worth trying the same source again after a pause.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            FaultKind::ServerError | FaultKind::Stall | FaultKind::Cut | FaultKind::Other
        )
    }
}

/// Settings of an S3-compatible origin. `Debug` never shows the secret.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Region (any string for MinIO/Ceph/s3s; `us-east-1` if empty).
    pub region: String,
    /// Endpoint URL for non-AWS stores, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Allow plain `http://` endpoints (loopback tests, private networks).
    pub allow_http: bool,
    /// Key prefix inside the bucket, without slashes at the ends; empty for none.
    pub prefix: String,
    /// Idle connections kept per host; `Some(0)` makes every request a new connection.
    pub pool_max_idle_per_host: Option<usize>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The origin: an `object_store` with a name for messages.
#[derive(Debug, Clone)]
pub struct Origin {
    store: Arc<dyn ObjectStore>,
    name: String,
    prefix: String,
}

fn join(prefix: &str, key: &ObjectKey) -> StorePath {
    if prefix.is_empty() {
        StorePath::from(key.as_str())
    } else {
        StorePath::from(format!("{prefix}/{}", key.as_str()))
    }
}

impl Origin {
    /// A local directory (created if missing), objects at `{dir}/{key}`.
    pub fn local(dir: &Path) -> Result<Origin, FillError> {
        let name = format!("dir {}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| FillError::Origin {
            origin: name.clone(),
            message: e.to_string(),
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| FillError::Origin {
                origin: name.clone(),
                message: e.to_string(),
            })?
            .with_automatic_cleanup(true);
        Ok(Origin {
            store: Arc::new(store),
            name,
            prefix: String::new(),
        })
    }

    /// An S3-compatible store. Retries inside `object_store` are off: the executor retries
    /// whole objects with its own backoff and stops at once on refused credentials.
    pub fn s3(s: &S3Settings) -> Result<Origin, FillError> {
        let name = match &s.endpoint {
            Some(ep) => format!("s3://{} at {ep}", s.bucket),
            None => format!("s3://{}", s.bucket),
        };
        let mut opts = object_store::ClientOptions::new()
            .with_allow_http(s.allow_http)
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout_disabled();
        if let Some(n) = s.pool_max_idle_per_host {
            opts = opts.with_pool_max_idle_per_host(n);
        }
        let retry = object_store::RetryConfig {
            max_retries: 0,
            retry_timeout: Duration::from_secs(1),
            backoff: object_store::BackoffConfig::default(),
        };
        let region = if s.region.is_empty() {
            "us-east-1"
        } else {
            &s.region
        };
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(&s.secret_access_key)
            .with_allow_http(s.allow_http)
            .with_client_options(opts)
            .with_retry(retry);
        if let Some(ep) = &s.endpoint {
            b = b.with_endpoint(ep);
        }
        let store = b.build().map_err(|e| FillError::Origin {
            origin: name.clone(),
            message: e.to_string(),
        })?;
        Ok(Origin {
            store: Arc::new(store),
            name,
            prefix: s.prefix.trim_matches('/').to_owned(),
        })
    }

    /// The origin of the config's `[origin]` table. S3 credentials come from the environment
    /// variables it names; a missing one is a clear error naming the variable (never its
    /// value). Plain `http://` endpoints are allowed when configured so.
    pub fn from_config(c: &crate::config::OriginConfig) -> Result<Origin, FillError> {
        match c.kind {
            crate::config::OriginKind::Dir => Origin::local(&c.path),
            crate::config::OriginKind::S3 => {
                let env = |name: &str| {
                    std::env::var(name).map_err(|_| FillError::Origin {
                        origin: format!("s3://{}", c.bucket),
                        message: format!("environment variable {name} is not set"),
                    })
                };
                Origin::s3(&S3Settings {
                    bucket: c.bucket.clone(),
                    region: c.region.clone(),
                    endpoint: (!c.endpoint.is_empty()).then(|| c.endpoint.clone()),
                    access_key_id: env(&c.access_key_id_env)?,
                    secret_access_key: env(&c.secret_access_key_env)?,
                    allow_http: c.endpoint.starts_with("http://"),
                    prefix: c.prefix.clone(),
                    pool_max_idle_per_host: None,
                })
            }
        }
    }

    /// The origin's name in messages (`s3://bucket at endpoint`, `dir /path`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn fault(&self, key: &ObjectKey, e: object_store::Error) -> FillError {
        match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => FillError::OriginAuth {
                origin: self.name.clone(),
                message: e.to_string(),
            },
            object_store::Error::NotFound { .. } => FillError::Fetch {
                from: self.name.clone(),
                key: key.to_string(),
                kind: FaultKind::NotFound,
                message: e.to_string(),
            },
            other => {
                let message = other.to_string();
                let kind = if looks_5xx(&message) {
                    FaultKind::ServerError
                } else {
                    FaultKind::Other
                };
                FillError::Fetch {
                    from: self.name.clone(),
                    key: key.to_string(),
                    kind,
                    message,
                }
            }
        }
    }

    /// The object's bytes as a stream. Errors before the first byte are classified
    /// ([`FaultKind`]); an error inside the stream is a [`FaultKind::Cut`].
    pub async fn get(&self, key: &ObjectKey) -> Result<ByteStream, FillError> {
        let r = self
            .store
            .get(&join(&self.prefix, key))
            .await
            .map_err(|e| self.fault(key, e))?;
        let from = self.name.clone();
        let k = key.to_string();
        Ok(Box::pin(r.into_stream().map_err(move |e| {
            FillError::Fetch {
                from: from.clone(),
                key: k.clone(),
                kind: FaultKind::Cut,
                message: e.to_string(),
            }
        })))
    }

    /// Store an object (publishing tools and tests).
    pub async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<(), FillError> {
        self.store
            .put(&join(&self.prefix, key), data.into())
            .await
            .map(|_| ())
            .map_err(|e| self.fault(key, e))
    }
}

/// Whether an `object_store` message reports a 5xx answer.
fn looks_5xx(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("server error")
        || (500..600).any(|c| {
            let c = c.to_string();
            m.contains(&format!("status code: {c}")) || m.contains(&format!("{c} "))
        })
}

/// A peer appliance read over its plain HTTP port.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Appliance id (for messages).
    pub id: String,
    /// `http://host:port` of its plain HTTP listener.
    pub base: String,
    /// URL-signing key for `/t/{token}/{key}`; `None` reads `/o/{key}`.
    pub key: Option<SigningKey>,
}

impl Peer {
    fn path(&self, key: &ObjectKey) -> Result<String, FillError> {
        match &self.key {
            None => Ok(format!("/o/{key}")),
            Some(k) => {
                let exp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + 3600;
                let params = TokenParams {
                    exp,
                    kid: k.kid.clone(),
                    n: 1,
                    client_prefix: None,
                };
                let token =
                    oca_common::token::sign(k, &params, key).map_err(|e| FillError::Appliance {
                        appliance: self.id.clone(),
                        message: format!("cannot sign a peer URL: {e}"),
                    })?;
                Ok(format!("/t/{token}/{key}"))
            }
        }
    }

    /// The object's bytes from this peer.
    pub async fn get(&self, client: &HttpClient, key: &ObjectKey) -> Result<ByteStream, FillError> {
        let from = format!("peer {}", self.id);
        let fetch = |kind, message: String| FillError::Fetch {
            from: from.clone(),
            key: key.to_string(),
            kind,
            message,
        };
        let uri = format!("{}{}", self.base.trim_end_matches('/'), self.path(key)?);
        let req = http::Request::get(&uri)
            .body(Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync())
            .map_err(|e| fetch(FaultKind::Other, e.to_string()))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| fetch(FaultKind::Other, e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let kind = match status.as_u16() {
                404 => FaultKind::NotFound,
                401 | 403 => FaultKind::Auth,
                500..=599 => FaultKind::ServerError,
                _ => FaultKind::Other,
            };
            return Err(fetch(kind, format!("GET {uri}: {status}")));
        }
        let from2 = from.clone();
        let k = key.to_string();
        Ok(Box::pin(
            http_body_util::BodyDataStream::new(resp.into_body()).map(move |r| {
                r.map_err(|e| FillError::Fetch {
                    from: from2.clone(),
                    key: k.clone(),
                    kind: FaultKind::Cut,
                    message: e.to_string(),
                })
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fivexx_messages_are_recognised() {
        assert!(looks_5xx(
            "Generic S3 error: Server returned non-2xx status code: 503 Service Unavailable: "
        ));
        assert!(!looks_5xx("Generic S3 error: error sending request"));
    }

    #[test]
    fn a_missing_credentials_variable_is_named() {
        let c = crate::config::OriginConfig {
            kind: crate::config::OriginKind::S3,
            bucket: "media".into(),
            access_key_id_env: "FILL_TEST_UNSET_AK_1F2E".into(),
            ..crate::config::OriginConfig::default()
        };
        let e = Origin::from_config(&c).unwrap_err();
        assert!(e.to_string().contains("FILL_TEST_UNSET_AK_1F2E"), "{e}");
        assert!(e.to_string().contains("s3://media"), "{e}");
    }

    #[test]
    fn settings_debug_hides_the_secret() {
        let s = S3Settings {
            secret_access_key: "hunter2-secret".into(),
            ..S3Settings::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_local_directory_origin_round_trips_by_object_key() {
        let dir = tempfile_dir();
        let o = Origin::local(&dir).unwrap();
        let key = ObjectKey::parse("t/720p/seg-1.m4s").unwrap();
        o.put(&key, Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(
            std::fs::read(dir.join("t/720p/seg-1.m4s")).unwrap(),
            b"hello"
        );
        let got: Vec<Bytes> = o.get(&key).await.unwrap().try_collect().await.unwrap();
        assert_eq!(got.concat(), b"hello");
        let missing = ObjectKey::parse("t/720p/nope.m4s").unwrap();
        match o.get(&missing).await {
            Err(FillError::Fetch { kind, .. }) => assert_eq!(kind, FaultKind::NotFound),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("found a missing object"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fill-origin-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
