//! Micro-benches of the per-request work that is not I/O: `Range` header decisions and
//! signed-URL verification.
//!
//! Run: `cargo bench -p oca-benches --bench micro` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use oca::http::range::{self, RangeDecision};
use oca_common::ObjectKey;
use oca_common::token::{self, ClientPrefix, KeySet, TokenParams};

const OBJECT: u64 = 2 << 20;
const NOW: u64 = 1_800_000_000;
const KEYS_TOML: &str = "[k1]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg=\"\n\
                         [k2]\nsecret = \"YW5vdGhlci1zZWNyZXQtb2YtZW5vdWdoLWxlbmd0aCE=\"\n";

fn ranges(c: &mut Criterion) {
    let mut g = c.benchmark_group("range::decide");
    let cases: [(&str, Option<&[u8]>); 6] = [
        ("none", None),
        ("16k_aligned", Some(b"bytes=1048576-1064959")),
        ("open_ended", Some(b"bytes=2080768-")),
        ("suffix", Some(b"bytes=-16384")),
        ("multi_to_full", Some(b"bytes=0-99, 200-299")),
        ("unsatisfiable", Some(b"bytes=4194304-4210687")),
    ];
    for (name, header) in cases {
        g.bench_function(name, |b| {
            b.iter(|| range::decide(black_box(header), black_box(OBJECT)))
        });
    }
    g.finish();
    // Keep the benched inputs honest: these are the decisions the handler would take.
    assert_eq!(
        range::decide(Some(b"bytes=1048576-1064959"), OBJECT),
        RangeDecision::Partial {
            start: 1 << 20,
            len: 16384
        }
    );
    assert_eq!(
        range::decide(Some(b"bytes=4194304-4210687"), OBJECT),
        RangeDecision::Unsatisfiable
    );
}

fn tokens(c: &mut Criterion) {
    let keys = KeySet::from_toml(KEYS_TOML).expect("bench key file parses");
    let key = keys.get("k1").expect("k1 exists").clone();
    let object = ObjectKey::parse("title-0001/1080p/seg-00042.m4s").expect("valid key");
    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let plain = TokenParams {
        exp: NOW + 3600,
        kid: "k1".into(),
        n: 1,
        client_prefix: None,
    };
    let bound = TokenParams {
        client_prefix: Some(ClientPrefix::parse_cidr("203.0.113.0/24").expect("valid prefix")),
        n: 2,
        ..plain.clone()
    };
    let t_plain = token::sign(&key, &plain, &object).expect("sign");
    let t_bound = token::sign(&key, &bound, &object).expect("sign");
    let mut forged = t_plain.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    for t in [&t_plain, &t_bound] {
        token::verify(t, &object, &keys, client, NOW, 30).expect("the benched token is valid");
    }
    assert!(token::verify(&forged, &object, &keys, client, NOW, 30).is_err());

    let mut g = c.benchmark_group("token");
    g.bench_function("verify_valid", |b| {
        b.iter(|| {
            token::verify(
                black_box(&t_plain),
                black_box(&object),
                &keys,
                client,
                NOW,
                30,
            )
        })
    });
    g.bench_function("verify_valid_prefix_bound", |b| {
        b.iter(|| {
            token::verify(
                black_box(&t_bound),
                black_box(&object),
                &keys,
                client,
                NOW,
                30,
            )
        })
    });
    g.bench_function("verify_bad_signature", |b| {
        b.iter(|| {
            token::verify(
                black_box(&forged),
                black_box(&object),
                &keys,
                client,
                NOW,
                30,
            )
        })
    });
    g.bench_function("sign", |b| {
        b.iter(|| token::sign(black_box(&key), black_box(&plain), &object))
    });
    g.finish();
}

fn config() -> Criterion {
    // Short by default: these are sub-microsecond functions and the box is shared.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = micro;
    config = config();
    targets = ranges, tokens
}
criterion_main!(micro);
