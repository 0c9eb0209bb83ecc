#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Proves the integration-test harness (`tests/common/mod.rs`) against a bare Envoy (no wasm
//! filter) and the mock provider: requests get through, failures surface as Envoy's own
//! answers, metrics are readable, the HTTP client copes with chunked and keep-alive answers.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn bare(mock: &Mock) -> Envoy {
    Envoy::builder()
        .cluster("openai", mock.port())
        .route_timeout(Duration::from_millis(300))
        .start()
}

#[test]
fn request_through_bare_envoy_reaches_the_mock() {
    let mock = Mock::start("openai");
    let envoy = bare(&mock);

    let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[("x-test", "1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-mock-provider"), Some("openai"));
    let body = r.json();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["model"], "gpt-4o-mini");

    assert_eq!(mock.hits(), 1);
    assert_eq!(mock.hits_on("/v1/chat/completions"), 1);
    let reqs = mock.requests_on("/v1/chat/completions");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["method"], "POST");
    assert_eq!(reqs[0]["headers"]["x-test"], "1");
    let sent: serde_json::Value = serde_json::from_str(reqs[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert!(mock.requests_on("/other").is_empty());

    mock.reset();
    assert_eq!(mock.hits(), 0);
    assert!(mock.requests().is_empty());

    // Envoy's own counter, with the cluster name as a Prometheus label.
    let total = envoy.wait_metric(
        "envoy_cluster_upstream_rq_total",
        &[("envoy_cluster_name", "openai")],
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    assert_eq!(total, Some(1.0));
    assert_eq!(
        envoy.metric_sum(
            "envoy_cluster_upstream_rq",
            &[("envoy_cluster_name", "openai")]
        ),
        Some(1.0),
        "the 2xx series (label envoy_response_code) sums to 1"
    );
    assert_eq!(envoy.metric("no_such_metric", &[]), None);
    assert!(
        envoy.access_log().contains("cluster=openai"),
        "{}",
        envoy.access_log()
    );
}

#[test]
fn mock_failure_modes_surface_through_envoy() {
    let mock = Mock::start("openai");
    let envoy = bare(&mock);
    let addr = envoy.addr();

    mock.set_mode(r#"{"mode":"error","status":500}"#);
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "server_error", "{}", r.text());

    mock.set_mode(r#"{"mode":"rate_limit","retry_after":2}"#);
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));

    // route timeout 0.3 s → Envoy's own 504
    mock.set_mode(r#"{"mode":"hang","hang_ms":5000}"#);
    let started = Instant::now();
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.text(), "upstream request timeout");

    mock.mode("reset");
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 503, "{}", r.text());

    mock.mode("refuse");
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("connection"),
        "connect failure details: {}",
        r.text()
    );

    mock.mode("healthy");
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 200, "{}", r.text());

    assert!(wait_until(Duration::from_secs(5), || {
        envoy.access_log().contains("504 UT response_timeout")
    }));
    assert_eq!(
        envoy.metric(
            "envoy_cluster_upstream_rq_timeout",
            &[("envoy_cluster_name", "openai")]
        ),
        Some(1.0)
    );
}

#[test]
fn streaming_and_burst() {
    let mock = Mock::start("openai");
    let envoy = bare(&mock);
    let addr = envoy.addr();

    // Chunked server-sent events, straight from the mock and through Envoy.
    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for target in [mock.addr(), addr.clone()] {
        let r = http(
            "POST",
            &format!("http://{target}/v1/chat/completions"),
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream"));
        assert!(
            r.text().trim_end().ends_with("data: [DONE]"),
            "{}",
            r.text()
        );
    }

    let rs = burst(40, 8, |i| post_chat(&addr, &format!("m{i}"), &[]));
    assert_eq!(rs.len(), 40);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["model"], format!("m{i}"));
    }
    assert_eq!(mock.hits(), 42);

    // A bad address fails fast instead of hanging.
    let err = try_http("GET", "127.0.0.1:1/", &[], b"", Duration::from_secs(2));
    assert!(err.is_err());
}

#[test]
fn invalid_envoy_config_is_reported_with_the_log() {
    // Two clusters with one name: Envoy refuses the bootstrap and exits.
    let res = Envoy::builder()
        .cluster("dup", 1)
        .cluster("dup", 2)
        .ready_timeout(Duration::from_secs(10))
        .try_start();
    let err = res.err().expect("duplicate clusters must be refused");
    assert!(err.contains("envoy exited"), "{err}");
    assert!(err.contains("dup"), "{err}");
}

#[test]
fn prometheus_parser() {
    let text = "# TYPE a counter\na{x=\"1\",y=\"q\\\"uote\"} 3\na{x=\"2\"} 4\nb 5\n\
                h_bucket{le=\"+Inf\",u=\"o\"} 2\nh_count{u=\"o\"} 2\nh_sum{u=\"o\"} 7.5\n";
    let s = parse_prometheus(text);
    assert_eq!(s.len(), 6);
    assert_eq!(
        find_metric(&s, "a", &[("y", "q\"uote"), ("x", "1")]),
        Some(3.0)
    );
    assert_eq!(find_metric(&s, "a", &[("x", "1")]), None, "exact label set");
    assert_eq!(sum_metric(&s, "a", &[]), Some(7.0));
    assert_eq!(find_metric(&s, "b", &[]), Some(5.0));
    assert_eq!(
        find_metric(&s, "h", &[("u", "o")]),
        Some(2.0),
        "histogram → _count"
    );
}
