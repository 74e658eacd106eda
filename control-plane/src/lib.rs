//! `control-plane`: catalog, users and entitlements, URL signing keys, ClearKey DRM,
//! recommendation and demand forecast (DESIGN §5, §6). **Not built yet**: the crate exists so
//! the workspace has its final shape and dependency rule (the `oca` edge binary never depends
//! on it). See the README status table.
#![forbid(unsafe_code)]
