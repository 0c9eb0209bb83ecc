#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::config::FULL;
use crate::config::Config;
use crate::exchange::failover::*;
use crate::outcome::{FailureReason, Outcome};

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn only_configured_methods_are_eligible() {
    let c = Config::from_json(FULL).expect("valid");
    assert!(method_eligible(&c.failover, "POST"));
    assert!(!method_eligible(&c.failover, "GET"));
    assert!(!method_eligible(&c.failover, "DELETE"));
    let mut off = c.failover.clone();
    off.enabled = false;
    assert!(!method_eligible(&off, "POST"));
}

#[test]
fn failures_listed_in_on_trigger_and_others_do_not() {
    let c = Config::from_json(FULL).expect("valid");
    let fail = |reason| Outcome::Failure {
        reason,
        retry_after_ms: None,
    };
    assert_eq!(
        triggers(&c.failover, &fail(FailureReason::Status5xx)),
        Some(FailureReason::Status5xx)
    );
    assert_eq!(
        triggers(&c.failover, &fail(FailureReason::Timeout)),
        Some(FailureReason::Timeout)
    );
    assert_eq!(
        triggers(&c.failover, &fail(FailureReason::Slow)),
        None,
        "slow answers are delivered"
    );
    assert_eq!(triggers(&c.failover, &Outcome::Success), None);
    assert_eq!(triggers(&c.failover, &Outcome::Ignored), None);
}

#[test]
fn chain_label_names_every_upstream_called() {
    let c = Config::from_json(FULL).expect("valid");
    let openai = c.upstream_id("openai").expect("configured");
    assert_eq!(chain_label(&c, c.chain(openai)), "openai->anthropic->azure");
}

#[test]
fn callout_headers_apply_the_rewrite_and_reframe_the_body() {
    let c = Config::from_json(FULL).expect("valid");
    let original = h(&[
        ("content-type", "application/json"),
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "api.openai.com"),
        ("content-length", "120"),
        ("transfer-encoding", "chunked"),
        ("x-ai-cb-upstream", "openai"),
        ("x-request-id", "abc"),
    ]);
    let azure = c.upstreams()[3].rewrite.as_ref();
    let out = callout_headers(&original, azure, "x-ai-cb-upstream", "azure-openai", 99);
    let get = |k: &str| out.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        get(":path"),
        Some("/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-02-15-preview")
    );
    assert_eq!(get(":authority"), Some("myco.openai.azure.com"));
    assert_eq!(get(":method"), Some("POST"));
    assert_eq!(get("content-length"), Some("99"));
    assert_eq!(get("transfer-encoding"), None);
    assert_eq!(get("x-ai-cb-upstream"), Some("azure-openai"));
    assert_eq!(get("x-request-id"), Some("abc"));
    assert!(
        out[..3].iter().all(|(k, _)| k.starts_with(':')),
        "pseudo-headers first: {out:?}"
    );
    assert_eq!(out.iter().filter(|(k, _)| k == "content-length").count(), 1);
}

#[test]
fn reply_headers_name_the_fallback_and_the_chain() {
    let callout = h(&[
        (":status", "200"),
        ("content-type", "text/event-stream"),
        ("transfer-encoding", "chunked"),
        ("x-ai-cb-served-by", "spoofed"),
        ("x-mock-provider", "anthropic"),
    ]);
    let out = reply_headers(
        &callout,
        "x-ai-cb-served-by",
        "anthropic",
        "openai->anthropic",
    );
    assert_eq!(
        out,
        h(&[
            ("content-type", "text/event-stream"),
            ("x-mock-provider", "anthropic"),
            ("x-ai-cb-served-by", "anthropic"),
            ("x-ai-cb-failover", "openai->anthropic"),
        ])
    );
}

#[test]
fn a_callout_without_response_is_a_timeout_or_a_connect_failure() {
    assert_eq!(callout_failure(2_000, 2_000), FailureReason::Timeout);
    assert_eq!(callout_failure(1_990, 2_000), FailureReason::Timeout);
    assert_eq!(callout_failure(3, 2_000), FailureReason::ConnectFailure);
}
