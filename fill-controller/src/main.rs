//! The `fill-controller` binary: `plan` (built), `check-config` (built), and `run`, `status`,
//! `cancel`, `daemon` (the executor's, not wired yet: they exit 69).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fill_controller::FillError;
use fill_controller::config::Config;
use fill_controller::inputs;
use fill_controller::plan::Held;

const AFTER_HELP: &str = "\
Examples:
  fill-controller check-config -c /etc/fill-controller/fill-controller.toml
  fill-controller plan --dry-run                 # what tonight's fill would do, per appliance
  fill-controller plan --dry-run --detail        # ... with one line per fill and deletion
  fill-controller plan --json | jq .totals       # machine-readable
  fill-controller plan                           # also saves it as {state-dir}/plan.json

Exit codes:
  0   ok
  64  bad usage or bad config (the message names the file and the key)
  65  bad input data (sites, appliances, inventory, catalog or forecast file)
  69  unavailable: an appliance or the origin is unreachable, or the command is not built yet
  1   anything else (e.g. the state dir is not writable)";

/// fill-controller: plans which renditions each appliance of each cluster holds from tomorrow's
/// demand forecast, and fills them from peers, the upstream cluster or the origin inside each
/// site's fill window (DESIGN §6).
#[derive(Debug, Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Cli {
    /// Config file.
    #[arg(
        short,
        long,
        global = true,
        env = "FILL_CONTROLLER_CONFIG",
        default_value = "/etc/fill-controller/fill-controller.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plan placement and print the diff per appliance: fills, deletions, bytes, ETA at the
    /// site's rate cap, and whether it fits the nightly budget and the fill window.
    Plan {
        /// Print only; do not save the plan for `run`.
        #[arg(long)]
        dry_run: bool,
        /// Print the whole report as JSON (totals, appliances, clusters, fills, deletes).
        #[arg(long)]
        json: bool,
        /// Text output: one line per fill and deletion under each appliance.
        #[arg(long)]
        detail: bool,
    },
    /// Check the config file, the sites file and the appliances file; print nothing on success.
    CheckConfig,
    /// Execute the saved plan inside each site's fill window (not wired yet: exit 69).
    Run {
        /// Start now, ignoring the fill windows.
        #[arg(long)]
        now: bool,
    },
    /// Show the progress of the current run (not wired yet: exit 69).
    Status,
    /// Stop the current run after the objects in flight (not wired yet: exit 69).
    Cancel,
    /// Plan and run every night (not wired yet: exit 69).
    Daemon,
}

fn exit_code(e: &FillError) -> u8 {
    match e {
        FillError::Config { .. } => 64,
        FillError::Input { .. } => 65,
        FillError::Appliance { .. }
        | FillError::Origin { .. }
        | FillError::OriginAuth { .. }
        | FillError::Fetch { .. } => 69,
        _ => 1,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Plan {
            dry_run,
            json,
            detail,
        } => cmd_plan(&cli.config, dry_run, json, detail),
        Command::CheckConfig => cmd_check(&cli.config),
        Command::Run { .. } | Command::Status | Command::Cancel | Command::Daemon => {
            eprintln!("fill-controller: this command is not built yet (see the README)");
            return ExitCode::from(69);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fill-controller: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Config, sites file and appliances file.
fn load_front(path: &Path) -> Result<(Config, Vec<inputs::ApplianceEntry>), FillError> {
    let cfg = Config::load(path)?;
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| FillError::Input {
            file: p.to_path_buf(),
            message: format!("cannot read: {e}"),
        })
    };
    let sites =
        oca_common::sites::Sites::parse(&read(&cfg.sites_file)?).map_err(|e| FillError::Input {
            file: cfg.sites_file.clone(),
            message: e.to_string(),
        })?;
    let file = &cfg.inputs.appliances_file;
    let apps = inputs::parse_appliances(&read(file)?, file, &sites)?;
    Ok((cfg, apps))
}

fn cmd_check(path: &Path) -> Result<(), FillError> {
    load_front(path).map(|_| ())
}

fn cmd_plan(path: &Path, dry_run: bool, json: bool, detail: bool) -> Result<(), FillError> {
    let (cfg, apps) = load_front(path)?;
    let missing: Vec<&inputs::ApplianceEntry> =
        apps.iter().filter(|a| a.inventory_file.is_none()).collect();
    let mut fetched: HashMap<String, Vec<Held>> = HashMap::new();
    if !missing.is_empty() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FillError::Io {
                what: "starting the runtime".into(),
                source: e,
            })?;
        let client = fill_controller::origin::http_client();
        rt.block_on(async {
            let timeout = cfg.limits.request_timeout;
            let all = missing.iter().map(|a| {
                let client = &client;
                async move {
                    let r = tokio::time::timeout(timeout, inputs::fetch_inventory(client, a))
                        .await
                        .unwrap_or_else(|_| {
                            Err(FillError::Appliance {
                                appliance: a.id.clone(),
                                message: format!("no inventory within {timeout:?}"),
                            })
                        });
                    (a.id.clone(), r)
                }
            });
            for (id, r) in futures_util::future::join_all(all).await {
                fetched.insert(id, r?);
            }
            Ok::<(), FillError>(())
        })?;
    }
    let loaded = inputs::load(&cfg, &fetched)?;
    let plan = fill_controller::plan::plan(&loaded.input);
    let report =
        fill_controller::report::report(&plan, &loaded.sites, &loaded.appliances, &loaded.skipped);
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| FillError::Io {
        what: "writing to stdout".into(),
        source: e,
    };
    if json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(|e| io(e.into()))?;
        writeln!(out).map_err(io)?;
    } else {
        report.write_text(&mut out, detail).map_err(io)?;
    }
    if !dry_run {
        let dir = &cfg.state_dir;
        let target = dir.join("plan.json");
        let tmp = dir.join("plan.json.tmp");
        let save = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer(&mut f, &plan)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &target)
        };
        save().map_err(|e| FillError::Io {
            what: format!("saving {}", target.display()),
            source: e,
        })?;
        if !json {
            writeln!(out, "saved {}", target.display()).map_err(io)?;
        }
    }
    Ok(())
}
