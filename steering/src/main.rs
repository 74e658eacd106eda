//! The `steering` binary: parse arguments, load and validate the config, start tracing,
//! serve; exit 64 for a bad config or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steering::config::{Config, LogFormat};

const DEFAULT_CONFIG: &str = "/etc/steering/steering.toml";

/// steering: hands players ranked, signed appliance URLs (longest-prefix match over the BGP
/// prefixes appliances report in their heartbeats, then health, load and content), and keeps
/// the appliance registry.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
#[command(after_help = "Examples:
  steering check-config -c /etc/steering/steering.toml   # exit 64 if the config, sites file or keys are bad
  steering serve -c /etc/steering/steering.toml          # run until SIGTERM/SIGINT
  curl -X POST -H \"Authorization: Bearer $PLAYER_TOKEN\" -d '{\"title\":\"tears-of-steel\"}' http://127.0.0.1:8080/v1/playback
  curl 'http://127.0.0.1:8080/v1/steer?rendition=tears-of-steel/1080p-h264'
  curl http://127.0.0.1:8080/v1/ocas")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API until SIGTERM or SIGINT.
    Serve {
        /// Config file (TOML); see steering/etc/steering.toml.
        #[arg(short, long, default_value = DEFAULT_CONFIG, env = "STEERING_CONFIG")]
        config: PathBuf,
    },
    /// Check the config file, the sites file, the control plane (config, database, KEK) and
    /// the signing keys; exit 64 if bad.
    CheckConfig {
        /// Config file (TOML).
        #[arg(short, long, default_value = DEFAULT_CONFIG, env = "STEERING_CONFIG")]
        config: PathBuf,
    },
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEERING_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

fn fail(e: &steering::SteeringError) -> ExitCode {
    eprintln!("steering: {e}");
    ExitCode::from(if e.is_config() { 64 } else { 1 })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 64 } else { 0 });
        }
    };
    match cli.command {
        Command::CheckConfig { config } => {
            let r = Config::load(&config).and_then(steering::api::App::load);
            match r {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Serve { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            init_tracing(cfg.log.format, &cfg.log.level);
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if cfg.server.worker_threads > 0 {
                b.worker_threads(cfg.server.worker_threads);
            }
            let rt = match b.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("steering: starting the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(steering::api::serve(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}
