//! `oca`: the appliance daemon of an Open Connect-style CDN (DESIGN §4).
//!
//! It serves immutable video objects over HTTPS (HTTP/1.1 and HTTP/2 by ALPN, rustls) and,
//! optionally, plain HTTP/1.1 with `sendfile`, behind signed URLs checked by
//! [`oca_common::token`]. Disk reads go through `oca_storage`'s I/O engine (io_uring on a ring
//! thread, or pread), never on a runtime worker. An admin port serves metrics, health and
//! status; [`heartbeat`] reports to steering, with the client prefixes [`bgp`] reads from
//! BIRD's control socket ([`bgp_config`] renders BIRD's configuration); [`notify`] tells
//! systemd when it is ready, reloading or stopping. See the README's status table for what
//! is not built.
//!
//! Layout: [`handler`] decides every response (pure but for an in-memory index lookup);
//! [`server`] moves bytes for each protocol; [`app`] starts, reloads and drains;
//! [`http`] holds the RFC 9110 range and conditional logic as pure functions.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod bgp;
pub mod bgp_config;
pub mod body;
pub mod config;
pub mod demo;
pub mod error;
pub mod files;
pub mod handler;
pub mod heartbeat;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod sign;

pub use config::Config;
pub use error::OcaError;
