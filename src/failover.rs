//! In-request failover: re-sending a request that failed on one upstream to the next
//! admitting fallback, within the same client request.
//!
//! The adapter keeps the request (headers and body), and when the response fails with a
//! reason listed in `failover.on` it calls the next fallback with `dispatch_http_call` and
//! answers the client with that response. This module holds the decisions and the header
//! plumbing, so they are testable without a proxy.

use crate::classifier::{FailureReason, Outcome};
use crate::config::{Config, Failover, Rewrite, UpstreamId};
use crate::routing::candidates;

/// Request headers never copied into a callout: hop-by-hop, framing, and what the filter
/// or Envoy manage.
const DROPPED_REQUEST_HEADERS: [&str; 7] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "x-envoy-expected-rq-timeout-ms",
];

/// Response headers never copied from a callout answer into the reply.
const DROPPED_RESPONSE_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// The header that tells the client a failover happened, e.g. `openai->anthropic`.
pub const FAILOVER_HEADER: &str = "x-ai-cb-failover";

/// Whether a request with this method may be re-sent at all.
pub fn method_eligible(cfg: &Failover, method: &str) -> bool {
    cfg.enabled && cfg.methods.iter().any(|m| m == method)
}

/// Whether a request body of `len` bytes (announced or seen so far) may be kept for a retry.
pub fn body_fits(cfg: &Failover, len: usize) -> bool {
    len <= cfg.max_body_bytes
}

/// Whether this outcome of an attempt triggers a failover.
pub fn triggers(cfg: &Failover, outcome: &Outcome) -> Option<FailureReason> {
    match outcome {
        Outcome::Failure { reason, .. } if cfg.enabled && cfg.on.contains(reason) => Some(*reason),
        _ => None,
    }
}

/// The candidates of `primary`'s chain not yet tried, in order.
pub fn remaining<'a>(
    config: &'a Config,
    primary: UpstreamId,
    tried: &'a [UpstreamId],
) -> impl Iterator<Item = UpstreamId> + 'a {
    candidates(config, primary).filter(move |u| !tried.contains(u))
}

/// `a->b->c` for the upstreams a request went through.
pub fn chain_label(config: &Config, chain: &[UpstreamId]) -> String {
    chain
        .iter()
        .filter_map(|&u| config.upstreams.get(u).map(|x| x.name.as_str()))
        .collect::<Vec<_>>()
        .join("->")
}

/// The original request, as it arrived (before any rewrite).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OriginalRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Headers for a callout carrying `original` to an upstream with `rewrite`, whose body is
/// `body_len` bytes long. Pseudo-headers come first, as the host expects.
pub fn callout_headers(
    original: &[(String, String)],
    rewrite: Option<&Rewrite>,
    route_header: &str,
    cluster: &str,
    body_len: usize,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = original
        .iter()
        .filter(|(k, _)| !DROPPED_REQUEST_HEADERS.contains(&k.as_str()) && k != route_header)
        .cloned()
        .collect();
    let mut set = |name: &str, value: &str| match out.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => out.push((name.to_string(), value.to_string())),
    };
    if let Some(rw) = rewrite {
        if let Some(p) = &rw.path {
            set(":path", p);
        }
        if let Some(h) = &rw.host {
            set(":authority", h);
        }
        for (k, v) in &rw.headers {
            set(k, v);
        }
    }
    set(route_header, cluster);
    set("content-length", &body_len.to_string());
    out.sort_by_key(|(k, _)| !k.starts_with(':'));
    out
}

/// Headers of the reply built from a callout's answer.
pub fn reply_headers(
    callout: &[(String, String)],
    response_header: &str,
    served_by: &str,
    chain: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = callout
        .iter()
        .filter(|(k, _)| {
            !k.starts_with(':')
                && !DROPPED_RESPONSE_HEADERS.contains(&k.as_str())
                && k != response_header
                && k != FAILOVER_HEADER
        })
        .cloned()
        .collect();
    out.push((response_header.to_string(), served_by.to_string()));
    out.push((FAILOVER_HEADER.to_string(), chain.to_string()));
    out
}

/// What a callout that produced no response means: the host gives no status when the call
/// timed out or could not connect.
pub fn callout_failure(elapsed_ms: u64, timeout_ms: u64) -> FailureReason {
    if elapsed_ms + 50 >= timeout_ms {
        FailureReason::Timeout
    } else {
        FailureReason::ConnectFailure
    }
}
