//! `steering`: the client steering API (DESIGN §5). **Not built yet**: only the crate and its
//! binary's `--help` exist, so the workspace has its final shape. See the README status table.
#![forbid(unsafe_code)]
