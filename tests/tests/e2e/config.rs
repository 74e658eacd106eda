//! The command line: help texts, `check-config` on good and bad configs (exit 64, the file and
//! the problem named), `serve` refusing a bad config, the shipped template, `sign-url` and
//! `hash-token`.

use std::path::Path;

use oca_tests::fixture::{Fixture, Opts, Ports, SEG, SEG_1080};
use oca_tests::server::oca;
use oca_tests::{Proto, Server, now_unix, sha256_hex};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_texts() {
    for (args, needles) in [
        (
            &["--help"][..],
            &["serve", "check-config", "sign-url", "hash-token", "demo"][..],
        ),
        (&["serve", "--help"], &["--config"]),
        (&["check-config", "--help"], &["--config"]),
        (
            &["sign-url", "--help"],
            &[
                "--config",
                "--kid",
                "--ttl",
                "--scope",
                "--client-prefix",
                "--base",
            ],
        ),
        (&["hash-token", "--help"], &["TOKEN"]),
        (
            &["demo", "--help"],
            &["--dir", "--https-port", "--http-port", "--admin-port"],
        ),
    ] {
        let o = oca(args);
        assert!(o.status.success(), "oca {args:?}: {}", o.status);
        let out = text(&o.stdout);
        for n in needles {
            assert!(out.contains(n), "oca {args:?} mentions {n}:\n{out}");
        }
    }
    let o = oca(&["--version"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).starts_with("oca "), "{}", text(&o.stdout));
    let o = oca(&["no-such-command"]);
    assert!(!o.status.success(), "an unknown subcommand fails");
}

/// Run check-config on `path`; (exit code, stderr).
fn check(path: &Path) -> (Option<i32>, String) {
    let o = oca(&["check-config", "-c", path.to_str().unwrap()]);
    (o.status.code(), text(&o.stderr))
}

#[test]
fn check_config_accepts_a_good_config() {
    let fx = Fixture::new();
    let cfg = fx.write_config(&Opts::default(), Ports::free());
    let o = oca(&["check-config", "-c", cfg.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "check-config on a good config: {}\n{}",
        o.status,
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("ok"), "{}", text(&o.stdout));
}

#[test]
fn check_config_names_the_file_and_the_problem() {
    let fx = Fixture::new();
    let good = fx.config_text(&Opts::default(), Ports::free());
    let cfg_file = fx.path("bad.toml");
    let cfg = cfg_file.to_str().unwrap().to_string();
    fx.write_raw("tls/garbage.pem", b"this is not a certificate\n");
    fx.write_raw(
        "short-keys.toml",
        b"[k1]\nsecret = \"c2hvcnQtc2VjcmV0\"\n", // "short-secret": 12 bytes
    );
    fx.write_raw(
        "badkid-keys.toml",
        b"[K-1]\nsecret = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
    );
    let gp = fx.path("tls/garbage.pem").display().to_string();
    let short = fx.path("short-keys.toml").display().to_string();
    let badkid = fx.path("badkid-keys.toml").display().to_string();
    let missing_cert = fx.path("tls/missing-cert.pem").display().to_string();
    let missing_key = fx.path("tls/missing-key.pem").display().to_string();
    let missing_keys = fx.path("missing-keys.toml").display().to_string();
    let sub = |from: &str, to: &str| {
        assert!(good.contains(from), "template text has {from:?}");
        good.replacen(from, to, 1)
    };
    // (what, config text, the file the message must name, what else it must say)
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "unknown key",
            sub("[server]\n", "[server]\nbogus-key = 1\n"),
            cfg.clone(),
            "bogus-key",
        ),
        (
            "unknown section",
            format!("{good}\n[nope]\nx = 1\n"),
            cfg.clone(),
            "nope",
        ),
        (
            "bad duration",
            sub("drain-deadline = \"10s\"", "drain-deadline = \"soon\""),
            cfg.clone(),
            "drain-deadline",
        ),
        (
            "bad size unit",
            sub("ram-bytes = \"1MiB\"", "ram-bytes = \"12 parsecs\""),
            cfg.clone(),
            "ram-bytes",
        ),
        (
            "bad listen address",
            sub(
                "https-listen = \"127.0.0.1:",
                "https-listen = \"not-an-address:",
            ),
            cfg.clone(),
            "https-listen",
        ),
        (
            "bad io engine",
            sub("io-engine = \"auto\"", "io-engine = \"magic\""),
            cfg.clone(),
            "io-engine",
        ),
        (
            "missing admin token",
            good.lines()
                .filter(|l| !l.starts_with("token-sha256"))
                .collect::<Vec<_>>()
                .join("\n"),
            cfg.clone(),
            "admin.token-sha256",
        ),
        (
            "short admin token hash",
            {
                let line = good
                    .lines()
                    .find(|l| l.starts_with("token-sha256"))
                    .unwrap();
                sub(line, "token-sha256 = \"abcd\"")
            },
            cfg.clone(),
            "admin.token-sha256",
        ),
        (
            "zero max-connections",
            format!(
                "{}max-connections = 0\n{}",
                &good[..good.find("[log]").unwrap()],
                &good[good.find("[log]").unwrap()..]
            ),
            cfg.clone(),
            "max-connections",
        ),
        (
            "not TOML at all",
            "this is not toml = = =\n".to_string(),
            cfg.clone(),
            "",
        ),
        (
            "missing cert file",
            sub(
                "cert = \"tls/cert.pem\"",
                &format!("cert = \"{missing_cert}\""),
            ),
            missing_cert.clone(),
            "",
        ),
        (
            "unparsable cert",
            sub("cert = \"tls/cert.pem\"", "cert = \"tls/garbage.pem\""),
            gp.clone(),
            "",
        ),
        (
            "missing TLS key file",
            sub("key = \"tls/key.pem\"", &format!("key = \"{missing_key}\"")),
            missing_key.clone(),
            "",
        ),
        (
            "missing signing key file",
            sub(
                "keys-file = \"signing-keys.toml\"",
                "keys-file = \"missing-keys.toml\"",
            ),
            missing_keys.clone(),
            "",
        ),
        (
            "signing key with a short secret",
            sub(
                "keys-file = \"signing-keys.toml\"",
                "keys-file = \"short-keys.toml\"",
            ),
            short.clone(),
            "shorter than 16 bytes",
        ),
        (
            "signing key with a bad kid",
            sub(
                "keys-file = \"signing-keys.toml\"",
                "keys-file = \"badkid-keys.toml\"",
            ),
            badkid.clone(),
            "K-1",
        ),
        (
            "missing storage root",
            sub("root = \"objects\"", "root = \"no-such-dir\""),
            "no-such-dir".to_string(),
            "",
        ),
    ];
    for (what, body, file, needle) in cases {
        fx.write_raw("bad.toml", body.as_bytes());
        let (code, stderr) = check(&cfg_file);
        assert_eq!(code, Some(64), "{what}: exit code 64; stderr:\n{stderr}");
        assert!(
            stderr.contains(&file),
            "{what}: stderr names {file}:\n{stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{what}: stderr says {needle:?}:\n{stderr}"
        );
        assert!(
            stderr.lines().count() <= 12,
            "{what}: a short message, not a backtrace:\n{stderr}"
        );
    }
    let (code, stderr) = check(&fx.path("no-such-config.toml"));
    assert_eq!(code, Some(64), "a missing config file: {stderr}");
    assert!(stderr.contains("no-such-config.toml"), "{stderr}");
}

#[test]
fn serve_refuses_a_bad_config_with_64() {
    let fx = Fixture::new();
    let good = fx.config_text(&Opts::default(), Ports::free());
    for (what, body) in [
        (
            "bad duration",
            good.replacen("drain-deadline = \"10s\"", "drain-deadline = \"x\"", 1),
        ),
        (
            "missing cert",
            good.replacen("cert = \"tls/cert.pem\"", "cert = \"tls/none.pem\"", 1),
        ),
        (
            "missing keys",
            good.replacen(
                "keys-file = \"signing-keys.toml\"",
                "keys-file = \"none.toml\"",
                1,
            ),
        ),
    ] {
        fx.write_raw("serve-bad.toml", body.as_bytes());
        let o = oca(&["serve", "-c", fx.path("serve-bad.toml").to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(64),
            "oca serve with a {what}: exit 64\n{}",
            text(&o.stderr)
        );
    }
}

/// The commented template parses; check-config fails only because its certificate paths do
/// not exist here.
#[test]
fn the_template_parses() {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../oca/etc/oca.toml");
    assert!(template.is_file(), "{} exists", template.display());
    let (code, stderr) = check(&template);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("/etc/oca/tls/cert.pem"),
        "the template fails on the missing certificate, not its syntax:\n{stderr}"
    );
    for bad in [
        "TOML parse error",
        "unknown field",
        "invalid",
        "expected",
        "must be",
    ] {
        assert!(
            !stderr.contains(bad),
            "template error mentions {bad:?}:\n{stderr}"
        );
    }
}

#[test]
fn hash_token_prints_sha256() {
    let o = oca(&["hash-token", "abc"]);
    assert!(o.status.success());
    assert_eq!(
        text(&o.stdout).trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(sha256_hex(b"abc"), text(&o.stdout).trim());
}

/// URLs printed by `oca sign-url` are served; scope and client prefix flags do what they say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_url_output_is_served() {
    let srv = Server::start_default();
    let cfg = srv.config.to_str().unwrap().to_string();
    let base = format!("https://localhost:{}", srv.ports.https);
    let sign = |extra: &[&str], key: &str| {
        let mut args = vec!["sign-url", "-c", &cfg, "--base", &base];
        args.extend_from_slice(extra);
        args.push(key);
        let o = oca(&args);
        assert!(
            o.status.success(),
            "sign-url {extra:?}: {}",
            text(&o.stderr)
        );
        let url = text(&o.stdout).trim().to_string();
        url.strip_prefix(&base)
            .unwrap_or_else(|| panic!("{url} starts with {base}"))
            .to_string()
    };

    let path = sign(&[], SEG);
    let tok = path.split('/').nth(2).unwrap();
    let fields: Vec<&str> = tok.split('.').collect();
    assert_eq!(
        (fields[0], fields[2], fields[3], fields[4]),
        ("v1", "k1", "1", "-"),
        "{tok}"
    );
    let exp: u64 = fields[1].parse().unwrap();
    let want = now_unix() + 6 * 3600;
    assert!(
        exp.abs_diff(want) < 120,
        "default ttl is 6h: exp {exp}, want ~{want}"
    );
    assert!(path.ends_with(SEG));
    let r = srv.get(Proto::H1, &path).await;
    assert_eq!(r.status, 200);
    assert!(r.body[..] == *srv.fx.object(SEG));

    let path = sign(&["--kid", "k1", "--ttl", "10m", "--scope", "2"], SEG);
    assert_eq!(srv.get(Proto::H2, &path).await.status, 200);
    let tok = path.split('/').nth(2).unwrap();
    let other = format!("/t/{tok}/{SEG_1080}");
    assert_eq!(
        srv.get(Proto::H2, &other).await.status,
        403,
        "--scope 2 covers one rendition"
    );

    let path = sign(&["--client-prefix", "127.0.0.0/8"], SEG);
    assert_eq!(srv.get(Proto::Plain, &path).await.status, 200);
    let path = sign(&["--client-prefix", "192.0.2.0/24"], SEG);
    assert_eq!(srv.get(Proto::Plain, &path).await.status, 403);

    // Bad input to sign-url is a usage error.
    for (args, needle) in [
        (vec!["sign-url", "-c", &cfg, "--kid", "nokid", SEG], "nokid"),
        (vec!["sign-url", "-c", &cfg, "movie/../x"], "movie/../x"),
        (
            vec![
                "sign-url",
                "-c",
                &cfg,
                "--client-prefix",
                "300.1.1.1/8",
                SEG,
            ],
            "300.1.1.1/8",
        ),
    ] {
        let o = oca(&args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(needle),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
}
