//! Active recovery probes: the lease that elects one prober per process, the prober's
//! decisions over time, and what a probe's answer does to the breaker, on the fake host
//! with two workers sharing one store.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::fake::{workers, Worker};
use crate::breaker::{Admission, StateKind, Ticket};
use crate::config::{Config, UpstreamId};
use crate::outcome::{FailureReason, Outcome};
use crate::recovery::{worker_id, ProbeAnswer, ProbeCall, Prober};
use crate::store::probe_lease::{ProbeLease, ProbeResult};
use crate::store::Codec;

const PROBE: &str = r#", "recovery_probe": {"interval": 2, "timeout": 1,
    "headers": {"authorization": "Bearer from-config"}}"#;

/// openai (with `extra` keys) falls back to anthropic.
fn config(extra: &str) -> String {
    format!(
        r#"{{
    "defaults": {{"failure_threshold": 2, "recovery_timeout": 30, "recovery_jitter": 0,
                 "success_threshold": 2}},
    "upstreams": [
        {{"name": "openai", "fallbacks": ["anthropic"], "callout_cluster": "openai_callout"{extra}}},
        {{"name": "anthropic"}}
    ],
    "routes": [{{"upstream": "openai"}}]
}}"#
    )
}

const T0: u64 = 1_000_000;

fn openai(w: &Worker) -> UpstreamId {
    w.rt.config.upstream_id("openai").expect("configured")
}

/// Opens openai's breaker at `T0`.
fn open(w: &Worker) -> UpstreamId {
    let u = openai(w);
    for _ in 0..2 {
        w.rt.record(
            u,
            Ticket::Counted,
            T0,
            &Outcome::failure(FailureReason::Status5xx),
        );
    }
    assert_eq!(w.rt.snapshot(u, T0).state, StateKind::Open);
    u
}

#[test]
fn the_lease_goes_to_one_worker_and_is_renewed_by_it_each_interval() {
    let mut l = ProbeLease::default();
    assert!(l.claim(1, 10_000, 2_000, 1_000), "a free lease is taken");
    assert!(!l.claim(2, 10_500, 2_000, 1_000), "held by worker 1");
    assert!(!l.claim(1, 11_999, 2_000, 1_000), "not due yet");
    assert!(l.claim(1, 12_000, 2_000, 1_000), "due for its holder");
    assert!(
        !l.claim(2, 15_999, 2_000, 1_000),
        "unexpired: still worker 1's"
    );
    assert_eq!(l.holder, 1);
}

#[test]
fn the_lease_passes_to_another_worker_when_its_holder_goes_quiet() {
    let mut l = ProbeLease::default();
    assert!(l.claim(1, 10_000, 2_000, 1_000));
    // Worker 1 stops ticking: its lease lasts interval + max(interval, timeout) = 4 s.
    assert!(!l.claim(2, 13_999, 2_000, 1_000));
    assert!(l.claim(2, 14_000, 2_000, 1_000));
    assert_eq!(l.holder, 2);
    assert!(
        !l.claim(1, 14_500, 2_000, 1_000),
        "the old holder does not take it back"
    );
}

#[test]
fn worker_ids_are_never_zero_and_spread_over_u32() {
    assert_eq!(worker_id(0.0), 1);
    assert_eq!(worker_id(f64::NAN), 1);
    assert!(worker_id(0.999_999_9) > u32::MAX - 1_000);
    assert_ne!(worker_id(0.25), worker_id(0.75));
}

#[test]
fn a_prober_without_a_worker_id_never_probes() {
    let (ws, _, _) = workers(&config(PROBE), 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 0);
    open(a);
    assert!(p.tick(&a.rt, T0 + 10_000).is_empty());
}

#[test]
fn a_slow_probe_keeps_the_lease_until_it_can_have_answered() {
    let mut l = ProbeLease::default();
    assert!(l.claim(1, 10_000, 2_000, 5_000));
    assert_eq!(l.expires_ms, 10_000 + 5_000 + 2_000);
}

#[test]
fn the_lease_round_trips_through_its_encoding_and_rejects_garbage() {
    let mut l = ProbeLease::default();
    l.claim(7, 123_456, 2_000, 1_000);
    l.answered(ProbeResult::Failure, Some(503), 124_000);
    l.answered(ProbeResult::Success, Some(200), 126_000);
    assert_eq!(ProbeLease::decode(&l.encode()), Ok(l.clone()));
    let mut bytes = l.encode();
    bytes.push(0);
    assert!(ProbeLease::decode(&bytes).is_err());
    assert!(ProbeLease::decode(&[]).is_err());
    assert!(ProbeLease::decode(&[9, 0]).is_err());
}

#[test]
fn no_probe_is_sent_while_the_breaker_is_closed_or_just_opened() {
    let (ws, _, _) = workers(&config(PROBE), 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    assert!(p.tick(&a.rt, T0).is_empty(), "closed");
    open(a);
    assert!(
        p.tick(&a.rt, T0 + 1_999).is_empty(),
        "opened less than one interval ago"
    );
    assert_eq!(p.tick(&a.rt, T0 + 2_000).len(), 1);
}

#[test]
fn the_probe_goes_to_the_callout_cluster_with_the_configured_request() {
    let (ws, _, _) = workers(&config(PROBE), 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    let u = open(a);
    let calls = p.tick(&a.rt, T0 + 2_000);
    let [ProbeCall { upstream, call }] = calls.as_slice() else {
        panic!("one probe expected, got {calls:?}");
    };
    assert_eq!(*upstream, u);
    assert_eq!(call.cluster, "openai_callout");
    assert_eq!(call.timeout_ms, 1_000);
    let h = |k: &str| {
        call.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h(":method"), Some("GET"));
    assert_eq!(h(":path"), Some("/v1/models"));
    assert_eq!(h(":authority"), Some("openai"));
    assert_eq!(h("authorization"), Some("Bearer from-config"));
    assert!(call.body.is_empty());
}

#[test]
fn two_interleaved_workers_send_exactly_one_probe_per_interval() {
    let (ws, store, _) = workers(&config(PROBE), 2, T0);
    let (a, b) = (&ws[0], &ws[1]);
    let mut pa = Prober::new(&a.rt, 1);
    let pb = Rc::new(RefCell::new(Prober::new(&b.rt, 2)));
    let u = open(a);
    let mut sent = Vec::new();
    for i in 0..10u64 {
        let now = T0 + 2_000 + i * 1_000;
        // Worker b ticks between worker a's read of the lease and its write, when a writes;
        // otherwise right after a.
        let ran = Rc::new(Cell::new(None));
        let (other, rt_b, ran_b) = (Rc::clone(&pb), Rc::clone(&b.rt), Rc::clone(&ran));
        store.before_next_write(move || {
            if ran_b.get().is_none() {
                ran_b.set(Some(other.borrow_mut().tick(&rt_b, now).len()));
            }
        });
        let got_a = pa.tick(&a.rt, now).len();
        if ran.get().is_none() {
            ran.set(Some(pb.borrow_mut().tick(&b.rt, now).len()));
        }
        let got_b = ran.get().unwrap_or(0);
        sent.push((now - T0, got_a, got_b));
        // Probes are answered (still failing) before the next tick.
        if got_a > 0 {
            pa.answered(&a.rt, u, ProbeAnswer::Status(503), now + 100);
        }
        if got_b > 0 {
            pb.borrow_mut()
                .answered(&b.rt, u, ProbeAnswer::Status(503), now + 100);
        }
    }
    let total: usize = sent.iter().map(|s| s.1 + s.2).sum();
    assert_eq!(
        total, 5,
        "one probe every 2 s over 10 s of 1 s ticks: {sent:?}"
    );
    assert!(
        sent.iter().all(|s| s.1 + s.2 <= 1),
        "never two at once: {sent:?}"
    );
    assert!(
        sent.iter().all(|s| s.1 == 0),
        "b won the first race and kept the lease: {sent:?}"
    );
    assert_eq!(a.rt.snapshot(u, T0 + 12_000).state, StateKind::Open);
}

#[test]
fn another_worker_takes_over_probing_when_the_holder_goes_quiet() {
    let (ws, _, _) = workers(&config(PROBE), 2, T0);
    let (a, b) = (&ws[0], &ws[1]);
    let (mut pa, mut pb) = (Prober::new(&a.rt, 1), Prober::new(&b.rt, 2));
    let u = open(a);
    assert_eq!(pa.tick(&a.rt, T0 + 2_000).len(), 1);
    pa.answered(&a.rt, u, ProbeAnswer::NoAnswer, T0 + 3_000);
    // a goes quiet; b sees the lease held until 2 s + 2 s + 2 s.
    assert!(pb.tick(&b.rt, T0 + 4_000).is_empty());
    assert!(pb.tick(&b.rt, T0 + 5_999).is_empty());
    assert_eq!(pb.tick(&b.rt, T0 + 6_000).len(), 1);
    assert_eq!(pb.tick(&b.rt, T0 + 6_000).len(), 0, "in flight");
}

#[test]
fn a_successful_probe_moves_the_breaker_to_half_open_at_once() {
    let (ws, _, _) = workers(&config(PROBE), 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    let u = open(a);
    assert_eq!(p.tick(&a.rt, T0 + 2_000).len(), 1);
    let r = p.answered(&a.rt, u, ProbeAnswer::Status(200), T0 + 2_050);
    assert_eq!(r, ProbeResult::Success);
    assert_eq!(a.rt.snapshot(u, T0 + 2_050).state, StateKind::HalfOpen);
    assert_eq!(a.metrics().count("transitions{openai,open,half_open}"), 1);
    assert_eq!(a.metrics().count("recovery_probes{openai,success}"), 1);
    // Live requests confirm as usual: success_threshold (2) probes close it.
    for _ in 0..2 {
        let Admission::Admitted(t) = a.rt.admit(u, T0 + 2_100) else {
            panic!("a live probe is admitted in half-open");
        };
        a.rt.record(u, t, T0 + 2_200, &Outcome::Success);
    }
    assert_eq!(a.rt.snapshot(u, T0 + 2_200).state, StateKind::Closed);
    assert!(
        p.tick(&a.rt, T0 + 4_000).is_empty(),
        "no probes once closed"
    );
}

#[test]
fn failed_probes_keep_the_breaker_open_past_recovery_timeout_without_live_calls() {
    let (ws, _, _) = workers(&config(PROBE), 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    let u = open(a);
    let mut now = T0;
    while now < T0 + 60_000 {
        now += 1_000;
        a.rt.tick(now);
        for c in p.tick(&a.rt, now) {
            p.answered(&a.rt, c.upstream, ProbeAnswer::Status(503), now + 10);
        }
        let got = a.rt.admit(u, now + 20);
        assert!(
            matches!(got, Admission::Rejected { .. }),
            "no live call at {}: {got:?}",
            now - T0
        );
    }
    assert_eq!(a.metrics().count("recovery_probes{openai,failure}"), 30);
    assert_eq!(a.metrics().count("transitions{openai,open,half_open}"), 0);
}

#[test]
fn a_probe_the_proxy_could_not_send_leaves_recovery_timeout_in_charge() {
    let (ws, _, _) = workers(&config(PROBE), 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    let u = open(a);
    assert_eq!(p.tick(&a.rt, T0 + 2_000).len(), 1);
    p.answered(&a.rt, u, ProbeAnswer::NotSent, T0 + 2_000);
    assert_eq!(a.metrics().count("recovery_probes{openai,failure}"), 1);
    a.rt.tick(T0 + 30_000);
    assert_eq!(a.rt.snapshot(u, T0 + 30_000).state, StateKind::HalfOpen);
}

#[test]
fn an_unexpected_status_is_a_failure_and_listed_statuses_are_successes() {
    let json = config(r#", "recovery_probe": {"interval": 2, "expected_statuses": [200, 401]}"#);
    let (ws, _, _) = workers(&json, 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    let u = open(a);
    p.tick(&a.rt, T0 + 2_000);
    assert_eq!(
        p.answered(&a.rt, u, ProbeAnswer::Status(404), T0 + 2_010),
        ProbeResult::Failure
    );
    p.tick(&a.rt, T0 + 4_000);
    assert_eq!(
        p.answered(&a.rt, u, ProbeAnswer::Status(401), T0 + 4_010),
        ProbeResult::Success
    );
}

#[test]
fn the_health_endpoint_shows_the_last_probe_and_the_counts() {
    let (ws, _, _) = workers(&config(PROBE), 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    let u = open(a);
    p.tick(&a.rt, T0 + 2_000);
    p.answered(&a.rt, u, ProbeAnswer::Status(503), T0 + 2_010);
    let v: serde_json::Value = serde_json::from_str(&a.rt.health(T0 + 2_020)).expect("json");
    let probe = &v["breakers"]["openai"]["recovery_probe"];
    assert_eq!(probe["failures"], 1);
    assert_eq!(probe["successes"], 0);
    assert_eq!(probe["last_result"], "failure");
    assert_eq!(probe["last_status"], 503);
    assert!(probe["last_at"].is_string());
    assert!(v["breakers"]["anthropic"]["recovery_probe"].is_null());
}

#[test]
fn without_a_recovery_probe_nothing_is_probed_and_recovery_timeout_decides() {
    let json = config("");
    let c = Config::from_json(&json).expect("valid");
    assert!(c.upstreams().iter().all(|u| u.recovery_probe.is_none()));
    let (ws, _, _) = workers(&json, 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    let u = open(a);
    for s in 1..=29 {
        assert!(p.tick(&a.rt, T0 + s * 1_000).is_empty());
        a.rt.tick(T0 + s * 1_000);
    }
    assert_eq!(a.rt.snapshot(u, T0 + 29_000).state, StateKind::Open);
    a.rt.tick(T0 + 30_000);
    assert_eq!(a.rt.snapshot(u, T0 + 30_000).state, StateKind::HalfOpen);
}

#[test]
fn forced_open_upstreams_are_not_probed() {
    let json = config(&format!(r#", "mode": "forced_open"{PROBE}"#));
    let (ws, _, _) = workers(&json, 1, T0);
    let a = &ws[0];
    let mut p = Prober::new(&a.rt, 1);
    for s in 1..=10 {
        assert!(p.tick(&a.rt, T0 + s * 1_000).is_empty());
    }
}
