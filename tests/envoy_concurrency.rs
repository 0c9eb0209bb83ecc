#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One breaker state for the whole process: Envoy with two worker threads (two wasm VMs)
//! and bursts of parallel requests. Shared data with compare-and-swap must lose no failure,
//! admit no more than `half_open_max_requests` probes, and count every request exactly once.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Parallel client connections in the bursts below.
const CLIENTS: usize = 16;

fn two_workers(
    defaults: serde_json::Value,
    openai: &Mock,
    anthropic: &Mock,
    route_timeout: Duration,
) -> Envoy {
    let cfg = json!({
        "health_path": "/health",
        "tick_interval": 0.1,
        "failover": {"enabled": false},
        "defaults": defaults,
        "upstreams": [{"name": "openai", "fallbacks": ["anthropic"]}, {"name": "anthropic"}],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    });
    Envoy::builder()
        .concurrency(2)
        .filter_config(cfg.to_string())
        .clusters(&[("openai", openai.port()), ("anthropic", anthropic.port())])
        .route_timeout(route_timeout)
        .start()
}

/// The slack: a request is admitted when it starts and counted when its response arrives.
/// Requests admitted while the breaker was still CLOSED, before the fifth failure was
/// recorded, still reach the primary; at most one per client connection can be in flight
/// then, so the primary sees at most `failure_threshold + CLIENTS` calls.
#[test]
fn burst_of_200_against_a_failing_primary_reaches_it_at_most_threshold_plus_in_flight() {
    let openai = Mock::start_with_mode("openai", r#"{"mode":"error","status":500}"#);
    let anthropic = Mock::start("anthropic");
    let envoy = two_workers(
        json!({"failure_threshold": 5, "recovery_timeout": 30}),
        &openai,
        &anthropic,
        Duration::from_secs(1),
    );
    let responses = burst(200, CLIENTS, |_| {
        post_chat(&envoy.addr(), "gpt-4o-mini", &[])
    });
    let primary_hits = openai.hits();
    assert!(
        (5..=5 + CLIENTS as u64).contains(&primary_hits),
        "primary got {primary_hits} calls; bound is 5 + {CLIENTS} in flight"
    );
    let by_fallback = responses
        .iter()
        .filter(|r| r.status == 200 && r.header("x-ai-cb-served-by") == Some("anthropic"))
        .count() as u64;
    assert_eq!(
        by_fallback + primary_hits,
        200,
        "every other request was served by the fallback"
    );
    assert_eq!(anthropic.hits(), by_fallback);
    // Every failure the primary produced is recorded, none lost between the two workers.
    let failures = envoy.metric(
        "circuit_breaker_requests",
        &[("upstream", "openai"), ("outcome", "failure")],
    );
    assert_eq!(failures, Some(primary_hits as f64));
    // Exactly one worker performed the transition.
    let opened = envoy.metric(
        "circuit_breaker_transitions",
        &[("upstream", "openai"), ("from", "closed"), ("to", "open")],
    );
    assert_eq!(opened, Some(1.0));
}

#[test]
fn half_open_admits_exactly_max_probes_under_a_parallel_burst() {
    let openai = Mock::start_with_mode("openai", r#"{"mode":"error","status":500}"#);
    let anthropic = Mock::start("anthropic");
    let envoy = two_workers(
        json!({"failure_threshold": 1, "recovery_timeout": 0.5, "recovery_jitter": 0,
               "half_open_max_requests": 2, "success_threshold": 2}),
        &openai,
        &anthropic,
        Duration::from_secs(5),
    );
    assert_eq!(post_chat(&envoy.addr(), "gpt-4o-mini", &[]).status, 500);
    wait_state_at(
        &envoy,
        "/health",
        "openai",
        "half_open",
        Duration::from_secs(3),
    );
    // Probes take 1.5 s; the burst finishes on the fallback long before that.
    openai.set_mode(r#"{"mode":"slow","delay_ms":1500}"#);
    openai.reset();
    let responses = burst(60, CLIENTS, |_| {
        post_chat(&envoy.addr(), "gpt-4o-mini", &[])
    });
    assert!(responses.iter().all(|r| r.status == 200));
    let probes = responses
        .iter()
        .filter(|r| r.header("x-ai-cb-served-by") == Some("openai"))
        .count();
    assert_eq!(probes, 2, "exactly half_open_max_requests probes");
    assert_eq!(openai.hits(), 2);
    assert_eq!(
        state_at(&envoy, "/health", "openai"),
        "closed",
        "both probes succeeded"
    );
    assert_eq!(
        envoy.metric(
            "circuit_breaker_probes",
            &[("upstream", "openai"), ("result", "success")]
        ),
        Some(2.0)
    );
}

#[test]
fn request_counters_are_exact_across_workers() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let envoy = two_workers(json!({}), &openai, &anthropic, Duration::from_secs(1));
    let n = 300;
    let responses = burst(n, CLIENTS, |_| post_chat(&envoy.addr(), "gpt-4o-mini", &[]));
    assert!(responses.iter().all(|r| r.status == 200));
    assert_eq!(openai.hits(), n as u64);
    assert_eq!(
        envoy.metric(
            "circuit_breaker_requests",
            &[("upstream", "openai"), ("outcome", "success")]
        ),
        Some(n as f64)
    );
    assert_eq!(state_at(&envoy, "/health", "openai"), "closed");
}
