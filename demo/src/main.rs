//! `oca-demo`: the README's main command. In one process, on loopback, it runs the whole
//! product on a sample title: an origin directory (the embedded origin), a control-plane
//! database (catalog, users, plans, signing keys), steering, two appliances that heartbeat to
//! it (one in the ISP's cluster, one at the IXP it falls back to), and a fill from the origin
//! into the appliances. Then it plays the player's part (playback request → ranked signed URLs
//! → a segment fetched and checked byte for byte) and prints `curl` commands to try by hand.
#![forbid(unsafe_code)]

mod prepare;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Everything that can stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file could not be written or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Setting something up failed.
    #[error("{0}")]
    Setup(String),
    /// The control plane refused something.
    #[error("control plane: {0}")]
    ControlPlane(#[from] control_plane::Error),
    /// An appliance failed.
    #[error("appliance: {0}")]
    Appliance(#[from] oca::error::OcaError),
    /// Steering failed.
    #[error("steering: {0}")]
    Steering(#[from] steering::error::SteeringError),
    /// The fill failed.
    #[error("fill: {0}")]
    Fill(#[from] fill_controller::FillError),
    /// The player's part did not work out.
    #[error("player: {0}")]
    Player(String),
}

/// oca-demo: the whole CDN on loopback: an origin directory, a control plane, steering, two
/// appliances and an overnight-style fill, then a player that asks steering where to go and
/// fetches a segment. Needs nothing but this repository.
///
/// Examples:
///   cargo run --release -p oca-demo                 # run it, print curl commands, Ctrl-C stops
///   cargo run --release -p oca-demo -- --once       # run the player's part once and exit
///   cargo run --release -p oca-demo -- --dir /tmp/d # put the demo's files elsewhere
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Folder for the demo's files (replaced on each run).
    #[arg(long, default_value = "demo-data")]
    dir: PathBuf,
    /// Exit after the player's part succeeded (exit 0) or failed (exit 1), instead of serving
    /// until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Log filter (tracing syntax), e.g. "info" or "oca=debug,info".
    #[arg(long, default_value = "warn")]
    log: String,
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oca-demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run::run(&cli.dir, cli.once)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oca-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
