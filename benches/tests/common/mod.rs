//! Helpers the `vodsyn` CLI tests share.
#![allow(dead_code)] // each test file uses its own subset

use std::process::Command;

/// The `vodsyn` binary under test.
pub fn vodsyn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vodsyn"))
}

/// The leading number of a report cell such as `0.512 ± 0.000 (0.512), spec 0.771`.
pub fn first_number(cell: &str) -> f64 {
    let tok = cell.split_whitespace().next().unwrap_or("");
    tok.parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}

/// The cells of a Markdown table row.
pub fn cells(line: &str) -> Vec<&str> {
    line.trim_matches('|').split('|').map(str::trim).collect()
}
