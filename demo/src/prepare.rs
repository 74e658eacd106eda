//! Writes the demo folder: an origin directory with a sample title in two renditions, its
//! catalog, a control-plane database with two users on two plans, TLS material, signing keys
//! (from the control plane) and the configs of steering, two appliances and the fill controller.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::DemoError;

/// The sample title.
pub const TITLE: &str = "demo-title";

/// The sample renditions: id, width, height, bitrate (kbit/s), segments, segment bytes.
pub const RENDITIONS: [(&str, u32, u32, u32, usize, usize); 2] = [
    ("1080p", 1920, 1080, 5800, 6, 768 << 10),
    ("720p", 1280, 720, 3000, 6, 384 << 10),
];

/// Ports of one appliance.
#[derive(Debug, Clone, Copy)]
pub struct AppliancePorts {
    pub https: u16,
    pub http: u16,
    pub admin: u16,
}

/// Everything [`prepare`] wrote that the run needs.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub dir: PathBuf,
    pub steering_config: PathBuf,
    pub fill_config: PathBuf,
    pub appliance_configs: Vec<PathBuf>,
    pub appliance_ids: Vec<String>,
    pub appliance_ports: Vec<AppliancePorts>,
    pub steering_port: u16,
    pub admin_token: String,
    pub cert: PathBuf,
    /// Player tokens: (user, plan, token).
    pub players: Vec<(String, String, String)>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

pub(crate) fn write(path: &Path, data: &[u8]) -> Result<(), DemoError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    std::fs::write(path, data).map_err(io(format!("writing {}", path.display())))
}

/// Deterministic filler bytes, so anyone can check a segment's bytes (`oca demo`'s).
pub fn segment_bytes(seed: u64, len: usize) -> Vec<u8> {
    oca::demo::segment_bytes(seed as usize, len)
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

fn random<const N: usize>() -> Result<[u8; N], DemoError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| DemoError::Setup("no randomness available".into()))?;
    Ok(b)
}

/// A free loopback TCP port (bound and released; the demo binds it a moment later).
fn free_port() -> Result<u16, DemoError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

/// Writes the sample title into `origin` (object keys as paths, DESIGN §2) and returns the
/// catalog TOML describing it.
fn write_origin(origin: &Path) -> Result<String, DemoError> {
    let title_dir = origin.join(TITLE);
    let mut master = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    for (id, w, h, kbps, _, _) in RENDITIONS {
        let _ = write!(
            master,
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={w}x{h},CODECS=\"avc1.640028\"\n{id}/index.m3u8\n",
            kbps * 1000
        );
    }
    write(&title_dir.join("master.m3u8"), master.as_bytes())?;
    let mut catalog = format!(
        "# Written by oca-demo: the sample title in the origin directory next to this file.\n\
         [[title]]\nid = \"{TITLE}\"\nname = \"Demo Title\"\ngenres = [\"demo\"]\n\
         launch = \"2026-11-01T00:00:00Z\"\nregions = []\n\n\
         [[title.file]]\nname = \"master.m3u8\"\nsize = {}\nsha256 = \"{}\"\n",
        master.len(),
        sha256_hex(master.as_bytes())
    );
    for (r, (id, w, h, kbps, segments, seg_bytes)) in RENDITIONS.into_iter().enumerate() {
        let dir = title_dir.join(id);
        let _ = write!(
            catalog,
            "\n[[title.rendition]]\nid = \"{id}\"\ncodec = \"avc1.640028\"\nwidth = {w}\n\
             height = {h}\nbitrate-kbps = {kbps}\n"
        );
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut media = String::from(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n",
        );
        for i in 1..=segments {
            let _ = write!(media, "#EXTINF:4.000,\nseg-{i:05}.m4s\n");
        }
        media.push_str("#EXT-X-ENDLIST\n");
        files.push(("index.m3u8".into(), media.into_bytes()));
        let seed = (r as u64 + 1) * 1000;
        files.push(("init.mp4".into(), segment_bytes(seed, 1400)));
        for i in 1..=segments {
            files.push((
                format!("seg-{i:05}.m4s"),
                segment_bytes(seed + i as u64, seg_bytes),
            ));
        }
        for (name, data) in files {
            write(&dir.join(&name), &data)?;
            let _ = write!(
                catalog,
                "\n[[title.rendition.file]]\nname = \"{name}\"\nsize = {}\nsha256 = \"{}\"\n",
                data.len(),
                sha256_hex(&data)
            );
        }
    }
    Ok(catalog)
}

/// The sites file: one ISP site with a cluster, and an IXP cluster it falls back to.
const SITES: &str = r#"# Written by oca-demo. See common/etc/sites.toml for every key.
fallback = ["ixp"]

[[site]]
id = "isp1"
time-zone = "UTC"
fill-window = "02:00-14:00"
fill-rate-bps = "1Gbps"
nightly-budget = "1TB"

[[site]]
id = "ixp"
time-zone = "UTC"
fill-window = "02:00-14:00"
fill-rate-bps = "1Gbps"
nightly-budget = "1TB"

[[cluster]]
id = "isp1-a"
site = "isp1"
upstream = "ixp"
fallback = ["ixp"]

[[cluster]]
id = "ixp"
site = "ixp"
upstream = "origin"
"#;

/// Writes everything under `dir` (replacing an earlier demo folder).
pub fn prepare(dir: &Path) -> Result<Prepared, DemoError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(format!("removing {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let dir = std::fs::canonicalize(dir).map_err(io(format!("resolving {}", dir.display())))?;
    let origin = dir.join("origin");
    let catalog = write_origin(&origin)?;
    write(&dir.join("catalog.toml"), catalog.as_bytes())?;
    write(&dir.join("sites.toml"), SITES.as_bytes())?;

    // TLS: a self-signed certificate for localhost, shared by both appliances.
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| DemoError::Setup(format!("generating a certificate: {e}")))?;
    let cert = dir.join("tls/cert.pem");
    write(&cert, ck.cert.pem().as_bytes())?;
    write(
        &dir.join("tls/key.pem"),
        ck.signing_key.serialize_pem().as_bytes(),
    )?;

    // The control plane: a KEK, the catalog, two plans and two users.
    let b64 = base64::engine::general_purpose::STANDARD;
    let kek_b64 = b64.encode(random::<32>()?);
    write(&dir.join("control-plane.kek"), kek_b64.as_bytes())?;
    let cp_config = dir.join("control-plane.toml");
    write(
        &cp_config,
        b"# Written by oca-demo. See control-plane/etc/control-plane.toml for every key.\n\
          [database]\npath = \"control-plane.db\"\n[kek]\nkey-file = \"control-plane.kek\"\n",
    )?;
    let cfg = control_plane::Config::load(&cp_config)?;
    let cp = control_plane::ControlPlane::open(&cfg)?;
    let now = crate::now_unix();
    cp.import_catalog_toml(&catalog, now)?;
    let mut players = Vec::new();
    for (user, plan, max_height) in [("alice", "premium", 2160), ("bob", "basic", 720)] {
        cp.set_plan(&control_plane::Plan {
            name: plan.into(),
            max_height,
        })?;
        cp.put_user(user, plan)?;
        let t = cp.issue_player_token(user, now)?;
        players.push((user.to_string(), plan.to_string(), t.token));
    }
    // URL-signing keys, shared with the appliances.
    write(
        &dir.join("signing-keys.toml"),
        cp.signing_key_file()?.as_bytes(),
    )?;

    // Two appliances: oca-1 in the ISP cluster (it announces loopback, where the player is),
    // oca-2 at the IXP (steering's fallback).
    let admin_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<18>()?);
    let admin_hash = sha256_hex(admin_token.as_bytes());
    write(&dir.join("admin-token"), admin_token.as_bytes())?;
    let steering_port = free_port()?;
    let mut appliance_configs = Vec::new();
    let mut appliance_ids = Vec::new();
    let mut appliance_ports = Vec::new();
    for (i, (site, cluster, prefixes)) in [
        ("isp1", "isp1-a", "[\"127.0.0.0/8\", \"::1/128\"]"),
        ("ixp", "ixp", "[]"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("oca-{}", i + 1);
        let ports = AppliancePorts {
            https: free_port()?,
            http: free_port()?,
            admin: free_port()?,
        };
        let hb_token = cp.register_appliance(&id)?;
        let token_file = dir.join(format!("{id}/heartbeat-token"));
        write(&token_file, hb_token.as_bytes())?;
        let text = format!(
            r#"# Written by oca-demo. See oca/etc/oca.toml for every key.
[server]
id = "{id}"
https-listen = "127.0.0.1:{https}"
http-listen = "127.0.0.1:{http}"
drain-deadline = "3s"

[tls]
cert = "../tls/cert.pem"
key = "../tls/key.pem"

[tokens]
keys-file = "../signing-keys.toml"

[admin]
listen = "127.0.0.1:{admin}"
token-sha256 = "{admin_hash}"

[storage]
root = ""
state-dir = "state"
ram-bytes = "8MiB"

[[storage.drives]]
tier = "flash"
path = "flash0"
capacity = "64MiB"

[[storage.drives]]
tier = "disk"
path = "disk0"
capacity = "256MiB"

[heartbeat]
endpoints = ["http://127.0.0.1:{steering_port}"]
token-file = "heartbeat-token"
interval = "1s"
site = "{site}"
cluster = "{cluster}"
public-urls = ["https://localhost:{https}"]
capacity-bps = "10Gbps"
bgp-prefixes = {prefixes}

[log]
access-log = true
"#,
            https = ports.https,
            http = ports.http,
            admin = ports.admin,
        );
        for d in ["flash0", "disk0"] {
            let p = dir.join(format!("{id}/{d}"));
            std::fs::create_dir_all(&p).map_err(io(format!("creating {}", p.display())))?;
        }
        let path = dir.join(format!("{id}/oca.toml"));
        write(&path, text.as_bytes())?;
        appliance_configs.push(path);
        appliance_ids.push(id);
        appliance_ports.push(ports);
    }

    let steering_config = dir.join("steering.toml");
    write(&steering_config, steering_toml(steering_port).as_bytes())?;
    let fill_config = dir.join("fill-controller.toml");
    write(&fill_config, fill_toml().as_bytes())?;
    // The fill controller's view of the appliances (admin ports, capacities) and tomorrow's
    // demand: every rendition watched in both regions (a region per site).
    let mut apps =
        String::from("# Written by oca-demo: the appliances the fill controller fills.\n");
    for (id, (ports, cluster)) in appliance_ids
        .iter()
        .zip(appliance_ports.iter().zip(["isp1-a", "ixp"]))
    {
        let _ = write!(
            apps,
            "\n[[appliance]]\nid = \"{id}\"\ncluster = \"{cluster}\"\n\
             admin-url = \"http://127.0.0.1:{}\"\nadmin-token-file = \"admin-token\"\n\
             flash = \"64MiB\"\ndisk = \"256MiB\"\n",
            ports.admin
        );
    }
    write(&dir.join("appliances.toml"), apps.as_bytes())?;
    let mut rows = Vec::new();
    for (id, ..) in RENDITIONS {
        for (region, views) in [("isp1", 120.0), ("ixp", 40.0)] {
            rows.push(serde_json::json!({
                "rendition": format!("{TITLE}/{id}"),
                "region": region,
                "views": views,
            }));
        }
    }
    write(
        &dir.join("forecast.json"),
        serde_json::to_string_pretty(&rows)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(Prepared {
        dir: dir.clone(),
        steering_config,
        fill_config,
        appliance_configs,
        appliance_ids,
        appliance_ports,
        steering_port,
        admin_token,
        cert,
        players,
    })
}

/// Steering's config.
fn steering_toml(port: u16) -> String {
    format!(
        r#"# Written by oca-demo. See steering/etc/steering.toml for every key.
[server]
listen = "127.0.0.1:{port}"
worker-threads = 1

[ranking]
sites-file = "sites.toml"
origin-url = "https://origin.invalid/o"

[urls]
# Empty: the control plane's live signing keys (the appliances got them as a key file).
keys-file = ""
expiry = "1h"

[heartbeat]
interval = "1s"

[control-plane]
enabled = true
config-file = "control-plane.toml"
"#
    )
}

/// The fill controller's config.
fn fill_toml() -> String {
    r#"# Written by oca-demo. See fill-controller/etc/fill-controller.toml for every key.
sites-file = "sites.toml"
state-dir = "fill-state"

[inputs]
appliances-file = "appliances.toml"
catalog-file = "catalog.toml"
forecast-file = "forecast.json"

[origin]
kind = "dir"
path = "origin"
"#
    .to_string()
}
