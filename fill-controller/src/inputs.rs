//! Loading the planner's inputs: the sites file, the static appliances file with each
//! appliance's inventory, control-plane's catalog and a JSON forecast, turned into a
//! [`PlanInput`]. The parsers and [`build_input`] are pure (text in, values out) and tested
//! with fixed inputs; [`load`] reads the files, and [`fetch_inventory`] asks an appliance's
//! admin port (`GET /v1/inventory`) for one without an `inventory-file`.
//!
//! The appliances file (TOML, kebab-case):
//! ```toml
//! [[appliance]]
//! id = "oca-isp1-01"
//! cluster = "isp1-fra-a"
//! admin-url = "http://10.0.0.11:9443"
//! admin-token-file = "tokens/oca-isp1-01"   # relative to this file
//! flash = "8TB"                              # capacity of the drives in service
//! disk = "100TB"
//! state = "up"                               # up | degraded | draining | stale
//! inventory-file = "inv/oca-isp1-01.json"    # optional: GET /v1/inventory output
//! plain-url = "http://10.0.0.11:80"          # optional: its plain HTTP port, for peer fills
//! ```
//! `plain-url` is the URL of the appliance's plain HTTP/1.1 port (the appliance's
//! `[server] http-listen`): with it, other appliances of its cluster (and of the clusters
//! below) fill from it instead of the origin; without it, it is never used as a source.
//! Draining and stale appliances get no new copies (see [`crate::plan`]).
//!
//! Demand: each forecast row `{"rendition", "region", "views"}` adds `views × rendition
//! bytes` (a view is counted as watching the whole rendition) to every cluster serving the
//! region (config `[regions]`, else the cluster's site id). Rows for renditions not in the
//! catalog are skipped and counted. What this module does not do: read steering's
//! `/v1/ocas` (it carries no inventory and no admin endpoint) or the control-plane database.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use control_plane::forecast::Forecast;
use oca_common::sites::Sites;
use oca_common::wire::{Inventory, RenditionId};
use serde::Deserialize;

use crate::config::Config;
use crate::error::FillError;
use crate::plan::{ApplianceInput, ClusterInput, Held, PlanInput, PlanParams, RenditionInput};

/// State of an appliance as the operator (or a heartbeat) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplianceState {
    /// Serving normally.
    #[default]
    Up,
    /// Serving with a fault: still gets fills.
    Degraded,
    /// Being emptied or retired: no new copies.
    Draining,
    /// Not heard from: no new copies.
    Stale,
}

/// One `[[appliance]]` of the appliances file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApplianceEntry {
    /// Appliance id (as in its heartbeats).
    pub id: String,
    /// Its cluster (a cluster of the sites file).
    pub cluster: String,
    /// Base URL of its admin port, `http://host:port`.
    pub admin_url: String,
    /// File holding its admin bearer token.
    #[serde(default)]
    pub admin_token_file: PathBuf,
    /// Flash capacity, bytes (`"8TB"`).
    #[serde(default, with = "oca_common::units::bytes")]
    pub flash: u64,
    /// Disk capacity, bytes.
    #[serde(default, with = "oca_common::units::bytes")]
    pub disk: u64,
    /// State.
    #[serde(default)]
    pub state: ApplianceState,
    /// Its inventory as `GET /v1/inventory` returns it; fetched from `admin-url` if absent.
    #[serde(default)]
    pub inventory_file: Option<PathBuf>,
    /// Base URL of its plain HTTP port (`http://host:port`), read by peers that fill from it
    /// with URLs signed by `[peers]`' key; absent: it is not used as a source.
    #[serde(default)]
    pub plain_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppliancesFile {
    #[serde(default, rename = "appliance")]
    appliances: Vec<ApplianceEntry>,
}

fn input_err(file: &Path, message: impl Into<String>) -> FillError {
    FillError::Input {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses and checks the appliances file: unique valid ids, known clusters, http(s) admin
/// URLs, at least one tier with capacity. Relative paths are resolved against `file`'s folder.
pub fn parse_appliances(
    text: &str,
    file: &Path,
    sites: &Sites,
) -> Result<Vec<ApplianceEntry>, FillError> {
    let parsed: AppliancesFile =
        toml::from_str(text).map_err(|e| input_err(file, e.to_string().trim_end()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(parsed.appliances.len());
    for mut a in parsed.appliances {
        let at = |m: String| input_err(file, format!("appliance {:?}: {m}", a.id));
        if !valid_id(&a.id) {
            return Err(at("id must be 1-64 characters of [A-Za-z0-9._-]".into()));
        }
        if !seen.insert(a.id.clone()) {
            return Err(at("id is used twice".into()));
        }
        if sites.cluster(&a.cluster).is_none() {
            return Err(at(format!(
                "cluster: unknown cluster {:?} (not in the sites file)",
                a.cluster
            )));
        }
        if !(a.admin_url.starts_with("http://") || a.admin_url.starts_with("https://")) {
            return Err(at("admin-url: must be an http(s) URL".into()));
        }
        if a.plain_url
            .as_ref()
            .is_some_and(|u| !u.starts_with("http://"))
        {
            return Err(at(
                "plain-url: must be an http:// URL (the appliance's plain HTTP port)".into(),
            ));
        }
        if a.flash == 0 && a.disk == 0 {
            return Err(at("flash, disk: at least one must be more than 0".into()));
        }
        for p in [Some(&mut a.admin_token_file), a.inventory_file.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
        out.push(a);
    }
    Ok(out)
}

/// An inventory (the JSON of `GET /v1/inventory`, a full set) as held renditions.
pub fn parse_inventory(text: &str, file: &Path) -> Result<Vec<Held>, FillError> {
    let inv: Inventory = serde_json::from_str(text)
        .map_err(|e| input_err(file, format!("not an inventory: {e}")))?;
    Ok(held_of(&inv))
}

/// The held renditions of a full inventory (entries with no file held are skipped).
pub fn held_of(inv: &Inventory) -> Vec<Held> {
    inv.added
        .iter()
        .filter(|e| e.files_held > 0)
        .map(|e| Held {
            rendition: e.rendition.clone(),
            bytes: e.bytes,
            tier: e.tier,
        })
        .collect()
}

/// Renditions of control-plane's catalog TOML with their total bytes.
pub fn parse_catalog(text: &str, file: &Path) -> Result<Vec<(RenditionId, u64)>, FillError> {
    let titles = control_plane::catalog::parse_catalog_toml(text)
        .map_err(|e| input_err(file, e.to_string()))?;
    let mut out = Vec::new();
    for t in &titles {
        for r in &t.renditions {
            let id = control_plane::catalog::rendition_id(t, r)
                .map_err(|e| input_err(file, e.to_string()))?;
            let bytes = r
                .files
                .iter()
                .fold(0u64, |acc, f| acc.saturating_add(f.size));
            out.push((id, bytes));
        }
    }
    Ok(out)
}

/// A forecast file: a JSON array of `{"rendition", "region", "views"}`; views must be finite
/// and not negative.
pub fn parse_forecast(text: &str, file: &Path) -> Result<Vec<Forecast>, FillError> {
    let rows: Vec<Forecast> =
        serde_json::from_str(text).map_err(|e| input_err(file, format!("not a forecast: {e}")))?;
    if let Some((i, r)) = rows
        .iter()
        .enumerate()
        .find(|(_, r)| !r.views.is_finite() || r.views < 0.0)
    {
        return Err(input_err(
            file,
            format!("row {i} ({}): views must be a number >= 0", r.rendition),
        ));
    }
    Ok(rows)
}

/// What [`build_input`] skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Forecast rows for renditions not in the catalog.
    pub unknown_renditions: u64,
    /// Forecast rows for regions no cluster serves.
    pub unmapped_regions: u64,
}

/// Joins catalog, forecast, clusters and appliances into the planner's input (pure).
pub fn build_input(
    cfg: &Config,
    sites: &Sites,
    catalog: &[(RenditionId, u64)],
    forecast: &[Forecast],
    appliances: &[(ApplianceEntry, Vec<Held>)],
    params: PlanParams,
) -> (PlanInput, Skipped) {
    // Region -> clusters.
    let mut serving: HashMap<&str, Vec<&str>> = HashMap::new();
    for c in &sites.clusters {
        for r in cfg.regions_of(&c.id, &c.site) {
            serving.entry(r).or_default().push(&c.id);
        }
    }
    let bytes: HashMap<&RenditionId, u64> = catalog.iter().map(|(r, b)| (r, *b)).collect();
    let mut demand: HashMap<&RenditionId, BTreeMap<String, f64>> = HashMap::new();
    let mut skipped = Skipped::default();
    for row in forecast {
        let Some(&b) = bytes.get(&row.rendition) else {
            skipped.unknown_renditions += 1;
            continue;
        };
        let Some(clusters) = serving.get(row.region.as_str()) else {
            skipped.unmapped_regions += 1;
            continue;
        };
        let d = demand.entry(&row.rendition).or_default();
        for c in clusters {
            *d.entry((*c).to_owned()).or_default() += row.views * b as f64;
        }
    }
    let renditions = catalog
        .iter()
        .map(|(id, b)| RenditionInput {
            id: id.clone(),
            bytes: *b,
            demand: demand.remove(id).unwrap_or_default(),
        })
        .collect();
    let clusters = sites
        .clusters
        .iter()
        .map(|c| ClusterInput {
            id: c.id.clone(),
            upstream: c.upstream.clone(),
        })
        .collect();
    let appliances = appliances
        .iter()
        .map(|(a, held)| ApplianceInput {
            id: a.id.clone(),
            cluster: a.cluster.clone(),
            flash_bytes: a.flash,
            disk_bytes: a.disk,
            accepts_new: matches!(a.state, ApplianceState::Up | ApplianceState::Degraded),
            held: held.clone(),
        })
        .collect();
    (
        PlanInput {
            clusters,
            appliances,
            renditions,
            params,
        },
        skipped,
    )
}

/// Everything [`load`] read.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The sites file.
    pub sites: Sites,
    /// The appliances file.
    pub appliances: Vec<ApplianceEntry>,
    /// The planner's input.
    pub input: PlanInput,
    /// What was skipped.
    pub skipped: Skipped,
}

fn read(path: &Path) -> Result<String, FillError> {
    std::fs::read_to_string(path).map_err(|e| input_err(path, format!("cannot read: {e}")))
}

/// Reads every input the config names; inventories come from `inventory-file`, else from
/// `inventories` (fetched by the caller with [`fetch_inventory`]), keyed by appliance id.
pub fn load(cfg: &Config, inventories: &HashMap<String, Vec<Held>>) -> Result<Loaded, FillError> {
    let sites_text = read(&cfg.sites_file)?;
    let sites = Sites::parse(&sites_text).map_err(|e| input_err(&cfg.sites_file, e.to_string()))?;
    let file = &cfg.inputs.appliances_file;
    let appliances = parse_appliances(&read(file)?, file, &sites)?;
    let mut with_held = Vec::with_capacity(appliances.len());
    for a in &appliances {
        let held = match (&a.inventory_file, inventories.get(&a.id)) {
            (Some(p), _) => parse_inventory(&read(p)?, p)?,
            (None, Some(h)) => h.clone(),
            (None, None) => {
                return Err(input_err(
                    file,
                    format!(
                        "appliance {:?}: no inventory (no inventory-file, not fetched)",
                        a.id
                    ),
                ));
            }
        };
        with_held.push((a.clone(), held));
    }
    let catalog = parse_catalog(&read(&cfg.inputs.catalog_file)?, &cfg.inputs.catalog_file)?;
    let forecast = parse_forecast(&read(&cfg.inputs.forecast_file)?, &cfg.inputs.forecast_file)?;
    let (input, skipped) = build_input(
        cfg,
        &sites,
        &catalog,
        &forecast,
        &with_held,
        cfg.plan.params(),
    );
    Ok(Loaded {
        sites,
        appliances,
        input,
        skipped,
    })
}

/// Asks an appliance's admin port for its full inventory (`GET /v1/inventory?since=0` with
/// its bearer token). Errors are [`FillError::Appliance`] (unreachable: CLI exit 69).
pub async fn fetch_inventory(
    client: &crate::origin::HttpClient,
    a: &ApplianceEntry,
) -> Result<Vec<Held>, FillError> {
    use http_body_util::BodyExt;
    let err = |m: String| FillError::Appliance {
        appliance: a.id.clone(),
        message: m,
    };
    let token = std::fs::read_to_string(&a.admin_token_file)
        .map_err(|e| input_err(&a.admin_token_file, format!("cannot read: {e}")))?;
    let url = format!("{}/v1/inventory?since=0", a.admin_url.trim_end_matches('/'));
    let req = http::Request::get(&url)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        )
        .body(crate::origin::Body::new(
            http_body_util::Empty::<bytes::Bytes>::new().map_err(
                |e: std::convert::Infallible| -> Box<dyn std::error::Error + Send + Sync> {
                    match e {}
                },
            ),
        ))
        .map_err(|e| err(format!("bad admin-url {url}: {e}")))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| err(format!("GET {url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| err(format!("GET {url}: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(err(format!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )));
    }
    let inv: Inventory = serde_json::from_slice(&body)
        .map_err(|e| err(format!("GET {url}: not an inventory: {e}")))?;
    Ok(held_of(&inv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oca_common::wire::Tier;

    const SITES: &str = include_str!("../../common/etc/sites.toml");

    fn sites() -> Sites {
        Sites::parse(SITES).unwrap()
    }

    #[test]
    fn appliances_file_is_checked() {
        let f = Path::new("/etc/fc/appliances.toml");
        let ok = "[[appliance]]\nid = \"oca-1\"\ncluster = \"isp1-fra-a\"\n\
                  admin-url = \"http://10.0.0.1:9443\"\nadmin-token-file = \"t/oca-1\"\n\
                  flash = \"8TB\"\ndisk = \"1TiB\"\nstate = \"draining\"\n";
        let a = parse_appliances(ok, f, &sites()).unwrap();
        assert_eq!(a[0].flash, 8_000_000_000_000);
        assert_eq!(a[0].disk, 1 << 40);
        assert_eq!(a[0].state, ApplianceState::Draining);
        assert_eq!(a[0].admin_token_file, Path::new("/etc/fc/t/oca-1"));
        assert_eq!(a[0].plain_url, None);
        let with_plain = format!("{ok}plain-url = \"http://10.0.0.1:80\"\n");
        let a = parse_appliances(&with_plain, f, &sites()).unwrap();
        assert_eq!(a[0].plain_url.as_deref(), Some("http://10.0.0.1:80"));
        let cases = [
            (ok.replace("isp1-fra-a", "nope"), "unknown cluster \"nope\""),
            (ok.replace("http://", "ftp://"), "admin-url"),
            (
                format!("{ok}plain-url = \"https://10.0.0.1:443\"\n"),
                "plain-url: must be an http:// URL",
            ),
            (ok.replace("oca-1\"\nc", "oca 1\"\nc"), "id must be"),
            (format!("{ok}{ok}"), "used twice"),
            (ok.replace("draining", "asleep"), "unknown variant"),
            (ok.replace("8TB", "8 parsecs"), "unit"),
            (
                ok.replace("flash = \"8TB\"\ndisk = \"1TiB\"\n", ""),
                "at least one",
            ),
        ];
        for (text, needle) in cases {
            let e = parse_appliances(&text, f, &sites()).unwrap_err();
            assert!(matches!(e, FillError::Input { .. }));
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn forecast_maps_regions_to_clusters() {
        let s = sites();
        let mut cfg = Config::default();
        cfg.regions
            .insert("isp1-fra-a".into(), vec!["DE".into(), "AT".into()]);
        let r1 = RenditionId::parse("t1/720p").unwrap();
        let r2 = RenditionId::parse("t2/720p").unwrap();
        let catalog = vec![(r1.clone(), 100), (r2.clone(), 50)];
        let row = |r: &RenditionId, region: &str, views: f64| Forecast {
            rendition: r.clone(),
            region: region.into(),
            views,
        };
        let fc = vec![
            row(&r1, "DE", 2.0),
            row(&r1, "AT", 1.0),
            row(&r1, "ixp-fra", 4.0), // the IXP cluster's site id
            row(&r2, "FR", 9.0),      // no cluster serves FR
            row(&RenditionId::parse("t9/x").unwrap(), "DE", 1.0),
        ];
        let (input, skipped) = build_input(&cfg, &s, &catalog, &fc, &[], PlanParams::default());
        assert_eq!(
            skipped,
            Skipped {
                unknown_renditions: 1,
                unmapped_regions: 1
            }
        );
        let d1 = &input.renditions.iter().find(|r| r.id == r1).unwrap().demand;
        assert_eq!(d1.get("isp1-fra-a"), Some(&300.0));
        assert_eq!(d1.get("ixp-fra"), Some(&400.0));
        assert!(
            input
                .renditions
                .iter()
                .find(|r| r.id == r2)
                .unwrap()
                .demand
                .is_empty()
        );
        assert_eq!(input.clusters.len(), 2);
    }

    #[test]
    fn bad_data_is_input_error() {
        let f = Path::new("x.json");
        assert!(matches!(
            parse_forecast("{", f),
            Err(FillError::Input { .. })
        ));
        let neg = r#"[{"rendition":"a/b","region":"DE","views":-1}]"#;
        assert!(
            parse_forecast(neg, f)
                .unwrap_err()
                .to_string()
                .contains("row 0")
        );
        assert!(matches!(
            parse_inventory("[]", f),
            Err(FillError::Input { .. })
        ));
        let inv = r#"{"generation":3,"full":true,"added":[
            {"rendition":"a/b","files_held":2,"total_files":4,"bytes":10,"tier":"disk"},
            {"rendition":"a/c","files_held":0,"total_files":4,"bytes":0,"tier":"flash"}]}"#;
        let held = parse_inventory(inv, f).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].bytes, held[0].tier), (10, Tier::Disk));
        assert!(matches!(
            parse_catalog("[[title]]\nid = 3\n", f),
            Err(FillError::Input { .. })
        ));
    }
}
