//! Prometheus metrics of the appliance, named `oca_<what>_<unit>` (DESIGN §7), every label set
//! drawn from a fixed enum so cardinality is bounded whatever clients send.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Which protocol carried a request.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 over TLS.
    H1,
    /// HTTP/2 over TLS.
    H2,
    /// HTTP/3 over QUIC.
    H3,
    /// HTTP/1.1 on the plain port.
    H1Plain,
}

/// Label values are lower-case words (or status codes), written by hand because the derive
/// would print the Rust variant names.
macro_rules! label_values {
    ($($t:ty { $($v:ident => $s:literal),+ $(,)? })+) => {$(
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
        }
        impl EncodeLabelValue for $t {
            fn encode(&self, e: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                e.write_str(self.as_str())
            }
        }
    )+};
}

label_values! {
    Proto { H1 => "h1", H2 => "h2", H3 => "h3", H1Plain => "h1_plain" }
    Status {
        S200 => "200", S204 => "204", S206 => "206", S304 => "304", S400 => "400",
        S403 => "403", S404 => "404", S405 => "405", S412 => "412", S413 => "413",
        S414 => "414", S416 => "416", S431 => "431", S500 => "500", S503 => "503",
        Other => "other",
    }
    TierLabel { Ram => "ram", Flash => "flash", Disk => "disk", None => "none" }
    TokenReason {
        Malformed => "malformed", UnknownKid => "unknown_kid", Expired => "expired",
        BadSignature => "bad_signature", Scope => "scope", ClientPrefix => "client_prefix",
    }
    Listener { Https => "https", Http => "http", H3 => "h3" }
    RefuseReason {
        ConnectionCap => "connection_cap", TlsHandshake => "tls_handshake",
        HandshakeTimeout => "handshake_timeout",
    }
    ReloadWhat { Certificates => "certificates", SigningKeys => "signing_keys" }
    Outcome { Ok => "ok", Error => "error" }
}

/// Response status, limited to the codes the appliance sends.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Status {
    S200,
    S204,
    S206,
    S304,
    S400,
    S403,
    S404,
    S405,
    S412,
    S413,
    S414,
    S416,
    S431,
    S500,
    S503,
    Other,
}

impl From<u16> for Status {
    fn from(code: u16) -> Self {
        match code {
            200 => Status::S200,
            204 => Status::S204,
            206 => Status::S206,
            304 => Status::S304,
            400 => Status::S400,
            403 => Status::S403,
            404 => Status::S404,
            405 => Status::S405,
            412 => Status::S412,
            413 => Status::S413,
            414 => Status::S414,
            416 => Status::S416,
            431 => Status::S431,
            500 => Status::S500,
            503 => Status::S503,
            _ => Status::Other,
        }
    }
}

/// Where response bytes came from.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum TierLabel {
    Ram,
    Flash,
    Disk,
    /// Error bodies and other generated responses.
    None,
}

impl From<oca_common::wire::Tier> for TierLabel {
    fn from(t: oca_common::wire::Tier) -> Self {
        match t {
            oca_common::wire::Tier::Ram => TierLabel::Ram,
            oca_common::wire::Tier::Flash => TierLabel::Flash,
            oca_common::wire::Tier::Disk => TierLabel::Disk,
        }
    }
}

/// Why a signed URL was refused (DESIGN §3).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum TokenReason {
    Malformed,
    UnknownKid,
    Expired,
    BadSignature,
    Scope,
    ClientPrefix,
}

impl From<&oca_common::token::TokenError> for TokenReason {
    fn from(e: &oca_common::token::TokenError) -> Self {
        use oca_common::token::TokenError as E;
        match e {
            E::Malformed | E::BadPrefix => TokenReason::Malformed,
            E::UnknownKid => TokenReason::UnknownKid,
            E::Expired => TokenReason::Expired,
            E::BadSignature => TokenReason::BadSignature,
            E::Scope => TokenReason::Scope,
            E::ClientPrefix => TokenReason::ClientPrefix,
        }
    }
}

/// Public listeners.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Listener {
    Https,
    Http,
    /// HTTP/3 over QUIC (UDP).
    H3,
}

/// Why a connection was closed before serving anything.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RefuseReason {
    /// `limits.max-connections` reached.
    ConnectionCap,
    /// TLS handshake failed.
    TlsHandshake,
    /// TLS handshake took longer than `limits.tls-handshake-timeout`.
    HandshakeTimeout,
}

/// What a reload touched.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ReloadWhat {
    Certificates,
    SigningKeys,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub protocol: Proto,
    pub code: Status,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub protocol: Proto,
    pub tier: TierLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtoLabels {
    pub protocol: Proto,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: TokenReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: Listener,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefuseLabels {
    pub listener: Listener,
    pub reason: RefuseReason,
}

/// Labels of counters that only tell success from failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub what: ReloadWhat,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    pub engine: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: TierLabel,
}

/// A drive of the tiered store (the label is its configured directory).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriveLabels {
    pub tier: TierLabel,
    pub drive: String,
}

/// How an ingest ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum IngestOutcome {
    Created,
    Present,
    Conflict,
    Checksum,
    NoSpace,
    BadRequest,
    Error,
}

label_values! {
    IngestOutcome {
        Created => "created", Present => "present", Conflict => "conflict",
        Checksum => "checksum_mismatch", NoSpace => "no_space", BadRequest => "bad_request",
        Error => "error",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    pub outcome: IngestOutcome,
}

/// All metrics of one appliance process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub response_bytes: Family<BytesLabels, Counter>,
    pub header_duration: Family<ProtoLabels, Histogram>,
    pub token_rejections: Family<ReasonLabels, Counter>,
    pub connections_open: Family<ListenerLabels, Gauge>,
    pub connections: Family<ListenerLabels, Counter>,
    pub connections_refused: Family<RefuseLabels, Counter>,
    pub read_errors: Counter,
    pub reloads: Family<ReloadLabels, Counter>,
    pub io_engine: Family<EngineLabels, Gauge>,
    pub storage_objects: Family<TierLabels, Gauge>,
    pub storage_bytes: Family<TierLabels, Gauge>,
    pub storage_capacity: Family<TierLabels, Gauge>,
    pub storage_hits: Family<TierLabels, Counter>,
    pub drive_up: Family<DriveLabels, Gauge>,
    pub drive_objects: Family<DriveLabels, Gauge>,
    pub drive_bytes: Family<DriveLabels, Gauge>,
    pub drive_capacity: Family<DriveLabels, Gauge>,
    pub drive_hits: Family<DriveLabels, Counter>,
    pub drive_errors: Family<DriveLabels, Counter>,
    pub promotions: Counter,
    pub demotions: Counter,
    pub ingests: Family<IngestLabels, Counter>,
    pub ingest_bytes: Counter,
    pub inventory_generation: Gauge,
    pub ram_locked: Gauge,
    pub ready: Gauge,
    pub start_time: Gauge,
    /// Heartbeats to steering by outcome (see [`crate::heartbeat`]).
    pub heartbeats: Family<crate::heartbeat::HbLabels, Counter>,
    /// Learned client prefixes reported, by family (see [`crate::bgp`]).
    pub bgp_prefixes: Family<crate::bgp::FamilyLabels, Gauge>,
    /// Reads of BIRD's control socket, by outcome.
    pub bgp_reads: Family<OutcomeLabels, Counter>,
    /// 1 while the last read of BIRD's socket succeeded.
    pub bgp_bird_up: Gauge,
}

fn header_histogram() -> Histogram {
    // Time from request head to response head: 50 µs .. 2.5 s.
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("oca");
        let m = Metrics {
            requests: Family::default(),
            response_bytes: Family::default(),
            header_duration: Family::new_with_constructor(header_histogram),
            token_rejections: Family::default(),
            connections_open: Family::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
            read_errors: Counter::default(),
            reloads: Family::default(),
            io_engine: Family::default(),
            storage_objects: Family::default(),
            storage_bytes: Family::default(),
            storage_capacity: Family::default(),
            storage_hits: Family::default(),
            drive_up: Family::default(),
            drive_objects: Family::default(),
            drive_bytes: Family::default(),
            drive_capacity: Family::default(),
            drive_hits: Family::default(),
            drive_errors: Family::default(),
            promotions: Counter::default(),
            demotions: Counter::default(),
            ingests: Family::default(),
            ingest_bytes: Counter::default(),
            inventory_generation: Gauge::default(),
            ram_locked: Gauge::default(),
            ready: Gauge::default(),
            start_time: Gauge::default(),
            heartbeats: Family::default(),
            bgp_prefixes: Family::default(),
            bgp_reads: Family::default(),
            bgp_bird_up: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "bgp_prefixes",
            "Client prefixes learned from BIRD and reported to steering, by family",
            m.bgp_prefixes.clone(),
        );
        r.register(
            "bgp_reads",
            "Reads of the routes from BIRD's control socket, by outcome",
            m.bgp_reads.clone(),
        );
        r.register(
            "bgp_bird_up",
            "1 while BIRD's control socket answered the last read, 0 when it did not",
            m.bgp_bird_up.clone(),
        );
        r.register(
            "heartbeats",
            "Heartbeats sent to steering endpoints, by outcome",
            m.heartbeats.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered, by protocol and status code",
            m.requests.clone(),
        );
        r.register(
            "http_response_bytes",
            "Response body bytes handed to the connection, by protocol and storage tier",
            m.response_bytes.clone(),
        );
        r.register(
            "http_response_header_duration_seconds",
            "Time from a request head to its response head",
            m.header_duration.clone(),
        );
        r.register(
            "token_rejections",
            "Signed URLs refused with 403, by reason",
            m.token_rejections.clone(),
        );
        r.register(
            "connections_open",
            "Open public connections",
            m.connections_open.clone(),
        );
        r.register(
            "connections",
            "Public connections accepted",
            m.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Public connections closed before serving, by reason",
            m.connections_refused.clone(),
        );
        r.register(
            "storage_read_errors",
            "Object reads that failed with an I/O error",
            m.read_errors.clone(),
        );
        r.register(
            "reloads",
            "SIGHUP reloads, by what was reloaded and the outcome",
            m.reloads.clone(),
        );
        r.register(
            "io_engine_info",
            "The disk I/O engine in use (value 1)",
            m.io_engine.clone(),
        );
        r.register(
            "storage_objects",
            "Objects in the index, by tier",
            m.storage_objects.clone(),
        );
        r.register(
            "storage_bytes",
            "Bytes of objects in the index, by tier",
            m.storage_bytes.clone(),
        );
        r.register(
            "storage_capacity_bytes",
            "Capacity of the drives in service (RAM: the RAM tier's budget), by tier",
            m.storage_capacity.clone(),
        );
        r.register(
            "storage_hits",
            "Object lookups answered from each tier",
            m.storage_hits.clone(),
        );
        r.register(
            "drive_up",
            "1 while a drive is in service, 0 once I/O errors took it out",
            m.drive_up.clone(),
        );
        r.register(
            "drive_objects",
            "Objects on a drive",
            m.drive_objects.clone(),
        );
        r.register(
            "drive_bytes",
            "Bytes of objects on a drive",
            m.drive_bytes.clone(),
        );
        r.register(
            "drive_capacity_bytes",
            "Configured capacity of a drive",
            m.drive_capacity.clone(),
        );
        r.register(
            "drive_hits",
            "Object lookups answered from a drive",
            m.drive_hits.clone(),
        );
        r.register(
            "drive_errors",
            "I/O errors on a drive",
            m.drive_errors.clone(),
        );
        r.register(
            "storage_promotions",
            "Objects copied from disk to flash because they turned hot",
            m.promotions.clone(),
        );
        r.register(
            "storage_demotions",
            "Objects moved from flash to disk to make room",
            m.demotions.clone(),
        );
        r.register(
            "ingests",
            "PUT /v1/objects requests, by outcome",
            m.ingests.clone(),
        );
        r.register(
            "ingest_bytes",
            "Bytes stored by ingest",
            m.ingest_bytes.clone(),
        );
        r.register(
            "inventory_generation",
            "Generation of the rendition inventory",
            m.inventory_generation.clone(),
        );
        r.register(
            "ram_locked",
            "1 when the RAM tier is locked in memory (mlock), 0 when it is not",
            m.ram_locked.clone(),
        );
        r.register(
            "ready",
            "1 when the appliance is ready for traffic",
            m.ready.clone(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process, Unix seconds",
            m.start_time.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Raise a counter to `value` (the store keeps its own totals; counters only go up).
fn raise(c: &Counter, value: u64) {
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

/// Copies the tiered store's state into the gauges and counters (before each scrape).
pub fn refresh_storage(m: &Metrics, store: &oca_storage::TieredStore) {
    use oca_common::wire::Tier;
    let mut tier_hits = [0u64; 3];
    for t in store.tier_status() {
        let l = TierLabels {
            tier: t.tier.into(),
        };
        m.storage_bytes.get_or_create(&l).set(t.used_bytes as i64);
        m.storage_capacity
            .get_or_create(&l)
            .set(t.capacity_bytes as i64);
    }
    let (ram_objects, _, _, ram_hits) = store.ram_status();
    m.storage_objects
        .get_or_create(&TierLabels {
            tier: TierLabel::Ram,
        })
        .set(ram_objects as i64);
    tier_hits[0] = ram_hits;
    let mut tier_objects = [0u64; 3];
    for d in store.drives() {
        let l = DriveLabels {
            tier: d.tier.into(),
            drive: d.path.display().to_string(),
        };
        m.drive_up.get_or_create(&l).set(i64::from(d.up));
        m.drive_objects.get_or_create(&l).set(d.objects as i64);
        m.drive_bytes.get_or_create(&l).set(d.used as i64);
        m.drive_capacity.get_or_create(&l).set(d.capacity as i64);
        raise(&m.drive_hits.get_or_create(&l), d.hits);
        raise(&m.drive_errors.get_or_create(&l), d.errors);
        let i = if d.tier == Tier::Flash { 1 } else { 2 };
        tier_hits[i] += d.hits;
        tier_objects[i] += d.objects;
    }
    let stats = oca_storage::ObjectStore::stats(store);
    // Hand-placed objects count as disk.
    let drive_total: u64 = tier_objects.iter().sum();
    tier_objects[2] += stats.objects.saturating_sub(drive_total);
    for (i, tier) in [TierLabel::Flash, TierLabel::Disk].into_iter().enumerate() {
        let l = TierLabels { tier };
        m.storage_objects
            .get_or_create(&l)
            .set(tier_objects[i + 1] as i64);
        raise(&m.storage_hits.get_or_create(&l), tier_hits[i + 1]);
    }
    raise(
        &m.storage_hits.get_or_create(&TierLabels {
            tier: TierLabel::Ram,
        }),
        tier_hits[0],
    );
    let (promoted, demoted) = store.moves();
    raise(&m.promotions, promoted);
    raise(&m.demotions, demoted);
    m.inventory_generation.set(store.generation() as i64);
}
