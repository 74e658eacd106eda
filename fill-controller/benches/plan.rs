//! The planner on 100k renditions × 100 appliances in 10 clusters (issue 7 item 6; target:
//! one full plan in under 1 s). Run with `cargo bench -p fill-controller --bench plan`.
//!
//! Input: renditions of 0.2–3 GB, Zipf-like demand (exponent 0.8) whose ranking differs per
//! cluster; appliances with 2 TB flash and 8 TB disk (room for about half the catalog per
//! cluster), holding what yesterday's plan (another demand draw) placed, so the measured plan
//! keeps, fills and deletes. Prints the median of a few timed runs and the plan's size, then
//! criterion's estimate.

use std::time::Instant;

use criterion::Criterion;
use fill_controller::plan::{
    ApplianceInput, ClusterInput, Held, PlanInput, PlanParams, RenditionInput, plan,
};
use oca_common::rendezvous::mix64;
use oca_common::wire::RenditionId;

const RENDITIONS: usize = 100_000;
const CLUSTERS: usize = 10;
const PER_CLUSTER: usize = 10;

struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
}

fn demand(g: &mut Gen, renditions: &mut [RenditionInput]) {
    for c in 0..CLUSTERS {
        for (i, r) in renditions.iter_mut().enumerate() {
            // Rank jittered per cluster: popular everywhere, not in the same order.
            let jitter = 0.5 + (g.next() % 1000) as f64 / 1000.0;
            let rank = (i as f64 * jitter) + 1.0;
            r.demand.insert(
                format!("c{c}"),
                1e13 / rank.powf(0.8) * (r.bytes as f64 / 1e9),
            );
        }
    }
}

fn input() -> PlanInput {
    let mut g = Gen(7);
    let mut renditions: Vec<RenditionInput> = (0..RENDITIONS)
        .map(|i| RenditionInput {
            id: RenditionId::new(&format!("title-{}", i / 8), &format!("r{}", i % 8)).unwrap(),
            bytes: 200_000_000 + g.next() % 2_800_000_000,
            demand: Default::default(),
        })
        .collect();
    demand(&mut g, &mut renditions);
    let clusters = (0..CLUSTERS)
        .map(|c| ClusterInput {
            id: format!("c{c}"),
            upstream: if c == 0 { "origin".into() } else { "c0".into() },
        })
        .collect();
    let appliances = (0..CLUSTERS * PER_CLUSTER)
        .map(|i| ApplianceInput {
            id: format!("oca-{i:03}"),
            cluster: format!("c{}", i / PER_CLUSTER),
            flash_bytes: 2_000_000_000_000,
            disk_bytes: 8_000_000_000_000,
            accepts_new: true,
            held: Vec::new(),
        })
        .collect();
    let mut input = PlanInput {
        clusters,
        appliances,
        renditions,
        params: PlanParams::default(),
    };
    // Yesterday: place, then hold what was placed; today's demand is another draw.
    let yesterday = plan(&input);
    let idx: std::collections::HashMap<String, usize> = input
        .appliances
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.clone(), i))
        .collect();
    for f in &yesterday.fills {
        input.appliances[idx[&f.appliance]].held.push(Held {
            rendition: f.rendition.clone(),
            bytes: f.bytes,
            tier: f.tier,
        });
    }
    let mut g = Gen(99);
    for r in &mut input.renditions {
        r.demand.clear();
    }
    demand(&mut g, &mut input.renditions);
    input
}

fn main() {
    let t = Instant::now();
    let input = input();
    println!("setup (input + yesterday's plan): {:.2?}", t.elapsed());
    let held: usize = input.appliances.iter().map(|a| a.held.len()).sum();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        let p = plan(&input);
        times.push(t.elapsed());
        last = Some(p);
    }
    times.sort();
    let p = last.unwrap();
    let fill_bytes: u64 = p.fills.iter().map(|f| f.bytes).sum();
    println!(
        "plan: {} renditions x {} appliances ({} held copies): median {:.3?} of 5 (min {:.3?}, \
         max {:.3?}); {} fills ({:.1} TB), {} deletions; target < 1 s",
        RENDITIONS,
        CLUSTERS * PER_CLUSTER,
        held,
        times[2],
        times[0],
        times[4],
        p.fills.len(),
        fill_bytes as f64 / 1e12,
        p.deletes.len()
    );
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    c.bench_function("plan_100k_renditions_100_appliances", |b| {
        b.iter(|| plan(std::hint::black_box(&input)))
    });
    c.final_summary();
}
