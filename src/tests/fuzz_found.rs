//! Every input a fuzz target (`make fuzz`, tests/fuzz) failed on, run again here on its
//! exact bytes (the files in tests/fuzz/regressions, which `make fuzz-smoke` also replays
//! through the targets). Each test does what the target did, in library terms, and says
//! whether AFL++ found the input or it was made by hand for the target's property.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::default_policy;
use crate::breaker::{Admission, StateKind};
use crate::config::Policy;
use crate::hints::{parse_reset, parse_retry_after, wait_ms, MAX_HINT_MS};
use crate::outcome::{FailureReason, Outcome};
use crate::sse::{Frame, Framer};
use crate::store::breaker_state::decode;

/// `state_codec` input: one byte `n`, `n` bytes of script, then the stored breaker.
fn stored(input: &[u8]) -> &[u8] {
    &input[1 + usize::from(input[0])..]
}

/// `sse_framing` input: the cap (1 + two bytes, little-endian), a chunking seed, the stream.
fn cap_and_stream(input: &[u8]) -> (usize, &[u8]) {
    (
        1 + usize::from(u16::from_le_bytes([input[0], input[1]])),
        &input[3..],
    )
}

/// Found by AFL++ (state_codec, minimized with afl-tmin).
#[test]
fn a_window_at_the_end_of_time_counts_its_calls_without_overflow() {
    // The engine ran at u64::MAX ms with 1 ms buckets: the window's head reached u64::MAX and
    // `totals` computed `head + BUCKETS`, an overflow (a panic with overflow checks, a wrong
    // count without).
    let input = include_bytes!("../../tests/fuzz/regressions/state_codec/window-head-at-u64-max");
    let mut b = decode(stored(input)).expect("the stored breaker decodes");
    let p = Policy {
        window_ms: 1,
        recovery_ms: 1,
        probe_timeout_ms: 1,
        failure_threshold: 1,
        success_threshold: 1,
        half_open_max_requests: 64,
        backoff_multiplier: 100.0,
        max_recovery_ms: 86_400_000,
        recovery_jitter: 0.99,
        ..default_policy()
    };
    b.fit_to(&p);
    let (Admission::Admitted(ticket), _) = b.admit(&p, u64::MAX) else {
        panic!("a closed breaker admits");
    };
    let failure = Outcome::Failure {
        reason: FailureReason::Status5xx,
        retry_after_ms: None,
    };
    let change = b.record(&p, u64::MAX, ticket, failure, 0.5);
    assert_eq!(change.transition.map(|t| t.to), Some(StateKind::Open));
    assert_eq!(b.window.totals(u64::MAX), (1, 1));
}

/// Frames as `(name, data)`, `None` data for an oversized event.
fn frames(f: &mut Framer, chunks: &[&[u8]]) -> Vec<(Option<String>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for c in chunks {
        f.feed(c, &mut |frame| {
            out.push(match frame {
                Frame::Event(e) => (e.name.map(str::to_string), Some(e.data.to_vec())),
                Frame::Oversized { name, .. } => (name.map(str::to_string), None),
            })
        });
    }
    out
}

/// Found by AFL++ (sse_framing, minimized with afl-tmin).
#[test]
fn a_crlf_split_by_an_empty_chunk_is_still_one_line_break() {
    // `data:…\r` | `` | `\n`: the empty chunk forgot the pending CR, so the LF read as a
    // second line break, a blank line, and dispatched an event the stream never ended.
    let input =
        include_bytes!("../../tests/fuzz/regressions/sse_framing/cr-then-empty-chunk-then-lf");
    let (cap, stream) = cap_and_stream(input);
    let (head, lf) = stream.split_at(stream.len() - 1);
    assert_eq!((head.last(), lf), (Some(&b'\r'), &b"\n"[..]));
    let mut whole = Framer::new(cap);
    assert_eq!(frames(&mut whole, &[stream]), vec![]);
    let mut cut = Framer::new(cap);
    assert_eq!(frames(&mut cut, &[head, b"", lf]), vec![]);
    assert!(cut.mid_event() && whole.mid_event());
}

/// Found by AFL++ (sse_framing, minimized with afl-tmin).
#[test]
fn an_event_name_that_lossy_utf8_grows_past_the_cap_drops_the_event() {
    // `event:` with invalid UTF-8: each bad byte becomes a 3-byte U+FFFD, so a 16-byte line
    // made an 18-byte name, held over the 17-byte cap.
    let input =
        include_bytes!("../../tests/fuzz/regressions/sse_framing/lossy-event-name-over-cap");
    let (cap, stream) = cap_and_stream(input);
    assert_eq!(cap, 17);
    let mut f = Framer::new(cap);
    assert_eq!(frames(&mut f, &[stream]), vec![]);
    assert!(f.held_bytes() <= cap, "{} bytes held", f.held_bytes());
    assert_eq!(frames(&mut f, &[b"data: x\n\n"]), vec![(None, None)]);
    assert_eq!(f.held_bytes(), 0);
}

/// Made by hand for the `hints` target's "any number of seconds reads" property: AFL++ did
/// not reach 309 digits in 10^6 executions.
#[test]
fn a_retry_after_past_f64_range_is_the_longest_wait_not_no_hint() {
    // 400 digits parse to infinity, which was taken for unreadable: the breaker then ignored
    // the provider's hint instead of capping it like `Retry-After: 1000000000000`.
    let input = include_bytes!("../../tests/fuzz/regressions/hints/retry-after-400-digits");
    let now = u64::from_le_bytes(input[..8].try_into().expect("8 bytes"));
    let text = std::str::from_utf8(&input[16..]).expect("ASCII");
    let (retry_after, reset) = text.split_once('\n').expect("two values");
    assert_eq!(retry_after.len(), 400);
    assert_eq!(parse_retry_after(retry_after, now), Some(MAX_HINT_MS));
    assert_eq!(parse_reset(retry_after, now), Some(MAX_HINT_MS));
    assert_eq!(
        wait_ms(Some(retry_after), Some(reset), now),
        Some(MAX_HINT_MS)
    );
}
