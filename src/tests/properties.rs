//! Property tests of the engine's invariants and the state encoding (native only).

use proptest::prelude::*;

use super::default_policy;
use crate::breaker::*;
use crate::config::{Mode, Policy};
use crate::outcome::{FailureReason, Outcome};
use crate::store::breaker_state::{decode, encode};

#[derive(Debug, Clone)]
enum Op {
    Admit,
    Finish(usize, u8),
    Release(usize),
    Tick,
}

fn op() -> impl Strategy<Value = (u64, Op)> {
    (
        0u64..40_000,
        prop_oneof![
            3 => Just(Op::Admit),
            3 => (any::<usize>(), 0u8..4).prop_map(|(i, o)| Op::Finish(i, o)),
            1 => any::<usize>().prop_map(Op::Release),
            1 => Just(Op::Tick),
        ],
    )
}

fn outcome(code: u8) -> Outcome {
    match code {
        0 => Outcome::Success,
        1 => Outcome::Ignored,
        2 => Outcome::Failure {
            reason: FailureReason::Timeout,
            retry_after_ms: None,
        },
        _ => Outcome::Failure {
            reason: FailureReason::RateLimit,
            retry_after_ms: Some(45_000),
        },
    }
}

fn policy(max_probes: u32, threshold: u32) -> Policy {
    Policy {
        half_open_max_requests: max_probes,
        failure_threshold: threshold,
        recovery_ms: 5_000,
        probe_timeout_ms: 20_000,
        recovery_jitter: 0.2,
        ..default_policy()
    }
}

/// Drives a breaker through random operations, with time mostly moving forward but
/// sometimes jumping back, and checks the invariants after every step.
fn run(p: &Policy, ops: &[(u64, Op)]) -> Result<Breaker, TestCaseError> {
    let mut b = Breaker::new(p);
    let mut in_flight: Vec<Ticket> = Vec::new();
    let mut now = 1_000_000u64;
    for (i, (dt, op)) in ops.iter().enumerate() {
        now = if i % 13 == 12 {
            now.saturating_sub(*dt / 4)
        } else {
            now + dt / 8
        };
        match op {
            Op::Admit => {
                let before = b.state.clone();
                match b.admit(p, now).0 {
                    Admission::Admitted(t) => {
                        if let State::Open { until_ms, .. } = before {
                            prop_assert!(
                                p.mode != Mode::Enforce || now >= until_ms,
                                "OPEN admitted at {} before {}",
                                now,
                                until_ms
                            );
                        }
                        in_flight.push(t);
                    }
                    Admission::Rejected { .. } => {}
                }
            }
            Op::Finish(k, o) if !in_flight.is_empty() => {
                let t = in_flight.remove(k % in_flight.len());
                b.record(p, now, t, outcome(*o), (*k % 1000) as f64 / 1000.0);
            }
            Op::Release(k) if !in_flight.is_empty() => {
                let t = in_flight.remove(k % in_flight.len());
                b.release(t);
            }
            Op::Tick => {
                b.advance(p, now);
            }
            _ => {}
        }
        if let State::HalfOpen { probes, .. } = &b.state {
            prop_assert!(
                probes.len() <= p.half_open_max_requests as usize,
                "{} probes admitted, max {}",
                probes.len(),
                p.half_open_max_requests
            );
        }
    }
    Ok(b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_more_probes_than_half_open_max_requests(
        max in 1u32..5, threshold in 1u32..6, ops in prop::collection::vec(op(), 1..300)
    ) {
        run(&policy(max, threshold), &ops)?;
    }

    #[test]
    fn open_never_admits_before_its_time_in_enforce_mode(
        threshold in 1u32..4, ops in prop::collection::vec(op(), 1..300)
    ) {
        run(&policy(1, threshold), &ops)?;
    }

    #[test]
    fn decode_of_encode_is_identity(
        max in 1u32..5, threshold in 1u32..6, ops in prop::collection::vec(op(), 0..200)
    ) {
        let b = run(&policy(max, threshold), &ops)?;
        prop_assert_eq!(decode(&encode(&b)), Ok(b));
    }

    #[test]
    fn decode_of_encode_is_identity_for_arbitrary_fields(
        tag in 0u8..3, a in any::<u64>(), c in any::<u64>(), n in any::<u32>(),
        probes in prop::collection::vec((any::<u32>(), any::<u64>()), 0..64),
        counts in prop::collection::vec((any::<u32>(), any::<u32>()), 20),
        head in any::<u64>(), bucket in 1u64..u64::MAX, outage in any::<Option<u64>>(),
    ) {
        let mut b = Breaker::new(&default_policy());
        b.state = match tag {
            0 => State::Closed,
            1 => State::Open { opened_ms: a, until_ms: c },
            _ => State::HalfOpen {
                since_ms: a, successes: n,
                probes: probes.iter().map(|&(id, started_ms)| Probe { id, started_ms }).collect(),
            },
        };
        b.reopens = n;
        b.next_probe_id = n.rotate_left(7);
        b.outage_since_ms = outage;
        b.last_trip = (tag != 0).then_some(Trip { rule: TripRule::Rate, reason: FailureReason::Slow });
        b.window.head = head;
        b.window.bucket_ms = bucket;
        for (i, (f, k)) in counts.iter().enumerate() {
            b.window.failures[i] = *f;
            b.window.calls[i] = *k;
        }
        prop_assert_eq!(decode(&encode(&b)), Ok(b));
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        // Whatever came in, the result (or a fresh breaker) is usable by the engine.
        let mut b = decode(&bytes).unwrap_or_else(|_| Breaker::new(&default_policy()));
        b.fit_to(&default_policy());
        let _ = b.admit(&default_policy(), 1);
    }

    #[test]
    fn decoding_mutated_encodings_never_panics(
        ops in prop::collection::vec(op(), 0..50), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)
    ) {
        let b = run(&policy(2, 3), &ops)?;
        let mut bytes = encode(&b);
        for (i, v) in flips {
            let n = bytes.len();
            bytes[i % n] ^= v;
        }
        let _ = decode(&bytes);
    }
}
