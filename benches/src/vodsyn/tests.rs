//! Generator, trace-file and calibration tests on a tiny profile derived from S.

use super::generate::{object_id, split_id, weight};
use super::stats::{SPEC_S, calibrate};
use super::trace::{
    NEVER, OracleReader, OracleRecord, next_access, read_catalog, write_catalog, write_oracle,
};
use super::*;

/// S with 12 titles, 4 days (so the day-3 tentpole exists) and 2 % of the load.
fn tiny() -> Profile {
    load_profile("S").expect("built-in S").tiny(12, 4, 0.02)
}

#[test]
fn splitmix64_matches_hand_computed_values() {
    // The first output of the reference splitmix64 seeded with 0.
    assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    assert_eq!(splitmix64(12345), 0x2211_8258_A9D1_11A0);
}

#[test]
fn box_muller_and_chunk_bytes_match_hand_computed_values() {
    // Computed independently (Python, float64) from the spec's formulas.
    let cases = [
        // (video, rung, chunk, z, bytes)
        (0, 0, 0, 0.466_423_652_223_542_43, 127_970),
        (17, 3, 100, 0.235_507_397_794_724_9, 1_207_914),
        (3000, 5, 2699, 1.532_385_328_291_682_4, 5_331_338),
    ];
    let ladder = [235.0, 560.0, 1050.0, 2350.0, 4300.0, 7500.0];
    for (v, r, k, z, bytes) in cases {
        let id = object_id(v, r, k);
        assert!((vbr_z(id) - z).abs() < 1e-12, "z of {id}: {}", vbr_z(id));
        assert_eq!(chunk_bytes(id, ladder[r as usize], 4.0, 0.25, 1024), bytes);
        assert_eq!(split_id(id), (v, r, k));
    }
    assert_eq!(object_id(17, 3, 100), 569_444);
    // Tiny rungs are clamped to the minimum.
    assert_eq!(chunk_bytes(1, 1.0, 4.0, 0.25, 1024), 1024);
}

#[test]
fn tiny_profile_invariants() {
    let p = tiny();
    let g = generate(&p, 7);
    let cat = &g.catalog;
    assert!(
        g.sessions > 50 && g.viewings >= g.sessions,
        "{} {}",
        g.sessions,
        g.viewings
    );
    assert!(g.requests.len() > 10_000);
    let end_ms = u64::from(p.days) * 86_400_000;
    let mut prev = 0;
    for r in &g.requests {
        assert!(r.t_ms >= prev, "not sorted");
        prev = r.t_ms;
        assert!(u64::from(r.t_ms) < end_ms);
        assert!(r.bytes >= 1024);
        let (v, rung, k) = split_id(r.id);
        let video = &cat.videos[v as usize];
        assert!(rung < 6 && k < video.n_chunks);
        let title = &cat.titles[video.title as usize];
        assert!(u64::from(title.release_day) * 86_400_000 <= u64::from(r.t_ms));
        assert_eq!(
            r.bytes,
            chunk_bytes(r.id, cat.ladder_kbps[rung as usize], 4.0, 0.25, 1024)
        );
    }
    // Rendition bytes add up to the catalog bytes.
    let total: u64 = cat.videos.iter().flat_map(|v| v.rung_bytes.iter()).sum();
    assert_eq!(total, cat.catalog_bytes_end);
    assert!(
        cat.catalog_bytes_day0 < cat.catalog_bytes_end,
        "the tentpole adds bytes"
    );
    // The day-3 tentpole holds exactly the configured share of all weight that day.
    let tp: Vec<_> = cat.titles.iter().filter(|t| t.tentpole).collect();
    assert_eq!(tp.len(), 1);
    assert_eq!(tp[0].release_day, 3);
    let tau = p.popularity.launch_decay_days;
    let all: f64 = cat.titles.iter().map(|t| weight(t, 3, tau)).sum();
    let share = weight(tp[0], 3, tau) / all;
    assert!((share - 0.1).abs() < 1e-9, "tentpole share {share}");
    // Seeded: same seed, same trace; another seed, another trace.
    assert_eq!(generate(&p, 7).requests, g.requests);
    assert_ne!(generate(&p, 8).requests, g.requests);
}

#[test]
fn oracle_general_round_trip_streams_with_next_access() {
    let p = tiny();
    let g = generate(&p, 3);
    let next = next_access(&g.requests);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.bin");
    write_oracle(&path, &g.requests, &next).expect("write");
    let len = std::fs::metadata(&path).expect("stat").len();
    assert_eq!(len, 24 * g.requests.len() as u64);
    // Next-access indices: brute force the first 2,000 against a forward scan.
    for (i, (r, &got)) in g.requests.iter().zip(&next).take(2000).enumerate() {
        let want = g.requests[i + 1..]
            .iter()
            .position(|x| x.id == r.id)
            .map_or(u32::MAX, |j| (i + 1 + j) as u32);
        assert_eq!(got, want, "next of {i}");
    }
    let mut n = 0;
    let mut nevers = 0;
    for (i, rec) in OracleReader::open(&path).expect("open").enumerate() {
        let rec = rec.expect("record");
        let r = g.requests[i];
        assert_eq!(rec.time, r.t_ms / 1000 + 1);
        assert_eq!((rec.id, rec.bytes), (r.id, r.bytes));
        if next[i] == u32::MAX {
            assert_eq!(rec.next, NEVER);
            nevers += 1;
        } else {
            assert_eq!(rec.next, u64::from(next[i]));
        }
        n += 1;
    }
    assert_eq!(n, g.requests.len());
    assert!(nevers > 0);
    // INT64_MAX on disk for "never".
    let raw = std::fs::read(&path).expect("read");
    let last = &raw[raw.len() - 8..];
    assert_eq!(i64::from_le_bytes(last.try_into().unwrap()), i64::MAX);
    // A torn last record is an error, not a short read.
    std::fs::write(&path, &raw[..24 * 3 + 10]).expect("write");
    let recs: Vec<_> = OracleReader::open(&path).expect("open").collect();
    assert_eq!(recs.len(), 4);
    assert!(matches!(
        recs[3],
        Err(VodsynError::Truncated { offset: 72 })
    ));
    // Catalog JSON round trip.
    let cpath = dir.path().join("catalog.json");
    write_catalog(&cpath, &g.catalog).expect("write catalog");
    let back = read_catalog(&cpath).expect("read catalog");
    assert_eq!(back.catalog_bytes_day0, g.catalog.catalog_bytes_day0);
    assert_eq!(back.titles.len(), g.catalog.titles.len());
    assert_eq!(back.videos[5].rung_bytes, g.catalog.videos[5].rung_bytes);
}

#[test]
fn record_encoding_is_little_endian_packed() {
    let rec = OracleRecord {
        time: 0x0102_0304,
        id: 0x1112_1314_1516_1718,
        bytes: 0x2122_2324,
        next: 5,
    };
    let b = rec.encode();
    assert_eq!(&b[0..4], &[4, 3, 2, 1]);
    assert_eq!(&b[4..12], &[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]);
    assert_eq!(&b[12..16], &[0x24, 0x23, 0x22, 0x21]);
    assert_eq!(&b[16..24], &[5, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(OracleRecord::decode(&b), rec);
}

#[test]
fn calibration_of_the_tiny_trace_is_consistent() {
    let g = generate(&tiny(), 1);
    let c = calibrate(&g);
    assert_eq!(c.values.len(), SPEC_S.len());
    assert_eq!(c.values[0], g.requests.len() as f64);
    let rung_sum: f64 = c.values[17..23].iter().sum();
    assert!((rung_sum - 1.0).abs() < 1e-9);
    // Shares are shares.
    for v in &c.values[14..15] {
        assert!((0.0..=1.0).contains(v));
    }
    assert!(
        c.values[23] <= c.values[24],
        "top 1 % share ≤ top 10 % share"
    );
}

#[test]
fn profiles_parse_and_bad_ones_are_refused() {
    let s = load_profile("S").expect("S");
    let m = load_profile("M").expect("M");
    assert_eq!((s.catalog.n_movies, m.catalog.n_movies), (480, 4000));
    let mut bad = s.clone();
    bad.load.diurnal.pop();
    assert!(matches!(bad.validate(), Err(VodsynError::BadProfile(_))));
    assert!(load_profile("/nonexistent/profile.json").is_err());
}
