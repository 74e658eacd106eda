//! Forecast cost on a synthetic view history (until the VODSYN generator in `oca-benches`
//! can feed it): `T` titles × 4 renditions × 5 regions × 28 days, Zipf-like title
//! popularity, a weekly pattern, 20 launches and exposure for every title.
//!
//! `cargo bench -p control-plane --bench forecast`

use control_plane::forecast::{self, DailyViews, Exposure, ForecastParams, Launch};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use oca_common::wire::RenditionId;

const RENDITIONS: [&str; 4] = ["2160p-hevc", "1080p-h264", "720p-h264", "aac-128k"];
const REGIONS: [&str; 5] = ["NL", "BE", "DE", "FR", "US"];
const TARGET: i64 = 20_500;

fn history(titles: usize) -> (Vec<DailyViews>, Vec<Launch>, Vec<Exposure>) {
    let names: Vec<String> = (0..titles).map(|t| format!("title-{t:05}")).collect();
    let mut rows = Vec::new();
    for (t, name) in names.iter().enumerate() {
        let base = 1000.0 / (t as f64 + 1.0);
        for day in TARGET - 28..TARGET {
            let weekly = if forecast::weekday(day) >= 5 {
                1.6
            } else {
                1.0
            };
            for (ri, r) in RENDITIONS.iter().enumerate() {
                for (gi, g) in REGIONS.iter().enumerate() {
                    let v = base * weekly / (ri as f64 + 1.0) / (gi as f64 + 1.0);
                    rows.push((day, name.as_str(), *r, *g, v.floor()));
                }
            }
        }
    }
    let h = DailyViews::from_rows(rows).expect("valid ids");
    let launches = (0..20)
        .map(|i| Launch {
            title: format!("launch-{i}"),
            day: TARGET,
            regions: vec![],
            renditions: RENDITIONS
                .iter()
                .map(|r| RenditionId::new(&format!("launch-{i}"), r).expect("valid"))
                .collect(),
            prior_quantile: None,
        })
        .collect();
    let exposure = names
        .iter()
        .flat_map(|n| {
            REGIONS.iter().map(move |g| Exposure {
                title: n.clone(),
                region: (*g).to_owned(),
                impressions: 100.0,
            })
        })
        .collect();
    (h, launches, exposure)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("forecast");
    group.sample_size(10);
    for titles in [100usize, 1000] {
        let (h, l, x) = history(titles);
        group.bench_with_input(
            BenchmarkId::new("titles", format!("{titles} ({} rows)", h.len())),
            &(h, l, x),
            |b, (h, l, x)| {
                b.iter(|| forecast::forecast(TARGET, TARGET, h, l, x, &ForecastParams::default()))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
