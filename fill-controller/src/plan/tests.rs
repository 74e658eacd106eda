//! Planner tests: fixed inputs for each rule, and property tests (capacity at every step of
//! execution, determinism and input-order independence, idempotence, churn when one
//! appliance joins or leaves).

use std::collections::{BTreeMap, HashMap};

use oca_common::rendezvous::{mix64, rendition_hash, weight};
use proptest::prelude::*;

use super::*;

fn rid(s: &str) -> RenditionId {
    RenditionId::parse(s).unwrap()
}

fn app(
    id: &str,
    cluster: &str,
    flash: u64,
    disk: u64,
    held: &[(&str, u64, Tier)],
) -> ApplianceInput {
    ApplianceInput {
        id: id.into(),
        cluster: cluster.into(),
        flash_bytes: flash,
        disk_bytes: disk,
        accepts_new: true,
        held: held
            .iter()
            .map(|(r, b, t)| Held {
                rendition: rid(r),
                bytes: *b,
                tier: *t,
            })
            .collect(),
    }
}

fn rend(id: &str, bytes: u64, demand: &[(&str, f64)]) -> RenditionInput {
    RenditionInput {
        id: rid(id),
        bytes,
        demand: demand.iter().map(|(c, d)| ((*c).to_owned(), *d)).collect(),
    }
}

fn cluster(id: &str, upstream: &str) -> ClusterInput {
    ClusterInput {
        id: id.into(),
        upstream: upstream.into(),
    }
}

fn params(max_copies: u32) -> PlanParams {
    PlanParams {
        max_copies,
        copy_share: 0.1,
        max_fill: 1.0,
    }
}

fn fills_of<'a>(p: &'a Plan, r: &str) -> Vec<&'a Fill> {
    p.fills
        .iter()
        .filter(|f| f.rendition.as_str() == r)
        .collect()
}

/// Rendezvous order of appliances for a rendition, best first (steering's order).
fn hrw(r: &str, ids: &[&str]) -> Vec<String> {
    let mut v: Vec<(u64, &str)> = ids
        .iter()
        .map(|a| (u64::MAX - weight(rendition_hash(r), rendition_hash(a)), *a))
        .collect();
    v.sort();
    v.into_iter().map(|x| x.1.to_owned()).collect()
}

#[test]
fn copy_counts_follow_popularity() {
    // 4 appliances, demand total 1000: fair share 250, one copy per 25 bytes served.
    let ids = ["a1", "a2", "a3", "a4"];
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: ids.iter().map(|i| app(i, "c", 0, 10_000, &[])).collect(),
        renditions: vec![
            rend("t/head", 10, &[("c", 900.0)]), // wants 36 copies: capped at 3
            rend("t/mid", 10, &[("c", 40.0)]),   // 40/25 -> 2 copies
            rend("t/tail", 10, &[("c", 10.0)]),  // 1 copy
            rend("t/none", 10, &[]),             // no demand: not placed
            rend("t/other", 10, &[("x", 50.0)]), // demand in an unknown cluster only
        ],
        params: params(3),
    };
    let p = plan(&input);
    assert_eq!(fills_of(&p, "t/head").len(), 3);
    assert_eq!(fills_of(&p, "t/mid").len(), 2);
    assert_eq!(fills_of(&p, "t/tail").len(), 1);
    assert!(fills_of(&p, "t/none").is_empty() && fills_of(&p, "t/other").is_empty());
    // Copies go to the top of the rendezvous order (the one steering ranks first).
    let order = hrw("t/head", &ids);
    let mut got: Vec<String> = fills_of(&p, "t/head")
        .iter()
        .map(|f| f.appliance.clone())
        .collect();
    got.sort();
    let mut want = order[..3].to_vec();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(fills_of(&p, "t/tail")[0].appliance, hrw("t/tail", &ids)[0]);
    // Most valuable first.
    assert!(p.fills.windows(2).all(|w| w[0].value >= w[1].value));
    assert_eq!(p.fills[0].rendition.as_str(), "t/head");
    assert_eq!(p.clusters[0].copies_wanted, 6);
    assert_eq!(p.clusters[0].copies_placed, 6);
    assert_eq!(p.clusters[0].bytes_placed, 60);
}

#[test]
fn head_in_flash_tail_on_disk_and_never_over_capacity() {
    // One appliance: flash for 2 renditions of 100, disk for 3.
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![app("a", "c", 250, 300, &[])],
        renditions: (0..8)
            .map(|i| rend(&format!("t/r{i}"), 100, &[("c", 100.0 - i as f64)]))
            .collect(),
        params: params(1),
    };
    let p = plan(&input);
    let tier_of = |r: &str| fills_of(&p, r).first().map(|f| f.tier);
    assert_eq!(tier_of("t/r0"), Some(Tier::Flash));
    assert_eq!(tier_of("t/r1"), Some(Tier::Flash));
    assert_eq!(tier_of("t/r2"), Some(Tier::Disk));
    assert_eq!(tier_of("t/r4"), Some(Tier::Disk));
    assert_eq!(tier_of("t/r5"), None);
    let c = &p.clusters[0];
    assert_eq!(
        (c.copies_placed, c.copies_unplaced, c.bytes_unplaced),
        (5, 3, 300)
    );
    // All fills come from the origin (no peer, no upstream).
    assert!(p.fills.iter().all(|f| f.source == Source::Origin));
}

#[test]
fn keeps_what_is_held_and_deletes_what_is_not_placed() {
    // `a` holds r0 on disk (kept there: no churn), an unknown rendition and a cold one.
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![app(
            "a",
            "c",
            100,
            300,
            &[
                ("t/r0", 100, Tier::Disk),
                ("gone/x", 50, Tier::Disk),
                ("t/cold", 100, Tier::Disk),
            ],
        )],
        renditions: vec![
            rend("t/r0", 100, &[("c", 100.0)]),
            rend("t/r1", 100, &[("c", 90.0)]),
            rend("t/r2", 100, &[("c", 80.0)]),
            rend("t/r3", 100, &[("c", 70.0)]),
            rend("t/cold", 100, &[]),
        ],
        params: params(1),
    };
    let p = plan(&input);
    assert!(fills_of(&p, "t/r0").is_empty(), "held copy kept");
    let dels: Vec<&str> = p.deletes.iter().map(|d| d.rendition.as_str()).collect();
    assert_eq!(dels.len(), 2);
    assert!(dels.contains(&"gone/x") && dels.contains(&"t/cold"));
    // r1 goes to flash (room: no deletion needed), r2 and r3 to disk: disk has 300, 250 of
    // it used now, so r2 needs the largest deletion (t/cold) first and r3 then gone/x.
    let r1 = fills_of(&p, "t/r1")[0];
    assert_eq!((r1.tier, r1.needs_deletes.len()), (Tier::Flash, 0));
    let r2 = fills_of(&p, "t/r2")[0];
    assert_eq!(r2.tier, Tier::Disk);
    assert_eq!(
        r2.needs_deletes
            .iter()
            .map(|&i| p.deletes[i as usize].rendition.as_str())
            .collect::<Vec<_>>(),
        vec!["t/cold"]
    );
    let r3 = fills_of(&p, "t/r3")[0];
    assert_eq!(
        r3.needs_deletes
            .iter()
            .map(|&i| p.deletes[i as usize].rendition.as_str())
            .collect::<Vec<_>>(),
        vec!["gone/x"]
    );
}

#[test]
fn partial_holdings_are_completed_and_shrunk_tiers_move() {
    // A failed drive shrank flash to 50: `moved` (100 on flash) no longer fits its tier and
    // is moved to disk (deleted first, then filled); `part` does not fit any more.
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![app(
            "a",
            "c",
            50,
            100,
            &[("t/part", 30, Tier::Disk), ("t/moved", 100, Tier::Flash)],
        )],
        renditions: vec![
            rend("t/moved", 100, &[("c", 500.0)]),
            rend("t/part", 100, &[("c", 1.0)]),
        ],
        params: params(1),
    };
    let p = plan(&input);
    let moved = fills_of(&p, "t/moved")[0];
    assert_eq!((moved.tier, moved.bytes), (Tier::Disk, 100));
    let own: Vec<&Delete> = moved
        .needs_deletes
        .iter()
        .map(|&i| &p.deletes[i as usize])
        .collect();
    assert!(
        own.iter()
            .any(|d| d.rendition.as_str() == "t/moved" && d.tier == Tier::Flash)
    );
    assert!(fills_of(&p, "t/part").is_empty());
    // With room on disk, the partial copy is completed: only the missing bytes move.
    let input2 = PlanInput {
        appliances: vec![app("a", "c", 0, 300, &[("t/part", 30, Tier::Disk)])],
        ..input
    };
    let p2 = plan(&input2);
    let part = fills_of(&p2, "t/part")[0];
    assert_eq!((part.bytes, part.tier), (70, Tier::Disk));
    assert!(p2.deletes.is_empty());
}

#[test]
fn held_flash_copy_stays_when_more_valuable_new_ones_arrive() {
    // `held` fills flash; `hot` is worth more but the appliance has room on disk: `held`
    // keeps its flash (no delete, no refill from the origin) and `hot` goes to disk.
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![app("a", "c", 100, 100, &[("t/held", 100, Tier::Flash)])],
        renditions: vec![
            rend("t/hot", 100, &[("c", 1000.0)]),
            rend("t/held", 100, &[("c", 500.0)]),
        ],
        params: params(1),
    };
    let p = plan(&input);
    assert!(fills_of(&p, "t/held").is_empty(), "held copy not moved");
    assert!(p.deletes.is_empty());
    let hot = fills_of(&p, "t/hot")[0];
    assert_eq!((hot.tier, hot.bytes), (Tier::Disk, 100));
    assert!(hot.needs_deletes.is_empty());
}

#[test]
fn held_disk_copy_stays_when_flash_frees_up() {
    // Flash frees up (`stale` has no demand); `n1` takes most of it and `n2` would need all
    // of disk, where `warm` sits: `warm` stays on disk (it is not moved to flash to make
    // room), `n2` finds no room and is counted as unplaced.
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![app(
            "a",
            "c",
            200,
            100,
            &[("t/stale", 200, Tier::Flash), ("t/warm", 50, Tier::Disk)],
        )],
        renditions: vec![
            rend("t/n1", 140, &[("c", 1400.0)]),
            rend("t/n2", 100, &[("c", 800.0)]),
            rend("t/warm", 50, &[("c", 250.0)]),
            rend("t/stale", 200, &[]),
        ],
        params: params(1),
    };
    let p = plan(&input);
    assert!(
        fills_of(&p, "t/warm").is_empty(),
        "held disk copy not moved"
    );
    let dels: Vec<&str> = p.deletes.iter().map(|d| d.rendition.as_str()).collect();
    assert_eq!(dels, vec!["t/stale"]);
    let n1 = fills_of(&p, "t/n1")[0];
    assert_eq!(n1.tier, Tier::Flash);
    assert!(fills_of(&p, "t/n2").is_empty());
    let c = &p.clusters[0];
    assert_eq!(
        (c.copies_placed, c.copies_unplaced, c.bytes_unplaced),
        (2, 1, 100)
    );
}

#[test]
fn deletions_that_make_room_go_least_valuable_first() {
    // Disk 400 holds `big` (value 1), `small` (value 0.5) and `cold` (no demand: value 0);
    // four new renditions worth far more take all of it. The deletions each fill needs go
    // least valuable first (cold, small, big), not largest first: if the night's budget
    // stops after `hot1` or `hot2`, the valuable `big` is still there.
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![app(
            "a",
            "c",
            0,
            400,
            &[
                ("t/big", 200, Tier::Disk),
                ("t/small", 100, Tier::Disk),
                ("t/cold", 50, Tier::Disk),
            ],
        )],
        renditions: vec![
            rend("t/hot1", 100, &[("c", 10_000.0)]),
            rend("t/hot2", 100, &[("c", 9_000.0)]),
            rend("t/hot3", 100, &[("c", 8_000.0)]),
            rend("t/hot4", 100, &[("c", 7_000.0)]),
            rend("t/big", 200, &[("c", 200.0)]),
            rend("t/small", 100, &[("c", 50.0)]),
            rend("t/cold", 50, &[]),
        ],
        params: params(1),
    };
    let p = plan(&input);
    let dels: Vec<&str> = p.deletes.iter().map(|d| d.rendition.as_str()).collect();
    assert_eq!(dels, vec!["t/cold", "t/small", "t/big"]);
    let needs = |r: &str| -> Vec<&str> {
        fills_of(&p, r)[0]
            .needs_deletes
            .iter()
            .map(|&i| p.deletes[i as usize].rendition.as_str())
            .collect()
    };
    assert_eq!(needs("t/hot1"), vec!["t/cold"]);
    assert_eq!(needs("t/hot2"), vec!["t/small"]);
    assert_eq!(needs("t/hot3"), vec!["t/big"]);
    assert!(needs("t/hot4").is_empty());
}

#[test]
fn sources_peer_then_upstream_then_origin() {
    let input = PlanInput {
        clusters: vec![cluster("ixp", "origin"), cluster("isp", "ixp")],
        appliances: vec![
            app("ixp1", "ixp", 0, 1000, &[("t/up", 10, Tier::Disk)]),
            app("isp1", "isp", 0, 1000, &[("t/peer", 10, Tier::Disk)]),
            app("isp2", "isp", 0, 1000, &[]),
        ],
        renditions: vec![
            // Wanted twice in isp: the second copy comes from the peer that holds it.
            rend("t/peer", 10, &[("isp", 1000.0)]),
            rend("t/up", 10, &[("isp", 1.0), ("ixp", 1.0)]),
            // Planned (not held) upstream: not ready.
            rend("t/planned", 10, &[("isp", 1.0), ("ixp", 1.0)]),
            rend("t/origin", 10, &[("isp", 1.0)]),
        ],
        params: params(2),
    };
    let p = plan(&input);
    let src = |r: &str, a: &str| {
        p.fills
            .iter()
            .find(|f| f.rendition.as_str() == r && f.appliance == a)
            .map(|f| f.source.clone())
    };
    assert_eq!(
        src("t/peer", "isp2"),
        Some(Source::Peer {
            appliance: "isp1".into()
        })
    );
    let up = p
        .fills
        .iter()
        .find(|f| f.rendition.as_str() == "t/up" && f.cluster == "isp")
        .unwrap();
    assert_eq!(
        up.source,
        Source::Upstream {
            cluster: "ixp".into(),
            appliance: "ixp1".into(),
            ready: true
        }
    );
    let planned = p
        .fills
        .iter()
        .find(|f| f.rendition.as_str() == "t/planned" && f.cluster == "isp")
        .unwrap();
    assert_eq!(
        planned.source,
        Source::Upstream {
            cluster: "ixp".into(),
            appliance: "ixp1".into(),
            ready: false
        }
    );
    assert_eq!(src("t/planned", "ixp1"), Some(Source::Origin));
    let o = p
        .fills
        .iter()
        .find(|f| f.rendition.as_str() == "t/origin")
        .unwrap();
    assert_eq!(o.source, Source::Origin);
    // Upstream clusters are planned (and listed) first.
    assert_eq!(p.clusters[0].id, "ixp");
}

#[test]
fn draining_appliances_get_nothing_and_lose_nothing() {
    let mut drain = app(
        "a1",
        "c",
        0,
        1000,
        &[("t/r", 10, Tier::Disk), ("t/old", 10, Tier::Disk)],
    );
    drain.accepts_new = false;
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![drain, app("a2", "c", 0, 1000, &[])],
        renditions: vec![
            rend("t/r", 10, &[("c", 5.0)]),
            rend("t/n", 10, &[("c", 4.0)]),
        ],
        params: params(2),
    };
    let p = plan(&input);
    assert!(p.fills.iter().all(|f| f.appliance == "a2"));
    assert!(p.deletes.is_empty());
    // Its copy does not count: a2 gets t/r, and not from the draining box.
    let r = fills_of(&p, "t/r");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].source, Source::Origin);
    assert_eq!(p.clusters[0].appliances, 1);
}

#[test]
fn empty_and_degenerate_inputs() {
    assert_eq!(plan(&PlanInput::default()), Plan::default());
    // A cluster without eligible appliances: everything unplaced, no panic.
    let input = PlanInput {
        clusters: vec![cluster("c", "origin")],
        appliances: vec![],
        renditions: vec![
            rend("t/r", 10, &[("c", f64::NAN)]),
            rend("t/s", 0, &[("c", 1.0)]),
            rend("t/u", 7, &[("c", 1.0)]),
        ],
        params: PlanParams {
            max_copies: 0,
            copy_share: 0.0,
            max_fill: f64::NAN,
        },
    };
    let p = plan(&input);
    assert!(p.fills.is_empty());
    assert_eq!(p.clusters[0].copies_unplaced, 1);
    assert_eq!(p.clusters[0].bytes_unplaced, 7);
}

// ---------------------------------------------------------------- property tests

/// A small deterministic generator (SplitMix64) driven by proptest's seed.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn plan_cap(a: &ApplianceInput, max_fill: f64) -> [u64; 2] {
    [
        (a.flash_bytes as f64 * max_fill) as u64,
        (a.disk_bytes as f64 * max_fill) as u64,
    ]
}

fn arb_input(
    seed: u64,
    n_clusters: usize,
    n_apps: usize,
    n_rends: usize,
    max_copies: u32,
) -> PlanInput {
    let mut g = Gen(seed);
    let clusters: Vec<ClusterInput> = (0..n_clusters)
        .map(|i| {
            let up = if i == 0 || g.chance(40) {
                "origin".to_string()
            } else {
                format!("c{}", g.below(i as u64))
            };
            cluster(&format!("c{i}"), &up)
        })
        .collect();
    let renditions: Vec<RenditionInput> = (0..n_rends)
        .map(|i| {
            let mut demand = BTreeMap::new();
            for c in &clusters {
                if g.chance(70) {
                    demand.insert(c.id.clone(), g.below(1000) as f64);
                }
            }
            RenditionInput {
                id: rid(&format!("t{}/r{i}", i % 7)),
                bytes: 1 + g.below(300),
                demand,
            }
        })
        .collect();
    let max_fill = [1.0, 0.9, 0.5][g.below(3) as usize];
    let appliances = (0..n_apps)
        .map(|i| {
            let mut a = app(
                &format!("oca-{i}"),
                &format!("c{}", g.below(n_clusters as u64 + 1)), // sometimes unknown
                g.below(4) * 500,
                500 + g.below(5) * 700,
                &[],
            );
            a.accepts_new = g.chance(85);
            let cap = plan_cap(&a, max_fill);
            let mut used = [0u64; 2];
            for r in &renditions {
                if g.chance(30) {
                    let tier = [Tier::Flash, Tier::Disk, Tier::Ram][g.below(3) as usize];
                    let bytes = if g.chance(20) {
                        1 + g.below(r.bytes)
                    } else {
                        r.bytes
                    };
                    let t = tier_slot(tier);
                    if used[t] + bytes <= cap[t] {
                        used[t] += bytes;
                        a.held.push(Held {
                            rendition: r.id.clone(),
                            bytes,
                            tier,
                        });
                    }
                }
            }
            if g.chance(20) && used[1] + 10 <= cap[1] {
                a.held.push(Held {
                    rendition: rid("gone/x"),
                    bytes: 10,
                    tier: Tier::Disk,
                });
            }
            a
        })
        .collect();
    PlanInput {
        clusters,
        appliances,
        renditions,
        params: PlanParams {
            max_copies,
            copy_share: [0.05, 0.1, 0.5][g.below(3) as usize],
            max_fill,
        },
    }
}

/// Executes a plan on the input's inventories the way the executor may: before each fill its
/// `needs_deletes`, then the fill; the remaining deletions last. Checks the capacity after
/// every step and returns the new state.
fn apply(input: &PlanInput, p: &Plan) -> Result<PlanInput, String> {
    let mut state: HashMap<String, (ApplianceInput, [u64; 2], [u64; 2])> = HashMap::new();
    for a in &input.appliances {
        let mut used = [0; 2];
        for h in &a.held {
            used[tier_slot(h.tier)] += h.bytes;
        }
        state.insert(
            a.id.clone(),
            (a.clone(), plan_cap(a, input.params.max_fill), used),
        );
    }
    let mut done = vec![false; p.deletes.len()];
    let mut delete = |state: &mut HashMap<String, (ApplianceInput, [u64; 2], [u64; 2])>,
                      i: usize|
     -> Result<(), String> {
        if done[i] {
            return Ok(());
        }
        done[i] = true;
        let d = &p.deletes[i];
        let (a, _, used) = state
            .get_mut(&d.appliance)
            .ok_or("delete on unknown appliance")?;
        if !a.accepts_new {
            return Err(format!("delete on ineligible {}", a.id));
        }
        let pos = a
            .held
            .iter()
            .position(|h| h.rendition == d.rendition)
            .ok_or(format!("{} does not hold {}", a.id, d.rendition))?;
        let h = a.held.remove(pos);
        if h.bytes != d.bytes || tier_slot(h.tier) != tier_slot(d.tier) {
            return Err(format!("delete {d:?} does not match {h:?}"));
        }
        used[tier_slot(h.tier)] -= h.bytes;
        Ok(())
    };
    for f in &p.fills {
        for &i in &f.needs_deletes {
            delete(&mut state, i as usize)?;
        }
        let (a, cap, used) = state
            .get_mut(&f.appliance)
            .ok_or("fill on unknown appliance")?;
        if !a.accepts_new {
            return Err(format!("fill on ineligible {}", a.id));
        }
        let t = tier_slot(f.tier);
        match a.held.iter_mut().find(|h| h.rendition == f.rendition) {
            Some(h) if tier_slot(h.tier) == t => h.bytes += f.bytes,
            Some(h) => {
                return Err(format!(
                    "{} fills {} on {:?} while it sits on {:?}",
                    a.id, f.rendition, f.tier, h.tier
                ));
            }
            None => a.held.push(Held {
                rendition: f.rendition.clone(),
                bytes: f.bytes,
                tier: f.tier,
            }),
        }
        used[t] += f.bytes;
        if used[t] > cap[t] {
            return Err(format!(
                "{} tier {:?} over capacity: {} > {}",
                a.id, f.tier, used[t], cap[t]
            ));
        }
    }
    for i in 0..p.deletes.len() {
        delete(&mut state, i)?;
    }
    let mut out = input.clone();
    for a in &mut out.appliances {
        a.held = state.remove(&a.id).map(|s| s.0.held).unwrap_or_default();
        a.held.sort_by(|x, y| x.rendition.cmp(&y.rendition));
    }
    Ok(out)
}

fn shuffled(input: &PlanInput, seed: u64) -> PlanInput {
    let mut g = Gen(seed);
    let mut out = input.clone();
    fn shuffle<T>(v: &mut [T], g: &mut Gen) {
        for i in (1..v.len()).rev() {
            let j = g.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
    shuffle(&mut out.clusters, &mut g);
    shuffle(&mut out.appliances, &mut g);
    shuffle(&mut out.renditions, &mut g);
    for a in &mut out.appliances {
        shuffle(&mut a.held, &mut g);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Executed in order, a plan never takes a tier over its planned capacity, touches only
    /// eligible appliances, and leaves at most `max-copies` copies per cluster.
    #[test]
    fn never_over_capacity(seed in any::<u64>(), nc in 1usize..4, na in 1usize..9, nr in 1usize..50, mc in 1u32..5) {
        let input = arb_input(seed, nc, na, nr, mc);
        let p = plan(&input);
        let after = apply(&input, &p).map_err(TestCaseError::fail)?;
        let mut copies: HashMap<(&str, &RenditionId), u32> = HashMap::new();
        // Appliances in a cluster the sites file lacks are left alone, like ineligible ones.
        let known = |a: &ApplianceInput| input.clusters.iter().any(|c| c.id == a.cluster);
        for a in after.appliances.iter().filter(|a| a.accepts_new && known(a)) {
            for h in &a.held {
                *copies.entry((a.cluster.as_str(), &h.rendition)).or_default() += 1;
            }
        }
        prop_assert!(copies.values().all(|&n| n <= mc));
        for f in &p.fills {
            match &f.source {
                Source::Peer { appliance } => {
                    prop_assert_ne!(appliance, &f.appliance);
                    let peer = input.appliances.iter().find(|a| &a.id == appliance).unwrap();
                    prop_assert_eq!(&peer.cluster, &f.cluster);
                    prop_assert!(peer.held.iter().any(|h| h.rendition == f.rendition));
                }
                Source::Upstream { cluster, .. } => {
                    let me = input.clusters.iter().find(|c| c.id == f.cluster).unwrap();
                    prop_assert_eq!(&me.upstream, cluster);
                }
                Source::Origin => {}
            }
        }
    }

    /// Same input, any order of its lists: the same plan.
    #[test]
    fn deterministic_and_order_independent(seed in any::<u64>(), shuffle in any::<u64>(), nc in 1usize..4, na in 1usize..9, nr in 1usize..50) {
        let input = arb_input(seed, nc, na, nr, 3);
        let p = plan(&input);
        prop_assert_eq!(&p, &plan(&input));
        prop_assert_eq!(&p, &plan(&shuffled(&input, shuffle)));
    }

    /// Planning again after the plan ran changes nothing (no churn).
    #[test]
    fn idempotent(seed in any::<u64>(), nc in 1usize..4, na in 1usize..9, nr in 1usize..50, mc in 1u32..5) {
        let input = arb_input(seed, nc, na, nr, mc);
        let after = apply(&input, &plan(&input)).map_err(TestCaseError::fail)?;
        let again = plan(&after);
        prop_assert!(again.fills.is_empty(), "fills: {:?}", again.fills);
        prop_assert!(again.deletes.is_empty(), "deletes: {:?}", again.deletes);
    }

    /// One of N appliances joining or leaving a settled cluster (capacity to spare) moves at
    /// most 2/N of the placed bytes, plus a few renditions' worth (the expected share is
    /// 1/N for the moved copies, and at most about 1/N more for copy counts that follow N).
    #[test]
    fn join_or_leave_moves_about_one_nth(seed in any::<u64>(), n in 3usize..13, nr in 100usize..300, mc in 1u32..4, leave in any::<bool>()) {
        let mut g = Gen(seed);
        let renditions: Vec<RenditionInput> = (0..nr)
            .map(|i| rend(&format!("t/r{i}"), 1 + g.below(100), &[("c", 1.0 + g.below(1000) as f64)]))
            .collect();
        let big = 1 << 40;
        let input = PlanInput {
            clusters: vec![cluster("c", "origin")],
            appliances: (0..n).map(|i| app(&format!("oca-{i}"), "c", 0, big, &[])).collect(),
            renditions,
            params: params(mc),
        };
        let settled = apply(&input, &plan(&input)).map_err(TestCaseError::fail)?;
        let placed: u64 = settled.appliances.iter().flat_map(|a| &a.held).map(|h| h.bytes).sum();
        let mut changed = settled.clone();
        if leave {
            let gone = g.below(n as u64) as usize;
            changed.appliances.remove(gone);
        } else {
            changed.appliances.push(app("oca-new", "c", 0, big, &[]));
        }
        let moved: u64 = plan(&changed).fills.iter().map(|f| f.bytes).sum();
        let max_bytes = changed.renditions.iter().map(|r| r.bytes).max().unwrap_or(0);
        let bound = 2 * placed / n as u64 + 4 * max_bytes * u64::from(mc);
        prop_assert!(moved <= bound, "moved {moved} of {placed} (n {n}), bound {bound}");
        prop_assert!(moved > 0 || placed == 0);
    }
}
