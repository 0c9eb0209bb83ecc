#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What operators see: Prometheus metrics through Envoy's `/stats/prometheus`, the health
//! endpoint and webhook alerts, scraped and asserted while the documented outage scenario plays out
//! (with in-request failover off, so every failure reaches the client and the counts are
//! the breaker's own).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// openai (primary) → anthropic, with a webhook receiver for alerts.
fn stack(extra: Value, concurrency: u32) -> Stack {
    let mut cfg = json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "failover": {"enabled": false},
        "defaults": {"failure_threshold": 5, "success_threshold": 2, "recovery_timeout": 0.6, "recovery_jitter": 0},
        "upstreams": [{"name": "openai", "fallbacks": ["anthropic"]}, {"name": "anthropic"}],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Stack::start(&cfg, concurrency, Duration::from_millis(500))
}

/// A metric that must exist.
fn value(s: &Stack, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.metric(name, labels)
        .unwrap_or_else(|| panic!("{name}{labels:?} missing"))
}

trait Outage {
    fn outage_and_recovery(&self, rerouted: usize);
}

impl Outage for Stack {
    /// Trips openai with 5 failures, reroutes `rerouted` requests, then recovers it.
    fn outage_and_recovery(&self, rerouted: usize) {
        self.openai.set_mode(r#"{"mode":"error","status":500}"#);
        for _ in 0..5 {
            assert_eq!(self.chat().status, 500);
        }
        for _ in 0..rerouted {
            assert_eq!(self.chat().header("x-ai-cb-served-by"), Some("anthropic"));
        }
        self.openai.mode("healthy");
        self.wait_state("openai", "half_open", Duration::from_secs(3));
        for _ in 0..2 {
            assert_eq!(self.chat().header("x-ai-cb-served-by"), Some("openai"));
        }
        assert_eq!(self.health()["providers"]["openai"], "closed");
    }
}

#[test]
fn prometheus_metrics_follow_an_outage_and_recovery() {
    let s = stack(json!({}), 2);
    let up = [("upstream", "openai")];
    assert_eq!(
        value(&s, "circuit_breaker_state", &up),
        0.0,
        "defined and current before traffic"
    );
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for _ in 0..5 {
        s.chat();
    }
    assert_eq!(value(&s, "circuit_breaker_state", &up), 1.0);
    assert_eq!(
        value(
            &s,
            "circuit_breaker_failures",
            &[("upstream", "openai"), ("reason", "status_5xx")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &s,
            "circuit_breaker_requests",
            &[("upstream", "openai"), ("outcome", "failure")]
        ),
        5.0
    );
    for _ in 0..7 {
        s.chat();
    }
    assert_eq!(
        value(
            &s,
            "circuit_breaker_fallbacks",
            &[("from", "openai"), ("to", "anthropic")]
        ),
        7.0
    );
    assert_eq!(value(&s, "circuit_breaker_rejected", &up), 7.0);
    assert_eq!(
        value(
            &s,
            "circuit_breaker_requests",
            &[("upstream", "anthropic"), ("outcome", "success")]
        ),
        7.0
    );
    // The gauge moves to half_open (2) with no traffic, from the tick.
    s.openai.mode("healthy");
    let half = s
        .envoy
        .wait_metric("circuit_breaker_state", &up, Duration::from_secs(3), |v| {
            v == 2.0
        });
    assert_eq!(half, Some(2.0));
    for _ in 0..2 {
        s.chat();
    }
    assert_eq!(value(&s, "circuit_breaker_state", &up), 0.0);
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ] {
        assert_eq!(
            value(
                &s,
                "circuit_breaker_transitions",
                &[("upstream", "openai"), ("from", from), ("to", to)]
            ),
            1.0,
            "{from} -> {to}"
        );
    }
    assert_eq!(
        value(
            &s,
            "circuit_breaker_probes",
            &[("upstream", "openai"), ("result", "success")]
        ),
        2.0
    );
    assert_eq!(value(&s, "circuit_breaker_all_open", &[]), 0.0);
    // The outage duration lands in the histogram at the next stats flush.
    let count = s.envoy.wait_metric(
        "circuit_breaker_open_duration_ms",
        &up,
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    assert_eq!(count, Some(1.0));
    let samples = s.envoy.samples();
    let sum = find_metric(&samples, "circuit_breaker_open_duration_ms_sum", &up).unwrap();
    assert!((600.0..10_000.0).contains(&sum), "outage lasted {sum} ms");
}

#[test]
fn all_open_fast_fails_are_counted() {
    let s = stack(
        json!({"defaults": {"failure_threshold": 1, "recovery_timeout": 30}}),
        1,
    );
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    s.anthropic.set_mode(r#"{"mode":"error","status":500}"#);
    s.chat();
    s.chat();
    for _ in 0..4 {
        assert_eq!(s.chat().status, 503);
    }
    assert_eq!(value(&s, "circuit_breaker_all_open", &[]), 4.0);
    assert_eq!(
        value(&s, "circuit_breaker_rejected", &[("upstream", "anthropic")]),
        4.0
    );
}

#[test]
fn health_json_matches_the_states_throughout() {
    let s = stack(json!({}), 1);
    let h = s.health();
    assert_eq!(h["overall_health"], "healthy");
    s.openai.set_mode(r#"{"mode":"error","status":503}"#);
    for i in 1..=4 {
        s.chat();
        assert_eq!(s.health()["breakers"]["openai"]["failures_in_window"], i);
    }
    s.chat();
    let h = s.health();
    assert_eq!(
        h["providers"],
        json!({"openai": "open", "anthropic": "closed"})
    );
    assert_eq!(h["overall_health"], "degraded");
    let b = &h["breakers"]["openai"];
    assert_eq!(b["failures_in_window"], 5);
    assert_eq!(b["last_trip_reason"], "failure_count (status_5xx)");
    assert!(b["opened_at"].as_str().unwrap().ends_with('Z'));
    let next = b["next_probe_in_seconds"].as_f64().unwrap();
    assert!((0.0..=0.6).contains(&next), "{next}");
    s.openai.mode("healthy");
    s.wait_state("openai", "half_open", Duration::from_secs(3));
    assert!(s.health()["breakers"]["openai"]["opened_at"].is_null());
    s.chat();
    s.chat();
    let h = s.health();
    assert_eq!(h["overall_health"], "healthy");
    assert_eq!(
        h["breakers"]["openai"]["last_trip_reason"], "failure_count (status_5xx)",
        "kept for the record"
    );
}

#[test]
fn health_endpoint_is_off_when_health_path_is_unset() {
    let openai = Mock::start("openai");
    let envoy = Envoy::builder()
        .filter_config(r#"{"upstreams":[{"name":"openai"}],"routes":[{"upstream":"openai"}]}"#)
        .cluster("openai", openai.port())
        .start();
    let r = http(
        "GET",
        &format!("{}/health/circuit-breakers", envoy.addr()),
        &[],
        b"",
    );
    assert_eq!(
        r.header("x-mock-provider"),
        Some("openai"),
        "routed like any request"
    );
    assert_eq!(openai.hits(), 1);
}

fn alerts(webhook: &Mock) -> Vec<Value> {
    webhook
        .requests_on("/alerts")
        .iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn webhook_gets_exactly_one_slack_alert_per_transition_across_workers() {
    let s = stack(
        json!({"alerting": {"cluster": "webhook", "path": "/alerts", "format": "slack", "min_interval": 0}}),
        2,
    );
    // Failures from many connections, so both workers see them.
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    burst(40, 8, |_| s.chat());
    s.openai.mode("healthy");
    s.wait_state("openai", "half_open", Duration::from_secs(3));
    burst(20, 8, |_| s.chat());
    assert_eq!(s.health()["providers"]["openai"], "closed");
    assert!(wait_until(Duration::from_secs(3), || alerts(&s.webhook)
        .len()
        >= 2));
    std::thread::sleep(Duration::from_millis(500));
    let got = alerts(&s.webhook);
    assert_eq!(got.len(), 2, "one open, one close: {got:?}");
    let open = got[0]["text"].as_str().unwrap();
    let close = got[1]["text"].as_str().unwrap();
    assert!(
        open.contains("openai") && open.contains("OPEN") && open.contains("closed → open"),
        "{open}"
    );
    assert!(
        close.contains("CLOSED") && close.contains("half_open → closed"),
        "{close}"
    );
    let fields = got[0]["attachments"][0]["fields"].as_array().unwrap();
    let titles: Vec<&str> = fields
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    for t in [
        "Upstream",
        "Transition",
        "Failures in window",
        "Reason",
        "Time",
    ] {
        assert!(titles.contains(&t), "{titles:?}");
    }
    assert_eq!(
        s.webhook.requests_on("/alerts")[0]["headers"]["content-type"],
        "application/json"
    );
    assert_eq!(
        value(&s, "circuit_breaker_alerts", &[("result", "sent")]),
        2.0
    );
}

#[test]
fn json_alerts_cover_half_open_and_min_interval_suppresses_flapping() {
    let s = stack(
        json!({"alerting": {"cluster": "webhook", "path": "/alerts", "format": "json",
                            "on": ["open", "half_open", "close"], "min_interval": 60}}),
        1,
    );
    s.outage_and_recovery(0);
    assert!(wait_until(Duration::from_secs(3), || alerts(&s.webhook)
        .len()
        >= 3));
    let got = alerts(&s.webhook);
    let moves: Vec<(String, String)> = got
        .iter()
        .map(|a| {
            (
                a["from"].as_str().unwrap().into(),
                a["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            ("closed".into(), "open".into()),
            ("open".into(), "half_open".into()),
            ("half_open".into(), "closed".into())
        ]
    );
    assert_eq!(got[0]["event"], "circuit_breaker_transition");
    assert_eq!(got[0]["upstream"], "openai");
    assert_eq!(got[0]["failures_in_window"], 5);
    // A second outage within min_interval flaps: nothing is sent, the drops are counted.
    s.outage_and_recovery(0);
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(alerts(&s.webhook).len(), 3);
    assert_eq!(
        value(&s, "circuit_breaker_alerts", &[("result", "suppressed")]),
        3.0
    );
}

#[test]
fn a_failing_webhook_is_counted_and_never_touches_traffic() {
    let s = stack(
        json!({"alerting": {"cluster": "webhook", "path": "/alerts", "min_interval": 0}}),
        1,
    );
    s.webhook.set_mode(r#"{"mode":"error","status":500}"#);
    s.outage_and_recovery(3);
    assert!(s
        .envoy
        .wait_metric(
            "circuit_breaker_alerts",
            &[("result", "failed")],
            Duration::from_secs(3),
            |v| v >= 2.0
        )
        .is_some());
    assert!(s
        .envoy
        .wait_for_log("alert webhook failed", Duration::from_secs(1)));
    assert_eq!(s.chat().status, 200);
    assert_eq!(s.anthropic.hits(), 3);
}
