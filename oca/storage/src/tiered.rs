//! The tiered store (DESIGN §4 "Storage"): drives grouped into `flash` and `disk` tiers, a RAM
//! tier in front of them, ingest that is whole or absent after any crash, rendition manifests
//! and the inventory, and drives taken out of service on I/O errors.
//!
//! **Layout of a drive** (a directory with a configured capacity):
//! `objects/{key}` (one raw file per object, so sendfile works), `tmp/` (ingests in progress),
//! `index/journal` + `index/snapshot` ([`crate::journal`]), `drive-id` (random, names the drive
//! in the failed-drive list). The store's own state (failed drives, rendition manifests, the
//! inventory generation) lives in `state_dir`.
//!
//! **Ingest** ([`TieredStore::begin_ingest`]): bytes are streamed through the [`IoEngine`] into
//! `tmp/{key hash}` while hashed; then fsync, the journal's put record (group commit), rename
//! into `objects/`, fsync of the directory, and only then the index. Recovery is redo: on start
//! a journal put whose object file is missing but whose temp file is there is renamed forward
//! (the temp was fsynced before the record was written); every other temp file is deleted.
//! A kill at any point therefore leaves the object whole or absent.
//!
//! **Index**: a hash map from the key's 128-bit hash to 32 bytes (ETag, size, time, drive),
//! rebuilt at start from snapshot + journal without reading objects.
//!
//! **RAM tier**: [`RamPolicy`] (TinyLFU admission, byte bound) decides; an admitted object is
//! read whole in the background and then served as `Bytes`. Accesses are recorded with
//! `try_lock`, so a contended policy drops a sample instead of stalling a request (as Caffeine
//! drops read-buffer events).
//!
//! **Drive failure**: an I/O error (EIO and kin) on a drive's read, write or fsync takes the
//! drive out of service: its objects leave the index and the inventory, the fact is written to
//! `state_dir/failed-drives.json`, and the drive stays out across restarts until an operator
//! removes it from that file (or replaces the disk, which gets a new drive id).
//!
//! **Promotion**: objects read from `disk` whose estimated frequency reaches a threshold are
//! queued and copied to `flash` in the background under a byte-rate cap
//! ([`TieredStore::run_promoter`]); when `flash` lacks room the least frequently used flash
//! objects it holds are moved down to `disk` first (demotion).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use bytes::Bytes;
use oca_common::ObjectKey;
use oca_common::wire::{
    Inventory, InventoryEntry, RenditionId, RenditionManifest, Tier, TierStatus,
};
use serde::{Deserialize, Serialize};

use crate::engine::IoEngine;
use crate::error::StorageError;
use crate::journal::{self, Journal, KeyHash, PutRecord, Record, SnapEntry, key_hash};
use crate::policy::{Access, RamPolicy};
use crate::{
    DirStore, DirStoreOptions, ObjectData, ObjectHandle, ObjectMeta, ObjectStore, StoreStats,
};

/// Error for a fault injected by a failpoint: `enospc` → ENOSPC, `kill` → SIGKILL to this
/// process (a crash at that exact point), anything else → EIO.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn fault_error(arg: Option<String>) -> io::Error {
    match arg.as_deref() {
        Some("kill") => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            io::Error::other("killed")
        }
        Some("enospc") => io::Error::from_raw_os_error(libc::ENOSPC),
        _ => io::Error::from_raw_os_error(libc::EIO),
    }
}

/// Failpoints of the ingest path (no-ops unless the `failpoints` feature is on).
mod fp {
    use std::io;

    #[cfg(feature = "failpoints")]
    use super::fault_error;

    pub(super) fn write() -> io::Result<()> {
        fail::fail_point!("ingest::write", |a| Err(fault_error(a)));
        Ok(())
    }
    pub(super) fn after_first_write() -> io::Result<()> {
        fail::fail_point!("ingest::after-first-write", |a| Err(fault_error(a)));
        Ok(())
    }
    pub(super) fn fsync() -> io::Result<()> {
        fail::fail_point!("ingest::fsync", |a| Err(fault_error(a)));
        Ok(())
    }
    pub(super) fn after_fsync() -> io::Result<()> {
        fail::fail_point!("ingest::after-fsync", |a| Err(fault_error(a)));
        Ok(())
    }
    pub(super) fn after_journal() -> io::Result<()> {
        fail::fail_point!("ingest::after-journal", |a| Err(fault_error(a)));
        Ok(())
    }
    pub(super) fn after_rename() -> io::Result<()> {
        fail::fail_point!("ingest::after-rename", |a| Err(fault_error(a)));
        Ok(())
    }
}

/// Is this error a sign of a failing drive (rather than bad input or a full disk)?
pub fn is_drive_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO)
            | Some(libc::ENXIO)
            | Some(libc::ENODEV)
            | Some(libc::EROFS)
            | Some(libc::EUCLEAN)
    )
}

/// A drive of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveConfig {
    /// `flash` or `disk`.
    pub tier: Tier,
    /// The mounted directory.
    pub path: PathBuf,
    /// Bytes the store may use on it.
    pub capacity: u64,
}

/// Options of a [`TieredStore`].
#[derive(Clone, Debug)]
pub struct TieredOptions {
    /// The drives (flash and disk), in configuration order.
    pub drives: Vec<DriveConfig>,
    /// Where the store keeps its own state (failed drives, rendition manifests).
    pub state_dir: PathBuf,
    /// A directory of hand-placed objects indexed at start, read-only (the foundation's
    /// [`DirStore`]); served from the `disk` tier.
    pub static_root: Option<PathBuf>,
    /// RAM tier byte budget (0 = off).
    pub ram_bytes: u64,
    /// Largest object admitted to RAM.
    pub ram_max_object: u64,
    /// Journal records after which a drive's index is compacted into a snapshot.
    pub compact_after: u64,
    /// Frequency estimate (0–15) at which a `disk` object is promoted to `flash`.
    pub promote_min_frequency: u8,
}

impl TieredOptions {
    /// Options with no drives and defaults for the rest.
    pub fn new(state_dir: impl Into<PathBuf>) -> TieredOptions {
        TieredOptions {
            drives: Vec::new(),
            state_dir: state_dir.into(),
            static_root: None,
            ram_bytes: 0,
            ram_max_object: crate::dir::DEFAULT_RAM_MAX_OBJECT,
            compact_after: 100_000,
            promote_min_frequency: 3,
        }
    }
}

/// An index entry: 32 bytes (the map adds the 16-byte key hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    etag: [u8; 16],
    size: u64,
    /// `Last-Modified`, Unix seconds (u32 lasts until 2106).
    mtime: u32,
    /// Index into `drives`.
    drive: u16,
}

/// The key hash is already uniform: use its low 64 bits as the map's hash.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type IdMap<V> = HashMap<KeyHash, V, BuildHasherDefault<IdHasher>>;

/// Per-drive counters, readable for metrics.
#[derive(Debug, Default)]
pub struct DriveCounters {
    /// Lookups answered from this drive.
    pub hits: AtomicU64,
    /// I/O errors seen on this drive.
    pub errors: AtomicU64,
}

/// A drive's public state for status and metrics.
#[derive(Clone, Debug)]
pub struct DriveStatus {
    /// Tier.
    pub tier: Tier,
    /// Directory.
    pub path: PathBuf,
    /// Configured capacity.
    pub capacity: u64,
    /// Bytes of indexed objects.
    pub used: u64,
    /// Objects indexed.
    pub objects: u64,
    /// In service.
    pub up: bool,
    /// Lookups served.
    pub hits: u64,
    /// I/O errors.
    pub errors: u64,
}

struct Drive {
    tier: Tier,
    root: PathBuf,
    objects_dir: PathBuf,
    tmp_dir: PathBuf,
    index_dir: PathBuf,
    capacity: u64,
    id: String,
    used: AtomicU64,
    objects: AtomicU64,
    reserved: AtomicU64,
    failed: AtomicBool,
    journal: Mutex<Option<Arc<Journal>>>,
    journal_records: AtomicU64,
    /// Ingest commits hold it shared; compaction exclusively (so a snapshot never misses a
    /// record whose object is not in the index yet).
    commit: tokio::sync::RwLock<()>,
    counters: DriveCounters,
}

impl Drive {
    fn journal(&self) -> Option<Arc<Journal>> {
        self.journal.lock().ok().and_then(|j| j.clone())
    }
    fn up(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
    }
    fn free(&self) -> u64 {
        self.capacity
            .saturating_sub(self.used.load(Ordering::Relaxed))
            .saturating_sub(self.reserved.load(Ordering::Relaxed))
    }
}

/// A failed drive as persisted in `failed-drives.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedDrive {
    /// The drive's id (`{drive}/drive-id`).
    pub id: String,
    /// Its directory when it failed.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
    /// When (Unix seconds).
    pub at: u64,
}

const FAILED_FILE: &str = "failed-drives.json";
const GENERATION_FILE: &str = "generation";
const RENDITIONS_DIR: &str = "renditions";
/// Inventory changes kept for deltas; older `since` values get the full set.
const DELTA_LOG: usize = 100_000;

#[derive(Clone, Debug)]
struct Held {
    manifest: RenditionManifest,
    entry: InventoryEntry,
}

#[derive(Debug, Default)]
struct Renditions {
    held: BTreeMap<RenditionId, Held>,
    /// Current inventory generation (persisted in `state_dir/generation`).
    generation: u64,
    /// (generation, rendition) of every change since `log_start`.
    log: VecDeque<(u64, RenditionId)>,
    log_start: u64,
}

/// What happened to an ingest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored (201).
    Created {
        /// Tier written.
        tier: Tier,
        /// Bytes.
        size: u64,
    },
    /// The same object was already there (200, nothing written).
    AlreadyPresent,
}

/// The tiered store. Build with [`TieredStore::open`]; share as `Arc`.
pub struct TieredStore {
    me: Weak<TieredStore>,
    drives: Vec<Drive>,
    index: RwLock<IdMap<Entry>>,
    static_store: Option<DirStore>,
    ram: Mutex<RamPolicy<KeyHash>>,
    ram_data: RwLock<IdMap<Bytes>>,
    ram_loading: Mutex<HashSet<KeyHash>>,
    ram_enabled: bool,
    renditions: Mutex<Renditions>,
    inflight: Mutex<HashSet<KeyHash>>,
    engine: Arc<dyn IoEngine>,
    state_dir: PathBuf,
    compact_after: u64,
    promote_min_frequency: u8,
    promote_queue: Mutex<VecDeque<(KeyHash, String)>>,
    promote_wake: tokio::sync::Notify,
    promoted: AtomicU64,
    demoted: AtomicU64,
    ram_hits: AtomicU64,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("drives", &self.drives.len())
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    journal::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn etag_hex(etag: &[u8; 16]) -> String {
    hex::encode(etag)
}

fn sha_prefix(sha_hex: &str) -> Option<[u8; 16]> {
    let bytes = hex::decode(sha_hex).ok()?;
    bytes.get(..16)?.try_into().ok()
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry list changed.
fn create_dirs_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    journal::sync_dir(dir.parent().unwrap_or(Path::new("/")))
}

fn load_failed(state_dir: &Path) -> Vec<FailedDrive> {
    match fs::read(state_dir.join(FAILED_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::error!(error = %e, "unreadable failed-drives.json; treating no drive as failed");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

fn drive_id(root: &Path) -> io::Result<String> {
    let path = root.join("drive-id");
    match fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) | Err(_) if !path.exists() => {
            let mut raw = [0u8; 16];
            aws_lc_rs::rand::fill(&mut raw).map_err(|_| io::Error::other("no randomness"))?;
            let id = hex::encode(raw);
            write_atomic(&path, format!("{id}\n").as_bytes())?;
            Ok(id)
        }
        Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "empty drive-id")),
        Err(e) => Err(e),
    }
}

impl TieredStore {
    /// Opens every drive (snapshot + journal replay, temp cleanup), the static directory and
    /// the rendition manifests. Blocking: call before serving or on a blocking thread.
    ///
    /// A drive that cannot be read is taken out of service (logged, persisted); a bad state
    /// directory or static root is an error.
    pub fn open(
        opts: TieredOptions,
        engine: Arc<dyn IoEngine>,
    ) -> Result<Arc<TieredStore>, StorageError> {
        fs::create_dir_all(opts.state_dir.join(RENDITIONS_DIR))
            .map_err(|e| StorageError::io(&opts.state_dir, e))?;
        let failed = load_failed(&opts.state_dir);
        let static_store = match &opts.static_root {
            Some(root) => Some(DirStore::open(DirStoreOptions::new(root.clone()))?),
            None => None,
        };
        let mut index: IdMap<Entry> = IdMap::default();
        let mut drives = Vec::with_capacity(opts.drives.len());
        let mut newly_failed = Vec::new();
        for (i, cfg) in opts.drives.iter().enumerate() {
            let mut drive = Drive {
                tier: cfg.tier,
                root: cfg.path.clone(),
                objects_dir: cfg.path.join("objects"),
                tmp_dir: cfg.path.join("tmp"),
                index_dir: cfg.path.join("index"),
                capacity: cfg.capacity,
                id: String::new(),
                used: AtomicU64::new(0),
                objects: AtomicU64::new(0),
                reserved: AtomicU64::new(0),
                failed: AtomicBool::new(false),
                journal: Mutex::new(None),
                journal_records: AtomicU64::new(0),
                commit: tokio::sync::RwLock::new(()),
                counters: DriveCounters::default(),
            };
            match load_drive(&mut drive, i as u16, &failed, &mut index) {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(drive = %cfg.path.display(), error = %e, "drive out of service");
                    drive.failed.store(true, Ordering::Relaxed);
                    if !drive.id.is_empty() && !failed.iter().any(|f| f.id == drive.id) {
                        newly_failed.push(FailedDrive {
                            id: drive.id.clone(),
                            path: drive.root.clone(),
                            reason: e.to_string(),
                            at: now_secs(),
                        });
                    }
                }
            }
            drives.push(drive);
        }
        let store = Arc::new_cyclic(|me| TieredStore {
            me: me.clone(),
            drives,
            index: RwLock::new(index),
            static_store,
            ram: Mutex::new(RamPolicy::new(opts.ram_bytes, opts.ram_max_object)),
            ram_data: RwLock::new(IdMap::default()),
            ram_loading: Mutex::new(HashSet::new()),
            ram_enabled: opts.ram_bytes > 0,
            renditions: Mutex::new(Renditions::default()),
            inflight: Mutex::new(HashSet::new()),
            engine,
            state_dir: opts.state_dir.clone(),
            compact_after: opts.compact_after.max(1),
            promote_min_frequency: opts.promote_min_frequency,
            promote_queue: Mutex::new(VecDeque::new()),
            promote_wake: tokio::sync::Notify::new(),
            promoted: AtomicU64::new(0),
            demoted: AtomicU64::new(0),
            ram_hits: AtomicU64::new(0),
        });
        if !newly_failed.is_empty() {
            let mut all = failed;
            all.extend(newly_failed);
            store.persist_failed(&all);
        }
        store.load_renditions()?;
        store.add_static_renditions();
        Ok(store)
    }

    fn persist_failed(&self, all: &[FailedDrive]) {
        let text = serde_json::to_vec_pretty(all).unwrap_or_default();
        if let Err(e) = write_atomic(&self.state_dir.join(FAILED_FILE), &text) {
            tracing::error!(error = %e, "cannot persist the failed-drive list");
        }
    }

    /// Statuses of the drives, in configuration order.
    pub fn drives(&self) -> Vec<DriveStatus> {
        self.drives
            .iter()
            .map(|d| DriveStatus {
                tier: d.tier,
                path: d.root.clone(),
                capacity: d.capacity,
                used: d.used.load(Ordering::Relaxed),
                objects: d.objects.load(Ordering::Relaxed),
                up: d.up(),
                hits: d.counters.hits.load(Ordering::Relaxed),
                errors: d.counters.errors.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// RAM tier: (objects, bytes, capacity, hits).
    pub fn ram_status(&self) -> (u64, u64, u64, u64) {
        let (len, used, cap) = match self.ram.lock() {
            Ok(p) => (p.len() as u64, p.used_bytes(), p.capacity_bytes()),
            Err(_) => (0, 0, 0),
        };
        (len, used, cap, self.ram_hits.load(Ordering::Relaxed))
    }

    /// Objects promoted to flash and demoted to disk so far.
    pub fn moves(&self) -> (u64, u64) {
        (
            self.promoted.load(Ordering::Relaxed),
            self.demoted.load(Ordering::Relaxed),
        )
    }

    /// Per-tier summary for status and heartbeats.
    pub fn tier_status(&self) -> Vec<TierStatus> {
        let (_, ram_used, ram_cap, _) = self.ram_status();
        let mut out = vec![TierStatus {
            tier: Tier::Ram,
            capacity_bytes: ram_cap,
            used_bytes: ram_used,
            drives: 0,
            failed_drives: 0,
        }];
        for tier in [Tier::Flash, Tier::Disk] {
            let ds: Vec<&Drive> = self.drives.iter().filter(|d| d.tier == tier).collect();
            if ds.is_empty() && !(tier == Tier::Disk && self.static_store.is_some()) {
                continue;
            }
            let mut st = TierStatus {
                tier,
                capacity_bytes: ds.iter().filter(|d| d.up()).map(|d| d.capacity).sum(),
                used_bytes: ds
                    .iter()
                    .filter(|d| d.up())
                    .map(|d| d.used.load(Ordering::Relaxed))
                    .sum(),
                drives: ds.len() as u32,
                failed_drives: ds.iter().filter(|d| !d.up()).count() as u32,
            };
            if tier == Tier::Disk
                && let Some(s) = &self.static_store
            {
                st.used_bytes += s.stats().bytes;
            }
            out.push(st);
        }
        out
    }

    fn entry_handle(&self, h: KeyHash, key: &ObjectKey, e: Entry) -> ObjectHandle {
        let drive = &self.drives[e.drive as usize];
        drive.counters.hits.fetch_add(1, Ordering::Relaxed);
        let path = drive.objects_dir.join(key.as_str());
        let meta = ObjectMeta {
            size: e.size,
            etag: etag_hex(&e.etag),
            last_modified: UNIX_EPOCH + Duration::from_secs(u64::from(e.mtime)),
            tier: drive.tier,
        };
        let data = match self.ram_access(h, e.size, &path, Some(drive.tier), key.as_str()) {
            Some(bytes) => {
                let mut meta = meta;
                meta.tier = Tier::Ram;
                return ObjectHandle {
                    meta,
                    data: ObjectData::Ram(bytes),
                    path,
                    drive: Some(e.drive),
                };
            }
            None => ObjectData::File(path.clone()),
        };
        ObjectHandle {
            meta,
            data,
            path,
            drive: Some(e.drive),
        }
    }

    /// Records an access in the RAM policy; returns the RAM copy if there is one. Starts a
    /// background load for an admitted object and queues hot `disk` objects for promotion.
    fn ram_access(
        &self,
        h: KeyHash,
        size: u64,
        path: &Path,
        tier: Option<Tier>,
        key: &str,
    ) -> Option<Bytes> {
        if !self.ram_enabled {
            return None;
        }
        let decision = match self.ram.try_lock() {
            Ok(mut p) => {
                let d = p.access(h, size);
                let promote = tier == Some(Tier::Disk)
                    && self.promote_min_frequency > 0
                    && p.frequency(&h) >= self.promote_min_frequency;
                Some((d, promote))
            }
            Err(_) => None,
        };
        let Some((decision, promote)) = decision else {
            return self.ram_data.read().ok()?.get(&h).cloned();
        };
        if promote && self.drives.iter().any(|d| d.tier == Tier::Flash && d.up()) {
            self.queue_promotion(h, key);
        }
        match decision {
            Access::Hit => {
                let got = self.ram_data.read().ok()?.get(&h).cloned();
                if got.is_some() {
                    self.ram_hits.fetch_add(1, Ordering::Relaxed);
                }
                got
            }
            Access::Admit { evict } => {
                if let Ok(mut data) = self.ram_data.write() {
                    for k in evict {
                        data.remove(&k);
                    }
                }
                self.load_into_ram(h, size, path.to_path_buf());
                None
            }
            Access::Reject => None,
        }
    }

    fn load_into_ram(&self, h: KeyHash, size: u64, path: PathBuf) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self.ram_loading.lock() {
            Ok(mut loading) => {
                if !loading.insert(h) {
                    return;
                }
            }
            Err(_) => return,
        }
        let me = self.me.clone();
        handle.spawn(async move {
            let Some(store) = me.upgrade() else {
                return;
            };
            let r = read_whole(store.engine.as_ref(), path, size).await;
            if let Ok(mut loading) = store.ram_loading.lock() {
                loading.remove(&h);
            }
            match r {
                // Only if the policy still wants it (it may have been evicted or purged
                // while the read ran).
                Ok(bytes) => {
                    let wanted = store.ram.lock().map(|p| p.contains(&h)).unwrap_or(false);
                    if wanted && let Ok(mut data) = store.ram_data.write() {
                        data.insert(h, bytes);
                    }
                }
                Err(e) => {
                    if let Ok(mut p) = store.ram.lock() {
                        p.remove(&h);
                    }
                    tracing::debug!(error = %e, "RAM tier load failed");
                }
            }
        });
    }

    fn ram_forget(&self, h: KeyHash) {
        if let Ok(mut p) = self.ram.lock() {
            p.remove(&h);
        }
        if let Ok(mut d) = self.ram_data.write() {
            d.remove(&h);
        }
    }

    fn queue_promotion(&self, h: KeyHash, key: &str) {
        let Ok(mut q) = self.promote_queue.lock() else {
            return;
        };
        if q.len() >= 1024 || q.iter().any(|(k, _)| *k == h) {
            return;
        }
        q.push_back((h, key.to_owned()));
        drop(q);
        self.promote_wake.notify_one();
    }

    // ------------------------------------------------------------------ ingest

    /// Starts an ingest of `key` with the expected SHA-256 (64 hex digits) and `size` bytes
    /// (`Content-Length`), on a drive of `tier` (default: flash if there is one in service,
    /// else disk). `published` becomes `Last-Modified`.
    ///
    /// Errors: [`StorageError::Conflict`] if the key holds other bytes or another ingest of it
    /// is running; [`StorageError::NoSpace`] if no drive of the tier has room.
    pub async fn begin_ingest(
        &self,
        key: ObjectKey,
        sha256_hex: &str,
        size: u64,
        tier: Option<Tier>,
        published: Option<u64>,
    ) -> Result<IngestStart, StorageError> {
        let expected: [u8; 32] = hex::decode(sha256_hex)
            .ok()
            .and_then(|v| v.try_into().ok())
            .filter(|_| oca_common::wire::valid_sha256_hex(sha256_hex))
            .ok_or_else(|| {
                StorageError::BadInput("x-oca-sha256 must be 64 lowercase hex digits".into())
            })?;
        if tier == Some(Tier::Ram) {
            return Err(StorageError::BadInput(
                "x-oca-tier: ram is filled by admission, not by ingest; use flash or disk".into(),
            ));
        }
        let h = key_hash(key.as_str());
        let existing = self.index.read().ok().and_then(|i| i.get(&h).copied());
        if let Some(e) = existing {
            return if e.etag[..] == expected[..16] && e.size == size {
                Ok(IngestStart::AlreadyPresent)
            } else {
                Err(StorageError::Conflict(format!(
                    "{key} is already stored with other content (objects are immutable; a new encode is a new key)"
                )))
            };
        }
        {
            let mut inflight = self
                .inflight
                .lock()
                .map_err(|_| StorageError::BadInput("store poisoned".into()))?;
            if !inflight.insert(h) {
                return Err(StorageError::Conflict(format!(
                    "another ingest of {key} is in progress"
                )));
            }
        }
        let guard = InflightGuard {
            store: self.me.clone(),
            h,
        };
        let drive = self.pick_drive(tier, size)?;
        let d = &self.drives[drive as usize];
        d.reserved.fetch_add(size, Ordering::Relaxed);
        let reservation = Reservation {
            store: self.me.clone(),
            drive,
            bytes: size,
        };
        let tmp = d.tmp_dir.join(format!("{h:032x}"));
        // A temp file left by a failed earlier attempt of this key (we hold the key).
        let _ = fs::remove_file(&tmp);
        let file = match self.engine.create(tmp.clone()).await {
            Ok(f) => f,
            Err(e) => {
                self.io_failure(drive, &e, "creating a temp file");
                return Err(StorageError::io(&tmp, e));
            }
        };
        Ok(IngestStart::Started(Box::new(Ingest {
            store: self.me.clone(),
            key,
            h,
            drive,
            tmp,
            file,
            hasher: digest::Context::new(&digest::SHA256),
            written: 0,
            size,
            expected,
            mtime: published.unwrap_or_else(now_secs),
            first_write: true,
            done: false,
            _guard: guard,
            _reservation: reservation,
        })))
    }

    fn pick_drive(&self, tier: Option<Tier>, size: u64) -> Result<u16, StorageError> {
        let tier = tier.unwrap_or_else(|| {
            if self.drives.iter().any(|d| d.tier == Tier::Flash && d.up()) {
                Tier::Flash
            } else {
                Tier::Disk
            }
        });
        let candidates: Vec<(usize, &Drive)> = self
            .drives
            .iter()
            .enumerate()
            .filter(|(_, d)| d.tier == tier && d.up())
            .collect();
        if candidates.is_empty() {
            return Err(StorageError::NoSpace(format!(
                "no {tier} drive is in service"
            )));
        }
        candidates
            .iter()
            .filter(|(_, d)| d.free() >= size)
            .max_by_key(|(_, d)| d.free())
            .map(|(i, _)| *i as u16)
            .ok_or_else(|| {
                StorageError::NoSpace(format!(
                    "no {tier} drive has {size} bytes free (largest free: {})",
                    candidates.iter().map(|(_, d)| d.free()).max().unwrap_or(0)
                ))
            })
    }

    /// Takes `drive` out of service if `err` is a drive error; counts the error either way.
    fn io_failure(&self, drive: u16, err: &io::Error, what: &str) {
        let Some(d) = self.drives.get(drive as usize) else {
            return;
        };
        d.counters.errors.fetch_add(1, Ordering::Relaxed);
        if is_drive_error(err) {
            self.fail_drive(drive, &format!("{what}: {err}"));
        }
    }

    /// A read of `handle` failed with `err` (reported by the server's body path): a drive
    /// error takes its drive out of service.
    pub fn read_failed(&self, handle: &ObjectHandle, err: &io::Error) {
        if let Some(drive) = handle.drive {
            self.io_failure(drive, err, "read");
        }
    }

    /// A read of the file at `path` failed with `err`: a drive error takes the drive holding
    /// the path out of service.
    pub fn read_failed_at(&self, path: &Path, err: &io::Error) {
        if let Some(i) = self
            .drives
            .iter()
            .position(|d| path.starts_with(&d.objects_dir))
        {
            self.io_failure(i as u16, err, "read");
        }
    }

    /// Takes a drive out of service: drops its objects from the index, the RAM tier and the
    /// inventory, persists the fact. Idempotent.
    pub fn fail_drive(&self, drive: u16, reason: &str) {
        let Some(d) = self.drives.get(drive as usize) else {
            return;
        };
        if d.failed.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!(drive = %d.root.display(), reason, "drive taken out of service");
        if let Ok(mut j) = d.journal.lock() {
            j.take();
        }
        let mut dropped = Vec::new();
        if let Ok(mut index) = self.index.write() {
            index.retain(|h, e| {
                let keep = e.drive != drive;
                if !keep {
                    dropped.push(*h);
                }
                keep
            });
        }
        for h in &dropped {
            self.ram_forget(*h);
        }
        d.used.store(0, Ordering::Relaxed);
        d.objects.store(0, Ordering::Relaxed);
        let mut all = load_failed(&self.state_dir);
        if !d.id.is_empty() && !all.iter().any(|f| f.id == d.id) {
            all.push(FailedDrive {
                id: d.id.clone(),
                path: d.root.clone(),
                reason: reason.to_owned(),
                at: now_secs(),
            });
            self.persist_failed(&all);
        }
        self.recheck_renditions(None);
    }

    async fn commit(&self, ing: &mut Ingest) -> Result<IngestOutcome, StorageError> {
        let d = &self.drives[ing.drive as usize];
        let digest =
            std::mem::replace(&mut ing.hasher, digest::Context::new(&digest::SHA256)).finish();
        if digest.as_ref() != ing.expected {
            return Err(StorageError::ChecksumMismatch {
                key: ing.key.to_string(),
                expected: hex::encode(ing.expected),
                actual: hex::encode(digest.as_ref()),
            });
        }
        let fsync = async {
            fp::fsync()?;
            self.engine.fsync(ing.file.clone()).await
        };
        if let Err(e) = fsync.await {
            self.io_failure(ing.drive, &e, "fsync of an ingest");
            return Err(StorageError::io(&ing.tmp, e));
        }
        fp::after_fsync().map_err(|e| StorageError::io(&ing.tmp, e))?;
        let _commit = d.commit.read().await;
        let Some(journal) = d.journal() else {
            return Err(StorageError::DriveFailed(format!(
                "{} went out of service during the ingest",
                d.root.display()
            )));
        };
        let rec = Record::Put(PutRecord {
            key: ing.key.to_string(),
            size: ing.size,
            sha256: ing.expected,
            mtime: ing.mtime,
        });
        if let Err(e) = journal.append(&rec).await {
            self.io_failure(ing.drive, &e, "journal append");
            return Err(StorageError::io(d.index_dir.join("journal"), e));
        }
        fp::after_journal().map_err(|e| StorageError::io(&ing.tmp, e))?;
        // From here the object exists: a crash rolls the rename forward on restart.
        ing.done = true;
        let final_path = d.objects_dir.join(ing.key.as_str());
        let tmp = ing.tmp.clone();
        let place = place_durably(tmp, final_path).await;
        if let Err(e) = place {
            self.io_failure(ing.drive, &e, "placing an ingested object");
            return Err(StorageError::io(&ing.tmp, e));
        }
        let mut etag = [0u8; 16];
        etag.copy_from_slice(&ing.expected[..16]);
        let entry = Entry {
            etag,
            size: ing.size,
            mtime: u32::try_from(ing.mtime).unwrap_or(u32::MAX),
            drive: ing.drive,
        };
        if let Ok(mut index) = self.index.write() {
            index.insert(ing.h, entry);
        }
        d.used.fetch_add(ing.size, Ordering::Relaxed);
        d.objects.fetch_add(1, Ordering::Relaxed);
        let records = d.journal_records.fetch_add(1, Ordering::Relaxed) + 1;
        drop(_commit);
        if records >= self.compact_after
            && let Err(e) = self.compact(ing.drive).await
        {
            tracing::warn!(error = %e, "index compaction failed; the journal keeps growing");
        }
        Ok(IngestOutcome::Created {
            tier: d.tier,
            size: ing.size,
        })
    }

    /// Writes drive `drive`'s index as a snapshot and empties its journal.
    pub async fn compact(&self, drive: u16) -> Result<(), StorageError> {
        let d = &self.drives[drive as usize];
        let _excl = d.commit.write().await;
        let Some(journal) = d.journal() else {
            return Ok(());
        };
        let entries: Vec<SnapEntry> = match self.index.read() {
            Ok(index) => index
                .iter()
                .filter(|(_, e)| e.drive == drive)
                .map(|(h, e)| SnapEntry {
                    key: *h,
                    etag: e.etag,
                    size: e.size,
                    mtime: u64::from(e.mtime),
                })
                .collect(),
            Err(_) => return Ok(()),
        };
        let path = d.index_dir.join("snapshot");
        let p2 = path.clone();
        tokio::task::spawn_blocking(move || journal::write_snapshot(&p2, &entries))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
            .map_err(|e| {
                self.io_failure(drive, &e, "writing the index snapshot");
                StorageError::io(&path, e)
            })?;
        journal.truncate().await.map_err(|e| {
            self.io_failure(drive, &e, "truncating the journal");
            StorageError::io(d.index_dir.join("journal"), e)
        })?;
        d.journal_records.store(0, Ordering::Relaxed);
        Ok(())
    }

    // ------------------------------------------------------------------ delete

    /// Deletes an object (journal record, index, file). Returns the deleted file's path, or
    /// `None` if the key was not stored (callers caching descriptors must drop theirs).
    pub async fn delete(&self, key: &ObjectKey) -> Result<Option<PathBuf>, StorageError> {
        let h = key_hash(key.as_str());
        let Some(e) = self.index.read().ok().and_then(|i| i.get(&h).copied()) else {
            if self
                .static_store
                .as_ref()
                .and_then(|s| s.lookup(key))
                .is_some()
            {
                return Err(StorageError::Conflict(format!(
                    "{key} is a hand-placed file of the static root; remove it there"
                )));
            }
            return Ok(None);
        };
        let d = &self.drives[e.drive as usize];
        let _commit = d.commit.read().await;
        let Some(journal) = d.journal() else {
            return Ok(None);
        };
        if let Err(err) = journal
            .append(&Record::Del {
                key: key.to_string(),
            })
            .await
        {
            self.io_failure(e.drive, &err, "journal append");
            return Err(StorageError::io(d.index_dir.join("journal"), err));
        }
        let removed = self
            .index
            .write()
            .ok()
            .and_then(|mut i| i.remove(&h))
            .is_some();
        if removed {
            d.used.fetch_sub(
                e.size.min(d.used.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            d.objects.fetch_sub(1, Ordering::Relaxed);
        }
        d.journal_records.fetch_add(1, Ordering::Relaxed);
        self.ram_forget(h);
        let path = d.objects_dir.join(key.as_str());
        let p2 = path.clone();
        let _ = tokio::task::spawn_blocking(move || fs::remove_file(p2)).await;
        drop(_commit);
        self.recheck_renditions(RenditionId::of_key(key));
        Ok(removed.then_some(path))
    }

    // ------------------------------------------------------------------ renditions

    fn load_renditions(&self) -> Result<(), StorageError> {
        let gen_path = self.state_dir.join(GENERATION_FILE);
        let generation = fs::read_to_string(&gen_path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let dir = self.state_dir.join(RENDITIONS_DIR);
        let mut manifests = Vec::new();
        for title in fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))? {
            let Ok(title) = title else { continue };
            let Ok(files) = fs::read_dir(title.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|x| x == "json") {
                    match fs::read(&p)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<RenditionManifest>(&b).ok())
                    {
                        Some(m) if m.validate().is_ok() => manifests.push(m),
                        _ => {
                            tracing::warn!(file = %p.display(), "ignoring an unreadable rendition manifest")
                        }
                    }
                } else if p.extension().is_some_and(|x| x == "tmp") {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        let mut r = self
            .renditions
            .lock()
            .map_err(|_| StorageError::BadInput("poisoned".into()))?;
        r.generation = generation;
        r.log_start = generation;
        for m in manifests {
            if let Ok(id) = m.rendition_id()
                && let Some(entry) = self.evaluate(&m)
            {
                r.held.insert(id, Held { manifest: m, entry });
            }
        }
        drop(r);
        // Manifests whose files are gone (e.g. a drive failed while we were down).
        self.recheck_renditions(None);
        Ok(())
    }

    /// Hand-placed renditions under the static root count as held, whole, from the start
    /// (their manifest is what is on disk, in file-name order).
    fn add_static_renditions(&self) {
        let Some(st) = &self.static_store else { return };
        let mut by_rendition: BTreeMap<RenditionId, Vec<oca_common::wire::ManifestFile>> =
            BTreeMap::new();
        for k in st.keys() {
            let Ok(key) = ObjectKey::parse(k) else {
                continue;
            };
            let (Some(id), Some(obj)) = (RenditionId::of_key(&key), st.lookup(&key)) else {
                continue;
            };
            by_rendition
                .entry(id)
                .or_default()
                .push(oca_common::wire::ManifestFile {
                    name: key.file_name().to_owned(),
                    size: obj.meta.size,
                    // Only the first 16 bytes are known (the ETag); the rest is never compared.
                    sha256: format!("{}{}", obj.meta.etag, "0".repeat(32)),
                });
        }
        let Ok(mut r) = self.renditions.lock() else {
            return;
        };
        for (id, mut files) in by_rendition {
            if r.held.contains_key(&id) {
                continue;
            }
            files.sort_by(|a, b| a.name.cmp(&b.name));
            let m = RenditionManifest {
                title: id.title().to_owned(),
                rendition: id.rendition().to_owned(),
                total_files: files.len() as u32,
                files,
                published: None,
            };
            if let Some(entry) = self.evaluate(&m) {
                r.held.insert(id, Held { manifest: m, entry });
            }
        }
    }

    /// The inventory entry for a manifest given what the index holds now: the leading files
    /// present with matching size and digest. `None` if not even the first is.
    fn evaluate(&self, m: &RenditionManifest) -> Option<InventoryEntry> {
        let id = m.rendition_id().ok()?;
        let mut held = 0u32;
        let mut bytes = 0u64;
        let mut tiers: BTreeMap<Tier, u64> = BTreeMap::new();
        for f in &m.files {
            let key = id.key(&f.name).ok()?;
            let Some(meta) = self.meta_of(&key) else {
                break;
            };
            if meta.size != f.size
                || sha_prefix(&f.sha256).map(|p| etag_hex(&p)).as_ref() != Some(&meta.etag)
            {
                break;
            }
            held += 1;
            bytes += f.size;
            *tiers.entry(meta.tier).or_default() += f.size;
        }
        if held == 0 {
            return None;
        }
        let tier = tiers
            .iter()
            .max_by_key(|(_, b)| **b)
            .map_or(Tier::Disk, |(t, _)| *t);
        Some(InventoryEntry {
            rendition: id,
            files_held: held,
            total_files: m.total_files,
            bytes,
            tier,
        })
    }

    /// Size, ETag and tier of an indexed object, without touching the RAM policy.
    fn meta_of(&self, key: &ObjectKey) -> Option<ObjectMeta> {
        let h = key_hash(key.as_str());
        if let Some(e) = self.index.read().ok()?.get(&h).copied() {
            return Some(ObjectMeta {
                size: e.size,
                etag: etag_hex(&e.etag),
                last_modified: UNIX_EPOCH + Duration::from_secs(u64::from(e.mtime)),
                tier: self.drives[e.drive as usize].tier,
            });
        }
        self.static_store.as_ref()?.lookup(key).map(|o| o.meta)
    }

    fn bump(&self, r: &mut Renditions, id: RenditionId) {
        r.generation += 1;
        let g = r.generation;
        r.log.push_back((g, id));
        while r.log.len() > DELTA_LOG {
            if let Some((g, _)) = r.log.pop_front() {
                r.log_start = g;
            }
        }
        if let Err(e) = write_atomic(
            &self.state_dir.join(GENERATION_FILE),
            format!("{g}\n").as_bytes(),
        ) {
            tracing::error!(error = %e, "cannot persist the inventory generation");
        }
    }

    fn manifest_path(&self, id: &RenditionId) -> PathBuf {
        self.state_dir
            .join(RENDITIONS_DIR)
            .join(id.title())
            .join(format!("{}.json", id.rendition()))
    }

    /// Re-evaluates held renditions (one, or all) after objects went away.
    fn recheck_renditions(&self, only: Option<RenditionId>) {
        let Ok(mut r) = self.renditions.lock() else {
            return;
        };
        let ids: Vec<RenditionId> = match only {
            Some(id) => r.held.contains_key(&id).then_some(id).into_iter().collect(),
            None => r.held.keys().cloned().collect(),
        };
        for id in ids {
            let Some(held) = r.held.get(&id).cloned() else {
                continue;
            };
            match self.evaluate(&held.manifest) {
                Some(entry) if entry == held.entry => {}
                Some(entry) => {
                    if let Some(h) = r.held.get_mut(&id) {
                        h.entry = entry;
                    }
                    self.bump(&mut r, id);
                }
                None => {
                    r.held.remove(&id);
                    let _ = fs::remove_file(self.manifest_path(&id));
                    self.bump(&mut r, id);
                }
            }
        }
    }

    /// Commits a rendition manifest: every listed file must be indexed with the listed size
    /// and digest. Persists the manifest and bumps the inventory generation.
    pub fn commit_rendition(
        &self,
        id: &RenditionId,
        m: RenditionManifest,
    ) -> Result<InventoryEntry, StorageError> {
        m.validate()
            .map_err(|e| StorageError::BadInput(format!("bad manifest: {e}")))?;
        if &m
            .rendition_id()
            .map_err(|e| StorageError::BadInput(e.to_string()))?
            != id
        {
            return Err(StorageError::BadInput(format!(
                "the manifest is for {}/{}, the path names {id}",
                m.title, m.rendition
            )));
        }
        let mut problems = Vec::new();
        for f in &m.files {
            let Ok(key) = id.key(&f.name) else { continue };
            match self.meta_of(&key) {
                None => problems.push(format!("{} is missing", f.name)),
                Some(meta) if meta.size != f.size => problems.push(format!(
                    "{} has {} bytes, the manifest says {}",
                    f.name, meta.size, f.size
                )),
                Some(meta)
                    if sha_prefix(&f.sha256).map(|p| etag_hex(&p)).as_ref() != Some(&meta.etag) =>
                {
                    problems.push(format!("{} has another SHA-256", f.name))
                }
                Some(_) => {}
            }
        }
        if !problems.is_empty() {
            let n = problems.len();
            problems.truncate(10);
            return Err(StorageError::Conflict(format!(
                "rendition {id} is not complete here ({n} problem(s)): {}",
                problems.join("; ")
            )));
        }
        let entry = self
            .evaluate(&m)
            .ok_or_else(|| StorageError::Conflict(format!("rendition {id} has no files here")))?;
        let path = self.manifest_path(id);
        if let Some(parent) = path.parent() {
            create_dirs_durable(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        let text = serde_json::to_vec_pretty(&m).unwrap_or_default();
        write_atomic(&path, &text).map_err(|e| StorageError::io(&path, e))?;
        let mut r = self
            .renditions
            .lock()
            .map_err(|_| StorageError::BadInput("poisoned".into()))?;
        let same = r
            .held
            .get(id)
            .is_some_and(|h| h.entry == entry && h.manifest == m);
        r.held.insert(
            id.clone(),
            Held {
                manifest: m,
                entry: entry.clone(),
            },
        );
        if !same {
            self.bump(&mut r, id.clone());
        }
        Ok(entry)
    }

    /// Deletes a rendition: its manifest, then its files. Returns the deleted files' paths,
    /// or `None` if it was not held.
    pub async fn delete_rendition(
        &self,
        id: &RenditionId,
    ) -> Result<Option<Vec<PathBuf>>, StorageError> {
        let held = {
            let mut r = self
                .renditions
                .lock()
                .map_err(|_| StorageError::BadInput("poisoned".into()))?;
            let held = r.held.remove(id);
            if held.is_some() {
                let _ = fs::remove_file(self.manifest_path(id));
                self.bump(&mut r, id.clone());
            }
            held
        };
        let Some(held) = held else {
            return Ok(None);
        };
        let mut paths = Vec::new();
        for f in &held.manifest.files {
            if let Ok(key) = id.key(&f.name) {
                // Hand-placed files are not ours to delete.
                match self.delete(&key).await {
                    Ok(Some(p)) => paths.push(p),
                    Ok(None) | Err(StorageError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Some(paths))
    }

    /// The current inventory generation.
    pub fn generation(&self) -> u64 {
        self.renditions.lock().map_or(0, |r| r.generation)
    }

    /// The inventory: changes since `since` when the store still has them, else the full set.
    pub fn inventory(&self, since: Option<u64>) -> Inventory {
        let Ok(r) = self.renditions.lock() else {
            return Inventory {
                generation: 0,
                full: true,
                added: Vec::new(),
                removed: Vec::new(),
                base: None,
            };
        };
        match since {
            Some(g) if g >= r.log_start && g <= r.generation => {
                let mut changed: Vec<&RenditionId> = r
                    .log
                    .iter()
                    .filter(|(lg, _)| *lg > g)
                    .map(|(_, id)| id)
                    .collect();
                changed.sort();
                changed.dedup();
                let mut added = Vec::new();
                let mut removed = Vec::new();
                for id in changed {
                    match r.held.get(id) {
                        Some(h) => added.push(h.entry.clone()),
                        None => removed.push(id.clone()),
                    }
                }
                Inventory {
                    generation: r.generation,
                    full: false,
                    added,
                    removed,
                    base: Some(g),
                }
            }
            _ => Inventory {
                generation: r.generation,
                full: true,
                added: r.held.values().map(|h| h.entry.clone()).collect(),
                removed: Vec::new(),
                base: None,
            },
        }
    }

    // ------------------------------------------------------------------ promotion

    /// Runs the promoter until `stop` resolves: copies queued hot `disk` objects to `flash`
    /// at most `bytes_per_sec`, demoting the least frequently used flash objects when flash
    /// is full.
    pub async fn run_promoter(
        self: Arc<Self>,
        bytes_per_sec: u64,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let rate = bytes_per_sec.max(1);
        loop {
            let next = self
                .promote_queue
                .lock()
                .ok()
                .and_then(|mut q| q.pop_front());
            let Some((h, key)) = next else {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = self.promote_wake.notified() => continue,
                }
            };
            let Ok(key) = ObjectKey::parse(&key) else {
                continue;
            };
            match self.move_object(&key, h, Tier::Flash).await {
                Ok(Some(bytes)) => {
                    self.promoted.fetch_add(1, Ordering::Relaxed);
                    // Rate cap: wait as long as the bytes take at the configured rate.
                    let pause = Duration::from_secs_f64(bytes as f64 / rate as f64);
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(%key, error = %e, "promotion skipped"),
            }
        }
    }

    /// Copies an object to a drive of `tier` (through a normal ingest, checksum included),
    /// then deletes the old copy. Returns the bytes moved, or `None` if there was nothing to
    /// do.
    async fn move_object(
        &self,
        key: &ObjectKey,
        h: KeyHash,
        tier: Tier,
    ) -> Result<Option<u64>, StorageError> {
        let Some(e) = self.index.read().ok().and_then(|i| i.get(&h).copied()) else {
            return Ok(None);
        };
        let from = &self.drives[e.drive as usize];
        if from.tier == tier {
            return Ok(None);
        }
        if tier == Tier::Flash && self.pick_drive(Some(Tier::Flash), e.size).is_err() {
            self.demote_for(e.size).await?;
        }
        let src = from.objects_dir.join(key.as_str());
        let file = self
            .engine
            .open(src.clone())
            .await
            .map_err(|err| StorageError::io(&src, err))?;
        // Read and hash the source first: the ingest checks the SHA-256 we give it, and we
        // only know the ETag prefix in memory.
        let mut sha = digest::Context::new(&digest::SHA256);
        let mut chunks = Vec::new();
        let mut off = 0u64;
        let step = self.engine.buffer_size();
        while off < e.size {
            let len = step.min((e.size - off) as usize);
            let b = self
                .engine
                .read_at(file.clone(), off, len)
                .await
                .map_err(|err| {
                    self.io_failure(e.drive, &err, "read for promotion");
                    StorageError::io(&src, err)
                })?;
            if b.is_empty() {
                break;
            }
            off += b.len() as u64;
            sha.update(&b);
            chunks.push(b);
        }
        let sha_hex = hex::encode(sha.finish().as_ref());
        if sha_hex[..32] != etag_hex(&e.etag) {
            return Err(StorageError::ChecksumMismatch {
                key: key.to_string(),
                expected: etag_hex(&e.etag),
                actual: sha_hex[..32].to_owned(),
            });
        }
        // Not through begin_ingest: the key exists. Write a copy on the target drive and
        // switch the index entry under both drives' journals.
        let target = self.pick_drive(Some(tier), e.size)?;
        let t = &self.drives[target as usize];
        let tmp = t.tmp_dir.join(format!("{h:032x}"));
        let _ = fs::remove_file(&tmp);
        let out = self
            .engine
            .create(tmp.clone())
            .await
            .map_err(|err| StorageError::io(&tmp, err))?;
        let mut pos = 0u64;
        for c in chunks {
            let n = c.len() as u64;
            if let Err(err) = self.engine.write_at(out.clone(), pos, c).await {
                let _ = fs::remove_file(&tmp);
                self.io_failure(target, &err, "write for promotion");
                return Err(StorageError::io(&tmp, err));
            }
            pos += n;
        }
        if let Err(err) = self.engine.fsync(out).await {
            let _ = fs::remove_file(&tmp);
            self.io_failure(target, &err, "fsync for promotion");
            return Err(StorageError::io(&tmp, err));
        }
        let sha256: [u8; 32] = hex::decode(&sha_hex)
            .ok()
            .and_then(|v| v.try_into().ok())
            .unwrap_or([0; 32]);
        let _c1 = t.commit.read().await;
        let Some(tj) = t.journal() else {
            let _ = fs::remove_file(&tmp);
            return Ok(None);
        };
        tj.append(&Record::Put(PutRecord {
            key: key.to_string(),
            size: e.size,
            sha256,
            mtime: u64::from(e.mtime),
        }))
        .await
        .map_err(|err| StorageError::io(&tmp, err))?;
        let final_path = t.objects_dir.join(key.as_str());
        let tmp2 = tmp.clone();
        place_durably(tmp2, final_path)
            .await
            .map_err(|err| StorageError::io(&tmp, err))?;
        if let Ok(mut index) = self.index.write() {
            index.insert(h, Entry { drive: target, ..e });
        }
        t.used.fetch_add(e.size, Ordering::Relaxed);
        t.objects.fetch_add(1, Ordering::Relaxed);
        t.journal_records.fetch_add(1, Ordering::Relaxed);
        drop(_c1);
        // The old copy: a delete record on its drive, then the file. A crash before the
        // delete record leaves two copies; the replay keeps the one whose drive loads last,
        // and both are whole.
        if let Some(fj) = from.journal() {
            let _c2 = from.commit.read().await;
            if fj
                .append(&Record::Del {
                    key: key.to_string(),
                })
                .await
                .is_ok()
            {
                from.used.fetch_sub(
                    e.size.min(from.used.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                from.objects.fetch_sub(1, Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(move || fs::remove_file(src)).await;
            }
        }
        Ok(Some(e.size))
    }

    /// Frees `bytes` on a flash drive by moving its least frequently used objects to disk.
    async fn demote_for(&self, bytes: u64) -> Result<(), StorageError> {
        // Candidates: flash objects by ascending frequency estimate. The key string is
        // needed to move a file; the index only has hashes, so demotion works from the
        // object files of the flash drives (a bounded walk of at most 4096 names).
        let mut freed = 0u64;
        for (di, d) in self.drives.iter().enumerate() {
            if d.tier != Tier::Flash || !d.up() {
                continue;
            }
            let mut names = Vec::new();
            collect_keys(&d.objects_dir, &d.objects_dir, &mut names, 4096);
            let mut scored: Vec<(u8, String, KeyHash, u64)> = {
                let p = self
                    .ram
                    .lock()
                    .map_err(|_| StorageError::BadInput("poisoned".into()))?;
                let index = self
                    .index
                    .read()
                    .map_err(|_| StorageError::BadInput("poisoned".into()))?;
                names
                    .into_iter()
                    .filter_map(|k| {
                        let h = key_hash(&k);
                        let e = index.get(&h)?;
                        (e.drive as usize == di).then(|| (p.frequency(&h), k, h, e.size))
                    })
                    .collect()
            };
            scored.sort();
            for (_, k, h, size) in scored {
                if freed >= bytes {
                    return Ok(());
                }
                let Ok(key) = ObjectKey::parse(&k) else {
                    continue;
                };
                if let Ok(Some(_)) = Box::pin(self.move_object(&key, h, Tier::Disk)).await {
                    self.demoted.fetch_add(1, Ordering::Relaxed);
                    freed += size;
                }
            }
        }
        Ok(())
    }
}

/// Renames a fsynced temp file to its final path (creating parents durably) and fsyncs the
/// directory, off the runtime workers.
async fn place_durably(tmp: PathBuf, final_path: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let parent = final_path.parent().unwrap_or(Path::new("/")).to_path_buf();
        create_dirs_durable(&parent)?;
        fs::rename(&tmp, &final_path)?;
        fp::after_rename()?;
        journal::sync_dir(&parent)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
}

fn collect_keys(root: &Path, dir: &Path, out: &mut Vec<String>, limit: usize) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if out.len() >= limit {
            return;
        }
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_keys(root, &p, out, limit),
            Ok(t) if t.is_file() => {
                if let Ok(rel) = p.strip_prefix(root)
                    && let Some(s) = rel.to_str()
                {
                    out.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
}

async fn read_whole(engine: &dyn IoEngine, path: PathBuf, size: u64) -> io::Result<Bytes> {
    let file = engine.open(path).await?;
    let mut out = Vec::with_capacity(size as usize);
    let step = engine.buffer_size();
    while (out.len() as u64) < size {
        let len = step.min((size - out.len() as u64) as usize);
        let b = engine.read_at(file.clone(), out.len() as u64, len).await?;
        if b.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object shorter than its index entry",
            ));
        }
        out.extend_from_slice(&b);
    }
    Ok(Bytes::from(out))
}

/// Loads one drive: id, failed check, snapshot, journal replay with roll-forward, temp
/// cleanup, journal writer.
fn load_drive(
    d: &mut Drive,
    idx: u16,
    failed: &[FailedDrive],
    global: &mut IdMap<Entry>,
) -> io::Result<()> {
    // Each drive replays into its own map: a record of one drive never touches another's
    // entries. A key on two drives (a crash in the middle of a promotion) keeps the copy of
    // the drive loaded first; both copies are whole.
    let mut local: IdMap<Entry> = IdMap::default();
    let index = &mut local;
    if !d.root.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a directory", d.root.display()),
        ));
    }
    d.id = drive_id(&d.root)?;
    if let Some(f) = failed.iter().find(|f| f.id == d.id) {
        return Err(io::Error::other(format!(
            "listed in failed-drives.json since {} ({})",
            f.at, f.reason
        )));
    }
    for dir in [&d.objects_dir, &d.tmp_dir, &d.index_dir] {
        fs::create_dir_all(dir)?;
    }
    let mut used = 0u64;
    let mut objects = 0u64;
    // Size the map once from the snapshot's length (rehashing 10M entries costs ~1 s).
    if let Ok(m) = fs::metadata(d.index_dir.join("snapshot")) {
        index.reserve((m.len() / journal::SNAP_RECORD as u64) as usize);
    }
    journal::load_snapshot(&d.index_dir.join("snapshot"), |s| {
        let e = Entry {
            etag: s.etag,
            size: s.size,
            mtime: u32::try_from(s.mtime).unwrap_or(u32::MAX),
            drive: idx,
        };
        if index.insert(s.key, e).is_none() {
            used += s.size;
            objects += 1;
        }
    })?;
    let (records, cut) = journal::replay(&d.index_dir.join("journal"))?;
    if cut > 0 {
        tracing::warn!(drive = %d.root.display(), bytes = cut, "cut a torn journal tail");
    }
    let n = records.len() as u64;
    for rec in records {
        let h = key_hash(rec.key());
        match rec {
            Record::Put(p) => {
                let final_path = d.objects_dir.join(&p.key);
                let tmp = d.tmp_dir.join(format!("{h:032x}"));
                let present = match fs::metadata(&final_path) {
                    Ok(m) => m.len() == p.size,
                    Err(_) => {
                        // Redo: the temp was fsynced before the record was written.
                        match fs::metadata(&tmp) {
                            Ok(m) if m.len() == p.size => {
                                if let Some(parent) = final_path.parent() {
                                    create_dirs_durable(parent)?;
                                }
                                fs::rename(&tmp, &final_path)?;
                                journal::sync_dir(final_path.parent().unwrap_or(&d.objects_dir))?;
                                tracing::info!(key = %p.key, "rolled an interrupted ingest forward");
                                true
                            }
                            _ => false,
                        }
                    }
                };
                if !present {
                    tracing::warn!(key = %p.key, "journal names an object whose file is gone; dropped");
                    if let Some(old) = index.remove(&h)
                        && old.drive == idx
                    {
                        used -= old.size.min(used);
                        objects = objects.saturating_sub(1);
                    }
                    continue;
                }
                let mut etag = [0u8; 16];
                etag.copy_from_slice(&p.sha256[..16]);
                let e = Entry {
                    etag,
                    size: p.size,
                    mtime: u32::try_from(p.mtime).unwrap_or(u32::MAX),
                    drive: idx,
                };
                match index.insert(h, e) {
                    Some(old) if old.drive == idx => {
                        used = used - old.size.min(used) + p.size;
                    }
                    _ => {
                        used += p.size;
                        objects += 1;
                    }
                }
            }
            Record::Del { key } => {
                if let Some(old) = index.get(&h).copied()
                    && old.drive == idx
                {
                    index.remove(&h);
                    used -= old.size.min(used);
                    objects = objects.saturating_sub(1);
                }
                let _ = fs::remove_file(d.objects_dir.join(&key));
            }
        }
    }
    // Whatever is left in tmp/ is an ingest that never reached the journal.
    let mut stray = 0u64;
    for e in fs::read_dir(&d.tmp_dir)?.flatten() {
        if fs::remove_file(e.path()).is_ok() {
            stray += 1;
        }
    }
    if stray > 0 {
        tracing::info!(drive = %d.root.display(), files = stray, "removed stray temp files");
        journal::sync_dir(&d.tmp_dir)?;
    }
    if global.is_empty() {
        // The first drive: take its map whole instead of inserting every entry again.
        *global = local;
        local = IdMap::default();
    }
    global.reserve(local.len());
    for (h, e) in local {
        if let std::collections::hash_map::Entry::Vacant(v) = global.entry(h) {
            v.insert(e);
        } else {
            used -= e.size.min(used);
            objects = objects.saturating_sub(1);
        }
    }
    d.used.store(used, Ordering::Relaxed);
    d.objects.store(objects, Ordering::Relaxed);
    d.journal_records.store(n, Ordering::Relaxed);
    *d.journal.lock().map_err(|_| io::Error::other("poisoned"))? =
        Some(Arc::new(Journal::open(&d.index_dir.join("journal"))?));
    tracing::info!(drive = %d.root.display(), tier = %d.tier, objects, bytes = used, "drive loaded");
    Ok(())
}

impl ObjectStore for TieredStore {
    fn lookup(&self, key: &ObjectKey) -> Option<ObjectHandle> {
        let h = key_hash(key.as_str());
        let e = self.index.read().ok()?.get(&h).copied();
        if let Some(e) = e {
            return Some(self.entry_handle(h, key, e));
        }
        let obj = self.static_store.as_ref()?.lookup(key)?;
        if let Some(bytes) = self.ram_access(h, obj.meta.size, &obj.path, None, key.as_str()) {
            let mut obj = obj;
            obj.meta.tier = Tier::Ram;
            obj.data = ObjectData::Ram(bytes);
            return Some(obj);
        }
        Some(obj)
    }

    fn stats(&self) -> StoreStats {
        let (ram_objects, ram_bytes, _, _) = self.ram_status();
        let mut s = StoreStats {
            ram_objects,
            ram_bytes,
            ..StoreStats::default()
        };
        for d in &self.drives {
            s.objects += d.objects.load(Ordering::Relaxed);
            s.bytes += d.used.load(Ordering::Relaxed);
        }
        if let Some(st) = &self.static_store {
            let ss = st.stats();
            s.objects += ss.objects;
            s.bytes += ss.bytes;
        }
        s
    }
}

/// What [`TieredStore::begin_ingest`] gives back.
#[derive(Debug)]
pub enum IngestStart {
    /// Write the body into this (boxed: an `Ingest` is large, `AlreadyPresent` is empty).
    Started(Box<Ingest>),
    /// The same object is already stored: nothing to write.
    AlreadyPresent,
}

struct InflightGuard {
    store: Weak<TieredStore>,
    h: KeyHash,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if let Some(s) = self.store.upgrade()
            && let Ok(mut i) = s.inflight.lock()
        {
            i.remove(&self.h);
        }
    }
}

struct Reservation {
    store: Weak<TieredStore>,
    drive: u16,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(s) = self.store.upgrade()
            && let Some(d) = s.drives.get(self.drive as usize)
        {
            d.reserved.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// An ingest in progress: feed it the body with [`write`](Ingest::write), then
/// [`finish`](Ingest::finish). Dropped unfinished, it removes its temp file.
pub struct Ingest {
    store: Weak<TieredStore>,
    key: ObjectKey,
    h: KeyHash,
    drive: u16,
    tmp: PathBuf,
    file: Arc<std::fs::File>,
    hasher: digest::Context,
    written: u64,
    size: u64,
    expected: [u8; 32],
    mtime: u64,
    first_write: bool,
    done: bool,
    _guard: InflightGuard,
    _reservation: Reservation,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("key", &self.key)
            .field("written", &self.written)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Hashes and writes the next chunk of the body.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let Some(store) = self.store.upgrade() else {
            return Err(StorageError::BadInput("store closed".into()));
        };
        let end = self.written + data.len() as u64;
        if end > self.size {
            return Err(StorageError::BadInput(format!(
                "body longer than Content-Length ({} bytes)",
                self.size
            )));
        }
        self.hasher.update(&data);
        let write = async {
            fp::write()?;
            store
                .engine
                .write_at(self.file.clone(), self.written, data)
                .await
        };
        if let Err(e) = write.await {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                return Err(StorageError::NoSpace(format!(
                    "the drive is full ({})",
                    store.drives[self.drive as usize].root.display()
                )));
            }
            store.io_failure(self.drive, &e, "ingest write");
            return Err(StorageError::io(&self.tmp, e));
        }
        self.written = end;
        if self.first_write {
            self.first_write = false;
            fp::after_first_write().map_err(|e| StorageError::io(&self.tmp, e))?;
        }
        Ok(())
    }

    /// Checks length and SHA-256, then makes the object durable and visible.
    pub async fn finish(mut self) -> Result<IngestOutcome, StorageError> {
        let Some(store) = self.store.upgrade() else {
            return Err(StorageError::BadInput("store closed".into()));
        };
        if self.written != self.size {
            return Err(StorageError::BadInput(format!(
                "body ended after {} of {} bytes",
                self.written, self.size
            )));
        }
        store.commit(&mut self).await
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
