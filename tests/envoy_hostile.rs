#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Hostile input through a real Envoy (issue 15, part 5): each gives a clear answer, never a
//! panic (which would kill the worker's VM and, with FAIL_OPEN, the breaker) nor a hang.
//! Covered elsewhere: bodies over every limit and compressed bodies (`envoy_defects.rs`), a
//! client-sent route header (`envoy_breaker.rs`), the parsers under 10^6 fuzz inputs each
//! (`tests/fuzz`, RELIABILITY.md).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// `openai` (failing over to `anthropic`) behind one worker, with a `model` route, so the
/// filter reads the body of every request.
fn hostile_stack() -> Stack {
    let cfg = json!({
        "health_path": HEALTH_PATH,
        "upstreams": [
            {"name": "openai", "fallbacks": ["anthropic"]},
            {"name": "anthropic"},
            {"name": "azure", "cluster": "azure-openai"}
        ],
        "routes": [{"match": {"model": "azure-model"}, "upstream": "azure"},
                   {"upstream": "openai"}]
    });
    Stack::start(&cfg, 1, Duration::from_secs(5))
}

/// The filter still runs (its VM did not die): a request is routed and marked.
fn assert_filter_alive(s: &Stack) {
    let r = s.chat();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("x-ai-cb-served-by").is_some(),
        "the filter still marks answers"
    );
    assert!(!s.envoy.log().contains("panicked"), "{}", s.envoy.log());
}

fn raw(s: &Stack, head_extra: &[u8], body: &[u8]) -> Response {
    let addr = s.envoy.addr();
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(head_extra);
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    raw_http(&addr, &req, Duration::from_secs(10)).expect("answered in time")
}

#[test]
fn a_non_utf8_request_header_value_is_served_and_failed_over_without_killing_the_filter() {
    let s = hostile_stack();
    let body = chat_body("gpt-4o-mini");
    let r = raw(&s, b"x-note: caf\xe9 cr\xe8me\r\n", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-cb-served-by"), Some("openai"));
    // The same header on a request that fails over (the callout copies the request headers).
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    let r = raw(&s, b"x-note: caf\xe9\r\n", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-cb-failover"), Some("openai->anthropic"));
    s.openai.mode("healthy");
    assert_filter_alive(&s);
}

#[test]
fn a_huge_request_header_value_is_routed_or_refused_by_envoy_never_a_hang() {
    let s = hostile_stack();
    let body = chat_body("azure-model");
    let big = format!("x-big: {}\r\n", "v".repeat(50 * 1024));
    let r = raw(&s, big.as_bytes(), body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ai-cb-served-by"), Some("azure"));
    // Over Envoy's 60 KiB header limit: Envoy's own 431, before the filter.
    let bigger = format!("x-big: {}\r\n", "v".repeat(70 * 1024));
    let r = raw(&s, bigger.as_bytes(), body.as_bytes());
    assert_eq!(r.status, 431, "{}", r.text());
    assert_filter_alive(&s);
}

#[test]
fn invalid_or_deeply_nested_json_routes_on_the_default_route() {
    let s = hostile_stack();
    let nested = format!(
        r#"{{"model":"azure-model","x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_first = format!(
        r#"{{"x":{}{},"model":"azure-model"}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: [(&str, &[u8]); 4] = [
        ("not json", b"{\"model\": \"azure-model\", "),
        ("not utf-8", b"{\"model\":\"azure-\xff\"}"),
        ("nested after model", nested.as_bytes()),
        ("nested before model", deep_first.as_bytes()),
    ];
    for (what, body) in cases {
        let started = Instant::now();
        let r = raw(&s, b"", body);
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert!(
            matches!(
                r.header("x-ai-cb-served-by"),
                Some("openai") | Some("azure")
            ),
            "{what}: routed by the filter: {:?}",
            r.header("x-ai-cb-served-by")
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            started.elapsed()
        );
        eprintln!("{what}: served by {:?}", r.header("x-ai-cb-served-by"));
    }
    assert_filter_alive(&s);
}

#[test]
fn the_health_path_with_a_body_answers_the_health_json() {
    let s = hostile_stack();
    let url = format!("{}{HEALTH_PATH}", s.envoy.addr());
    let big = vec![b'x'; 2 << 20];
    let r = http("GET", &url, &[("content-type", "text/plain")], &big);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["providers"]["openai"], "closed");
    let r = http("POST", &url, &[], b"{}");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        s.openai.hits(),
        0,
        "the health path never reaches a provider"
    );
    assert_filter_alive(&s);
}

#[test]
fn an_sse_line_of_several_mib_streams_through_whole() {
    let s = hostile_stack();
    let line = format!("data: {{\"x\":\"{}\"}}\n\n", "a".repeat(4 << 20));
    let body = format!("{line}data: [DONE]\n\n");
    s.openai.set_mode(
        &json!({"mode": "respond", "status": 200, "body": body,
                "headers": {"content-type": "text/event-stream"}})
        .to_string(),
    );
    let started = Instant::now();
    let r = post_chat(&s.envoy.addr(), "gpt-4o-mini", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len(), "every byte reaches the client");
    assert!(started.elapsed() < Duration::from_secs(10));
    s.openai.mode("healthy");
    assert_filter_alive(&s);
}

#[test]
fn absurd_retry_after_values_open_the_breaker_for_a_bounded_time() {
    let cfg = json!({
        "health_path": HEALTH_PATH,
        "defaults": {"failure_threshold": 1, "recovery_timeout": 1, "max_recovery_timeout": 2,
                     "recovery_jitter": 0},
        "upstreams": [{"name": "openai"}],
        "routes": [{"upstream": "openai"}]
    });
    let s = Stack::start(&cfg, 1, Duration::from_secs(5));
    for value in [
        "-5",
        "1000000000000",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "\u{00e9}t\u{00e9}",
    ] {
        s.openai.set_mode(
            &json!({"mode": "respond", "status": 429, "headers": {"retry-after": value},
                    "body": "{\"error\":{\"type\":\"rate_limit\"}}"})
            .to_string(),
        );
        let r = s.chat();
        assert_eq!(r.status, 429, "{value}: {}", r.text());
        s.wait_state("openai", "open", Duration::from_secs(3));
        // Open for at most max_recovery_timeout (2 s), then probed: a healthy answer closes it.
        s.openai.mode("healthy");
        let started = Instant::now();
        let closed = wait_until(Duration::from_secs(8), || {
            let r = s.chat();
            r.status == 200 && s.state("openai") == "closed"
        });
        assert!(
            closed,
            "{value}: still {} after {:?}",
            s.state("openai"),
            started.elapsed()
        );
        eprintln!(
            "Retry-After {value:?}: closed again after {:?}",
            started.elapsed()
        );
    }
    assert!(!s.envoy.log().contains("panicked"));
}
