//! oca's storage engine (DESIGN §4 "Runtime", "Zero-copy", "Storage").
//!
//! What it does:
//! - **I/O engines** ([`engine`]): an [`IoEngine`] trait for opening files and positioned
//!   reads into pooled, 4096-aligned buffers ([`pool`]), with an io_uring implementation on
//!   dedicated ring threads and a portable `pread` one on tokio's blocking pool;
//!   [`select_engine`] picks one at start and falls back (with a warning) when io_uring is
//!   refused by the kernel or a seccomp filter. Neither ever blocks a runtime worker.
//! - **RAM tier memory** ([`ram`]): objects copied into `mlock`ed anonymous maps and served
//!   as `Bytes` slices without copies.
//! - **Object stores**: the [`ObjectStore`] trait (in-memory lookups, no I/O) and the
//!   foundation's [`DirStore`], one directory of object files indexed at start, with ETags
//!   cached in `root/.oca/etags.json` and a byte-bounded RAM tier.
//!
//! - **Tiered store** ([`tiered`]): flash and disk drives with per-drive journals and
//!   snapshots ([`journal`]), crash-safe ingest streamed through the engine, rendition
//!   manifests and the inventory with generations, drive failure handling, a RAM tier with
//!   TinyLFU admission ([`policy`]) and promotion from disk to flash.
//!
//! What it does not do (yet): `O_DIRECT`, splice/sendfile, HTTP. Nothing here parses requests
//! or knows about tokens.
//!
//! `unsafe` is confined to the io_uring engine (`engine::uring`): building SQEs that point
//! into buffers the ring thread owns, and adopting descriptors returned by `OPENAT`.

use std::path::PathBuf;
use std::time::SystemTime;

use oca_common::ObjectKey;
use oca_common::wire::Tier;

pub mod dir;
pub mod engine;
pub mod error;
pub mod journal;
pub mod policy;
pub mod pool;
pub mod ram;
pub mod tiered;

pub use dir::{DirStore, DirStoreOptions};
pub use engine::{
    EngineKind, EngineOptions, EnginePref, IoEngine, IoFuture, select_engine, uring_available,
};
pub use error::StorageError;
pub use pool::{BufferPool, PoolStats};
pub use ram::LockedRegion;
pub use tiered::{
    DriveConfig, DriveStatus, FailedDrive, Ingest, IngestOutcome, IngestStart, TieredOptions,
    TieredStore,
};

/// What the server needs to answer for an object without touching its bytes.
#[derive(Clone, Debug)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// Strong ETag: 32 lowercase hex digits, the first 16 bytes of the SHA-256 (unquoted).
    pub etag: String,
    /// `Last-Modified` (publish time if known, else the file's mtime).
    pub last_modified: SystemTime,
    /// Tier the bytes are served from.
    pub tier: Tier,
}

/// Where an object's bytes are.
#[derive(Clone, Debug)]
pub enum ObjectData {
    /// In (locked) memory: serve these bytes.
    Ram(bytes::Bytes),
    /// In a file: read it through an [`IoEngine`] (absolute path).
    File(PathBuf),
}

/// An indexed object: metadata and where to read it.
#[derive(Clone, Debug)]
pub struct ObjectHandle {
    /// Size, ETag, time, tier.
    pub meta: ObjectMeta,
    /// The bytes or their file.
    pub data: ObjectData,
    /// The object's file. RAM-tier objects have one too (the RAM copy caches it), so a
    /// front end that sends files with `sendfile` can use it for every object.
    pub path: PathBuf,
    /// The drive of a [`TieredStore`] the file is on (to report read errors against it);
    /// `None` for other stores.
    pub drive: Option<u16>,
}

/// Counters of a store, for status and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    /// Objects indexed.
    pub objects: u64,
    /// Total bytes of the objects indexed.
    pub bytes: u64,
    /// Objects in the RAM tier.
    pub ram_objects: u64,
    /// Bytes in the RAM tier.
    pub ram_bytes: u64,
    /// Whether the RAM tier's memory is locked (false when `mlock` was refused or no RAM tier).
    pub ram_locked: bool,
}

/// A set of objects the server can look up.
pub trait ObjectStore: Send + Sync + std::fmt::Debug + 'static {
    /// In-memory index lookup only: no I/O, cheap, callable on a runtime worker.
    fn lookup(&self, key: &ObjectKey) -> Option<ObjectHandle>;

    /// Current counters.
    fn stats(&self) -> StoreStats;
}
