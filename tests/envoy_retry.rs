#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Same-upstream retries and the first-byte `response_timeout` against a real Envoy: a
//! transient failure is tried again on the primary (after the provider's `Retry-After`), a
//! persistent one goes to the fallback within the breaker's threshold, and a silent primary
//! is abandoned at its deadline, not at the route timeout.

mod common;

use std::time::{Duration, Instant};

use common::sdk::sdk_request;
use common::*;
use serde_json::{json, Value};

/// openai (primary, `primary` policy keys merged in) → anthropic (model rewrite). The timer
/// runs every 100 ms so retry delays and deadlines are kept closely.
fn stack(primary: Value, route_timeout: Duration) -> Stack {
    let mut openai = json!({"name": "openai", "fallbacks": ["anthropic"]});
    if let (Some(o), Some(extra)) = (openai.as_object_mut(), primary.as_object()) {
        o.extend(extra.clone());
    }
    let cfg = json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "defaults": {"failure_threshold": 5, "success_threshold": 2, "recovery_timeout": 30,
                     "recovery_jitter": 0},
        "upstreams": [
            openai,
            {"name": "anthropic", "rewrite": {"model": "claude-3-5-sonnet-20241022"}},
            {"name": "big", "cluster": "azure-openai", "rewrite": {"model": "gpt-4.1"}}
        ],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    });
    Stack::start(&cfg, 1, route_timeout)
}

fn unix_ms(request: &Value) -> u64 {
    request["unix_ms"].as_u64().expect("unix_ms")
}

#[test]
fn a_429_with_retry_after_1_is_answered_by_the_primary_after_waiting_a_second() {
    let s = stack(json!({"retry": {"attempts": 1}}), Duration::from_secs(30));
    s.openai
        .set_mode(r#"{"mode":"fail_next","count":1,"with":{"mode":"rate_limit","retry_after":1}}"#);
    let spec = json!({"api": "openai", "base_url": format!("http://{}/v1", s.envoy.addr())});
    let out = sdk_request(&spec, Duration::from_secs(30));
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(
        out["text"], "Hello from openai",
        "served by the primary: {out}"
    );
    assert_eq!(out["headers"]["x-ai-cb-served-by"], "openai");
    assert_eq!(out["headers"]["x-ai-cb-failover"], "openai->openai");
    let calls = s.openai.requests();
    assert_eq!(calls.len(), 2, "the first attempt and one retry");
    let gap = unix_ms(&calls[1]) - unix_ms(&calls[0]);
    assert!(gap >= 1_000, "the retry came {gap} ms after the 429");
    assert!(gap < 2_000, "and no later than a tick after: {gap} ms");
    assert_eq!(s.anthropic.hits(), 0, "no failover");
    let requests = |outcome| {
        s.metric(
            "circuit_breaker_requests",
            &[("upstream", "openai"), ("outcome", outcome)],
        )
    };
    assert_eq!(requests("failure"), Some(1.0), "every attempt is recorded");
    assert_eq!(requests("success"), Some(1.0));
}

#[test]
fn a_500_once_is_retried_on_the_primary_without_failover() {
    let s = stack(json!({"retry": {"attempts": 1}}), Duration::from_secs(30));
    s.openai
        .set_mode(r#"{"mode":"fail_next","count":1,"with":{"mode":"error","status":500}}"#);
    let started = Instant::now();
    let r = s.chat();
    let took = started.elapsed();
    assert_eq!((r.status, served_by(&r)), (200, "openai"), "{}", r.text());
    assert_eq!(
        r.json()["model"],
        "gpt-4o-mini",
        "the model the client chose"
    );
    assert_eq!(s.openai.hits(), 2);
    assert_eq!(s.anthropic.hits(), 0);
    assert!(took < Duration::from_secs(1), "a short backoff: {took:?}");
    assert_eq!(
        s.metric(
            "circuit_breaker_failovers",
            &[
                ("from", "openai"),
                ("to", "anthropic"),
                ("result", "success")
            ]
        )
        .unwrap_or(0.0),
        0.0
    );
}

#[test]
fn a_persistent_500_costs_the_primary_at_most_failure_threshold_calls() {
    let s = stack(json!({"retry": {"attempts": 1}}), Duration::from_secs(30));
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for i in 0..8 {
        let r = s.chat();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(served_by(&r), "anthropic", "request {i}");
        assert_eq!(r.json()["model"], "claude-3-5-sonnet-20241022");
    }
    let primary = s.openai.hits();
    assert!(primary <= 5, "the primary got {primary} calls");
    assert_eq!(primary, 5, "two full tries, then the 5th failure opens it");
    assert_eq!(s.state("openai"), "open");
    assert_eq!(s.anthropic.hits(), 8);
}

#[test]
fn a_silent_primary_is_abandoned_at_response_timeout_and_the_fallback_answers() {
    // The route timeout (30 s) is never reached.
    let s = stack(json!({"response_timeout": 2}), Duration::from_secs(30));
    s.openai.set_mode(r#"{"mode":"hang","hang_ms":20000}"#);
    let started = Instant::now();
    let r = s.chat();
    let took = started.elapsed();
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-ai-cb-failover"), Some("openai->anthropic"));
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(
        took < Duration::from_millis(2_500),
        "2 s + one 100 ms tick + the fallback: {took:?}"
    );
    assert_eq!(
        s.metric(
            "circuit_breaker_failures",
            &[("upstream", "openai"), ("reason", "timeout")]
        ),
        Some(1.0)
    );
    // The next request is not held up by the abandoned one.
    s.openai.set_mode(r#"{"mode":"healthy"}"#);
    let r = s.chat();
    assert_eq!((r.status, served_by(&r)), (200, "openai"));
}

fn requests(s: &Stack, upstream: &str, outcome: &str) -> Option<f64> {
    s.metric(
        "circuit_breaker_requests",
        &[("upstream", upstream), ("outcome", outcome)],
    )
}

#[test]
fn insufficient_quota_opens_the_breaker_at_once_and_keeps_it_open_for_quota_recovery_timeout() {
    let s = stack(
        json!({"quota_recovery_timeout": 3}),
        Duration::from_secs(30),
    );
    s.openai.set_mode(r#"{"mode":"quota"}"#);
    let r = s.chat();
    let opened = Instant::now();
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
    assert_eq!(s.state("openai"), "open", "one quota error is enough");
    assert_eq!(
        s.metric(
            "circuit_breaker_failures",
            &[("upstream", "openai"), ("reason", "quota_exhausted")]
        ),
        Some(1.0)
    );
    for _ in 0..3 {
        assert_eq!(served_by(&s.chat()), "anthropic");
    }
    assert_eq!(s.openai.hits(), 1, "no more calls to a used-up account");
    std::thread::sleep(Duration::from_millis(2_500).saturating_sub(opened.elapsed()));
    assert_eq!(s.state("openai"), "open", "still open at 2.5 s");
    s.wait_state("openai", "half_open", Duration::from_secs(2));
    let after = opened.elapsed();
    assert!(after >= Duration::from_secs(3), "{after:?}");
}

#[test]
fn a_prompt_too_long_is_served_by_the_larger_upstream_and_counts_no_failure() {
    let s = stack(
        json!({"context_window_fallback": "big"}),
        Duration::from_secs(30),
    );
    s.openai.set_mode(r#"{"mode":"context_length"}"#);
    let r = s.chat();
    assert_eq!((r.status, served_by(&r)), (200, "big"), "{}", r.text());
    assert_eq!(
        r.json()["model"],
        "gpt-4.1",
        "the larger upstream's rewrite"
    );
    assert_eq!(r.header("x-ai-cb-failover"), Some("openai->big"));
    assert_eq!(s.azure.hits(), 1);
    assert_eq!(s.anthropic.hits(), 0, "not a failover to the fallbacks");
    assert_eq!(requests(&s, "openai", "ignored"), Some(1.0));
    assert_eq!(
        requests(&s, "openai", "failure").unwrap_or(0.0),
        0.0,
        "never a failure"
    );
    assert_eq!(s.state("openai"), "closed");
}

#[test]
fn without_a_context_window_fallback_the_400_passes_through_untouched() {
    let s = stack(json!({}), Duration::from_secs(30));
    s.openai.set_mode(r#"{"mode":"context_length"}"#);
    let r = s.chat();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    assert_eq!(s.anthropic.hits() + s.azure.hits(), 0);
}

#[test]
fn a_content_policy_400_reaches_the_client_unchanged() {
    let s = stack(json!({}), Duration::from_secs(30));
    s.openai.set_mode(r#"{"mode":"content_policy"}"#);
    let direct = post_chat(&s.openai.addr(), "gpt-4o-mini", &[]);
    let r = s.chat();
    assert_eq!(r.status, 400);
    assert_eq!(r.body, direct.body, "the provider's body, byte for byte");
    assert_eq!(r.json()["error"]["code"], "content_policy_violation");
    assert_eq!(r.header("x-ai-cb-failover"), None);
    assert_eq!(s.anthropic.hits(), 0, "no failover");
    assert_eq!(requests(&s, "openai", "ignored"), Some(1.0));
    assert_eq!(requests(&s, "openai", "failure").unwrap_or(0.0), 0.0);
}
