//! Index load time and resident bytes per object of the tiered store (issue: tiered storage,
//! bench a). For each size it writes one drive's snapshot of N synthetic objects, then opens
//! the store (snapshot loaded through memmap2 into the in-memory index) and prints the load
//! time and the growth of the process's resident set divided by N.
//!
//! ```text
//! cargo run --release -p oca-benches --bin oca-index-bench -- --objects 1000000,10000000
//! ```
//! Targets: ≤ 2 s and ≤ 100 B/object at 10M.

use std::time::Instant;

use clap::Parser;
use oca_common::wire::Tier;
use oca_storage::journal::{SnapEntry, key_hash, write_snapshot};
use oca_storage::{
    DriveConfig, EngineOptions, EnginePref, ObjectStore, TieredOptions, TieredStore, select_engine,
};

/// Measure the tiered store's index load time and memory per object.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Object counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    objects: Vec<u64>,
    /// Runs per size (the median is printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Scratch directory (default: a temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let tmp = tempfile::Builder::new()
        .prefix("oca-index-bench")
        .tempdir_in(cli.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let engine = select_engine(EnginePref::Pread, &EngineOptions::default())?;
    println!(
        "| objects | load time (median of {}) | resident bytes/object (first load) | snapshot |",
        cli.runs
    );
    println!("|---|---|---|---|");
    for &n in &cli.objects {
        let drive = tmp.path().join(format!("drive-{n}"));
        std::fs::create_dir_all(drive.join("index"))?;
        let entries: Vec<SnapEntry> = (0..n)
            .map(|i| SnapEntry {
                key: key_hash(&format!(
                    "title-{}/r{}/seg-{:05}.m4s",
                    i / 6000,
                    (i / 1000) % 6,
                    i % 1000
                )),
                etag: [(i % 251) as u8; 16],
                size: 1_000_000 + i % 4_000_000,
                mtime: 1_780_000_000,
            })
            .collect();
        write_snapshot(&drive.join("index/snapshot"), &entries)?;
        drop(entries);
        let snap = std::fs::metadata(drive.join("index/snapshot"))?.len();
        let mut times = Vec::new();
        let mut per_obj = Vec::new();
        for _ in 0..cli.runs {
            let mut opts = TieredOptions::new(tmp.path().join(format!("state-{n}")));
            opts.drives.push(DriveConfig {
                tier: Tier::Disk,
                path: drive.clone(),
                capacity: u64::MAX / 2,
            });
            let before = rss_bytes();
            let t0 = Instant::now();
            let store = TieredStore::open(opts, engine.clone())?;
            let dt = t0.elapsed();
            let after = rss_bytes();
            anyhow::ensure!(
                store.stats().objects == n,
                "loaded {} of {n}",
                store.stats().objects
            );
            times.push(dt.as_secs_f64());
            // Only the first run: later ones reuse memory the allocator kept.
            if per_obj.is_empty() {
                per_obj.push(after.saturating_sub(before) as f64 / n as f64);
            }
            drop(store);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {n} | {:.2} s | {:.0} B | {} MiB |",
            times[times.len() / 2],
            per_obj[0],
            snap >> 20
        );
        std::fs::remove_dir_all(&drive)?;
    }
    Ok(())
}
