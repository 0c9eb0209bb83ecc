//! Same-upstream retries before failover, and the first-byte deadline of a routed attempt.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::case::*;
use crate::breaker::StateKind;
use crate::config::Config;
use crate::exchange::{Effect, Flow, Step};
use crate::outcome::{FailureReason, Outcome};

/// `openai` retries once (fallback `anthropic`); `anthropic` answers within 2 s or times out.
const RETRY: &str = r#"{
    "defaults": {"failure_threshold": 3, "recovery_timeout": 10, "recovery_jitter": 0},
    "upstreams": [
        {"name": "openai", "fallbacks": ["anthropic"], "retry": {"attempts": 1}},
        {"name": "anthropic", "rewrite": {"model": "claude"}}
    ],
    "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
}"#;

const TIMEOUT: &str = r#"{
    "defaults": {"failure_threshold": 2, "recovery_timeout": 10, "recovery_jitter": 0},
    "upstreams": [
        {"name": "openai", "fallbacks": ["anthropic"], "response_timeout": 2},
        {"name": "anthropic", "rewrite": {"model": "claude"}}
    ],
    "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
}"#;

fn at(c: &Case, ms: u64) {
    c.clock.set(T0 + ms);
}

fn policy(json: &str) -> crate::config::Policy {
    let c = Config::from_json(json).expect("valid");
    c.upstream(c.upstream_id("openai").expect("openai"))
        .policy
        .clone()
}

#[test]
fn the_retry_delay_honours_a_short_retry_after_and_refuses_a_long_one() {
    use crate::exchange::retry_delay;
    let p = policy(RETRY);
    let limited = |ms| Outcome::Failure {
        reason: FailureReason::RateLimit,
        retry_after_ms: Some(ms),
    };
    assert_eq!(retry_delay(&p, &limited(1_000), 0, 0.5), Some(1_000));
    assert_eq!(retry_delay(&p, &limited(5_000), 0, 0.5), Some(5_000));
    assert_eq!(retry_delay(&p, &limited(5_001), 0, 0.5), None, "fails over");
    let five = Outcome::failure(FailureReason::Status5xx);
    assert_eq!(retry_delay(&p, &five, 0, 0.0), Some(50), "jittered backoff");
    assert_eq!(retry_delay(&p, &five, 0, 0.99), Some(149));
    assert_eq!(retry_delay(&p, &five, 1, 0.5), None, "attempts used up");
    let timeout = Outcome::failure(FailureReason::Timeout);
    assert_eq!(retry_delay(&p, &timeout, 0, 0.5), None, "not in `on`");
    assert_eq!(retry_delay(&p, &Outcome::Ignored, 0, 0.5), None);
    let off = policy(CONFIG);
    assert_eq!(retry_delay(&off, &five, 0, 0.5), None, "off by default");
}

#[test]
fn a_429_with_a_short_retry_after_is_retried_on_the_same_upstream_after_that_delay() {
    let mut c = Case::new(RETRY);
    c.post(CHAT);
    let r = c.response(429, &[("retry-after", "1")]);
    assert_eq!(r.flow, Flow::Pause, "held while the retry waits");
    assert!(call(&r).is_none(), "nothing sent before the delay");
    assert_eq!(c.ex.phase_name(), "retrying");
    assert_eq!(c.ex.wake_at(&c.w.rt.config), Some(T0 + 1_000));
    let drained = c.response_body(br#"{"error":"slow down"}"#, true);
    assert_eq!(drained.flow, Flow::Pause);
    at(&c, 999);
    assert_eq!(c.tick(None), Step::go(), "too early");
    at(&c, 1_000);
    let t = c.tick(None);
    let retry = call(&t).expect("retried");
    assert_eq!(retry.cluster, "openai", "the same upstream");
    assert_eq!(retry.body, CHAT, "no fallback rewrite");
    let a = c.answer(200, br#"{"id":"ok"}"#);
    let reply = reply(&a).expect("the retry's answer");
    assert_eq!(reply.status, 200);
    assert_eq!(
        header_of(&reply.headers, "x-ai-cb-served-by"),
        Some("openai")
    );
    assert_eq!(
        header_of(&reply.headers, "x-ai-cb-failover"),
        Some("openai->openai"),
        "the attempts"
    );
    assert_eq!(
        c.count("requests{openai,failure}"),
        1,
        "every attempt recorded"
    );
    assert_eq!(c.count("requests{openai,success}"), 1);
    assert_eq!(
        c.count("failovers{openai,openai,success}"),
        0,
        "not a failover"
    );
}

#[test]
fn a_retry_that_fails_again_goes_on_to_the_fallback() {
    let mut c = Case::new(RETRY);
    c.post(CHAT);
    c.response(500, &[]);
    at(&c, 100);
    let t = c.tick(None);
    assert_eq!(call(&t).map(|x| x.cluster.as_str()), Some("openai"));
    let a = c.answer(500, b"again");
    assert!(reply(&a).is_none());
    let next = call(&a).expect("the fallback, at once");
    assert_eq!(next.cluster, "anthropic");
    let served = c.answer(200, br#"{"id":"x"}"#);
    let reply = reply(&served).expect("fallback's answer");
    assert_eq!(
        header_of(&reply.headers, "x-ai-cb-failover"),
        Some("openai->openai->anthropic")
    );
    assert_eq!(c.count("requests{openai,failure}"), 2);
    assert_eq!(c.count("failovers{openai,anthropic,success}"), 1);
}

#[test]
fn a_retry_after_longer_than_max_retry_after_fails_over_at_once() {
    let mut c = Case::new(RETRY);
    c.post(CHAT);
    let r = c.response(429, &[("retry-after", "30")]);
    assert_eq!(call(&r).map(|x| x.cluster.as_str()), Some("anthropic"));
    assert_eq!(c.ex.phase_name(), "failing_over");
}

#[test]
fn a_retry_is_never_sent_once_its_breaker_has_opened() {
    let mut c = Case::new(RETRY);
    c.post(CHAT);
    c.response(503, &[]);
    // Other requests open the breaker while this one waits.
    let u = c.id("openai");
    for _ in 0..2 {
        c.w.rt.record(
            u,
            crate::breaker::Ticket::Counted,
            T0,
            &Outcome::failure(FailureReason::Status5xx),
        );
    }
    assert_eq!(c.state("openai"), StateKind::Open);
    at(&c, 200);
    let t = c.tick(None);
    assert_eq!(
        call(&t).map(|x| x.cluster.as_str()),
        Some("anthropic"),
        "the fallback instead"
    );
    assert_eq!(c.count("rejected{openai}"), 1);
}

#[test]
fn with_retries_off_a_500_fails_over_at_once() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    let r = c.response(500, &[]);
    assert_eq!(call(&r).map(|x| x.cluster.as_str()), Some("anthropic"));
}

#[test]
fn a_silent_primary_times_out_at_response_timeout_and_fails_over() {
    let mut c = Case::new(TIMEOUT);
    c.post(CHAT);
    assert_eq!(c.ex.wake_at(&c.w.rt.config), Some(T0 + 2_000));
    at(&c, 1_999);
    assert_eq!(c.tick(None), Step::go());
    at(&c, 2_000);
    let t = c.tick(None);
    let fb = call(&t).expect("fallback called at the deadline");
    assert_eq!(fb.cluster, "anthropic");
    assert_eq!(c.count("failures{openai,timeout}"), 1);
    // The abandoned attempt answers late: held, drained, never shown.
    let late = c.response(200, &[]);
    assert_eq!(late.flow, Flow::Pause);
    assert!(late
        .effects
        .iter()
        .all(|e| !matches!(e, Effect::SetResponseHeader(..))));
    let body = c.response_body(b"late", true);
    assert_eq!(body.effects, vec![Effect::ClearResponseBody { len: 4 }]);
    assert_eq!(c.count("requests{openai,success}"), 0, "not judged again");
    let a = c.answer(200, br#"{"id":"fb"}"#);
    let reply = reply(&a).expect("fallback's answer");
    assert_eq!(reply.body, br#"{"id":"fb"}"#);
    assert_eq!(
        header_of(&reply.headers, "x-ai-cb-failover"),
        Some("openai->anthropic")
    );
}

#[test]
fn a_silent_primary_with_nothing_to_fail_over_to_gets_a_504_at_its_deadline() {
    let mut c = Case::new(TIMEOUT);
    c.trip("anthropic");
    c.post(CHAT);
    at(&c, 2_000);
    let t = c.tick(None);
    let r = reply(&t).expect("answered at once");
    assert_eq!(r.status, 504);
    assert_eq!(
        header_of(&r.headers, "x-ai-cb-failover"),
        Some("openai (failed)")
    );
    assert_eq!(c.ex.phase_name(), "answered");
}

#[test]
fn a_callout_to_an_upstream_with_a_response_timeout_is_bounded_by_it() {
    let mut c = Case::new(
        r#"{"upstreams": [{"name": "openai", "fallbacks": ["b"]}, {"name": "b", "response_timeout": 3}],
            "routes": [{"upstream": "openai"}]}"#,
    );
    c.post(CHAT);
    let r = c.response(500, &[]);
    assert_eq!(call(&r).map(|x| x.timeout_ms), Some(3_000));
}
