//! `oca demo`: everything needed to see the appliance work on a fresh machine. It writes a
//! sample HLS title, a self-signed certificate, a signing key, an admin token and a config
//! into a folder, starts one appliance, and prints `curl` commands that fetch signed ranges.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use oca_common::ObjectKey;

use crate::config::Config;
use crate::error::OcaError;
use crate::sign::{SignRequest, sign_url};

/// Demo settings (the `oca demo` flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub https_port: u16,
    pub http_port: u16,
    pub admin_port: u16,
    pub segments: usize,
    pub segment_bytes: usize,
}

pub const TITLE: &str = "demo-title";
pub const RENDITION: &str = "720p";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OcaError {
    let what = what.into();
    move |source| OcaError::Io { what, source }
}

fn write(path: &Path, data: &[u8]) -> Result<(), OcaError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    std::fs::write(path, data).map_err(io(format!("writing {}", path.display())))
}

/// Deterministic filler bytes (xorshift), so a segment's bytes can be checked by anyone.
pub fn segment_bytes(index: usize, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write the demo folder; returns the config file's path and the admin token.
pub fn prepare(o: &DemoOptions) -> Result<(PathBuf, String), OcaError> {
    let dir = &o.dir;
    let objects = dir.join("objects");
    let title = objects.join(TITLE);
    let rend = title.join(RENDITION);
    // Sample title: an HLS master playlist, a media playlist, an init segment and segments.
    write(
        &title.join("master.m3u8"),
        format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-STREAM-INF:BANDWIDTH=4300000,RESOLUTION=1280x720,CODECS=\"avc1.64001f\"\n{RENDITION}/index.m3u8\n"
        )
        .as_bytes(),
    )?;
    let mut media = String::from(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n",
    );
    for i in 1..=o.segments {
        let _ = write!(media, "#EXTINF:4.000,\nseg-{i:05}.m4s\n");
    }
    media.push_str("#EXT-X-ENDLIST\n");
    write(&rend.join("index.m3u8"), media.as_bytes())?;
    write(&rend.join("init.mp4"), &segment_bytes(0, 1400))?;
    for i in 1..=o.segments {
        write(
            &rend.join(format!("seg-{i:05}.m4s")),
            &segment_bytes(i, o.segment_bytes),
        )?;
    }

    // A self-signed certificate for localhost.
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| OcaError::Tls(format!("generating a certificate: {e}")))?;
    write(&dir.join("tls/cert.pem"), ck.cert.pem().as_bytes())?;
    write(
        &dir.join("tls/key.pem"),
        ck.signing_key.serialize_pem().as_bytes(),
    )?;

    // A signing key and an admin token, both random.
    let mut secret = [0u8; 32];
    let mut admin = [0u8; 18];
    aws_lc_rs::rand::fill(&mut secret)
        .and_then(|()| aws_lc_rs::rand::fill(&mut admin))
        .map_err(|_| OcaError::Tls("no randomness available".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    write(
        &dir.join("signing-keys.toml"),
        format!("[demo1]\nsecret = \"{}\"\n", b64.encode(secret)).as_bytes(),
    )?;
    let admin_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(admin);
    let admin_hash = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        admin_token.as_bytes(),
    ));
    let config = format!(
        r#"# Written by `oca demo`. See oca/etc/oca.toml for every key.
[server]
id = "oca-demo"
https-listen = "127.0.0.1:{https}"
http-listen = "127.0.0.1:{http}"
drain-deadline = "5s"

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[tokens]
keys-file = "signing-keys.toml"

[admin]
listen = "127.0.0.1:{admin}"
token-sha256 = "{admin_hash}"

[storage]
root = "objects"
state-dir = "state"
ram-bytes = "8MiB"

[log]
access-log = true
"#,
        https = o.https_port,
        http = o.http_port,
        admin = o.admin_port,
    );
    let cfg_path = dir.join("oca.toml");
    write(&cfg_path, config.as_bytes())?;
    Ok((cfg_path, admin_token))
}

/// The commands the demo prints once the appliance listens.
pub fn instructions(
    cfg: &Config,
    https: Option<SocketAddr>,
    http: Option<SocketAddr>,
    admin: SocketAddr,
    admin_token: &str,
) -> Result<String, OcaError> {
    let keys = crate::app::load_keys(&cfg.tokens.keys_file)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seg = ObjectKey::parse(&format!("{TITLE}/{RENDITION}/seg-00001.m4s"))
        .map_err(|e| OcaError::Tls(e.to_string()))?;
    let master = ObjectKey::parse(&format!("{TITLE}/master.m3u8"))
        .map_err(|e| OcaError::Tls(e.to_string()))?;
    let sign = |base: &str, key: &ObjectKey| {
        sign_url(
            &keys,
            &SignRequest {
                kid: None,
                key,
                ttl: Duration::from_secs(3600),
                n: 1,
                client_prefix: None,
                base,
                now_unix: now,
            },
        )
        .map_err(OcaError::Tls)
    };
    let cert = cfg.tls.cert.display();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "oca demo: one appliance is serving {TITLE} (signed URLs valid for 1 hour)."
    );
    if let Some(a) = https {
        let base = format!("https://localhost:{}", a.port());
        let url = sign(&base, &seg)?;
        let _ = writeln!(
            out,
            "\n# A signed byte range over HTTPS, HTTP/1.1 (expect 206 and 1024 bytes):"
        );
        let _ = writeln!(
            out,
            "curl -sS --http1.1 --cacert {cert} -r 0-1023 -o /dev/null -w '%{{http_code}} %{{size_download}} %{{http_version}}\\n' '{url}'"
        );
        let _ = writeln!(out, "\n# The same over HTTP/2 (expect 206 and 1024 bytes):");
        let _ = writeln!(
            out,
            "curl -sS --http2 --cacert {cert} -r 0-1023 -o /dev/null -w '%{{http_code}} %{{size_download}} %{{http_version}}\\n' '{url}'"
        );
        let _ = writeln!(
            out,
            "\n# The master playlist (the token covers the whole title):"
        );
        let _ = writeln!(out, "curl -sS --cacert {cert} '{}'", sign(&base, &master)?);
        let _ = writeln!(out, "\n# A forged token is refused (expect 403):");
        let forged = url.replacen("/t/v1.", "/t/v1.1", 1);
        let _ = writeln!(
            out,
            "curl -sS --cacert {cert} -o /dev/null -w '%{{http_code}}\\n' '{forged}'"
        );
    }
    if let Some(a) = http {
        let url = sign(&format!("http://127.0.0.1:{}", a.port()), &seg)?;
        let _ = writeln!(
            out,
            "\n# Plain HTTP/1.1 with sendfile, a suffix range (expect 206 and 4096 bytes):"
        );
        let _ = writeln!(
            out,
            "curl -sS -H 'Range: bytes=-4096' -o /dev/null -w '%{{http_code}} %{{size_download}}\\n' '{url}'"
        );
    }
    let _ = writeln!(out, "\n# Metrics and status on the admin port:");
    let _ = writeln!(
        out,
        "curl -sS -H 'Authorization: Bearer {admin_token}' http://{admin}/metrics | grep ^oca_http_requests"
    );
    let _ = writeln!(
        out,
        "curl -sS -H 'Authorization: Bearer {admin_token}' http://{admin}/v1/status"
    );
    let _ = writeln!(out, "\n# Press Ctrl-C to drain and stop.");
    Ok(out)
}
