//! Object files that change under a running appliance (shrink or vanish): a client must
//! never receive a response that looks complete but is not, the failure is counted, and the
//! server keeps serving everything else.

use oca_tests::fixture::{BIG, INIT, SEG};
use oca_tests::{Proto, Server};

const READ_ERRORS: &str = "oca_storage_read_errors_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrunken_or_deleted_files_fail_loudly() {
    let mut srv = Server::start_default();
    let big = srv.fx.object(BIG).to_vec();
    // Shrink the 8 MiB object to 1 MiB and delete a segment, behind the index's back.
    let big_file = srv.fx.path(&format!("objects/{BIG}"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&big_file)
        .expect("open");
    f.set_len(1 << 20).expect("truncate");
    drop(f);
    std::fs::remove_file(srv.fx.path(&format!("objects/{SEG}"))).expect("remove");

    for proto in Proto::ALL {
        let before = srv.metric(READ_ERRORS, &[]).await;
        // Bytes that are still there are served exactly.
        let r = srv
            .get_with(proto, &srv.signed(BIG), &[("range", "bytes=1000-1999")])
            .await;
        assert_eq!(r.status, 206, "{proto:?}");
        assert!(
            r.body[..] == big[1000..2000],
            "{proto:?} bytes still on disk"
        );
        // The whole object cannot be: the response must not complete.
        for (what, path, range) in [
            ("shrunken object, whole", srv.signed(BIG), None),
            (
                "shrunken object, range past the new end",
                srv.signed(BIG),
                Some("bytes=2000000-2999999"),
            ),
            ("deleted object", srv.signed(SEG), None),
        ] {
            let headers: Vec<(&str, &str)> = range.map(|r| vec![("range", r)]).unwrap_or_default();
            match srv.try_request(proto, "GET", &path, &headers).await {
                Err(_) => {}
                Ok(r) if r.status >= 500 => {}
                Ok(r) => panic!(
                    "{proto:?} {what}: got a complete-looking {} with {} bytes",
                    r.status,
                    r.body.len()
                ),
            }
        }
        let after = srv.metric(READ_ERRORS, &[]).await;
        assert!(
            after >= before + 3.0,
            "{proto:?}: read errors counted ({before} -> {after})"
        );
        srv.assert_alive();
        let r = srv.get(proto, &srv.signed(INIT)).await;
        assert_eq!(r.status, 200, "{proto:?} other objects still served");
    }
}
