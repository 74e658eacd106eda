//! `fill-controller`: off-peak proactive fill (DESIGN §6). **Not built yet**: only the crate
//! and its binary's `--help` exist. See the README status table.
#![forbid(unsafe_code)]
