#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::default_policy;
use crate::breaker::*;
use crate::config::{FailureRate, Mode, Policy};
use crate::outcome::{FailureReason, Outcome};

const FAIL: Outcome = Outcome::Failure {
    reason: FailureReason::Status5xx,
    retry_after_ms: None,
};
const OK: Outcome = Outcome::Success;

fn admit(b: &mut Breaker, p: &Policy, now: u64) -> Admission {
    b.admit(p, now).0
}

fn ticket(b: &mut Breaker, p: &Policy, now: u64) -> Ticket {
    match admit(b, p, now) {
        Admission::Admitted(t) => t,
        other => panic!("expected admission at {now}, got {other:?}"),
    }
}

/// Runs one call at `now` with `outcome` and returns the change it caused.
fn call(b: &mut Breaker, p: &Policy, now: u64, outcome: Outcome) -> Change {
    let t = ticket(b, p, now);
    b.record(p, now, t, outcome, 0.5)
}

fn open_at(p: &Policy, now: u64) -> Breaker {
    let mut b = Breaker::new(p);
    for _ in 0..p.failure_threshold {
        call(&mut b, p, now, FAIL);
    }
    assert_eq!(b.stored_kind(), StateKind::Open);
    b
}

#[test]
fn opens_after_five_failures_in_window() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    for i in 0..4 {
        let c = call(&mut b, &p, 1_000 + i * 1_000, FAIL);
        assert!(
            c.dirty && c.transition.is_none(),
            "failure {i} must not trip"
        );
    }
    let c = call(&mut b, &p, 5_000, FAIL);
    let t = c.transition.expect("fifth failure trips");
    assert_eq!((t.from, t.to), (StateKind::Closed, StateKind::Open));
    assert_eq!(
        t.cause,
        Cause::Tripped(Trip {
            rule: TripRule::Count,
            reason: FailureReason::Status5xx
        })
    );
    assert_eq!(t.failures_in_window, 5);
    assert_eq!(t.until_ms, Some(35_000));
}

#[test]
fn four_failures_leave_it_closed() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    for i in 0..4 {
        call(&mut b, &p, i * 100, FAIL);
    }
    assert_eq!(b.stored_kind(), StateKind::Closed);
    assert_eq!(admit(&mut b, &p, 500), Admission::Admitted(Ticket::Counted));
}

#[test]
fn threshold_of_one_opens_on_first_failure() {
    let p = Policy {
        failure_threshold: 1,
        ..default_policy()
    };
    let mut b = Breaker::new(&p);
    let c = call(&mut b, &p, 10, FAIL);
    assert_eq!(c.transition.map(|t| t.to), Some(StateKind::Open));
}

#[test]
fn success_in_closed_reports_nothing_changed() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    call(&mut b, &p, 0, FAIL);
    let before = b.clone();
    let c = call(&mut b, &p, 10, OK);
    assert_eq!(c, Change::default());
    assert_eq!(b, before);
}

#[test]
fn success_does_not_reset_the_failure_count() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    for i in 0..4 {
        call(&mut b, &p, i, FAIL);
    }
    call(&mut b, &p, 10, OK);
    let c = call(&mut b, &p, 20, FAIL);
    assert_eq!(c.transition.map(|t| t.to), Some(StateKind::Open));
}

#[test]
fn failures_expire_at_the_window_edge() {
    // 60 s window in 20 buckets of 3 s: a failure at t=0 counts until t=59 999.
    let p = default_policy();
    let mut b = Breaker::new(&p);
    call(&mut b, &p, 0, FAIL);
    assert_eq!(b.window.totals(59_999).0, 1);
    assert_eq!(b.window.totals(60_000).0, 0);
    for i in 0..3 {
        call(&mut b, &p, 30_000 + i, FAIL);
    }
    // Four failures inside the window, the oldest expires exactly at 60 s.
    let c = call(&mut b, &p, 60_000, FAIL);
    assert!(
        c.transition.is_none(),
        "t=0 failure expired, only 4 in window"
    );
    let c = call(&mut b, &p, 60_001, FAIL);
    assert_eq!(c.transition.map(|t| t.to), Some(StateKind::Open));
}

#[test]
fn failures_spread_wider_than_the_window_never_trip() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    for i in 0..50 {
        let c = call(&mut b, &p, i * 15_000, FAIL);
        assert!(
            c.transition.is_none(),
            "one failure every 15 s is 4 per window"
        );
    }
}

#[test]
fn open_rejects_until_recovery_timeout_then_half_opens() {
    let p = default_policy();
    let mut b = open_at(&p, 1_000);
    assert_eq!(
        admit(&mut b, &p, 30_999),
        Admission::Rejected {
            retry_at_ms: 31_000
        }
    );
    let (a, c) = b.admit(&p, 31_000);
    assert!(matches!(a, Admission::Admitted(Ticket::Probe(_))));
    let t = c.transition.expect("open -> half_open");
    assert_eq!((t.from, t.to), (StateKind::Open, StateKind::HalfOpen));
    assert_eq!(t.cause, Cause::RecoveryTimeoutElapsed);
}

#[test]
fn tick_moves_open_to_half_open_without_traffic() {
    let p = default_policy();
    let mut b = open_at(&p, 0);
    assert_eq!(b.advance(&p, 29_999), Change::default());
    let c = b.advance(&p, 30_000);
    assert_eq!(c.transition.map(|t| t.to), Some(StateKind::HalfOpen));
    assert_eq!(b.stored_kind(), StateKind::HalfOpen);
}

#[test]
fn half_open_admits_at_most_max_probes() {
    let p = Policy {
        half_open_max_requests: 2,
        ..default_policy()
    };
    let mut b = open_at(&p, 0);
    assert!(matches!(
        admit(&mut b, &p, 30_000),
        Admission::Admitted(Ticket::Probe(_))
    ));
    assert!(matches!(
        admit(&mut b, &p, 30_001),
        Admission::Admitted(Ticket::Probe(_))
    ));
    assert!(matches!(
        admit(&mut b, &p, 30_002),
        Admission::Rejected { .. }
    ));
}

#[test]
fn two_probe_successes_close_the_breaker() {
    let p = default_policy();
    let mut b = open_at(&p, 0);
    let c = call(&mut b, &p, 30_000, OK);
    assert!(c.transition.map(|t| t.to) != Some(StateKind::Closed));
    assert_eq!(b.stored_kind(), StateKind::HalfOpen);
    let c = call(&mut b, &p, 30_500, OK);
    let t = c.transition.expect("second success closes");
    assert_eq!((t.from, t.to), (StateKind::HalfOpen, StateKind::Closed));
    assert_eq!(t.open_duration_ms, Some(30_500));
    assert_eq!(b.window.totals(30_500), (0, 0), "window starts clean");
}

#[test]
fn probe_failure_reopens_with_backoff() {
    let p = Policy {
        backoff_multiplier: 2.0,
        ..default_policy()
    };
    let mut b = open_at(&p, 0);
    let c = call(&mut b, &p, 30_000, FAIL);
    let t = c.transition.expect("probe failure reopens");
    assert_eq!((t.from, t.to), (StateKind::HalfOpen, StateKind::Open));
    assert_eq!(t.until_ms, Some(30_000 + 60_000));
    let c = call(&mut b, &p, 90_000, FAIL);
    assert_eq!(
        c.transition.and_then(|t| t.until_ms),
        Some(90_000 + 120_000)
    );
}

#[test]
fn backoff_is_capped_at_max_recovery_timeout() {
    let p = Policy {
        backoff_multiplier: 10.0,
        max_recovery_ms: 100_000,
        ..default_policy()
    };
    assert_eq!(open_duration(&p, 0, None, 0.5), 30_000);
    assert_eq!(open_duration(&p, 1, None, 0.5), 100_000);
    assert_eq!(open_duration(&p, 50, None, 0.5), 100_000);
}

#[test]
fn default_backoff_keeps_recovery_constant() {
    let p = default_policy();
    assert_eq!(open_duration(&p, 0, None, 0.5), 30_000);
    assert_eq!(open_duration(&p, 7, None, 0.5), 30_000);
}

#[test]
fn retry_after_stretches_the_open_time() {
    let p = default_policy();
    assert_eq!(open_duration(&p, 0, Some(90_000), 0.5), 90_000);
    assert_eq!(
        open_duration(&p, 0, Some(5_000), 0.5),
        30_000,
        "never shorter"
    );
    let off = Policy {
        honor_retry_after: false,
        ..default_policy()
    };
    assert_eq!(open_duration(&off, 0, Some(90_000), 0.5), 30_000);
}

#[test]
fn retry_after_larger_than_the_cap_is_capped() {
    let p = default_policy();
    assert_eq!(open_duration(&p, 0, Some(3_600_000), 0.5), 300_000);
}

#[test]
fn rate_limit_retry_after_sets_until() {
    let p = Policy {
        failure_threshold: 1,
        ..default_policy()
    };
    let mut b = Breaker::new(&p);
    let rate_limited = Outcome::Failure {
        reason: FailureReason::RateLimit,
        retry_after_ms: Some(45_000),
    };
    let c = call(&mut b, &p, 1_000, rate_limited);
    assert_eq!(c.transition.and_then(|t| t.until_ms), Some(46_000));
}

#[test]
fn jitter_stays_within_its_fraction() {
    let p = Policy {
        recovery_jitter: 0.1,
        ..Policy::default()
    };
    assert_eq!(open_duration(&p, 0, None, 0.0), 27_000);
    assert_eq!(open_duration(&p, 0, None, 0.5), 30_000);
    let top = open_duration(&p, 0, None, 0.999_999);
    assert!((32_999..=33_000).contains(&top), "{top}");
    for i in 0..=100 {
        let d = open_duration(&p, 0, None, f64::from(i) / 100.0);
        assert!((27_000..=33_000).contains(&d), "{d}");
    }
    // Out-of-range randomness is clamped, never a panic or an absurd time.
    assert_eq!(open_duration(&p, 0, None, 7.0), 33_000);
    assert_eq!(open_duration(&p, 0, None, f64::NAN), 30_000);
}

#[test]
fn probe_timeout_frees_its_slot() {
    let p = Policy {
        probe_timeout_ms: 5_000,
        ..default_policy()
    };
    let mut b = open_at(&p, 0);
    let stuck = ticket(&mut b, &p, 30_000);
    assert!(matches!(stuck, Ticket::Probe(_)));
    assert!(matches!(
        admit(&mut b, &p, 34_999),
        Admission::Rejected { .. }
    ));
    assert!(matches!(
        admit(&mut b, &p, 35_000),
        Admission::Admitted(Ticket::Probe(_))
    ));
    // The stuck probe reporting late does not steer the state.
    let c = b.record(&p, 36_000, stuck, FAIL, 0.5);
    assert_eq!(c, Change::default());
    assert_eq!(b.stored_kind(), StateKind::HalfOpen);
}

#[test]
fn tick_reclaims_timed_out_probes() {
    let p = Policy {
        probe_timeout_ms: 1_000,
        ..default_policy()
    };
    let mut b = open_at(&p, 0);
    ticket(&mut b, &p, 30_000);
    assert_eq!(b.advance(&p, 30_999), Change::default());
    assert!(b.advance(&p, 31_000).dirty);
    assert!(matches!(
        admit(&mut b, &p, 31_001),
        Admission::Admitted(Ticket::Probe(_))
    ));
}

#[test]
fn released_probe_frees_its_slot_without_counting() {
    let p = default_policy();
    let mut b = open_at(&p, 0);
    let t = ticket(&mut b, &p, 30_000);
    assert!(b.release(t).dirty);
    assert_eq!(b.stored_kind(), StateKind::HalfOpen);
    assert!(matches!(
        admit(&mut b, &p, 30_001),
        Admission::Admitted(Ticket::Probe(_))
    ));
    assert_eq!(b.release(Ticket::Counted), Change::default());
}

#[test]
fn ignored_probe_outcome_frees_slot_and_counts_nothing() {
    let p = default_policy();
    let mut b = open_at(&p, 0);
    let c = call(&mut b, &p, 30_000, Outcome::Ignored);
    assert!(c.dirty && c.transition.is_none());
    call(&mut b, &p, 30_001, OK);
    assert_eq!(
        b.stored_kind(),
        StateKind::HalfOpen,
        "one success is not two"
    );
}

#[test]
fn late_failure_from_before_the_trip_is_not_counted_again() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    let early = ticket(&mut b, &p, 0);
    for i in 0..5 {
        call(&mut b, &p, i, FAIL);
    }
    let until = match b.state {
        State::Open { until_ms, .. } => until_ms,
        ref s => panic!("{s:?}"),
    };
    assert_eq!(b.record(&p, 100, early, FAIL, 0.5), Change::default());
    assert_eq!(
        b.state,
        State::Open {
            opened_ms: 4,
            until_ms: until
        }
    );
}

#[test]
fn clock_going_backwards_never_panics_or_reopens_early() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    for t in [50_000u64, 40_000, 30_000, 20_000] {
        call(&mut b, &p, t, FAIL);
    }
    assert_eq!(
        b.window.totals(10_000).0,
        4,
        "backwards calls land in the newest bucket"
    );
    let c = call(&mut b, &p, 0, FAIL);
    assert_eq!(c.transition.map(|t| t.to), Some(StateKind::Open));
    let until = match b.state {
        State::Open { until_ms, .. } => until_ms,
        ref s => panic!("{s:?}"),
    };
    assert!(matches!(admit(&mut b, &p, 0), Admission::Rejected { .. }));
    assert!(matches!(
        admit(&mut b, &p, until - 1),
        Admission::Rejected { .. }
    ));
    // A probe "started in the future" is not timed out by a clock that went back.
    ticket(&mut b, &p, until + 10);
    assert_eq!(b.advance(&p, 5), Change::default());
    assert_eq!(b.snapshot(&p, 0).probes_in_flight, 1);
}

#[test]
fn extreme_times_do_not_overflow() {
    let p = default_policy();
    let mut b = open_at(&p, u64::MAX - 10);
    assert!(matches!(
        admit(&mut b, &p, u64::MAX),
        Admission::Admitted(_)
    ));
    let _ = b.snapshot(&p, 0);
}

fn rate_policy() -> Policy {
    Policy {
        failure_rate: Some(FailureRate {
            threshold: 0.5,
            minimum_requests: 20,
        }),
        ..default_policy()
    }
}

#[test]
fn rate_rule_trips_at_threshold_with_minimum_volume() {
    // A count threshold out of reach, so only the rate rule can trip.
    let p = Policy {
        failure_threshold: 50,
        ..rate_policy()
    };
    let mut b = Breaker::new(&p);
    for i in 0..10 {
        call(&mut b, &p, i, OK);
    }
    for i in 0..9 {
        let c = call(&mut b, &p, 100 + i, FAIL);
        assert!(c.transition.is_none(), "19 calls is below minimum_requests");
    }
    let c = call(&mut b, &p, 200, FAIL);
    let t = c.transition.expect("10/20 = 0.5 trips");
    assert_eq!(
        t.cause,
        Cause::Tripped(Trip {
            rule: TripRule::Rate,
            reason: FailureReason::Status5xx
        })
    );
}

#[test]
fn busy_upstream_does_not_open_on_a_handful_of_errors() {
    let p = rate_policy();
    let mut b = Breaker::new(&p);
    for i in 0..100 {
        call(&mut b, &p, i, OK);
    }
    for i in 0..10 {
        let c = call(&mut b, &p, 200 + i, FAIL);
        assert!(c.transition.is_none(), "10/110 failures is under 50%");
    }
    assert_eq!(b.stored_kind(), StateKind::Closed);
}

#[test]
fn count_rule_applies_below_minimum_volume() {
    let p = rate_policy();
    let mut b = Breaker::new(&p);
    for i in 0..4 {
        call(&mut b, &p, i, FAIL);
    }
    let c = call(&mut b, &p, 5, FAIL);
    let t = c
        .transition
        .expect("5 failures in 5 calls: count rule at low traffic");
    assert!(matches!(
        t.cause,
        Cause::Tripped(Trip {
            rule: TripRule::Count,
            ..
        })
    ));
}

#[test]
fn rate_rule_counts_successes_so_they_are_written() {
    let p = rate_policy();
    let mut b = Breaker::new(&p);
    assert!(call(&mut b, &p, 0, OK).dirty);
    assert_eq!(b.window.totals(0), (0, 1));
}

#[test]
fn metrics_only_tracks_transitions_but_never_rejects() {
    let p = Policy {
        mode: Mode::MetricsOnly,
        ..default_policy()
    };
    let mut b = Breaker::new(&p);
    let mut transitions = Vec::new();
    for i in 0..5 {
        transitions.extend(call(&mut b, &p, i, FAIL).transition);
    }
    assert_eq!(transitions.len(), 1);
    assert_eq!(b.kind(&p), StateKind::Open);
    for t in [10, 1_000, 29_999] {
        assert_eq!(admit(&mut b, &p, t), Admission::Admitted(Ticket::Uncounted));
    }
    // Probing still happens as it would under enforce (opened at t=4), and closes the breaker.
    call(&mut b, &p, 30_004, OK);
    let c = call(&mut b, &p, 30_005, OK);
    assert_eq!(c.transition.map(|t| t.to), Some(StateKind::Closed));
}

#[test]
fn forced_open_always_rejects() {
    let p = Policy {
        mode: Mode::ForcedOpen,
        ..default_policy()
    };
    let mut b = Breaker::new(&p);
    for t in [0, 1_000_000, 5_000_000] {
        assert_eq!(
            b.admit(&p, t),
            (
                Admission::Rejected {
                    retry_at_ms: t + 30_000
                },
                Change::default()
            )
        );
    }
    assert_eq!(b.kind(&p), StateKind::Open);
}

#[test]
fn disabled_admits_everything_and_records_nothing() {
    let p = Policy {
        mode: Mode::Disabled,
        ..default_policy()
    };
    let mut b = Breaker::new(&p);
    for i in 0..100 {
        let c = call(&mut b, &p, i, FAIL);
        assert_eq!(c, Change::default());
    }
    assert_eq!(b.kind(&p), StateKind::Closed);
    assert_eq!(b, Breaker::new(&p));
}

#[test]
fn snapshot_reports_open_details() {
    let p = default_policy();
    let b = open_at(&p, 1_000);
    let s = b.snapshot(&p, 11_000);
    assert_eq!(s.state, StateKind::Open);
    assert_eq!(s.failures_in_window, 5);
    assert_eq!(s.opened_at_ms, Some(1_000));
    assert_eq!(s.next_probe_in_ms, Some(20_000));
    assert_eq!(s.last_trip.map(|t| t.rule), Some(TripRule::Count));
    assert_eq!(
        s.failure_rate, None,
        "rates need the rate rule's call counts"
    );
}

#[test]
fn config_reload_with_new_window_resets_counts() {
    let p = default_policy();
    let mut b = Breaker::new(&p);
    call(&mut b, &p, 0, FAIL);
    b.fit_to(&p);
    assert_eq!(b.window.totals(0).0, 1, "same window keeps counts");
    let q = Policy {
        window_ms: 10_000,
        ..default_policy()
    };
    b.fit_to(&q);
    assert_eq!(b.window.totals(0).0, 0);
    assert_eq!(b.window.bucket_ms, 500);
}

#[test]
fn record_is_noop_exactly_when_recording_changes_nothing() {
    let outcomes = [OK, FAIL, Outcome::Ignored];
    for p in [default_policy(), rate_policy()] {
        for start in [Breaker::new(&p), open_at(&p, 0)] {
            for outcome in outcomes {
                let mut b = start.clone();
                let ticket = match b.admit(&p, 40_000).0 {
                    Admission::Admitted(t) => t,
                    Admission::Rejected { .. } => Ticket::Counted,
                };
                let before = b.clone();
                let noop = Breaker::record_is_noop(&p, ticket, &outcome);
                let change = b.record(&p, 40_001, ticket, outcome, 0.5);
                if noop {
                    assert_eq!(change, Change::default(), "{ticket:?} {outcome:?}");
                    assert_eq!(b, before);
                }
            }
        }
    }
    assert!(Breaker::record_is_noop(
        &default_policy(),
        Ticket::Counted,
        &OK
    ));
    assert!(!Breaker::record_is_noop(
        &rate_policy(),
        Ticket::Counted,
        &OK
    ));
    assert!(!Breaker::record_is_noop(
        &default_policy(),
        Ticket::Probe(1),
        &OK
    ));
}
