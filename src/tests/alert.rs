#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::alert::*;
use crate::breaker::{Cause, StateKind, Transition, Trip, TripRule};
use crate::config::{AlertFormat, AlertOn, Alerting};
use crate::outcome::FailureReason;
use crate::store::Codec;

fn cfg(on: &[AlertOn], min_interval_ms: u64) -> Alerting {
    Alerting {
        cluster: "hooks".into(),
        authority: "hooks".into(),
        path: "/alerts".into(),
        headers: vec![],
        timeout_ms: 1_000,
        format: AlertFormat::Slack,
        min_interval_ms,
        on: on.to_vec(),
    }
}

fn t(from: StateKind, to: StateKind, at_ms: u64) -> Transition {
    let cause = match to {
        StateKind::Open => Cause::Tripped(Trip {
            rule: TripRule::Count,
            reason: FailureReason::Status5xx,
        }),
        StateKind::HalfOpen => Cause::RecoveryTimeoutElapsed,
        StateKind::Closed => Cause::ProbesSucceeded,
    };
    Transition {
        from,
        to,
        cause,
        at_ms,
        failures_in_window: 5,
        open_duration_ms: (to == StateKind::Closed).then_some(31_000),
        until_ms: (to == StateKind::Open).then_some(at_ms + 30_000),
    }
}

use StateKind::{Closed, HalfOpen, Open};

#[test]
fn default_alerts_announce_open_and_close_only() {
    let c = cfg(&[AlertOn::Open, AlertOn::Close], 60_000);
    let mut log = AlertLog::default();
    assert_eq!(log.decide(&c, &t(Closed, Open, 1_000)), AlertDecision::Send);
    assert_eq!(
        log.decide(&c, &t(Open, HalfOpen, 31_000)),
        AlertDecision::NotWanted
    );
    assert_eq!(
        log.decide(&c, &t(HalfOpen, Closed, 32_000)),
        AlertDecision::Send
    );
}

#[test]
fn flapping_openings_within_min_interval_are_suppressed_with_their_recovery() {
    let c = cfg(&[AlertOn::Open, AlertOn::Close], 60_000);
    let mut log = AlertLog::default();
    assert_eq!(log.decide(&c, &t(Closed, Open, 0)), AlertDecision::Send);
    assert_eq!(
        log.decide(&c, &t(HalfOpen, Closed, 10_000)),
        AlertDecision::Send
    );
    assert_eq!(
        log.decide(&c, &t(Closed, Open, 20_000)),
        AlertDecision::Suppressed
    );
    assert_eq!(
        log.decide(&c, &t(HalfOpen, Closed, 30_000)),
        AlertDecision::Suppressed,
        "no close for an unannounced outage"
    );
    assert_eq!(
        log.decide(&c, &t(Closed, Open, 60_000)),
        AlertDecision::Send
    );
}

#[test]
fn reopen_from_half_open_also_respects_min_interval() {
    let c = cfg(&[AlertOn::Open, AlertOn::HalfOpen, AlertOn::Close], 60_000);
    let mut log = AlertLog::default();
    assert_eq!(log.decide(&c, &t(Closed, Open, 0)), AlertDecision::Send);
    assert_eq!(
        log.decide(&c, &t(Open, HalfOpen, 30_000)),
        AlertDecision::Send
    );
    assert_eq!(
        log.decide(&c, &t(HalfOpen, Open, 30_100)),
        AlertDecision::Suppressed
    );
    assert_eq!(
        log.decide(&c, &t(Open, HalfOpen, 60_100)),
        AlertDecision::Send,
        "outage still announced"
    );
    assert_eq!(
        log.decide(&c, &t(HalfOpen, Closed, 60_200)),
        AlertDecision::Send
    );
}

#[test]
fn zero_min_interval_sends_every_transition() {
    let c = cfg(&[AlertOn::Open, AlertOn::Close], 0);
    let mut log = AlertLog::default();
    for i in 0..5 {
        assert_eq!(
            log.decide(&c, &t(Closed, Open, i * 10)),
            AlertDecision::Send
        );
        assert_eq!(
            log.decide(&c, &t(HalfOpen, Closed, i * 10 + 5)),
            AlertDecision::Send
        );
    }
}

#[test]
fn close_only_alerts_do_not_need_an_announced_opening() {
    let c = cfg(&[AlertOn::Close], 60_000);
    let mut log = AlertLog::default();
    assert_eq!(
        log.decide(&c, &t(Closed, Open, 0)),
        AlertDecision::NotWanted
    );
    assert_eq!(log.decide(&c, &t(HalfOpen, Closed, 1)), AlertDecision::Send);
}

#[test]
fn alert_log_round_trips_and_tolerates_garbage() {
    let log = AlertLog {
        last_open_sent_ms: Some(1_700_000_000_000),
        outage_announced: true,
    };
    assert_eq!(AlertLog::decode(&log.encode()), Ok(log));
    assert_eq!(
        AlertLog::decode(&AlertLog::default().encode()),
        Ok(AlertLog::default())
    );
    assert!(AlertLog::decode(b"junk").is_err(), "garbage is an error");
    let zero = AlertLog {
        last_open_sent_ms: Some(0),
        outage_announced: false,
    };
    assert_eq!(AlertLog::decode(&zero.encode()), Ok(zero));
}

#[test]
fn slack_payload_names_upstream_transition_failures_reason_and_time() {
    let tr = t(Closed, Open, 1_764_194_489_000);
    let body = payload(
        AlertFormat::Slack,
        &AlertEvent {
            upstream: "openai",
            cluster: "openai",
            transition: &tr,
        },
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let text = v["text"].as_str().expect("text");
    assert!(text.contains("openai") && text.contains("OPEN"), "{text}");
    let fields = v["attachments"][0]["fields"].as_array().expect("fields");
    let value = |title: &str| {
        fields
            .iter()
            .find(|f| f["title"] == title)
            .map(|f| f["value"].clone())
    };
    assert_eq!(value("Transition"), Some("closed → open".into()));
    assert_eq!(value("Failures in window"), Some("5".into()));
    assert_eq!(value("Reason"), Some("failure_count (status_5xx)".into()));
    assert_eq!(value("Time"), Some("2025-11-26T22:01:29.000Z".into()));
    assert_eq!(v["attachments"][0]["color"], "danger");
}

#[test]
fn json_payload_is_a_plain_event() {
    let tr = t(HalfOpen, Closed, 5_000);
    let body = payload(
        AlertFormat::Json,
        &AlertEvent {
            upstream: "openai",
            cluster: "oa",
            transition: &tr,
        },
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["event"], "circuit_breaker_transition");
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("half_open"), Some("closed"))
    );
    assert_eq!(v["cluster"], "oa");
    assert_eq!(v["open_duration_ms"], 31_000);
    assert_eq!(v["reason"], "probes succeeded");
}

/// The payloads as they were built before `json_out`: through a `serde_json::Value` tree.
fn payload_via_value(format: AlertFormat, e: &AlertEvent<'_>) -> String {
    use serde_json::json;
    let t = e.transition;
    let reason = t.cause.describe();
    let at = crate::hints::format_rfc3339(t.at_ms);
    let next_probe = t.until_ms.map(crate::hints::format_rfc3339);
    match format {
        AlertFormat::Json => json!({
            "event": "circuit_breaker_transition", "upstream": e.upstream, "cluster": e.cluster,
            "from": t.from.as_str(), "to": t.to.as_str(), "reason": reason,
            "failures_in_window": t.failures_in_window, "at": at, "at_ms": t.at_ms,
            "next_probe_at": next_probe, "open_duration_ms": t.open_duration_ms,
        })
        .to_string(),
        AlertFormat::Slack => {
            let (emoji, color, verb) = match t.to {
                Open => (":red_circle:", "danger", "OPEN"),
                HalfOpen => (":large_yellow_circle:", "warning", "HALF-OPEN (probing)"),
                Closed => (":large_green_circle:", "good", "CLOSED (recovered)"),
            };
            let (from, to) = (t.from.as_str(), t.to.as_str());
            let text = format!(
                "{emoji} Circuit breaker for *{}* is {verb}: {from} → {to} ({reason})",
                e.upstream
            );
            let mut fields = vec![
                json!({"title": "Upstream", "value": format!("{} (cluster {})", e.upstream, e.cluster), "short": true}),
                json!({"title": "Transition", "value": format!("{from} → {to}"), "short": true}),
                json!({"title": "Failures in window", "value": t.failures_in_window.to_string(), "short": true}),
                json!({"title": "Reason", "value": reason, "short": true}),
                json!({"title": "Time", "value": at, "short": false}),
            ];
            if let Some(n) = next_probe {
                fields.push(json!({"title": "Next probe", "value": n, "short": false}));
            }
            if let Some(ms) = t.open_duration_ms {
                fields.push(json!({"title": "Outage lasted", "value": format!("{:.1} s", ms as f64 / 1000.0), "short": true}));
            }
            json!({"text": text, "attachments": [{"color": color, "fields": fields, "ts": t.at_ms / 1000}]})
                .to_string()
        }
    }
}

#[test]
fn payloads_are_byte_identical_to_serde_json_values() {
    let names = [
        "openai",
        "a\"b\\c",
        "tab\there\nnl\r\u{1}\u{8}\u{c}\u{1f}",
        "é→🚀",
        "",
    ];
    for (i, (from, to)) in [
        (Closed, Open),
        (Open, HalfOpen),
        (HalfOpen, Closed),
        (HalfOpen, Open),
    ]
    .into_iter()
    .enumerate()
    {
        let mut tr = t(from, to, 1_764_194_489_123 + i as u64 * 77_777);
        tr.failures_in_window = u32::MAX - i as u32;
        tr.open_duration_ms = tr.open_duration_ms.map(|_| 1_250 + i as u64 * 999);
        for upstream in names {
            for cluster in names {
                let e = AlertEvent {
                    upstream,
                    cluster,
                    transition: &tr,
                };
                for format in [AlertFormat::Json, AlertFormat::Slack] {
                    assert_eq!(payload(format, &e), payload_via_value(format, &e));
                }
            }
        }
    }
}
