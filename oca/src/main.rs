//! The `oca` binary: parse arguments, load and validate config, start tracing, run, and map
//! the error to an exit code (64 for bad configuration or input).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use oca::config::{Config, LogFormat};
use oca::demo::DemoOptions;
use oca::error::OcaError;
use oca_common::ObjectKey;
use oca_common::token::ClientPrefix;

const DEFAULT_CONFIG: &str = "/etc/oca/oca.toml";

/// oca: the CDN edge appliance. Serves video objects over HTTPS (HTTP/1.1, HTTP/2) and plain
/// HTTP behind signed URLs, with an admin port for metrics, health and status.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
#[command(after_help = "Examples:
  oca demo                                  # sample title, self-signed cert, curl commands
  oca check-config -c /etc/oca/oca.toml     # validate before (re)start; exit 64 if bad
  oca serve -c /etc/oca/oca.toml            # run; SIGHUP reloads certs+keys, SIGTERM drains
  oca sign-url -c /etc/oca/oca.toml --base https://oca1.example.net title/720p/seg-00001.m4s
  oca hash-token 'my admin token'           # value for admin.token-sha256
  oca bgp-config -c /etc/oca/oca.toml -o /etc/bird/bird.conf   # BIRD 2 config from [bgp]")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance until SIGTERM/SIGINT (drain) ; SIGHUP reloads certificates and keys.
    Serve {
        /// Config file (TOML); see oca/etc/oca.toml.
        #[arg(short, long, default_value = DEFAULT_CONFIG, env = "OCA_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file, its certificate, key file and storage root; exit 64 if bad.
    CheckConfig {
        #[arg(short, long, default_value = DEFAULT_CONFIG, env = "OCA_CONFIG")]
        config: PathBuf,
    },
    /// Print a signed URL for an object key, with the config's signing keys.
    SignUrl {
        #[arg(short, long, default_value = DEFAULT_CONFIG, env = "OCA_CONFIG")]
        config: PathBuf,
        /// Object key: {title}/{rendition}/{file} or {title}/{file}.
        key: String,
        /// Key id to sign with (default: the newest kid in the key file).
        #[arg(long)]
        kid: Option<String>,
        /// How long the URL stays valid, e.g. 30m, 6h.
        #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// What the token covers: 1 = the whole title (default), 2 = one rendition.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
        scope: u8,
        /// Bind the URL to a client prefix, e.g. 203.0.113.0/24 or 2001:db8::/32.
        #[arg(long)]
        client_prefix: Option<String>,
        /// Scheme and authority of the appliance, e.g. https://oca1.example.net.
        #[arg(long, default_value = "https://localhost")]
        base: String,
    },
    /// Render the BIRD 2 configuration (one session per family to the ISP router, import
    /// filters, nothing exported) from the [bgp] section; exit 64 if it is incomplete.
    #[command(after_help = "Examples:
  oca bgp-config -c /etc/oca/oca.toml                          # print it
  oca bgp-config -c /etc/oca/oca.toml -o /etc/bird/bird.conf   # write it, then: birdc configure
  bird -p -c /etc/bird/bird.conf                               # let BIRD check it")]
    BgpConfig {
        #[arg(short, long, default_value = DEFAULT_CONFIG, env = "OCA_CONFIG")]
        config: PathBuf,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Config path named in the rendered header (default: --config as given).
        #[arg(long)]
        source: Option<PathBuf>,
    },
    /// Print the SHA-256 of an admin token, for admin.token-sha256.
    HashToken {
        /// The token (read from stdin when absent).
        token: Option<String>,
    },
    /// Write a sample title, a self-signed certificate and a config into a folder, start one
    /// appliance on loopback and print curl commands that fetch signed ranges.
    Demo {
        /// Folder for the demo's files (rewritten each run).
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
        #[arg(long, default_value_t = 8443)]
        https_port: u16,
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
        #[arg(long, default_value_t = 9443)]
        admin_port: u16,
        /// Number of 4-second segments in the sample rendition.
        #[arg(long, default_value_t = 8)]
        segments: usize,
        /// Bytes per segment (about 4 s at 4 Mbit/s by default).
        #[arg(long, default_value_t = 2 << 20)]
        segment_bytes: usize,
    },
}

fn init_tracing(format: LogFormat, level: &str) {
    // rustls warns on every client that sends an IP address as SNI (load tools, some
    // players): noise at an edge. Quiet it unless the filter says otherwise.
    let level = if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OCA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, OcaError> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all().build().map_err(|source| OcaError::Io {
        what: "starting the runtime".into(),
        source,
    })
}

fn run(cli: Cli) -> Result<(), OcaError> {
    match cli.command {
        Command::Serve { config } => {
            let cfg = Config::load(&config)?;
            init_tracing(cfg.log.format, &cfg.log.level);
            let rt = runtime(cfg.server.worker_threads)?;
            rt.block_on(oca::app::serve(cfg))
        }
        Command::CheckConfig { config } => {
            let cfg = Config::load(&config)?;
            oca::app::check(&cfg)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::SignUrl {
            config,
            key,
            kid,
            ttl,
            scope,
            client_prefix,
            base,
        } => {
            let cfg = Config::load(&config)?;
            let bad = |message: String| OcaError::Config {
                file: config.clone(),
                message,
            };
            let key = ObjectKey::parse(&key).map_err(|e| bad(format!("key {key:?}: {e}")))?;
            let cp = client_prefix
                .map(|p| {
                    ClientPrefix::parse_cidr(&p)
                        .map_err(|e| bad(format!("--client-prefix {p:?}: {e}")))
                })
                .transpose()?;
            let keys = oca::app::load_keys(&cfg.tokens.keys_file)?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let url = oca::sign::sign_url(
                &keys,
                &oca::sign::SignRequest {
                    kid: kid.as_deref(),
                    key: &key,
                    ttl,
                    n: scope,
                    client_prefix: cp,
                    base: &base,
                    now_unix: now,
                },
            )
            .map_err(bad)?;
            println!("{url}");
            Ok(())
        }
        Command::BgpConfig {
            config,
            output,
            source,
        } => {
            let cfg = Config::load(&config)?;
            let text = oca::bgp_config::render(&cfg, source.as_deref().unwrap_or(&config))
                .map_err(|message| OcaError::Config {
                    file: config.clone(),
                    message,
                })?;
            match output {
                Some(path) => std::fs::write(&path, text).map_err(|source| OcaError::Io {
                    what: format!("writing {}", path.display()),
                    source,
                }),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Command::HashToken { token } => {
            let token = match token {
                Some(t) => t,
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_line(&mut s)
                        .map_err(|source| OcaError::Io {
                            what: "reading the token from stdin".into(),
                            source,
                        })?;
                    s
                }
            };
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.trim().as_bytes());
            println!("{}", hex::encode(d));
            Ok(())
        }
        Command::Demo {
            dir,
            https_port,
            http_port,
            admin_port,
            segments,
            segment_bytes,
        } => {
            init_tracing(LogFormat::Human, "info");
            let opts = DemoOptions {
                dir,
                https_port,
                http_port,
                admin_port,
                segments: segments.clamp(1, 10_000),
                segment_bytes: segment_bytes.clamp(1, 64 << 20),
            };
            let (cfg_path, admin_token) = oca::demo::prepare(&opts)?;
            let cfg = Config::load(&cfg_path)?;
            let rt = runtime(0)?;
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let sig = |k| {
                    signal(k).map_err(|source| OcaError::Io {
                        what: "installing signal handlers".into(),
                        source,
                    })
                };
                let (mut term, mut int) =
                    (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
                let running = oca::app::Running::start(cfg.clone()).await?;
                let text = oca::demo::instructions(
                    &cfg,
                    running.https,
                    running.http,
                    running.admin,
                    &admin_token,
                )?;
                println!("{text}");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                running.drain().await;
                Ok(())
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Fault injection for tests only (built with the `failpoints` feature): reads FAILPOINTS.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oca: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
