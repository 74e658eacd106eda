//! Start, run, reload and drain the appliance.
//!
//! Start: load config, certificates, signing keys; choose the I/O engine; build the index
//! (before any listener accepts); bind; ready. `SIGHUP` reloads certificates and signing keys
//! atomically (a bad file keeps the old ones and says why). `SIGTERM`/`SIGINT` drain:
//! readiness goes false, listeners close, connections finish their in-flight requests up to
//! `server.drain-deadline`, then the process exits 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use oca_common::token::KeySet;
use oca_storage::{DriveConfig, EngineOptions, ObjectStore, TieredOptions, TieredStore};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::OcaError;
use crate::handler::Shared;
use crate::metrics::{EngineLabels, Metrics, Outcome, ReloadLabels, ReloadWhat};

/// Read a signing key file.
pub fn load_keys(path: &Path) -> Result<KeySet, OcaError> {
    let text = std::fs::read_to_string(path).map_err(|e| OcaError::Keys {
        file: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    KeySet::from_toml(&text).map_err(|e| OcaError::Keys {
        file: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Everything `check-config` verifies, without binding or serving: the config, the
/// certificate and key, the signing keys and the storage root.
pub fn check(cfg: &Config) -> Result<(), OcaError> {
    if cfg.server.https_listen.is_some() {
        crate::server::tls::load_tls(&cfg.tls.cert, &cfg.tls.key)?;
    }
    if cfg.server.h3_listen.is_some() {
        crate::server::tls::load_quic(&cfg.tls.cert, &cfg.tls.key)?;
    }
    let keys = load_keys(&cfg.tokens.keys_file)?;
    if keys.is_empty() && cfg.server.require_token {
        return Err(OcaError::Keys {
            file: cfg.tokens.keys_file.clone(),
            message: "no signing keys, but require-token = true".into(),
        });
    }
    if !cfg.storage.root.as_os_str().is_empty() && !cfg.storage.root.is_dir() {
        return Err(OcaError::Config {
            file: cfg.storage.root.clone(),
            message: "storage.root is not a directory".into(),
        });
    }
    if !cfg.heartbeat.endpoints.is_empty() {
        crate::heartbeat::load_token(&cfg.heartbeat.token_file).map_err(|message| {
            OcaError::Config {
                file: cfg.heartbeat.token_file.clone(),
                message,
            }
        })?;
    }
    Ok(())
}

/// The tiered store's options from the config.
pub fn store_options(cfg: &Config) -> TieredOptions {
    let mut o = TieredOptions::new(cfg.storage.state_dir.clone());
    o.drives = cfg
        .storage
        .drives
        .iter()
        .map(|d| DriveConfig {
            tier: d.tier,
            path: d.path.clone(),
            capacity: d.capacity,
        })
        .collect();
    o.static_root = (!cfg.storage.root.as_os_str().is_empty()).then(|| cfg.storage.root.clone());
    o.ram_bytes = cfg.storage.ram_bytes;
    o.ram_max_object = cfg.storage.ram_max_object;
    o.compact_after = cfg.storage.compact_after;
    o.promote_min_frequency = cfg.storage.promote_min_frequency;
    o
}

/// A running appliance: its addresses and the handles to stop it. Tests and the demo run
/// it in-process; `oca serve` runs it until a signal.
#[derive(Debug)]
pub struct Running {
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// The HTTP/3 (UDP) listener.
    pub h3: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub shared: Arc<Shared>,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    /// The QUIC endpoint; its server config is replaced on reload.
    quic: Option<quinn::Endpoint>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// The heartbeat loop, when steering endpoints are configured.
    heartbeat: Option<crate::heartbeat::Handle>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, OcaError> {
    let sock = match addr {
        SocketAddr::V4(_) => {
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        }
        SocketAddr::V6(_) => {
            socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)
        }
    }
    .map_err(|source| OcaError::Bind { addr, source })?;
    let setup = || -> std::io::Result<std::net::TcpListener> {
        sock.set_reuse_address(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        sock.listen(4096)?;
        Ok(sock.try_clone()?.into())
    };
    let std = setup().map_err(|source| OcaError::Bind { addr, source })?;
    TcpListener::from_std(std).map_err(|source| OcaError::Bind { addr, source })
}

impl Running {
    /// Load everything, build the index, bind the listeners and start serving.
    pub async fn start(cfg: Config) -> Result<Running, OcaError> {
        let started_at = SystemTime::now();
        let cfg = Arc::new(cfg);
        let tls = match cfg.server.https_listen {
            Some(_) => Some(Arc::new(ArcSwap::new(crate::server::tls::load_tls(
                &cfg.tls.cert,
                &cfg.tls.key,
            )?))),
            None => None,
        };
        let quic_crypto = match cfg.server.h3_listen {
            Some(_) => Some(crate::server::tls::load_quic(&cfg.tls.cert, &cfg.tls.key)?),
            None => None,
        };
        let keys = load_keys(&cfg.tokens.keys_file)?;
        let metrics = Arc::new(Metrics::new());
        let opts = EngineOptions {
            buffer_size: cfg.storage.read_size as usize,
            page_cache_fast_path: cfg.storage.page_cache_fast_path,
            ..EngineOptions::default()
        };
        let engine = oca_storage::select_engine(cfg.storage.io_engine, &opts)?;
        tracing::info!(engine = engine.kind().as_str(), "disk I/O engine");
        let store_opts = store_options(&cfg);
        let engine2 = engine.clone();
        // Loading indexes (and hashing hand-placed files) is blocking: off the workers.
        let store = tokio::task::spawn_blocking(move || TieredStore::open(store_opts, engine2))
            .await
            .map_err(|e| OcaError::Io {
                what: "building the index".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let stats = store.stats();
        tracing::info!(
            objects = stats.objects,
            bytes = stats.bytes,
            ram_objects = stats.ram_objects,
            ram_bytes = stats.ram_bytes,
            ram_locked = stats.ram_locked,
            "index loaded"
        );
        metrics
            .io_engine
            .get_or_create(&EngineLabels {
                engine: engine.kind().as_str(),
            })
            .set(1);
        metrics.ram_locked.set(i64::from(stats.ram_locked));
        crate::metrics::refresh_storage(&metrics, &store);
        metrics.start_time.set(
            started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        let shared = Arc::new(Shared {
            config: cfg.clone(),
            keys: ArcSwap::from_pointee(keys),
            store: store.clone() as Arc<dyn ObjectStore>,
            tiered: store.clone(),
            engine,
            files: crate::files::OpenFiles::new(cfg.storage.open_files),
            metrics,
            ready: AtomicBool::new(false),
            open_connections: AtomicU64::new(0),
            started_at,
        });

        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(cfg.limits.max_connections));
        if !cfg.admin.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %cfg.admin.listen,
                "the admin port speaks plain HTTP: keep it on loopback or a management network"
            );
        }
        let admin_l = bind(cfg.admin.listen).await?;
        let admin = admin_l.local_addr().map_err(|source| OcaError::Bind {
            addr: cfg.admin.listen,
            source,
        })?;
        let mut https = None;
        let mut http = None;
        let mut h3 = None;
        let mut quic = None;
        let mut listeners = Vec::new();
        // HTTP/3 first: the TLS listener advertises its port in Alt-Svc.
        if let (Some(addr), Some(crypto)) = (cfg.server.h3_listen, quic_crypto) {
            let endpoint = crate::server::h3::bind(
                addr,
                crate::server::h3::server_config(crypto, &cfg.limits),
            )?;
            h3 = endpoint.local_addr().ok();
            listeners.push(tokio::spawn(crate::server::h3::serve(
                endpoint.clone(),
                shared.clone(),
                slots.clone(),
                tracker.clone(),
                cancel.clone(),
            )));
            quic = Some(endpoint);
        }
        if let (Some(addr), Some(tls)) = (cfg.server.https_listen, &tls) {
            let l = bind(addr).await?;
            https = l.local_addr().ok();
            listeners.push(tokio::spawn(crate::server::tls::serve(
                l,
                shared.clone(),
                tls.clone(),
                slots.clone(),
                tracker.clone(),
                cancel.clone(),
                h3.map(|a| a.port()),
            )));
        }
        if let Some(addr) = cfg.server.http_listen {
            let l = bind(addr).await?;
            http = l.local_addr().ok();
            listeners.push(tokio::spawn(crate::server::plain::serve(
                l,
                shared.clone(),
                slots.clone(),
                tracker.clone(),
                cancel.clone(),
            )));
        }
        // The admin port outlives the drain so /readyz can say "not ready" meanwhile.
        tokio::spawn(crate::admin::serve(
            admin_l,
            shared.clone(),
            TaskTracker::new(),
            CancellationToken::new(),
        ));
        if cfg.storage.promote_rate > 0
            && cfg
                .storage
                .drives
                .iter()
                .any(|d| d.tier == oca_common::wire::Tier::Flash)
        {
            let stop = cancel.clone();
            tokio::spawn(shared.tiered.clone().run_promoter(
                cfg.storage.promote_rate,
                async move { stop.cancelled().await },
            ));
        }
        shared.ready.store(true, Ordering::Relaxed);
        shared.metrics.ready.set(1);
        let bgp = cfg
            .bgp
            .enabled
            .then(|| crate::bgp::start(&cfg.bgp, shared.metrics.clone(), cancel.clone()));
        let heartbeat = if cfg.heartbeat.endpoints.is_empty() {
            None
        } else {
            crate::heartbeat::start(shared.clone(), shared.tiered.clone(), bgp, cancel.clone())
                .map_err(|message| OcaError::Config {
                    file: cfg.heartbeat.token_file.clone(),
                    message,
                })?
        };
        tracing::info!(?https, ?http, ?h3, %admin, id = %cfg.server.id, "ready");
        Ok(Running {
            https,
            http,
            h3,
            admin,
            shared,
            tls,
            quic,
            cancel,
            tracker,
            heartbeat,
        })
    }

    /// Reload certificates and signing keys (SIGHUP). Each is swapped in whole or not at all.
    pub fn reload(&self) {
        let cfg = &self.shared.config;
        let m = &self.shared.metrics;
        let count = |what, outcome| {
            m.reloads
                .get_or_create(&ReloadLabels { what, outcome })
                .inc()
        };
        if let Some(tls) = &self.tls {
            match crate::server::tls::load_tls(&cfg.tls.cert, &cfg.tls.key) {
                Ok(new) => {
                    tls.store(new);
                    count(ReloadWhat::Certificates, Outcome::Ok);
                    tracing::info!("certificates reloaded");
                }
                Err(e) => {
                    count(ReloadWhat::Certificates, Outcome::Error);
                    tracing::error!(error = %e, "certificate reload failed; keeping the old ones");
                }
            }
        }
        if let Some(endpoint) = &self.quic {
            match crate::server::tls::load_quic(&cfg.tls.cert, &cfg.tls.key) {
                Ok(new) => {
                    endpoint.set_server_config(Some(crate::server::h3::server_config(
                        new,
                        &cfg.limits,
                    )));
                    // Counted once per reload: with the HTTPS listener above when there is one.
                    if self.tls.is_none() {
                        count(ReloadWhat::Certificates, Outcome::Ok);
                    }
                    tracing::info!("HTTP/3 certificates reloaded");
                }
                Err(e) => {
                    if self.tls.is_none() {
                        count(ReloadWhat::Certificates, Outcome::Error);
                    }
                    tracing::error!(
                        error = %e,
                        "HTTP/3 certificate reload failed; keeping the old ones"
                    );
                }
            }
        }
        match load_keys(&cfg.tokens.keys_file) {
            Ok(keys) => {
                let kids: Vec<String> = keys.kids().map(str::to_owned).collect();
                self.shared.keys.store(Arc::new(keys));
                count(ReloadWhat::SigningKeys, Outcome::Ok);
                tracing::info!(?kids, "signing keys reloaded");
            }
            Err(e) => {
                count(ReloadWhat::SigningKeys, Outcome::Error);
                tracing::error!(error = %e, "signing key reload failed; keeping the old ones");
            }
        }
    }

    /// Drain: readiness false, listeners closed, in-flight requests finish up to the
    /// deadline. Returns whether everything finished in time.
    pub async fn drain(self) -> bool {
        self.shared.ready.store(false, Ordering::Relaxed);
        self.shared.metrics.ready.set(0);
        if let Some(hb) = &self.heartbeat {
            // Tell steering first, so no new players arrive while the listeners close.
            hb.drain(Duration::from_secs(2)).await;
        }
        let deadline = self.shared.config.server.drain_deadline;
        tracing::info!(
            connections = self.shared.open_connections.load(Ordering::Relaxed),
            ?deadline,
            "draining"
        );
        self.cancel.cancel();
        self.tracker.close();
        let t0 = tokio::time::Instant::now();
        let done = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        if let Some(endpoint) = &self.quic {
            // In-flight HTTP/3 requests are done (or out of time): close what is left and
            // give the close frames a moment to leave.
            endpoint.close(0u32.into(), b"draining");
            let left = deadline
                .saturating_sub(t0.elapsed())
                .max(Duration::from_millis(100));
            let _ =
                tokio::time::timeout(left.min(Duration::from_secs(2)), endpoint.wait_idle()).await;
        }
        if done {
            tracing::info!("drained");
        } else {
            tracing::warn!(
                connections = self.shared.open_connections.load(Ordering::Relaxed),
                "drain deadline passed; closing the remaining connections"
            );
        }
        done
    }
}

/// `oca serve`: run until SIGTERM or SIGINT, reloading on SIGHUP.
pub async fn serve(cfg: Config) -> Result<(), OcaError> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |k| {
        signal(k).map_err(|source| OcaError::Io {
            what: "installing signal handlers".into(),
            source,
        })
    };
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let running = Running::start(cfg).await?;
    // Under systemd (Type=notify): ready only now, with the index loaded and the listeners
    // bound; the watchdog pings run until the drain is over.
    crate::notify::ready("serving");
    let watchdog = CancellationToken::new();
    crate::notify::start_watchdog(watchdog.clone());
    loop {
        tokio::select! {
            _ = hup.recv() => {
                crate::notify::reloading();
                running.reload();
                crate::notify::ready("serving (reloaded)");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    crate::notify::stopping("draining");
    running.drain().await;
    watchdog.cancel();
    Ok(())
}
