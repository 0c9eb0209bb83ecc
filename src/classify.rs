//! Outcome classification: turns what Envoy reports about one attempt into success,
//! failure(reason) or ignored, as far as that upstream's breaker is concerned.
//!
//! Envoy reports a real upstream answer and its own local replies (upstream timeout 504,
//! connect failure 503, ...) through the same callback; the response flags and code details
//! tell them apart. The rule for statuses: 429 is `rate_limit`; a status listed in
//! `failure_conditions.status_codes` is `status_5xx`; every other status of 400 or more is
//! the client's or the configuration's business (400, 401, 403, 404, 413, 422, an unlisted
//! 501, ...) and is ignored; anything below 400 is a success.

use crate::config::{FailureConditions, Policy};
use crate::hints;
use crate::outcome::{FailureReason, Outcome};

/// Envoy response flag bits (`response.flags`), from Envoy's `StreamInfo::CoreResponseFlag`.
pub mod flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4;
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10;
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20;
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40;
    pub const UPSTREAM_OVERFLOW: u64 = 0x80;
    pub const NO_ROUTE_FOUND: u64 = 0x100;
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: u64 = 1 << 15;
    pub const NO_CLUSTER_FOUND: u64 = 1 << 24;
    pub const STREAM_IDLE_TIMEOUT: u64 = 0x1_0000;
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000;
    /// The upstream went away mid-answer: remote reset, connection termination, protocol
    /// error (a cut chunked body).
    pub const UPSTREAM_RESET_ANY: u64 =
        UPSTREAM_REMOTE_RESET | UPSTREAM_CONNECTION_TERMINATION | UPSTREAM_PROTOCOL_ERROR;
}

/// What Envoy reported about one attempt, as far as classification needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseInfo<'a> {
    /// The HTTP status, if a response (upstream or local) was produced.
    pub status: Option<u16>,
    /// `response.flags`.
    pub flags: u64,
    /// `response.code_details`, e.g. `via_upstream` or `upstream_response_timeout`.
    pub details: Option<&'a str>,
    /// Time from the attempt being sent to its response headers.
    pub duration_ms: u64,
    /// The `retry-after` header.
    pub retry_after: Option<&'a str>,
    /// A provider rate-limit reset header (see [`hints::RATELIMIT_RESET_HEADERS`]).
    pub ratelimit_reset: Option<&'a str>,
    /// Current wall-clock time in ms since the Unix epoch, to resolve absolute dates.
    pub now_ms: u64,
}

/// Classifies an attempt against its upstream's policy.
pub fn classify(info: &ResponseInfo<'_>, policy: &Policy) -> Outcome {
    match classify_failure(info, &policy.conditions) {
        Outcome::Success => match policy.slow_call_ms {
            Some(slow) if info.duration_ms > slow => Outcome::failure(FailureReason::Slow),
            _ => Outcome::Success,
        },
        other => other,
    }
}

/// A success with no header worth reading: what the hot path can decide from the status alone.
pub fn is_plain_success(status: Option<u16>, policy: &Policy) -> bool {
    matches!(status, Some(s) if s < 400) && policy.slow_call_ms.is_none()
}

fn when(enabled: bool, reason: FailureReason, retry_after_ms: Option<u64>) -> Outcome {
    if enabled {
        Outcome::Failure {
            reason,
            retry_after_ms,
        }
    } else {
        Outcome::Ignored
    }
}

fn classify_failure(info: &ResponseInfo<'_>, c: &FailureConditions) -> Outcome {
    let details = info.details.unwrap_or("");
    // Configuration problems on our side: never the provider's fault.
    if info.flags & (flags::NO_CLUSTER_FOUND | flags::NO_ROUTE_FOUND) != 0
        || details == "cluster_not_found"
        || details == "route_not_found"
    {
        return Outcome::Ignored;
    }
    if info.flags & flags::UPSTREAM_REQUEST_TIMEOUT != 0 || details.contains("timeout") {
        return when(c.timeout, FailureReason::Timeout, None);
    }
    let connect_flags = flags::NO_HEALTHY_UPSTREAM
        | flags::UPSTREAM_REMOTE_RESET
        | flags::UPSTREAM_CONNECTION_FAILURE
        | flags::UPSTREAM_CONNECTION_TERMINATION
        | flags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
    if info.flags & connect_flags != 0 || details.starts_with("upstream_reset") {
        return when(c.connect_failure, FailureReason::ConnectFailure, None);
    }
    if info.flags & flags::UPSTREAM_OVERFLOW != 0 {
        // Envoy's own connection-pool limit, not the provider: do not hold it against them.
        return Outcome::Ignored;
    }
    let Some(status) = info.status else {
        return Outcome::Ignored;
    };
    if status == 429 {
        return when(c.rate_limit, FailureReason::RateLimit, wait_ms(info));
    }
    if c.status_codes.contains(&status) {
        return when(true, FailureReason::Status5xx, wait_ms(info));
    }
    if status >= 400 {
        return Outcome::Ignored;
    }
    Outcome::Success
}

/// Envoy's own answer to a callout it could not complete, recognized by its shape: the
/// async client's router replies locally with a plain-text 503 or 504 and without the
/// `x-envoy-upstream-service-time` header every upstream answer carries. Returns the
/// response flags and code details Envoy would report for a routed request that failed the
/// same way, so both paths are classified alike.
pub fn callout_local_reply(
    status: Option<u16>,
    from_upstream: bool,
    body: &[u8],
) -> Option<(u64, &'static str)> {
    if from_upstream {
        return None;
    }
    match status? {
        504 if body.starts_with(b"upstream request timeout") => {
            Some((flags::UPSTREAM_REQUEST_TIMEOUT, "upstream_response_timeout"))
        }
        503 if body.starts_with(b"upstream connect error or disconnect/reset before headers") => {
            Some((
                flags::UPSTREAM_CONNECTION_FAILURE,
                "upstream_reset_before_response_started{connection_failure}",
            ))
        }
        503 if body.starts_with(b"no healthy upstream") => {
            Some((flags::NO_HEALTHY_UPSTREAM, "no_healthy_upstream"))
        }
        _ => None,
    }
}

/// The header Envoy's router adds to every answer that came from an upstream.
pub const UPSTREAM_TIME_HEADER: &str = "x-envoy-upstream-service-time";

/// The longest wait the provider asked for, from `retry-after` or a rate-limit reset header.
pub fn wait_ms(info: &ResponseInfo<'_>) -> Option<u64> {
    hints::wait_ms(info.retry_after, info.ratelimit_reset, info.now_ms)
}
