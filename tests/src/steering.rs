//! Helpers of the steering end-to-end tests (`tests/steering.rs`): a real `steering serve`
//! process with a sites file, the appliances' signing key and heartbeat tokens, and real
//! `oca serve` processes that heartbeat to it every 200 ms. [`ControlPlaneDb`] prepares a
//! real control-plane SQLite database (catalog, plans, users, appliance tokens, signing key)
//! that the steering process opens through its `[control-plane]` section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::fixture::{Fixture, KID, Opts, Ports};
use crate::server::{ChildGuard, READY_LIMIT, Server, blocking_status, oca_bin};

/// Heartbeat interval of the test appliances.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// Largest heartbeat body the test steering accepts.
pub const MAX_HEARTBEAT_BODY: usize = 256 << 10;

/// The sites file of the tests: site `s1` with clusters `isp-a` (falls back to `ixp`),
/// `isp-b` (falls back to `isp-a`) and `ixp`; clients no prefix covers go to `isp-a`.
pub const SITES: &str = r#"
fallback = ["isp-a"]
[[site]]
id = "s1"
time-zone = "Europe/Berlin"
[[cluster]]
id = "isp-a"
site = "s1"
upstream = "ixp"
fallback = ["ixp"]
[[cluster]]
id = "isp-b"
site = "s1"
upstream = "ixp"
fallback = ["isp-a"]
[[cluster]]
id = "ixp"
site = "s1"
"#;

/// The `steering` binary next to `oca`.
pub fn steering_bin() -> PathBuf {
    let bin = oca_bin().with_file_name("steering");
    assert!(
        bin.is_file(),
        "the steering binary is missing at {}: run `cargo build --release --bins` first",
        bin.display()
    );
    bin
}

/// A response from a plain-HTTP request.
#[derive(Debug, Clone)]
pub struct HttpResp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl HttpResp {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One plain HTTP/1.1 request to 127.0.0.1:`port`, bounded by 10 s.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResp, String> {
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{port}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(HttpResp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("{method} {path}: no answer within 10s"))?
}

/// A running `steering serve`.
#[derive(Debug)]
pub struct Steering {
    pub proc: ChildGuard,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Heartbeat bearer token per appliance id.
    pub tokens: BTreeMap<String, String>,
}

/// A control-plane database for the e2e tests: title `movie` with renditions `720p`
/// (height 720) and `1080p` (height 1080) whose files are the fixture's; plans `hd` (1080),
/// `sd` (720) and `audio` (0); users `alice` (hd), `bob` (sd) and `carol` (audio); one
/// appliance token per appliance id. The key-encryption key is in a file next to it.
pub struct ControlPlaneDb {
    /// Holds the database, the KEK file and control-plane's config.
    pub dir: tempfile::TempDir,
    /// control-plane's config file (what steering's `control-plane.config-file` names).
    pub config: PathBuf,
    /// The same database, open in the test process too (SQLite WAL: both may use it).
    pub cp: control_plane::ControlPlane,
    /// Appliance bearer tokens (`oa1.{id}.{secret}`) by id.
    pub appliance_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for ControlPlaneDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneDb")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ControlPlaneDb {
    /// Creates the database with `fx`'s 720p and 1080p files in the catalog.
    pub fn new(fx: &Fixture, appliance_ids: &[&str]) -> ControlPlaneDb {
        use base64::Engine as _;
        let dir = tempfile::Builder::new()
            .prefix("cp-e2e-")
            .tempdir()
            .expect("temp dir");
        let kek = base64::engine::general_purpose::STANDARD.encode(crate::random_bytes(32));
        std::fs::write(dir.path().join("kek"), &kek).expect("kek");
        let config = dir.path().join("control-plane.toml");
        std::fs::write(
            &config,
            "[database]\npath = \"cp.db\"\n[kek]\nkey-file = \"kek\"\n",
        )
        .expect("cp config");
        let cfg = control_plane::Config::load(&config).expect("cp config loads");
        let cp = control_plane::ControlPlane::open(&cfg).expect("cp opens");
        let mut catalog = String::from(
            "[[title]]\nid = \"movie\"\nname = \"Movie\"\ngenres = [\"drama\"]\nregions = []\n",
        );
        for (rend, codec, w, h) in [
            ("1080p", "avc1.640028", 1920, 1080),
            ("720p", "avc1.64001f", 1280, 720),
        ] {
            catalog += &format!(
                "[[title.rendition]]\nid = \"{rend}\"\ncodec = \"{codec}\"\nwidth = {w}\n\
                 height = {h}\nbitrate-kbps = 3000\n"
            );
            for file in ["init.mp4", "seg-00001.m4s"] {
                let data = fx.object(&format!("movie/{rend}/{file}"));
                catalog += &format!(
                    "[[title.rendition.file]]\nname = \"{file}\"\nsize = {}\nsha256 = \"{}\"\n",
                    data.len(),
                    crate::sha256_hex(data)
                );
            }
        }
        let now = crate::now_unix();
        cp.import_catalog_toml(&catalog, now)
            .expect("catalog imports");
        for (name, max_height) in [("hd", 1080), ("sd", 720), ("audio", 0)] {
            cp.set_plan(&control_plane::Plan {
                name: name.into(),
                max_height,
            })
            .expect("plan");
        }
        for (user, plan) in [("alice", "hd"), ("bob", "sd"), ("carol", "audio")] {
            cp.put_user(user, plan).expect("user");
        }
        let appliance_tokens = appliance_ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    cp.register_appliance(id).expect("appliance"),
                )
            })
            .collect();
        ControlPlaneDb {
            dir,
            config,
            cp,
            appliance_tokens,
        }
    }

    /// The control plane's newest signing key as `(kid, secret)`, for the appliances.
    pub fn signing_key(&self) -> (String, Vec<u8>) {
        let keys = self.cp.signing_keys().expect("keys");
        let k = keys.newest().expect("a live key");
        (k.kid.clone(), k.secret.clone())
    }

    /// A player token for `user`.
    pub fn player_token(&self, user: &str) -> String {
        self.cp
            .issue_player_token(user, crate::now_unix())
            .expect("token")
            .token
    }
}

impl Steering {
    /// Starts steering for appliances `ids` (each gets a random token), signing with the key
    /// file at `keys`, trusting `X-Forwarded-For` from 127.0.0.1, without a control plane.
    pub fn start(keys: &Path, ids: &[&str]) -> Steering {
        let tokens: BTreeMap<String, String> = ids
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    format!("hb-{id}-{}", hex::encode(crate::random_bytes(8))),
                )
            })
            .collect();
        Self::start_inner(Some(keys), None, tokens)
    }

    /// Starts steering with the control plane of `db`: its signing keys, its appliance
    /// tokens (no static ones), the player routes served.
    pub fn start_with_control_plane(db: &ControlPlaneDb) -> Steering {
        Self::start_inner(None, Some(&db.config), db.appliance_tokens.clone())
    }

    fn start_inner(
        keys: Option<&Path>,
        cp_config: Option<&Path>,
        tokens: BTreeMap<String, String>,
    ) -> Steering {
        let dir = tempfile::Builder::new()
            .prefix("steering-e2e-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("sites.toml"), SITES).expect("sites");
        if let Some(keys) = keys {
            std::fs::copy(keys, dir.path().join("signing-keys.toml")).expect("copy keys");
        }
        // Without a key file the keys come from the control plane.
        let keys_line = if keys.is_some() {
            "keys-file = \"signing-keys.toml\"\n"
        } else {
            ""
        };
        let mut last = String::new();
        for attempt in 0..5 {
            let port = Ports::free().admin;
            let mut text = format!(
                r#"[server]
listen = "127.0.0.1:{port}"
trusted-proxies = ["127.0.0.1"]
max-body = "4KiB"
max-heartbeat-body = "{MAX_HEARTBEAT_BODY}"
worker-threads = 2
[ranking]
sites-file = "sites.toml"
origin-url = "https://origin.test/o"
[urls]
{keys_line}expiry = "1h"
[heartbeat]
interval = "{}ms"
"#,
                INTERVAL.as_millis()
            );
            match cp_config {
                Some(c) => {
                    text += &format!("[control-plane]\nconfig-file = {:?}\n", c.display());
                }
                None => {
                    text += "[control-plane]\nenabled = false\n";
                }
            }
            text += "[heartbeat.tokens]\n";
            if cp_config.is_none() {
                for (id, t) in &tokens {
                    text += &format!("{id} = \"{}\"\n", crate::sha256_hex(t.as_bytes()));
                }
            }
            let config = dir.path().join("steering.toml");
            std::fs::write(&config, text).expect("config");
            let log = dir.path().join(format!("steering-{attempt}.log"));
            let err = std::fs::File::create(&log).expect("log");
            let child = Command::new(steering_bin())
                .arg("serve")
                .arg("-c")
                .arg(&config)
                .env_remove("STEERING_CONFIG")
                .env_remove("STEERING_LOG")
                .stdin(Stdio::null())
                .stdout(err.try_clone().expect("clone"))
                .stderr(err)
                .spawn()
                .expect("spawn steering");
            let mut proc = ChildGuard { child, log };
            let t0 = Instant::now();
            loop {
                if let Some(st) = proc.exited() {
                    last = format!("(exited: {st})\n{}", proc.log_text());
                    break;
                }
                if blocking_status(port, "/healthz") == Some(200) {
                    return Steering {
                        proc,
                        port,
                        dir,
                        tokens,
                    };
                }
                assert!(
                    t0.elapsed() < READY_LIMIT,
                    "steering did not answer /healthz; its log:\n{}",
                    proc.log_text()
                );
                std::thread::sleep(crate::POLL_PAUSE);
            }
            if !last.contains("cannot listen") {
                break;
            }
        }
        panic!("steering did not start; its log:\n{last}");
    }

    /// `GET path` with headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResp {
        http(self.port, "GET", path, headers, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nsteering log:\n{}", self.proc.log_text()))
    }

    /// `POST path` with headers and a body.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> HttpResp {
        http(self.port, "POST", path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}\nsteering log:\n{}", self.proc.log_text()))
    }

    /// `GET /v1/steer?rendition=…` for a client address (sent as `X-Forwarded-For` from the
    /// trusted loopback proxy).
    pub async fn steer(&self, rendition: &str, client: &str) -> HttpResp {
        self.get(
            &format!("/v1/steer?rendition={rendition}"),
            &[("x-forwarded-for", client)],
        )
        .await
    }

    /// The appliance ids of a 200 steer answer's URLs, in order (`origin` for the origin).
    pub fn order(resp: &HttpResp) -> Vec<String> {
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()["urls"]
            .as_array()
            .expect("urls")
            .iter()
            .map(|u| u["oca_id"].as_str().unwrap_or("origin").to_string())
            .collect()
    }

    /// `GET /v1/ocas`.
    pub async fn ocas(&self) -> Vec<serde_json::Value> {
        let r = self.get("/v1/ocas", &[]).await;
        assert_eq!(r.status, 200);
        r.json().as_array().expect("array").clone()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics", &[]).await;
        assert_eq!(r.status, 200);
        r.text()
    }
}

/// Starts `oca serve` on `fx` as appliance `id` of `cluster`, announcing `prefixes` and
/// heartbeating to `steering` every [`INTERVAL`].
pub fn start_appliance(
    fx: Fixture,
    steering: &Steering,
    id: &str,
    cluster: &str,
    prefixes: &[&str],
) -> Server {
    let list = prefixes
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let extra = format!("capacity-bps = \"10Gbps\"\nbgp-prefixes = [{list}]\n");
    start_appliance_with(fx, steering, id, cluster, &extra)
}

/// Starts `oca serve` on `fx` as appliance `id` of `cluster`, heartbeating to `steering`
/// every [`INTERVAL`], with `extra` appended to its `[heartbeat]` table (and whatever tables
/// follow it); waits until `/readyz` answers 200 (a port taken meanwhile: another try).
pub fn start_appliance_with(
    fx: Fixture,
    steering: &Steering,
    id: &str,
    cluster: &str,
    extra: &str,
) -> Server {
    std::fs::write(fx.path("hb-token"), &steering.tokens[id]).expect("token file");
    let opts = Opts::default();
    let mut last = String::new();
    for attempt in 0..5 {
        let ports = Ports::free();
        let text = fx
            .config_text(&opts, ports)
            .replace("id = \"oca-e2e\"", &format!("id = \"{id}\""))
            + &format!(
                r#"
[heartbeat]
endpoints = ["http://127.0.0.1:{sport}"]
token-file = "hb-token"
interval = "{ms}ms"
site = "s1"
cluster = "{cluster}"
public-urls = ["https://127.0.0.1:{https}"]
{extra}"#,
                sport = steering.port,
                ms = INTERVAL.as_millis(),
                https = ports.https,
            );
        let config = fx.path("oca.toml");
        std::fs::write(&config, text).expect("config");
        let log = fx.path(&format!("oca-{attempt}.log"));
        let err = std::fs::File::create(&log).expect("log");
        let child = Command::new(oca_bin())
            .args(["serve", "-c"])
            .arg(&config)
            .env_remove("OCA_CONFIG")
            .env_remove("OCA_LOG")
            .stdin(Stdio::null())
            .stdout(err.try_clone().expect("clone"))
            .stderr(err)
            .spawn()
            .expect("spawn oca");
        let mut proc = ChildGuard { child, log };
        let t0 = Instant::now();
        loop {
            if let Some(st) = proc.exited() {
                last = format!("(exited: {st})\n{}", proc.log_text());
                break;
            }
            if blocking_status(ports.admin, "/readyz") == Some(200) {
                return Server {
                    proc,
                    fx,
                    opts,
                    ports,
                    config,
                };
            }
            assert!(
                t0.elapsed() < READY_LIMIT,
                "oca did not become ready; its log:\n{}",
                proc.log_text()
            );
            std::thread::sleep(crate::POLL_PAUSE);
        }
        if !last.contains("cannot listen") {
            break;
        }
    }
    panic!("oca did not start; its log:\n{last}");
}

/// A second fixture that shares `fx`'s signing key (so steering's URLs work on both).
pub fn fixture_sharing_key(fx: &Fixture) -> Fixture {
    let mut other = Fixture::new();
    other.write_keys(&[(KID, fx.secrets[KID].clone())]);
    other
}

/// Commits rendition `title/rendition` of the fixture on the appliance's admin port with a
/// manifest of its files (DESIGN §2). Returns the status: 2xx when committed; 404/405 from
/// an appliance without the ingest API (whose inventory then lists what it finds on disk).
pub async fn commit_rendition(server: &Server, rendition: &str) -> u16 {
    let prefix = format!("{rendition}/");
    let files: Vec<serde_json::Value> = server
        .fx
        .objects
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(&prefix)?;
            Some(serde_json::json!({
                "name": name,
                "size": v.len(),
                "sha256": crate::sha256_hex(v),
            }))
        })
        .collect();
    let (title, rend) = rendition.split_once('/').expect("title/rendition");
    let body = serde_json::json!({
        "title": title,
        "rendition": rend,
        "total_files": files.len(),
        "files": files,
    });
    let auth = format!("Bearer {}", server.fx.admin_token);
    let r = http(
        server.ports.admin,
        "PUT",
        &format!("/v1/renditions/{rendition}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        serde_json::to_vec(&body).expect("json"),
    )
    .await
    .expect("admin PUT");
    r.status
}
