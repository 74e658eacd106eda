//! `steering`: sends each player to the best appliances for its address (DESIGN §5).
//!
//! What it does (phase 1): keeps an in-memory registry of appliances from their heartbeats
//! ([`registry`]: per-appliance bearer tokens, stale after three missed intervals, inventory
//! by generation, draining, BGP prefixes); ranks appliances for a client and a rendition with
//! a pure function ([`rank`]: longest-prefix match over IPv4 and IPv6 prefixes in a trie
//! ([`trie`]), rendezvous hashing inside a cluster, push-back above 90 % egress, fallback
//! clusters from the sites file, origin last); signs rendition-scoped URLs with a decision id
//! (`?d=`); counts why a player missed the best local appliance; and serves `GET /v1/steer`,
//! `GET /v1/ocas`, `POST /v1/oca/heartbeat`, `/metrics`, `/healthz` and `/openapi.json`
//! ([`api`]).
//!
//! What it does not do yet: `POST /v1/playback`, licenses, recommendations and events (they
//! need `control-plane`, phase 2, and answer 501); persist the registry (it is rebuilt from
//! heartbeats); reload keys on SIGHUP; TLS (put it behind a load balancer, listed in
//! `server.trusted-proxies`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod error;
pub mod metrics;
pub mod rank;
pub mod registry;
pub mod trie;

pub use config::Config;
pub use error::SteeringError;
