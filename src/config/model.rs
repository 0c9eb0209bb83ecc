//! The typed configuration the rest of the crate reads: what compilation produces.
//!
//! Every value here is already validated, every name resolved to an [`UpstreamId`], and the
//! facts the request path would otherwise recompute (does any route look at the host or the
//! body, each primary's candidate chain, which fallbacks edit the body) are computed once.

// serde derives these enums in tests only, as the oracle of src/tests/config_fields.rs: the
// filter reads them through `config::field`, with the same messages.
#[cfg(test)]
use serde::Deserialize;

use crate::outcome::FailureReason;
use crate::translate::{Api, Target};

/// An upstream of one compiled [`Config`]: its position in [`Config::upstreams`].
///
/// Only compilation mints ids, and only for the config it builds; the core never mixes the
/// ids of two configs (each worker's runtime owns exactly one). That is what makes
/// [`Config::upstream`] total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(u32);

impl UpstreamId {
    pub(super) fn new(index: usize) -> UpstreamId {
        UpstreamId(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The position in [`Config::upstreams`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Most probes a half-open breaker may admit at once; bounds the encoded state size.
pub const MAX_HALF_OPEN_REQUESTS: u32 = 64;

/// Most same-upstream retries one attempt may get (`retry.attempts`).
pub const MAX_RETRY_ATTEMPTS: u32 = 5;

/// The validated filter configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Request header the filter writes with the chosen upstream's cluster.
    pub route_header: String,
    /// Response header that names the upstream that served the request.
    pub response_header: String,
    /// Path answered by the filter with the breakers' health JSON; off when `None`.
    pub health_path: Option<String>,
    pub(super) upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub fast_fail: FastFail,
    pub failover: Failover,
    pub alerting: Option<Alerting>,
    /// Period of the root context's timer, in milliseconds.
    pub tick_interval_ms: u64,
    /// Most request body bytes the filter holds to read it (model routing, model rewrite).
    pub body_buffer_limit: usize,
    pub(super) routes_on_model: bool,
    pub(super) routes_on_host: bool,
    pub(super) rewrites_body: bool,
    pub(super) translates: bool,
}

impl Config {
    /// Every upstream, in configuration order (index = [`UpstreamId::index`]).
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// Every upstream's id, in configuration order.
    pub fn ids(&self) -> impl Iterator<Item = UpstreamId> {
        (0..self.upstreams.len()).map(UpstreamId::new)
    }

    /// The upstream `id` names.
    #[allow(clippy::indexing_slicing)]
    pub fn upstream(&self, id: UpstreamId) -> &Upstream {
        // In bounds: ids are minted only by compilation, one per entry of this config's
        // (never emptied, never shrunk) upstream list.
        &self.upstreams[id.index()]
    }

    /// Some route matches on the JSON `model`: such requests need their body to route.
    pub fn routes_on_model(&self) -> bool {
        self.routes_on_model
    }

    /// Some route matches on the host: `:authority` must be read to route.
    pub fn routes_on_host(&self) -> bool {
        self.routes_on_host
    }

    /// Some upstream that can serve as a fallback rewrites the JSON body.
    pub fn rewrites_body(&self) -> bool {
        self.rewrites_body
    }

    /// Some upstream or route declares an `api`: requests whose format differs from their
    /// serving upstream's are translated. A configuration that declares none translates
    /// nothing (every upstream is taken to speak whatever its clients send, as before).
    pub fn translates(&self) -> bool {
        self.translates
    }

    /// Finds an upstream by name.
    pub fn upstream_id(&self, name: &str) -> Option<UpstreamId> {
        self.upstreams
            .iter()
            .position(|u| u.name == name)
            .map(UpstreamId::new)
    }

    /// The primary followed by its fallbacks, in order: who may serve a request for `primary`.
    pub fn chain(&self, primary: UpstreamId) -> &[UpstreamId] {
        &self.upstream(primary).chain
    }
}

/// One breaker: a named upstream, the cluster it routes to, and its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub cluster: String,
    /// The Envoy cluster in-request failover calls (`dispatch_http_call` takes a real cluster
    /// name, e.g. Istio's `outbound|443||api.anthropic.com`); defaults to `cluster`.
    pub callout_cluster: String,
    pub fallbacks: Vec<UpstreamId>,
    /// This upstream followed by its fallbacks.
    pub chain: Vec<UpstreamId>,
    pub rewrite: Option<Rewrite>,
    /// Where a request this upstream refused as too long for its context window is re-sent.
    pub context_window_fallback: Option<UpstreamId>,
    pub policy: Policy,
    /// The active health check sent while the breaker is OPEN; off when `None`.
    pub recovery_probe: Option<RecoveryProbe>,
    /// The wire format this upstream speaks (`api`).
    pub api: Api,
    /// The `anthropic-version` header sent to an Anthropic upstream with a translated request.
    pub anthropic_version: String,
    /// `max_tokens` for a request translated to Anthropic that sets none.
    pub default_max_tokens: u32,
}

impl Upstream {
    /// The `model` this upstream writes into a request body it serves as a fallback.
    pub fn rewrite_model(&self) -> Option<&str> {
        self.rewrite.as_ref().and_then(|r| r.model.as_deref())
    }

    /// What a request translated for this upstream needs.
    pub fn target(&self) -> Target<'_> {
        Target {
            api: self.api,
            anthropic_version: &self.anthropic_version,
            default_max_tokens: self.default_max_tokens,
        }
    }
}

/// How a request is changed when it is sent to this upstream as a fallback.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rewrite {
    pub model: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Rewrite {
    /// The request headers this rewrite sets, pseudo-headers first.
    pub fn header_changes(&self) -> impl Iterator<Item = (&str, &str)> {
        let path = self.path.as_deref().map(|p| (":path", p));
        let host = self.host.as_deref().map(|h| (":authority", h));
        path.into_iter()
            .chain(host)
            .chain(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// An active recovery probe: a request sent to the upstream's callout cluster every
/// `interval_ms` while its breaker is OPEN, by one worker at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryProbe {
    /// Request headers, pseudo-headers first (`:method`, `:path`, `:authority`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Answers with one of these statuses are a success.
    pub expected_statuses: Vec<u16>,
}

/// Breaker policy of one upstream, with durations in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub failure_threshold: u32,
    pub window_ms: u64,
    pub recovery_ms: u64,
    pub success_threshold: u32,
    pub half_open_max_requests: u32,
    pub probe_timeout_ms: u64,
    pub mode: Mode,
    pub failure_rate: Option<FailureRate>,
    pub slow_call_ms: Option<u64>,
    /// A stream with no bytes for this long is a `stream_stall` failure and is ended.
    pub stream_idle_ms: Option<u64>,
    /// No first content token this long after the request went out: `slow_first_token`,
    /// and the request fails over. Off by default: reasoning models may think for minutes.
    pub first_token_ms: Option<u64>,
    pub honor_retry_after: bool,
    pub backoff_multiplier: f64,
    pub max_recovery_ms: u64,
    pub recovery_jitter: f64,
    pub conditions: FailureConditions,
    /// Same-upstream retries before failover.
    pub retry: Retry,
    /// No response headers this long after the attempt went out: `timeout`, and the
    /// request fails over. Off by default.
    pub response_timeout_ms: Option<u64>,
    /// How long a `quota_exhausted` failure keeps the breaker open (it opens at once).
    pub quota_recovery_ms: u64,
}

/// `retry`: how often a failed attempt is tried again on the same upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Retries after the first attempt (0: off).
    pub attempts: u32,
    /// The failures that are retried.
    pub on: Vec<FailureReason>,
    /// A provider asking to wait longer than this is not retried: the request fails over.
    pub max_retry_after_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 0,
            on: vec![
                FailureReason::Status5xx,
                FailureReason::ConnectFailure,
                FailureReason::RateLimit,
            ],
            max_retry_after_ms: 5_000,
        }
    }
}

impl Default for Policy {
    /// The documented defaults: 5 failures in 60 s open the breaker, 30 s recovery,
    /// 2 successes close it.
    fn default() -> Self {
        Policy {
            failure_threshold: 5,
            window_ms: 60_000,
            recovery_ms: 30_000,
            success_threshold: 2,
            half_open_max_requests: 1,
            probe_timeout_ms: 60_000,
            mode: Mode::Enforce,
            failure_rate: None,
            slow_call_ms: None,
            stream_idle_ms: None,
            first_token_ms: None,
            honor_retry_after: true,
            backoff_multiplier: 1.0,
            max_recovery_ms: 300_000,
            recovery_jitter: 0.1,
            conditions: FailureConditions::default(),
            retry: Retry::default(),
            response_timeout_ms: None,
            quota_recovery_ms: 300_000,
        }
    }
}

/// The adaptive rule: trip on the failure ratio once the window holds enough calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRate {
    pub threshold: f64,
    pub minimum_requests: u32,
}

/// What counts as a provider failure.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureConditions {
    pub status_codes: Vec<u16>,
    pub timeout: bool,
    pub connect_failure: bool,
    pub rate_limit: bool,
    pub stream_error: bool,
    pub stream_truncated: bool,
    pub stream_stall: bool,
    pub slow_first_token: bool,
}

impl FailureConditions {
    /// Whether failures of `reason` count (the status codes list decides `status_5xx`).
    pub fn counts(&self, reason: FailureReason) -> bool {
        match reason {
            FailureReason::Status5xx | FailureReason::Slow => true,
            FailureReason::Timeout => self.timeout,
            FailureReason::ConnectFailure => self.connect_failure,
            FailureReason::RateLimit => self.rate_limit,
            FailureReason::StreamError => self.stream_error,
            FailureReason::StreamTruncated => self.stream_truncated,
            FailureReason::StreamStall => self.stream_stall,
            FailureReason::SlowFirstToken => self.slow_first_token,
            FailureReason::QuotaExhausted => true,
        }
    }
}

impl Default for FailureConditions {
    fn default() -> Self {
        FailureConditions {
            status_codes: vec![500, 502, 503, 504, 529],
            timeout: true,
            connect_failure: true,
            rate_limit: true,
            stream_error: true,
            stream_truncated: true,
            stream_stall: true,
            slow_first_token: true,
        }
    }
}

/// How a breaker acts on traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Deserialize), serde(rename_all = "snake_case"))]
pub enum Mode {
    /// Track state and short-circuit open upstreams.
    Enforce,
    /// Dry run: track state, transitions and metrics, never short-circuit.
    MetricsOnly,
    /// Runbook switch: always treat the upstream as open.
    ForcedOpen,
    /// Runbook switch: no breaker at all, always admit, record nothing.
    Disabled,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::MetricsOnly => "metrics_only",
            Mode::ForcedOpen => "forced_open",
            Mode::Disabled => "disabled",
        }
    }
}

/// A route picks a request's primary upstream. Every present condition must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub path_prefix: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub model: Option<String>,
    pub upstream: UpstreamId,
    /// The client's wire format for requests this route takes (`api`); `None`: told by the
    /// request path.
    pub api: Option<Api>,
}

/// The local answer when no upstream admits a request.
#[derive(Debug, Clone, PartialEq)]
pub struct FastFail {
    pub status: u16,
    pub message: String,
}

/// In-request retry of a failed request on the next fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    pub enabled: bool,
    pub max_attempts: u32,
    pub max_body_bytes: usize,
    pub on: Vec<FailureReason>,
    pub timeout_ms: u64,
    pub methods: Vec<String>,
}

/// Webhook alerts on breaker transitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub format: AlertFormat,
    pub min_interval_ms: u64,
    pub on: Vec<AlertOn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Deserialize), serde(rename_all = "snake_case"))]
pub enum AlertFormat {
    Slack,
    Json,
}

/// Which transitions raise an alert, named after the state entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Deserialize), serde(rename_all = "snake_case"))]
pub enum AlertOn {
    Open,
    HalfOpen,
    Close,
}
