//! The fill executor against real parts: an in-process S3 server (s3s-fs, SigV4 on), real
//! `oca` appliances with drives (child processes), and a fault-injecting TCP proxy in front
//! of the S3 server for the faults a healthy server cannot be made to show (5xx, a stall, a
//! connection cut mid-object). Nothing sleeps to synchronise: waits are bounded polls.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fill_controller::FillError;
use fill_controller::execute::{Appliance, ExecOptions, Executor, Report, Stop};
use fill_controller::journal::Journal;
use fill_controller::metrics::{Metrics, ObjectOutcome, SourceLabel};
use fill_controller::origin::{FaultKind, Origin, S3Settings};
use fill_controller::plan::{Delete, Fill, Plan, Source};
use hyper_util::rt::{TokioExecutor, TokioIo};
use oca_common::ObjectKey;
use oca_common::sites::Sites;
use oca_common::token::SigningKey;
use oca_common::wire::{ManifestFile, RenditionId, RenditionManifest, Tier};
use oca_tests::{Fixture, Opts, Proto, Server, poll_until, random_bytes, sha256_hex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const AK: &str = "fill-test-ak";
const SK: &str = "fill-test-secret-key-0123456789";
const BUCKET: &str = "media";

// ---------------------------------------------------------------- the S3 server

/// s3s-fs on 127.0.0.1:0 with SigV4 credentials `AK`/`SK`, bucket `BUCKET`.
struct S3 {
    addr: SocketAddr,
    _root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn s3_server() -> S3 {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(BUCKET)).unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(AK, SK));
    let service = b.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let conn = http
                .serve_connection(TokioIo::new(sock), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    S3 {
        addr,
        _root: root,
        task,
    }
}

fn settings(addr: SocketAddr, secret: &str) -> S3Settings {
    S3Settings {
        bucket: BUCKET.into(),
        region: "us-east-1".into(),
        endpoint: Some(format!("http://{addr}")),
        access_key_id: AK.into(),
        secret_access_key: secret.into(),
        allow_http: true,
        prefix: String::new(),
        // One request per connection, so the proxy sees (and can break) every GET.
        pool_max_idle_per_host: Some(0),
    }
}

// ---------------------------------------------------------------- the fault proxy

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answer 503 without asking the server.
    Status503,
    /// Forward the first `CUT_AT` bytes of the answer, then go silent.
    Stall,
    /// Forward the first `CUT_AT` bytes of the answer, then close.
    Cut,
}

/// Bytes of the answer (headers and the start of the body) passed before a stall or a cut.
const CUT_AT: usize = 4000;

/// A TCP proxy in front of the S3 server that breaks the next `times` GETs whose path
/// contains a pattern, and counts connections.
#[derive(Clone)]
struct Proxy {
    addr: SocketAddr,
    faults: Arc<Mutex<Vec<(String, Fault, u32)>>>,
    conns: Arc<AtomicUsize>,
    /// Connections open now, and the most ever open at once.
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Proxy {
            addr: listener.local_addr().unwrap(),
            faults: Arc::default(),
            conns: Arc::default(),
            open: Arc::default(),
            max_open: Arc::default(),
        };
        let p2 = p.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                p2.conns.fetch_add(1, Ordering::SeqCst);
                let now = p2.open.fetch_add(1, Ordering::SeqCst) + 1;
                p2.max_open.fetch_max(now, Ordering::SeqCst);
                let p3 = p2.clone();
                tokio::spawn(async move {
                    let _ = p3.handle(sock, upstream).await;
                    p3.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        p
    }

    fn inject(&self, pattern: &str, fault: Fault, times: u32) {
        self.faults
            .lock()
            .unwrap()
            .push((pattern.to_owned(), fault, times));
    }

    fn take_fault(&self, head: &str) -> Option<Fault> {
        let line = head.lines().next().unwrap_or("");
        if !line.starts_with("GET ") {
            return None;
        }
        let mut f = self.faults.lock().unwrap();
        let hit = f
            .iter_mut()
            .find(|(pat, _, n)| *n > 0 && line.contains(pat.as_str()))?;
        hit.2 -= 1;
        Some(hit.1)
    }

    async fn handle(&self, mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 8192];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = client.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let fault = self.take_fault(&String::from_utf8_lossy(&head));
        if fault == Some(Fault::Status503) {
            client
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
        let mut server = TcpStream::connect(upstream).await?;
        server.write_all(&head).await?;
        let Some(fault) = fault else {
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
            return Ok(());
        };
        let mut passed = 0;
        while passed < CUT_AT {
            let n = server.read(&mut buf[..(CUT_AT - passed).min(8192)]).await?;
            if n == 0 {
                break;
            }
            client.write_all(&buf[..n]).await?;
            passed += n;
        }
        if fault == Fault::Stall {
            // Silent until the client gives up and closes.
            while client.read(&mut buf).await? > 0 {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- appliances and plans

fn start_oca() -> Server {
    let opts = Opts {
        drives: vec![("flash", "d0", "64MiB"), ("disk", "d1", "256MiB")],
        ..Opts::default()
    };
    Server::start(Fixture::new(), opts)
}

fn appliance(id: &str, srv: &Server) -> Appliance {
    Appliance {
        id: id.into(),
        site: "s1".into(),
        cluster: "c1".into(),
        admin: format!("http://127.0.0.1:{}", srv.ports.admin),
        admin_token: srv.fx.admin_token.clone(),
        plain: Some(format!("http://127.0.0.1:{}", srv.ports.http)),
    }
}

fn sites(rate: &str, budget: &str) -> Sites {
    sites_with(rate, budget, "UTC", "02:00-14:00")
}

fn sites_with(rate: &str, budget: &str, tz: &str, window: &str) -> Sites {
    Sites::parse(&format!(
        "[[site]]\nid = \"s1\"\ntime-zone = \"{tz}\"\nfill-window = \"{window}\"\n\
         fill-rate-bps = \"{rate}\"\nnightly-budget = \"{budget}\"\n\n\
         [[cluster]]\nid = \"c1\"\nsite = \"s1\"\n"
    ))
    .unwrap()
}

fn fast_opts() -> ExecOptions {
    ExecOptions {
        ignore_window: true,
        idle_timeout: Duration::from_millis(1500),
        attempts: 3,
        backoff: Duration::from_millis(50),
        ..ExecOptions::default()
    }
}

/// A rendition's files: name → bytes.
struct Rend {
    id: RenditionId,
    files: Vec<(String, Vec<u8>)>,
}

impl Rend {
    fn new(title: &str, rendition: &str, sizes: &[usize]) -> Rend {
        let files = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("seg-{i:05}.m4s"), random_bytes(*n)))
            .collect();
        Rend {
            id: RenditionId::new(title, rendition).unwrap(),
            files,
        }
    }

    fn manifest(&self) -> RenditionManifest {
        RenditionManifest {
            title: self.id.title().into(),
            rendition: self.id.rendition().into(),
            files: self
                .files
                .iter()
                .map(|(name, b)| ManifestFile {
                    name: name.clone(),
                    size: b.len() as u64,
                    sha256: sha256_hex(b),
                })
                .collect(),
            total_files: self.files.len() as u32,
            published: Some(1_780_000_000),
        }
    }

    fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.1.len() as u64).sum()
    }

    fn key(&self, i: usize) -> String {
        format!("{}/{}", self.id, self.files[i].0)
    }

    async fn upload(&self, origin: &Origin) {
        for (name, b) in &self.files {
            let key = self.id.key(name).unwrap();
            origin.put(&key, Bytes::from(b.clone())).await.unwrap();
        }
    }
}

fn fill(appliance: &str, r: &Rend, source: Source) -> Fill {
    Fill {
        appliance: appliance.into(),
        cluster: "c1".into(),
        rendition: r.id.clone(),
        bytes: r.bytes(),
        tier: Tier::Disk,
        value: 1.0,
        source,
        needs_deletes: Vec::new(),
    }
}

fn manifests(rs: &[&Rend]) -> BTreeMap<RenditionId, RenditionManifest> {
    rs.iter().map(|r| (r.id.clone(), r.manifest())).collect()
}

fn plan(fills: Vec<Fill>, deletes: Vec<Delete>) -> Plan {
    Plan {
        fills,
        deletes,
        ..Plan::default()
    }
}

/// The renditions the appliance's inventory lists, less the fixture's sample title.
async fn held(srv: &Server) -> Vec<String> {
    let inv = srv
        .admin("/v1/inventory", Some(&srv.fx.admin_token))
        .await
        .json();
    inv["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rendition"].as_str().unwrap().to_owned())
        // The fixture's hand-placed sample titles are not ours.
        .filter(|r| !r.starts_with("movie/") && !r.starts_with("other/"))
        .collect()
}

/// Every file of `r` is served by `srv` with the origin's bytes.
async fn assert_served(srv: &Server, r: &Rend) {
    for (i, (_, b)) in r.files.iter().enumerate() {
        let resp = srv.get(Proto::Plain, &srv.signed(&r.key(i))).await;
        assert_eq!(resp.status, 200, "{}", r.key(i));
        assert!(
            resp.body == *b,
            "{}: bytes differ from the origin's",
            r.key(i)
        );
    }
}

fn executor(
    origin: Origin,
    apps: Vec<Appliance>,
    sites: Sites,
    opts: ExecOptions,
    state: &Path,
) -> (Executor, Metrics) {
    let metrics = Metrics::default();
    let ex = Executor::new(
        origin,
        apps,
        sites,
        metrics.clone(),
        opts,
        state.to_path_buf(),
    );
    (ex, metrics)
}

fn only(report: &Report, id: &str) -> fill_controller::execute::ApplianceReport {
    report
        .get(id)
        .cloned()
        .unwrap_or_else(|| panic!("no report for {id}: {report:?}"))
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_from_s3_then_from_a_peer_and_deletes_after_the_fills() {
    let s3 = s3_server().await;
    let origin = Origin::s3(&settings(s3.addr, SK)).unwrap();
    let a = Rend::new("tears", "720p", &[1342, 300_000, 300_000, 150_000]);
    let b = Rend::new("tears", "1080p", &[700_000, 700_000]);
    a.upload(&origin).await;
    b.upload(&origin).await;
    let (o1, o2) = (start_oca(), start_oca());
    let state = tempfile::tempdir().unwrap();
    let mut opts = fast_opts();
    let secret = o1.fx.secrets.get("k1").unwrap().clone();
    opts.peer_key = Some(SigningKey {
        kid: "k1".into(),
        secret,
    });
    let apps = vec![appliance("a1", &o1), appliance("a2", &o2)];
    let (ex, m) = executor(origin, apps, sites("1Gbps", "1TB"), opts, state.path());

    // Night 1: both renditions onto a1 from the origin.
    let p1 = plan(
        vec![
            fill("a1", &a, Source::Origin),
            fill("a1", &b, Source::Origin),
        ],
        vec![],
    );
    let r = ex.run("night-1", &p1, &manifests(&[&a, &b])).await.unwrap();
    let r1 = only(&r, "a1");
    assert_eq!(r1.stop, Stop::Done);
    assert_eq!(r1.filled, vec![a.id.clone(), b.id.clone()], "{r1:?}");
    assert_served(&o1, &a).await;
    assert_served(&o1, &b).await;
    let mut h = held(&o1).await;
    h.sort();
    assert_eq!(h, vec!["tears/1080p", "tears/720p"]);
    assert_eq!(m.bytes_of(SourceLabel::Origin), a.bytes() + b.bytes());
    assert_eq!(m.objects_of(ObjectOutcome::Created), 6);

    // Night 2: a2 takes 720p from its peer a1 (signed URL on the plain port); a1 drops
    // 1080p, a deletion no fill needs, so only after the fills.
    let p2 = plan(
        vec![fill(
            "a2",
            &a,
            Source::Peer {
                appliance: "a1".into(),
            },
        )],
        vec![Delete {
            appliance: "a1".into(),
            rendition: b.id.clone(),
            bytes: b.bytes(),
            tier: Tier::Disk,
        }],
    );
    let r = ex.run("night-2", &p2, &manifests(&[&a])).await.unwrap();
    assert_eq!(only(&r, "a2").filled, vec![a.id.clone()]);
    assert_eq!(only(&r, "a1").deleted, vec![b.id.clone()]);
    assert_served(&o2, &a).await;
    assert_eq!(held(&o2).await, vec!["tears/720p"]);
    assert_eq!(held(&o1).await, vec!["tears/720p"]);
    assert_eq!(m.bytes_of(SourceLabel::Peer), a.bytes());
    assert_eq!(m.bytes_of(SourceLabel::Origin), a.bytes() + b.bytes());
    assert_eq!(m.deletions.get(), 1);
    assert_eq!(m.active.get(), 0);

    // A deletion that makes room for a fill runs right before it: 1080p back on a1 after
    // 720p goes.
    let mut f = fill("a1", &b, Source::Origin);
    f.needs_deletes = vec![0];
    let p3 = plan(
        vec![f],
        vec![Delete {
            appliance: "a1".into(),
            rendition: a.id.clone(),
            bytes: a.bytes(),
            tier: Tier::Disk,
        }],
    );
    let r = ex.run("night-3", &p3, &manifests(&[&b])).await.unwrap();
    let r1 = only(&r, "a1");
    assert_eq!((r1.deleted.len(), r1.filled.len()), (1, 1), "{r1:?}");
    assert_eq!(held(&o1).await, vec!["tears/1080p"]);
    // Even with several transfers allowed at once, the deletion is journaled before the
    // first object of the fill that needs it.
    let journal = std::fs::read_to_string(Journal::path_in(state.path())).unwrap();
    let night3 = &journal[journal.find("\"night-3\"").expect("night 3 journaled")..];
    let del = night3.find("\"t\":\"delete\"").expect("deletion journaled");
    let file = night3.find("\"t\":\"file\"").expect("files journaled");
    assert!(del < file, "{journal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_5xx_stall_and_cut_are_retried_until_the_bytes_arrive() {
    let s3 = s3_server().await;
    let direct = Origin::s3(&settings(s3.addr, SK)).unwrap();
    let r = Rend::new("flaky", "720p", &[200_000, 200_000, 200_000]);
    r.upload(&direct).await;
    let proxy = Proxy::start(s3.addr).await;
    proxy.inject(&r.files[0].0, Fault::Status503, 2);
    proxy.inject(&r.files[1].0, Fault::Stall, 1);
    proxy.inject(&r.files[2].0, Fault::Cut, 1);
    let origin = Origin::s3(&settings(proxy.addr, SK)).unwrap();
    let o1 = start_oca();
    let state = tempfile::tempdir().unwrap();
    let (ex, m) = executor(
        origin,
        vec![appliance("a1", &o1)],
        sites("1Gbps", "1TB"),
        fast_opts(),
        state.path(),
    );
    let rep = ex
        .run(
            "p",
            &plan(vec![fill("a1", &r, Source::Origin)], vec![]),
            &manifests(&[&r]),
        )
        .await
        .unwrap();
    assert_eq!(only(&rep, "a1").filled, vec![r.id.clone()], "{rep:?}");
    assert_served(&o1, &r).await;
    assert_eq!(m.errors_of(FaultKind::ServerError), 2);
    assert_eq!(m.errors_of(FaultKind::Stall), 1);
    assert_eq!(m.errors_of(FaultKind::Cut), 1);
    // Every fault was used up (the proxy really broke those requests).
    assert!(proxy.faults.lock().unwrap().iter().all(|f| f.2 == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bytes_in_the_origin_ingest_nothing_and_the_night_goes_on() {
    let s3 = s3_server().await;
    let origin = Origin::s3(&settings(s3.addr, SK)).unwrap();
    let bad = Rend::new("bad", "720p", &[50_000, 60_000]);
    let good = Rend::new("good", "720p", &[40_000]);
    bad.upload(&origin).await;
    good.upload(&origin).await;
    // The origin's second file is not what the catalog says.
    let key = ObjectKey::parse(&bad.key(1)).unwrap();
    origin
        .put(&key, Bytes::from(random_bytes(60_000)))
        .await
        .unwrap();
    let o1 = start_oca();
    let state = tempfile::tempdir().unwrap();
    let (ex, m) = executor(
        origin,
        vec![appliance("a1", &o1)],
        sites("1Gbps", "1TB"),
        fast_opts(),
        state.path(),
    );
    let p = plan(
        vec![
            fill("a1", &bad, Source::Origin),
            fill("a1", &good, Source::Origin),
        ],
        vec![],
    );
    let rep = ex.run("p", &p, &manifests(&[&bad, &good])).await.unwrap();
    let r1 = only(&rep, "a1");
    assert_eq!(r1.failed.len(), 1, "{r1:?}");
    assert_eq!(r1.failed[0].0, bad.id);
    assert!(r1.failed[0].1.contains("wrong bytes"), "{}", r1.failed[0].1);
    assert_eq!(r1.filled, vec![good.id.clone()]);
    // Nothing of the wrong object was kept, and the rendition is not held.
    let resp = o1.get(Proto::Plain, &o1.signed(&bad.key(1))).await;
    assert_eq!(resp.status, 404);
    assert_eq!(held(&o1).await, vec!["good/720p"]);
    assert_eq!(m.errors_of(FaultKind::Checksum), 1);
    // The journal gave it up for the night: a rerun does not try again.
    let before = m.errors_of(FaultKind::Checksum);
    let rep = ex.run("p", &p, &manifests(&[&bad, &good])).await.unwrap();
    assert!(only(&rep, "a1").filled.is_empty());
    assert_eq!(m.errors_of(FaultKind::Checksum), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_stop_the_run_with_a_clear_error_and_no_retry_storm() {
    let s3 = s3_server().await;
    let r = Rend::new("t", "720p", &[10_000, 10_000, 10_000]);
    r.upload(&Origin::s3(&settings(s3.addr, SK)).unwrap()).await;
    let proxy = Proxy::start(s3.addr).await;
    let origin = Origin::s3(&settings(proxy.addr, "not-the-secret-at-all")).unwrap();
    let o1 = start_oca();
    let state = tempfile::tempdir().unwrap();
    let (ex, m) = executor(
        origin,
        vec![appliance("a1", &o1)],
        sites("1Gbps", "1TB"),
        fast_opts(),
        state.path(),
    );
    let t0 = Instant::now();
    let err = ex
        .run(
            "p",
            &plan(vec![fill("a1", &r, Source::Origin)], vec![]),
            &manifests(&[&r]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, FillError::OriginAuth { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("s3://{BUCKET} at http://{}", proxy.addr)),
        "{text}"
    );
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("not-the-secret"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(
        proxy.conns.load(Ordering::SeqCst),
        1,
        "one request, no retries"
    );
    assert_eq!(m.errors_of(FaultKind::Auth), 1);
    assert!(held(&o1).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_run_resumes_from_the_journal_without_resending() {
    let s3 = s3_server().await;
    let origin = Origin::s3(&settings(s3.addr, SK)).unwrap();
    let r = Rend::new("long", "720p", &[250_000; 8]);
    r.upload(&origin).await;
    let o1 = start_oca();
    let state = tempfile::tempdir().unwrap();
    // 8 Mbit/s = 1 MB/s: about 2 s for the rendition, time to crash in the middle.
    let (ex, _) = executor(
        origin.clone(),
        vec![appliance("a1", &o1)],
        sites("8Mbps", "1TB"),
        fast_opts(),
        state.path(),
    );
    let p = plan(vec![fill("a1", &r, Source::Origin)], vec![]);
    let ms = manifests(&[&r]);
    let run = {
        let (p, ms) = (p.clone(), ms.clone());
        tokio::spawn(async move { ex.run("resume", &p, &ms).await })
    };
    let journal = fill_controller::journal::Journal::path_in(state.path());
    poll_until(
        "two objects in the journal",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            let done = text.matches("\"t\":\"file\"").count();
            std::future::ready((done >= 2).then_some(()))
        },
    )
    .await;
    // The crash: the run stops wherever it is, mid-object, and a torn line is left behind.
    run.abort();
    let _ = run.await;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"t\":\"file\",\"pla"))
        .unwrap();
    let done_before = Journal::open(state.path(), "resume")
        .unwrap()
        .state()
        .files
        .len();
    assert!((2..8).contains(&done_before), "{done_before}");
    let (ex, m) = executor(
        origin,
        vec![appliance("a1", &o1)],
        sites("8Mbps", "1TB"),
        fast_opts(),
        state.path(),
    );
    let rep = ex.run("resume", &p, &ms).await.unwrap();
    assert_eq!(only(&rep, "a1").filled, vec![r.id.clone()]);
    assert_served(&o1, &r).await;
    assert_eq!(held(&o1).await, vec!["long/720p"]);
    // The journaled objects were skipped; the rest were sent (or found present, if the
    // crash came between an ingest and its journal line) — never the whole rendition again.
    assert_eq!(m.objects_of(ObjectOutcome::Journaled), done_before as u64);
    assert_eq!(
        m.objects_of(ObjectOutcome::Created) + m.objects_of(ObjectOutcome::Present),
        8 - done_before as u64
    );
    assert!(m.bytes_of(SourceLabel::Origin) <= r.bytes() - 250_000 * done_before as u64);
}

/// A UTC window that opened 5 minutes ago and closes in 30.
fn window_around_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let min = (secs / 60 % 1440) as i64;
    let hm = |m: i64| {
        let m = m.rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    format!("{}-{}", hm(min - 5), hm(min + 30))
}

/// Inside the site's window (not `--now`), the budget stops the appliance after the first
/// fill, and a second plan the same night finds it spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_budget_stops_an_appliance_and_holds_across_runs() {
    let s3 = s3_server().await;
    let origin = Origin::s3(&settings(s3.addr, SK)).unwrap();
    let a = Rend::new("one", "720p", &[300_000]);
    let b = Rend::new("two", "720p", &[300_000]);
    a.upload(&origin).await;
    b.upload(&origin).await;
    let o1 = start_oca();
    let state = tempfile::tempdir().unwrap();
    let (ex, m) = executor(
        origin.clone(),
        vec![appliance("a1", &o1)],
        sites_with("1Gbps", "500kB", "UTC", &window_around_now()),
        ExecOptions {
            ignore_window: false,
            ..fast_opts()
        },
        state.path(),
    );
    let p = plan(
        vec![
            fill("a1", &a, Source::Origin),
            fill("a1", &b, Source::Origin),
        ],
        vec![],
    );
    let rep = ex.run("p", &p, &manifests(&[&a, &b])).await.unwrap();
    let r1 = only(&rep, "a1");
    assert_eq!(r1.stop, Stop::Budget);
    assert_eq!(r1.filled, vec![a.id.clone()]);
    assert_eq!(m.bytes_of(SourceLabel::Origin), a.bytes());
    assert_eq!(held(&o1).await, vec!["one/720p"]);
    // Another plan the same night: the bytes already used still count.
    let p2 = plan(vec![fill("a1", &b, Source::Origin)], vec![]);
    let rep = ex.run("p2", &p2, &manifests(&[&b])).await.unwrap();
    assert_eq!(only(&rep, "a1").stop, Stop::Budget);
    assert_eq!(m.bytes_of(SourceLabel::Origin), a.bytes());
}

/// The rate cap on a real fill: at 16 Mbit/s (2 MB/s), 5 MB take at least
/// (5 MB − burst) / 2 MB/s, and no 1 s window of the sampled byte counter carries more
/// than cap × 1.05 plus the bucket's burst. (The 10 s rule itself is checked on the
/// bucket's schedule with a fixed clock in `bucket.rs`.) One object at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_fill_stays_under_its_rate_cap() {
    let max_open = rate_capped_fill(1).await;
    assert_eq!(max_open, 1, "one object at a time");
}

/// The same cap with 4 objects at once per appliance: the transfers really overlap (the
/// origin sees several GETs open at once, never more than 4) and their sum stays under
/// the cap, because they share the appliance's bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_transfers_share_the_rate_cap() {
    let max_open = rate_capped_fill(4).await;
    assert!((2..=4).contains(&max_open), "{max_open} GETs open at once");
}

/// Fills a 4 × 1.25 MB rendition at 16 Mbit/s with `parallel` transfers at once, checks
/// the cap and the bytes; returns the most origin connections that were open at once.
async fn rate_capped_fill(parallel: usize) -> usize {
    let s3 = s3_server().await;
    let direct = Origin::s3(&settings(s3.addr, SK)).unwrap();
    let r = Rend::new("paced", "720p", &[1_250_000; 4]);
    r.upload(&direct).await;
    let proxy = Proxy::start(s3.addr).await;
    let origin = Origin::s3(&settings(proxy.addr, SK)).unwrap();
    let o1 = start_oca();
    let state = tempfile::tempdir().unwrap();
    let (ex, m) = executor(
        origin,
        vec![appliance("a1", &o1)],
        sites("16Mbps", "1TB"),
        ExecOptions {
            parallel,
            ..fast_opts()
        },
        state.path(),
    );
    let rate = 2_000_000f64;
    let burst = rate * fill_controller::bucket::DEFAULT_BURST_SECS;
    let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let sampler = {
        let (samples, m) = (samples.clone(), m.clone());
        tokio::spawn(async move {
            loop {
                let v = m.bytes_of(SourceLabel::Origin);
                samples.lock().unwrap().push((Instant::now(), v));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t0 = Instant::now();
    let rep = ex
        .run(
            "p",
            &plan(vec![fill("a1", &r, Source::Origin)], vec![]),
            &manifests(&[&r]),
        )
        .await
        .unwrap();
    let elapsed = t0.elapsed();
    sampler.abort();
    assert_eq!(only(&rep, "a1").filled, vec![r.id.clone()]);
    let total = r.bytes() as f64;
    let floor = Duration::from_secs_f64((total - burst) / (rate * 1.05));
    assert!(
        elapsed >= floor,
        "{elapsed:?} < {floor:?}: faster than the cap"
    );
    let s = samples.lock().unwrap().clone();
    for (i, (t, v)) in s.iter().enumerate() {
        for (t2, v2) in &s[i..] {
            if t2.duration_since(*t) <= Duration::from_secs(1) {
                let got = (v2 - v) as f64;
                assert!(
                    got <= rate * 1.05 + burst,
                    "{got} bytes within {:?}",
                    t2.duration_since(*t)
                );
            }
        }
    }
    assert_served(&o1, &r).await;
    assert_eq!(proxy.conns.load(Ordering::SeqCst), 4, "one GET per object");
    proxy.max_open.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------- peers, through the CLI

/// A TCP proxy in front of the S3 server that records the request line of every request
/// (the fill controller only sends GETs through it, which have no body, so every
/// `\r\n\r\n` in the client's bytes ends a request head), on kept-alive connections too.
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Recorder {
            addr: listener.local_addr().unwrap(),
            lines: Arc::default(),
        };
        let lines = r.lines.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let lines = lines.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut acc: Vec<u8> = Vec::new();
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        acc.extend_from_slice(&buf[..n]);
                        while let Some(i) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&acc[..i]).into_owned();
                            let line = head.lines().next().unwrap_or("").to_owned();
                            lines.lock().unwrap().push(line);
                            acc.drain(..i + 4);
                        }
                    }
                });
            }
        });
        r
    }

    /// Requests whose line contains `pattern`.
    fn count(&self, pattern: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pattern))
            .count()
    }
}

/// `fill-controller ARGS` (the real binary), off the runtime's threads.
async fn fill_controller(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fill-controller"))
            .args(&args)
            .env_remove("FILL_CONTROLLER_CONFIG")
            .env("FC_TEST_AK", AK)
            .env("FC_TEST_SK", SK)
            .output()
            .expect("run fill-controller")
    })
    .await
    .unwrap()
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Two real appliances in one cluster, driven by the CLI (`plan`, `run --now`) from config
/// files: night 1 fills a1 from the S3 origin; night 2 adds a2, which the planner fills from
/// its peer a1 — over a1's plain HTTP port (`plain-url`), with URLs signed by the key of
/// `[peers] signing-keys-file`, which both appliances accept. The origin sees no request
/// for the rendition in night 2, and a2 serves the origin's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_appliance_fills_from_its_peer_not_the_origin() {
    let s3 = s3_server().await;
    let direct = Origin::s3(&settings(s3.addr, SK)).unwrap();
    let r = Rend::new("peered", "720p", &[200_000, 150_000, 1_000]);
    r.upload(&direct).await;
    let rec = Recorder::start(s3.addr).await;
    let drives = Opts {
        drives: vec![("disk", "d1", "256MiB")],
        ..Opts::default()
    };
    // Both appliances accept kid k1 with the same secret (as steering's keys are shared).
    let o1 = Server::start(Fixture::new(), drives.clone());
    let mut fx2 = Fixture::new();
    fx2.write_keys(&[("k1", o1.fx.secrets["k1"].clone())]);
    let o2 = Server::start(fx2, drives);

    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel);
    let mut catalog = String::from(
        "[[title]]\nid = \"peered\"\nname = \"Peered\"\n\n[[title.rendition]]\nid = \"720p\"\n\
         codec = \"avc1.64001f\"\nwidth = 1280\nheight = 720\nbitrate-kbps = 3000\n\n",
    );
    for (name, b) in &r.files {
        catalog += &format!(
            "[[title.rendition.file]]\nname = \"{name}\"\nsize = {}\nsha256 = \"{}\"\n\n",
            b.len(),
            sha256_hex(b)
        );
    }
    std::fs::write(p("catalog.toml"), catalog).unwrap();
    std::fs::write(
        p("sites.toml"),
        "[[site]]\nid = \"s1\"\ntime-zone = \"UTC\"\n[[cluster]]\nid = \"c1\"\nsite = \"s1\"\n",
    )
    .unwrap();
    std::fs::write(
        p("forecast.json"),
        r#"[{"rendition": "peered/720p", "region": "s1", "views": 1000}]"#,
    )
    .unwrap();
    let entry = |id: &str, srv: &Server| {
        std::fs::write(p(&format!("{id}.tok")), &srv.fx.admin_token).unwrap();
        format!(
            "[[appliance]]\nid = \"{id}\"\ncluster = \"c1\"\n\
             admin-url = \"http://127.0.0.1:{}\"\nadmin-token-file = \"{id}.tok\"\n\
             plain-url = \"http://127.0.0.1:{}\"\ndisk = \"200MB\"\n\n",
            srv.ports.admin, srv.ports.http
        )
    };
    std::fs::write(
        p("fc.toml"),
        format!(
            "sites-file = \"sites.toml\"\nstate-dir = \"state\"\n[inputs]\n\
             appliances-file = \"appliances.toml\"\ncatalog-file = \"catalog.toml\"\n\
             forecast-file = \"forecast.json\"\n\
             [origin]\nkind = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"http://{}\"\n\
             access-key-id-env = \"FC_TEST_AK\"\nsecret-access-key-env = \"FC_TEST_SK\"\n\
             [peers]\nsigning-keys-file = \"{}\"\nkid = \"k1\"\n",
            rec.addr,
            o1.fx.path("signing-keys.toml").display()
        ),
    )
    .unwrap();
    let cfg = p("fc.toml").to_str().unwrap().to_owned();
    let cli = |args: &[&str]| {
        let mut v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["-c".to_owned(), cfg.clone()]);
        fill_controller(v)
    };

    // Night 1: only a1.
    std::fs::write(p("appliances.toml"), entry("a1", &o1)).unwrap();
    let o = cli(&["check-config"]).await;
    assert!(o.status.success(), "{}", out_text(&o));
    let o = cli(&["plan"]).await;
    assert!(o.status.success(), "{}", out_text(&o));
    let o = cli(&["run", "--now"]).await;
    assert!(o.status.success(), "{}", out_text(&o));
    assert!(
        out_text(&o).contains("a1: 1 rendition(s) filled"),
        "{}",
        out_text(&o)
    );
    assert_served(&o1, &r).await;
    let from_origin = rec.count("/peered/720p/");
    assert_eq!(
        from_origin, 3,
        "night 1 reads each file once from the origin"
    );

    // Night 2: a2 joins; the plan gives it a copy from its peer a1.
    std::fs::write(p("appliances.toml"), entry("a1", &o1) + &entry("a2", &o2)).unwrap();
    let o = cli(&["plan"]).await;
    assert!(o.status.success(), "{}", out_text(&o));
    let saved: fill_controller::nightly::SavedPlan =
        serde_json::from_slice(&std::fs::read(p("state/plan.json")).unwrap()).unwrap();
    let f = saved
        .plan
        .fills
        .iter()
        .find(|f| f.appliance == "a2")
        .unwrap_or_else(|| panic!("no fill on a2: {:?}", saved.plan.fills));
    assert_eq!(
        f.source,
        Source::Peer {
            appliance: "a1".into()
        }
    );
    let o = cli(&["run", "--now"]).await;
    assert!(o.status.success(), "{}", out_text(&o));
    assert!(
        out_text(&o).contains("a2: 1 rendition(s) filled"),
        "{}",
        out_text(&o)
    );
    assert_served(&o2, &r).await;
    assert_eq!(held(&o2).await, vec!["peered/720p"]);
    assert_eq!(
        rec.count("/peered/720p/"),
        from_origin,
        "the origin saw no request for the rendition in night 2: {:?}",
        rec.lines.lock().unwrap()
    );
}
