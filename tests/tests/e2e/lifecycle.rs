//! Signals: SIGTERM drains (readiness false, in-flight responses finish, exit 0; a stuck
//! client is cut at the drain deadline), SIGHUP reloads signing keys and certificates (a bad
//! file keeps the old ones and is counted).

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use nix::sys::signal::Signal;
use oca_tests::client::peer_cert;
use oca_tests::fixture::{Fixture, HUGE, HUGE_LEN, INIT, KID, Opts, SEG, TestCert};
use oca_tests::{Proto, Server, now_unix, poll_until, random_bytes};

use super::util::assert_forbidden;

const RELOADS: &str = "oca_reloads_total";

/// Read body frames until at least `want` bytes (or the end) are in `out`.
async fn read_some(body: &mut hyper::body::Incoming, out: &mut Vec<u8>, want: usize) {
    while out.len() < want {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
            Some(Err(e)) => panic!("body error after {} bytes: {e}", out.len()),
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_in_flight_responses_complete() {
    let mut srv = Server::start(
        Fixture::with_huge(),
        Opts {
            drain_deadline: "30s",
            ..Opts::default()
        },
    );
    let path = srv.signed(HUGE);
    // One 64 MiB response in flight per protocol; each client has read a little and stopped.
    let mut inflight = Vec::new();
    for proto in Proto::ALL {
        let resp = srv.stream(proto, &path, &[]).await;
        assert_eq!(resp.status(), 200, "{proto:?}");
        let mut body = resp.into_body();
        let mut got = Vec::with_capacity(HUGE_LEN);
        read_some(&mut body, &mut got, 4096).await;
        inflight.push((proto, body, got));
    }

    srv.signal(Signal::SIGTERM);
    let s = &srv;
    poll_until(
        "/readyz answers 503 while draining",
        Duration::from_secs(10),
        || async move { (s.admin("/readyz", None).await.status == 503).then_some(()) },
    )
    .await;
    assert_eq!(
        srv.admin("/healthz", None).await.status,
        200,
        "healthz stays 200 while draining"
    );
    let status: oca_common::wire::Status = serde_json::from_slice(
        &srv.admin("/v1/status", Some(&srv.fx.admin_token))
            .await
            .body,
    )
    .expect("status JSON");
    assert!(!status.ready, "status.ready is false while draining");
    let text = srv.metrics().await;
    assert_eq!(
        oca_tests::metrics::value(&text, "oca_ready", &[]),
        0.0,
        "oca_ready 0 while draining"
    );
    assert_eq!(status.state, oca_common::wire::OcaState::Draining);
    let https = srv.ports.https;
    poll_until(
        "the public listener closes",
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", https))
                .await
                .err()
                .map(|_| ())
        },
    )
    .await;
    srv.assert_alive();

    // The clients now read everything: byte-exact.
    let huge = srv.fx.object(HUGE);
    for (proto, mut body, mut got) in inflight {
        read_some(&mut body, &mut got, usize::MAX).await;
        assert_eq!(got.len(), HUGE_LEN, "{proto:?}: whole body after SIGTERM");
        assert!(got[..] == huge[..], "{proto:?}: bytes differ");
    }
    let st = srv.proc.wait_exit(Duration::from_secs(15));
    assert!(
        st.success(),
        "exit status after a clean drain: {st}\n{}",
        srv.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stuck_client_stops_at_the_drain_deadline() {
    let mut srv = Server::start(
        Fixture::with_huge(),
        Opts {
            drain_deadline: "1s",
            ..Opts::default()
        },
    );
    let resp = srv.stream(Proto::H1, &srv.signed(HUGE), &[]).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    read_some(&mut body, &mut got, 1).await;
    // The client never reads again, and never closes.
    let t0 = Instant::now();
    srv.signal(Signal::SIGTERM);
    let st = srv.proc.wait_exit(Duration::from_secs(8));
    let took = t0.elapsed();
    assert!(
        st.success(),
        "exit status after the drain deadline: {st}\n{}",
        srv.log()
    );
    assert!(
        took >= Duration::from_millis(900),
        "the drain waited for the in-flight response up to the deadline ({took:?})"
    );
    drop(body);
}

/// Connections with nothing in flight do not hold the drain up: with a 30 s deadline and idle
/// keep-alive connections on every protocol, SIGINT (like SIGTERM) exits 0 promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_idle_keep_alive_connections_exits_promptly() {
    let mut srv = Server::start(
        Fixture::new(),
        Opts {
            drain_deadline: "30s",
            ..Opts::default()
        },
    );
    let path = srv.signed(INIT);
    let mut h1 = oca_tests::client::h1_connection(srv.ports.https, &srv.fx.certs, true).await;
    let mut plain = oca_tests::client::h1_connection(srv.ports.http, &srv.fx.certs, false).await;
    let mut h2 = oca_tests::client::h2_connection(srv.ports.https, &srv.fx.certs).await;
    let b = |proto, port| oca_tests::client::build(proto, port, "GET", &path, &[]).unwrap();
    for r in [
        h1.send_request(b(Proto::H1, srv.ports.https)).await,
        plain.send_request(b(Proto::Plain, srv.ports.http)).await,
        h2.send_request(b(Proto::H2, srv.ports.https)).await,
    ] {
        let r = oca_tests::client::collect(r.expect("request"))
            .await
            .expect("body");
        assert_eq!(r.status, 200);
    }
    // All three connections are open and idle now.
    assert_eq!(srv.metric("oca_connections_open", &[]).await, 3.0);
    let t0 = Instant::now();
    srv.signal(Signal::SIGINT);
    let st = srv.proc.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(st.success(), "exit status: {st}\n{}", srv.log());
    assert!(
        took < Duration::from_secs(5),
        "idle connections held the drain for {took:?} (deadline 30 s)"
    );
    drop((h1, plain, h2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_signing_keys() {
    let mut srv = Server::start_default();
    let k1 = srv.fx.secrets[KID].clone();
    let k2 = random_bytes(32);
    let exp = now_unix() + 600;
    let tok1 = srv.fx.token(KID, SEG, 1, exp, None);
    let tok2 = srv.fx.token_with("k2", &k2, SEG, 1, exp, None);
    let (p1, p2) = (format!("/t/{tok1}/{SEG}"), format!("/t/{tok2}/{SEG}"));
    assert_forbidden(&srv.get(Proto::H1, &p2).await, "k2 before the reload");

    // Add k2, keep k1.
    srv.fx.write_keys(&[(KID, k1.clone()), ("k2", k2.clone())]);
    srv.signal(Signal::SIGHUP);
    let (s, p) = (&srv, &p2);
    poll_until(
        "a k2 token works after SIGHUP",
        Duration::from_secs(10),
        || async move { (s.get(Proto::H1, p).await.status == 200).then_some(()) },
    )
    .await;
    for proto in Proto::ALL {
        assert_eq!(srv.get(proto, &p1).await.status, 200, "{proto:?} k1 kept");
        assert_eq!(srv.get(proto, &p2).await.status, 200, "{proto:?} k2 added");
    }
    let ok = [("what", "signing_keys"), ("outcome", "ok")];
    assert!(
        srv.metric(RELOADS, &ok).await >= 1.0,
        "successful reload counted"
    );

    // A broken key file: the old keys stay, the error is counted.
    let err = [("what", "signing_keys"), ("outcome", "error")];
    for broken in [
        &b"[k1\nsecret = \"nope"[..],
        &b"[k1]\nsecret = \"c2hvcnQ=\"\n"[..],
        &b""[..],
    ] {
        let before = srv.metric(RELOADS, &err).await;
        srv.fx.write_raw("signing-keys.toml", broken);
        srv.signal(Signal::SIGHUP);
        let s = &srv;
        poll_until(
            "the failed key reload is counted",
            Duration::from_secs(10),
            || async move { (s.metric(RELOADS, &err).await >= before + 1.0).then_some(()) },
        )
        .await;
        assert_eq!(
            srv.get(Proto::H1, &p1).await.status,
            200,
            "k1 after a bad reload"
        );
        assert_eq!(
            srv.get(Proto::H2, &p2).await.status,
            200,
            "k2 after a bad reload"
        );
    }
    assert!(
        srv.log().contains("keeping the old"),
        "the log says the old keys are kept"
    );

    // Rotate k1 out.
    srv.fx.write_keys(&[("k2", k2)]);
    srv.signal(Signal::SIGHUP);
    let (s, p) = (&srv, &p1);
    poll_until(
        "k1 is refused once removed",
        Duration::from_secs(10),
        || async move { (s.get(Proto::H1, p).await.status == 403).then_some(()) },
    )
    .await;
    assert_eq!(
        srv.get(Proto::Plain, &p2).await.status,
        200,
        "k2 still works"
    );
    srv.assert_alive();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    let mut srv = Server::start_default();
    let port = srv.ports.https;
    let old = srv.fx.certs[0].to_vec();
    assert_eq!(
        peer_cert(port, &srv.fx.certs).await.expect("handshake"),
        old
    );

    let new = TestCert::generate();
    srv.fx.write_cert(&new);
    srv.signal(Signal::SIGHUP);
    let want = new.der.to_vec();
    let (certs, w) = (&srv.fx.certs, &want);
    poll_until(
        "new handshakes present the new certificate",
        Duration::from_secs(10),
        || async move { (peer_cert(port, certs).await.ok().as_ref() == Some(w)).then_some(()) },
    )
    .await;
    for proto in [Proto::H1, Proto::H2] {
        assert_eq!(srv.get(proto, &srv.signed(INIT)).await.status, 200);
    }

    // A broken certificate, and a key that does not match: the last good pair stays.
    let err = [("what", "certificates"), ("outcome", "error")];
    let other = TestCert::generate();
    for (what, cert, key) in [
        (
            "garbage PEM",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
                .to_string(),
            new.key_pem.clone(),
        ),
        ("empty cert file", String::new(), new.key_pem.clone()),
        (
            "key of another certificate",
            new.cert_pem.clone(),
            other.key_pem.clone(),
        ),
    ] {
        let before = srv.metric(RELOADS, &err).await;
        srv.fx.write_raw("tls/cert.pem", cert.as_bytes());
        srv.fx.write_raw("tls/key.pem", key.as_bytes());
        srv.signal(Signal::SIGHUP);
        let s = &srv;
        poll_until(
            "the failed certificate reload is counted",
            Duration::from_secs(10),
            || async move { (s.metric(RELOADS, &err).await >= before + 1.0).then_some(()) },
        )
        .await;
        let got = peer_cert(port, &srv.fx.certs)
            .await
            .expect("handshake after a bad reload");
        assert_eq!(got, want, "{what}: the last good certificate keeps serving");
        let r = srv.get(Proto::H2, &srv.signed(INIT)).await;
        assert_eq!(r.status, 200, "{what}: still serving");
    }
    srv.assert_alive();
}
