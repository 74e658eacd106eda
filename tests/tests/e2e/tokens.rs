//! Signed URLs (DESIGN §3): scopes, expiry with skew, every way a token can be wrong, client
//! prefixes, unsigned paths, the order of the checks, and the rejection metrics.

use oca_tests::fixture::{
    EMPTY, Fixture, INIT, KID, MASTER, OTHER, Opts, PLAYLIST, SEG, SEG_1080, SEG2,
};
use oca_tests::{Proto, Server, now_unix};

use super::util::{assert_error, assert_forbidden};

const REJECTIONS: &str = "oca_token_rejections_total";

/// n = 1 covers every rendition of the title and the title-level playlists; n = 2 covers its
/// rendition only; a token of another title covers nothing here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes() {
    let srv = Server::start_default();
    let exp = now_unix() + 600;
    let title_tok = srv.fx.token(KID, SEG, 1, exp, None);
    let rendition_tok = srv.fx.token(KID, SEG, 2, exp, None);
    let other_tok = srv.fx.token(KID, OTHER, 1, exp, None);
    for proto in Proto::ALL {
        for key in [
            SEG,
            SEG2,
            INIT,
            PLAYLIST,
            SEG_1080,
            MASTER,
            "movie/1080p/index.m3u8",
        ] {
            let r = srv.get(proto, &format!("/t/{title_tok}/{key}")).await;
            assert_eq!(r.status, 200, "{proto:?} n=1 token on {key}");
            assert!(r.body[..] == *srv.fx.object(key), "{proto:?} {key} bytes");
        }
        for key in [SEG, SEG2, INIT, PLAYLIST, EMPTY] {
            let r = srv.get(proto, &format!("/t/{rendition_tok}/{key}")).await;
            assert_eq!(r.status, 200, "{proto:?} n=2 token on its rendition: {key}");
        }
        for key in [SEG_1080, MASTER, "movie/1080p/index.m3u8"] {
            let r = srv.get(proto, &format!("/t/{rendition_tok}/{key}")).await;
            assert_forbidden(&r, &format!("{proto:?} n=2 token of 720p on {key}"));
        }
        let r = srv.get(proto, &format!("/t/{other_tok}/{SEG}")).await;
        assert_forbidden(&r, &format!("{proto:?} token of another title"));
        let r = srv.get(proto, &format!("/t/{other_tok}/{OTHER}")).await;
        assert_eq!(r.status, 200, "{proto:?} that token on its own title");
    }
    // The access log has the keys, never the tokens (DESIGN §7: the path without the
    // signature).
    let log = srv.log();
    assert!(
        log.contains(&format!("\"key\":\"{SEG}\"")),
        "access log lines name the key"
    );
    for tok in [&title_tok, &rendition_tok, &other_tok] {
        let sig = tok.rsplit('.').next().unwrap();
        assert!(!log.contains(sig), "a token signature is in the log");
    }
}

/// Expiry with ±30 s skew, unknown kid, tampered, truncated and garbage tokens, a key
/// signed for another title: 403 with the JSON body, each counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rejections_and_metrics() {
    let srv = Server::start_default();
    let now = now_unix();
    let fx = &srv.fx;
    let good = fx.token(KID, SEG, 1, now + 600, None);
    let (fields, sig) = good.rsplit_once('.').expect("token has a signature");
    // Change the first signature character (the last one also holds padding bits).
    let first = sig.as_bytes()[0];
    let tampered = format!(
        "{fields}.{}{}",
        if first == b'A' { 'B' } else { 'A' },
        &sig[1..]
    );
    let unknown_kid = fx.token_with("k9", &[7u8; 32], SEG, 1, now + 600, None);
    let other_secret = fx.token_with(KID, &[9u8; 32], SEG, 1, now + 600, None);
    let expired = fx.token(KID, SEG, 1, now - 120, None);
    let within_skew = fx.token(KID, SEG, 1, now - 10, None);
    let for_other_title = fx.token(KID, OTHER, 1, now + 600, None);

    let r = srv.get(Proto::H1, &format!("/t/{within_skew}/{SEG}")).await;
    assert_eq!(r.status, 200, "expired 10 s ago is inside the 30 s skew");

    let cases: Vec<(&str, String, &str)> = vec![
        ("expired 120 s ago", expired, "expired"),
        ("unknown kid", unknown_kid, "unknown_kid"),
        ("signed with another secret", other_secret, "bad_signature"),
        ("tampered signature", tampered, "bad_signature"),
        ("truncated", good[..good.len() - 5].to_string(), "malformed"),
        ("garbage", "hello-world".to_string(), "malformed"),
        ("empty-ish", "v1.....".to_string(), "malformed"),
        ("token for another title", for_other_title, "bad_signature"),
    ];
    for proto in Proto::ALL {
        for (what, tok, reason) in &cases {
            let before = srv.metric(REJECTIONS, &[("reason", reason)]).await;
            let r = srv.get(proto, &format!("/t/{tok}/{SEG}")).await;
            assert_forbidden(&r, &format!("{proto:?} {what}"));
            let body = r.text();
            assert!(
                !body.contains(tok.as_str()) || tok.len() < 12,
                "{what}: the token is not echoed"
            );
            let after = srv.metric(REJECTIONS, &[("reason", reason)]).await;
            assert_eq!(
                after,
                before + 1.0,
                "{proto:?} {what}: {REJECTIONS}{{reason=\"{reason}\"}} goes up by one"
            );
        }
    }
    // The signing secret never reaches the log.
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&srv.fx.secrets[KID])
    };
    assert!(
        !srv.log().contains(&b64),
        "the signing secret is in the log"
    );
}

/// A token bound to a client prefix works only from inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_prefix_binding() {
    let srv = Server::start_default();
    let exp = now_unix() + 600;
    let inside = srv.fx.token(KID, SEG, 1, exp, Some("127.0.0.0/8"));
    let exact = srv.fx.token(KID, SEG, 2, exp, Some("127.0.0.1/32"));
    let outside = srv.fx.token(KID, SEG, 1, exp, Some("10.0.0.0/8"));
    let v6 = srv.fx.token(KID, SEG, 1, exp, Some("2001:db8::/32"));
    for proto in Proto::ALL {
        for tok in [&inside, &exact] {
            let r = srv.get(proto, &format!("/t/{tok}/{SEG}")).await;
            assert_eq!(r.status, 200, "{proto:?} client 127.0.0.1 inside {tok}");
        }
        for tok in [&outside, &v6] {
            let before = srv.metric(REJECTIONS, &[("reason", "client_prefix")]).await;
            let r = srv.get(proto, &format!("/t/{tok}/{SEG}")).await;
            assert_forbidden(&r, &format!("{proto:?} client 127.0.0.1 outside {tok}"));
            let after = srv.metric(REJECTIONS, &[("reason", "client_prefix")]).await;
            assert_eq!(after, before + 1.0, "client_prefix rejections counted");
        }
    }
}

/// `/o/{key}` is 404 while tokens are required, and serves when require-token = false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_paths_follow_require_token() {
    let strict = Server::start_default();
    for proto in Proto::ALL {
        let r = strict.get(proto, &format!("/o/{SEG}")).await;
        assert_error(
            &r,
            404,
            "not_found",
            &format!("{proto:?} /o/ with require-token = true"),
        );
    }
    let open = Server::start(
        Fixture::new(),
        Opts {
            require_token: false,
            ..Opts::default()
        },
    );
    for proto in Proto::ALL {
        let r = open.get(proto, &format!("/o/{SEG}")).await;
        assert_eq!(r.status, 200, "{proto:?} /o/ with require-token = false");
        assert!(r.body[..] == *open.fx.object(SEG));
        let r = open
            .get_with(proto, &format!("/o/{SEG}"), &[("range", "bytes=5-9")])
            .await;
        assert_eq!(r.status, 206);
        assert!(r.body[..] == open.fx.object(SEG)[5..10]);
        // Signed URLs still work, and still are checked.
        let r = open.get(proto, &open.signed(SEG)).await;
        assert_eq!(r.status, 200);
        let r = open.get(proto, &format!("/t/garbage/{SEG}")).await;
        assert_forbidden(&r, "a bad token is refused even when tokens are optional");
    }
}

/// DESIGN §3 order: key syntax (400) before method (405) before the token (403) before the
/// object (404); the decision id `?d=` never changes access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_run_in_design_order() {
    let srv = Server::start_default();
    let good = srv.fx.token(KID, SEG, 1, now_unix() + 600, None);
    for proto in Proto::ALL {
        let r = srv.get(proto, "/t/garbage/movie/../etc").await;
        assert_error(
            &r,
            400,
            "bad_key",
            &format!("{proto:?} bad key + bad token"),
        );
        let r = srv
            .request(proto, "POST", &format!("/t/garbage/{SEG}"), &[])
            .await;
        assert_error(
            &r,
            405,
            "method_not_allowed",
            &format!("{proto:?} POST + bad token"),
        );
        assert!(r.must("allow").contains("GET"));
        let r = srv
            .get(proto, &format!("/t/{good}/movie/720p/seg-99999.m4s"))
            .await;
        assert_error(
            &r,
            404,
            "not_found",
            &format!("{proto:?} good token, missing object"),
        );
        let r = srv.get(proto, "/t/garbage/movie/720p/seg-99999.m4s").await;
        assert_forbidden(&r, &format!("{proto:?} bad token, missing object"));
        let d = format!("decision-{}", proto.label());
        let r = srv.get(proto, &format!("/t/{good}/{SEG}?d={d}")).await;
        assert_eq!(r.status, 200, "{proto:?} ?d= is accepted");
        assert!(
            srv.log().contains(&format!("\"decision\":\"{d}\"")),
            "{proto:?}: the access log records the decision id"
        );
        let r = srv
            .get(proto, "/t/garbage/movie/720p/seg-00001.m4s?d=ok")
            .await;
        assert_eq!(r.status, 403, "{proto:?} ?d= does not open anything");
        let r = srv.get(proto, "/nothing/here").await;
        assert_eq!(r.status, 404, "{proto:?} unknown path");
    }
}
