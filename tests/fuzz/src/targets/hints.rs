//! `hints`: `Retry-After` and rate-limit reset values of any bytes never panic and never ask
//! for more than `MAX_HINT_MS`; a later clock never asks for a longer wait; a plain number of
//! seconds always reads (capped, however many digits); `wait_ms` is the longer of the two;
//! and the timestamps the filter writes (`format_rfc3339`), and HTTP-dates, read back to the
//! wait they stand for.
//!
//! Input: 8 bytes of "now" (ms, little-endian), 8 bytes of a later offset, then the
//! `Retry-After` value, a newline, and the reset value (lossy UTF-8, as header values may be
//! any bytes).

use std::time::{Duration, UNIX_EPOCH};

use ai_circuit_breaker::hints::{
    format_rfc3339, parse_reset, parse_retry_after, wait_ms, MAX_HINT_MS,
};

/// The last millisecond `format_rfc3339` writes as itself (9999-12-31T23:59:59.999Z).
const MAX_FORMATTED_MS: u64 = 253_402_300_799_999;

pub fn run(input: &[u8]) {
    let Some((now, rest)) = take_u64(input) else {
        return;
    };
    let Some((later, text)) = take_u64(rest) else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let (retry_after, reset) = text.split_once('\n').unwrap_or((&text, ""));
    let later_now = now.saturating_add(later % (400 * 86_400_000));

    let a = parse_retry_after(retry_after, now);
    let b = parse_reset(reset, now);
    for (what, v) in [("retry-after", a), ("reset", b)] {
        assert!(
            v.is_none_or(|ms| ms <= MAX_HINT_MS),
            "{what} {v:?} over the cap"
        );
    }
    let expected = match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    assert_eq!(wait_ms(Some(retry_after), Some(reset), now), expected);

    // A later clock: the same or a shorter wait (a date gets closer, seconds stay).
    let a2 = parse_retry_after(retry_after, later_now);
    let b2 = parse_reset(reset, later_now);
    assert_eq!(
        a2.is_some(),
        a.is_some(),
        "retry-after readable at one time only"
    );
    assert_eq!(b2.is_some(), b.is_some(), "reset readable at one time only");
    assert!(a2 <= a, "retry-after {a:?} grew to {a2:?} as time passed");
    assert!(b2 <= b, "reset {b:?} grew to {b2:?} as time passed");

    // Delta-seconds of any length read, capped.
    for v in [retry_after.trim(), reset.trim()] {
        if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
            let secs: f64 = v.parse().unwrap_or(f64::INFINITY);
            let ms = (secs * 1000.0).min(MAX_HINT_MS as f64) as u64;
            assert_eq!(parse_retry_after(v, now), Some(ms), "Retry-After {v:?}");
            assert_eq!(parse_reset(v, now), Some(ms), "reset {v:?}");
        }
    }

    // What the filter writes reads back: RFC 3339 to the millisecond, HTTP-dates to the second.
    let at = later_now.min(MAX_FORMATTED_MS);
    let stamp = format_rfc3339(later_now);
    let back = humantime::parse_rfc3339(&stamp).expect("format_rfc3339 wrote an unreadable time");
    assert_eq!(back, UNIX_EPOCH + Duration::from_millis(at), "{stamp}");
    let wait = at.saturating_sub(now).min(MAX_HINT_MS);
    assert_eq!(parse_reset(&stamp, now), Some(wait), "reset {stamp}");
    let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(at / 1000));
    let wait_s = (at / 1000 * 1000).saturating_sub(now).min(MAX_HINT_MS);
    assert_eq!(
        parse_retry_after(&http, now),
        Some(wait_s),
        "Retry-After {http}"
    );
}

fn take_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = b.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}
