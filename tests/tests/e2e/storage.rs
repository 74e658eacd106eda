//! The tiered store through the real binary: ingest over the admin port (curl), serving what
//! was ingested, rendition commits and the inventory, restarts, SIGKILL at every point of the
//! ingest path (failpoints that raise SIGKILL, and a kill from outside mid-body), and drives
//! failing with EIO on write, fsync, journal fsync and read.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oca_tests::{Fixture, Opts, Proto, Server, etag_of, poll_until, random_bytes, sha256_hex};

fn drives2(t0: &'static str, t1: &'static str) -> Opts {
    Opts {
        drives: vec![(t0, "d0", "64MiB"), (t1, "d1", "64MiB")],
        ..Opts::default()
    }
}

fn put_file(srv: &Server, name: &str, data: &[u8]) -> PathBuf {
    let p = srv.fx.path(&format!("upload-{name}"));
    std::fs::write(&p, data).unwrap();
    p
}

fn put(srv: &Server, key: &str, data: &[u8], extra: &[(&str, String)]) -> (u16, String) {
    let file = put_file(srv, &key.replace('/', "_"), data);
    let mut headers = vec![("x-oca-sha256", sha256_hex(data))];
    headers.extend(extra.iter().cloned());
    srv.admin_curl("PUT", &format!("/v1/objects/{key}"), Some(&file), &headers)
}

fn tmp_files(srv: &Server, drive: &str) -> usize {
    std::fs::read_dir(srv.fx.path(&format!("{drive}/tmp")))
        .map(|r| r.count())
        .unwrap_or(0)
}

async fn get_status(srv: &Server, key: &str) -> u16 {
    srv.try_request(Proto::H1, "GET", &srv.signed(key), &[])
        .await
        .map(|r| r.status)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_serve_commit_inventory_delete_and_restart() {
    let srv = Server::start(Fixture::new(), drives2("flash", "disk"));
    let seg = random_bytes(300_000);
    let key = "ing/720p/seg-1.m4s";
    let (code, body) = put(&srv, key, &seg, &[]);
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["tier"], "flash");
    assert_eq!(v["size"], 300_000);
    for proto in [Proto::H1, Proto::H2, Proto::Plain] {
        let r = srv.get(proto, &srv.signed(key)).await;
        assert_eq!(r.status, 200, "{proto:?}");
        assert_eq!(r.body, seg, "{proto:?}");
        assert_eq!(r.must("etag"), etag_of(&seg));
    }
    // The same bytes again: 200 and a no-op. Other bytes under the key: 409.
    assert_eq!(put(&srv, key, &seg, &[]).0, 200);
    let (code, body) = put(&srv, key, &random_bytes(10), &[]);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("\"error\":\"conflict\""), "{body}");
    // A body that does not match its digest: 422, nothing kept.
    let file = put_file(&srv, "bad", &random_bytes(5000));
    let (code, body) = srv.admin_curl(
        "PUT",
        "/v1/objects/ing/720p/bad.m4s",
        Some(&file),
        &[("x-oca-sha256", sha256_hex(b"not these bytes"))],
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("checksum_mismatch"), "{body}");
    assert_eq!(get_status(&srv, "ing/720p/bad.m4s").await, 404);
    assert_eq!(tmp_files(&srv, "d0"), 0);
    // Bad requests.
    let small = put_file(&srv, "small", b"abc");
    // (path, headers, expected status)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16);
    let cases: Vec<Case> = vec![
        ("/v1/objects/ing/720p/x", vec![], 400),
        (
            "/v1/objects/ing/720p/x",
            vec![("x-oca-sha256", "zz".into())],
            400,
        ),
        (
            "/v1/objects/ing/720p/x",
            vec![
                ("x-oca-sha256", sha256_hex(b"abc")),
                ("x-oca-tier", "ram".into()),
            ],
            400,
        ),
        (
            "/v1/objects/ing/720p/x",
            vec![
                ("x-oca-sha256", sha256_hex(b"abc")),
                ("x-oca-published", "yesterday".into()),
            ],
            400,
        ),
        (
            "/v1/objects/../etc/passwd",
            vec![("x-oca-sha256", sha256_hex(b"abc"))],
            400,
        ),
    ];
    for (path, headers, want) in cases {
        let (code, body) = srv.admin_curl("PUT", path, Some(&small), &headers);
        assert_eq!(code, want, "{path} {headers:?}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    // No admin token: 401.
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg(format!(
            "http://127.0.0.1:{}/v1/objects/ing/720p/x",
            srv.ports.admin
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    // Larger than every drive of the tier: 507, nothing half-written.
    let (code, body) = put(
        &srv,
        "ing/720p/huge.m4s",
        &random_bytes(65 << 20),
        &[("x-oca-tier", "disk".into())],
    );
    assert_eq!(code, 507, "{body}");
    assert_eq!(tmp_files(&srv, "d1"), 0);

    // A rendition: its second file on disk, then the manifest commit.
    let seg2 = random_bytes(1000);
    assert_eq!(
        put(
            &srv,
            "ing/720p/seg-2.m4s",
            &seg2,
            &[
                ("x-oca-tier", "disk".into()),
                ("x-oca-published", "1700000000".into())
            ]
        )
        .0,
        201
    );
    let r = srv.get(Proto::H1, &srv.signed("ing/720p/seg-2.m4s")).await;
    assert_eq!(
        r.must("last-modified"),
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    let manifest = serde_json::json!({
        "title": "ing", "rendition": "720p", "total_files": 3,
        "files": [
            {"name": "seg-1.m4s", "size": seg.len(), "sha256": sha256_hex(&seg)},
            {"name": "seg-2.m4s", "size": seg2.len(), "sha256": sha256_hex(&seg2)},
        ]
    });
    let mf = put_file(&srv, "manifest.json", manifest.to_string().as_bytes());
    let (code, body) = srv.admin_curl("PUT", "/v1/renditions/ing/720p", Some(&mf), &[]);
    assert_eq!(code, 200, "{body}");
    let entry: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(entry["files_held"], 2);
    // A manifest naming a missing file is refused and changes nothing.
    let bad = serde_json::json!({
        "title": "ing", "rendition": "1080p", "total_files": 1,
        "files": [{"name": "nope.m4s", "size": 1, "sha256": sha256_hex(b"x")}]
    });
    let bf = put_file(&srv, "bad-manifest.json", bad.to_string().as_bytes());
    let (code, body) = srv.admin_curl("PUT", "/v1/renditions/ing/1080p", Some(&bf), &[]);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("nope.m4s is missing"), "{body}");
    let junk = put_file(&srv, "junk.json", b"{not json");
    let (code, _) = srv.admin_curl("PUT", "/v1/renditions/ing/1080p", Some(&junk), &[]);
    assert_eq!(code, 400);
    let inv = srv
        .admin("/v1/inventory", Some(&srv.fx.admin_token))
        .await
        .json();
    assert_eq!(inv["generation"], 1);
    let held: Vec<&str> = inv["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rendition"].as_str().unwrap())
        .collect();
    assert!(held.contains(&"ing/720p"), "{inv}");
    let delta = srv
        .admin("/v1/inventory?since=1", Some(&srv.fx.admin_token))
        .await
        .json();
    assert_eq!(delta["full"], false);
    assert_eq!(delta["added"].as_array().unwrap().len(), 0);
    assert_eq!(
        srv.admin("/v1/inventory?since=x", Some(&srv.fx.admin_token))
            .await
            .status,
        400
    );
    assert_eq!(
        srv.metric("oca_ingests_total", &[("outcome", "created")])
            .await,
        2.0
    );
    assert_eq!(
        srv.metric("oca_ingests_total", &[("outcome", "checksum_mismatch")])
            .await,
        1.0
    );
    assert_eq!(
        srv.metric("oca_drive_objects", &[("tier", "flash")]).await,
        1.0
    );
    assert_eq!(srv.metric("oca_inventory_generation", &[]).await, 1.0);

    // Restart: the objects, the rendition and the generation are still there.
    let srv = srv.restart_with(drives2("flash", "disk"));
    let r = srv.get(Proto::H2, &srv.signed(key)).await;
    assert_eq!(r.body, seg);
    let inv = srv
        .admin("/v1/inventory", Some(&srv.fx.admin_token))
        .await
        .json();
    assert_eq!(inv["generation"], 1);
    // Delete: gone at once, and the rendition drops to its leading file.
    let (code, _) = srv.admin_curl("DELETE", "/v1/objects/ing/720p/seg-2.m4s", None, &[]);
    assert_eq!(code, 200);
    assert_eq!(get_status(&srv, "ing/720p/seg-2.m4s").await, 404);
    let (code, _) = srv.admin_curl("DELETE", "/v1/objects/ing/720p/seg-2.m4s", None, &[]);
    assert_eq!(code, 404);
    let delta = srv
        .admin("/v1/inventory?since=1", Some(&srv.fx.admin_token))
        .await
        .json();
    assert_eq!(delta["generation"], 2);
    assert_eq!(delta["added"][0]["files_held"], 1);
    let (code, _) = srv.admin_curl("DELETE", "/v1/renditions/ing/720p", None, &[]);
    assert_eq!(code, 200);
    assert_eq!(get_status(&srv, key).await, 404);
    let delta = srv
        .admin("/v1/inventory?since=2", Some(&srv.fx.admin_token))
        .await
        .json();
    assert_eq!(delta["removed"][0], "ing/720p");
}

/// Start with a failpoint that SIGKILLs the process at `point`, PUT, and check after a
/// restart that the object is whole (`survives`) or absent, with no temp file left.
async fn kill_at(point: &str, survives: bool) {
    let mut opts = drives2("disk", "disk");
    opts.env = vec![("FAILPOINTS", format!("ingest::{point}=return(kill)"))];
    let mut srv = Server::start(Fixture::new(), opts);
    let data = random_bytes(700_000);
    let key = "crash/r/seg.m4s";
    let (code, _) = put(&srv, key, &data, &[]);
    assert_eq!(code, 0, "{point}: the PUT must not get an answer");
    let status = srv.proc.wait_exit(Duration::from_secs(20));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{point}: killed by the failpoint"
    );
    let srv = srv.restart_with(drives2("disk", "disk"));
    let got = srv
        .try_request(Proto::H1, "GET", &srv.signed(key), &[])
        .await;
    match (survives, got) {
        (true, Ok(r)) => {
            assert_eq!(r.status, 200, "{point}: object lost");
            assert_eq!(r.body, data, "{point}: object not whole");
        }
        (false, Ok(r)) => assert_eq!(r.status, 404, "{point}: object must be absent"),
        (_, Err(e)) => panic!("{point}: {e}"),
    }
    assert_eq!(tmp_files(&srv, "d0") + tmp_files(&srv, "d1"), 0, "{point}");
    // And the key can be ingested again (absent) or is a no-op (present).
    let (code, body) = put(&srv, key, &data, &[]);
    assert_eq!(code, if survives { 200 } else { 201 }, "{point}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_ingest_step_leaves_the_object_whole_or_absent() {
    for (point, survives) in [
        ("after-first-write", false),
        ("after-fsync", false),
        ("after-journal", true),
        ("after-rename", true),
    ] {
        kill_at(point, survives).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_from_outside_mid_body_leaves_nothing() {
    let mut srv = Server::start(Fixture::new(), drives2("disk", "disk"));
    let data = random_bytes(1 << 20);
    let key = "crash/r/half.m4s";
    let mut tcp = TcpStream::connect(("127.0.0.1", srv.ports.admin)).unwrap();
    write!(
        tcp,
        "PUT /v1/objects/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nx-oca-sha256: {}\r\nContent-Length: {}\r\n\r\n",
        srv.fx.admin_token,
        sha256_hex(&data),
        data.len()
    )
    .unwrap();
    tcp.write_all(&data[..data.len() / 2]).unwrap();
    // Wait until the temp file has bytes: the ingest is under way.
    let tmp_dirs = [srv.fx.path("d0/tmp"), srv.fx.path("d1/tmp")];
    poll_until("the ingest's temp file", Duration::from_secs(10), || {
        let dirs = tmp_dirs.clone();
        async move {
            dirs.iter()
                .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
                .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
                .then_some(())
        }
    })
    .await;
    srv.signal(nix::sys::signal::Signal::SIGKILL);
    srv.proc.wait_exit(Duration::from_secs(10));
    let srv = srv.restart_with(drives2("disk", "disk"));
    assert_eq!(get_status(&srv, key).await, 404);
    assert_eq!(tmp_files(&srv, "d0") + tmp_files(&srv, "d1"), 0);
}

fn drive_up(metrics: &str, drive: &Path) -> f64 {
    oca_tests::metrics::value(
        metrics,
        "oca_drive_up",
        &[("drive", &drive.display().to_string())],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_on_write_fsync_or_journal_takes_the_drive_out_and_the_other_serves() {
    for point in ["ingest::write", "ingest::fsync", "journal::fsync"] {
        let mut opts = drives2("disk", "disk");
        opts.env = vec![("FAILPOINTS", format!("{point}=1*return(eio)"))];
        let srv = Server::start(Fixture::new(), opts);
        let a = random_bytes(10_000);
        let (code, body) = put(&srv, "eio/r/a.m4s", &a, &[]);
        assert!(code >= 500, "{point}: {code} {body}");
        let m = srv.metrics().await;
        let (d0, d1) = (
            drive_up(&m, &srv.fx.path("d0")),
            drive_up(&m, &srv.fx.path("d1")),
        );
        assert_eq!(d0 + d1, 1.0, "{point}: one drive out\n{m}");
        // The retry lands on the healthy drive and is served.
        let (code, body) = put(&srv, "eio/r/a.m4s", &a, &[]);
        assert_eq!(code, 201, "{point}: {body}");
        assert_eq!(srv.get(Proto::H1, &srv.signed("eio/r/a.m4s")).await.body, a);
        let failed_json = std::fs::read_to_string(srv.fx.path("state/failed-drives.json"))
            .expect("failed drive persisted");
        assert!(failed_json.contains("\"reason\""), "{failed_json}");
        // Still out after a restart; the object is still served.
        let srv = srv.restart_with(drives2("disk", "disk"));
        let m = srv.metrics().await;
        assert_eq!(
            drive_up(&m, &srv.fx.path("d0")) + drive_up(&m, &srv.fx.path("d1")),
            1.0,
            "{point}: after restart"
        );
        assert_eq!(srv.get(Proto::H1, &srv.signed("eio/r/a.m4s")).await.body, a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eio_on_read_drops_the_drive_and_its_objects() {
    let srv = Server::start(Fixture::new(), drives2("disk", "disk"));
    // Spread objects over both drives (each goes to the one with more room).
    let objs: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("rd/r/{i}.m4s"), random_bytes(20_000 + i * 1000)))
        .collect();
    for (k, d) in &objs {
        assert_eq!(put(&srv, k, d, &[]).0, 201);
    }
    let on_d1: Vec<bool> = objs
        .iter()
        .map(|(k, _)| srv.fx.path(&format!("d1/objects/{k}")).exists())
        .collect();
    assert!(on_d1.contains(&true) && on_d1.contains(&false), "{on_d1:?}");
    // Restart with reads on d1 failing with EIO.
    let mut opts = drives2("disk", "disk");
    opts.env = vec![("FAILPOINTS", "oca::read=return(/d1/)".into())];
    let srv = srv.restart_with(opts);
    let victim = on_d1.iter().position(|b| *b).unwrap();
    let r = srv
        .try_request(Proto::H1, "GET", &srv.signed(&objs[victim].0), &[])
        .await;
    assert!(
        r.as_ref()
            .map_or(true, |r| r.status != 200 || r.body != objs[victim].1),
        "a failed read must not answer the object"
    );
    let m = srv.metrics().await;
    assert_eq!(drive_up(&m, &srv.fx.path("d1")), 0.0, "{m}");
    assert_eq!(drive_up(&m, &srv.fx.path("d0")), 1.0);
    for (i, (k, d)) in objs.iter().enumerate() {
        let r = srv.get(Proto::H1, &srv.signed(k)).await;
        if on_d1[i] {
            assert_eq!(r.status, 404, "{k} on the failed drive");
        } else {
            assert_eq!(r.body, *d, "{k} on the healthy drive");
        }
    }
}
