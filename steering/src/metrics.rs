//! Prometheus metrics of steering, named `steering_<what>_<unit>` (DESIGN §7); every label
//! set is drawn from a fixed enum so cardinality is bounded whatever clients send.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::rank::MissCause;

macro_rules! label_values {
    ($($t:ident { $($v:ident => $s:literal),+ $(,)? })+) => {$(
        #[doc = concat!("Label values of `", stringify!($t), "`.")]
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum $t { $($v),+ }
        impl $t {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),+ }
            }
        }
        impl EncodeLabelValue for $t {
            fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(e, self.as_str())
            }
        }
    )+};
}

label_values! {
    Route {
        Steer => "steer", Ocas => "ocas", Heartbeat => "heartbeat", Metrics => "metrics",
        Healthz => "healthz", OpenApi => "openapi", Playback => "playback",
        License => "license", Recommendations => "recommendations", Events => "events",
        Other => "other",
    }
    Code {
        S200 => "200", S400 => "400", S401 => "401", S403 => "403", S404 => "404",
        S405 => "405", S413 => "413", S415 => "415", S422 => "422", S500 => "500",
        S501 => "501", S503 => "503", Other => "other",
    }
    First { Local => "local", Fallback => "fallback", Origin => "origin" }
    Cause { Content => "content", Health => "health", Saturated => "saturated", Route => "route" }
    HbOutcome {
        Ok => "ok", WantFull => "want_full", Unauthorized => "unauthorized",
        Forbidden => "forbidden", Invalid => "invalid",
    }
    ApplianceState { Up => "up", Degraded => "degraded", Draining => "draining", Stale => "stale" }
    PlayerAuth {
        Ok => "ok", Missing => "missing", Malformed => "malformed", Expired => "expired",
        BadSignature => "bad_signature", Revoked => "revoked",
    }
    PlaybackOutcome {
        Ok => "ok", UnknownTitle => "unknown_title", NotEntitled => "not_entitled",
        NoPlayable => "no_playable_rendition", Error => "error",
    }
}

impl From<u16> for Code {
    fn from(c: u16) -> Code {
        match c {
            200 => Code::S200,
            400 => Code::S400,
            401 => Code::S401,
            403 => Code::S403,
            404 => Code::S404,
            405 => Code::S405,
            413 => Code::S413,
            415 => Code::S415,
            422 => Code::S422,
            500 => Code::S500,
            501 => Code::S501,
            503 => Code::S503,
            _ => Code::Other,
        }
    }
}

impl From<MissCause> for Cause {
    fn from(c: MissCause) -> Cause {
        match c {
            MissCause::Content => Cause::Content,
            MissCause::Health => Cause::Health,
            MissCause::Saturated => Cause::Saturated,
            MissCause::Route => Cause::Route,
        }
    }
}

/// Labels of `steering_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route.
    pub route: Route,
    /// Response status.
    pub code: Code,
}

/// Labels of `steering_decisions_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Kind of the first URL.
    pub first: First,
}

/// Labels of `steering_misses_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MissLabels {
    /// Why.
    pub cause: Cause,
}

/// Labels of `steering_heartbeats_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HbLabels {
    /// Outcome.
    pub outcome: HbOutcome,
}

/// Labels of `steering_appliances`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// State (stale wins over the reported state).
    pub state: ApplianceState,
}

/// Labels of `steering_player_auth_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlayerAuthLabels {
    /// Outcome of the bearer check.
    pub outcome: PlayerAuth,
}

/// Labels of `steering_playbacks_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaybackLabels {
    /// Outcome.
    pub outcome: PlaybackOutcome,
}

/// Every metric steering exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Ranking decisions by the kind of the first URL.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Decisions whose first URL is not the best local appliance, by cause.
    pub misses: Family<MissLabels, Counter>,
    /// Time to rank and sign one decision.
    pub decision_duration: Histogram,
    /// Heartbeats by outcome.
    pub heartbeats: Family<HbLabels, Counter>,
    /// Appliances in the registry by state (set at scrape time).
    pub appliances: Family<StateLabels, Gauge>,
    /// Player bearer-token checks by outcome.
    pub player_auth: Family<PlayerAuthLabels, Counter>,
    /// Playback requests by outcome.
    pub playbacks: Family<PlaybackLabels, Counter>,
    /// View events recorded.
    pub events: Counter,
    /// Time spent in control-plane (SQLite) calls, off the async workers.
    pub control_plane_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric; the miss causes start at zero so dashboards see them all.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let misses = Family::<MissLabels, Counter>::default();
        let decision_duration = Histogram::new([
            1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2,
        ]);
        let heartbeats = Family::<HbLabels, Counter>::default();
        let appliances = Family::<StateLabels, Gauge>::default();
        let player_auth = Family::<PlayerAuthLabels, Counter>::default();
        let playbacks = Family::<PlaybackLabels, Counter>::default();
        let events = Counter::default();
        let control_plane_duration = Histogram::new([
            1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0,
        ]);
        registry.register(
            "steering_player_auth",
            "Player bearer-token checks by outcome",
            player_auth.clone(),
        );
        registry.register(
            "steering_playbacks",
            "Playback requests by outcome",
            playbacks.clone(),
        );
        registry.register(
            "steering_view_events",
            "View events recorded through POST /v1/events",
            events.clone(),
        );
        registry.register(
            "steering_control_plane_call_duration_seconds",
            "Time spent in one embedded control-plane call (SQLite), on the blocking pool",
            control_plane_duration.clone(),
        );
        registry.register(
            "steering_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "steering_decisions",
            "Steering decisions by the kind of the first URL (local, fallback, origin)",
            decisions.clone(),
        );
        registry.register(
            "steering_misses",
            "Decisions whose first URL is not the best local appliance, by cause",
            misses.clone(),
        );
        registry.register(
            "steering_decision_duration_seconds",
            "Time to rank and sign one decision",
            decision_duration.clone(),
        );
        registry.register(
            "steering_heartbeats",
            "Appliance heartbeats by outcome",
            heartbeats.clone(),
        );
        registry.register(
            "steering_appliances",
            "Appliances in the registry by state",
            appliances.clone(),
        );
        for c in MissCause::ALL {
            let _ = misses.get_or_create(&MissLabels { cause: c.into() });
        }
        Metrics {
            registry,
            requests,
            decisions,
            misses,
            decision_duration,
            heartbeats,
            appliances,
            player_auth,
            playbacks,
            events,
            control_plane_duration,
        }
    }

    /// Adds metrics of an embedded library (control-plane's `control_plane_*` counters).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
