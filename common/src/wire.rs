//! JSON wire types shared by the services (DESIGN §4 "Wire types first", §5).
//!
//! Every type's doc carries a complete JSON example; the unit tests parse each example and
//! check it round-trips unchanged. Field names are snake_case. Unknown fields are ignored on
//! input (forward compatibility); later work extends these types only by optional fields
//! (`#[serde(default, skip_serializing_if = ...)]`). Lists default to empty when missing.
//! Times are Unix seconds.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::key::{KeyError, ObjectKey};

/// Why a wire value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not one of `ram`, `flash`, `disk`.
    #[error("unknown tier {0:?} (expected ram, flash or disk)")]
    UnknownTier(String),
    /// Not one of `up`, `degraded`, `draining`.
    #[error("unknown state {0:?} (expected up, degraded or draining)")]
    UnknownState(String),
    /// The title or rendition is not a valid key segment.
    #[error("invalid rendition id: {0}")]
    BadRendition(KeyError),
    /// A manifest file name is not a valid key segment, or makes the key too long.
    #[error("invalid file name {name:?}: {reason}")]
    BadFileName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: KeyError,
    },
    /// A manifest file's `sha256` is not 64 lowercase hex digits.
    #[error("sha256 of {name:?} is not 64 lowercase hex digits")]
    BadSha256 {
        /// The file whose digest is invalid.
        name: String,
    },
    /// A file name appears twice in a manifest.
    #[error("file {name:?} appears more than once")]
    DuplicateFile {
        /// The repeated name.
        name: String,
    },
    /// A manifest lists no files.
    #[error("manifest lists no files")]
    NoFiles,
    /// A manifest lists more files than its `total_files`.
    #[error("manifest lists {listed} files but total_files is {total}")]
    TooManyFiles {
        /// Files listed.
        listed: usize,
        /// The declared `total_files`.
        total: u32,
    },
    /// The file sizes add up to more than 2^64 - 1 bytes.
    #[error("file sizes overflow")]
    SizeOverflow,
}

/// True if `s` is a SHA-256 digest as written on the wire: 64 lowercase hex digits.
pub fn valid_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A storage tier (DESIGN §4 "Storage"). Also the value of the `x-oca-tier` header.
///
/// ```json
/// "flash"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Byte-bounded in-memory set of the hottest objects.
    Ram,
    /// NVMe drives.
    Flash,
    /// Hard disks.
    Disk,
}

impl Tier {
    /// All tiers, fastest first.
    pub const ALL: [Tier; 3] = [Tier::Ram, Tier::Flash, Tier::Disk];

    /// `ram`, `flash` or `disk`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Tier::Ram => "ram",
            Tier::Flash => "flash",
            Tier::Disk => "disk",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| WireError::UnknownTier(s.to_owned()))
    }
}

/// An appliance's state as reported in heartbeats and status.
///
/// ```json
/// "degraded"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcaState {
    /// Serving normally.
    Up,
    /// Serving, but with a fault (a failed drive, a lost BGP session).
    Degraded,
    /// Finishing in-flight requests; steering sends no new players.
    Draining,
}

impl OcaState {
    /// All states.
    pub const ALL: [OcaState; 3] = [OcaState::Up, OcaState::Degraded, OcaState::Draining];

    /// `up`, `degraded` or `draining`.
    pub fn as_str(&self) -> &'static str {
        match self {
            OcaState::Up => "up",
            OcaState::Degraded => "degraded",
            OcaState::Draining => "draining",
        }
    }
}

impl fmt::Display for OcaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OcaState {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OcaState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| WireError::UnknownState(s.to_owned()))
    }
}

/// A rendition, the unit of placement: `{title}/{rendition}`, both valid key segments
/// (DESIGN §2). Serialized as that string; deserializing validates it.
///
/// ```json
/// "tears-of-steel/1080p-h264"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RenditionId(String);

impl RenditionId {
    /// Builds an id from its two segments.
    pub fn new(title: &str, rendition: &str) -> Result<RenditionId, KeyError> {
        crate::key::validate_segment(title)?;
        crate::key::validate_segment(rendition)?;
        Ok(RenditionId(format!("{title}/{rendition}")))
    }

    /// Parses `title/rendition`.
    pub fn parse(s: &str) -> Result<RenditionId, KeyError> {
        let key = ObjectKey::parse(s)?;
        if key.segment_count() != 2 {
            return Err(KeyError::SegmentCount);
        }
        Ok(RenditionId(key.into_string()))
    }

    /// The rendition a three-segment key belongs to; `None` for a title-level key.
    pub fn of_key(key: &ObjectKey) -> Option<RenditionId> {
        let rendition = key.rendition()?;
        Some(RenditionId(format!("{}/{rendition}", key.title())))
    }

    /// The title segment.
    pub fn title(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(t, _)| t)
    }

    /// The rendition segment.
    pub fn rendition(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, r)| r)
    }

    /// `title/rendition`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of file `name` in this rendition.
    pub fn key(&self, name: &str) -> Result<ObjectKey, KeyError> {
        crate::key::validate_segment(name)?;
        ObjectKey::parse(&format!("{}/{name}", self.0))
    }

    /// True if `key` is a file of this rendition.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        key.segment_count() == 3
            && key
                .as_str()
                .strip_prefix(self.0.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for RenditionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RenditionId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RenditionId::parse(s)
    }
}

impl Serialize for RenditionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RenditionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        RenditionId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One file of a rendition manifest.
///
/// ```json
/// {
///   "name": "seg-00001.m4s",
///   "size": 1048576,
///   "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name: the last key segment.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
}

/// A rendition manifest, committed with `PUT /v1/renditions/{title}/{rendition}` after the
/// files are ingested (DESIGN §2). `files` are in playback order; when `files.len()` is less
/// than `total_files` the manifest places only that leading part of the rendition.
///
/// ```json
/// {
///   "title": "tears-of-steel",
///   "rendition": "1080p-h264",
///   "files": [
///     {
///       "name": "init.mp4",
///       "size": 1342,
///       "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
///     },
///     {
///       "name": "seg-00001.m4s",
///       "size": 1048576,
///       "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
///     }
///   ],
///   "total_files": 368,
///   "published": 1780000000
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionManifest {
    /// Title segment.
    pub title: String,
    /// Rendition segment.
    pub rendition: String,
    /// Files held, in playback order.
    #[serde(default)]
    pub files: Vec<ManifestFile>,
    /// Number of files in the full rendition.
    pub total_files: u32,
    /// Catalog publish time (becomes `Last-Modified`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
}

impl RenditionManifest {
    /// Checks the manifest: valid title and rendition, valid and unique file names (each
    /// making a valid key), digests of 64 lowercase hex digits, at least one file, no more
    /// than `total_files`, and sizes that add up without overflow.
    pub fn validate(&self) -> Result<(), WireError> {
        let id = self.rendition_id()?;
        if self.files.is_empty() {
            return Err(WireError::NoFiles);
        }
        if self.files.len() > self.total_files as usize {
            return Err(WireError::TooManyFiles {
                listed: self.files.len(),
                total: self.total_files,
            });
        }
        let mut seen = HashSet::with_capacity(self.files.len());
        let mut total: u64 = 0;
        for f in &self.files {
            id.key(&f.name).map_err(|reason| WireError::BadFileName {
                name: f.name.clone(),
                reason,
            })?;
            if !valid_sha256_hex(&f.sha256) {
                return Err(WireError::BadSha256 {
                    name: f.name.clone(),
                });
            }
            if !seen.insert(f.name.as_str()) {
                return Err(WireError::DuplicateFile {
                    name: f.name.clone(),
                });
            }
            total = total.checked_add(f.size).ok_or(WireError::SizeOverflow)?;
        }
        Ok(())
    }

    /// The rendition this manifest commits.
    pub fn rendition_id(&self) -> Result<RenditionId, WireError> {
        RenditionId::new(&self.title, &self.rendition).map_err(WireError::BadRendition)
    }

    /// True if only a leading part of the rendition is listed.
    pub fn is_partial(&self) -> bool {
        self.files.len() < self.total_files as usize
    }

    /// Sum of the file sizes (saturating).
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(f.size))
    }
}

/// One rendition an appliance holds.
///
/// ```json
/// {
///   "rendition": "tears-of-steel/1080p-h264",
///   "files_held": 368,
///   "total_files": 368,
///   "bytes": 385875968,
///   "tier": "flash"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The rendition.
    pub rendition: RenditionId,
    /// Leading files held (equal to `total_files` for a whole rendition).
    pub files_held: u32,
    /// Files in the full rendition.
    pub total_files: u32,
    /// Bytes held.
    pub bytes: u64,
    /// Tier the rendition is stored on.
    pub tier: Tier,
}

/// The inventory part of a heartbeat: with `full = false`, the renditions added and removed
/// since the generation steering last acknowledged; with `full = true` (sent when steering
/// asks), `added` is the whole set and `removed` is empty.
///
/// ```json
/// {
///   "generation": 42,
///   "full": false,
///   "added": [
///     {
///       "rendition": "tears-of-steel/720p-h264",
///       "files_held": 120,
///       "total_files": 368,
///       "bytes": 62914560,
///       "tier": "disk"
///     }
///   ],
///   "removed": ["sintel/480p-h264"]
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Inventory generation after these changes; increases with every change.
    pub generation: u64,
    /// True if `added` is the complete set.
    #[serde(default)]
    pub full: bool,
    /// Renditions added or changed (e.g. more files held, another tier).
    #[serde(default)]
    pub added: Vec<InventoryEntry>,
    /// Renditions no longer held.
    #[serde(default)]
    pub removed: Vec<RenditionId>,
    /// For a delta: the generation it starts from (the one steering last acknowledged).
    /// Steering applies a delta only when this equals the generation it holds, and otherwise
    /// asks for the full set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u64>,
}

/// Load of an appliance.
///
/// ```json
/// {
///   "egress_bps": 7200000000,
///   "capacity_bps": 10000000000,
///   "connections": 5120
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Current egress, bits per second.
    pub egress_bps: u64,
    /// Egress capacity, bits per second.
    pub capacity_bps: u64,
    /// Open client connections.
    pub connections: u64,
}

/// State of one storage tier.
///
/// ```json
/// {
///   "tier": "flash",
///   "capacity_bytes": 8000000000000,
///   "used_bytes": 6100000000000,
///   "drives": 4,
///   "failed_drives": 0
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStatus {
    /// The tier.
    pub tier: Tier,
    /// Capacity of the drives in service, bytes.
    pub capacity_bytes: u64,
    /// Bytes used.
    pub used_bytes: u64,
    /// Drives configured.
    pub drives: u32,
    /// Drives taken out of service after I/O errors.
    pub failed_drives: u32,
}

/// `POST /v1/oca/heartbeat` body, sent by each appliance to every steering endpoint
/// (DESIGN §4 "Heartbeat").
///
/// ```json
/// {
///   "id": "oca-isp1-01",
///   "site": "isp1-fra",
///   "cluster": "isp1-fra-a",
///   "public_urls": ["https://oca-isp1-01.example.net"],
///   "state": "up",
///   "load": {
///     "egress_bps": 7200000000,
///     "capacity_bps": 10000000000,
///     "connections": 5120
///   },
///   "tiers": [
///     {
///       "tier": "ram",
///       "capacity_bytes": 68719476736,
///       "used_bytes": 60129542144,
///       "drives": 1,
///       "failed_drives": 0
///     },
///     {
///       "tier": "flash",
///       "capacity_bytes": 8000000000000,
///       "used_bytes": 6100000000000,
///       "drives": 4,
///       "failed_drives": 1
///     }
///   ],
///   "inventory": {
///     "generation": 42,
///     "full": false,
///     "added": [
///       {
///         "rendition": "tears-of-steel/1080p-h264",
///         "files_held": 368,
///         "total_files": 368,
///         "bytes": 385875968,
///         "tier": "flash"
///       }
///     ],
///     "removed": []
///   },
///   "bgp_prefixes": ["203.0.113.0/24", "2001:db8:100::/40"],
///   "started_at": 1780000000,
///   "sent_at": 1780003600,
///   "version": "0.1.0"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Appliance id, unique across the fleet.
    pub id: String,
    /// Site (ISP location) id from the sites file.
    pub site: String,
    /// Cluster id the appliance registers into.
    pub cluster: String,
    /// Base URLs players use, e.g. `https://oca-1.example.net`.
    #[serde(default)]
    pub public_urls: Vec<String>,
    /// Appliance state.
    pub state: OcaState,
    /// Current load.
    pub load: Load,
    /// Storage tiers.
    #[serde(default)]
    pub tiers: Vec<TierStatus>,
    /// Inventory delta or full set.
    pub inventory: Inventory,
    /// Client prefixes learned over BGP, CIDR notation.
    #[serde(default)]
    pub bgp_prefixes: Vec<String>,
    /// Process start time (so steering sees restarts).
    pub started_at: u64,
    /// When this heartbeat was sent.
    pub sent_at: u64,
    /// Appliance software version.
    pub version: String,
    /// The appliance's heartbeat interval in milliseconds; steering counts an appliance
    /// stale after three of them pass without a heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

/// Steering's answer to a heartbeat: the inventory generation it now holds, or a request for
/// the full inventory, and optionally a new heartbeat interval.
///
/// ```json
/// {
///   "acked_generation": 42,
///   "want_full_inventory": false,
///   "interval_secs": 5
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Generation steering has applied; the next delta starts after it.
    pub acked_generation: u64,
    /// True if the next heartbeat must carry the full inventory.
    #[serde(default)]
    pub want_full_inventory: bool,
    /// Heartbeat interval steering asks for, if it wants a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
}

/// `GET /v1/status` on the appliance's admin port.
///
/// ```json
/// {
///   "id": "oca-isp1-01",
///   "version": "0.1.0",
///   "state": "up",
///   "ready": true,
///   "started_at": 1780000000,
///   "io_engine": "io_uring",
///   "objects": 125000,
///   "bytes": 6160000000000,
///   "connections": 5120,
///   "tiers": [
///     {
///       "tier": "disk",
///       "capacity_bytes": 64000000000000,
///       "used_bytes": 12000000000000,
///       "drives": 8,
///       "failed_drives": 0
///     }
///   ]
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Appliance id.
    pub id: String,
    /// Software version.
    pub version: String,
    /// Appliance state.
    pub state: OcaState,
    /// Readiness (as `/readyz`).
    pub ready: bool,
    /// Process start time.
    pub started_at: u64,
    /// Disk I/O engine in use: `io_uring` or `pread`.
    pub io_engine: String,
    /// Objects stored.
    pub objects: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Open client connections.
    pub connections: u64,
    /// Storage tiers.
    #[serde(default)]
    pub tiers: Vec<TierStatus>,
}

/// One appliance in steering's registry, as listed by `GET /v1/ocas`.
///
/// ```json
/// {
///   "id": "oca-isp1-01",
///   "site": "isp1-fra",
///   "cluster": "isp1-fra-a",
///   "public_urls": ["https://oca-isp1-01.example.net"],
///   "state": "draining",
///   "load": {
///     "egress_bps": 1200000000,
///     "capacity_bps": 10000000000,
///     "connections": 800
///   },
///   "tiers": [
///     {
///       "tier": "flash",
///       "capacity_bytes": 8000000000000,
///       "used_bytes": 6100000000000,
///       "drives": 4,
///       "failed_drives": 0
///     }
///   ],
///   "renditions": 5230,
///   "bgp_prefixes": ["203.0.113.0/24"],
///   "last_heartbeat": 1780003600,
///   "stale": false
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcaEntry {
    /// Appliance id.
    pub id: String,
    /// Site id.
    pub site: String,
    /// Cluster id.
    pub cluster: String,
    /// Base URLs players use.
    #[serde(default)]
    pub public_urls: Vec<String>,
    /// Last reported state.
    pub state: OcaState,
    /// Last reported load.
    pub load: Load,
    /// Last reported tiers.
    #[serde(default)]
    pub tiers: Vec<TierStatus>,
    /// Number of renditions held.
    pub renditions: u64,
    /// Client prefixes learned over BGP, CIDR notation.
    #[serde(default)]
    pub bgp_prefixes: Vec<String>,
    /// When the last heartbeat arrived.
    pub last_heartbeat: u64,
    /// True if no heartbeat came for three intervals.
    #[serde(default)]
    pub stale: bool,
}

/// One signed base URL for a rendition, in rank order.
///
/// ```json
/// {
///   "url": "https://oca-isp1-01.example.net/t/v1.1780007200.k1.1.203.0.113.0_24.hzSuvABKlV3FqTS9-yBmr7q-P4yG5SR4q1UQVZJjNAU/tears-of-steel/1080p-h264/?d=d-7f3a",
///   "oca_id": "oca-isp1-01",
///   "kind": "local"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankedUrl {
    /// Base URL; the player appends file names.
    pub url: String,
    /// Appliance serving it; absent for the origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oca_id: Option<String>,
    /// Why it was chosen: [`RankedUrl::LOCAL`], [`RankedUrl::FALLBACK`] or
    /// [`RankedUrl::ORIGIN`].
    pub kind: String,
}

impl RankedUrl {
    /// An appliance whose BGP prefixes cover the client.
    pub const LOCAL: &'static str = "local";
    /// An appliance of a configured fallback site (IXP cluster).
    pub const FALLBACK: &'static str = "fallback";
    /// The origin, last resort.
    pub const ORIGIN: &'static str = "origin";
}

/// One rendition in a playback response with its ranked URLs.
///
/// ```json
/// {
///   "rendition": "tears-of-steel/1080p-h264",
///   "codec": "avc1.640028",
///   "width": 1920,
///   "height": 1080,
///   "bitrate_kbps": 5800,
///   "urls": [
///     {
///       "url": "https://oca-isp1-01.example.net/t/v1.1780007200.k1.2.-.hzSuvABKlV3FqTS9-yBmr7q-P4yG5SR4q1UQVZJjNAU/tears-of-steel/1080p-h264/",
///       "oca_id": "oca-isp1-01",
///       "kind": "local"
///     },
///     {
///       "url": "https://origin.example.net/o/tears-of-steel/1080p-h264/",
///       "kind": "origin"
///     }
///   ]
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackRendition {
    /// The rendition.
    pub rendition: RenditionId,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Width in pixels (0 for audio).
    pub width: u32,
    /// Height in pixels (0 for audio).
    pub height: u32,
    /// Average bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Ranked base URLs, best first.
    #[serde(default)]
    pub urls: Vec<RankedUrl>,
}

/// `POST /v1/playback` answer: for each rendition the user's plan allows, ranked signed base
/// URLs; the DRM license URL; when the URLs expire.
///
/// ```json
/// {
///   "title": "tears-of-steel",
///   "decision_id": "d-7f3a",
///   "expires_at": 1780007200,
///   "license_url": "https://steering.example.net/v1/license",
///   "renditions": [
///     {
///       "rendition": "tears-of-steel/720p-h264",
///       "codec": "avc1.64001f",
///       "width": 1280,
///       "height": 720,
///       "bitrate_kbps": 3000,
///       "urls": [
///         {
///           "url": "https://oca-isp1-01.example.net/t/v1.1780007200.k1.2.-.hzSuvABKlV3FqTS9-yBmr7q-P4yG5SR4q1UQVZJjNAU/tears-of-steel/720p-h264/",
///           "oca_id": "oca-isp1-01",
///           "kind": "local"
///         }
///       ]
///     }
///   ]
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackResponse {
    /// Title id.
    pub title: String,
    /// Decision id, also embedded in each URL for accounting.
    pub decision_id: String,
    /// When the signed URLs expire.
    pub expires_at: u64,
    /// DRM license URL, if the title is protected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_url: Option<String>,
    /// Renditions the user may watch.
    #[serde(default)]
    pub renditions: Vec<PlaybackRendition>,
}

/// The JSON error body every service returns with a 4xx or 5xx status.
///
/// ```json
/// {
///   "error": "sha256_mismatch",
///   "message": "content hash does not match x-oca-sha256"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable snake_case error code.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    const SOURCE: &str = include_str!("wire.rs");

    /// The ```json block in the doc comment right above `pub struct|enum {name}`.
    fn doc_example(name: &str) -> String {
        let mut doc: Vec<&str> = Vec::new();
        for line in SOURCE.lines() {
            let t = line.trim_start();
            if let Some(d) = t.strip_prefix("///") {
                doc.push(d.strip_prefix(' ').unwrap_or(d));
                continue;
            }
            if t.starts_with("#[") {
                continue;
            }
            let item = t
                .strip_prefix("pub struct ")
                .or_else(|| t.strip_prefix("pub enum "));
            if let Some(item) = item {
                let ident: String = item
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if ident == name {
                    let start = doc
                        .iter()
                        .position(|l| *l == "```json")
                        .unwrap_or_else(|| panic!("{name}: no ```json block"));
                    let len = doc[start + 1..]
                        .iter()
                        .position(|l| *l == "```")
                        .unwrap_or_else(|| panic!("{name}: unterminated block"));
                    return doc[start + 1..start + 1 + len].join("\n");
                }
            }
            doc.clear();
        }
        panic!("{name}: not found")
    }

    /// Parses the doc example, checks it serializes back to the same JSON value (so the
    /// example has no field the type ignores and lacks none it writes), and that unknown
    /// fields are accepted.
    fn round_trip<T>(name: &str) -> T
    where
        T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
    {
        let json = doc_example(name);
        let v: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let original: serde_json::Value = serde_json::from_str(&json).unwrap();
        let back = serde_json::to_value(&v).unwrap();
        assert_eq!(back, original, "{name}");
        let again: T = serde_json::from_value(back).unwrap();
        assert_eq!(again, v, "{name}");
        if let serde_json::Value::Object(mut map) = original {
            map.insert("some_future_field".into(), serde_json::json!({"x": 1}));
            let extended: T = serde_json::from_value(serde_json::Value::Object(map))
                .unwrap_or_else(|e| panic!("{name} with an unknown field: {e}"));
            assert_eq!(extended, v, "{name}");
        }
        v
    }

    #[test]
    fn tier_example() {
        assert_eq!(round_trip::<Tier>("Tier"), Tier::Flash);
        for t in Tier::ALL {
            assert_eq!(t.as_str().parse::<Tier>(), Ok(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert_eq!(
            "SSD".parse::<Tier>(),
            Err(WireError::UnknownTier("SSD".into()))
        );
    }

    #[test]
    fn oca_state_example() {
        assert_eq!(round_trip::<OcaState>("OcaState"), OcaState::Degraded);
        for s in OcaState::ALL {
            assert_eq!(s.as_str().parse::<OcaState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("Up".parse::<OcaState>().is_err());
    }

    #[test]
    fn rendition_id_example() {
        let r = round_trip::<RenditionId>("RenditionId");
        assert_eq!(r.title(), "tears-of-steel");
        assert_eq!(r.rendition(), "1080p-h264");
        assert_eq!(r.to_string(), "tears-of-steel/1080p-h264");
        assert_eq!(RenditionId::new("tears-of-steel", "1080p-h264").unwrap(), r);
        let key = r.key("seg-1.m4s").unwrap();
        assert_eq!(key.as_str(), "tears-of-steel/1080p-h264/seg-1.m4s");
        assert_eq!(RenditionId::of_key(&key), Some(r.clone()));
        assert!(r.contains(&key));
        let other = ObjectKey::parse("tears-of-steel/1080p-h264x/a").unwrap();
        assert!(!r.contains(&other));
        let title_level = ObjectKey::parse("tears-of-steel/1080p-h264").unwrap();
        assert!(!r.contains(&title_level));
        assert_eq!(RenditionId::of_key(&title_level), None);
        assert_eq!(r.key("a/b"), Err(KeyError::BadChar));
        assert_eq!(r.key(".."), Err(KeyError::DotSegment));

        assert_eq!(RenditionId::parse("t"), Err(KeyError::SegmentCount));
        assert_eq!(RenditionId::parse("t/r/f"), Err(KeyError::SegmentCount));
        assert_eq!(RenditionId::parse("t/.."), Err(KeyError::DotSegment));
        assert_eq!(RenditionId::new("t", ""), Err(KeyError::EmptySegment));
        assert_eq!(RenditionId::new("t/x", "r"), Err(KeyError::BadChar));
        assert!(serde_json::from_str::<RenditionId>("\"t/r/f\"").is_err());
        assert!(serde_json::from_str::<RenditionId>("\"t/%2e%2e\"").is_err());
    }

    #[test]
    fn manifest_file_example() {
        let f = round_trip::<ManifestFile>("ManifestFile");
        assert_eq!(f.size, 1_048_576);
        assert!(valid_sha256_hex(&f.sha256));
    }

    #[test]
    fn rendition_manifest_example() {
        let m = round_trip::<RenditionManifest>("RenditionManifest");
        assert_eq!(m.validate(), Ok(()));
        assert!(m.is_partial());
        assert_eq!(m.total_bytes(), 1342 + 1_048_576);
        assert_eq!(
            m.rendition_id().unwrap().as_str(),
            "tears-of-steel/1080p-h264"
        );
        // `published` is optional.
        let mut v: serde_json::Value =
            serde_json::from_str(&doc_example("RenditionManifest")).unwrap();
        v.as_object_mut().unwrap().remove("published");
        let m2: RenditionManifest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(m2.published, None);
        assert_eq!(serde_json::to_value(&m2).unwrap(), v);
    }

    #[test]
    fn manifest_validation() {
        let base = round_trip::<RenditionManifest>("RenditionManifest");
        let check = |f: &dyn Fn(&mut RenditionManifest)| {
            let mut m = base.clone();
            f(&mut m);
            m.validate()
        };
        assert_eq!(
            check(&|m| m.title = "..".into()),
            Err(WireError::BadRendition(KeyError::DotSegment))
        );
        assert_eq!(
            check(&|m| m.rendition = "a/b".into()),
            Err(WireError::BadRendition(KeyError::BadChar))
        );
        assert_eq!(check(&|m| m.files.clear()), Err(WireError::NoFiles));
        assert_eq!(
            check(&|m| m.total_files = 1),
            Err(WireError::TooManyFiles {
                listed: 2,
                total: 1
            })
        );
        assert_eq!(check(&|m| m.total_files = 2), Ok(()));
        assert_eq!(
            check(&|m| m.files[1].name = "../x".into()),
            Err(WireError::BadFileName {
                name: "../x".into(),
                reason: KeyError::BadChar
            })
        );
        assert_eq!(
            check(&|m| m.files[1].name = String::new()),
            Err(WireError::BadFileName {
                name: String::new(),
                reason: KeyError::EmptySegment
            })
        );
        assert_eq!(
            check(&|m| m.files[1].sha256 = m.files[1].sha256.to_uppercase()),
            Err(WireError::BadSha256 {
                name: "seg-00001.m4s".into()
            })
        );
        assert_eq!(
            check(&|m| m.files[1].sha256.truncate(63)),
            Err(WireError::BadSha256 {
                name: "seg-00001.m4s".into()
            })
        );
        assert_eq!(
            check(&|m| m.files[1].name = "init.mp4".into()),
            Err(WireError::DuplicateFile {
                name: "init.mp4".into()
            })
        );
        assert_eq!(
            check(&|m| {
                m.files[0].size = u64::MAX;
            }),
            Err(WireError::SizeOverflow)
        );
    }

    #[test]
    fn inventory_entry_example() {
        let e = round_trip::<InventoryEntry>("InventoryEntry");
        assert_eq!(e.tier, Tier::Flash);
        assert_eq!(e.files_held, e.total_files);
    }

    #[test]
    fn inventory_example() {
        let inv = round_trip::<Inventory>("Inventory");
        assert_eq!(inv.generation, 42);
        assert!(!inv.full);
        assert_eq!(inv.removed[0].as_str(), "sintel/480p-h264");
        // Lists default to empty.
        let min: Inventory = serde_json::from_str(r#"{"generation": 1}"#).unwrap();
        assert!(min.added.is_empty() && min.removed.is_empty() && !min.full);
    }

    #[test]
    fn load_example() {
        assert_eq!(round_trip::<Load>("Load").connections, 5120);
    }

    #[test]
    fn tier_status_example() {
        assert_eq!(round_trip::<TierStatus>("TierStatus").drives, 4);
    }

    #[test]
    fn heartbeat_example() {
        let hb = round_trip::<Heartbeat>("Heartbeat");
        assert_eq!(hb.state, OcaState::Up);
        assert_eq!(hb.tiers.len(), 2);
        assert_eq!(hb.inventory.added.len(), 1);
        assert_eq!(hb.bgp_prefixes.len(), 2);
    }

    #[test]
    fn heartbeat_response_example() {
        let r = round_trip::<HeartbeatResponse>("HeartbeatResponse");
        assert_eq!(r.interval_secs, Some(5));
        let min: HeartbeatResponse = serde_json::from_str(r#"{"acked_generation": 7}"#).unwrap();
        assert!(!min.want_full_inventory);
        assert_eq!(
            serde_json::to_string(&min).unwrap(),
            r#"{"acked_generation":7,"want_full_inventory":false}"#
        );
    }

    #[test]
    fn status_example() {
        let s = round_trip::<Status>("Status");
        assert!(s.ready);
        assert_eq!(s.io_engine, "io_uring");
    }

    #[test]
    fn oca_entry_example() {
        let e = round_trip::<OcaEntry>("OcaEntry");
        assert_eq!(e.state, OcaState::Draining);
        assert!(!e.stale);
    }

    #[test]
    fn ranked_url_example() {
        let u = round_trip::<RankedUrl>("RankedUrl");
        assert_eq!(u.kind, RankedUrl::LOCAL);
        assert_eq!(u.oca_id.as_deref(), Some("oca-isp1-01"));
    }

    #[test]
    fn playback_rendition_example() {
        let r = round_trip::<PlaybackRendition>("PlaybackRendition");
        assert_eq!(r.urls.len(), 2);
        assert_eq!(r.urls[1].kind, RankedUrl::ORIGIN);
        assert_eq!(r.urls[1].oca_id, None);
    }

    #[test]
    fn playback_response_example() {
        let p = round_trip::<PlaybackResponse>("PlaybackResponse");
        assert_eq!(p.renditions.len(), 1);
        assert!(p.license_url.is_some());
    }

    #[test]
    fn error_body_example() {
        let e = round_trip::<ErrorBody>("ErrorBody");
        assert_eq!(
            e,
            ErrorBody::new(
                "sha256_mismatch",
                "content hash does not match x-oca-sha256"
            )
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for text in [
            "",
            "{",
            "null",
            "[]",
            r#"{"generation": -1}"#,
            r#"{"generation": "x"}"#,
        ] {
            assert!(serde_json::from_str::<Inventory>(text).is_err(), "{text}");
        }
        assert!(
            serde_json::from_str::<InventoryEntry>(
                r#"{"rendition":"a/b","files_held":1,"total_files":1,"bytes":1,"tier":"tape"}"#
            )
            .is_err()
        );
    }
}
