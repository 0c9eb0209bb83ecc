//! Time hints in provider headers, and the timestamps the filter writes.
//!
//! Providers say how long to stay away in several formats: `Retry-After` as delta-seconds or an
//! HTTP-date (RFC 9110), OpenAI's `x-ratelimit-reset-requests` as Go-style durations (`1s`,
//! `6m0s`, `20ms`), Anthropic's `anthropic-ratelimit-requests-reset` as RFC 3339 timestamps.
//! The parsers are small and pure (the `httpdate` and `humantime` crates did this before, for
//! ~14 KB of the wasm budget; the fuzz target keeps them as its oracle): this module decides
//! which format applies and turns the answer into milliseconds from now. Nothing here panics:
//! an unreadable value is `None`.

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
    let at_ms = date::parse_http_date_ms(v)?;
    Some(at_ms.saturating_sub(now_ms).min(MAX_HINT_MS))
}

/// Rate-limit reset headers: plain seconds, Go-style durations, or RFC 3339 timestamps.
pub fn parse_reset(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Some(ms) = parse_seconds(v) {
        return Some(ms);
    }
    if v.bytes().next().is_some_and(|b| b.is_ascii_digit()) && !v.contains(['-', ':', ' ']) {
        return parse_duration_ms(v);
    }
    let (local, offset_ms) = split_offset(v);
    let at_ms = parse_rfc3339_ms(local)?;
    let utc = i128::from(at_ms) - i128::from(offset_ms);
    let wait = (utc - i128::from(now_ms)).clamp(0, i128::from(MAX_HINT_MS));
    u64::try_from(wait).ok()
}

/// Splits a numeric UTC offset (`+02:00`) off an RFC 3339 timestamp, which `humantime`
/// is read in UTC only: `("2024-05-01T14:00:30", 7_200_000)`.
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

/// A Go-style duration (`6m0s`, `20ms`, `1h2m3.5s`; also `d`, `us`/`µs`, `ns`, and spaces
/// between terms) in milliseconds, capped at [`MAX_HINT_MS`].
fn parse_duration_ms(v: &str) -> Option<u64> {
    let mut rest = v.trim_start();
    if rest.is_empty() {
        return None;
    }
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, tail) = rest.split_at_checked(int_len)?;
        let (frac, tail) = match tail.strip_prefix('.') {
            Some(t) => {
                let n = t.bytes().take_while(u8::is_ascii_digit).count();
                t.split_at_checked(n)?
            }
            None => ("", tail),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at_checked(unit_len)?;
        let unit_ns: u128 = match unit {
            "ns" | "nsec" => 1,
            "us" | "µs" | "usec" => 1_000,
            "ms" | "msec" => 1_000_000,
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000_000,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000_000,
            "d" | "day" | "days" => 86_400_000_000_000,
            _ => return None,
        };
        total_ns = total_ns.saturating_add(digits(int).saturating_mul(unit_ns));
        // The fraction, to the nanosecond: digits past the unit's precision are dropped.
        let mut scale = unit_ns;
        for b in frac.bytes() {
            scale /= 10;
            total_ns = total_ns.saturating_add(u128::from(b - b'0') * scale);
        }
        rest = tail.trim_start();
    }
    let ms = total_ns / 1_000_000;
    Some(u64::try_from(ms.min(u128::from(MAX_HINT_MS))).unwrap_or(MAX_HINT_MS))
}

/// A run of ASCII digits as a number, saturating.
fn digits(s: &str) -> u128 {
    s.bytes().fold(0u128, |n, b| {
        n.saturating_mul(10).saturating_add(u128::from(b - b'0'))
    })
}

/// An RFC 3339 timestamp without its offset (`2024-05-01T12:00:30.250Z`, `Z` optional, `T`,
/// `t` or a space between date and time) as milliseconds since the Unix epoch; None before
/// 1970 or after 9999.
fn parse_rfc3339_ms(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    let (date, sep, time) = (v.get(..10)?, *b.get(10)?, v.get(11..)?);
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let d = date.as_bytes();
    if d.get(4) != Some(&b'-') || d.get(7) != Some(&b'-') {
        return None;
    }
    let (year, month, day) = (
        num(date.get(..4)?)?,
        num(date.get(5..7)?)?,
        num(date.get(8..10)?)?,
    );
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix('z'))
        .unwrap_or(time);
    let t = time.as_bytes();
    if t.get(2) != Some(&b':') || t.get(5) != Some(&b':') {
        return None;
    }
    let (hour, min, sec) = (
        num(time.get(..2)?)?,
        num(time.get(3..5)?)?,
        num(time.get(6..8)?)?,
    );
    let millis = match time.get(8..)? {
        "" => 0,
        frac => {
            let f = frac.strip_prefix('.')?;
            if f.is_empty() || f.len() > 9 || !f.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            f.bytes()
                .take(3)
                .chain(std::iter::repeat(b'0'))
                .take(3)
                .fold(0, |n, c| n * 10 + u64::from(c - b'0'))
        }
    };
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = date::days_since_epoch(year, month, day)?;
    Some((days * 86_400 + hour * 3_600 + min * 60 + sec) * 1000 + millis)
}

/// Exactly `s.len()` ASCII digits as a number.
fn num(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0, |n, c| n * 10 + u64::from(c - b'0')))
}

/// The last millisecond formatted (9999-12-31T23:59:59.999Z).
const MAX_FORMATTED_MS: u64 = 253_402_300_799_999;

/// Milliseconds since the Unix epoch as `2026-11-26T22:01:29.123Z` (clamped to year 9999).
pub fn format_rfc3339(ms: u64) -> String {
    use std::fmt::Write;
    let ms = ms.min(MAX_FORMATTED_MS);
    let secs = ms / 1000;
    let (year, month, day) = date::civil(secs / 86_400);
    let s = secs % 86_400;
    let mut out = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3_600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    );
    out
}

/// Calendar arithmetic (proleptic Gregorian, UTC) and the HTTP-date formats of RFC 9110.
mod date {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const LONG_DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];

    fn is_leap(y: u64) -> bool {
        y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
    }

    fn month_days(y: u64, m: u64) -> u64 {
        match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Days from 1970-01-01 to a valid date in 1970..=9999, else None.
    pub(super) fn days_since_epoch(y: u64, m: u64, d: u64) -> Option<u64> {
        if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > month_days(y, m) {
            return None;
        }
        // Howard Hinnant's days_from_civil, shifted so that years start in March.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y / 400;
        let yoe = y % 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        (era * 146_097 + doe).checked_sub(719_468)
    }

    /// The date `days` after 1970-01-01: (year, month, day).
    pub(super) fn civil(days: u64) -> (u64, u64, u64) {
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = era * 400 + yoe + u64::from(m <= 2);
        (y, m, d)
    }

    fn month(s: &str) -> Option<u64> {
        MONTHS.iter().position(|m| *m == s).map(|i| i as u64 + 1)
    }

    /// `HH:MM:SS` as seconds of the day.
    fn clock(s: &str) -> Option<u64> {
        let b = s.as_bytes();
        if s.len() != 8 || b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
            return None;
        }
        let (h, m, sec) = (
            super::num(s.get(..2)?)?,
            super::num(s.get(3..5)?)?,
            super::num(s.get(6..8)?)?,
        );
        (h < 24 && m < 60 && sec < 60).then_some(h * 3_600 + m * 60 + sec)
    }

    /// An HTTP-date (RFC 9110 §5.6.7) as milliseconds since the Unix epoch: IMF-fixdate
    /// (`Sun, 06 Nov 1994 08:49:37 GMT`), or the obsolete RFC 850 (`Sunday, 06-Nov-94
    /// 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms. The weekday must match
    /// the date; years 1970..=9999.
    pub(super) fn parse_http_date_ms(v: &str) -> Option<u64> {
        let (wday, y, m, d, time) = if let Some((wd, rest)) = v.split_once(", ") {
            if let Some(i) = DAYS.iter().position(|x| *x == wd) {
                // IMF-fixdate: `06 Nov 1994 08:49:37 GMT`.
                let b = rest.as_bytes();
                if rest.len() != 24 || b.get(2) != Some(&b' ') || b.get(6) != Some(&b' ') {
                    return None;
                }
                if b.get(11) != Some(&b' ') || rest.get(20..)? != " GMT" {
                    return None;
                }
                let d = super::num(rest.get(..2)?)?;
                let m = month(rest.get(3..6)?)?;
                let y = super::num(rest.get(7..11)?)?;
                (i, y, m, d, rest.get(12..20)?)
            } else {
                // RFC 850: `06-Nov-94 08:49:37 GMT`.
                let i = LONG_DAYS.iter().position(|x| *x == wd)?;
                let b = rest.as_bytes();
                if rest.len() != 22 || b.get(2) != Some(&b'-') || b.get(6) != Some(&b'-') {
                    return None;
                }
                if b.get(9) != Some(&b' ') || rest.get(18..)? != " GMT" {
                    return None;
                }
                let d = super::num(rest.get(..2)?)?;
                let m = month(rest.get(3..6)?)?;
                let yy = super::num(rest.get(7..9)?)?;
                let y = if yy < 70 { 2000 + yy } else { 1900 + yy };
                (i, y, m, d, rest.get(10..18)?)
            }
        } else {
            // asctime: `Sun Nov  6 08:49:37 1994`.
            let b = v.as_bytes();
            if v.len() != 24 || b.get(3) != Some(&b' ') || b.get(7) != Some(&b' ') {
                return None;
            }
            if b.get(10) != Some(&b' ') || b.get(19) != Some(&b' ') {
                return None;
            }
            let wd = v.get(..3)?;
            let i = DAYS.iter().position(|x| *x == wd)?;
            let m = month(v.get(4..7)?)?;
            let day = v.get(8..10)?;
            let d = super::num(day.strip_prefix(' ').unwrap_or(day))?;
            let y = super::num(v.get(20..24)?)?;
            (i, y, m, d, v.get(11..19)?)
        };
        let days = days_since_epoch(y, m, d)?;
        // 1970-01-01 was a Thursday (index 3).
        if (days + 3) % 7 != wday as u64 {
            return None;
        }
        Some((days * 86_400 + clock(time)?) * 1000)
    }
}
