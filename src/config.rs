//! The filter's public API: its JSON configuration.
//!
//! Configuration is read in two steps. First serde parses the JSON into `Raw*` structs that
//! reject unknown keys. Then [`Config::from_json`] validates every value and resolves names to
//! indices, producing the typed [`Config`] the rest of the crate uses. Every error is a
//! [`ConfigError`] whose message names the key path, e.g.
//! `upstreams[1].fallbacks[0]: unknown upstream "azur"`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::classifier::FailureReason;

/// Index of an upstream in [`Config::upstreams`].
pub type UpstreamId = usize;

/// Most probes a half-open breaker may admit at once; bounds the encoded state size.
pub const MAX_HALF_OPEN_REQUESTS: u32 = 64;

const DEFAULT_ROUTE_HEADER: &str = "x-ai-cb-upstream";
const DEFAULT_RESPONSE_HEADER: &str = "x-ai-cb-served-by";
const DEFAULT_FAST_FAIL_MESSAGE: &str = "All AI providers are currently unavailable";

// ---------------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------------

/// The validated filter configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Request header the filter writes with the chosen upstream's cluster.
    pub route_header: String,
    /// Response header that names the upstream that served the request.
    pub response_header: String,
    /// Path answered by the filter with the breakers' health JSON; off when `None`.
    pub health_path: Option<String>,
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    pub fast_fail: FastFail,
    pub failover: Failover,
    pub alerting: Option<Alerting>,
    /// Period of the root context's timer, in milliseconds.
    pub tick_interval_ms: u64,
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
    pub rewrite: Option<Rewrite>,
    pub policy: Policy,
}

/// How a request is changed when it is sent to this upstream as a fallback.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rewrite {
    pub model: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
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
    pub honor_retry_after: bool,
    pub backoff_multiplier: f64,
    pub max_recovery_ms: u64,
    pub recovery_jitter: f64,
    pub conditions: FailureConditions,
}

impl Default for Policy {
    /// The seed's defaults: 5 failures in 60 s open the breaker, 30 s recovery, 2 successes.
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
            honor_retry_after: true,
            backoff_multiplier: 1.0,
            max_recovery_ms: 300_000,
            recovery_jitter: 0.1,
            conditions: FailureConditions::default(),
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
}

impl Default for FailureConditions {
    fn default() -> Self {
        FailureConditions {
            status_codes: vec![500, 502, 503, 504, 529],
            timeout: true,
            connect_failure: true,
            rate_limit: true,
        }
    }
}

/// How a breaker acts on traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    Slack,
    Json,
}

/// Which transitions raise an alert, named after the state entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertOn {
    Open,
    HalfOpen,
    Close,
}

impl Config {
    /// Parses and validates the filter configuration.
    pub fn from_json(json: &str) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new("", ConfigErrorKind::Syntax(e.to_string())))?;
        Config::from_value(value)
    }

    /// Validates a configuration that is already a JSON value (e.g. Istio's YAML `pluginConfig`).
    pub fn from_value(value: Value) -> Result<Config, ConfigError> {
        let raw: RawConfig = typed("", value)?;
        raw.validate()
    }

    /// Finds an upstream by name.
    pub fn upstream_id(&self, name: &str) -> Option<UpstreamId> {
        self.upstreams.iter().position(|u| u.name == name)
    }

    /// Whether some route matches on the JSON `model` field, so the body must be read to route.
    pub fn routes_on_model(&self) -> bool {
        self.routes.iter().any(|r| r.model.is_some())
    }

    /// Whether some upstream reachable as a fallback rewrites the JSON body.
    pub fn rewrites_body(&self) -> bool {
        self.upstreams
            .iter()
            .flat_map(|u| u.fallbacks.iter())
            .any(|&f| {
                self.upstreams[f]
                    .rewrite
                    .as_ref()
                    .is_some_and(|r| r.model.is_some())
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A configuration error: the key path and what is wrong there.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub kind: ConfigErrorKind,
}

/// What is wrong with a configuration value.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigErrorKind {
    /// Not JSON, a wrong type, a missing or unknown key (serde's own message).
    Syntax(String),
    /// A value outside its allowed range.
    OutOfRange(String),
    /// A name that refers to no upstream.
    UnknownUpstream(String),
    /// Two upstreams with one name.
    DuplicateUpstream(String),
    /// Fallbacks that lead back to where they started.
    FallbackCycle(Vec<String>),
    /// A list that must not be empty.
    Empty(&'static str),
}

impl ConfigError {
    fn new(path: impl Into<String>, kind: ConfigErrorKind) -> Self {
        ConfigError {
            path: path.into(),
            kind,
        }
    }

    fn range(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::new(path, ConfigErrorKind::OutOfRange(reason.into()))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "config"
        } else {
            &self.path
        };
        match &self.kind {
            ConfigErrorKind::Syntax(m) | ConfigErrorKind::OutOfRange(m) => write!(f, "{path}: {m}"),
            ConfigErrorKind::UnknownUpstream(n) => write!(f, "{path}: unknown upstream \"{n}\""),
            ConfigErrorKind::DuplicateUpstream(n) => {
                write!(f, "{path}: duplicate upstream name \"{n}\"")
            }
            ConfigErrorKind::FallbackCycle(c) => {
                write!(f, "{path}: fallback cycle {}", c.join(" -> "))
            }
            ConfigErrorKind::Empty(what) => write!(f, "{path}: at least one {what} is required"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Deserializes `value` into `T`, reporting serde errors with their full key path under `base`.
fn typed<T: DeserializeOwned>(base: &str, value: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = join_path(base, if inner == "." { "" } else { &inner });
        ConfigError::new(path, ConfigErrorKind::Syntax(e.inner().to_string()))
    })
}

fn join_path(base: &str, inner: &str) -> String {
    match (base.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_string(),
        (false, true) => base.to_string(),
        (false, false) if inner.starts_with('[') => format!("{base}{inner}"),
        (false, false) => format!("{base}.{inner}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) layer
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    route_header: Option<String>,
    response_header: Option<String>,
    health_path: Option<String>,
    #[serde(default)]
    defaults: RawPolicy,
    #[serde(default)]
    upstreams: Vec<Map<String, Value>>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    fast_fail: Option<RawFastFail>,
    failover: Option<RawFailover>,
    alerting: Option<RawAlerting>,
    tick_interval: Option<f64>,
}

/// Policy keys, shared by `defaults` and every upstream (which may override any of them).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    failure_threshold: Option<u32>,
    window_size: Option<f64>,
    recovery_timeout: Option<f64>,
    success_threshold: Option<u32>,
    half_open_max_requests: Option<u32>,
    probe_timeout: Option<f64>,
    mode: Option<Mode>,
    failure_rate: Option<RawFailureRate>,
    slow_call_duration: Option<f64>,
    honor_retry_after: Option<bool>,
    backoff_multiplier: Option<f64>,
    max_recovery_timeout: Option<f64>,
    recovery_jitter: Option<f64>,
    failure_conditions: Option<RawFailureConditions>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawFailureRate {
    threshold: f64,
    #[serde(default = "default_minimum_requests")]
    minimum_requests: u32,
}

fn default_minimum_requests() -> u32 {
    20
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawFailureConditions {
    status_codes: Option<Vec<u16>>,
    timeout: Option<bool>,
    connect_failure: Option<bool>,
    rate_limit: Option<bool>,
}

/// The non-policy keys of an upstream.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamIdentity {
    name: String,
    cluster: Option<String>,
    callout_cluster: Option<String>,
    #[serde(default)]
    fallbacks: Vec<String>,
    rewrite: Option<RawRewrite>,
}

const UPSTREAM_IDENTITY_KEYS: [&str; 5] =
    ["name", "cluster", "callout_cluster", "fallbacks", "rewrite"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    model: Option<String>,
    path: Option<String>,
    host: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(rename = "match", default)]
    matcher: RawMatch,
    upstream: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path_prefix: Option<String>,
    host: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFastFail {
    status: Option<u16>,
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    enabled: Option<bool>,
    max_attempts: Option<u32>,
    max_body_bytes: Option<usize>,
    on: Option<Vec<FailureReason>>,
    timeout: Option<f64>,
    methods: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    cluster: String,
    authority: Option<String>,
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout: Option<f64>,
    format: Option<AlertFormat>,
    min_interval: Option<f64>,
    on: Option<Vec<AlertOn>>,
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let route_header = header_name(
            "route_header",
            self.route_header.as_deref().unwrap_or(DEFAULT_ROUTE_HEADER),
        )?;
        let response_header = header_name(
            "response_header",
            self.response_header
                .as_deref()
                .unwrap_or(DEFAULT_RESPONSE_HEADER),
        )?;
        if let Some(p) = &self.health_path {
            if !p.starts_with('/') {
                return Err(ConfigError::range("health_path", "must start with '/'"));
            }
        }
        let defaults = self.defaults.apply_to(Policy::default(), "defaults")?;

        if self.upstreams.is_empty() {
            return Err(ConfigError::new(
                "upstreams",
                ConfigErrorKind::Empty("upstream"),
            ));
        }
        let mut identities = Vec::with_capacity(self.upstreams.len());
        let mut policies = Vec::with_capacity(self.upstreams.len());
        for (i, map) in self.upstreams.into_iter().enumerate() {
            let base = format!("upstreams[{i}]");
            let (identity, policy) = split_upstream(map);
            let identity: RawUpstreamIdentity = typed(&base, Value::Object(identity))?;
            let overrides: RawPolicy = typed(&base, Value::Object(policy))?;
            policies.push(overrides.apply_to(defaults.clone(), &base)?);
            identities.push(identity);
        }

        let mut upstreams = Vec::with_capacity(identities.len());
        for (i, id) in identities.iter().enumerate() {
            let base = format!("upstreams[{i}]");
            if id.name.is_empty() {
                return Err(ConfigError::range(
                    format!("{base}.name"),
                    "must not be empty",
                ));
            }
            if !id
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                // The name becomes a metric label inside the stat name; keep it unambiguous.
                return Err(ConfigError::range(
                    format!("{base}.name"),
                    format!(
                        "\"{}\" may only contain letters, digits, '-' and '_'",
                        id.name
                    ),
                ));
            }
            if identities[..i].iter().any(|o| o.name == id.name) {
                return Err(ConfigError::new(
                    format!("{base}.name"),
                    ConfigErrorKind::DuplicateUpstream(id.name.clone()),
                ));
            }
            let cluster = id.cluster.clone().unwrap_or_else(|| id.name.clone());
            if cluster.is_empty() || !is_header_value(&cluster) {
                return Err(ConfigError::range(
                    format!("{base}.cluster"),
                    "must be a non-empty printable header value",
                ));
            }
            let callout_cluster = id
                .callout_cluster
                .clone()
                .unwrap_or_else(|| cluster.clone());
            if callout_cluster.is_empty() {
                return Err(ConfigError::range(
                    format!("{base}.callout_cluster"),
                    "must not be empty",
                ));
            }
            let mut fallbacks = Vec::with_capacity(id.fallbacks.len());
            for (j, f) in id.fallbacks.iter().enumerate() {
                let path = format!("{base}.fallbacks[{j}]");
                let target = identities
                    .iter()
                    .position(|o| &o.name == f)
                    .ok_or_else(|| {
                        ConfigError::new(path.clone(), ConfigErrorKind::UnknownUpstream(f.clone()))
                    })?;
                if fallbacks.contains(&target) {
                    return Err(ConfigError::range(path, format!("\"{f}\" is listed twice")));
                }
                fallbacks.push(target);
            }
            let rewrite = match &id.rewrite {
                Some(r) => Some(validate_rewrite(
                    r,
                    &format!("{base}.rewrite"),
                    &route_header,
                )?),
                None => None,
            };
            upstreams.push(Upstream {
                name: id.name.clone(),
                cluster,
                callout_cluster,
                fallbacks,
                rewrite,
                policy: policies[i].clone(),
            });
        }
        check_fallback_cycles(&upstreams)?;

        if self.routes.is_empty() {
            return Err(ConfigError::new("routes", ConfigErrorKind::Empty("route")));
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.into_iter().enumerate() {
            let base = format!("routes[{i}]");
            let upstream = upstreams
                .iter()
                .position(|u| u.name == r.upstream)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{base}.upstream"),
                        ConfigErrorKind::UnknownUpstream(r.upstream.clone()),
                    )
                })?;
            if let Some(p) = &r.matcher.path_prefix {
                if !p.starts_with('/') {
                    return Err(ConfigError::range(
                        format!("{base}.match.path_prefix"),
                        "must start with '/'",
                    ));
                }
            }
            let headers = header_pairs(&format!("{base}.match.headers"), r.matcher.headers)?;
            routes.push(Route {
                path_prefix: r.matcher.path_prefix,
                host: r.matcher.host.map(|h| h.to_ascii_lowercase()),
                headers,
                model: r.matcher.model,
                upstream,
            });
        }

        Ok(Config {
            route_header,
            response_header,
            health_path: self.health_path,
            upstreams,
            routes,
            fast_fail: validate_fast_fail(self.fast_fail)?,
            failover: validate_failover(self.failover)?,
            alerting: match self.alerting {
                Some(a) => Some(validate_alerting(a)?),
                None => None,
            },
            tick_interval_ms: match self.tick_interval {
                Some(s) => duration_ms("tick_interval", s)?,
                None => 1_000,
            },
        })
    }
}

/// Splits an upstream object into its identity keys and its policy overrides.
fn split_upstream(map: Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    map.into_iter()
        .partition(|(k, _)| UPSTREAM_IDENTITY_KEYS.contains(&k.as_str()))
}

impl RawPolicy {
    /// Applies these (possibly partial) settings on top of `base`, validating each one.
    fn apply_to(&self, base: Policy, at: &str) -> Result<Policy, ConfigError> {
        let key = |k: &str| join_path(at, k);
        let mut p = base;
        if let Some(v) = self.failure_threshold {
            p.failure_threshold = at_least_one(&key("failure_threshold"), v)?;
        }
        if let Some(v) = self.window_size {
            p.window_ms = duration_ms(&key("window_size"), v)?;
        }
        if let Some(v) = self.recovery_timeout {
            p.recovery_ms = duration_ms(&key("recovery_timeout"), v)?;
        }
        if let Some(v) = self.success_threshold {
            p.success_threshold = at_least_one(&key("success_threshold"), v)?;
        }
        if let Some(v) = self.half_open_max_requests {
            let k = key("half_open_max_requests");
            p.half_open_max_requests = at_least_one(&k, v)?;
            if v > MAX_HALF_OPEN_REQUESTS {
                return Err(ConfigError::range(
                    k,
                    format!("must be at most {MAX_HALF_OPEN_REQUESTS}, got {v}"),
                ));
            }
        }
        if let Some(v) = self.probe_timeout {
            p.probe_timeout_ms = duration_ms(&key("probe_timeout"), v)?;
        }
        if let Some(v) = self.mode {
            p.mode = v;
        }
        if let Some(r) = &self.failure_rate {
            let k = key("failure_rate");
            p.failure_rate = Some(FailureRate {
                threshold: ratio(&join_path(&k, "threshold"), r.threshold)?,
                minimum_requests: at_least_one(
                    &join_path(&k, "minimum_requests"),
                    r.minimum_requests,
                )?,
            });
        }
        if let Some(v) = self.slow_call_duration {
            p.slow_call_ms = Some(duration_ms(&key("slow_call_duration"), v)?);
        }
        if let Some(v) = self.honor_retry_after {
            p.honor_retry_after = v;
        }
        if let Some(v) = self.backoff_multiplier {
            if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
                return Err(ConfigError::range(
                    key("backoff_multiplier"),
                    format!("must be between 1.0 and 100.0, got {v}"),
                ));
            }
            p.backoff_multiplier = v;
        }
        if let Some(v) = self.max_recovery_timeout {
            p.max_recovery_ms = duration_ms(&key("max_recovery_timeout"), v)?;
        }
        if let Some(v) = self.recovery_jitter {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(ConfigError::range(
                    key("recovery_jitter"),
                    format!("must be in [0, 1), got {v}"),
                ));
            }
            p.recovery_jitter = v;
        }
        if let Some(c) = &self.failure_conditions {
            let k = key("failure_conditions");
            if let Some(codes) = &c.status_codes {
                for (i, &code) in codes.iter().enumerate() {
                    if !(100..=599).contains(&code) {
                        return Err(ConfigError::range(
                            format!("{k}.status_codes[{i}]"),
                            format!("must be an HTTP status (100-599), got {code}"),
                        ));
                    }
                }
                p.conditions.status_codes = codes.clone();
            }
            if let Some(v) = c.timeout {
                p.conditions.timeout = v;
            }
            if let Some(v) = c.connect_failure {
                p.conditions.connect_failure = v;
            }
            if let Some(v) = c.rate_limit {
                p.conditions.rate_limit = v;
            }
        }
        if p.max_recovery_ms < p.recovery_ms {
            return Err(ConfigError::range(
                key("max_recovery_timeout"),
                format!(
                    "must be at least recovery_timeout ({} s), got {} s",
                    p.recovery_ms as f64 / 1000.0,
                    p.max_recovery_ms as f64 / 1000.0
                ),
            ));
        }
        Ok(p)
    }
}

fn at_least_one(path: &str, v: u32) -> Result<u32, ConfigError> {
    if v == 0 {
        return Err(ConfigError::range(path, "must be at least 1, got 0"));
    }
    Ok(v)
}

/// Seconds (a JSON number, fractions allowed) to milliseconds; must be > 0 and at most a day.
fn duration_ms(path: &str, secs: f64) -> Result<u64, ConfigError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(ConfigError::range(
            path,
            format!("must be a duration in seconds, > 0 and <= 86400, got {secs}"),
        ));
    }
    Ok(((secs * 1000.0).round() as u64).max(1))
}

fn ratio(path: &str, v: f64) -> Result<f64, ConfigError> {
    if !(v.is_finite() && v > 0.0 && v <= 1.0) {
        return Err(ConfigError::range(
            path,
            format!("must be in (0, 1], got {v}"),
        ));
    }
    Ok(v)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_header_value(v: &str) -> bool {
    v.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
}

/// A lower-case, non-pseudo HTTP header name.
fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || !name.chars().all(is_token_char) {
        return Err(ConfigError::range(
            path,
            format!("\"{name}\" is not a valid HTTP header name"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn header_pairs(
    path: &str,
    headers: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    headers
        .into_iter()
        .map(|(k, v)| {
            let name = header_name(&format!("{path}.{k}"), &k)?;
            if !is_header_value(&v) {
                return Err(ConfigError::range(
                    format!("{path}.{k}"),
                    "header value must be printable ASCII",
                ));
            }
            Ok((name, v))
        })
        .collect()
}

fn validate_rewrite(r: &RawRewrite, at: &str, route_header: &str) -> Result<Rewrite, ConfigError> {
    if let Some(p) = &r.path {
        if !p.starts_with('/') {
            return Err(ConfigError::range(
                format!("{at}.path"),
                "must start with '/'",
            ));
        }
    }
    if let Some(h) = &r.host {
        if h.is_empty() || !is_header_value(h) {
            return Err(ConfigError::range(
                format!("{at}.host"),
                "must be a non-empty host",
            ));
        }
    }
    if let Some(m) = &r.model {
        if m.is_empty() {
            return Err(ConfigError::range(
                format!("{at}.model"),
                "must not be empty",
            ));
        }
    }
    let headers = header_pairs(&format!("{at}.headers"), r.headers.clone())?;
    for (name, _) in &headers {
        if name == route_header || name == "content-length" {
            return Err(ConfigError::range(
                format!("{at}.headers.{name}"),
                "this header is managed by the filter and cannot be rewritten",
            ));
        }
    }
    Ok(Rewrite {
        model: r.model.clone(),
        path: r.path.clone(),
        host: r.host.clone(),
        headers,
    })
}

/// Rejects fallback chains that lead back to an upstream already on the chain.
fn check_fallback_cycles(upstreams: &[Upstream]) -> Result<(), ConfigError> {
    // Depth-first search with colours: 0 unvisited, 1 on the stack, 2 done.
    fn visit(
        u: UpstreamId,
        ups: &[Upstream],
        colour: &mut [u8],
        stack: &mut Vec<UpstreamId>,
    ) -> Option<(UpstreamId, usize, Vec<String>)> {
        colour[u] = 1;
        stack.push(u);
        for (j, &f) in ups[u].fallbacks.iter().enumerate() {
            if colour[f] == 1 {
                let start = stack.iter().position(|&s| s == f).unwrap_or(0);
                let mut names: Vec<String> = stack[start..]
                    .iter()
                    .map(|&s| ups[s].name.clone())
                    .collect();
                names.push(ups[f].name.clone());
                return Some((u, j, names));
            }
            if colour[f] == 0 {
                if let Some(found) = visit(f, ups, colour, stack) {
                    return Some(found);
                }
            }
        }
        stack.pop();
        colour[u] = 2;
        None
    }
    let mut colour = vec![0u8; upstreams.len()];
    for u in 0..upstreams.len() {
        if colour[u] == 0 {
            let mut stack = Vec::new();
            if let Some((at, j, names)) = visit(u, upstreams, &mut colour, &mut stack) {
                return Err(ConfigError::new(
                    format!("upstreams[{at}].fallbacks[{j}]"),
                    ConfigErrorKind::FallbackCycle(names),
                ));
            }
        }
    }
    Ok(())
}

fn validate_fast_fail(raw: Option<RawFastFail>) -> Result<FastFail, ConfigError> {
    let (status, message) = match raw {
        Some(r) => (r.status, r.message),
        None => (None, None),
    };
    let status = status.unwrap_or(503);
    if !(400..=599).contains(&status) {
        return Err(ConfigError::range(
            "fast_fail.status",
            format!("must be a 4xx or 5xx status, got {status}"),
        ));
    }
    Ok(FastFail {
        status,
        message: message.unwrap_or_else(|| DEFAULT_FAST_FAIL_MESSAGE.to_string()),
    })
}

fn validate_failover(raw: Option<RawFailover>) -> Result<Failover, ConfigError> {
    let mut f = Failover {
        enabled: true,
        max_attempts: 1,
        max_body_bytes: 1 << 20,
        // Every breaker failure except `slow`: a slow call already succeeded, and re-sending
        // it would discard a good answer and pay for the request twice.
        on: FailureReason::ALL
            .into_iter()
            .filter(|r| *r != FailureReason::Slow)
            .collect(),
        timeout_ms: 30_000,
        methods: vec!["POST".to_string()],
    };
    let Some(r) = raw else { return Ok(f) };
    if let Some(v) = r.enabled {
        f.enabled = v;
    }
    if let Some(v) = r.max_attempts {
        f.max_attempts = at_least_one("failover.max_attempts", v)?;
    }
    if let Some(v) = r.max_body_bytes {
        if v == 0 || v > 64 << 20 {
            return Err(ConfigError::range(
                "failover.max_body_bytes",
                format!("must be between 1 and 67108864, got {v}"),
            ));
        }
        f.max_body_bytes = v;
    }
    if let Some(v) = r.on {
        if v.is_empty() {
            return Err(ConfigError::new(
                "failover.on",
                ConfigErrorKind::Empty("failure reason"),
            ));
        }
        f.on = v;
    }
    if let Some(v) = r.timeout {
        f.timeout_ms = duration_ms("failover.timeout", v)?;
    }
    if let Some(v) = r.methods {
        if v.is_empty() {
            return Err(ConfigError::new(
                "failover.methods",
                ConfigErrorKind::Empty("method"),
            ));
        }
        for (i, m) in v.iter().enumerate() {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(ConfigError::range(
                    format!("failover.methods[{i}]"),
                    format!("\"{m}\" is not an upper-case HTTP method"),
                ));
            }
        }
        f.methods = v;
    }
    Ok(f)
}

fn validate_alerting(r: RawAlerting) -> Result<Alerting, ConfigError> {
    if r.cluster.is_empty() {
        return Err(ConfigError::range("alerting.cluster", "must not be empty"));
    }
    let path = r.path.unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') {
        return Err(ConfigError::range("alerting.path", "must start with '/'"));
    }
    let on = r.on.unwrap_or_else(|| vec![AlertOn::Open, AlertOn::Close]);
    Ok(Alerting {
        authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
        cluster: r.cluster,
        path,
        headers: header_pairs("alerting.headers", r.headers)?,
        timeout_ms: match r.timeout {
            Some(s) => duration_ms("alerting.timeout", s)?,
            None => 5_000,
        },
        format: r.format.unwrap_or(AlertFormat::Slack),
        min_interval_ms: match r.min_interval {
            Some(0.0) => 0,
            Some(s) => duration_ms("alerting.min_interval", s)?,
            None => 60_000,
        },
        on,
    })
}
