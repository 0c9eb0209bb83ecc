#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The filter in a real Envoy with the real .wasm: the documented scenarios, what counts as a
//! failure, the fallback chain, fast-fail, body routing, security and modes.
//!
//! Each test starts its own mock providers and Envoy (`tests/common`). Timeouts are
//! sub-second so the suite stays quick. In-request failover is switched off here so the
//! breaker's own behaviour shows; `envoy_failover.rs` covers it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn filter_config(defaults: Value, extra: Value) -> String {
    let mut cfg = json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "failover": {"enabled": false},
        "defaults": defaults,
        "upstreams": [
            {"name": "openai", "fallbacks": ["anthropic", "azure"]},
            {"name": "anthropic", "rewrite": {"model": "claude-3-5-sonnet-20241022"}},
            {"name": "azure", "cluster": "azure-openai",
             "rewrite": {"path": "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-02-15-preview",
                         "host": "myco.openai.azure.com"}}
        ],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    cfg.to_string()
}

/// The default thresholds (5 failures, 2 successes) with a short recovery for the test.
fn default_thresholds() -> Value {
    json!({"failure_threshold": 5, "success_threshold": 2, "recovery_timeout": 0.6, "recovery_jitter": 0})
}

/// openai (primary) → anthropic (model rewrite) → azure (path and host rewrite).
fn stack_with(defaults: Value, extra: Value, concurrency: u32) -> Stack {
    Stack::start(
        &serde_json::from_str(&filter_config(defaults, extra)).unwrap(),
        concurrency,
        Duration::from_millis(400),
    )
}

fn stack() -> Stack {
    stack_with(default_thresholds(), json!({}), 1)
}

#[test]
fn five_failures_open_the_circuit_and_the_sixth_call_is_served_by_the_fallback() {
    let s = stack();
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for i in 0..5 {
        let r = s.chat();
        assert_eq!(r.status, 500, "call {i} reaches the failing primary");
        assert_eq!(served_by(&r), "openai");
    }
    assert_eq!(s.openai.hits(), 5);
    let sixth = s.chat();
    assert_eq!(sixth.status, 200, "{}", sixth.text());
    assert_eq!(served_by(&sixth), "anthropic");
    assert_eq!(sixth.header("x-mock-provider"), Some("anthropic"));
    for _ in 0..10 {
        s.chat();
    }
    assert_eq!(s.openai.hits(), 5, "no more calls reach the open primary");
    assert_eq!(s.state("openai"), "open");
}

#[test]
fn while_open_every_request_is_served_by_the_fallback_and_named_in_the_header() {
    let s = stack_with(
        json!({"failure_threshold": 5, "recovery_timeout": 30}),
        json!({}),
        1,
    );
    s.openai.set_mode(r#"{"mode":"error","status":503}"#);
    for _ in 0..5 {
        s.chat();
    }
    let responses: Vec<Response> = (0..20).map(|_| s.chat()).collect();
    for r in &responses {
        assert_eq!(r.status, 200);
        assert_eq!(served_by(r), "anthropic");
    }
    assert_eq!(s.anthropic.hits(), 20);
    assert_eq!(s.openai.hits(), 5);
}

#[test]
fn after_recovery_timeout_two_probe_successes_close_the_circuit_and_traffic_returns() {
    let s = stack();
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for _ in 0..5 {
        s.chat();
    }
    assert_eq!(s.state("openai"), "open");
    s.openai.mode("healthy");
    // The tick moves OPEN to HALF_OPEN once recovery_timeout has passed, with no traffic.
    s.wait_state("openai", "half_open", Duration::from_secs(3));
    let before = s.openai.hits();
    let p1 = s.chat();
    assert_eq!(served_by(&p1), "openai", "first probe reaches the primary");
    assert_eq!(s.state("openai"), "half_open", "one success is not enough");
    let p2 = s.chat();
    assert_eq!(served_by(&p2), "openai");
    assert_eq!(s.state("openai"), "closed");
    for _ in 0..5 {
        assert_eq!(served_by(&s.chat()), "openai");
    }
    assert_eq!(s.openai.hits() - before, 7);
}

#[test]
fn failed_probe_reopens_the_circuit() {
    let s = stack();
    s.openai.set_mode(r#"{"mode":"error","status":502}"#);
    for _ in 0..5 {
        s.chat();
    }
    s.wait_state("openai", "half_open", Duration::from_secs(3));
    let probe = s.chat();
    assert_eq!((probe.status, served_by(&probe)), (502, "openai"));
    assert_eq!(s.state("openai"), "open");
    assert_eq!(served_by(&s.chat()), "anthropic");
    assert_eq!(s.openai.hits(), 6);
}

#[test]
fn upstream_timeouts_trip_the_breaker() {
    let s = stack();
    s.openai.set_mode(r#"{"mode":"hang","hang_ms":5000}"#);
    for _ in 0..5 {
        let r = s.chat();
        assert_eq!(r.status, 504, "Envoy's route timeout answers");
    }
    let r = s.chat();
    assert_eq!((r.status, served_by(&r)), (200, "anthropic"));
    let h = s.health();
    assert_eq!(
        h["breakers"]["openai"]["last_trip_reason"],
        "failure_count (timeout)"
    );
}

#[test]
fn refused_connections_trip_the_breaker() {
    let s = stack();
    s.openai.mode("refuse");
    for _ in 0..5 {
        assert_eq!(s.chat().status, 503);
    }
    let r = s.chat();
    assert_eq!((r.status, served_by(&r)), (200, "anthropic"));
    let h = s.health();
    assert_eq!(
        h["breakers"]["openai"]["last_trip_reason"],
        "failure_count (connect_failure)"
    );
}

#[test]
fn client_errors_401_and_400_never_trip_the_breaker() {
    let s = stack();
    for status in [401, 400] {
        s.openai
            .set_mode(&format!(r#"{{"mode":"status","status":{status}}}"#));
        for _ in 0..8 {
            let r = s.chat();
            assert_eq!((r.status, served_by(&r)), (status, "openai"));
        }
    }
    assert_eq!(s.state("openai"), "closed");
    assert_eq!(s.health()["breakers"]["openai"]["failures_in_window"], 0);
    assert_eq!(s.anthropic.hits(), 0);
}

#[test]
fn rate_limit_429_trips_and_its_retry_after_stretches_the_open_time() {
    let s = stack();
    s.openai
        .set_mode(r#"{"mode":"rate_limit","retry_after":20}"#);
    for _ in 0..5 {
        assert_eq!(s.chat().status, 429);
    }
    assert_eq!(served_by(&s.chat()), "anthropic");
    let wait = s.health()["breakers"]["openai"]["next_probe_in_seconds"]
        .as_f64()
        .unwrap();
    assert!(
        (15.0..=20.0).contains(&wait),
        "Retry-After 20 s beats recovery_timeout 0.6 s: {wait}"
    );
}

#[test]
fn rate_limit_switched_off_is_not_a_failure() {
    let mut defaults = default_thresholds();
    defaults["failure_conditions"] = json!({"rate_limit": false});
    let s = stack_with(defaults, json!({}), 1);
    s.openai
        .set_mode(r#"{"mode":"rate_limit","retry_after":1}"#);
    for _ in 0..8 {
        assert_eq!(served_by(&s.chat()), "openai");
    }
    assert_eq!(s.state("openai"), "closed");
}

#[test]
fn with_primary_and_first_fallback_open_the_second_fallback_serves() {
    let s = stack_with(
        json!({"failure_threshold": 2, "recovery_timeout": 30}),
        json!({}),
        1,
    );
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    s.anthropic.set_mode(r#"{"mode":"error","status":529}"#);
    for _ in 0..2 {
        s.chat();
    }
    // Primary open: anthropic serves (and fails) until it opens too.
    for _ in 0..2 {
        assert_eq!(served_by(&s.chat()), "anthropic");
    }
    let r = s.chat();
    assert_eq!((r.status, served_by(&r)), (200, "azure"));
    let req = s.azure.requests().pop().unwrap();
    assert_eq!(
        req["target"],
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-02-15-preview"
    );
    assert_eq!(req["headers"]["host"], "myco.openai.azure.com");
}

#[test]
fn all_open_answers_503_json_with_retry_after_and_no_upstream_call() {
    let s = stack_with(
        json!({"failure_threshold": 1, "recovery_timeout": 30}),
        json!({}),
        1,
    );
    for m in [&s.openai, &s.anthropic, &s.azure] {
        m.set_mode(r#"{"mode":"error","status":500}"#);
    }
    for _ in 0..3 {
        assert_eq!(s.chat().status, 500);
    }
    let hits = (s.openai.hits(), s.anthropic.hits(), s.azure.hits());
    assert_eq!(hits, (1, 1, 1));
    let r = s.chat();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    // recovery_timeout 30 s ± the default 10 % jitter, rounded up to whole seconds.
    assert!((27..=33).contains(&retry), "{retry}");
    assert_eq!(
        r.json(),
        json!({"error":{"message":"All AI providers are currently unavailable","type":"circuit_open","code":"circuit_open"}})
    );
    assert_eq!(
        (s.openai.hits(), s.anthropic.hits(), s.azure.hits()),
        hits,
        "zero upstream calls"
    );
    assert_eq!(s.health()["overall_health"], "critical");
}

#[test]
fn fast_fail_status_and_message_are_configurable() {
    let s = stack_with(
        json!({"mode": "forced_open"}),
        json!({"fast_fail": {"status": 529, "message": "try later"}}),
        1,
    );
    let r = s.chat();
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["message"], "try later");
}

#[test]
fn fallback_with_model_rewrite_receives_the_rewritten_body() {
    let s = stack_with(
        json!({"failure_threshold": 1, "recovery_timeout": 30}),
        json!({}),
        1,
    );
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    s.chat();
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"temperature":0.2}"#;
    let r = http(
        "POST",
        &format!("{}/v1/chat/completions", s.envoy.addr()),
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!((r.status, served_by(&r)), (200, "anthropic"));
    assert_eq!(r.json()["model"], "claude-3-5-sonnet-20241022");
    let sent: Value =
        serde_json::from_str(s.anthropic.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "claude-3-5-sonnet-20241022");
    assert_eq!(sent["messages"][0]["content"], "hello");
    assert_eq!(sent["temperature"], 0.2);
}

#[test]
fn routes_can_match_on_the_json_model_field() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let cfg = json!({
        "upstreams": [{"name": "openai"}, {"name": "anthropic"}],
        "routes": [
            {"match": {"path_prefix": "/v1/", "model": "claude-3-5-sonnet-20241022"}, "upstream": "anthropic"},
            {"match": {"path_prefix": "/v1/"}, "upstream": "openai"}
        ]
    });
    let envoy = Envoy::builder()
        .filter_config(cfg.to_string())
        .clusters(&[("openai", openai.port()), ("anthropic", anthropic.port())])
        .start();
    let r = post_chat(&envoy.addr(), "claude-3-5-sonnet-20241022", &[]);
    assert_eq!((r.status, served_by(&r)), (200, "anthropic"));
    let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[]);
    assert_eq!((r.status, served_by(&r)), (200, "openai"));
    assert_eq!((openai.hits(), anthropic.hits()), (1, 1));
}

#[test]
fn model_route_decided_on_the_body_undoes_a_provisional_fallback_rewrite() {
    // Headers alone pick openai, which is forced open, so the provisional choice is azure
    // with its path rewrite; the body's model then picks anthropic, which must get the
    // client's own path, not azure's.
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let azure = Mock::start("azure");
    let cfg = json!({
        "upstreams": [
            {"name": "openai", "mode": "forced_open", "fallbacks": ["azure"]},
            {"name": "anthropic"},
            {"name": "azure", "rewrite": {"path": "/openai/deployments/x/chat/completions", "host": "azure.example"}}
        ],
        "routes": [
            {"match": {"path_prefix": "/v1/", "model": "claude-3-5-sonnet-20241022"}, "upstream": "anthropic"},
            {"match": {"path_prefix": "/v1/"}, "upstream": "openai"}
        ]
    });
    let envoy = Envoy::builder()
        .filter_config(cfg.to_string())
        .clusters(&[
            ("openai", openai.port()),
            ("anthropic", anthropic.port()),
            ("azure", azure.port()),
        ])
        .start();
    let r = post_chat(&envoy.addr(), "claude-3-5-sonnet-20241022", &[]);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
    let got = &anthropic.requests()[0];
    assert_eq!(got["target"], "/v1/chat/completions");
    assert_ne!(got["headers"]["host"], "azure.example");
    let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[]);
    assert_eq!((r.status, served_by(&r)), (200, "azure"));
    assert_eq!(
        azure.requests()[0]["target"],
        "/openai/deployments/x/chat/completions"
    );
    assert_eq!(openai.hits(), 0);
}

#[test]
fn model_routing_without_stop_iteration_never_hangs_and_logs_why() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let cfg = json!({
        "tick_interval": 0.1,
        "upstreams": [{"name": "openai"}, {"name": "anthropic"}],
        "routes": [
            {"match": {"model": "claude-3-5-sonnet-20241022"}, "upstream": "anthropic"},
            {"match": {"path_prefix": "/v1/"}, "upstream": "openai"}
        ]
    });
    let envoy = Envoy::builder()
        .filter_config(cfg.to_string())
        .allow_on_headers_stop_iteration(false)
        .clusters(&[("openai", openai.port()), ("anthropic", anthropic.port())])
        .start();
    let started = Instant::now();
    let r = post_chat(&envoy.addr(), "claude-3-5-sonnet-20241022", &[]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "openai"),
        "decided on headers alone"
    );
    assert!(envoy.wait_for_log("allow_on_headers_stop_iteration", Duration::from_secs(2)));
    // Once known, later requests do not wait at all.
    let started = Instant::now();
    let r = post_chat(&envoy.addr(), "claude-3-5-sonnet-20241022", &[]);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        envoy
            .log()
            .matches("allow_on_headers_stop_iteration: true")
            .count(),
        1,
        "logged once"
    );
}

#[test]
fn a_client_sent_route_header_cannot_pick_a_cluster() {
    let s = stack();
    let r = post_chat(
        &s.envoy.addr(),
        "gpt-4o-mini",
        &[("x-ai-cb-upstream", "anthropic")],
    );
    assert_eq!((r.status, served_by(&r)), (200, "openai"));
    // Sent twice, the header still cannot win over the filter's value.
    let r = post_chat(
        &s.envoy.addr(),
        "gpt-4o-mini",
        &[
            ("x-ai-cb-upstream", "anthropic"),
            ("x-ai-cb-upstream", "azure-openai"),
        ],
    );
    assert_eq!((r.status, served_by(&r)), (200, "openai"));
    // Even on a path no filter route matches, the client's value is removed.
    let r = http(
        "GET",
        &format!("{}/other", s.envoy.addr()),
        &[("x-ai-cb-upstream", "anthropic")],
        b"",
    );
    assert_ne!(r.status, 200);
    assert_eq!(s.anthropic.hits() + s.azure.hits(), 0);
    assert_eq!(s.openai.hits(), 2);
}

#[test]
fn health_endpoint_answers_get_and_head_only_and_needs_no_upstream() {
    let s = stack();
    let h = s.health();
    assert_eq!(h["overall_health"], "healthy");
    assert_eq!(
        h["providers"],
        json!({"openai":"closed","anthropic":"closed","azure":"closed"})
    );
    assert_eq!(h["breakers"]["openai"]["mode"], "enforce");
    let r = http(
        "POST",
        &format!("{}/health/circuit-breakers", s.envoy.addr()),
        &[],
        b"{}",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let head = http(
        "HEAD",
        &format!("{}/health/circuit-breakers", s.envoy.addr()),
        &[],
        b"",
    );
    assert_eq!(head.status, 200, "HEAD is answered like GET");
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert!(head.body.is_empty(), "HEAD has no body");
    assert_eq!(s.openai.hits() + s.anthropic.hits() + s.azure.hits(), 0);
}

#[test]
fn invalid_config_is_refused_and_the_key_path_is_logged() {
    let bad = json!({
        "upstreams": [{"name": "openai", "fallbacks": ["azur"]}],
        "routes": [{"upstream": "openai"}]
    });
    let result = Envoy::builder()
        .filter_config(bad.to_string())
        .cluster("openai", 1)
        .failure_policy("FAIL_CLOSED")
        .ready_timeout(Duration::from_secs(8))
        .try_start();
    let log = match &result {
        Ok(envoy) => envoy.log(),
        Err(log) => log.clone(),
    };
    assert!(
        log.contains(
            r#"invalid configuration: upstreams[0].fallbacks[0]: unknown upstream "azur""#
        ),
        "{log}"
    );
    if let Ok(envoy) = result {
        // Envoy may keep serving with the plugin refused: FAIL_CLOSED turns requests away.
        let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[]);
        assert_ne!(r.status, 200);
    }
}

#[test]
fn metrics_only_mode_tracks_state_but_never_reroutes() {
    let mut defaults = default_thresholds();
    defaults["mode"] = json!("metrics_only");
    let s = stack_with(defaults, json!({}), 1);
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for _ in 0..15 {
        let r = s.chat();
        assert_eq!((r.status, served_by(&r)), (500, "openai"));
    }
    assert_eq!(s.openai.hits(), 15);
    assert_eq!(s.anthropic.hits(), 0);
    assert_eq!(
        s.state("openai"),
        "open",
        "the dry run still tracks the trip"
    );
    assert_eq!(
        s.envoy
            .metric("circuit_breaker_state", &[("upstream", "openai")]),
        Some(1.0)
    );
}

#[test]
fn forced_open_mode_always_reroutes() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let cfg = json!({
        "upstreams": [{"name": "openai", "mode": "forced_open", "fallbacks": ["anthropic"]}, {"name": "anthropic"}],
        "routes": [{"upstream": "openai"}]
    });
    let envoy = Envoy::builder()
        .filter_config(cfg.to_string())
        .clusters(&[("openai", openai.port()), ("anthropic", anthropic.port())])
        .start();
    for _ in 0..5 {
        let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[]);
        assert_eq!((r.status, served_by(&r)), (200, "anthropic"));
    }
    assert_eq!(openai.hits(), 0);
}

#[test]
fn cancelled_probe_frees_its_slot_for_the_next_request() {
    let s = stack_with(
        json!({"failure_threshold": 1, "recovery_timeout": 0.3, "recovery_jitter": 0, "probe_timeout": 60}),
        json!({}),
        1,
    );
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    s.chat();
    s.openai.set_mode(r#"{"mode":"hang","hang_ms":3000}"#);
    s.wait_state("openai", "half_open", Duration::from_secs(3));
    // The probe's client gives up long before the route timeout.
    let cancelled = try_http(
        "POST",
        &format!("{}/v1/chat/completions", s.envoy.addr()),
        &[],
        chat_body("gpt-4o-mini").as_bytes(),
        Duration::from_millis(150),
    );
    assert!(cancelled.is_err(), "client timed out");
    assert!(
        wait_until(Duration::from_secs(2), || s.health()["breakers"]["openai"]
            ["probes_in_flight"]
            == 0),
        "the cancelled stream freed its slot: {}",
        s.health()
    );
    s.openai.mode("healthy");
    let r = s.chat();
    assert_eq!(
        served_by(&r),
        "openai",
        "the next request probes, not stuck for probe_timeout"
    );
    assert_eq!(s.state("openai"), "half_open", "one probe success of two");
}
