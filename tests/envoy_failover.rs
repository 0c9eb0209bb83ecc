#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Zero-error failover against a real Envoy: a request that fails on one upstream is re-sent
//! to the next admitting fallback inside the same client request.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// openai (primary) → anthropic (model and header rewrite) → azure (path and host rewrite).
fn stack(failover: Value, concurrency: u32) -> Stack {
    let cfg = json!({
        "health_path": HEALTH_PATH,
        "defaults": {"failure_threshold": 5, "success_threshold": 2, "recovery_timeout": 30},
        "failover": failover,
        "upstreams": [
            {"name": "openai", "fallbacks": ["anthropic", "azure"]},
            {"name": "anthropic", "rewrite": {"model": "claude-3-5-sonnet-20241022", "headers": {"x-provider": "anthropic"}}},
            {"name": "azure", "cluster": "azure-openai",
             "rewrite": {"path": "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-02-15-preview",
                         "host": "myco.openai.azure.com"}}
        ],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    });
    Stack::start(&cfg, concurrency, Duration::from_millis(400))
}

#[test]
fn a_primary_outage_shows_clients_no_error_and_the_primary_gets_exactly_five_calls() {
    let s = stack(json!({}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for i in 0..20 {
        let r = s.chat();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(served_by(&r), "anthropic");
        let expected = if i < 5 {
            Some("openai->anthropic")
        } else {
            None
        };
        assert_eq!(r.header("x-ai-cb-failover"), expected, "request {i}");
    }
    assert_eq!(
        s.openai.hits(),
        5,
        "exactly the five that tripped the breaker"
    );
    assert_eq!(s.anthropic.hits(), 20);
    let f = [
        ("from", "openai"),
        ("to", "anthropic"),
        ("result", "success"),
    ];
    assert_eq!(s.metric("circuit_breaker_failovers", &f), Some(5.0));
    assert_eq!(
        s.metric(
            "circuit_breaker_requests",
            &[("upstream", "openai"), ("outcome", "failure")]
        ),
        Some(5.0),
        "the primary's failures still count against its breaker"
    );
    assert_eq!(
        s.metric(
            "circuit_breaker_requests",
            &[("upstream", "anthropic"), ("outcome", "success")]
        ),
        Some(20.0),
        "the fallback's outcomes count against the fallback's breaker"
    );
}

#[test]
fn the_fallback_receives_the_original_request_with_its_rewrite() {
    let s = stack(json!({}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":502}"#);
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"temperature":0.3}"#;
    let r = http(
        "POST",
        &format!("{}/v1/chat/completions", s.envoy.addr()),
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-7"),
        ],
        body.as_bytes(),
    );
    assert_eq!((r.status, served_by(&r)), (200, "anthropic"));
    assert_eq!(r.json()["model"], "claude-3-5-sonnet-20241022");
    let got = &s.anthropic.requests()[0];
    assert_eq!(got["method"], "POST");
    assert_eq!(got["path"], "/v1/chat/completions");
    assert_eq!(got["headers"]["x-request-id"], "req-7");
    assert_eq!(got["headers"]["x-provider"], "anthropic");
    assert!(
        got["headers"].get("x-ai-cb-upstream").is_none()
            || got["headers"]["x-ai-cb-upstream"] == "anthropic"
    );
    let sent: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "claude-3-5-sonnet-20241022");
    assert_eq!(sent["messages"][0]["content"], "hello");
    assert_eq!(sent["temperature"], 0.3);
}

#[test]
fn a_primary_timeout_is_answered_by_the_fallback_within_the_budget() {
    let s = stack(json!({"timeout": 2}), 1);
    s.openai.set_mode(r#"{"mode":"hang","hang_ms":5000}"#);
    let started = Instant::now();
    let r = s.chat();
    let took = started.elapsed();
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
    // Budget: route timeout (0.4 s) + failover.timeout (2 s).
    assert!(took < Duration::from_millis(2_400), "{took:?}");
    assert!(
        took >= Duration::from_millis(400),
        "waited for the route timeout first: {took:?}"
    );
    assert_eq!(
        s.metric(
            "circuit_breaker_failures",
            &[("upstream", "openai"), ("reason", "timeout")]
        ),
        Some(1.0)
    );
}

#[test]
fn with_two_attempts_the_second_fallback_serves_when_the_first_fails() {
    let s = stack(json!({"max_attempts": 2}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    s.anthropic.set_mode(r#"{"mode":"error","status":529}"#);
    let r = s.chat();
    assert_eq!((r.status, served_by(&r)), (200, "azure"), "{}", r.text());
    assert_eq!(
        r.header("x-ai-cb-failover"),
        Some("openai->anthropic->azure")
    );
    let got = &s.azure.requests()[0];
    assert_eq!(
        got["target"],
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-02-15-preview"
    );
    assert_eq!(got["headers"]["host"], "myco.openai.azure.com");
    assert_eq!(
        s.metric(
            "circuit_breaker_failovers",
            &[
                ("from", "openai"),
                ("to", "anthropic"),
                ("result", "failure")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.metric(
            "circuit_breaker_failovers",
            &[
                ("from", "anthropic"),
                ("to", "azure"),
                ("result", "success")
            ]
        ),
        Some(1.0)
    );
}

/// When every attempt fails the client gets the primary's own response, unchanged: it is the
/// provider the request was meant for, its error body is the one the client's SDK expects,
/// and `x-ai-cb-failover` says the fallbacks were tried and failed.
#[test]
fn when_every_attempt_fails_the_client_gets_the_original_failure() {
    let s = stack(json!({"max_attempts": 2}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":503}"#);
    s.anthropic.set_mode(r#"{"mode":"error","status":500}"#);
    s.azure.set_mode(r#"{"mode":"error","status":502}"#);
    let r = s.chat();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-mock-provider"), Some("openai"));
    assert_eq!(served_by(&r), "openai");
    assert_eq!(r.json()["error"]["message"], "mock 503");
    assert_eq!(
        r.header("x-ai-cb-failover"),
        Some("openai->anthropic->azure (failed)")
    );
    assert_eq!((s.anthropic.hits(), s.azure.hits()), (1, 1));
}

#[test]
fn an_oversize_body_is_not_retried() {
    let s = stack(json!({"max_body_bytes": 200}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    let big =
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(500)}]})
            .to_string();
    let r = http(
        "POST",
        &format!("{}/v1/chat/completions", s.envoy.addr()),
        &[],
        big.as_bytes(),
    );
    assert_eq!((r.status, served_by(&r)), (500, "openai"));
    assert_eq!(r.header("x-ai-cb-failover"), None);
    assert_eq!(s.anthropic.hits(), 0);
    // A chunked body (no content-length) over the limit is not retried either: the filter
    // stops keeping it once it grows past the limit.
    let half = big.len() / 2;
    let r = post_chunked(
        &s.envoy.addr(),
        "/v1/chat/completions",
        &[&big[..half], &big[half..]],
    );
    assert_eq!(r.status, 500);
    assert_eq!(s.anthropic.hits(), 0);
    // A small chunked body is kept and re-sent.
    let small = chat_body("gpt-4o-mini");
    let r = post_chunked(&s.envoy.addr(), "/v1/chat/completions", &[&small]);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
}

#[test]
fn a_method_that_is_not_eligible_is_not_retried() {
    let s = stack(json!({}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for method in ["GET", "PUT", "DELETE"] {
        let r = http(method, &format!("{}/v1/models", s.envoy.addr()), &[], b"");
        assert_eq!((r.status, served_by(&r)), (500, "openai"), "{method}");
    }
    assert_eq!(s.anthropic.hits(), 0);
}

#[test]
fn failover_disabled_restores_the_plain_breaker() {
    let s = stack(json!({"enabled": false}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for _ in 0..5 {
        let r = s.chat();
        assert_eq!((r.status, served_by(&r)), (500, "openai"));
    }
    assert_eq!(
        served_by(&s.chat()),
        "anthropic",
        "the breaker still reroutes"
    );
    assert_eq!(s.anthropic.hits(), 1);
}

#[test]
fn an_open_fallback_is_skipped_and_counted() {
    let s = stack(json!({}), 1);
    // anthropic trips first (5 failures served directly... via failover from a failing openai).
    s.anthropic.set_mode(r#"{"mode":"error","status":500}"#);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for _ in 0..4 {
        assert_eq!(s.chat().status, 500);
    }
    // Each request failed on openai, then on anthropic; both breakers are now at 4 failures.
    let r = s.chat();
    assert_eq!(r.status, 500);
    // Both open now: the next request cannot reach either, and azure (healthy) serves directly.
    let r = s.chat();
    assert_eq!((r.status, served_by(&r)), (200, "azure"));
    assert_eq!(
        r.header("x-ai-cb-failover"),
        None,
        "rerouted by the breaker, not a failover"
    );
    assert_eq!(s.openai.hits(), 5);
    assert_eq!(s.anthropic.hits(), 5);
}

#[test]
fn streaming_failover_answers_with_a_whole_valid_sse_body() {
    let s = stack(json!({}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let r = http(
        "POST",
        &format!("{}/v1/chat/completions", s.envoy.addr()),
        &[],
        body.as_bytes(),
    );
    assert_eq!((r.status, served_by(&r)), (200, "anthropic"));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect();
    assert!(events.len() >= 3, "{text}");
    for e in &events {
        assert!(e.starts_with("data: "), "{e:?}");
    }
    assert_eq!(events.last().unwrap().trim(), "data: [DONE]");
    let first: Value = serde_json::from_str(events[0].trim_start_matches("data: ")).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
}

#[test]
fn burst_with_two_workers_shows_no_client_error() {
    let s = stack(json!({}), 2);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    let responses = burst(150, 16, |_| s.chat());
    let errors: Vec<u16> = responses
        .iter()
        .map(|r| r.status)
        .filter(|&st| st != 200)
        .collect();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    let hits = s.openai.hits();
    assert!(
        (5..=5 + 16).contains(&hits),
        "primary got {hits}; bound 5 + 16 in flight"
    );
    assert_eq!(s.anthropic.hits(), 150);
}
