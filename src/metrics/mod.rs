//! The metrics the filter records, behind a small trait so the core stays host-independent.
//!
//! [`StatSink`] implements [`MetricsSink`] over the proxy's three stats primitives
//! ([`Stats`]), with every id defined once at configure time; tests use [`NoMetrics`] or a
//! recorder. Every method takes `&self`: recording a metric is a host call, not a change to
//! the filter's own state. Labels travel inside the stat name as `name=.=value;.;`
//! segments, which Envoy's `stats_tags` (or Istio's `extraStatTags`) turn into Prometheus
//! labels: see [`stat_name`].

use crate::breaker::{StateKind, Transition};
use crate::config::UpstreamId;
use crate::outcome::{FailureReason, Outcome};
use crate::store::probe_lease::ProbeResult;

mod table;
pub use table::{MetricKind, StatSink, Stats};

/// Every metric the filter defines, as it appears in `/stats/prometheus`.
pub const METRIC_NAMES: &[&str] = &[
    "circuit_breaker_state",
    "circuit_breaker_requests",
    "circuit_breaker_failures",
    "circuit_breaker_rejected",
    "circuit_breaker_fallbacks",
    "circuit_breaker_transitions",
    "circuit_breaker_all_open",
    "circuit_breaker_probes",
    "circuit_breaker_recovery_probes",
    "circuit_breaker_open_duration_ms",
    "circuit_breaker_failovers",
    "circuit_breaker_alerts",
    "circuit_breaker_body_over_limit",
    "circuit_breaker_time_to_first_token_ms",
    "circuit_breaker_input_tokens",
    "circuit_breaker_output_tokens",
    "circuit_breaker_stream_malformed_events",
    "circuit_breaker_translations",
];

/// Every label the filter's metrics carry.
pub const LABEL_NAMES: &[&str] = &["upstream", "outcome", "reason", "from", "to", "result"];

/// Result of an in-request failover attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailoverResult {
    Success,
    Failure,
    Skipped,
}

impl FailoverResult {
    pub const ALL: [FailoverResult; 3] = [
        FailoverResult::Success,
        FailoverResult::Failure,
        FailoverResult::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailoverResult::Success => "success",
            FailoverResult::Failure => "failure",
            FailoverResult::Skipped => "skipped",
        }
    }
}

/// What became of a request translated for an upstream of another format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TranslationResult {
    /// Sent translated.
    Translated,
    /// Sent translated without parameters the upstream's format cannot express.
    Dropped,
    /// Not sent: the upstream's format cannot express it, so that upstream was skipped.
    Refused,
}

impl TranslationResult {
    pub const ALL: [TranslationResult; 3] = [
        TranslationResult::Translated,
        TranslationResult::Dropped,
        TranslationResult::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TranslationResult::Translated => "translated",
            TranslationResult::Dropped => "dropped",
            TranslationResult::Refused => "refused",
        }
    }
}

/// Result of an alert webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertResult {
    Sent,
    Failed,
    Suppressed,
}

impl AlertResult {
    pub const ALL: [AlertResult; 3] = [
        AlertResult::Sent,
        AlertResult::Failed,
        AlertResult::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertResult::Sent => "sent",
            AlertResult::Failed => "failed",
            AlertResult::Suppressed => "suppressed",
        }
    }
}

/// Where the filter's measurements go.
pub trait MetricsSink {
    fn state(&self, upstream: UpstreamId, state: StateKind);
    fn request(&self, upstream: UpstreamId, outcome: &Outcome);
    fn failure(&self, upstream: UpstreamId, reason: FailureReason);
    fn rejected(&self, upstream: UpstreamId);
    fn fallback(&self, from: UpstreamId, to: UpstreamId);
    fn transition(&self, upstream: UpstreamId, from: StateKind, to: StateKind);
    fn all_open(&self);
    /// A request body over `body_buffer_limit` was not held: routed on headers alone, or
    /// a fallback that needed its model rewritten was skipped.
    fn body_over_limit(&self);
    /// A stream's first content event came `ms` after the request went out.
    fn first_token(&self, upstream: UpstreamId, ms: u64);
    /// Tokens the provider reported for one answer.
    fn tokens(&self, upstream: UpstreamId, input: u64, output: u64);
    /// An SSE event whose data is not JSON (not a failure by itself).
    fn malformed_event(&self, upstream: UpstreamId);
    fn probe(&self, upstream: UpstreamId, success: bool);
    /// An active recovery probe ended (only upstreams with a `recovery_probe` send them).
    fn recovery_probe(&self, upstream: UpstreamId, result: ProbeResult);
    fn open_duration(&self, upstream: UpstreamId, ms: u64);
    fn failover(&self, from: UpstreamId, to: UpstreamId, result: FailoverResult);
    fn alert(&self, result: AlertResult);
    /// A request body translated (or not) for `upstream`.
    fn translation(&self, upstream: UpstreamId, result: TranslationResult);
}

/// A sink that drops everything: for tests that do not look at metrics.
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn state(&self, _: UpstreamId, _: StateKind) {}
    fn request(&self, _: UpstreamId, _: &Outcome) {}
    fn failure(&self, _: UpstreamId, _: FailureReason) {}
    fn rejected(&self, _: UpstreamId) {}
    fn fallback(&self, _: UpstreamId, _: UpstreamId) {}
    fn transition(&self, _: UpstreamId, _: StateKind, _: StateKind) {}
    fn all_open(&self) {}
    fn body_over_limit(&self) {}
    fn first_token(&self, _: UpstreamId, _: u64) {}
    fn tokens(&self, _: UpstreamId, _: u64, _: u64) {}
    fn malformed_event(&self, _: UpstreamId) {}
    fn probe(&self, _: UpstreamId, _: bool) {}
    fn recovery_probe(&self, _: UpstreamId, _: ProbeResult) {}
    fn open_duration(&self, _: UpstreamId, _: u64) {}
    fn failover(&self, _: UpstreamId, _: UpstreamId, _: FailoverResult) {}
    fn alert(&self, _: AlertResult) {}
    fn translation(&self, _: UpstreamId, _: TranslationResult) {}
}

/// Records a finished call: the request counter, and the failure counter when it failed.
pub fn record_outcome(sink: &dyn MetricsSink, upstream: UpstreamId, outcome: &Outcome) {
    sink.request(upstream, outcome);
    if let Outcome::Failure { reason, .. } = outcome {
        sink.failure(upstream, *reason);
    }
}

/// Emits everything a transition means: the counter, the state gauge and, on recovery, the
/// outage duration.
pub fn record_transition(sink: &dyn MetricsSink, upstream: UpstreamId, t: &Transition) {
    sink.transition(upstream, t.from, t.to);
    sink.state(upstream, t.to);
    if let Some(ms) = t.open_duration_ms {
        sink.open_duration(upstream, ms);
    }
}

/// The Envoy stat name for `metric` with `labels` encoded as tag segments, e.g.
/// `upstream=.=openai;.;circuit_breaker_state`.
pub fn stat_name(metric: &str, labels: &[(&str, &str)]) -> String {
    let mut name = String::with_capacity(metric.len() + 24 * labels.len());
    for (k, v) in labels {
        name.push_str(k);
        name.push_str("=.=");
        name.push_str(v);
        name.push_str(";.;");
    }
    name.push_str(metric);
    name
}

/// The `stats_config.stats_tags` regex that extracts `label` from a stat name.
pub fn stats_tag_regex(label: &str) -> String {
    format!("({label}=\\.=(.*?);\\.;)")
}
