//! The shared-data codecs: any bytes decode to a value or an error, never a panic; a decoded
//! value encodes and decodes back to itself; and a decoded breaker (written by another
//! version, a bad actor or a torn write) is still usable by the engine: fitted to a policy,
//! then driven by admissions, outcomes, releases and ticks at any time, it never panics and
//! every state it reaches still round-trips through the codec.
//!
//! Input: one byte `n`, then `n` bytes of engine script (a policy, a start time and the ops),
//! then the stored value. The value is decoded as each of the three stored kinds.

use ai_circuit_breaker::alert::AlertLog;
use ai_circuit_breaker::breaker::{Admission, Breaker, State, Ticket};
use ai_circuit_breaker::config::{FailureRate, Mode, Policy};
use ai_circuit_breaker::outcome::{FailureReason, Outcome};
use ai_circuit_breaker::store::active_set::ActiveSet;
use ai_circuit_breaker::store::Codec;

pub fn run(input: &[u8]) {
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let (script, stored) = rest.split_at(usize::from(n).min(rest.len()));

    round_trips::<ActiveSet>(stored);
    round_trips::<AlertLog>(stored);
    if let Some(breaker) = round_trips::<Breaker>(stored) {
        drive(breaker, script);
    }
}

/// Decodes `bytes`; a value must survive encode → decode unchanged.
fn round_trips<T: Codec + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<T> {
    let value = T::decode(bytes).ok()?;
    let again = T::decode(&value.encode());
    assert_eq!(again.as_ref(), Ok(&value), "decode(encode(x)) != x");
    Some(value)
}

fn policy(choice: u8) -> Policy {
    let base = Policy {
        recovery_jitter: 0.0,
        ..Policy::default()
    };
    match choice % 6 {
        0 => base,
        1 => Policy {
            failure_rate: Some(FailureRate {
                threshold: 0.5,
                minimum_requests: 4,
            }),
            ..base
        },
        2 => Policy {
            mode: Mode::MetricsOnly,
            half_open_max_requests: 3,
            ..base
        },
        3 => Policy {
            window_ms: 1,
            recovery_ms: 1,
            probe_timeout_ms: 1,
            failure_threshold: 1,
            success_threshold: 1,
            half_open_max_requests: 64,
            backoff_multiplier: 100.0,
            max_recovery_ms: 86_400_000,
            recovery_jitter: 0.99,
            ..base
        },
        4 => Policy {
            mode: Mode::ForcedOpen,
            ..base
        },
        _ => Policy {
            mode: Mode::Disabled,
            window_ms: 86_400_000,
            ..base
        },
    }
}

/// A start time taken from the decoded state, so stored times near `u64::MAX` are reached.
fn start(b: &Breaker, choice: u8) -> u64 {
    let state_time = match &b.state {
        State::Closed => b.window.head.saturating_mul(b.window.bucket_ms),
        State::Open { until_ms, .. } => *until_ms,
        State::HalfOpen { since_ms, .. } => *since_ms,
    };
    match choice % 4 {
        0 => 1_700_000_000_000,
        1 => state_time,
        2 => u64::MAX - 1_000,
        _ => 0,
    }
}

fn drive(mut b: Breaker, script: &[u8]) {
    let (&p, ops) = script.split_first().unwrap_or((&0, &[]));
    let policy = policy(p);
    b.fit_to(&policy);
    let mut now = start(&b, p >> 3);
    let mut tickets: Vec<Ticket> = Vec::new();
    for &op in ops {
        // Low two bits: the op; the rest: how far the clock moves first (sometimes back).
        let step = u64::from(op >> 3) * 997;
        now = if op & 4 == 0 {
            now.saturating_add(step)
        } else {
            now.saturating_sub(step / 8)
        };
        match op & 3 {
            0 => {
                let (admission, _) = b.admit(&policy, now);
                if let Admission::Admitted(t) = admission {
                    tickets.push(t);
                }
            }
            1 | 2 => {
                if let Some(t) = tickets.pop() {
                    let outcome = if op & 3 == 1 {
                        Outcome::Success
                    } else {
                        let reason =
                            FailureReason::ALL[usize::from(op >> 3) % FailureReason::ALL.len()];
                        Outcome::Failure {
                            reason,
                            retry_after_ms: (op & 0x80 != 0).then_some(u64::from(op) * 1_000_000),
                        }
                    };
                    let random = f64::from(op) / 256.0;
                    b.record(&policy, now, t, outcome, random);
                }
            }
            _ => {
                if op & 0x40 != 0 {
                    if let Some(t) = tickets.pop() {
                        b.release(t);
                    }
                } else {
                    b.advance(&policy, now);
                }
            }
        }
        b.snapshot(&policy, now);
        assert_eq!(
            Breaker::decode(&b.encode()).as_ref(),
            Ok(&b),
            "a state the engine reached does not round-trip"
        );
    }
}
