//! Micro-bench of the RAM tier's admission policy (`oca_storage::policy::RamPolicy`): the
//! cost of one `access` on a hit and on a miss that runs the admission contest.
//!
//! Run: `cargo bench -p oca-benches --bench policy` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use oca_storage::policy::{Access, RamPolicy};

const KIB: u64 = 1024;

/// A full policy: 64 MiB of 64 KiB objects, keys 0..1024 each requested 3 times.
fn warm() -> RamPolicy<u128> {
    let mut p = RamPolicy::new(64 * 1024 * KIB, 8 * 1024 * KIB);
    for _ in 0..3 {
        for k in 0..1024u128 {
            p.access(k, 64 * KIB);
        }
    }
    p
}

fn policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("ram_policy::access");
    let mut p = warm();
    assert_eq!(p.access(5, 64 * KIB), Access::Hit);
    let mut k = 0u128;
    g.bench_function("hit", |b| {
        b.iter(|| {
            k = (k + 1) % 1024;
            black_box(p.access(black_box(k), 64 * KIB))
        })
    });
    // Misses of fresh keys: each enters the window and pushes a candidate into a contest.
    let mut p = warm();
    let mut fresh = 1u128 << 64;
    g.bench_function("miss_contest", |b| {
        b.iter(|| {
            fresh += 1;
            black_box(p.access(black_box(fresh), 64 * KIB))
        })
    });
    assert!(p.used_bytes() <= p.capacity_bytes());
    g.finish();
}

criterion_group!(benches, policy);
criterion_main!(benches);
