//! A test appliance's files: objects, certificate, signing keys, admin token and config, in
//! a temp dir that is removed on drop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oca_common::ObjectKey;
use oca_common::token::{self, ClientPrefix, KeySet, TokenParams};
use rustls::pki_types::CertificateDer;

use crate::random_bytes;

/// The sample title.
pub const TITLE: &str = "movie";
/// Title-level HLS master playlist (RAM tier).
pub const MASTER: &str = "movie/master.m3u8";
/// Title-level DASH manifest (RAM tier).
pub const MPD: &str = "movie/manifest.mpd";
/// 720p media playlist, ~3 KB of text (RAM tier).
pub const PLAYLIST: &str = "movie/720p/index.m3u8";
/// 720p init segment (RAM tier).
pub const INIT: &str = "movie/720p/init.mp4";
/// 720p segment of [`SEG_LEN`] random bytes: above `ram-max-object`, so read from disk
/// through the I/O engine (or sendfile on the plain port).
pub const SEG: &str = "movie/720p/seg-00001.m4s";
/// Size of [`SEG`].
pub const SEG_LEN: usize = 100_000;
/// A second 720p segment (disk).
pub const SEG2: &str = "movie/720p/seg-00002.m4s";
/// An MPEG-TS segment.
pub const TS: &str = "movie/720p/seg-00003.ts";
/// A 0-byte object.
pub const EMPTY: &str = "movie/720p/empty.m4s";
/// 1080p segment (another rendition of the same title).
pub const SEG_1080: &str = "movie/1080p/seg-00001.m4s";
/// The ≥ 8 MiB object (disk), larger than several 256 KiB read buffers.
pub const BIG: &str = "movie/1080p/big.mp4";
/// Size of [`BIG`].
pub const BIG_LEN: usize = (8 << 20) + 4321;
/// WebVTT subtitles.
pub const VTT: &str = "movie/subs/en.vtt";
/// A segment of another title.
pub const OTHER: &str = "other/720p/seg-00001.m4s";
/// A 64 MiB object, only in [`Fixture::with_huge`] fixtures (drain tests).
pub const HUGE: &str = "movie/1080p/huge.m4s";
/// Size of [`HUGE`].
pub const HUGE_LEN: usize = 64 << 20;

/// The kid of the signing key every fixture starts with.
pub const KID: &str = "k1";

/// How a test appliance is configured beyond the fixture's defaults.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `server.require-token`.
    pub require_token: bool,
    /// Whether the plain HTTP port is configured.
    pub http: bool,
    /// `storage.io-engine`: `auto`, `io-uring` or `pread`.
    pub io_engine: &'static str,
    /// `server.drain-deadline`.
    pub drain_deadline: &'static str,
    /// Extra `[limits]` keys with their raw TOML values.
    pub limits: Vec<(&'static str, String)>,
    /// `storage.page-cache-fast-path`; off makes every read go through the I/O engine.
    pub page_cache_fast_path: bool,
    /// Whether HTTP/3 (`server.h3-listen`, UDP) is configured.
    pub h3: bool,
    /// `[[storage.drives]]`: (tier, directory relative to the fixture, capacity).
    pub drives: Vec<(&'static str, &'static str, &'static str)>,
    /// Environment of the server process (e.g. `FAILPOINTS`).
    pub env: Vec<(&'static str, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            require_token: true,
            http: true,
            io_engine: "auto",
            drain_deadline: "10s",
            limits: Vec::new(),
            page_cache_fast_path: true,
            h3: false,
            drives: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl Opts {
    /// Add a `[limits]` key; `value` is raw TOML (quote strings yourself).
    pub fn limit(mut self, key: &'static str, value: impl Into<String>) -> Opts {
        self.limits.push((key, value.into()));
        self
    }
}

/// Ports of one appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub https: u16,
    pub http: u16,
    pub admin: u16,
    /// UDP port of the HTTP/3 listener (used only when [`Opts::h3`] is set).
    pub h3: u16,
}

impl Ports {
    /// Ports that were free a moment ago (bind 127.0.0.1:0, read the port, close). Another
    /// process may take one before the appliance binds it: [`crate::Server::start`] retries.
    pub fn free() -> Ports {
        let hold: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let port = |i: usize| hold[i].local_addr().expect("local addr").port();
        Ports {
            https: port(0),
            http: port(1),
            admin: port(2),
            h3: udp.local_addr().expect("local addr").port(),
        }
    }
}

/// A generated self-signed certificate for `localhost` and `127.0.0.1`.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn generate() -> TestCert {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("rcgen self-signed certificate");
        TestCert {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
            der: ck.cert.der().clone(),
        }
    }
}

/// One test appliance's folder.
#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// Object bytes by key.
    pub objects: BTreeMap<String, Vec<u8>>,
    /// Every certificate this fixture ever wrote; clients trust all of them (and nothing
    /// else: never the system store).
    pub certs: Vec<CertificateDer<'static>>,
    /// Signing secrets by kid, as last written to the key file.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// The admin bearer token (its SHA-256 is in the config).
    pub admin_token: String,
}

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    }
    // Write then rename, so a reload never sees half a file.
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, data).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {}: {e}", path.display()));
}

impl Fixture {
    /// The sample title without the 64 MiB object.
    pub fn new() -> Fixture {
        Fixture::build(false)
    }

    /// The sample title plus [`HUGE`] (64 MiB).
    pub fn with_huge() -> Fixture {
        Fixture::build(true)
    }

    fn build(huge: bool) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("oca-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut objects = BTreeMap::new();
        let mut media = String::from(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n",
        );
        for i in 1..=120 {
            let _ = write!(media, "#EXTINF:4.000,\nseg-{i:05}.m4s\n");
        }
        media.push_str("#EXT-X-ENDLIST\n");
        let master = "#EXTM3U\n#EXT-X-VERSION:7\n\
            #EXT-X-STREAM-INF:BANDWIDTH=4300000,RESOLUTION=1280x720\n720p/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=8000000,RESOLUTION=1920x1080\n1080p/index.m3u8\n";
        let mpd = "<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
            type=\"static\" mediaPresentationDuration=\"PT8M\"><Period/></MPD>\n";
        let vtt = "WEBVTT\n\n00:00.000 --> 00:04.000\nHello.\n";
        objects.insert(MASTER.to_string(), master.as_bytes().to_vec());
        objects.insert(MPD.to_string(), mpd.as_bytes().to_vec());
        objects.insert(PLAYLIST.to_string(), media.clone().into_bytes());
        objects.insert("movie/1080p/index.m3u8".to_string(), media.into_bytes());
        objects.insert(INIT.to_string(), random_bytes(1400));
        objects.insert("movie/1080p/init.mp4".to_string(), random_bytes(1500));
        objects.insert(SEG.to_string(), random_bytes(SEG_LEN));
        objects.insert(SEG2.to_string(), random_bytes(SEG_LEN + 7));
        objects.insert(TS.to_string(), random_bytes(50_000));
        objects.insert(EMPTY.to_string(), Vec::new());
        objects.insert(SEG_1080.to_string(), random_bytes(30_000));
        objects.insert(BIG.to_string(), random_bytes(BIG_LEN));
        objects.insert(VTT.to_string(), vtt.as_bytes().to_vec());
        objects.insert(OTHER.to_string(), random_bytes(10_000));
        if huge {
            objects.insert(HUGE.to_string(), random_bytes(HUGE_LEN));
        }
        let root = dir.path().join("objects");
        for (key, data) in &objects {
            write(&root.join(key), data);
        }

        let mut fx = Fixture {
            dir,
            objects,
            certs: Vec::new(),
            secrets: BTreeMap::new(),
            admin_token: format!("admin-{}", hex::encode(random_bytes(12))),
        };
        fx.write_cert(&TestCert::generate());
        fx.write_keys(&[(KID, random_bytes(32))]);
        fx
    }

    /// A path inside the fixture's folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The bytes of an object.
    pub fn object(&self, key: &str) -> &[u8] {
        self.objects
            .get(key)
            .unwrap_or_else(|| panic!("no object {key} in the fixture"))
    }

    /// Write `tls/cert.pem` and `tls/key.pem`, and trust the certificate from now on.
    pub fn write_cert(&mut self, c: &TestCert) {
        write(&self.path("tls/cert.pem"), c.cert_pem.as_bytes());
        write(&self.path("tls/key.pem"), c.key_pem.as_bytes());
        self.certs.push(c.der.clone());
    }

    /// Write the signing key file with these kids and secrets.
    pub fn write_keys(&mut self, keys: &[(&str, Vec<u8>)]) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut text = String::from("# test signing keys\n");
        self.secrets.clear();
        for (kid, secret) in keys {
            let _ = write!(text, "[{kid}]\nsecret = \"{}\"\n\n", b64.encode(secret));
            self.secrets.insert((*kid).to_string(), secret.clone());
        }
        write(&self.path("signing-keys.toml"), text.as_bytes());
    }

    /// Overwrite a fixture file with raw bytes (to break it on purpose).
    pub fn write_raw(&self, rel: &str, data: &[u8]) {
        write(&self.path(rel), data);
    }

    /// Sign a token with the fixture's secret for `kid` (which need not be in the key file
    /// any more), through `oca_common::token::sign`.
    pub fn token_with(
        &self,
        kid: &str,
        secret: &[u8],
        key: &str,
        n: u8,
        exp: u64,
        client_prefix: Option<&str>,
    ) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let keys = KeySet::from_toml(&format!("[{kid}]\nsecret = \"{}\"\n", b64.encode(secret)))
            .expect("key set");
        let signing = keys.get(kid).expect("kid in key set");
        let params = TokenParams {
            exp,
            kid: kid.to_string(),
            n,
            client_prefix: client_prefix
                .map(|p| ClientPrefix::parse_cidr(p).expect("client prefix")),
        };
        let key = ObjectKey::parse(key).unwrap_or_else(|e| panic!("key {key}: {e}"));
        token::sign(signing, &params, &key).expect("sign")
    }

    /// A token for `key` with the current secret of `kid`.
    pub fn token(&self, kid: &str, key: &str, n: u8, exp: u64, cp: Option<&str>) -> String {
        let secret = self
            .secrets
            .get(kid)
            .unwrap_or_else(|| panic!("no secret for kid {kid}"));
        self.token_with(kid, secret, key, n, exp, cp)
    }

    /// `/t/{token}/{key}` with a k1 token covering the whole title, valid for an hour.
    pub fn signed(&self, key: &str) -> String {
        let tok = self.token(KID, key, 1, crate::now_unix() + 3600, None);
        format!("/t/{tok}/{key}")
    }

    /// The config file text for these ports.
    pub fn config_text(&self, opts: &Opts, ports: Ports) -> String {
        let mut limits = String::new();
        for (k, v) in &opts.limits {
            let _ = writeln!(limits, "{k} = {v}");
        }
        let http = if opts.http {
            format!("http-listen = \"127.0.0.1:{}\"", ports.http)
        } else {
            String::new()
        };
        let mut drives = String::new();
        for (tier, dir, cap) in &opts.drives {
            std::fs::create_dir_all(self.path(dir)).expect("drive dir");
            let _ = writeln!(
                drives,
                "[[storage.drives]]\ntier = \"{tier}\"\npath = \"{dir}\"\ncapacity = \"{cap}\""
            );
        }
        let h3 = if opts.h3 {
            format!("h3-listen = \"127.0.0.1:{}\"", ports.h3)
        } else {
            String::new()
        };
        format!(
            r#"# Written by the oca end-to-end tests.
[server]
id = "oca-e2e"
https-listen = "127.0.0.1:{https}"
{http}
{h3}
require-token = {require_token}
drain-deadline = "{drain}"
worker-threads = 2

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[tokens]
keys-file = "signing-keys.toml"

[admin]
listen = "127.0.0.1:{admin}"
token-sha256 = "{hash}"

[storage]
root = "objects"
io-engine = "{engine}"
page-cache-fast-path = {fast}
ram-bytes = "1MiB"
ram-max-object = "16KiB"
state-dir = "state"
{drives}
[limits]
{limits}
[log]
level = "info"
access-log = true
"#,
            https = ports.https,
            admin = ports.admin,
            require_token = opts.require_token,
            drain = opts.drain_deadline,
            hash = crate::sha256_hex(self.admin_token.as_bytes()),
            engine = opts.io_engine,
            fast = opts.page_cache_fast_path,
        )
    }

    /// Write the config for these ports to `oca.toml`; returns its path.
    pub fn write_config(&self, opts: &Opts, ports: Ports) -> PathBuf {
        let path = self.path("oca.toml");
        write(&path, self.config_text(opts, ports).as_bytes());
        path
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}
