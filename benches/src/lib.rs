//! oca's benchmark helpers.
//!
//! - [`vodsyn`]: the VODSYN-v1 synthetic video workload (`shared/workload/VODSYN.md`) and a
//!   chunk-level cache simulator comparing LRU, S3-FIFO, Belady and oca's RAM-tier policy
//!   (the `vodsyn` binary drives it).
//!
//! The HTTP load tools live in `src/bin/` and the micro-benches in `benches/`.
#![forbid(unsafe_code)]

pub mod vodsyn;
