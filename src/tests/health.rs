#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::config::FULL;
use crate::breaker::{Breaker, StateKind};
use crate::config::Config;
use crate::health::*;
use crate::hints::format_rfc3339;

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
