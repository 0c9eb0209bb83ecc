//! Time hints in provider headers, and the timestamps the filter writes.
//!
//! Providers say how long to stay away in several formats: `Retry-After` as delta-seconds or an
//! HTTP-date (RFC 9110), OpenAI's `x-ratelimit-reset-requests` as Go-style durations (`1s`,
//! `6m0s`, `20ms`), Anthropic's `anthropic-ratelimit-requests-reset` as RFC 3339 timestamps.
//! Parsing is delegated to `httpdate` (IMF-fixdate and the obsolete HTTP-date forms) and
//! `humantime` (durations and RFC 3339); this module only decides which applies and turns the
//! answer into milliseconds from now. Nothing here panics: an unreadable value is `None`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The rate-limit reset headers the filter reads, in order of preference.
pub const RATELIMIT_RESET_HEADERS: [&str; 2] = [
    "x-ratelimit-reset-requests",
    "anthropic-ratelimit-requests-reset",
];

/// Longest wait a hint may ask for; anything beyond is treated as this (one day).
pub const MAX_HINT_MS: u64 = 86_400_000;

/// The longest wait asked for by a `Retry-After` value and a rate-limit reset value.
pub fn wait_ms(retry_after: Option<&str>, reset: Option<&str>, now_ms: u64) -> Option<u64> {
    let a = retry_after.and_then(|v| parse_retry_after(v, now_ms));
    let b = reset.and_then(|v| parse_reset(v, now_ms));
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
    let at = httpdate::parse_http_date(v).ok()?;
    Some(until(at, now_ms))
}

/// Rate-limit reset headers: plain seconds, Go-style durations, or RFC 3339 timestamps.
pub fn parse_reset(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Some(ms) = parse_seconds(v) {
        return Some(ms);
    }
    if v.bytes().next().is_some_and(|b| b.is_ascii_digit()) && !v.contains(['-', ':', ' ']) {
        let d = humantime::parse_duration(v).ok()?;
        return Some(clamp(d));
    }
    let (local, offset_ms) = split_offset(v);
    let at = humantime::parse_rfc3339_weak(local).ok()?;
    let at_ms = at.duration_since(UNIX_EPOCH).map_or(0, clamp_epoch);
    let utc = i128::from(at_ms) - i128::from(offset_ms);
    let wait = (utc - i128::from(now_ms)).clamp(0, i128::from(MAX_HINT_MS));
    u64::try_from(wait).ok()
}

/// Splits a numeric UTC offset (`+02:00`) off an RFC 3339 timestamp, which `humantime`
/// reads only in UTC: `("2024-05-01T14:00:30", 7_200_000)`.
fn split_offset(v: &str) -> (&str, i64) {
    let Some(at) = v.len().checked_sub(6) else {
        return (v, 0);
    };
    let (Some(local), Some(tail)) = (v.get(..at), v.get(at..)) else {
        return (v, 0);
    };
    let b = tail.as_bytes();
    let sign = match b.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return (v, 0),
    };
    let (Some(h), Some(m)) = (tail.get(1..3), tail.get(4..6)) else {
        return (v, 0);
    };
    match (h.parse::<i64>(), m.parse::<i64>(), b.get(3)) {
        (Ok(h), Ok(m), Some(b':')) if local.contains('T') || local.contains('t') => {
            (local, sign * (h * 3_600_000 + m * 60_000))
        }
        _ => (v, 0),
    }
}

/// Non-negative decimal seconds, e.g. `2` or `0.5`.
fn parse_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    // Digits past f64's range read as infinity: that is a wait over the cap like any other.
    let secs: f64 = v.parse().ok()?;
    if secs.is_nan() {
        return None;
    }
    Some((secs * 1000.0).min(MAX_HINT_MS as f64) as u64)
}

fn clamp(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).map_or(MAX_HINT_MS, |ms| ms.min(MAX_HINT_MS))
}

/// Milliseconds from `now_ms` until `at` (0 for a time in the past), capped.
fn until(at: SystemTime, now_ms: u64) -> u64 {
    let at_ms = at.duration_since(UNIX_EPOCH).map_or(0, clamp_epoch);
    at_ms.saturating_sub(now_ms).min(MAX_HINT_MS)
}

fn clamp_epoch(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The last millisecond `humantime` can format (9999-12-31T23:59:59.999Z).
const MAX_FORMATTED_MS: u64 = 253_402_300_799_999;

/// Milliseconds since the Unix epoch as `2026-11-26T22:01:29.123Z` (clamped to year 9999).
pub fn format_rfc3339(ms: u64) -> String {
    use std::fmt::Write;
    let t = UNIX_EPOCH
        .checked_add(Duration::from_millis(ms.min(MAX_FORMATTED_MS)))
        .unwrap_or(UNIX_EPOCH);
    let mut out = String::with_capacity(24);
    // Formatting fails only past year 9999, excluded above; never panic on it anyway.
    let _ = write!(out, "{}", humantime::format_rfc3339_millis(t));
    out
}
