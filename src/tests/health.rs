#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::config::FULL;
use crate::breaker::{Breaker, StateKind};
use crate::config::Config;
use crate::health::*;
use crate::hints::format_rfc3339;
use crate::store::probe_lease::{LastProbe, ProbeLease, ProbeResult};

use StateKind::{Closed, HalfOpen, Open};

#[test]
fn overall_health_is_healthy_degraded_or_critical() {
    let c = Config::from_json(FULL).expect("valid");
    // openai -> anthropic, azure; openai-embeddings has no fallback.
    assert_eq!(overall(&c, &[Closed, Closed, Closed, Closed]), "healthy");
    assert_eq!(overall(&c, &[Open, Closed, Closed, Closed]), "degraded");
    assert_eq!(
        overall(&c, &[Open, Closed, HalfOpen, Open]),
        "degraded",
        "half-open can still serve"
    );
    assert_eq!(
        overall(&c, &[Open, Closed, Open, Open]),
        "critical",
        "the chat route has nothing left"
    );
    assert_eq!(
        overall(&c, &[Closed, Open, Closed, Closed]),
        "critical",
        "embeddings route has no fallback"
    );
}

#[test]
fn health_json_has_providers_overall_health_and_breaker_details() {
    let c = Config::from_json(FULL).expect("valid");
    let now = 1_764_194_489_000;
    let snapshots: Vec<_> = c
        .upstreams()
        .iter()
        .map(|u| Breaker::new(&u.policy).snapshot(&u.policy, now))
        .collect();
    let v: serde_json::Value =
        serde_json::from_str(&render(&c, &snapshots, &[], now)).expect("json");
    assert_eq!(v["providers"]["openai"], "closed");
    assert_eq!(v["overall_health"], "healthy");
    let b = &v["breakers"]["azure"];
    assert_eq!(b["cluster"], "azure-openai");
    assert_eq!(b["mode"], "enforce");
    assert_eq!(b["failures_in_window"], 0);
    assert!(b["opened_at"].is_null() && b["next_probe_in_seconds"].is_null());
    assert_eq!(
        v["breakers"]["openai"]["fallbacks"],
        serde_json::json!(["anthropic", "azure"])
    );
    assert_eq!(v["timestamp"], "2025-11-26T22:01:29.000Z");
}

#[test]
fn timestamps_format_as_rfc3339() {
    assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(
        format_rfc3339(4_102_444_799_999),
        "2099-12-31T23:59:59.999Z"
    );
}

/// The document as it was built before `json_out`: through a `serde_json::Value` tree.
fn render_via_value(
    config: &Config,
    snapshots: &[crate::breaker::Snapshot],
    probes: &[Option<ProbeLease>],
    now_ms: u64,
) -> String {
    use serde_json::{json, Map, Value};
    let probe_json = |l: &ProbeLease| {
        json!({
            "successes": l.successes, "failures": l.failures,
            "last_result": l.last.map(|x| x.result.as_str()),
            "last_status": l.last.and_then(|x| x.status),
            "last_at": l.last.map(|x| format_rfc3339(x.at_ms)),
        })
    };
    let states: Vec<StateKind> = snapshots.iter().map(|s| s.state).collect();
    let mut providers = Map::new();
    let mut breakers = Map::new();
    for (i, (u, s)) in config.upstreams().iter().zip(snapshots).enumerate() {
        let probe = match probes.get(i) {
            Some(Some(l)) => probe_json(l),
            _ => Value::Null,
        };
        providers.insert(u.name.clone(), Value::from(s.state.as_str()));
        breakers.insert(
            u.name.clone(),
            json!({
                "cluster": u.cluster, "state": s.state.as_str(), "mode": s.mode.as_str(),
                "failures_in_window": s.failures_in_window,
                "calls_in_window": if u.policy.failure_rate.is_some() { Some(s.calls_in_window) } else { None },
                "failure_rate": s.failure_rate,
                "opened_at": s.opened_at_ms.map(format_rfc3339),
                "next_probe_in_seconds": s.next_probe_in_ms.map(|ms| ms as f64 / 1000.0),
                "probes_in_flight": s.probes_in_flight,
                "last_trip_reason": s.last_trip.map(|t| t.describe()),
                "recovery_probe": probe,
                "fallbacks": u.fallbacks.iter().map(|&f| config.upstream(f).name.as_str()).collect::<Vec<_>>(),
            }),
        );
    }
    json!({
        "providers": providers, "overall_health": overall(config, &states),
        "breakers": breakers, "timestamp": format_rfc3339(now_ms),
    })
    .to_string()
}

#[test]
fn health_json_is_byte_identical_to_a_serde_json_value() {
    use crate::breaker::{Trip, TripRule};
    use crate::outcome::FailureReason;
    let json = r#"{
      "upstreams": [
        {"name": "zeta", "cluster": "z", "fallbacks": ["Alpha", "_x"],
         "failure_rate": {"threshold": 0.5, "minimum_requests": 3}},
        {"name": "Alpha", "cluster": "a"},
        {"name": "_x", "cluster": "e", "mode": "forced_open"},
        {"name": "9", "cluster": "a2", "failure_rate": {"threshold": 0.25}}
      ],
      "routes": [{"upstream": "zeta"}]
    }"#;
    let c = Config::from_json(json).expect("valid");
    let now = 1_764_194_489_123;
    let base: Vec<_> = c
        .upstreams()
        .iter()
        .map(|u| Breaker::new(&u.policy).snapshot(&u.policy, now))
        .collect();
    assert_eq!(
        render(&c, &base, &[], now),
        render_via_value(&c, &base, &[], now)
    );
    let mut busy = base.clone();
    for (i, s) in busy.iter_mut().enumerate() {
        s.state = [Open, HalfOpen, Closed, Open][i];
        s.failures_in_window = 7 + i as u32;
        s.calls_in_window = 11 * i as u32;
        s.failure_rate = Some([0.1, 2.0 / 3.0, 1.0, 1e-7][i]);
        s.opened_at_ms = Some(now - 1_234);
        s.next_probe_in_ms = Some([1, 1_250, 29_999, 0][i]);
        s.probes_in_flight = i as u32;
        s.last_trip = Some(Trip {
            rule: TripRule::Count,
            reason: FailureReason::ALL[i],
        });
    }
    let probes = [
        Some(ProbeLease {
            successes: 3,
            failures: 12,
            last: Some(LastProbe {
                result: ProbeResult::Failure,
                status: Some(503),
                at_ms: now - 500,
            }),
            ..ProbeLease::default()
        }),
        None,
        Some(ProbeLease {
            failures: 1,
            last: Some(LastProbe {
                result: ProbeResult::Failure,
                status: None,
                at_ms: now - 2_000,
            }),
            ..ProbeLease::default()
        }),
        Some(ProbeLease::default()),
    ];
    assert_eq!(
        render(&c, &busy, &probes, now),
        render_via_value(&c, &busy, &probes, now)
    );
}
