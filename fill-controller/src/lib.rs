//! `fill-controller`: off-peak proactive fill (DESIGN §6).
//!
//! - [`config`]: the TOML config; [`inputs`]: sites, appliances, inventories, catalog and
//!   forecast → the planner's input; [`report`]: what `plan` prints (ETA, budget).
//! - [`plan`]: pure placement — forecast + catalog + appliance capacities and inventories →
//!   per-appliance placement (copy counts, tier hints, rendezvous hashing) → fills and deletions.
//! - [`origin`]: where bytes come from — any S3-compatible store through `object_store`, or a
//!   local directory (the embedded default).
//! - [`execute`]: runs a plan inside each site's fill window under a rate cap and a nightly
//!   byte budget, streaming into each appliance's ingest API; resumable from a journal.
//!   Its pure parts: [`window`] (local fill windows, DST-safe), [`bucket`] (token bucket);
//!   its state: [`journal`] (append-only JSON lines); its [`metrics`] (`fill_*`).
//! - [`nightly`]: gather inputs, plan, save, execute — what the CLI and the demo call;
//!   [`progress`]: `run`'s progress bars on a terminal, plain lines otherwise.
#![forbid(unsafe_code)]

pub mod bucket;
pub mod config;
pub mod daemon;
pub mod error;
pub mod execute;
pub mod inputs;
pub mod journal;
pub mod metrics;
pub mod nightly;
pub mod origin;
pub mod plan;
pub mod progress;
pub mod report;
pub mod window;

pub use error::FillError;

/// Now, Unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
