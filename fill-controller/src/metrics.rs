//! Prometheus metrics of the fill executor, named `fill_<what>_<unit>` (DESIGN §7), label
//! sets from fixed enums. [`Metrics::register`] adds them to a registry that the `daemon`
//! serves; the executor updates them.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::origin::FaultKind;

/// Where a fill's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceLabel {
    /// A peer in the appliance's cluster.
    Peer,
    /// An appliance of the upstream cluster.
    Upstream,
    /// The origin.
    Origin,
}

/// What became of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectOutcome {
    /// Ingested (201).
    Created,
    /// The appliance already had it (200).
    Present,
    /// Skipped: the journal says it is done.
    Journaled,
    /// Every source failed.
    Failed,
}

impl SourceLabel {
    /// Every source.
    pub const ALL: [SourceLabel; 3] = [
        SourceLabel::Peer,
        SourceLabel::Upstream,
        SourceLabel::Origin,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceLabel::Peer => "peer",
            SourceLabel::Upstream => "upstream",
            SourceLabel::Origin => "origin",
        }
    }
}

impl ObjectOutcome {
    /// Every outcome.
    pub const ALL: [ObjectOutcome; 4] = [
        ObjectOutcome::Created,
        ObjectOutcome::Present,
        ObjectOutcome::Journaled,
        ObjectOutcome::Failed,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectOutcome::Created => "created",
            ObjectOutcome::Present => "present",
            ObjectOutcome::Journaled => "journaled",
            ObjectOutcome::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for SourceLabel {
    fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(e, self.as_str())
    }
}
impl EncodeLabelValue for ObjectOutcome {
    fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(e, self.as_str())
    }
}
impl EncodeLabelValue for FaultKind {
    fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(e, self.as_str())
    }
}

/// `{source}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SourceLabels {
    /// Where from.
    pub source: SourceLabel,
}
/// `{outcome}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: ObjectOutcome,
}
/// `{kind}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    /// What failed.
    pub kind: FaultKind,
}

/// The executor's metrics. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `fill_bytes_total{source}`: bytes sent to appliances (counted as they are sent).
    pub bytes: Family<SourceLabels, Counter>,
    /// `fill_objects_total{outcome}`.
    pub objects: Family<OutcomeLabels, Counter>,
    /// `fill_errors_total{kind}`: failed attempts (each retry counts).
    pub errors: Family<KindLabels, Counter>,
    /// `fill_renditions_committed_total`.
    pub renditions: Counter,
    /// `fill_deletions_total`.
    pub deletions: Counter,
    /// `fill_budget_remaining_bytes`: tonight's budget left, summed over running appliances.
    pub budget_remaining: Gauge,
    /// `fill_active_appliances`: appliances whose worker is filling now.
    pub active: Gauge,
}

impl Metrics {
    /// Fresh metrics registered in `reg`, every label value of the fixed enums present at 0
    /// from the start (so a scrape shows every family and `rate()` sees the first event).
    pub fn register(reg: &mut Registry) -> Metrics {
        let m = Metrics::default();
        for source in SourceLabel::ALL {
            let _ = m.bytes.get_or_create(&SourceLabels { source });
        }
        for outcome in ObjectOutcome::ALL {
            let _ = m.objects.get_or_create(&OutcomeLabels { outcome });
        }
        for kind in FaultKind::ALL {
            let _ = m.errors.get_or_create(&KindLabels { kind });
        }
        reg.register(
            "fill_bytes",
            "Bytes sent to appliances, by source",
            m.bytes.clone(),
        );
        reg.register(
            "fill_objects",
            "Objects handled, by outcome",
            m.objects.clone(),
        );
        reg.register(
            "fill_errors",
            "Failed fetch or ingest attempts, by kind",
            m.errors.clone(),
        );
        reg.register(
            "fill_renditions_committed",
            "Rendition manifests committed on appliances",
            m.renditions.clone(),
        );
        reg.register(
            "fill_deletions",
            "Renditions deleted from appliances",
            m.deletions.clone(),
        );
        reg.register(
            "fill_budget_remaining_bytes",
            "Tonight's fill budget left, summed over running appliances",
            m.budget_remaining.clone(),
        );
        reg.register(
            "fill_active_appliances",
            "Appliances being filled now",
            m.active.clone(),
        );
        m
    }

    /// Current value of `fill_errors_total{kind}`.
    pub fn errors_of(&self, kind: FaultKind) -> u64 {
        self.errors.get_or_create(&KindLabels { kind }).get()
    }

    /// Current value of `fill_objects_total{outcome}`.
    pub fn objects_of(&self, outcome: ObjectOutcome) -> u64 {
        self.objects.get_or_create(&OutcomeLabels { outcome }).get()
    }

    /// Current value of `fill_bytes_total{source}`.
    pub fn bytes_of(&self, source: SourceLabel) -> u64 {
        self.bytes.get_or_create(&SourceLabels { source }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_house_rule() {
        let mut reg = Registry::default();
        let m = Metrics::register(&mut reg);
        m.bytes
            .get_or_create(&SourceLabels {
                source: SourceLabel::Origin,
            })
            .inc_by(5);
        m.errors
            .get_or_create(&KindLabels {
                kind: FaultKind::Stall,
            })
            .inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("fill_bytes_total{source=\"origin\"} 5"),
            "{out}"
        );
        assert!(out.contains("fill_errors_total{kind=\"stall\"} 1"), "{out}");
        assert!(out.contains("fill_active_appliances 0"), "{out}");
        // Every label value of the fixed enums is there from the start.
        assert!(out.contains("fill_errors_total{kind=\"cut\"} 0"), "{out}");
        assert!(out.contains("fill_bytes_total{source=\"peer\"} 0"), "{out}");
        assert!(
            out.contains("fill_objects_total{outcome=\"failed\"} 0"),
            "{out}"
        );
        assert!(out.contains("fill_budget_remaining_bytes 0"), "{out}");
    }
}
