//! The `steering` binary. Not built yet (see the README status table).

use clap::Parser;

/// steering: hands players ranked, signed appliance URLs (longest-prefix match over the BGP
/// prefixes appliances report, then health, load and content). NOT BUILT YET: this binary
/// only answers --help and --version; see the README's status table.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("steering: not built yet (see the README's status table)");
    std::process::ExitCode::from(69)
}
