//! One night's fill, end to end, as the CLI (`plan`, `run`, `daemon`) and the demo run it:
//! gather inventories from the appliances' admin ports, plan, save the plan, execute it.
//!
//! Files in `state-dir`: `plan.json` (the saved plan, written atomically), `journal.jsonl`
//! (the executor's), `run.json` (the running `run`'s pid and plan id, removed when it ends)
//! and `cancel` (written by `fill-controller cancel`, read and removed by the running `run`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oca_common::wire::{RenditionId, RenditionManifest};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::FillError;
use crate::execute::{Appliance, ExecOptions, Executor, Progress, Report};
use crate::inputs::{self, ApplianceEntry, Loaded};
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::plan::{Held, Plan};

/// The saved plan's file.
pub fn plan_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("plan.json")
}

/// The running `run`'s marker.
pub fn run_marker(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("run.json")
}

/// The cancel request file.
pub fn cancel_path(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("cancel")
}

/// A plan as saved in `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Content id of the plan (the first 16 hex digits of the SHA-256 of its JSON): a rerun
    /// of the same plan resumes its journal; a new plan starts afresh.
    pub id: String,
    /// When it was made, Unix seconds.
    pub made_at: u64,
    /// The plan.
    pub plan: Plan,
}

impl SavedPlan {
    /// Wraps `plan` with its content id.
    pub fn new(plan: Plan, made_at: u64) -> SavedPlan {
        let json = serde_json::to_vec(&plan).unwrap_or_default();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json);
        SavedPlan {
            id: hex::encode(&digest.as_ref()[..8]),
            made_at,
            plan,
        }
    }
}

/// What `run.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMarker {
    /// Process id of the running `run` or `daemon`.
    pub pid: u32,
    /// Plan being executed.
    pub plan: String,
    /// Started, Unix seconds.
    pub started_at: u64,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> FillError {
    move |source| FillError::Io { what, source }
}

/// Writes `data` to `path` through a temp file, fsync and rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), FillError> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(io_err(format!("writing {}", path.display())))
}

/// Reads the saved plan (`plan` must have run first).
pub fn load_saved(cfg: &Config) -> Result<SavedPlan, FillError> {
    let path = plan_path(cfg);
    let text = std::fs::read(&path).map_err(|e| FillError::Input {
        file: path.clone(),
        message: format!("cannot read the saved plan ({e}); run `fill-controller plan` first"),
    })?;
    serde_json::from_slice(&text).map_err(|e| FillError::Input {
        file: path,
        message: format!("not a saved plan: {e}"),
    })
}

/// Reads and checks the sites file the config names.
pub fn load_sites(cfg: &Config) -> Result<oca_common::sites::Sites, FillError> {
    let text = std::fs::read_to_string(&cfg.sites_file).map_err(|e| FillError::Input {
        file: cfg.sites_file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    oca_common::sites::Sites::parse(&text).map_err(|e| FillError::Input {
        file: cfg.sites_file.clone(),
        message: e.to_string(),
    })
}

/// Reads every input; inventories the config does not name a file for are fetched from the
/// appliances' admin ports (bounded by `limits.request-timeout` each, all at once).
pub async fn gather(cfg: &Config) -> Result<Loaded, FillError> {
    let sites = load_sites(cfg)?;
    let file = &cfg.inputs.appliances_file;
    let text = std::fs::read_to_string(file).map_err(|e| FillError::Input {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let apps = inputs::parse_appliances(&text, file, &sites)?;
    let client = crate::origin::http_client();
    let timeout = cfg.limits.request_timeout;
    let missing = apps.iter().filter(|a| a.inventory_file.is_none()).map(|a| {
        let client = &client;
        async move {
            let r = tokio::time::timeout(timeout, inputs::fetch_inventory(client, a))
                .await
                .unwrap_or_else(|_| {
                    Err(FillError::Appliance {
                        appliance: a.id.clone(),
                        message: format!("no inventory within {timeout:?}"),
                    })
                });
            (a.id.clone(), r)
        }
    });
    let mut fetched: HashMap<String, Vec<Held>> = HashMap::new();
    for (id, r) in futures_util::future::join_all(missing).await {
        fetched.insert(id, r?);
    }
    inputs::load(cfg, &fetched)
}

/// Every rendition's full manifest, from the catalog file.
pub fn manifests(cfg: &Config) -> Result<BTreeMap<RenditionId, RenditionManifest>, FillError> {
    let file = &cfg.inputs.catalog_file;
    let text = std::fs::read_to_string(file).map_err(|e| FillError::Input {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let titles =
        control_plane::catalog::parse_catalog_toml(&text).map_err(|e| FillError::Input {
            file: file.clone(),
            message: e.to_string(),
        })?;
    let mut out = BTreeMap::new();
    for t in &titles {
        for r in &t.renditions {
            if let Some(m) = t.manifest(&r.id)
                && let Ok(id) = RenditionId::new(&m.title, &m.rendition)
            {
                out.insert(id, m);
            }
        }
    }
    Ok(out)
}

/// The executor's view of the appliances file (admin tokens read from their files).
pub fn appliances(
    apps: &[ApplianceEntry],
    sites: &oca_common::sites::Sites,
) -> Result<Vec<Appliance>, FillError> {
    apps.iter()
        .map(|a| {
            let token =
                std::fs::read_to_string(&a.admin_token_file).map_err(|e| FillError::Input {
                    file: a.admin_token_file.clone(),
                    message: format!("cannot read appliance {:?}'s admin token: {e}", a.id),
                })?;
            let site = sites
                .cluster(&a.cluster)
                .map(|c| c.site.clone())
                .unwrap_or_default();
            Ok(Appliance {
                id: a.id.clone(),
                site,
                cluster: a.cluster.clone(),
                admin: a.admin_url.trim_end_matches('/').to_string(),
                admin_token: token.trim().to_string(),
                plain: a
                    .plain_url
                    .as_ref()
                    .map(|u| u.trim_end_matches('/').to_string()),
            })
        })
        .collect()
}

/// Runs `saved` (resuming its journal), honouring the fill windows unless `ignore_window`.
/// While it runs, `state-dir/run.json` names it and a `state-dir/cancel` file (from
/// `fill-controller cancel`) stops it after the objects in flight.
pub async fn execute(
    cfg: &Config,
    loaded: &Loaded,
    saved: &SavedPlan,
    ignore_window: bool,
    metrics: Metrics,
) -> Result<Report, FillError> {
    execute_with(
        cfg,
        loaded,
        saved,
        ignore_window,
        metrics,
        Progress::default(),
    )
    .await
}

/// [`execute`], reporting live progress into `progress` (for `run`'s bars or lines).
pub async fn execute_with(
    cfg: &Config,
    loaded: &Loaded,
    saved: &SavedPlan,
    ignore_window: bool,
    metrics: Metrics,
    progress: Progress,
) -> Result<Report, FillError> {
    let manifests = manifests(cfg)?;
    let origin = Origin::from_config(&cfg.origin)?;
    let apps = appliances(&loaded.appliances, &loaded.sites)?;
    let opts = ExecOptions {
        peer_key: cfg.peers.signing_key()?,
        ..ExecOptions::from_limits(&cfg.limits, ignore_window)
    };
    let exec = Executor::new(
        origin,
        apps,
        loaded.sites.clone(),
        metrics,
        opts,
        cfg.state_dir.clone(),
    )
    .with_progress(progress);
    let marker = RunMarker {
        pid: std::process::id(),
        plan: saved.id.clone(),
        started_at: crate::now_unix(),
    };
    write_atomic(
        &run_marker(cfg),
        &serde_json::to_vec_pretty(&marker).unwrap_or_default(),
    )?;
    let _ = std::fs::remove_file(cancel_path(cfg));
    let stop = exec.cancel_handle();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let cancel = cancel_path(cfg);
        let done = done.clone();
        tokio::spawn(async move {
            // Polls for the cancel file once a second while the run lasts.
            while !done.load(Ordering::Relaxed) {
                if cancel.exists() {
                    tracing::warn!("cancel requested: stopping after the objects in flight");
                    stop.store(true, Ordering::SeqCst);
                    let _ = std::fs::remove_file(&cancel);
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let r = exec.run(&saved.id, &saved.plan, &manifests).await;
    done.store(true, Ordering::Relaxed);
    watcher.abort();
    let _ = std::fs::remove_file(run_marker(cfg));
    r
}

/// Plans from fresh inputs, saves the plan, and runs it now (ignoring the windows): what the
/// demo and `run --now` without a saved plan do.
pub async fn plan_and_run_now(
    cfg: &Config,
    metrics: Metrics,
) -> Result<(SavedPlan, Report), FillError> {
    let loaded = gather(cfg).await?;
    let saved = SavedPlan::new(crate::plan::plan(&loaded.input), crate::now_unix());
    write_atomic(
        &plan_path(cfg),
        &serde_json::to_vec(&saved).unwrap_or_default(),
    )?;
    let report = execute(cfg, &loaded, &saved, true, metrics).await?;
    Ok((saved, report))
}
