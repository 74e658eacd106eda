//! Ranking decisions per second on one core at fleet scale: 1M random BGP prefixes (900k
//! IPv4 of /16–/24, mostly /24, and 100k IPv6 of /32–/48, one announcing appliance each),
//! 1,000 appliances in 100 clusters, 100k renditions (each appliance holds 1,000: the 500
//! most popular, which 80 % of the requests ask for, and a share of the tail). A decision is
//! a client address inside a random stored prefix and a rendition: hash the rendition,
//! longest-prefix match (frozen IPv4 fast path, trie for IPv6), filter and rendezvous-order
//! the candidates, fallback clusters. Target: ≥ 1M decisions/s per core.
//!
//! `cargo bench -p steering --bench rank` (criterion; the median is the figure to quote).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use oca_common::sites::Sites;
use oca_common::wire::{InventoryEntry, OcaState, RenditionId, Tier};
use steering::rank::{
    ApplianceView, Holdings, Params, Slots, Snapshot, Topology, holder_index, rank, rendition_hash,
};
use steering::trie::PrefixTable;

const PREFIXES: usize = 1_000_000;
const APPLIANCES: usize = 1_000;
const CLUSTERS: usize = 100;
const RENDITIONS: usize = 100_000;
const HELD_PER_APPLIANCE: usize = 1_000;
const BATCH: usize = 10_000;
/// The most popular renditions, held everywhere; 80 % of the requests ask for one of them.
const HEAD: usize = 500;
const NOW: u64 = 1_780_000_000_000;

/// SplitMix64: a small deterministic generator (no dependency, same inputs every run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        steering::rank::mix64(self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn fleet() -> (Snapshot, Vec<IpNet>, Vec<RenditionId>) {
    let mut rng = Rng(42);
    let mut text = String::from("fallback = [\"c0\"]\n[[site]]\nid = \"s\"\ntime-zone = \"UTC\"\n");
    for c in 0..CLUSTERS {
        let fb = (c + 1) % CLUSTERS;
        text += &format!("[[cluster]]\nid = \"c{c}\"\nsite = \"s\"\nfallback = [\"c{fb}\"]\n");
    }
    let topo = Topology::from_sites(&Sites::parse(&text).expect("sites"));
    let renditions: Vec<RenditionId> = (0..RENDITIONS)
        .map(|i| RenditionId::parse(&format!("title-{:06}/r{}", i / 5, i % 5)).unwrap())
        .collect();
    let mut members = vec![Vec::new(); CLUSTERS];
    let appliances: Vec<Arc<ApplianceView>> = (0..APPLIANCES)
        .map(|i| {
            let cluster = (i % CLUSTERS) as u32;
            members[cluster as usize].push(i as u32);
            let mut h = Holdings::default();
            for k in 0..HELD_PER_APPLIANCE {
                // Every appliance holds the HEAD most popular renditions, and a share of the
                // tail: i, i+1000, i+2000, ... (about ten copies of each tail rendition).
                let r = if k < HEAD {
                    &renditions[k]
                } else {
                    &renditions[HEAD + (i + (k - HEAD) * APPLIANCES) % (RENDITIONS - HEAD)]
                };
                h.insert(
                    rendition_hash(r.as_str()),
                    InventoryEntry {
                        rendition: r.clone(),
                        files_held: 100,
                        total_files: 100,
                        bytes: 1 << 30,
                        tier: Tier::Flash,
                    },
                );
            }
            let id = format!("oca-{i:04}");
            Arc::new(ApplianceView {
                seed: rendition_hash(&id),
                url: Some(format!("https://{id}.example.net")),
                id,
                cluster,
                state: OcaState::Up,
                egress_bps: rng.next() % 10_000_000_000,
                capacity_bps: 10_000_000_000,
                last_heartbeat_ms: NOW - 1000,
                stale_after_ms: 15_000,
                holdings: Arc::new(h),
            })
        })
        .collect();
    let mut routes: PrefixTable<Slots> = PrefixTable::new();
    let mut prefixes = Vec::with_capacity(PREFIXES);
    while routes.len() < PREFIXES {
        let p = if routes.len() < PREFIXES * 9 / 10 {
            // Roughly the shape of a full table: most prefixes are /24, some /16-/23.
            let len = [
                16, 18, 19, 20, 21, 22, 22, 23, 23, 24, 24, 24, 24, 24, 24, 24,
            ][rng.below(16)];
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len)
                    .unwrap()
                    .trunc(),
            )
        } else {
            let len = 32 + rng.below(17) as u8;
            let a = (0x2001_0db8u128 << 96) | u128::from(rng.next()) << 32;
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc())
        };
        // One announcing appliance per prefix (a repeat of a random prefix is skipped).
        let slots = routes.entry_or_default(p);
        if slots.is_empty() {
            slots.push(rng.below(APPLIANCES) as u32);
            prefixes.push(p);
        }
    }
    routes.freeze();
    let holders = holder_index(&appliances);
    let snap = Snapshot::new(
        appliances,
        Arc::new(members),
        Arc::new(holders),
        Arc::new(routes),
        Arc::new(topo),
    );
    (snap, prefixes, renditions)
}

/// The ranking as it was before the flattening (views behind `Arc`, every candidate's
/// inventory probed, heap scratch, full sort), kept here as the reference the new one must
/// equal on every decision, and so one run compares both in the same period on a shared,
/// noisy machine. It reads neither the holders index nor the `Hot` array.
mod before {
    use super::*;
    use steering::rank::{Candidate, Kind, MissCause, Ranking, weight};

    #[allow(clippy::too_many_arguments)]
    fn add_group(
        snap: &Snapshot,
        slots: &[u32],
        rendition: &RenditionId,
        hash: u64,
        now_ms: u64,
        params: &Params,
        kind: Kind,
        scratch: &mut Vec<(bool, u64, u32)>,
        out: &mut Vec<Candidate>,
    ) {
        scratch.clear();
        for &slot in slots {
            let Some(a) = snap.appliances.get(slot as usize) else {
                continue;
            };
            if !a.healthy(now_ms) || !a.holds(rendition, hash) || out.iter().any(|c| c.slot == slot)
            {
                continue;
            }
            scratch.push((
                a.saturated(params.push_back_permille),
                u64::MAX - weight(hash, a.seed),
                slot,
            ));
        }
        scratch.sort_unstable();
        for &(saturated, _, slot) in scratch.iter() {
            if out.len() >= params.top_n {
                return;
            }
            out.push(Candidate {
                slot,
                kind,
                saturated,
            });
        }
    }

    pub fn rank(
        snap: &Snapshot,
        client: IpAddr,
        rendition: &RenditionId,
        hash: u64,
        now_ms: u64,
        params: &Params,
    ) -> Ranking {
        let mut out = Vec::with_capacity(params.top_n);
        let mut scratch = Vec::new();
        let mut matched = None;
        let mut miss = None;
        let mut fallback: Vec<u32> = Vec::new();
        snap.routes.for_each_match(client, |prefix, slots| {
            let first = matched.is_none();
            if first {
                matched = Some(prefix);
            }
            for &s in slots {
                if let Some(c) = snap.appliances.get(s as usize).map(|a| a.cluster)
                    && let Some(info) = snap.topology.clusters.get(c as usize)
                {
                    for f in &info.fallback {
                        if !fallback.contains(f) {
                            fallback.push(*f);
                        }
                    }
                }
            }
            let before = out.len();
            if out.len() < params.top_n {
                add_group(
                    snap,
                    slots,
                    rendition,
                    hash,
                    now_ms,
                    params,
                    Kind::Local,
                    &mut scratch,
                    &mut out,
                );
            }
            if first && out.get(before).is_none_or(|c| c.saturated) {
                miss = Some(MissCause::Content);
            }
            out.len() < params.top_n
        });
        if matched.is_none() {
            miss = Some(MissCause::Route);
        }
        if fallback.is_empty() {
            fallback.extend_from_slice(&snap.topology.default_fallback);
        }
        for c in fallback {
            if out.len() >= params.top_n {
                break;
            }
            if let Some(slots) = snap.members.get(c as usize) {
                add_group(
                    snap,
                    slots,
                    rendition,
                    hash,
                    now_ms,
                    params,
                    Kind::Fallback,
                    &mut scratch,
                    &mut out,
                );
            }
        }
        Ranking {
            candidates: out,
            matched,
            miss,
        }
    }
}

fn host_in(p: &IpNet, rng: &mut Rng) -> IpAddr {
    match p {
        IpNet::V4(n) => {
            let host = (rng.next() as u32) & !u32::from(n.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        IpNet::V6(n) => {
            let host = u128::from(rng.next()) & !u128::from(n.netmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
    }
}

/// The batch of decisions: a client inside a random stored prefix, a rendition from the
/// head 80 % of the time.
fn queries(prefixes: &[IpNet], renditions: &[RenditionId]) -> Vec<(IpAddr, RenditionId)> {
    let mut rng = Rng(7);
    (0..BATCH)
        .map(|_| {
            let p = &prefixes[rng.below(prefixes.len())];
            let r = if rng.below(10) < 8 {
                rng.below(HEAD)
            } else {
                rng.below(RENDITIONS)
            };
            (host_in(p, &mut rng), renditions[r].clone())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (snap, prefixes, renditions) = fleet();
    let queries = queries(&prefixes, &renditions);
    let params = Params::default();
    let t0 = std::time::Instant::now();
    let mut n = 0usize;
    for (ip, _) in &queries {
        snap.routes.for_each_match(*ip, |_, v| {
            n += v.len();
            true
        });
    }
    eprintln!("{BATCH} lookups: {:?} ({n} hits)", t0.elapsed());
    let t0 = std::time::Instant::now();
    // Sanity: decisions find appliances (not only the origin).
    let found = queries
        .iter()
        .filter(|(ip, r)| {
            !rank(&snap, *ip, rendition_hash(r.as_str()), NOW, &params)
                .candidates
                .is_empty()
        })
        .count();
    eprintln!(
        "{found} of {BATCH} decisions list at least one appliance ({:?})",
        t0.elapsed()
    );
    // Both implementations agree on every decision of the batch.
    for (ip, r) in &queries {
        let h = rendition_hash(r.as_str());
        assert_eq!(
            rank(&snap, *ip, h, NOW, &params).candidates,
            before::rank(&snap, *ip, r, h, NOW, &params).candidates
        );
    }

    let mut g = c.benchmark_group("rank");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.bench_function("1M prefixes, 1k appliances, 100k renditions", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (ip, r) in &queries {
                let rk = rank(&snap, *ip, rendition_hash(r.as_str()), NOW, &params);
                n += rk.candidates.len();
            }
            black_box(n)
        })
    });
    g.bench_function("before flattening (same inputs)", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (ip, r) in &queries {
                let rk = before::rank(&snap, *ip, r, rendition_hash(r.as_str()), NOW, &params);
                n += rk.candidates.len();
            }
            black_box(n)
        })
    });
    g.bench_function("longest-prefix match only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (ip, _) in &queries {
                snap.routes.for_each_match(*ip, |_, v| {
                    n += v.len();
                    true
                });
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

/// `RANK_PROFILE=N cargo bench -p steering --bench rank`: build the fleet, run N batches of
/// decisions and nothing else (for `perf record` / `valgrind --tool=callgrind`), print the
/// rate. Otherwise the criterion benches.
fn main() {
    if let Some(n) = std::env::var("RANK_PROFILE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        profile(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

fn profile(batches: usize) {
    let (snap, prefixes, renditions) = fleet();
    let queries = queries(&prefixes, &renditions);
    let params = Params::default();
    let (t0, c0) = (std::time::Instant::now(), on_cpu());
    let mut n = 0usize;
    for _ in 0..batches {
        for (ip, r) in &queries {
            let rk = rank(&snap, *ip, rendition_hash(r.as_str()), NOW, &params);
            n += rk.candidates.len();
        }
    }
    let (d, cpu) = (t0.elapsed(), on_cpu().saturating_sub(c0));
    let k = (batches * BATCH) as f64;
    eprintln!(
        "{} decisions in {d:?} wall, {cpu:?} on CPU: {:.0} decisions/s wall, {:.0} per \
         CPU-second ({n} candidates)",
        batches * BATCH,
        k / d.as_secs_f64(),
        k / cpu.as_secs_f64().max(1e-9),
    );
}

/// Time this thread has run on a CPU (Linux `/proc/thread-self/schedstat`; zero elsewhere),
/// so a figure per core survives a machine shared with other work.
fn on_cpu() -> std::time::Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(std::time::Duration::from_nanos)
        .unwrap_or_default()
}
