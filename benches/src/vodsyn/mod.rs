//! VODSYN-v1: the synthetic video-on-demand workload of `shared/workload/VODSYN.md`, and a
//! chunk-level cache simulator over it.
//!
//! What it does:
//! - [`generate`]: the generator, exactly per the spec's "Generator" section (catalog, Zipf
//!   popularity with daily AR(1) multipliers, releases and tentpoles with the solved boost,
//!   sessions with the diurnal profile, episodes, binges, viewing rules, rungs, request times,
//!   stable sort), seeded (`rand_pcg::Pcg64Mcg`); chunk sizes from splitmix64 + Box–Muller
//!   as written, so they do not depend on the RNG.
//! - [`trace`]: libCacheSim `oracleGeneral` write and streaming read, next-access indices,
//!   and the catalog/calendar JSON.
//! - [`sim`]: LRU, S3-FIFO, Belady (MIN, forced admission) and oca's RAM-tier policy
//!   ([`oca_storage::policy::RamPolicy`]) at chunk granularity, with the peak-window byte
//!   and object hit ratios of the spec's "Metrics".
//! - [`stats`]: the spec's calibration statistics.
//! - [`fortnight`]: fill-controller's planner and executor rules placing whole renditions
//!   by control-plane's forecast for a fortnight, next to LRU, S3-FIFO and [`placed`].
//! - [`placed`]: proactive fill as the spec evaluates it (placement per serving day, misses
//!   not admitted, fill cap) for the spec's `PF-title-model` / `PF-title-oracle`, "same as
//!   yesterday" and `control-plane`'s demand forecast, plus the forecasts' WMAPE.
//!
//! What it does not do: the chunk/file PF policies and `+LRU10%`, origin-egress bins,
//! ARC/LeCaR/LRB and the other reactive policies of the spec's list, profile M within a
//! unit test.

use std::path::{Path, PathBuf};

pub mod fortnight;
pub mod generate;
pub mod placed;
pub mod profile;
pub mod sim;
pub mod stats;
pub mod trace;

#[cfg(test)]
mod tests;

pub use generate::{Catalog, Generated, Request, chunk_bytes, generate, splitmix64, vbr_z};
pub use profile::Profile;

/// The S profile of the spec (a copy of `shared/workload/profile_S.json`).
pub const PROFILE_S: &str = include_str!("../../vodsyn/profile_S.json");
/// The M profile of the spec (a copy of `shared/workload/profile_M.json`).
pub const PROFILE_M: &str = include_str!("../../vodsyn/profile_M.json");

/// A built-in profile by letter (`S`, `M`), or a profile JSON file by path.
pub fn load_profile(name: &str) -> Result<Profile, VodsynError> {
    let text = match name {
        "S" | "s" => PROFILE_S,
        "M" | "m" => PROFILE_M,
        path => return Profile::load(Path::new(path)),
    };
    let p: Profile = serde_json::from_str(text).map_err(|e| VodsynError::Json {
        path: PathBuf::from(name),
        source: e,
    })?;
    p.validate()?;
    Ok(p)
}

/// What can go wrong in the generator, the trace files or the simulator.
#[derive(Debug, thiserror::Error)]
pub enum VodsynError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A profile or catalog JSON file did not parse.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file (or built-in profile name).
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A profile value is out of range.
    #[error("bad profile: {0}")]
    BadProfile(String),
    /// A trace file is not a whole number of 24-byte oracleGeneral records.
    #[error("truncated oracleGeneral record at byte {offset}")]
    Truncated {
        /// Byte offset of the partial record.
        offset: u64,
    },
    /// A command-line value is malformed (seed range, fractions, capacity).
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// A bench's invariant check failed (e.g. a fill night over its budget).
    #[error("check failed: {0}")]
    Check(String),
}

impl VodsynError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        VodsynError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A `BuildHasher` for object ids (already well spread by [`splitmix64`]-style mixing).
pub type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;
/// A `HashMap` keyed by object id with [`IdHasher`].
pub type IdMap<V> = std::collections::HashMap<u64, V, IdBuildHasher>;

/// A fast hasher for `u64` keys: one splitmix64 finaliser.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        splitmix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).rotate_left(5) ^ self.0;
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 ^= i;
    }
}
