//! The serde layer: the JSON configuration exactly as users write it, read key by key.
//!
//! Every value is typed where it stands by [`Field::read`] (serde_json's messages, one
//! reader per type), so an error names its full key path (`upstreams[1].failure_conditions.status_codes[2]: invalid type:
//! string "x", expected u16`), and every object rejects keys it does not know, naming the
//! ones it does. Nothing is validated here beyond JSON types: [`super::compile`] turns these
//! values into the typed [`super::Config`].
//!
//! (The same key paths came from the `serde_path_to_error` crate before; it wraps every
//! visitor of every type and cost ~40 KB of the 400 KiB wasm budget, this reader ~3 KB.)

use serde_json::Value;

use super::error::{join_path, ConfigError, ConfigErrorKind};
use super::field::{Field, HeaderMap};
use super::model::{AlertFormat, AlertOn, Mode};
use crate::outcome::FailureReason;

/// A JSON object being read: each key taken is typed at `path.key`, and whatever is left at
/// the end is an unknown key.
///
/// The members are kept as a list in serde_json's (sorted) key order, not as its map: taking
/// keys out of a `BTreeMap` linked the B-tree's removal and rebalancing code (4.9 KB of wasm).
pub(super) struct Object {
    path: String,
    members: Vec<(String, Value)>,
    known: Vec<&'static str>,
}

fn syntax(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::new(path, ConfigErrorKind::Syntax(message.into()))
}

impl Object {
    pub fn new(path: String, value: Value) -> Result<Object, ConfigError> {
        match value {
            Value::Object(map) => Ok(Object {
                path,
                members: map.into_iter().collect(),
                known: Vec::new(),
            }),
            other => Err(syntax(
                path,
                format!("invalid type: {}, expected an object", kind(&other)),
            )),
        }
    }

    fn take(&mut self, key: &'static str) -> Option<(String, Value)> {
        self.known.push(key);
        let at = self.members.iter().position(|(k, _)| k == key)?;
        let (_, value) = self.members.remove(at);
        Some((join_path(&self.path, key), value))
    }

    /// The value at `key`, if present.
    pub fn value<T: Field>(&mut self, key: &'static str) -> Result<Option<T>, ConfigError> {
        self.take(key).map(|(p, v)| T::read(&p, v)).transpose()
    }

    /// The value at `key`, which must be present.
    pub fn required<T: Field>(&mut self, key: &'static str) -> Result<T, ConfigError> {
        let path = self.path.clone();
        self.value(key)?
            .ok_or_else(|| syntax(path, format!("missing field `{key}`")))
    }

    /// The object at `key`, if present.
    pub fn object(&mut self, key: &'static str) -> Result<Option<Object>, ConfigError> {
        self.take(key).map(|(p, v)| Object::new(p, v)).transpose()
    }

    /// The list at `key`, each element typed at `key[i]`.
    pub fn list<T: Field>(&mut self, key: &'static str) -> Result<Option<Vec<T>>, ConfigError> {
        self.elements(key, |p, v| T::read(&p, v))
    }

    /// The list of objects at `key`.
    pub fn objects(&mut self, key: &'static str) -> Result<Option<Vec<Object>>, ConfigError> {
        self.elements(key, Object::new)
    }

    fn elements<T>(
        &mut self,
        key: &'static str,
        mut each: impl FnMut(String, Value) -> Result<T, ConfigError>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some((path, value)) = self.take(key) else {
            return Ok(None);
        };
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| each(format!("{path}[{i}]"), v))
                .collect::<Result<Vec<T>, _>>()
                .map(Some),
            other => Err(syntax(
                path,
                format!("invalid type: {}, expected a list", kind(&other)),
            )),
        }
    }

    /// Ends the read: any key not taken is unknown.
    pub fn done(self) -> Result<(), ConfigError> {
        let Some((unknown, _)) = self.members.first() else {
            return Ok(());
        };
        let expected: Vec<String> = self.known.iter().map(|k| format!("`{k}`")).collect();
        Err(syntax(
            self.path,
            format!(
                "unknown field `{unknown}`, expected one of {}",
                expected.join(", ")
            ),
        ))
    }
}

/// How serde names a JSON value's type in its messages.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    }
}

pub(super) struct RawConfig {
    pub route_header: Option<String>,
    pub response_header: Option<String>,
    pub health_path: Option<String>,
    pub defaults: RawPolicy,
    pub upstreams: Vec<(RawUpstreamIdentity, RawPolicy)>,
    pub routes: Vec<RawRoute>,
    pub fast_fail: Option<RawFastFail>,
    pub failover: Option<RawFailover>,
    pub alerting: Option<RawAlerting>,
    pub tick_interval: Option<f64>,
    pub body_buffer_limit: Option<usize>,
}

impl RawConfig {
    pub fn read(value: Value) -> Result<RawConfig, ConfigError> {
        let mut o = Object::new(String::new(), value)?;
        let raw = RawConfig {
            route_header: o.value("route_header")?,
            response_header: o.value("response_header")?,
            health_path: o.value("health_path")?,
            defaults: match o.object("defaults")? {
                Some(mut d) => {
                    let p = RawPolicy::read(&mut d)?;
                    d.done()?;
                    p
                }
                None => RawPolicy::default(),
            },
            upstreams: o
                .objects("upstreams")?
                .unwrap_or_default()
                .into_iter()
                .map(|mut u| {
                    let identity = RawUpstreamIdentity::read(&mut u)?;
                    let policy = RawPolicy::read(&mut u)?;
                    u.done()?;
                    Ok((identity, policy))
                })
                .collect::<Result<_, ConfigError>>()?,
            routes: o
                .objects("routes")?
                .unwrap_or_default()
                .into_iter()
                .map(RawRoute::read)
                .collect::<Result<_, _>>()?,
            fast_fail: o.object("fast_fail")?.map(RawFastFail::read).transpose()?,
            failover: o.object("failover")?.map(RawFailover::read).transpose()?,
            alerting: o.object("alerting")?.map(RawAlerting::read).transpose()?,
            tick_interval: o.value("tick_interval")?,
            body_buffer_limit: o.value("body_buffer_limit")?,
        };
        o.done()?;
        Ok(raw)
    }
}

/// Policy keys, shared by `defaults` and every upstream (which may override any of them).
#[derive(Default, Clone)]
pub(super) struct RawPolicy {
    pub failure_threshold: Option<u32>,
    pub window_size: Option<f64>,
    pub recovery_timeout: Option<f64>,
    pub success_threshold: Option<u32>,
    pub half_open_max_requests: Option<u32>,
    pub probe_timeout: Option<f64>,
    pub mode: Option<Mode>,
    pub failure_rate: Option<RawFailureRate>,
    pub slow_call_duration: Option<f64>,
    pub stream_idle_timeout: Option<f64>,
    pub first_token_timeout: Option<f64>,
    pub honor_retry_after: Option<bool>,
    pub backoff_multiplier: Option<f64>,
    pub max_recovery_timeout: Option<f64>,
    pub recovery_jitter: Option<f64>,
    pub failure_conditions: Option<RawFailureConditions>,
    pub retry: Option<RawRetry>,
    pub response_timeout: Option<f64>,
    pub quota_recovery_timeout: Option<f64>,
}

impl RawPolicy {
    /// Reads the policy keys of `o` (which may hold other keys too).
    fn read(o: &mut Object) -> Result<RawPolicy, ConfigError> {
        Ok(RawPolicy {
            failure_threshold: o.value("failure_threshold")?,
            window_size: o.value("window_size")?,
            recovery_timeout: o.value("recovery_timeout")?,
            success_threshold: o.value("success_threshold")?,
            half_open_max_requests: o.value("half_open_max_requests")?,
            probe_timeout: o.value("probe_timeout")?,
            mode: o.value("mode")?,
            failure_rate: o
                .object("failure_rate")?
                .map(RawFailureRate::read)
                .transpose()?,
            slow_call_duration: o.value("slow_call_duration")?,
            stream_idle_timeout: o.value("stream_idle_timeout")?,
            first_token_timeout: o.value("first_token_timeout")?,
            honor_retry_after: o.value("honor_retry_after")?,
            backoff_multiplier: o.value("backoff_multiplier")?,
            max_recovery_timeout: o.value("max_recovery_timeout")?,
            recovery_jitter: o.value("recovery_jitter")?,
            failure_conditions: o
                .object("failure_conditions")?
                .map(RawFailureConditions::read)
                .transpose()?,
            retry: o.object("retry")?.map(RawRetry::read).transpose()?,
            response_timeout: o.value("response_timeout")?,
            quota_recovery_timeout: o.value("quota_recovery_timeout")?,
        })
    }
}

/// `retry`: same-upstream retries before failover.
#[derive(Clone)]
pub(super) struct RawRetry {
    pub attempts: Option<u32>,
    pub on: Option<Vec<FailureReason>>,
    pub max_retry_after: Option<f64>,
}

impl RawRetry {
    fn read(mut o: Object) -> Result<RawRetry, ConfigError> {
        let r = RawRetry {
            attempts: o.value("attempts")?,
            on: o.list("on")?,
            max_retry_after: o.value("max_retry_after")?,
        };
        o.done()?;
        Ok(r)
    }
}

#[derive(Clone)]
pub(super) struct RawFailureRate {
    pub threshold: f64,
    pub minimum_requests: u32,
}

impl RawFailureRate {
    fn read(mut o: Object) -> Result<RawFailureRate, ConfigError> {
        let r = RawFailureRate {
            threshold: o.required("threshold")?,
            minimum_requests: o.value("minimum_requests")?.unwrap_or(20),
        };
        o.done()?;
        Ok(r)
    }
}

#[derive(Clone)]
pub(super) struct RawFailureConditions {
    pub status_codes: Option<Vec<u16>>,
    pub timeout: Option<bool>,
    pub connect_failure: Option<bool>,
    pub rate_limit: Option<bool>,
    pub stream_error: Option<bool>,
    pub stream_truncated: Option<bool>,
    pub stream_stall: Option<bool>,
    pub slow_first_token: Option<bool>,
}

impl RawFailureConditions {
    fn read(mut o: Object) -> Result<RawFailureConditions, ConfigError> {
        let r = RawFailureConditions {
            status_codes: o.list("status_codes")?,
            timeout: o.value("timeout")?,
            connect_failure: o.value("connect_failure")?,
            rate_limit: o.value("rate_limit")?,
            stream_error: o.value("stream_error")?,
            stream_truncated: o.value("stream_truncated")?,
            stream_stall: o.value("stream_stall")?,
            slow_first_token: o.value("slow_first_token")?,
        };
        o.done()?;
        Ok(r)
    }
}

/// The non-policy keys of an upstream.
pub(super) struct RawUpstreamIdentity {
    pub name: String,
    pub cluster: Option<String>,
    pub callout_cluster: Option<String>,
    pub fallbacks: Vec<String>,
    pub rewrite: Option<RawRewrite>,
    pub recovery_probe: Option<RawRecoveryProbe>,
    pub context_window_fallback: Option<String>,
    pub api: Option<String>,
    pub anthropic_version: Option<String>,
    pub default_max_tokens: Option<u32>,
}

impl RawUpstreamIdentity {
    fn read(o: &mut Object) -> Result<RawUpstreamIdentity, ConfigError> {
        Ok(RawUpstreamIdentity {
            name: o.required("name")?,
            cluster: o.value("cluster")?,
            callout_cluster: o.value("callout_cluster")?,
            fallbacks: o.list("fallbacks")?.unwrap_or_default(),
            rewrite: o.object("rewrite")?.map(RawRewrite::read).transpose()?,
            recovery_probe: o
                .object("recovery_probe")?
                .map(RawRecoveryProbe::read)
                .transpose()?,
            context_window_fallback: o.value("context_window_fallback")?,
            api: o.value("api")?,
            anthropic_version: o.value("anthropic_version")?,
            default_max_tokens: o.value("default_max_tokens")?,
        })
    }
}

pub(super) struct RawRewrite {
    pub model: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: HeaderMap,
}

impl RawRewrite {
    fn read(mut o: Object) -> Result<RawRewrite, ConfigError> {
        let r = RawRewrite {
            model: o.value("model")?,
            path: o.value("path")?,
            host: o.value("host")?,
            headers: o.value("headers")?.unwrap_or_default(),
        };
        o.done()?;
        Ok(r)
    }
}

pub(super) struct RawRecoveryProbe {
    pub method: Option<String>,
    pub path: Option<String>,
    pub headers: HeaderMap,
    pub body: Option<String>,
    pub interval: Option<f64>,
    pub timeout: Option<f64>,
    pub expected_statuses: Option<Vec<u16>>,
}

impl RawRecoveryProbe {
    fn read(mut o: Object) -> Result<RawRecoveryProbe, ConfigError> {
        let r = RawRecoveryProbe {
            method: o.value("method")?,
            path: o.value("path")?,
            headers: o.value("headers")?.unwrap_or_default(),
            body: o.value("body")?,
            interval: o.value("interval")?,
            timeout: o.value("timeout")?,
            expected_statuses: o.list("expected_statuses")?,
        };
        o.done()?;
        Ok(r)
    }
}

pub(super) struct RawRoute {
    pub matcher: RawMatch,
    pub upstream: String,
    pub api: Option<String>,
}

impl RawRoute {
    fn read(mut o: Object) -> Result<RawRoute, ConfigError> {
        let matcher = match o.object("match")? {
            Some(m) => RawMatch::read(m)?,
            None => RawMatch::default(),
        };
        let r = RawRoute {
            matcher,
            upstream: o.required("upstream")?,
            api: o.value("api")?,
        };
        o.done()?;
        Ok(r)
    }
}

#[derive(Default)]
pub(super) struct RawMatch {
    pub path_prefix: Option<String>,
    pub host: Option<String>,
    pub headers: HeaderMap,
    pub model: Option<String>,
}

impl RawMatch {
    fn read(mut o: Object) -> Result<RawMatch, ConfigError> {
        let r = RawMatch {
            path_prefix: o.value("path_prefix")?,
            host: o.value("host")?,
            headers: o.value("headers")?.unwrap_or_default(),
            model: o.value("model")?,
        };
        o.done()?;
        Ok(r)
    }
}

pub(super) struct RawFastFail {
    pub status: Option<u16>,
    pub message: Option<String>,
}

impl RawFastFail {
    fn read(mut o: Object) -> Result<RawFastFail, ConfigError> {
        let r = RawFastFail {
            status: o.value("status")?,
            message: o.value("message")?,
        };
        o.done()?;
        Ok(r)
    }
}

pub(super) struct RawFailover {
    pub enabled: Option<bool>,
    pub max_attempts: Option<u32>,
    pub max_body_bytes: Option<usize>,
    pub on: Option<Vec<FailureReason>>,
    pub timeout: Option<f64>,
    pub methods: Option<Vec<String>>,
}

impl RawFailover {
    fn read(mut o: Object) -> Result<RawFailover, ConfigError> {
        let r = RawFailover {
            enabled: o.value("enabled")?,
            max_attempts: o.value("max_attempts")?,
            max_body_bytes: o.value("max_body_bytes")?,
            on: o.list("on")?,
            timeout: o.value("timeout")?,
            methods: o.list("methods")?,
        };
        o.done()?;
        Ok(r)
    }
}

pub(super) struct RawAlerting {
    pub cluster: String,
    pub authority: Option<String>,
    pub path: Option<String>,
    pub headers: HeaderMap,
    pub timeout: Option<f64>,
    pub format: Option<AlertFormat>,
    pub min_interval: Option<f64>,
    pub on: Option<Vec<AlertOn>>,
}

impl RawAlerting {
    fn read(mut o: Object) -> Result<RawAlerting, ConfigError> {
        let r = RawAlerting {
            cluster: o.required("cluster")?,
            authority: o.value("authority")?,
            path: o.value("path")?,
            headers: o.value("headers")?.unwrap_or_default(),
            timeout: o.value("timeout")?,
            format: o.value("format")?,
            min_interval: o.value("min_interval")?,
            on: o.list("on")?,
        };
        o.done()?;
        Ok(r)
    }
}
