//! Heartbeats to steering (DESIGN §4 "Heartbeat").
//!
//! Every `heartbeat.interval` (5 s by default) the appliance POSTs a [`Heartbeat`] as JSON
//! with its bearer token to `/v1/oca/heartbeat` of every configured steering endpoint: id,
//! site, cluster, public URLs, state (`up`, or `draining` once readiness is false), load
//! (egress from the response-byte counters, capacity from the config, open connections),
//! tiers, inventory and BGP prefixes, process start time. Each endpoint (steering replica)
//! acknowledges its own inventory generation, so the next heartbeat to it carries the delta
//! since then — or the full set when it asks (`want_full_inventory`) or never acknowledged.
//! A response's `interval_secs` replaces the interval. [`Handle::drain`] sends one last
//! `draining` heartbeat at once, so steering stops sending players before the listeners
//! close. Outcomes are counted in `oca_heartbeats_total{outcome}`.
//!
//! Inventory and tiers come through [`InventorySource`], so the storage layer can report
//! real generations; [`DirInventory`] serves today's one-directory store with a full set
//! scanned at start. BGP prefixes come from BIRD ([`crate::bgp`]) when `[bgp]` is enabled —
//! state `degraded` once BIRD has been silent for longer than its grace period — and from
//! `heartbeat.bgp-prefixes` otherwise.
//! What it does not do: TLS to steering (endpoints are `http://`), compression, retries
//! within an interval (the next heartbeat is the retry).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Uri};
use http_body_util::{BodyExt, Full, Limited};
use oca_common::wire::{
    Heartbeat, HeartbeatResponse, Inventory, InventoryEntry, Load, OcaState, RenditionId, Tier,
    TierStatus,
};
use oca_storage::ObjectStore;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::HeartbeatConfig;
use crate::handler::Shared;
use crate::metrics::{Proto, TierLabel};

/// Where heartbeats get the inventory and tier status from.
pub trait InventorySource: Send + Sync {
    /// The inventory: the changes since generation `since` (with `base = since`), or the full
    /// set when `since` is `None` or too old to make a delta from.
    fn inventory(&self, since: Option<u64>) -> Inventory;
    /// Storage tiers.
    fn tiers(&self) -> Vec<TierStatus>;
}

/// Outcome of one heartbeat to one endpoint.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum HbOutcome {
    /// Acknowledged.
    Ok,
    /// Acknowledged, and the full inventory is wanted next.
    WantFull,
    /// Refused with a 4xx (bad token, bad heartbeat).
    Refused,
    /// Network error, timeout or 5xx.
    Error,
}

impl HbOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HbOutcome::Ok => "ok",
            HbOutcome::WantFull => "want_full",
            HbOutcome::Refused => "refused",
            HbOutcome::Error => "error",
        }
    }
}

impl EncodeLabelValue for HbOutcome {
    fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(e, self.as_str())
    }
}

/// Labels of `oca_heartbeats_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HbLabels {
    /// Outcome.
    pub outcome: HbOutcome,
}

/// Today's store: the renditions under `{root}/{title}/{rendition}/`, scanned once at start
/// (the store does not change while the appliance runs), as a full set of generation 1.
#[derive(Debug)]
pub struct DirInventory {
    entries: Vec<InventoryEntry>,
    store: Arc<dyn ObjectStore>,
    ram_capacity: u64,
}

impl DirInventory {
    /// Lists `{root}/{title}/{rendition}/` folders holding at least one file.
    pub fn scan(root: &Path, store: Arc<dyn ObjectStore>, ram_capacity: u64) -> DirInventory {
        let mut entries = Vec::new();
        let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
            let Ok(rd) = std::fs::read_dir(p) else {
                return Vec::new();
            };
            let mut v: Vec<(String, PathBuf)> = rd
                .flatten()
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect();
            v.sort();
            v
        };
        for (title, tpath) in dirs(root) {
            if !tpath.is_dir() || title.starts_with('.') {
                continue;
            }
            for (rendition, rpath) in dirs(&tpath) {
                if !rpath.is_dir() {
                    continue;
                }
                let Ok(id) = RenditionId::new(&title, &rendition) else {
                    continue;
                };
                let (mut files, mut bytes) = (0u32, 0u64);
                for (name, fpath) in dirs(&rpath) {
                    if name.starts_with('.') {
                        continue;
                    }
                    if let Ok(m) = std::fs::metadata(&fpath)
                        && m.is_file()
                    {
                        files += 1;
                        bytes += m.len();
                    }
                }
                if files > 0 {
                    entries.push(InventoryEntry {
                        rendition: id,
                        files_held: files,
                        total_files: files,
                        bytes,
                        tier: Tier::Disk,
                    });
                }
            }
        }
        DirInventory {
            entries,
            store,
            ram_capacity,
        }
    }
}

impl InventorySource for DirInventory {
    fn inventory(&self, since: Option<u64>) -> Inventory {
        const GENERATION: u64 = 1;
        match since {
            Some(GENERATION) => Inventory {
                generation: GENERATION,
                full: false,
                added: Vec::new(),
                removed: Vec::new(),
                base: Some(GENERATION),
            },
            _ => Inventory {
                generation: GENERATION,
                full: true,
                added: self.entries.clone(),
                removed: Vec::new(),
                base: None,
            },
        }
    }

    fn tiers(&self) -> Vec<TierStatus> {
        let stats = self.store.stats();
        vec![
            TierStatus {
                tier: Tier::Ram,
                capacity_bytes: self.ram_capacity,
                used_bytes: stats.ram_bytes,
                drives: 1,
                failed_drives: 0,
            },
            TierStatus {
                tier: Tier::Disk,
                capacity_bytes: 0,
                used_bytes: stats.bytes,
                drives: 1,
                failed_drives: 0,
            },
        ]
    }
}

/// Read the heartbeat bearer token (first line of the file, trimmed).
pub fn load_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("heartbeat.token-file {}: cannot read: {e}", path.display()))?;
    let t = text.lines().next().unwrap_or("").trim().to_owned();
    if t.is_empty() {
        return Err(format!("heartbeat.token-file {}: empty", path.display()));
    }
    Ok(t)
}

/// One steering endpoint and what it acknowledged.
#[derive(Debug)]
struct Endpoint {
    uri: Uri,
    acked: Option<u64>,
}

/// Controls a running heartbeat loop.
#[derive(Debug, Clone)]
pub struct Handle {
    drain_tx: mpsc::Sender<oneshot::Sender<()>>,
}

impl Handle {
    /// Sends a `draining` heartbeat to every endpoint now and waits for it (at most
    /// `limit`). Later heartbeats keep saying `draining`.
    pub async fn drain(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.drain_tx.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

/// Starts the heartbeat loop on the current runtime; `None` when no endpoint is configured.
pub fn start(
    shared: Arc<Shared>,
    source: Arc<dyn InventorySource>,
    bgp: Option<Arc<crate::bgp::Learned>>,
    cancel: CancellationToken,
) -> Result<Option<Handle>, String> {
    let cfg = shared.config.heartbeat.clone();
    if cfg.endpoints.is_empty() {
        return Ok(None);
    }
    let token = load_token(&cfg.token_file)?;
    let endpoints = cfg
        .endpoints
        .iter()
        .map(|e| {
            let base = e.trim_end_matches('/');
            format!("{base}/v1/oca/heartbeat")
                .parse::<Uri>()
                .map(|uri| Endpoint { uri, acked: None })
                .map_err(|err| format!("heartbeat.endpoints: {e:?}: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (drain_tx, drain_rx) = mpsc::channel(4);
    tokio::spawn(run(
        shared, cfg, token, endpoints, source, bgp, cancel, drain_rx,
    ));
    Ok(Some(Handle { drain_tx }))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Sum of the response-byte counters: the bytes sent to clients so far.
fn bytes_sent(shared: &Shared) -> u64 {
    let mut n = 0;
    for protocol in [Proto::H1, Proto::H2, Proto::H3, Proto::H1Plain] {
        for tier in [
            TierLabel::Ram,
            TierLabel::Flash,
            TierLabel::Disk,
            TierLabel::None,
        ] {
            n += shared
                .metrics
                .response_bytes
                .get_or_create(&crate::metrics::BytesLabels { protocol, tier })
                .get();
        }
    }
    n
}

#[allow(clippy::too_many_arguments)]
async fn run(
    shared: Arc<Shared>,
    cfg: HeartbeatConfig,
    token: String,
    mut endpoints: Vec<Endpoint>,
    source: Arc<dyn InventorySource>,
    bgp: Option<Arc<crate::bgp::Learned>>,
    cancel: CancellationToken,
    mut drain_rx: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut interval = cfg.interval;
    let mut last = (Instant::now(), bytes_sent(&shared));
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let now = Instant::now();
        let sent = bytes_sent(&shared);
        let dt = now.duration_since(last.0).as_secs_f64();
        let egress_bps = if dt > 0.0 {
            (sent.saturating_sub(last.1) as f64 * 8.0 / dt) as u64
        } else {
            0
        };
        last = (now, sent);
        let draining = !shared.ready.load(Ordering::Relaxed) || !waiting.is_empty();
        let (bgp_prefixes, bgp_healthy) = match &bgp {
            Some(l) => {
                let v = l.view();
                (v.prefixes, v.healthy)
            }
            None => (cfg.bgp_prefixes.clone(), true),
        };
        let base = Heartbeat {
            id: shared.config.server.id.clone(),
            site: cfg.site.clone(),
            cluster: cfg.cluster.clone(),
            public_urls: cfg.public_urls.clone(),
            state: if draining {
                OcaState::Draining
            } else if !bgp_healthy {
                OcaState::Degraded
            } else {
                OcaState::Up
            },
            load: Load {
                egress_bps,
                capacity_bps: cfg.capacity_bps,
                connections: shared.open_connections.load(Ordering::Relaxed),
            },
            tiers: source.tiers(),
            inventory: Inventory {
                generation: 0,
                full: false,
                added: Vec::new(),
                removed: Vec::new(),
                base: None,
            },
            bgp_prefixes,
            started_at: unix(shared.started_at),
            sent_at: unix(SystemTime::now()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            interval_ms: Some(interval.as_millis() as u64),
        };
        let timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(5));
        let sends = endpoints.iter().map(|ep| {
            let mut hb = base.clone();
            hb.inventory = source.inventory(ep.acked);
            let body = serde_json::to_vec(&hb).unwrap_or_default();
            post(ep.uri.clone(), token.clone(), body, timeout)
        });
        let results = futures_util::future::join_all(sends).await;
        for (ep, r) in endpoints.iter_mut().zip(results) {
            let outcome = match r {
                Ok(resp) => {
                    ep.acked = (!resp.want_full_inventory).then_some(resp.acked_generation);
                    if let Some(s) = resp.interval_secs.filter(|s| (1..=300).contains(s)) {
                        interval = Duration::from_secs(s);
                    }
                    if resp.want_full_inventory {
                        HbOutcome::WantFull
                    } else {
                        HbOutcome::Ok
                    }
                }
                Err((outcome, msg)) => {
                    tracing::warn!(endpoint = %ep.uri, error = %msg, "heartbeat failed");
                    ep.acked = None;
                    outcome
                }
            };
            shared
                .metrics
                .heartbeats
                .get_or_create(&HbLabels { outcome })
                .inc();
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            w = drain_rx.recv() => match w {
                Some(w) => waiting.push(w),
                None => return,
            },
        }
    }
}

/// One POST; the parsed response, or the outcome and a message.
async fn post(
    uri: Uri,
    token: String,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HeartbeatResponse, (HbOutcome, String)> {
    let err = |m: String| (HbOutcome::Error, m);
    let fut = async {
        let host = uri.host().ok_or_else(|| err("no host".into()))?.to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| err(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| err(format!("handshake: {e}")))?;
        tokio::spawn(conn);
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| err("token is not a valid header value".into()))?,
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| err(e.to_string()))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| err(format!("request: {e}")))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), 64 << 10)
            .collect()
            .await
            .map_err(|e| err(format!("response body: {e}")))?
            .to_bytes();
        if status.is_client_error() {
            return Err((
                HbOutcome::Refused,
                format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()),
            ));
        }
        if !status.is_success() {
            return Err(err(format!("{status}")));
        }
        serde_json::from_slice::<HeartbeatResponse>(&bytes)
            .map_err(|e| err(format!("bad response: {e}")))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(err(format!("no answer within {timeout:?}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_inventory_lists_renditions_with_files() {
        let dir = tempfile::tempdir().unwrap();
        let w = |rel: &str, n: usize| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, vec![0u8; n]).unwrap();
        };
        w("movie/720p/a.m4s", 10);
        w("movie/720p/b.m4s", 5);
        w("movie/master.m3u8", 3);
        w("movie/1080p/.hidden", 3);
        w(".oca/etags.json", 2);
        w("bad name/720p/x", 1);
        let store = oca_storage::DirStore::open(oca_storage::DirStoreOptions {
            root: dir.path().to_path_buf(),
            ram_bytes: 0,
            ram_max_object: 0,
        })
        .unwrap();
        let inv = DirInventory::scan(dir.path(), Arc::new(store), 0);
        let full = inv.inventory(None);
        assert!(full.full);
        assert_eq!(full.added.len(), 1);
        assert_eq!(full.added[0].rendition.as_str(), "movie/720p");
        assert_eq!((full.added[0].files_held, full.added[0].bytes), (2, 15));
        // Since the current generation: an empty delta on it; since another: the full set.
        let d = inv.inventory(Some(full.generation));
        assert!(!d.full && d.added.is_empty() && d.base == Some(full.generation));
        assert!(inv.inventory(Some(full.generation + 5)).full);
        assert_eq!(inv.tiers().len(), 2);
    }

    #[test]
    fn token_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "  secret-token \nignored\n").unwrap();
        assert_eq!(load_token(&p).unwrap(), "secret-token");
        std::fs::write(&p, "\n").unwrap();
        assert!(load_token(&p).unwrap_err().contains("empty"));
        assert!(
            load_token(&dir.path().join("none"))
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
