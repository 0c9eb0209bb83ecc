#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Streamed answers through a real Envoy with the release module, with the official OpenAI
//! and Anthropic SDKs as clients: failures inside 200-OK streams reach the breaker, a stream
//! that fails before its first token fails over invisibly, and a client never takes a broken
//! stream for a whole answer.

mod common;

use std::time::Duration;

use common::sdk::sdk_request;
use common::*;
use serde_json::{json, Value};

fn config(policy: Value) -> Value {
    json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "defaults": policy,
        "upstreams": [
            {"name": "openai", "fallbacks": ["anthropic"]},
            {"name": "anthropic"},
            {"name": "azure", "cluster": "azure-openai"}
        ],
        "routes": [{"upstream": "openai"}]
    })
}

fn stack(policy: Value) -> Stack {
    Stack::start(&config(policy), 1, Duration::from_secs(30))
}

/// One OpenAI-SDK chat completion through Envoy.
fn openai(s: &Stack, stream: bool, extra: Value) -> Value {
    let mut spec = json!({
        "api": "openai",
        "base_url": format!("http://{}/v1", s.envoy.addr()),
        "stream": stream,
        "timeout": 15,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    sdk_request(&spec, Duration::from_secs(30))
}

/// Makes sure the worker knows Envoy grants stop-iteration (the first kept request teaches
/// it), so answers can be held until their first token.
fn warm(s: &Stack) {
    let r = s.chat();
    assert_eq!(r.status, 200, "{}", r.text());
    s.openai.reset();
    s.anthropic.reset();
}

fn failures(s: &Stack, upstream: &str, reason: &str) -> Option<f64> {
    s.metric(
        "circuit_breaker_failures",
        &[("upstream", upstream), ("reason", reason)],
    )
}

fn served(r: &Value) -> &str {
    r["headers"]["x-ai-cb-served-by"]
        .as_str()
        .unwrap_or("<none>")
}

#[test]
fn a_stream_that_errors_on_its_first_event_fails_over_invisibly() {
    let s = stack(json!({}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_error","after_tokens":0,"preamble":false}"#);
    let r = openai(&s, true, json!({}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["text"], "Hello from anthropic", "{r}");
    assert_eq!(served(&r), "anthropic");
    assert_eq!(failures(&s, "openai", "stream_error"), Some(1.0));
    assert_eq!((s.openai.hits(), s.anthropic.hits()), (1, 1));
}

#[test]
fn a_provider_whose_every_stream_errors_opens_its_breaker_and_clients_see_no_error() {
    let s = stack(json!({"failure_threshold": 5, "recovery_timeout": 30}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_error","after_tokens":0}"#);
    for i in 0..8 {
        let r = openai(&s, true, json!({}));
        assert_eq!(r["ok"], true, "request {i}: {r}");
        assert_eq!(r["text"], "Hello from anthropic", "request {i}");
    }
    assert_eq!(s.state("openai"), "open");
    assert_eq!(
        s.openai.hits(),
        5,
        "only the five that tripped it: {:?}",
        s.openai.requests()
    );
    assert_eq!(failures(&s, "openai", "stream_error"), Some(5.0));
}

#[test]
fn an_error_after_the_first_tokens_reaches_the_client_and_counts() {
    let s = stack(json!({}));
    warm(&s);
    // Chunks 100 ms apart: the first tokens are released before the error arrives (an
    // error in the same chunk as the first token, still held, fails over instead).
    s.openai
        .set_mode(r#"{"mode":"stream_error","after_tokens":2,"chunk_delay_ms":100}"#);
    let r = openai(&s, true, json!({}));
    assert_eq!(r["ok"], false, "the SDK raises: {r}");
    assert_eq!(r["error"]["class"], "APIError", "{r}");
    assert_eq!(failures(&s, "openai", "stream_error"), Some(1.0));
    assert_eq!(s.anthropic.hits(), 0, "committed: no failover");
}

#[test]
fn a_stream_that_ends_cleanly_without_its_end_makes_the_sdk_raise() {
    let s = stack(json!({}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_no_marker","after_tokens":2}"#);
    let r = openai(&s, true, json!({}));
    assert_eq!(r["ok"], false, "never half an answer taken as whole: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("stream"),
        "{r}"
    );
    assert_eq!(failures(&s, "openai", "stream_truncated"), Some(1.0));
}

#[test]
fn a_stream_cut_mid_answer_is_a_connection_error_and_counts_as_truncated() {
    let s = stack(json!({}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_cut","after_tokens":2,"close":"rst"}"#);
    let r = openai(&s, true, json!({}));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        wait_until(Duration::from_secs(3), || failures(
            &s,
            "openai",
            "stream_truncated"
        ) == Some(1.0)),
        "counted"
    );
}

#[test]
fn finish_reason_without_done_is_a_whole_answer() {
    let s = stack(json!({}));
    warm(&s);
    s.openai.set_mode(r#"{"mode":"stream_no_done"}"#);
    let r = openai(&s, true, json!({}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["text"], "Hello from openai");
    assert_eq!(
        s.metric(
            "circuit_breaker_requests",
            &[("upstream", "openai"), ("outcome", "failure")]
        ),
        Some(0.0)
    );
}

#[test]
fn a_stalled_stream_is_ended_with_an_error_instead_of_hanging() {
    let s = stack(json!({"stream_idle_timeout": 1}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_stall","after_tokens":2,"stall_ms":20000}"#);
    let r = openai(&s, true, json!({}));
    assert_eq!(r["ok"], false, "{r}");
    let elapsed = r["elapsed"].as_f64().unwrap_or(99.0);
    assert!(
        elapsed < 4.0,
        "ended after {elapsed} s, not at the client's timeout"
    );
    assert_eq!(failures(&s, "openai", "stream_stall"), Some(1.0));
}

#[test]
fn a_slow_first_token_fails_over_before_the_deadline_plus_a_margin() {
    let s = stack(json!({"first_token_timeout": 1}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_first_token_delay","delay_ms":8000}"#);
    let r = openai(&s, true, json!({}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["text"], "Hello from anthropic");
    let elapsed = r["elapsed"].as_f64().unwrap_or(99.0);
    assert!(elapsed < 3.0, "answered after {elapsed} s (deadline 1 s)");
    assert_eq!(failures(&s, "openai", "slow_first_token"), Some(1.0));
}

#[test]
fn a_malformed_event_passes_through_and_is_counted_not_failed() {
    let s = stack(json!({}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_malformed","after_tokens":1}"#);
    let _ = openai(&s, true, json!({}));
    assert!(wait_until(Duration::from_secs(3), || s.metric(
        "circuit_breaker_stream_malformed_events",
        &[("upstream", "openai")]
    ) == Some(1.0)));
    assert_eq!(
        s.metric(
            "circuit_breaker_requests",
            &[("upstream", "openai"), ("outcome", "failure")]
        ),
        Some(0.0),
        "malformed is not a provider failure"
    );
}

#[test]
fn committed_tokens_keep_streaming_and_usage_and_first_token_time_are_recorded() {
    let s = stack(json!({}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"healthy","tokens":5,"chunk_delay_ms":300}"#);
    let output = |s: &Stack| {
        s.metric("circuit_breaker_output_tokens", &[("upstream", "openai")])
            .unwrap_or(0.0)
    };
    let before = output(&s);
    let r = openai(&s, true, json!({"include_usage": true}));
    assert_eq!(r["ok"], true, "{r}");
    let pieces: Vec<f64> = r["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(pieces.len(), 5, "{r}");
    assert!(
        pieces[4] - pieces[0] > 0.9,
        "the first token arrives well before the last: {pieces:?}"
    );
    let reported = r["usage"]["output"].as_f64().expect("usage in the stream");
    assert!(wait_until(Duration::from_secs(3), || output(&s) - before == reported));
    let plain = openai(&s, false, json!({}));
    assert_eq!(plain["ok"], true, "{plain}");
    let input = s
        .metric("circuit_breaker_input_tokens", &[("upstream", "openai")])
        .unwrap_or(0.0);
    assert!(input > 0.0, "non-streamed usage counted too");
    assert!(s
        .envoy
        .stats_prometheus()
        .contains("circuit_breaker_time_to_first_token_ms_bucket"));
}

#[test]
fn an_anthropic_sdk_stream_that_is_overloaded_first_fails_over() {
    let cfg = json!({
        "tick_interval": 0.1,
        "upstreams": [{"name": "anthropic", "fallbacks": ["azure"]},
                      {"name": "azure", "cluster": "azure-openai"}],
        "routes": [{"upstream": "anthropic"}]
    });
    let s = Stack::start(&cfg, 1, Duration::from_secs(30));
    let spec = json!({"api": "anthropic", "base_url": format!("http://{}", s.envoy.addr()), "stream": true});
    assert_eq!(sdk_request(&spec, Duration::from_secs(30))["ok"], true);
    s.anthropic
        .set_mode(r#"{"mode":"stream_error","after_tokens":0,"error_type":"overloaded_error"}"#);
    let r = sdk_request(&spec, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["text"], "Hello from azure");
    assert_eq!(failures(&s, "anthropic", "stream_error"), Some(1.0));
}

#[test]
fn without_stop_iteration_streams_are_judged_but_not_held() {
    let openai_mock = Mock::start("openai");
    let anthropic_mock = Mock::start("anthropic");
    let envoy = Envoy::builder()
        .filter_config(config(json!({})).to_string())
        .clusters(&[
            ("openai", openai_mock.port()),
            ("anthropic", anthropic_mock.port()),
        ])
        .allow_on_headers_stop_iteration(false)
        .concurrency(1)
        .start();
    openai_mock.set_mode(r#"{"mode":"stream_error","after_tokens":0}"#);
    for _ in 0..2 {
        let spec = json!({"api": "openai", "base_url": format!("http://{}/v1", envoy.addr()), "stream": true});
        let r = sdk_request(&spec, Duration::from_secs(30));
        assert_eq!(r["ok"], false, "the error reaches the client: {r}");
    }
    assert!(wait_until(Duration::from_secs(3), || envoy.metric(
        "circuit_breaker_failures",
        &[("upstream", "openai"), ("reason", "stream_error")]
    ) == Some(2.0)));
    assert_eq!(anthropic_mock.hits(), 0);
}

#[test]
fn the_outage_replayed_with_streams_shows_clients_no_error() {
    let s = stack(json!({"failure_threshold": 5, "recovery_timeout": 5, "success_threshold": 2}));
    warm(&s);
    s.openai
        .set_mode(r#"{"mode":"stream_error","after_tokens":0}"#);
    let url = format!("{}/v1/chat/completions", s.envoy.addr());
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": []}).to_string();
    for i in 0..20 {
        let r = http(
            "POST",
            &url,
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "request {i}");
        let text = r.text();
        assert!(
            text.contains("anthropic") && !text.contains("\"error\""),
            "request {i}: {text}"
        );
    }
    assert_eq!(
        s.openai.hits(),
        5,
        "the dead primary got the five that tripped it"
    );
    s.openai.set_mode(r#"{"mode":"healthy"}"#);
    std::thread::sleep(Duration::from_millis(5600));
    for i in 0..4 {
        let r = openai(&s, true, json!({}));
        assert_eq!(r["ok"], true, "SDK request {i} after recovery: {r}");
    }
    s.wait_state("openai", "closed", Duration::from_secs(5));
}
