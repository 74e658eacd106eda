//! `steering`: sends each player to the best appliances for its address (DESIGN §5).
//!
//! What it does: keeps an in-memory registry of appliances from their heartbeats
//! ([`registry`]: per-appliance bearer tokens, stale after three missed intervals, inventory
//! by generation, draining, BGP prefixes, a "who holds what" index (rendition → bitset
//! of appliances, [`holders`]) kept incrementally from inventory deltas); ranks appliances for a client and a rendition with
//! a pure function ([`rank`]: longest-prefix match over IPv4 and IPv6 prefixes in a trie
//! ([`trie`]), rendezvous hashing inside a cluster, push-back above 90 % egress, fallback
//! clusters from the sites file, origin last); signs rendition-scoped URLs with a decision id
//! (`?d=`); counts why a player missed the best local appliance; embeds `control-plane` for
//! player tokens, the catalog and entitlements, ClearKey licenses, recommendations, view
//! events, appliance tokens and signing keys; and serves `POST /v1/playback`,
//! `GET /v1/steer`, `POST /v1/license`, `GET /v1/recommendations`, `POST /v1/events`,
//! `GET /v1/ocas`, `POST /v1/oca/heartbeat`, `/metrics`, `/healthz` and `/openapi.json`
//! ([`api`]). Start it in process with [`api::Running::start`].
//!
//! What it does not do: persist the registry (it is rebuilt from heartbeats); reload a key
//! file on SIGHUP (control-plane keys are re-read every `urls.keys-refresh`); TLS (put it
//! behind a load balancer, listed in `server.trusted-proxies`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod error;
pub mod holders;
pub mod metrics;
pub mod rank;
pub mod registry;
pub mod trie;

pub use config::Config;
pub use error::SteeringError;
