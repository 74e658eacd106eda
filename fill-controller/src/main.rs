//! The `fill-controller` binary: `plan`, `run`, `status`, `cancel`, `daemon`, `check-config`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fill_controller::FillError;
use fill_controller::config::Config;
use fill_controller::inputs;
use fill_controller::progress::Display;

const AFTER_HELP: &str = "\
Examples:
  fill-controller check-config -c /etc/fill-controller/fill-controller.toml
  fill-controller plan --dry-run                 # what tonight's fill would do, per appliance
  fill-controller plan --dry-run --detail        # ... with one line per fill and deletion
  fill-controller plan --json | jq .totals       # machine-readable
  fill-controller plan                           # also saves it as {state-dir}/plan.json
  fill-controller run                            # execute the saved plan in the fill windows
  fill-controller run --now                      # ... starting now, ignoring the windows
  fill-controller run --now 2>run.log            # progress as plain lines (bars on a terminal)
  fill-controller status                         # progress of the saved plan (from the journal)
  fill-controller cancel                         # stop a running `run` after objects in flight
  fill-controller daemon                         # plan and run every night (systemd service)

Exit codes:
  0   ok
  64  bad usage or bad config (the message names the file and the key)
  65  bad input data (sites, appliances, inventory, catalog or forecast file)
  69  unavailable: an appliance or the origin is unreachable, or refuses the credentials
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
    /// Check the config file, the sites file, the appliances file and the peers' signing key
    /// file; print nothing on success.
    CheckConfig,
    /// Execute the saved plan (from `plan`) inside each site's fill window, resuming its
    /// journal after a crash; prints what each appliance got. Exit 1 if any rendition failed.
    Run {
        /// Start now, ignoring the fill windows.
        #[arg(long)]
        now: bool,
    },
    /// Show the progress of the saved plan: files, renditions and bytes done per appliance.
    Status,
    /// Ask the running `run` (or `daemon`) to stop after the objects in flight.
    Cancel,
    /// Plan and run every night at the first window opening; serves /metrics.
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
        Command::Run { now } => match cmd_run(&cli.config, now) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Status => cmd_status(&cli.config),
        Command::Cancel => cmd_cancel(&cli.config),
        Command::Daemon => cmd_daemon(&cli.config),
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
    let sites = fill_controller::nightly::load_sites(&cfg)?;
    let file = &cfg.inputs.appliances_file;
    let text = std::fs::read_to_string(file).map_err(|e| FillError::Input {
        file: file.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let apps = inputs::parse_appliances(&text, file, &sites)?;
    Ok((cfg, apps))
}

fn cmd_check(path: &Path) -> Result<(), FillError> {
    let (cfg, _) = load_front(path)?;
    cfg.peers.signing_key().map(|_| ())
}

fn cmd_plan(path: &Path, dry_run: bool, json: bool, detail: bool) -> Result<(), FillError> {
    let cfg = Config::load(path)?;
    let loaded = runtime()?.block_on(fill_controller::nightly::gather(&cfg))?;
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
        let saved = fill_controller::nightly::SavedPlan::new(plan, fill_controller::now_unix());
        let save = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer(&mut f, &saved)?;
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

fn runtime() -> Result<tokio::runtime::Runtime, FillError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| FillError::Io {
            what: "starting the runtime".into(),
            source: e,
        })
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FILL_CONTROLLER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Log lines to stderr through the progress display, so they do not tear its bars.
#[derive(Clone)]
struct LogWriter(Display);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_stderr(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs_with(display: &Display) {
    let display = display.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FILL_CONTROLLER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(matches!(display, Display::Bars(_)))
        .with_writer(move || LogWriter(display.clone()))
        .try_init();
}

/// `run`: the saved plan, now or in the windows. Ok(false) when a rendition failed.
fn cmd_run(path: &Path, now: bool) -> Result<bool, FillError> {
    let display = Display::detect();
    init_logs_with(&display);
    let cfg = Config::load(path)?;
    let saved = fill_controller::nightly::load_saved(&cfg)?;
    let rt = runtime()?;
    let report = rt.block_on(async {
        let loaded = fill_controller::nightly::gather(&cfg).await?;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = fill_controller::metrics::Metrics::register(&mut registry);
        let progress = fill_controller::execute::Progress::default();
        let progress_final = progress.clone();
        let shown = tokio::spawn(fill_controller::progress::show(
            progress.clone(),
            display.clone(),
        ));
        let r =
            fill_controller::nightly::execute_with(&cfg, &loaded, &saved, now, metrics, progress)
                .await;
        shown.abort();
        let _ = shown.await;
        fill_controller::progress::finish(&progress_final, &display);
        r
    })?;
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    for (id, r) in &report {
        let _ = writeln!(
            out,
            "{id}: {} rendition(s) filled, {} deleted, {} failed, {} bytes; stopped: {:?}",
            r.filled.len(),
            r.deleted.len(),
            r.failed.len(),
            r.bytes,
            r.stop
        );
        for (rendition, why) in &r.failed {
            ok = false;
            let _ = writeln!(out, "  failed {rendition}: {why}");
        }
    }
    Ok(ok)
}

/// `status`: what the journal says about the saved plan.
fn cmd_status(path: &Path) -> Result<(), FillError> {
    let cfg = Config::load(path)?;
    let saved = fill_controller::nightly::load_saved(&cfg)?;
    let state = fill_controller::journal::Journal::read_state(&cfg.state_dir, &saved.id)?;
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| FillError::Io {
        what: "writing to stdout".into(),
        source: e,
    };
    let running = std::fs::read(fill_controller::nightly::run_marker(&cfg))
        .ok()
        .and_then(|b| serde_json::from_slice::<fill_controller::nightly::RunMarker>(&b).ok());
    writeln!(
        out,
        "plan {} (made {}): {}",
        saved.id,
        saved.made_at,
        match &running {
            Some(m) if m.plan == saved.id => format!("running (pid {})", m.pid),
            Some(m) => format!("another plan ({}) is running (pid {})", m.plan, m.pid),
            None => "not running".to_string(),
        }
    )
    .map_err(io)?;
    let mut per: std::collections::BTreeMap<&str, (usize, usize, u64, usize, usize)> =
        Default::default();
    for f in &saved.plan.fills {
        let e = per.entry(f.appliance.as_str()).or_default();
        e.0 += 1;
        e.2 += f.bytes;
        if state
            .fills
            .contains(&(f.appliance.clone(), f.rendition.to_string()))
        {
            e.1 += 1;
        }
    }
    for d in &saved.plan.deletes {
        let e = per.entry(d.appliance.as_str()).or_default();
        e.3 += 1;
        if state
            .deletes
            .contains(&(d.appliance.clone(), d.rendition.to_string()))
        {
            e.4 += 1;
        }
    }
    for (id, (fills, done, bytes, deletes, deleted)) in per {
        writeln!(
            out,
            "  {id}: fills {done}/{fills} ({bytes} bytes planned), deletions {deleted}/{deletes}"
        )
        .map_err(io)?;
    }
    Ok(())
}

/// `cancel`: leaves the cancel file the running `run` polls for.
fn cmd_cancel(path: &Path) -> Result<(), FillError> {
    let cfg = Config::load(path)?;
    let marker = fill_controller::nightly::run_marker(&cfg);
    if !marker.exists() {
        eprintln!(
            "fill-controller: no run is in progress ({} is absent)",
            marker.display()
        );
        return Err(FillError::Input {
            file: marker,
            message: "no run in progress".into(),
        });
    }
    fill_controller::nightly::write_atomic(
        &fill_controller::nightly::cancel_path(&cfg),
        b"cancel\n",
    )?;
    println!("asked the running fill to stop after the objects in flight");
    Ok(())
}

/// `daemon`: until SIGTERM.
fn cmd_daemon(path: &Path) -> Result<(), FillError> {
    init_logs();
    let cfg = Config::load(path)?;
    runtime()?.block_on(fill_controller::daemon::run(cfg))
}
