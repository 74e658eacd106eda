//! `vodsyn`: generate VODSYN-v1 traces, check their calibration against the spec, and
//! simulate chunk caches (LRU, S3-FIFO, Belady, oca's RAM-tier policy) on them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::{Parser, Subcommand};
use oca_benches::vodsyn::sim::{HitStats, PolicyKind, SimRequest, next_u64, simulate};
use oca_benches::vodsyn::stats::{SPEC_S, calibrate, mean_sd};
use oca_benches::vodsyn::trace::{
    OracleReader, next_access, read_catalog, write_catalog, write_oracle,
};
use oca_benches::vodsyn::{Catalog, IdMap, VodsynError, generate, load_profile};

const EXAMPLES: &str = "\
Examples:
  vodsyn gen --profile S --seed 1 --out /tmp/vodsyn-s1
      writes trace.oracleGeneral.bin (24-byte libCacheSim records) and catalog.json
  vodsyn calibrate --profile S --seeds 1-5
      prints each calibration statistic: mean ± sd over the seeds, the spec's value, OK/OFF
  vodsyn sim --profile S --seeds 1-5 --fracs 2.5,5,10,20
      peak-window byte hit ratio per policy and cache size, next to the spec's rows
  vodsyn sim --trace /tmp/vodsyn-s1/trace.oracleGeneral.bin --catalog /tmp/vodsyn-s1/catalog.json
      streams a trace file (any oracleGeneral trace; without --catalog every request
      counts and --fracs are shares of the trace's unique bytes)
  vodsyn sim --trace t.bin --capacity 500G
  vodsyn forecast --profile S --seeds 1-5 --fracs 10
      demand forecast: WMAPE of control-plane's forecast vs 'same as yesterday' on held-out
      days, and the peak byte hit ratio of caches placed by each forecast (proactive fill)
  vodsyn fortnight --profile S --seeds 1-5 --fracs 10 --appliances 4
      fill-controller's planner placing whole renditions by control-plane's forecast for
      14 nights under the nightly budget: peak BHR, origin egress and fill next to LRU,
      S3-FIFO and chunk-level placement at the same capacity (--nights: every night)";

/// VODSYN-v1 workload generator and cache simulator (shared/workload/VODSYN.md).
#[derive(Debug, Parser)]
#[command(name = "vodsyn", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Generate one trace: `trace.oracleGeneral.bin` and `catalog.json` in `--out`.
    Gen {
        /// `S`, `M` (built-in copies of the spec's profiles) or a profile JSON path.
        #[arg(long, default_value = "S")]
        profile: String,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
    },
    /// Calibration statistics over seeds, compared with the spec's values.
    Calibrate {
        /// `S`, `M` or a profile JSON path.
        #[arg(long, default_value = "S")]
        profile: String,
        /// Seeds: `1-5` or `1,3,7`.
        #[arg(long, default_value = "1-5")]
        seeds: String,
        /// Worker threads (one seed each; ~1 GB of memory per thread for profile S).
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
    /// Cache simulation: generated in memory (`--profile`) or streamed from `--trace`.
    Sim {
        /// `S`, `M` or a profile JSON path (ignored with `--trace`).
        #[arg(long, default_value = "S")]
        profile: String,
        /// Seeds: `1-5` or `1,3,7`.
        #[arg(long, default_value = "1-5")]
        seeds: String,
        /// Cache sizes in percent of the day-0 catalog bytes (of unique bytes for a trace
        /// without catalog).
        #[arg(long, default_value = "2.5,5,10,20", value_delimiter = ',')]
        fracs: Vec<f64>,
        /// Policies (`lru,s3fifo,belady,oca`).
        #[arg(long, default_value = "lru,s3fifo,belady,oca", value_delimiter = ',')]
        policies: Vec<String>,
        /// An oracleGeneral trace file to stream instead of generating.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// The catalog JSON of `--trace` (peak window and catalog bytes).
        #[arg(long, requires = "trace")]
        catalog: Option<PathBuf>,
        /// Cache size in bytes for `--trace` (suffixes K, M, G, T: powers of 1000).
        #[arg(long, requires = "trace")]
        capacity: Option<String>,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
    /// Demand forecast: WMAPE on held-out days and the peak BHR of placed caches (the
    /// spec's proactive fill) for control-plane's forecast, the spec's title model and
    /// oracle, and "same as yesterday".
    Forecast {
        /// `S`, `M` or a profile JSON path.
        #[arg(long, default_value = "S")]
        profile: String,
        /// Seeds: `1-5` or `1,3,7`.
        #[arg(long, default_value = "1-5")]
        seeds: String,
        /// Cache sizes in percent of the day-0 catalog bytes.
        #[arg(long, default_value = "10", value_delimiter = ',')]
        fracs: Vec<f64>,
        /// Half-life of control-plane's recent-days weighting, days.
        #[arg(long, default_value_t = oca_benches::vodsyn::placed::bench_params().half_life_days)]
        half_life: f64,
        /// Worker threads (over the policies of one seed).
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
    /// A fortnight of the fill controller: its planner places whole renditions by
    /// control-plane's forecast each night, applied as the executor does under the nightly
    /// budget; peak BHR, origin egress and fill next to LRU and S3-FIFO at equal capacity.
    Fortnight {
        /// `S`, `M` or a profile JSON path.
        #[arg(long, default_value = "S")]
        profile: String,
        /// Seeds: `1-5` or `1,3,7`.
        #[arg(long, default_value = "1-5")]
        seeds: String,
        /// Capacities C in percent of the day-0 catalog bytes.
        #[arg(long, default_value = "10", value_delimiter = ',')]
        fracs: Vec<f64>,
        /// Adds a row with a cluster of N appliances of C/N each (1: no extra row).
        #[arg(long, default_value_t = 1)]
        appliances: u32,
        /// Share of each appliance's capacity on flash (the rest on disk).
        #[arg(long, default_value_t = 0.2)]
        flash_share: f64,
        /// The planner's max-fill (product default 0.95; a row at 1.0 is added when lower).
        #[arg(long, default_value_t = fill_controller::plan::PlanParams::default().max_fill)]
        max_fill: f64,
        /// Print every planner night (budget, filled, deleted, held, planned bytes).
        #[arg(long)]
        nights: bool,
        /// Worker threads (the placed rows and each reactive cache run in parallel).
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let r = match cli.cmd {
        Cmd::Gen { profile, seed, out } => cmd_gen(&profile, seed, out),
        Cmd::Calibrate {
            profile,
            seeds,
            jobs,
        } => cmd_calibrate(&profile, &seeds, jobs),
        Cmd::Sim {
            profile,
            seeds,
            fracs,
            policies,
            trace,
            catalog,
            capacity,
            jobs,
        } => parse_policies(&policies).and_then(|pols| match trace {
            Some(t) => cmd_sim_trace(t, catalog, capacity, &fracs, &pols, jobs),
            None => cmd_sim_profile(&profile, &seeds, &fracs, &pols, jobs),
        }),
        Cmd::Forecast {
            profile,
            seeds,
            fracs,
            half_life,
            jobs,
        } => cmd_forecast(&profile, &seeds, &fracs, half_life, jobs),
        Cmd::Fortnight {
            profile,
            seeds,
            fracs,
            appliances,
            flash_share,
            max_fill,
            nights,
            jobs,
        } => cmd_fortnight(
            &profile,
            &seeds,
            &fracs,
            appliances,
            flash_share,
            max_fill,
            nights,
            jobs,
        ),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vodsyn: {e}");
            match e {
                VodsynError::BadArgument(_)
                | VodsynError::BadProfile(_)
                | VodsynError::Json { .. } => ExitCode::from(64),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Loads `--profile`; a missing or bad profile is a usage error (exit 64).
fn profile_arg(name: &str) -> Result<oca_benches::vodsyn::Profile, VodsynError> {
    load_profile(name).map_err(|e| VodsynError::BadArgument(format!("--profile: {e}")))
}

fn parse_seeds(s: &str) -> Result<Vec<u64>, VodsynError> {
    let bad = || VodsynError::BadArgument(format!("seeds {s:?}: use 1-5 or 1,3,7"));
    let mut out = Vec::new();
    for part in s.split(',') {
        if let Some((a, b)) = part.split_once('-') {
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let b: u64 = b.trim().parse().map_err(|_| bad())?;
            if a > b || b - a > 1000 {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(part.trim().parse().map_err(|_| bad())?);
        }
    }
    Ok(out)
}

fn parse_policies(v: &[String]) -> Result<Vec<PolicyKind>, VodsynError> {
    v.iter()
        .map(|p| match p.to_ascii_lowercase().as_str() {
            "lru" => Ok(PolicyKind::Lru),
            "s3fifo" | "s3-fifo" => Ok(PolicyKind::S3Fifo),
            "belady" => Ok(PolicyKind::Belady),
            "oca" | "ours" => Ok(PolicyKind::Oca),
            other => Err(VodsynError::BadArgument(format!(
                "unknown policy {other:?} (lru, s3fifo, belady, oca)"
            ))),
        })
        .collect()
}

fn parse_bytes(s: &str) -> Result<u64, VodsynError> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1e3),
        Some('M' | 'm') => (&t[..t.len() - 1], 1e6),
        Some('G' | 'g') => (&t[..t.len() - 1], 1e9),
        Some('T' | 't') => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| VodsynError::BadArgument(format!("capacity {s:?}: bytes, e.g. 500G")))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(VodsynError::BadArgument(format!(
            "capacity {s:?} must be > 0"
        )));
    }
    Ok((v * mult) as u64)
}

fn check_fracs(fracs: &[f64]) -> Result<(), VodsynError> {
    if fracs.is_empty() || fracs.iter().any(|f| !(*f > 0.0 && *f <= 100.0)) {
        return Err(VodsynError::BadArgument(
            "--fracs are percentages in (0, 100]".into(),
        ));
    }
    Ok(())
}

fn cmd_gen(profile: &str, seed: u64, out: PathBuf) -> Result<(), VodsynError> {
    let p = profile_arg(profile)?;
    std::fs::create_dir_all(&out).map_err(|e| VodsynError::Io {
        path: out.clone(),
        source: e,
    })?;
    let t0 = Instant::now();
    let g = generate(&p, seed);
    let next = next_access(&g.requests);
    let trace = out.join("trace.oracleGeneral.bin");
    write_oracle(&trace, &g.requests, &next)?;
    write_catalog(&out.join("catalog.json"), &g.catalog)?;
    println!(
        "{}: seed {seed}: {} requests, {} sessions, {} titles, catalog {:.2} TB at day 0; \
         wrote {} and catalog.json in {:.1} s",
        p.name,
        g.requests.len(),
        g.sessions,
        g.catalog.titles.len(),
        g.catalog.catalog_bytes_day0 as f64 / 1e12,
        trace.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `f` over `items` on `jobs` threads, results in item order.
fn par_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

fn cmd_calibrate(profile: &str, seeds: &str, jobs: usize) -> Result<(), VodsynError> {
    let p = profile_arg(profile)?;
    let seeds = parse_seeds(seeds)?;
    let t0 = Instant::now();
    let cals = par_map(&seeds, jobs, |&seed| {
        let g = generate(&p, seed);
        calibrate(&g)
    });
    println!(
        "# {} calibration over seeds {:?} ({:.0} s); spec values are profile S, seed 1",
        p.name,
        seeds,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "| statistic | ours (mean ± sd) | per seed | spec | tolerance | |\n|---|---|---|---|---|---|"
    );
    for (i, def) in SPEC_S.iter().enumerate() {
        let xs: Vec<f64> = cals.iter().map(|c| c.values[i]).collect();
        let (m, sd) = mean_sd(&xs);
        let per: Vec<String> = xs.iter().map(|x| fmt_num(*x)).collect();
        println!(
            "| {} | {} ± {} | {} | {} | {} | {} |",
            def.name,
            fmt_num(m),
            fmt_num(sd),
            per.join(" "),
            fmt_num(def.spec),
            def.tol.text(),
            if def.tol.ok(m, def.spec) { "OK" } else { "OFF" }
        );
    }
    Ok(())
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// The spec's reference rows (profile S, seed 1; BHR at 2.5/5/10/20 %).
const REFERENCE: [(&str, [f64; 4]); 4] = [
    ("LRU", [0.347, 0.475, 0.616, 0.757]),
    ("S3-FIFO", [0.465, 0.573, 0.675, 0.778]),
    ("W-TinyLFU", [0.457, 0.557, 0.665, 0.772]),
    ("Belady", [0.610, 0.699, 0.804, 0.888]),
];

fn reference(kind: PolicyKind, frac: f64) -> Option<f64> {
    let name = match kind {
        PolicyKind::Lru => "LRU",
        PolicyKind::S3Fifo => "S3-FIFO",
        PolicyKind::Belady => "Belady",
        PolicyKind::Oca => "W-TinyLFU",
    };
    let col = [2.5, 5.0, 10.0, 20.0]
        .iter()
        .position(|f| (f - frac).abs() < 1e-9)?;
    REFERENCE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, row)| row[col])
}

fn cmd_sim_profile(
    profile: &str,
    seeds: &str,
    fracs: &[f64],
    pols: &[PolicyKind],
    jobs: usize,
) -> Result<(), VodsynError> {
    check_fracs(fracs)?;
    let p = profile_arg(profile)?;
    let seeds = parse_seeds(seeds)?;
    let t0 = Instant::now();
    // results[seed][policy][frac]
    let mut results: Vec<Vec<Vec<HitStats>>> = Vec::new();
    for &seed in &seeds {
        let ts = Instant::now();
        let g = generate(&p, seed);
        let next = next_access(&g.requests);
        let gen_s = ts.elapsed().as_secs_f64();
        let cat = &g.catalog;
        let reqs = &g.requests;
        let work: Vec<(PolicyKind, f64)> = pols
            .iter()
            .flat_map(|&k| fracs.iter().map(move |&f| (k, f)))
            .collect();
        let stats = par_map(&work, jobs, |&(kind, frac)| {
            let cap = (cat.catalog_bytes_day0 as f64 * frac / 100.0) as u64;
            let mut c = kind.build(cap);
            simulate(
                c.as_mut(),
                reqs.iter().zip(&next).map(|(r, &n)| SimRequest {
                    id: r.id,
                    bytes: r.bytes,
                    next: next_u64(n),
                    measured: cat.in_peak(u64::from(r.t_ms)),
                }),
            )
        });
        eprintln!(
            "seed {seed}: {} requests, generated in {gen_s:.1} s, simulated {} runs in {:.1} s",
            reqs.len(),
            work.len(),
            ts.elapsed().as_secs_f64() - gen_s
        );
        results.push(stats.chunks(fracs.len()).map(|c| c.to_vec()).collect());
    }
    println!(
        "# {}: peak-window byte hit ratio (BHR), mean ± sd over seeds {:?} ({:.0} s)",
        p.name,
        seeds,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "# spec = reference row (profile S, seed 1; oca is shown against W-TinyLFU); OK = |mean − spec| ≤ 0.03"
    );
    let head: Vec<String> = fracs.iter().map(|f| format!("{f}%")).collect();
    println!("| policy | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(fracs.len()));
    for (pi, &kind) in pols.iter().enumerate() {
        let mut cells = Vec::new();
        let mut spec_cells = Vec::new();
        for (fi, &f) in fracs.iter().enumerate() {
            let xs: Vec<f64> = results.iter().map(|r| r[pi][fi].bhr()).collect();
            let (m, sd) = mean_sd(&xs);
            match reference(kind, f) {
                Some(s) => {
                    let ok = (m - s).abs() <= 0.03;
                    cells.push(format!(
                        "{m:.3} ± {sd:.3} ({:+.3} {})",
                        m - s,
                        if ok { "OK" } else { "OFF" }
                    ));
                    spec_cells.push(format!("{s:.3}"));
                }
                None => {
                    cells.push(format!("{m:.3} ± {sd:.3}"));
                    spec_cells.push("–".into());
                }
            }
        }
        println!("| {} | {} |", kind.name(), cells.join(" | "));
        let spec_name = if kind == PolicyKind::Oca {
            "spec W-TinyLFU".to_string()
        } else {
            format!("spec {}", kind.name())
        };
        println!("| {spec_name} | {} |", spec_cells.join(" | "));
    }
    println!("\nBHR per seed (seeds {seeds:?}):");
    println!("| policy | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(fracs.len()));
    for (pi, &kind) in pols.iter().enumerate() {
        let cells: Vec<String> = (0..fracs.len())
            .map(|fi| {
                let xs: Vec<String> = results
                    .iter()
                    .map(|r| format!("{:.3}", r[pi][fi].bhr()))
                    .collect();
                xs.join(" ")
            })
            .collect();
        println!("| {} | {} |", kind.name(), cells.join(" | "));
    }
    println!("\nObject hit ratio (OHR), mean over seeds:");
    println!("| policy | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(fracs.len()));
    for (pi, &kind) in pols.iter().enumerate() {
        let cells: Vec<String> = (0..fracs.len())
            .map(|fi| {
                let xs: Vec<f64> = results.iter().map(|r| r[pi][fi].ohr()).collect();
                format!("{:.3}", mean_sd(&xs).0)
            })
            .collect();
        println!("| {} | {} |", kind.name(), cells.join(" | "));
    }
    Ok(())
}

fn cmd_sim_trace(
    trace: PathBuf,
    catalog: Option<PathBuf>,
    capacity: Option<String>,
    fracs: &[f64],
    pols: &[PolicyKind],
    jobs: usize,
) -> Result<(), VodsynError> {
    let cat: Option<Catalog> = catalog
        .as_deref()
        .map(|p| read_catalog(p).map_err(|e| VodsynError::BadArgument(format!("--catalog: {e}"))))
        .transpose()?;
    let caps: Vec<(String, u64)> = match capacity {
        Some(c) => {
            let b = parse_bytes(&c)?;
            vec![(format!("{b} B"), b)]
        }
        None => {
            check_fracs(fracs)?;
            let base = match &cat {
                Some(c) => c.catalog_bytes_day0,
                None => {
                    // One streaming pass for the unique bytes.
                    let mut seen: IdMap<()> = IdMap::default();
                    let mut bytes = 0u64;
                    for rec in OracleReader::open(&trace)? {
                        let rec = rec?;
                        if seen.insert(rec.id, ()).is_none() {
                            bytes += u64::from(rec.bytes);
                        }
                    }
                    bytes
                }
            };
            fracs
                .iter()
                .map(|f| (format!("{f}%"), (base as f64 * f / 100.0) as u64))
                .collect()
        }
    };
    let work: Vec<(PolicyKind, u64)> = pols
        .iter()
        .flat_map(|&k| caps.iter().map(move |(_, b)| (k, *b)))
        .collect();
    let t0 = Instant::now();
    let results = par_map(
        &work,
        jobs,
        |&(kind, cap)| -> Result<HitStats, VodsynError> {
            let mut c = kind.build(cap);
            let mut err = None;
            let reader = OracleReader::open(&trace)?;
            let stats = simulate(
                c.as_mut(),
                reader.map_while(|r| match r {
                    Ok(rec) => Some(SimRequest {
                        id: rec.id,
                        bytes: rec.bytes,
                        next: rec.next,
                        measured: cat.as_ref().is_none_or(|c| {
                            c.in_peak(u64::from(rec.time.saturating_sub(1)) * 1000)
                        }),
                    }),
                    Err(e) => {
                        err = Some(e);
                        None
                    }
                }),
            );
            match err {
                Some(e) => Err(e),
                None => Ok(stats),
            }
        },
    );
    let results: Vec<HitStats> = results.into_iter().collect::<Result<_, _>>()?;
    println!(
        "# {}: {} ({:.0} s); BHR / OHR",
        trace.display(),
        if cat.is_some() {
            "peak window of the evaluation days"
        } else {
            "every request"
        },
        t0.elapsed().as_secs_f64()
    );
    let head: Vec<&str> = caps.iter().map(|(n, _)| n.as_str()).collect();
    println!("| policy | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(caps.len()));
    for (pi, &kind) in pols.iter().enumerate() {
        let cells: Vec<String> = results[pi * caps.len()..(pi + 1) * caps.len()]
            .iter()
            .map(|s| format!("{:.3} / {:.3}", s.bhr(), s.ohr()))
            .collect();
        println!("| {} | {} |", kind.name(), cells.join(" | "));
    }
    Ok(())
}

fn cmd_forecast(
    profile: &str,
    seeds: &str,
    fracs: &[f64],
    half_life: f64,
    jobs: usize,
) -> Result<(), VodsynError> {
    use oca_benches::vodsyn::placed;
    check_fracs(fracs)?;
    if !(half_life.is_finite() && half_life > 0.0) {
        return Err(VodsynError::BadArgument(
            "--half-life must be > 0 days".into(),
        ));
    }
    let p = profile_arg(profile)?;
    let seeds = parse_seeds(seeds)?;
    let params = control_plane::forecast::ForecastParams {
        half_life_days: half_life,
        ..placed::bench_params()
    };
    let t0 = Instant::now();
    let mut res = Vec::new();
    for &seed in &seeds {
        let ts = Instant::now();
        let g = generate(&p, seed);
        res.push(placed::run_seed(
            &g.catalog,
            &g.requests,
            fracs,
            params.clone(),
            jobs,
        ));
        eprintln!(
            "seed {seed}: {} requests, {:.1} s",
            g.requests.len(),
            ts.elapsed().as_secs_f64()
        );
    }
    print!(
        "{}",
        placed::report(&p.name, &seeds, fracs, &res, t0.elapsed().as_secs_f64())
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn cmd_fortnight(
    profile: &str,
    seeds: &str,
    fracs: &[f64],
    appliances: u32,
    flash_share: f64,
    max_fill: f64,
    nights: bool,
    jobs: usize,
) -> Result<(), VodsynError> {
    use oca_benches::vodsyn::{fortnight, placed};
    check_fracs(fracs)?;
    if !(1..=64).contains(&appliances) {
        return Err(VodsynError::BadArgument(
            "--appliances must be 1 to 64".into(),
        ));
    }
    if !(0.0..=1.0).contains(&flash_share) {
        return Err(VodsynError::BadArgument(
            "--flash-share must be in [0, 1]".into(),
        ));
    }
    if !(max_fill > 0.0 && max_fill <= 1.0) {
        return Err(VodsynError::BadArgument(
            "--max-fill must be in (0, 1]".into(),
        ));
    }
    let p = profile_arg(profile)?;
    let seeds = parse_seeds(seeds)?;
    let opts = fortnight::Options {
        fracs: fracs.to_vec(),
        appliances,
        flash_share,
        params: fill_controller::plan::PlanParams {
            max_fill,
            ..Default::default()
        },
        forecast: placed::bench_params(),
        jobs,
    };
    let t0 = Instant::now();
    let mut res = Vec::new();
    for &seed in &seeds {
        let ts = Instant::now();
        let g = generate(&p, seed);
        let gen_s = ts.elapsed().as_secs_f64();
        res.push(fortnight::run_seed(seed, &g.catalog, &g.requests, &opts));
        eprintln!(
            "seed {seed}: {} requests, generated in {gen_s:.1} s, ran in {:.1} s",
            g.requests.len(),
            ts.elapsed().as_secs_f64() - gen_s
        );
    }
    print!(
        "{}",
        fortnight::report(&p.name, &res, &opts, t0.elapsed().as_secs_f64(), nights)
    );
    if fortnight::all_nights_ok(&res) {
        Ok(())
    } else {
        Err(VodsynError::Check(
            "a planner night went over its budget or a tier over its capacity".into(),
        ))
    }
}
