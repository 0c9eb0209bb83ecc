#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::seed_policy;
use crate::breaker::*;
use crate::classifier::FailureReason;
use crate::state_codec::*;

fn half_open_sample() -> Breaker {
    let p = seed_policy();
    let mut b = Breaker::new(&p);
    b.window.record(1_000, true);
    b.window.record(4_000, false);
    b.state = State::HalfOpen {
        since_ms: 1_700_000_000_000,
        successes: 1,
        probes: vec![Probe {
            id: 41,
            started_ms: 1_700_000_000_500,
        }],
    };
    b.reopens = 3;
    b.outage_since_ms = Some(1_699_999_000_000);
    b.last_trip = Some(Trip {
        rule: TripRule::Probe,
        reason: FailureReason::Timeout,
    });
    b.next_probe_id = 42;
    b
}

#[test]
fn encoding_round_trips_every_state() {
    let p = seed_policy();
    let closed = Breaker::new(&p);
    let mut open = Breaker::new(&p);
    open.state = State::Open {
        opened_ms: 5,
        until_ms: u64::MAX,
    };
    for b in [closed, open, half_open_sample()] {
        assert_eq!(decode(&encode(&b)), Ok(b));
    }
}

#[test]
fn encoding_is_compact_and_versioned() {
    let closed = encode(&Breaker::new(&seed_policy()));
    assert_eq!(closed[0], VERSION);
    assert!(closed.len() < 64, "idle state is {} bytes", closed.len());
    assert!(encode(&half_open_sample()).len() < 96);
}

#[test]
fn truncated_bytes_decode_to_an_error() {
    let bytes = encode(&half_open_sample());
    for n in 0..bytes.len() {
        assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
    }
}

#[test]
fn other_versions_and_garbage_give_clean_closed_state() {
    let p = seed_policy();
    let mut old = encode(&half_open_sample());
    old[0] = 0;
    let (b, err) = decode_or_closed(&old, &p);
    assert_eq!(err, Some(DecodeError::UnsupportedVersion(0)));
    assert_eq!(b, Breaker::new(&p));
    let (b, err) = decode_or_closed(b"\x01\x07garbage", &p);
    assert_eq!(err, Some(DecodeError::BadTag(7)));
    assert_eq!(b.stored_kind(), StateKind::Closed);
    let (_, err) = decode_or_closed(&[], &p);
    assert_eq!(err, Some(DecodeError::Empty));
    let mut trailing = encode(&Breaker::new(&p));
    trailing.push(0);
    assert_eq!(decode(&trailing), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn oversized_numbers_are_rejected() {
    let mut bytes = vec![VERSION, 1];
    bytes.extend([0xff; 11]);
    assert_eq!(decode(&bytes), Err(DecodeError::Overflow));
}

#[test]
fn decode_error_messages_are_readable() {
    assert_eq!(
        DecodeError::UnsupportedVersion(9).to_string(),
        "breaker state version 9 (expected 1)"
    );
}

#[test]
fn active_set_adds_removes_and_round_trips() {
    use crate::state_codec::active_set;
    let mut names = active_set::decode(b"");
    assert!(names.is_empty());
    assert!(active_set::set(&mut names, "openai", true));
    assert!(
        !active_set::set(&mut names, "openai", true),
        "already a member"
    );
    assert!(active_set::set(&mut names, "azure-2", true));
    assert_eq!(active_set::decode(&active_set::encode(&names)), names);
    assert!(active_set::set(&mut names, "openai", false));
    assert!(!active_set::set(&mut names, "openai", false));
    assert_eq!(names, vec!["azure-2".to_string()]);
    assert!(
        active_set::decode(&[0xff, 0xfe]).is_empty(),
        "garbage is an empty set"
    );
}
