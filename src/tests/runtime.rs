//! The multi-worker guarantees, as unit tests: two runtimes over one fake shared store,
//! with the other worker's operation run between one worker's read and its write.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::rc::Rc;

use super::fake::{workers, Worker};
use crate::breaker::{Admission, StateKind, Ticket};
use crate::config::UpstreamId;
use crate::outcome::{FailureReason, Outcome};
use crate::store::MAX_CAS_ATTEMPTS;

const CONFIG: &str = r#"{
    "defaults": {"failure_threshold": 3, "recovery_timeout": 10, "recovery_jitter": 0,
                 "half_open_max_requests": 1, "success_threshold": 1},
    "upstreams": [{"name": "openai", "fallbacks": ["anthropic"]}, {"name": "anthropic"}],
    "routes": [{"upstream": "openai"}],
    "alerting": {"cluster": "webhook", "min_interval": 0}
}"#;

const T0: u64 = 1_000_000;

fn openai(w: &Worker) -> UpstreamId {
    w.rt.config.upstream_id("openai").expect("configured")
}

fn fail() -> Outcome {
    Outcome::failure(FailureReason::Status5xx)
}

#[test]
fn a_failure_recorded_by_another_worker_between_read_and_write_is_not_lost() {
    let (ws, store, _) = workers(CONFIG, 2, T0);
    let (a, b) = (&ws[0], &ws[1]);
    let u = openai(a);
    let other = Rc::clone(&b.rt);
    store.before_next_write(move || other.record(u, Ticket::Counted, T0, &fail()));
    a.rt.record(u, Ticket::Counted, T0, &fail());
    assert_eq!(
        a.rt.snapshot(u, T0).failures_in_window,
        2,
        "both failures counted"
    );
    assert_eq!(
        b.rt.snapshot(u, T0).failures_in_window,
        2,
        "one state for both workers"
    );
}

#[test]
fn two_workers_racing_for_the_last_probe_slot_admit_exactly_one_probe() {
    let (ws, store, clock) = workers(CONFIG, 2, T0);
    let (a, b) = (&ws[0], &ws[1]);
    let u = openai(a);
    for _ in 0..3 {
        a.rt.record(u, Ticket::Counted, T0, &fail());
    }
    assert_eq!(a.rt.snapshot(u, T0).state, StateKind::Open);
    let later = T0 + 10_000;
    clock.set(later);
    let other = Rc::clone(&b.rt);
    let theirs = Rc::new(std::cell::Cell::new(None));
    let seen = Rc::clone(&theirs);
    store.before_next_write(move || seen.set(Some(other.admit(u, later))));
    let mine = a.rt.admit(u, later);
    let admitted = [Some(mine), theirs.get()]
        .iter()
        .filter(|x| matches!(x, Some(Admission::Admitted(Ticket::Probe(_)))))
        .count();
    assert_eq!(admitted, 1, "mine {mine:?}, theirs {:?}", theirs.get());
    assert_eq!(a.rt.snapshot(u, later).probes_in_flight, 1);
}

#[test]
fn exactly_one_worker_performs_the_transition_and_its_alert() {
    let (ws, store, _) = workers(CONFIG, 2, T0);
    let (a, b) = (&ws[0], &ws[1]);
    let u = openai(a);
    a.rt.record(u, Ticket::Counted, T0, &fail());
    a.rt.record(u, Ticket::Counted, T0, &fail());
    // Both workers record the failure that trips the breaker, interleaved.
    let other = Rc::clone(&b.rt);
    store.before_next_write(move || other.record(u, Ticket::Counted, T0, &fail()));
    a.rt.record(u, Ticket::Counted, T0, &fail());
    let opened = |w: &Worker| w.metrics().count("transitions{openai,closed,open}");
    assert_eq!(opened(a) + opened(b), 1, "one transition in total");
    let alerts = a.rt.take_alerts().len() + b.rt.take_alerts().len();
    assert_eq!(alerts, 1, "one alert in total");
    assert_eq!(a.rt.snapshot(u, T0).state, StateKind::Open);
}

#[test]
fn refused_writes_are_retried_until_one_lands() {
    let (ws, store, _) = workers(CONFIG, 1, T0);
    let a = &ws[0];
    let u = openai(a);
    store.refuse_next_writes(5);
    a.rt.record(u, Ticket::Counted, T0, &fail());
    assert_eq!(a.rt.snapshot(u, T0).failures_in_window, 1);
    assert_eq!(
        a.metrics().count("requests{openai,failure}"),
        1,
        "counted once"
    );
}

#[test]
fn a_probe_slot_that_cannot_be_stored_is_not_handed_out() {
    let (ws, store, clock) = workers(CONFIG, 1, T0);
    let a = &ws[0];
    let u = openai(a);
    for _ in 0..3 {
        a.rt.record(u, Ticket::Counted, T0, &fail());
    }
    clock.set(T0 + 10_000);
    store.refuse_next_writes(MAX_CAS_ATTEMPTS);
    let got = a.rt.admit(u, T0 + 10_000);
    assert!(matches!(got, Admission::Rejected { .. }), "got {got:?}");
}

#[test]
fn the_tick_moves_open_breakers_to_half_open_without_traffic() {
    let (ws, _, _) = workers(CONFIG, 1, T0);
    let a = &ws[0];
    let u = openai(a);
    for _ in 0..3 {
        a.rt.record(u, Ticket::Counted, T0, &fail());
    }
    a.rt.tick(T0 + 9_999);
    assert_eq!(a.rt.snapshot(u, T0 + 9_999).state, StateKind::Open);
    a.rt.tick(T0 + 10_000);
    assert_eq!(a.rt.snapshot(u, T0 + 10_000).state, StateKind::HalfOpen);
    assert_eq!(a.metrics().count("transitions{openai,open,half_open}"), 1);
}

#[test]
fn a_reload_keeps_the_state_of_upstreams_it_still_names() {
    let (ws, store, clock) = workers(CONFIG, 1, T0);
    let u = openai(&ws[0]);
    for _ in 0..3 {
        ws[0].rt.record(u, Ticket::Counted, T0, &fail());
    }
    // A new configuration on the same store: openai is now second in the list.
    let reloaded = r#"{"upstreams": [{"name": "azure"}, {"name": "openai"}],
                       "routes": [{"upstream": "openai"}]}"#;
    let config = crate::config::Config::from_json(reloaded).expect("valid");
    let host = super::fake::FakeHost::new(store, clock);
    let rt = crate::runtime::Runtime::new(config, host);
    let u2 = rt.config.upstream_id("openai").expect("configured");
    assert_eq!(rt.snapshot(u2, T0).state, StateKind::Open, "kept by name");
    let azure = rt.config.upstream_id("azure").expect("configured");
    assert_eq!(rt.snapshot(azure, T0).state, StateKind::Closed);
}
