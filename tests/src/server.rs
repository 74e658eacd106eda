//! `oca serve` as a child process: found next to the test executable, started on free ports
//! (retried on the rare bind race), ready once `/readyz` answers 200, killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::fixture::{Fixture, Opts, Ports};

/// How long a server may take to answer `/readyz` after it was started.
pub const READY_LIMIT: Duration = Duration::from_secs(10);

/// The `oca` binary built by `cargo build --release --bins`: `target/release/oca`, the
/// sibling of the directory holding the test executable (`target/release/deps/e2e-HASH`).
pub fn oca_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a parent dir");
    let profile = deps.parent().expect("deps dir has a parent dir");
    let bin = profile.join("oca");
    assert!(
        bin.is_file(),
        "the oca binary is missing at {}: run `cargo build --release --bins` first (with the same \
         CARGO_TARGET_DIR) and then `cargo test --release -p oca-tests`",
        bin.display()
    );
    bin
}

/// Run `oca ARGS` to completion (for the CLI subcommands).
pub fn oca(args: &[&str]) -> std::process::Output {
    oca_in(args, None)
}

/// Run `oca ARGS` in `dir` to completion.
pub fn oca_in(args: &[&str], dir: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(oca_bin());
    cmd.args(args).stdin(Stdio::null()).env_remove("OCA_CONFIG");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.output().expect("running oca")
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    /// Send a signal.
    pub fn signal(&self, sig: Signal) {
        nix::sys::signal::kill(self.pid(), sig)
            .unwrap_or_else(|e| panic!("kill -{sig} {}: {e}", self.child.id()));
    }

    /// The exit status if it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Wait for the process to exit, at most `limit`; panics with its log otherwise.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            if t0.elapsed() > limit {
                panic!(
                    "process {} did not exit within {limit:?}; its log:\n{}",
                    self.child.id(),
                    self.log_text()
                );
            }
            std::thread::sleep(crate::POLL_PAUSE);
        }
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panic (with its log) if the process is no longer running.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.exited() {
            panic!("oca exited ({st}); its log:\n{}", self.log_text());
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One running `oca serve` with its fixture.
#[derive(Debug)]
pub struct Server {
    /// Declared first: dropped (killed) before the fixture's folder is removed.
    pub proc: ChildGuard,
    pub fx: Fixture,
    pub opts: Opts,
    pub ports: Ports,
    pub config: PathBuf,
}

/// `GET path` on a loopback port with a blocking socket; the status code, if any.
pub fn blocking_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

impl Server {
    /// Start `oca serve` on a new fixture with default options.
    pub fn start_default() -> Server {
        Server::start(Fixture::new(), Opts::default())
    }

    /// Start `oca serve` on `fx` with `opts`, and wait until `/readyz` answers 200.
    pub fn start(fx: Fixture, opts: Opts) -> Server {
        let mut last_log = String::new();
        for attempt in 0..5 {
            let ports = Ports::free();
            let config = fx.write_config(&opts, ports);
            let log = fx.path(&format!("oca-{attempt}.log"));
            let proc = spawn_serve(&config, &log, &opts.env);
            match wait_ready(proc, ports.admin) {
                Ok(proc) => {
                    return Server {
                        proc,
                        fx,
                        opts,
                        ports,
                        config,
                    };
                }
                Err(text) if text.contains("cannot listen on") => {
                    // Another process took a port between our probe and oca's bind.
                    last_log = text;
                }
                Err(text) => panic!("oca serve did not become ready; its log:\n{text}"),
            }
        }
        panic!("oca serve could not bind free ports in 5 tries; last log:\n{last_log}");
    }

    /// Stop this process (SIGKILL if still running) and start a new one on the same fixture
    /// with `opts` (new ports).
    pub fn restart_with(self, opts: Opts) -> Server {
        let Server { proc, fx, .. } = self;
        drop(proc);
        Server::start(fx, opts)
    }

    /// `curl` an admin request with the admin token: `(status, body)`. `body` is a file to
    /// upload (`--data-binary @file`).
    pub fn admin_curl(
        &self,
        method: &str,
        path: &str,
        body: Option<&Path>,
        headers: &[(&str, String)],
    ) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--path-as-is",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", self.fx.admin_token));
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = body {
            cmd.arg("--data-binary").arg(format!("@{}", b.display()));
        }
        cmd.arg(format!("http://127.0.0.1:{}{path}", self.ports.admin));
        let out = cmd.output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Send a signal to the server.
    pub fn signal(&self, sig: Signal) {
        self.proc.signal(sig);
    }

    /// Panic (with the log) if the server process died.
    pub fn assert_alive(&mut self) {
        self.proc.assert_alive();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.proc.log_text()
    }

    /// `/t/{token}/{key}` with a valid whole-title k1 token.
    pub fn signed(&self, key: &str) -> String {
        self.fx.signed(key)
    }
}

fn spawn_serve(config: &Path, log: &Path, env: &[(&'static str, String)]) -> ChildGuard {
    let err = std::fs::File::create(log).expect("create log file");
    let out = err.try_clone().expect("clone log file");
    let child = Command::new(oca_bin())
        .arg("serve")
        .arg("-c")
        .arg(config)
        .env_remove("OCA_CONFIG")
        .env_remove("OCA_LOG")
        .env_remove("FAILPOINTS")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn oca serve");
    ChildGuard {
        child,
        log: log.to_path_buf(),
    }
}

/// Poll `/readyz` until it answers 200 (each try is a connect), at most [`READY_LIMIT`].
/// On failure the child is killed and its log returned.
fn wait_ready(mut proc: ChildGuard, admin: u16) -> Result<ChildGuard, String> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = proc.exited() {
            return Err(format!("(exited: {st})\n{}", proc.log_text()));
        }
        if blocking_status(admin, "/readyz") == Some(200) {
            return Ok(proc);
        }
        if t0.elapsed() > READY_LIMIT {
            return Err(format!(
                "(no 200 from /readyz within {READY_LIMIT:?})\n{}",
                proc.log_text()
            ));
        }
        std::thread::sleep(crate::POLL_PAUSE);
    }
}
