//! The routing decision: which upstream a request belongs to, and which one serves it.
//!
//! Routes pick a request's primary upstream (first match wins). The primary and then its
//! fallbacks, in order (its compiled chain), are offered to their breakers; the first that
//! admits serves. When none admits, the request is answered locally and the earliest
//! `retry_at` becomes the client's `Retry-After`. Matching on the JSON `model` needs the body,
//! so the matcher says when it cannot decide on headers alone.

use crate::breaker::{Admission, Ticket};
use crate::config::{Config, Route, UpstreamId};

/// The parts of a request that routes look at.
pub struct RequestView<'a> {
    pub path: &'a str,
    /// `:authority`, possibly with a port (empty when no route matches on the host).
    pub host: &'a str,
    /// Looks up a request header by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// Result of matching a request against the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch {
    Upstream(UpstreamId),
    /// A route that matches on `model` is the first candidate: read the body, then match again.
    NeedsBody,
    /// No route matches: the request passes through untouched.
    NoRoute,
}

/// What the body said about `model`, once it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelLookup<'a> {
    /// The body has not been read.
    Unknown,
    /// The body was read; `None` when it has no string `model` field (or is not JSON).
    Known(Option<&'a str>),
}

/// Finds the primary upstream for a request.
pub fn match_route(config: &Config, req: &RequestView<'_>, model: ModelLookup<'_>) -> RouteMatch {
    matched_route(config, req, model).0
}

/// [`match_route`], with the route that matched when one did.
pub fn matched_route<'c>(
    config: &'c Config,
    req: &RequestView<'_>,
    model: ModelLookup<'_>,
) -> (RouteMatch, Option<&'c Route>) {
    for route in &config.routes {
        if !matches_headers(route, req) {
            continue;
        }
        match (&route.model, model) {
            (None, _) => return (RouteMatch::Upstream(route.upstream), Some(route)),
            (Some(_), ModelLookup::Unknown) => return (RouteMatch::NeedsBody, None),
            (Some(want), ModelLookup::Known(Some(got))) if want == got => {
                return (RouteMatch::Upstream(route.upstream), Some(route))
            }
            (Some(_), ModelLookup::Known(_)) => {}
        }
    }
    (RouteMatch::NoRoute, None)
}

fn matches_headers(route: &Route, req: &RequestView<'_>) -> bool {
    if let Some(prefix) = &route.path_prefix {
        if !req.path.starts_with(prefix.as_str()) {
            return false;
        }
    }
    if let Some(host) = &route.host {
        if !host_matches(host, req.host) {
            return false;
        }
    }
    route
        .headers
        .iter()
        .all(|(name, value)| (req.header)(name).as_deref() == Some(value.as_str()))
}

/// Case-insensitive host match; a route host without a port ignores the request's port.
fn host_matches(want: &str, authority: &str) -> bool {
    if want.eq_ignore_ascii_case(authority) {
        return true;
    }
    if want.contains(':') {
        return false;
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => want.eq_ignore_ascii_case(h),
        _ => false,
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send to `upstream`; `skipped` lists the candidates before it that were open.
    Serve {
        upstream: UpstreamId,
        ticket: Ticket,
        skipped: Vec<UpstreamId>,
    },
    /// Nothing admitted; the earliest breaker may probe again at `retry_at_ms`.
    AllOpen {
        retry_at_ms: u64,
        skipped: Vec<UpstreamId>,
    },
}

/// Offers the request to each candidate's breaker in turn (`admit` asks one breaker).
pub fn plan(
    candidates: impl IntoIterator<Item = UpstreamId>,
    mut admit: impl FnMut(UpstreamId) -> Admission,
) -> Plan {
    let mut skipped = Vec::new();
    let mut retry_at_ms = u64::MAX;
    for u in candidates {
        match admit(u) {
            Admission::Admitted(ticket) => {
                return Plan::Serve {
                    upstream: u,
                    ticket,
                    skipped,
                }
            }
            Admission::Rejected { retry_at_ms: at } => {
                retry_at_ms = retry_at_ms.min(at);
                skipped.push(u);
            }
        }
    }
    Plan::AllOpen {
        retry_at_ms,
        skipped,
    }
}

/// Whole seconds from `now` until `at`, rounded up, at least 1: the `Retry-After` value.
pub fn retry_after_secs(now_ms: u64, at_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}
