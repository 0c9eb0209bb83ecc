//! In-request failover plumbing: which failures trigger it, the request a fallback receives,
//! and the reply the client gets from the fallback's answer.
//!
//! The decisions of *when* live in the exchange's phases; this module holds the rules and
//! the header plumbing, so each is testable on its own.

use crate::config::{Config, Failover, Rewrite, UpstreamId};
use crate::outcome::{FailureReason, Outcome};

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

/// Response headers never copied from a callout answer into the reply: framing and
/// hop-by-hop headers (the reply is framed anew by its length, so a `trailer` announcement
/// would be a lie).
const DROPPED_RESPONSE_HEADERS: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "trailer",
];

/// The header that tells the client a failover happened, e.g. `openai->anthropic`.
pub const FAILOVER_HEADER: &str = "x-ai-cb-failover";

/// Whether a request with this method may be re-sent at all.
pub fn method_eligible(cfg: &Failover, method: &str) -> bool {
    cfg.enabled && cfg.methods.iter().any(|m| m == method)
}

/// Whether this outcome of an attempt triggers a failover.
pub fn triggers(cfg: &Failover, outcome: &Outcome) -> Option<FailureReason> {
    match outcome {
        Outcome::Failure { reason, .. } if cfg.enabled && cfg.on.contains(reason) => Some(*reason),
        _ => None,
    }
}

/// `a->b->c` for the upstreams a request went through.
///
/// (Written name by name: joining a `Vec<&str>` linked a second copy of `join` (569 bytes of wasm)
/// beside the one for `String`s.)
pub fn chain_label(config: &Config, chain: &[UpstreamId]) -> String {
    let mut label = String::new();
    for (i, &u) in chain.iter().enumerate() {
        if i > 0 {
            label.push_str("->");
        }
        label.push_str(&config.upstream(u).name);
    }
    label
}

/// Sets `name` to `value` in a header list, replacing an existing entry.
pub fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    match headers.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => headers.push((name.to_string(), value.to_string())),
    }
}

/// Headers for a callout carrying the client's request (`original`) to an upstream with
/// `rewrite`, whose body is `body_len` bytes long. Pseudo-headers come first, as the host
/// expects.
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
    for (name, value) in rewrite.into_iter().flat_map(Rewrite::header_changes) {
        set_header(&mut out, name, value);
    }
    set_header(&mut out, route_header, cluster);
    set_header(&mut out, "content-length", &body_len.to_string());
    // Pseudo-headers first, each group in its order (a stable partition; a generic sort
    // cost 3.3 KB of wasm).
    let (mut pseudo, rest): (Vec<_>, Vec<_>) =
        out.into_iter().partition(|(k, _)| k.starts_with(':'));
    pseudo.extend(rest);
    pseudo
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
    if elapsed_ms.saturating_add(50) >= timeout_ms {
        FailureReason::Timeout
    } else {
        FailureReason::ConnectFailure
    }
}
