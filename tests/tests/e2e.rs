//! End-to-end tests of the `oca` appliance: the real binary (`target/release/oca`, built by
//! `cargo build --release --bins`) as a child process, against hyper, an h3/quinn client,
//! curl and raw sockets.
//!
//! One test binary with topic modules (ripgrep style); shared helpers live in the `oca_tests`
//! library (`tests/src/`). Every test has its own temp dir and server, so they run in
//! parallel.

mod e2e {
    mod admin;
    mod bad_input;
    mod config;
    mod connections;
    mod demo;
    mod engines;
    mod faults;
    mod h3;
    mod lifecycle;
    mod prometheus;
    mod ranges;
    mod storage;
    mod tokens;
    mod util;
}
