//! Compilation: the serde layer's values checked and resolved into the typed [`Config`].
//!
//! Every check names the key it is about. Names become [`UpstreamId`]s, policy overrides are
//! laid over `defaults`, and the facts the request path needs (candidate chains, whether
//! routes look at the host or the body, whether a fallback edits the body) are computed here
//! once.

use super::checks::{
    at_least_one, compile_api, duration_ms, header_name, header_pairs, is_header_value,
};
use super::error::{ConfigError, ConfigErrorKind};
use super::model::*;
use super::probe::compile_recovery_probe;
use super::raw::*;
use crate::outcome::FailureReason;
use crate::translate::Api;

const DEFAULT_ROUTE_HEADER: &str = "x-ai-cb-upstream";
const DEFAULT_RESPONSE_HEADER: &str = "x-ai-cb-served-by";
/// The largest `body_buffer_limit`: 1 GiB.
const MAX_BODY_BUFFER_LIMIT: usize = 1 << 30;
const DEFAULT_FAST_FAIL_MESSAGE: &str = "All AI providers are currently unavailable";
const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u32 = 4096;

impl RawConfig {
    pub(super) fn compile(self) -> Result<Config, ConfigError> {
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
        let declares_api = self.upstreams.iter().any(|(u, _)| u.api.is_some())
            || self.routes.iter().any(|r| r.api.is_some());
        let upstreams = compile_upstreams(self.upstreams, &defaults, &route_header)?;
        let routes = compile_routes(self.routes, &upstreams)?;
        Ok(Config {
            translates: declares_api,
            route_header,
            response_header,
            health_path: self.health_path,
            routes_on_model: routes.iter().any(|r| r.model.is_some()),
            routes_on_host: routes.iter().any(|r| r.host.is_some()),
            rewrites_body: upstreams
                .iter()
                .flat_map(|u| u.fallbacks.iter())
                .filter_map(|f| upstreams.get(f.index()))
                .any(|f| f.rewrite_model().is_some())
                || declares_api,
            upstreams,
            routes,
            fast_fail: compile_fast_fail(self.fast_fail)?,
            failover: compile_failover(self.failover)?,
            alerting: match self.alerting {
                Some(a) => Some(compile_alerting(a)?),
                None => None,
            },
            body_buffer_limit: match self.body_buffer_limit {
                Some(v) if v == 0 || v > MAX_BODY_BUFFER_LIMIT => {
                    return Err(ConfigError::range(
                        "body_buffer_limit",
                        format!("must be between 1 and {MAX_BODY_BUFFER_LIMIT}, got {v}"),
                    ))
                }
                Some(v) => v,
                None => 1 << 20,
            },
            tick_interval_ms: match self.tick_interval {
                Some(s) => duration_ms("tick_interval", s)?,
                None => 1_000,
            },
        })
    }
}

fn compile_upstreams(
    raw: Vec<(RawUpstreamIdentity, RawPolicy)>,
    defaults: &Policy,
    route_header: &str,
) -> Result<Vec<Upstream>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new(
            "upstreams",
            ConfigErrorKind::Empty("upstream"),
        ));
    }
    let mut identities = Vec::with_capacity(raw.len());
    let mut policies = Vec::with_capacity(raw.len());
    for (i, (identity, overrides)) in raw.into_iter().enumerate() {
        let base = format!("upstreams[{i}]");
        policies.push(overrides.apply_to(defaults.clone(), &base)?);
        identities.push(identity);
    }
    let mut upstreams: Vec<Upstream> = Vec::with_capacity(identities.len());
    for (i, (id, policy)) in identities.iter().zip(policies).enumerate() {
        let base = format!("upstreams[{i}]");
        check_name(&base, &id.name)?;
        if upstreams.iter().any(|o| o.name == id.name) {
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
                .map(UpstreamId::new)
                .ok_or_else(|| {
                    ConfigError::new(path.clone(), ConfigErrorKind::UnknownUpstream(f.clone()))
                })?;
            if fallbacks.contains(&target) {
                return Err(ConfigError::range(path, format!("\"{f}\" is listed twice")));
            }
            fallbacks.push(target);
        }
        let rewrite = match &id.rewrite {
            Some(r) => Some(compile_rewrite(
                r,
                &format!("{base}.rewrite"),
                route_header,
            )?),
            None => None,
        };
        let recovery_probe = match &id.recovery_probe {
            Some(r) => Some(compile_recovery_probe(
                r,
                &format!("{base}.recovery_probe"),
                id.rewrite.as_ref().and_then(|w| w.host.as_deref()),
                &cluster,
            )?),
            None => None,
        };
        let context_window_fallback = match &id.context_window_fallback {
            Some(name) => {
                let path = format!("{base}.context_window_fallback");
                let target = identities
                    .iter()
                    .position(|o| &o.name == name)
                    .map(UpstreamId::new)
                    .ok_or_else(|| {
                        ConfigError::new(
                            path.clone(),
                            ConfigErrorKind::UnknownUpstream(name.clone()),
                        )
                    })?;
                if target == UpstreamId::new(i) {
                    return Err(ConfigError::range(path, "must name another upstream"));
                }
                Some(target)
            }
            None => None,
        };
        let api = match &id.api {
            Some(name) => compile_api(format!("{base}.api"), name)?,
            None => Api::OpenAi,
        };
        let anthropic_version = id
            .anthropic_version
            .clone()
            .unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.to_string());
        if anthropic_version.is_empty() || !is_header_value(&anthropic_version) {
            return Err(ConfigError::range(
                format!("{base}.anthropic_version"),
                "must be a non-empty printable header value",
            ));
        }
        let default_max_tokens = match id.default_max_tokens {
            Some(n) => at_least_one(&format!("{base}.default_max_tokens"), n)?,
            None => DEFAULT_MAX_TOKENS,
        };
        let chain = std::iter::once(UpstreamId::new(i))
            .chain(fallbacks.iter().copied())
            .collect();
        upstreams.push(Upstream {
            name: id.name.clone(),
            cluster,
            callout_cluster,
            fallbacks,
            chain,
            rewrite,
            context_window_fallback,
            policy,
            recovery_probe,
            api,
            anthropic_version,
            default_max_tokens,
        });
    }
    check_fallback_cycles(&upstreams)?;
    Ok(upstreams)
}

/// Upstream names become metric labels inside Envoy stat names: keep them unambiguous.
fn check_name(base: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::range(
            format!("{base}.name"),
            "must not be empty",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::range(
            format!("{base}.name"),
            format!("\"{name}\" may only contain letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

fn compile_routes(raw: Vec<RawRoute>, upstreams: &[Upstream]) -> Result<Vec<Route>, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::new("routes", ConfigErrorKind::Empty("route")));
    }
    let mut routes = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let base = format!("routes[{i}]");
        let upstream = upstreams
            .iter()
            .position(|u| u.name == r.upstream)
            .map(UpstreamId::new)
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
            api: match &r.api {
                Some(name) => Some(compile_api(format!("{base}.api"), name)?),
                None => None,
            },
        });
    }
    Ok(routes)
}

fn compile_rewrite(r: &RawRewrite, at: &str, route_header: &str) -> Result<Rewrite, ConfigError> {
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
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    /// Depth-first search; returns the upstream and fallback index that closes a cycle.
    fn visit(
        u: usize,
        ups: &[Upstream],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<(usize, usize, Vec<String>)> {
        let name = |i: usize| ups.get(i).map(|x| x.name.clone()).unwrap_or_default();
        if let Some(m) = marks.get_mut(u) {
            *m = Mark::OnStack;
        }
        stack.push(u);
        let fallbacks = ups.get(u).map(|x| x.fallbacks.as_slice()).unwrap_or(&[]);
        for (j, f) in fallbacks.iter().enumerate() {
            let f = f.index();
            match marks.get(f).copied() {
                Some(Mark::OnStack) => {
                    let start = stack.iter().position(|&s| s == f).unwrap_or(0);
                    let mut names: Vec<String> =
                        stack.iter().skip(start).map(|&s| name(s)).collect();
                    names.push(name(f));
                    return Some((u, j, names));
                }
                Some(Mark::New) => {
                    if let Some(found) = visit(f, ups, marks, stack) {
                        return Some(found);
                    }
                }
                Some(Mark::Done) | None => {}
            }
        }
        stack.pop();
        if let Some(m) = marks.get_mut(u) {
            *m = Mark::Done;
        }
        None
    }
    let mut marks = vec![Mark::New; upstreams.len()];
    for u in 0..upstreams.len() {
        if marks.get(u) == Some(&Mark::New) {
            let mut stack = Vec::new();
            if let Some((at, j, names)) = visit(u, upstreams, &mut marks, &mut stack) {
                return Err(ConfigError::new(
                    format!("upstreams[{at}].fallbacks[{j}]"),
                    ConfigErrorKind::FallbackCycle(names),
                ));
            }
        }
    }
    Ok(())
}

fn compile_fast_fail(raw: Option<RawFastFail>) -> Result<FastFail, ConfigError> {
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

fn compile_failover(raw: Option<RawFailover>) -> Result<Failover, ConfigError> {
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

fn compile_alerting(r: RawAlerting) -> Result<Alerting, ConfigError> {
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
