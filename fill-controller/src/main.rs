//! The `fill-controller` binary. Not built yet (see the README status table).

use clap::Parser;

/// fill-controller: predicts demand, plans which renditions each appliance holds and fills
/// them from an S3-compatible origin inside each site's fill window. NOT BUILT YET: this
/// binary only answers --help and --version; see the README's status table.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("fill-controller: not built yet (see the README's status table)");
    std::process::ExitCode::from(69)
}
