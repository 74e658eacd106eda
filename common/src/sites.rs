//! The sites file (DESIGN §6), read by steering and the fill controller.
//!
//! TOML with kebab-case keys: `[[site]]` tables (id, IANA time zone, local fill window, a
//! per-appliance fill rate cap and nightly byte budget), `[[cluster]]` tables (id, site,
//! `upstream` cluster it fills from — ending at `"origin"` — and the `fallback` clusters
//! steering uses after it, in order), and a top-level `fallback` list: the clusters steering
//! offers a client that no appliance's BGP prefixes cover. `common/etc/sites.toml` is the
//! commented example; a test parses it.
//!
//! [`Sites::parse`] validates: unique ids, known sites, known upstream and fallback clusters,
//! no upstream cycles, well-formed fill windows (`HH:MM-HH:MM`, may wrap midnight) and time
//! zone names. What it does not do: check a time zone against the tz database (it checks the
//! `Area/Location` shape or `UTC`), or know which appliances are in a cluster — appliances
//! register into clusters by heartbeat.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The upstream name that ends every fill chain.
pub const ORIGIN: &str = "origin";

/// Why a sites file is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SitesError {
    /// Not TOML, or not the expected shape (unknown key, wrong type).
    #[error("sites file: {0}")]
    Toml(String),
    /// An id is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("{what} id {id:?} must be 1-64 characters of [A-Za-z0-9._-]")]
    BadId {
        /// `site` or `cluster`.
        what: &'static str,
        /// The offending id.
        id: String,
    },
    /// Two sites or two clusters share an id (or a cluster is named `origin`).
    #[error("{what} id {id:?} is used twice (or is the reserved name \"origin\")")]
    Duplicate {
        /// `site` or `cluster`.
        what: &'static str,
        /// The repeated id.
        id: String,
    },
    /// A cluster names a site that is not defined.
    #[error("cluster {cluster:?}: unknown site {site:?}")]
    UnknownSite {
        /// The cluster.
        cluster: String,
        /// The missing site.
        site: String,
    },
    /// A cluster's `upstream` is neither a defined cluster nor `origin`.
    #[error("cluster {cluster:?}: unknown upstream {upstream:?} (a cluster id or \"origin\")")]
    UnknownUpstream {
        /// The cluster.
        cluster: String,
        /// The missing upstream.
        upstream: String,
    },
    /// Following `upstream` from this cluster comes back to it instead of reaching `origin`.
    #[error("upstream cycle: {0}")]
    UpstreamCycle(String),
    /// A fallback list names an undefined cluster, or a cluster names itself.
    #[error("{owner}: bad fallback cluster {fallback:?} (unknown, itself, or listed twice)")]
    BadFallback {
        /// `cluster "id"` or `top-level fallback`.
        owner: String,
        /// The offending entry.
        fallback: String,
    },
    /// A fill window is not `HH:MM-HH:MM` or starts and ends at the same time.
    #[error("site {site:?}: bad fill-window {window:?} (expected HH:MM-HH:MM, start != end)")]
    BadWindow {
        /// The site.
        site: String,
        /// The window text.
        window: String,
    },
    /// A time zone is not `UTC` or an `Area/Location` name.
    #[error("site {site:?}: bad time-zone {tz:?} (an IANA name such as Europe/Berlin, or UTC)")]
    BadTimeZone {
        /// The site.
        site: String,
        /// The zone text.
        tz: String,
    },
    /// A rate cap or a budget is zero.
    #[error("site {site:?}: {key} must be more than 0")]
    Zero {
        /// The site.
        site: String,
        /// `fill-rate-bps` or `nightly-budget`.
        key: &'static str,
    },
}

/// A fill window in local time, minutes after midnight; `end < start` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillWindow {
    /// Start, minutes after local midnight.
    pub start_min: u16,
    /// End (exclusive), minutes after local midnight.
    pub end_min: u16,
}

impl FillWindow {
    /// Parses `HH:MM-HH:MM` (24-hour clock; `24:00` allowed as an end).
    pub fn parse(s: &str) -> Option<FillWindow> {
        let (a, b) = s.trim().split_once('-')?;
        let hm = |t: &str, end: bool| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            match (h, m) {
                (24, 0) if end => Some(24 * 60),
                (0..=23, 0..=59) => Some(h * 60 + m),
                _ => None,
            }
        };
        let (start_min, end_min) = (hm(a, false)?, hm(b, true)?);
        (start_min != end_min).then_some(FillWindow { start_min, end_min })
    }

    /// True if `minute` (after local midnight) lies inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&minute)
        } else {
            minute >= self.start_min || minute < self.end_min
        }
    }
}

/// One site (an ISP location or an IXP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Site {
    /// Site id.
    pub id: String,
    /// IANA time zone of the fill window, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Local fill window, `HH:MM-HH:MM`.
    #[serde(default = "default_window")]
    pub fill_window: String,
    /// Fill rate cap per appliance, bits per second (a number, or e.g. `"2Gbps"`).
    #[serde(default = "default_rate", with = "bps")]
    pub fill_rate_bps: u64,
    /// Bytes each appliance may fill per night (e.g. `"20TB"`).
    #[serde(default = "default_budget", with = "crate::units::bytes")]
    pub nightly_budget: u64,
}

/// A cluster: a site's appliances, or an IXP cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Cluster {
    /// Cluster id (appliances name it in their heartbeats).
    pub id: String,
    /// The site it belongs to.
    pub site: String,
    /// The cluster it fills from, or `origin`.
    #[serde(default = "default_upstream")]
    pub upstream: String,
    /// Clusters steering offers after this one, in order.
    #[serde(default)]
    pub fallback: Vec<String>,
}

/// The whole sites file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Sites {
    /// Clusters offered to clients that no appliance's prefixes cover, in order.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Sites.
    #[serde(default, rename = "site")]
    pub sites: Vec<Site>,
    /// Clusters.
    #[serde(default, rename = "cluster")]
    pub clusters: Vec<Cluster>,
}

fn default_window() -> String {
    "02:00-14:00".into()
}
fn default_rate() -> u64 {
    1_000_000_000
}
fn default_budget() -> u64 {
    10_000_000_000_000
}
fn default_upstream() -> String {
    ORIGIN.into()
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_tz(tz: &str) -> bool {
    if tz == "UTC" {
        return true;
    }
    let mut parts = tz.split('/');
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
    };
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    ok_part(first)
        && first.as_bytes()[0].is_ascii_uppercase()
        && !rest.is_empty()
        && rest.len() <= 2
        && rest.iter().all(|p| ok_part(p))
}

impl Sites {
    /// Parses and validates a sites file.
    pub fn parse(text: &str) -> Result<Sites, SitesError> {
        let sites: Sites = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).lines().count().max(1));
            let msg = e.message().trim_end();
            SitesError::Toml(match line {
                Some(line) => format!("line {line}: {msg}"),
                None => msg.to_owned(),
            })
        })?;
        sites.validate()?;
        Ok(sites)
    }

    /// Checks what serde cannot (see the module doc).
    pub fn validate(&self) -> Result<(), SitesError> {
        let mut site_ids = BTreeSet::new();
        for s in &self.sites {
            if !valid_id(&s.id) {
                return Err(SitesError::BadId {
                    what: "site",
                    id: s.id.clone(),
                });
            }
            if !site_ids.insert(s.id.as_str()) {
                return Err(SitesError::Duplicate {
                    what: "site",
                    id: s.id.clone(),
                });
            }
            if FillWindow::parse(&s.fill_window).is_none() {
                return Err(SitesError::BadWindow {
                    site: s.id.clone(),
                    window: s.fill_window.clone(),
                });
            }
            if !valid_tz(&s.time_zone) {
                return Err(SitesError::BadTimeZone {
                    site: s.id.clone(),
                    tz: s.time_zone.clone(),
                });
            }
            if s.fill_rate_bps == 0 {
                return Err(SitesError::Zero {
                    site: s.id.clone(),
                    key: "fill-rate-bps",
                });
            }
            if s.nightly_budget == 0 {
                return Err(SitesError::Zero {
                    site: s.id.clone(),
                    key: "nightly-budget",
                });
            }
        }
        let mut upstream: BTreeMap<&str, &str> = BTreeMap::new();
        for c in &self.clusters {
            if !valid_id(&c.id) {
                return Err(SitesError::BadId {
                    what: "cluster",
                    id: c.id.clone(),
                });
            }
            if c.id == ORIGIN || upstream.insert(&c.id, &c.upstream).is_some() {
                return Err(SitesError::Duplicate {
                    what: "cluster",
                    id: c.id.clone(),
                });
            }
            if !site_ids.contains(c.site.as_str()) {
                return Err(SitesError::UnknownSite {
                    cluster: c.id.clone(),
                    site: c.site.clone(),
                });
            }
        }
        for c in &self.clusters {
            if c.upstream != ORIGIN && !upstream.contains_key(c.upstream.as_str()) {
                return Err(SitesError::UnknownUpstream {
                    cluster: c.id.clone(),
                    upstream: c.upstream.clone(),
                });
            }
            // Walk the chain; more steps than clusters means a cycle.
            let mut path = vec![c.id.as_str()];
            let mut at = c.upstream.as_str();
            while at != ORIGIN {
                path.push(at);
                if path.len() > self.clusters.len() + 1 {
                    return Err(SitesError::UpstreamCycle(path.join(" -> ")));
                }
                at = upstream.get(at).copied().unwrap_or(ORIGIN);
            }
            check_fallback(
                &format!("cluster {:?}", c.id),
                Some(&c.id),
                &c.fallback,
                &upstream,
            )?;
        }
        check_fallback("top-level fallback", None, &self.fallback, &upstream)?;
        Ok(())
    }

    /// The cluster with this id.
    pub fn cluster(&self, id: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.id == id)
    }

    /// The site with this id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }
}

fn check_fallback(
    owner: &str,
    me: Option<&str>,
    list: &[String],
    clusters: &BTreeMap<&str, &str>,
) -> Result<(), SitesError> {
    let mut seen = BTreeSet::new();
    for f in list {
        if Some(f.as_str()) == me || !clusters.contains_key(f.as_str()) || !seen.insert(f) {
            return Err(SitesError::BadFallback {
                owner: owner.to_owned(),
                fallback: f.clone(),
            });
        }
    }
    Ok(())
}

/// Serde helper for bits-per-second fields: an integer, or a string with a decimal unit
/// (`bps`, `Kbps`, `Mbps`, `Gbps`, `Tbps`), e.g. `"2.5Gbps"`.
pub mod bps {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses `"2Gbps"`, `"800 Mbps"`, `"1000"`.
    pub fn parse(s: &str) -> Option<u64> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let num_end = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(lower.len());
        let (num, unit) = lower.split_at(num_end);
        let mult: f64 = match unit.trim() {
            "" | "bps" => 1.0,
            "kbps" => 1e3,
            "mbps" => 1e6,
            "gbps" => 1e9,
            "tbps" => 1e12,
            _ => return None,
        };
        let n: f64 = num.parse().ok()?;
        let v = n * mult;
        ((0.0..1.8e19).contains(&v) && v.fract() == 0.0).then_some(v as u64)
    }

    /// Writes the integer.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*v)
    }

    /// Reads an integer or a string with a unit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "bad rate {s:?} (use e.g. 2Gbps, 800Mbps or an integer in bit/s)"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../etc/sites.toml");

    #[test]
    fn example_parses() {
        let s = Sites::parse(EXAMPLE).expect("example parses");
        assert_eq!(s.fallback, vec!["ixp-fra".to_string()]);
        let c = s.cluster("isp1-fra-a").expect("cluster");
        assert_eq!(c.upstream, "ixp-fra");
        assert_eq!(c.fallback, vec!["ixp-fra".to_string()]);
        let site = s.site("isp1-fra").expect("site");
        assert_eq!(site.time_zone, "Europe/Berlin");
        assert_eq!(site.fill_rate_bps, 2_000_000_000);
        assert_eq!(site.nightly_budget, 20_000_000_000_000);
        assert_eq!(s.cluster("ixp-fra").unwrap().upstream, ORIGIN);
    }

    fn base() -> String {
        "[[site]]\nid = \"s1\"\ntime-zone = \"Europe/Berlin\"\n\n\
         [[cluster]]\nid = \"a\"\nsite = \"s1\"\n"
            .to_string()
    }

    #[test]
    fn mistakes_are_named() {
        assert!(Sites::parse(&base()).is_ok());
        let cases: &[(&str, &str)] = &[
            ("upstream = \"nowhere\"\n", "unknown upstream \"nowhere\""),
            ("fallback = [\"a\"]\n", "bad fallback cluster \"a\""),
            ("fallback = [\"zz\"]\n", "bad fallback cluster \"zz\""),
            ("bogus = 1\n", "unknown field"),
        ];
        for (extra, needle) in cases {
            let text = base() + extra;
            let err = Sites::parse(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text} -> {err}");
        }
        let cycle = base()
            + "upstream = \"b\"\n[[cluster]]\nid = \"b\"\nsite = \"s1\"\nupstream = \"c\"\n\
               [[cluster]]\nid = \"c\"\nsite = \"s1\"\nupstream = \"a\"\n";
        let err = Sites::parse(&cycle).unwrap_err();
        assert!(matches!(err, SitesError::UpstreamCycle(_)), "{err}");
        let self_loop = base() + "upstream = \"a\"\n";
        assert!(matches!(
            Sites::parse(&self_loop),
            Err(SitesError::UpstreamCycle(_))
        ));
        let bad_site = "[[cluster]]\nid = \"a\"\nsite = \"nope\"\n";
        assert!(matches!(
            Sites::parse(bad_site),
            Err(SitesError::UnknownSite { .. })
        ));
        for w in ["25:00-03:00", "02:00-02:00", "2:00-14:00", "02:00", "x"] {
            let text =
                format!("[[site]]\nid = \"s1\"\ntime-zone = \"UTC\"\nfill-window = \"{w}\"\n");
            assert!(
                matches!(Sites::parse(&text), Err(SitesError::BadWindow { .. })),
                "{w}"
            );
        }
        for tz in ["Berlin", "europe/berlin", "Europe/", "../etc"] {
            let text = format!("[[site]]\nid = \"s1\"\ntime-zone = \"{tz}\"\n");
            assert!(
                matches!(Sites::parse(&text), Err(SitesError::BadTimeZone { .. })),
                "{tz}"
            );
        }
        let dup = base() + "[[cluster]]\nid = \"a\"\nsite = \"s1\"\n";
        assert!(matches!(
            Sites::parse(&dup),
            Err(SitesError::Duplicate { .. })
        ));
        let rate = "[[site]]\nid = \"s1\"\ntime-zone = \"UTC\"\nfill-rate-bps = \"fast\"\n";
        assert!(
            Sites::parse(rate)
                .unwrap_err()
                .to_string()
                .contains("bad rate")
        );
        assert!(matches!(
            Sites::parse("not toml ["),
            Err(SitesError::Toml(_))
        ));
    }

    #[test]
    fn windows() {
        let w = FillWindow::parse("02:00-14:00").unwrap();
        assert!(w.contains(120) && w.contains(839) && !w.contains(840) && !w.contains(60));
        let wrap = FillWindow::parse("22:30-06:00").unwrap();
        assert!(wrap.contains(23 * 60) && wrap.contains(0) && !wrap.contains(12 * 60));
        let all = FillWindow::parse("00:00-24:00").unwrap();
        assert!(all.contains(0) && all.contains(1439));
        assert_eq!(bps::parse("2.5Gbps"), Some(2_500_000_000));
        assert_eq!(bps::parse("800 Mbps"), Some(800_000_000));
        assert_eq!(bps::parse("12"), Some(12));
        assert_eq!(bps::parse("1.5bps"), None);
        assert_eq!(bps::parse("-1"), None);
    }
}
