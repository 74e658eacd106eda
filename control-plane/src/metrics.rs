//! Prometheus metrics (`prometheus-client`), registered by the embedding daemon with
//! [`crate::ControlPlane::register_metrics`]. Names are `control_plane_<what>_<unit>`; labels
//! come from fixed enums.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Outcome of a player-token check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum TokenOutcome {
    /// Accepted.
    ok,
    /// Malformed.
    malformed,
    /// Expired.
    expired,
    /// Bad signature.
    bad_signature,
    /// Revoked.
    revoked,
}

/// Outcome of a license request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LicenseOutcome {
    /// Issued.
    issued,
    /// Request malformed or unsupported.
    bad_request,
    /// Unknown kid.
    unknown_kid,
    /// Plan not entitled.
    not_entitled,
    /// Player token refused.
    bad_token,
}

/// `outcome` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TokenLabels {
    /// Outcome.
    pub outcome: TokenOutcome,
}

/// `outcome` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LicenseLabels {
    /// Outcome.
    pub outcome: LicenseOutcome,
}

/// The crate's counters (cheap clones share the same values).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `control_plane_player_tokens_verified_total{outcome}`.
    pub tokens: Family<TokenLabels, Counter>,
    /// `control_plane_licenses_total{outcome}`.
    pub licenses: Family<LicenseLabels, Counter>,
    /// `control_plane_view_events_total`.
    pub views: Counter,
    /// `control_plane_signing_key_rotations_total`.
    pub rotations: Counter,
}

impl Metrics {
    /// Registers every metric under `control_plane_`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("control_plane");
        sub.register(
            "player_tokens_verified",
            "Player token checks by outcome",
            self.tokens.clone(),
        );
        sub.register(
            "licenses",
            "ClearKey license requests by outcome",
            self.licenses.clone(),
        );
        sub.register("view_events", "View events recorded", self.views.clone());
        sub.register(
            "signing_key_rotations",
            "URL-signing key rotations",
            self.rotations.clone(),
        );
    }
}
