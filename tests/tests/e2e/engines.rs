//! Both disk I/O engines serve byte-exact ranges (DESIGN §4: "test both engines"), and the
//! one in use is reported in `/v1/status` and the metrics.

use oca_common::wire::Status;
use oca_tests::fixture::{BIG, Fixture, Opts, SEG};
use oca_tests::{Proto, Server, metrics};

async fn engine_serves_ranges(pref: &'static str, kind: &str, fast: bool) {
    let srv = Server::start(
        Fixture::new(),
        Opts {
            io_engine: pref,
            page_cache_fast_path: fast,
            ..Opts::default()
        },
    );
    let r = srv.admin("/v1/status", Some(&srv.fx.admin_token)).await;
    let status: Status = serde_json::from_slice(&r.body).expect("status JSON");
    assert_eq!(status.io_engine, kind, "io-engine = {pref:?} runs {kind}");
    let text = srv.metrics().await;
    assert_eq!(
        metrics::value(&text, "oca_io_engine_info", &[("engine", kind)]),
        1.0,
        "oca_io_engine_info{{engine=\"{kind}\"}} 1"
    );

    let big = srv.fx.object(BIG);
    let path = srv.signed(BIG);
    for proto in [Proto::H1, Proto::H2] {
        // Crosses several 256 KiB read buffers, starting and ending mid-buffer.
        for (first, last) in [
            (262_000usize, 800_000usize),
            (1, big.len() - 2),
            (524_288, 786_431),
        ] {
            let h = format!("bytes={first}-{last}");
            let r = srv.get_with(proto, &path, &[("range", &h)]).await;
            assert_eq!(r.status, 206, "{kind} {proto:?} {h}");
            assert!(
                r.body[..] == big[first..=last],
                "{kind} {proto:?} {h}: bytes differ"
            );
        }
        let r = srv.get(proto, &srv.signed(SEG)).await;
        assert!(
            r.body[..] == *srv.fx.object(SEG),
            "{kind} {proto:?} whole segment"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pread_engine() {
    engine_serves_ranges("pread", "pread", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_engine() {
    engine_serves_ranges("io-uring", "io_uring", false).await;
}

/// The default: page-cache reads on the worker (`RWF_NOWAIT`), the engine for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_cache_fast_path() {
    engine_serves_ranges("auto", "io_uring", true).await;
}
