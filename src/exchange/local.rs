//! Answers the filter gives itself, without an upstream: the health endpoint, and the
//! fast-fail reply when no upstream admits a request.

use super::event::Reply;
use crate::config::Config;
use crate::routing::retry_after_secs;

fn json_headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    std::iter::once(("content-type", "application/json"))
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The fast-fail reply: the configured status, `Retry-After` until the earliest breaker
/// lets a probe through, and an OpenAI-style JSON error.
pub fn all_open(config: &Config, now_ms: u64, retry_at_ms: u64) -> Reply {
    let retry_after = retry_after_secs(now_ms, retry_at_ms).to_string();
    let body = serde_json::json!({
        "error": {
            "message": config.fast_fail.message,
            "type": "circuit_open",
            "code": "circuit_open"
        }
    })
    .to_string();
    Reply {
        status: config.fast_fail.status,
        headers: json_headers(&[("retry-after", &retry_after)]),
        body: body.into_bytes(),
    }
}

/// The reply to a request whose body the filter must rewrite for the only upstreams that
/// could serve it, but cannot: over `body_buffer_limit`, or compressed.
pub fn body_not_rewritable(config: &Config, why: &str) -> Reply {
    too_large(format!(
        "{why}: the fallback that can serve it needs its model rewritten, and the proxy \
         rewrites uncompressed bodies of at most {} bytes (body_buffer_limit)",
        config.body_buffer_limit
    ))
}

/// The reply to a request whose body outgrew Envoy's buffer while the filter held it (to
/// read or rewrite `model`): Envoy stopped reading it, so it cannot be routed at all.
pub fn body_over_buffer(config: &Config) -> Reply {
    too_large(format!(
        "the request body is over the limit: the proxy holds at most {} bytes of a request \
         body (body_buffer_limit, within Envoy's per_connection_buffer_limit_bytes) to route \
         it on its model or rewrite it",
        config.body_buffer_limit
    ))
}

fn too_large(message: String) -> Reply {
    let body = serde_json::json!({
        "error": {"message": message, "type": "request_too_large", "code": "request_too_large"}
    })
    .to_string();
    Reply {
        status: 413,
        headers: json_headers(&[]),
        body: body.into_bytes(),
    }
}

/// The health endpoint's answer to `method`: the JSON for GET and HEAD (Envoy drops the
/// body of a local reply to HEAD and keeps its length), 405 otherwise.
pub fn health(method: &str, render: impl FnOnce() -> String) -> Reply {
    match method {
        "GET" | "HEAD" => Reply {
            status: 200,
            headers: json_headers(&[("cache-control", "no-store")]),
            body: render().into_bytes(),
        },
        _ => Reply {
            status: 405,
            headers: json_headers(&[("allow", "GET, HEAD")]),
            body: br#"{"error":{"message":"only GET and HEAD are allowed","type":"method_not_allowed"}}"#
                .to_vec(),
        },
    }
}
