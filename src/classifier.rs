//! Outcome classifier: turns what Envoy reports about a finished request into
//! success, failure(reason) or ignored, as far as the provider's breaker is concerned.
//!
//! Envoy reports a real upstream answer and its own local replies (upstream timeout 504,
//! connect failure 503, ...) through the same callback; the response flags and code details
//! tell them apart. Client and configuration errors (400, 401, 403, 404, 413, 422, an unknown
//! cluster) are never held against a provider.

use serde::Deserialize;

use crate::config::{FailureConditions, Policy};

/// Why a call counted as a provider failure. The names are the metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// A status listed in `failure_conditions.status_codes` (5xx and Anthropic's 529).
    Status5xx,
    /// The upstream did not answer in time.
    Timeout,
    /// Connecting failed, or the connection was reset before a response.
    ConnectFailure,
    /// 429 Too Many Requests.
    RateLimit,
    /// A successful call slower than `slow_call_duration`.
    Slow,
}

impl FailureReason {
    pub const ALL: [FailureReason; 5] = [
        FailureReason::Status5xx,
        FailureReason::Timeout,
        FailureReason::ConnectFailure,
        FailureReason::RateLimit,
        FailureReason::Slow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Status5xx => "status_5xx",
            FailureReason::Timeout => "timeout",
            FailureReason::ConnectFailure => "connect_failure",
            FailureReason::RateLimit => "rate_limit",
            FailureReason::Slow => "slow",
        }
    }

    /// Stable small number, used by the state encoding.
    pub fn code(self) -> u8 {
        match self {
            FailureReason::Status5xx => 1,
            FailureReason::Timeout => 2,
            FailureReason::ConnectFailure => 3,
            FailureReason::RateLimit => 4,
            FailureReason::Slow => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<FailureReason> {
        FailureReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// What a finished call means for its upstream's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure {
        reason: FailureReason,
        /// How long the provider asked us to stay away (Retry-After or rate-limit reset).
        retry_after_ms: Option<u64>,
    },
    /// Neither: a client or configuration error, or a condition that is switched off.
    Ignored,
}

impl Outcome {
    /// The `outcome` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure { .. } => "failure",
            Outcome::Ignored => "ignored",
        }
    }
}

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
}

/// Client and configuration errors that are never provider failures.
pub const CLIENT_ERRORS: [u16; 6] = [400, 401, 403, 404, 413, 422];

/// What Envoy reported about one finished request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseInfo<'a> {
    /// The HTTP status, if a response (upstream or local) was produced.
    pub status: Option<u16>,
    /// `response.flags`.
    pub flags: u64,
    /// `response.code_details`, e.g. `via_upstream` or `upstream_response_timeout`.
    pub details: Option<&'a str>,
    /// Time from the request being routed to the response headers.
    pub duration_ms: u64,
    /// The `retry-after` header.
    pub retry_after: Option<&'a str>,
    /// A provider rate-limit reset header (`x-ratelimit-reset-requests`,
    /// `anthropic-ratelimit-requests-reset`, ...).
    pub ratelimit_reset: Option<&'a str>,
    /// Current wall-clock time in ms since the Unix epoch, to resolve absolute dates.
    pub now_ms: u64,
}

/// Classifies a finished request against an upstream's policy.
pub fn classify(info: &ResponseInfo<'_>, policy: &Policy) -> Outcome {
    let c = &policy.conditions;
    let outcome = classify_failure(info, c);
    match outcome {
        Outcome::Success => match policy.slow_call_ms {
            Some(slow) if info.duration_ms > slow => Outcome::Failure {
                reason: FailureReason::Slow,
                retry_after_ms: None,
            },
            _ => Outcome::Success,
        },
        other => other,
    }
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
        let wait = retry_after_ms(info);
        return when(c.rate_limit, FailureReason::RateLimit, wait);
    }
    if c.status_codes.contains(&status) {
        return when(true, FailureReason::Status5xx, retry_after_ms(info));
    }
    if CLIENT_ERRORS.contains(&status) || status >= 400 {
        return Outcome::Ignored;
    }
    Outcome::Success
}

/// The longest wait the provider asked for, from `retry-after` or a rate-limit reset header.
pub fn retry_after_ms(info: &ResponseInfo<'_>) -> Option<u64> {
    let a = info
        .retry_after
        .and_then(|v| parse_retry_after(v, info.now_ms));
    let b = info
        .ratelimit_reset
        .and_then(|v| parse_reset(v, info.now_ms));
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// `Retry-After`: delta-seconds (fractions tolerated) or an HTTP-date.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Some(ms) = parse_seconds(v) {
        return Some(ms);
    }
    parse_http_date(v).map(|at| at.saturating_sub(now_ms))
}

/// Rate-limit reset headers: OpenAI's Go-style durations (`1s`, `6m0s`, `20ms`), plain seconds,
/// or Anthropic's RFC 3339 timestamps.
pub fn parse_reset(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    parse_seconds(v)
        .or_else(|| parse_go_duration(v))
        .or_else(|| parse_rfc3339(v).map(|at| at.saturating_sub(now_ms)))
}

fn parse_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let secs: f64 = v.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some((secs * 1000.0).min(u64::MAX as f64 / 2.0) as u64)
}

/// `1h2m3.5s`, `20ms`, `6m0s`.
fn parse_go_duration(v: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * factor;
    }
    if total.is_finite() {
        Some(total as u64)
    } else {
        None
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn epoch_ms(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<u64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + i64::from(h) * 3_600 + i64::from(mi) * 60 + i64::from(s);
    u64::try_from(secs).ok().map(|s| s * 1000)
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// `2024-05-01T12:00:30Z` (fractional seconds and numeric offsets tolerated).
fn parse_rfc3339(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(10).map(|c| c | 0x20) != Some(b't') {
        return None;
    }
    let base = epoch_ms(
        num(v.get(0..4)?)?,
        num(v.get(5..7)?)?,
        num(v.get(8..10)?)?,
        num(v.get(11..13)?)?,
        num(v.get(14..16)?)?,
        num(v.get(17..19)?)?,
    )?;
    let mut rest = v.get(19..)?;
    let mut frac_ms = 0u64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        let f: f64 = num(&format!("0.{}", &r[..digits]))?;
        frac_ms = (f * 1000.0) as u64;
        rest = &r[digits..];
    }
    let offset_ms: i64 = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let h: i64 = num(&o[1..3])?;
            let m: i64 = num(&o[4..6])?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (h * 3_600_000 + m * 60_000)
        }
        _ => return None,
    };
    let ms = i64::try_from(base + frac_ms).ok()? - offset_ms;
    u64::try_from(ms).ok()
}

/// IMF-fixdate: `Wed, 21 Oct 2015 07:28:00 GMT`.
fn parse_http_date(v: &str) -> Option<u64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? as u32 + 1;
    let hms: Vec<&str> = parts[4].split(':').collect();
    if hms.len() != 3 {
        return None;
    }
    epoch_ms(
        num(parts[3])?,
        month,
        num(parts[1])?,
        num(hms[0])?,
        num(hms[1])?,
        num(hms[2])?,
    )
}
