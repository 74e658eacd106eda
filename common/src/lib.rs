//! Formats that two or more oca services must agree on (DESIGN §2–§5).
//!
//! What this crate does:
//! - [`key`]: validates object keys (`{title}/{rendition}/{file}` or `{title}/{file}`) and maps
//!   them to content types;
//! - [`token`]: signs and verifies the path-segment URL tokens
//!   `v1.{exp}.{kid}.{n}.{cp}.{sig}`, parses signing-key files and client prefixes;
//! - [`sites`]: the sites file (sites, clusters, fill windows, fallback order), validated;
//! - [`units`]: parses and prints human byte sizes for configuration files;
//! - [`wire`]: the JSON types exchanged between the appliance, steering, the fill controller
//!   and players (rendition manifest, heartbeat, inventory, status, registry, playback).
//!
//! What it does not do: any I/O (no files, sockets, clocks or environment; callers pass the
//! current time and the text to parse), logging, HTTP handling or key storage. Every function
//! is pure and returns an error instead of panicking on bad input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod key;
pub mod rendezvous;
pub mod sites;
pub mod token;
pub mod units;
pub mod wire;

pub use key::ObjectKey;
