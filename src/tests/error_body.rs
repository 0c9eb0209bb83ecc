//! Error bodies that say more than their status: quota, context length, content policy, and
//! what the exchange does with each.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::case::*;
use crate::breaker::{Admission, StateKind};
use crate::error_body::{read, worth_reading, ErrorKind};
use crate::exchange::{Effect, Flow, Step};

const OPENAI_QUOTA: &[u8] = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
const OPENAI_RATE: &[u8] = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
const OPENAI_CONTEXT: &[u8] = br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
const OPENAI_POLICY: &[u8] = br#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;
const AZURE_FILTER: &[u8] = br#"{"error":{"message":"The response was filtered","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#;
const ANTHROPIC_BILLING: &[u8] = br#"{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
const ANTHROPIC_CREDIT: &[u8] = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing."}}"#;
const ANTHROPIC_LONG: &[u8] = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;

#[test]
fn provider_error_bodies_are_told_apart() {
    assert_eq!(read(OPENAI_QUOTA), ErrorKind::Quota);
    assert_eq!(read(ANTHROPIC_BILLING), ErrorKind::Quota);
    assert_eq!(read(ANTHROPIC_CREDIT), ErrorKind::Quota);
    assert_eq!(read(OPENAI_CONTEXT), ErrorKind::ContextLength);
    assert_eq!(read(ANTHROPIC_LONG), ErrorKind::ContextLength);
    assert_eq!(read(OPENAI_POLICY), ErrorKind::ContentPolicy);
    assert_eq!(read(AZURE_FILTER), ErrorKind::ContentPolicy);
    assert_eq!(read(OPENAI_RATE), ErrorKind::Other);
    assert_eq!(read(br#"{"error":"bad key"}"#), ErrorKind::Other);
    assert_eq!(read(b"<html>nope</html>"), ErrorKind::Other);
    assert_eq!(read(b""), ErrorKind::Other);
    assert!(worth_reading(Some(429), Some("application/json")));
    assert!(!worth_reading(Some(429), Some("text/html")));
    assert!(!worth_reading(Some(500), Some("application/json")));
}

const JSON: (&str, &str) = ("content-type", "application/json");

const BIG: &str = r#"{
    "defaults": {"failure_threshold": 5, "recovery_timeout": 10, "recovery_jitter": 0,
                 "quota_recovery_timeout": 120},
    "upstreams": [
        {"name": "openai", "fallbacks": ["anthropic"], "context_window_fallback": "big"},
        {"name": "anthropic", "rewrite": {"model": "claude"}},
        {"name": "big", "rewrite": {"model": "gpt-4.1"}}
    ],
    "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
}"#;

#[test]
fn an_error_answer_is_held_until_its_body_says_what_it_is() {
    let mut c = Case::new(BIG);
    c.post(CHAT);
    let h = c.response(429, &[JSON]);
    assert_eq!(h.flow, Flow::Pause);
    assert_eq!(c.ex.phase_name(), "reading_error");
    assert_eq!(c.response_body(&OPENAI_QUOTA[..20], false), Step::pause());
    assert_eq!(c.count("requests{openai,failure}"), 0, "not judged yet");
}

#[test]
fn insufficient_quota_opens_the_breaker_at_once_for_quota_recovery_timeout() {
    let mut c = Case::new(BIG);
    c.post(CHAT);
    c.response(429, &[JSON]);
    let b = c.response_body(OPENAI_QUOTA, true);
    assert_eq!(b.flow, Flow::Pause);
    assert!(b.effects.contains(&Effect::ClearResponseBody {
        len: OPENAI_QUOTA.len()
    }));
    assert_eq!(call(&b).map(|x| x.cluster.as_str()), Some("anthropic"));
    assert_eq!(c.count("failures{openai,quota_exhausted}"), 1);
    assert_eq!(c.state("openai"), StateKind::Open, "one failure is enough");
    let snap = c.w.rt.snapshot(c.id("openai"), T0);
    assert_eq!(
        snap.next_probe_in_ms,
        Some(120_000),
        "not recovery_timeout (10 s)"
    );
    let admit = |ms| c.w.rt.admit(c.id("openai"), T0 + ms);
    assert!(matches!(admit(119_999), Admission::Rejected { .. }));
    assert!(matches!(admit(120_000), Admission::Admitted(_)));
    assert_eq!(c.state("openai"), StateKind::HalfOpen);
}

#[test]
fn a_plain_rate_limit_body_stays_a_rate_limit() {
    let mut c = Case::new(BIG);
    c.post(CHAT);
    c.response(429, &[JSON, ("retry-after", "2")]);
    let b = c.response_body(OPENAI_RATE, true);
    assert_eq!(call(&b).map(|x| x.cluster.as_str()), Some("anthropic"));
    assert_eq!(c.count("failures{openai,rate_limit}"), 1);
    assert_eq!(c.state("openai"), StateKind::Closed);
}

#[test]
fn a_prompt_too_long_goes_to_the_context_window_fallback_with_its_rewrite() {
    let mut c = Case::new(BIG);
    c.post(CHAT);
    c.response(400, &[JSON]);
    let b = c.response_body(OPENAI_CONTEXT, true);
    let big = call(&b).expect("re-sent");
    assert_eq!(big.cluster, "big");
    let sent = String::from_utf8(big.body.clone()).expect("utf-8");
    assert!(sent.contains(r#""model":"gpt-4.1""#), "{sent}");
    assert_eq!(c.count("requests{openai,ignored}"), 1, "never a failure");
    assert_eq!(c.count("requests{openai,failure}"), 0);
    let a = c.answer(200, br#"{"id":"big"}"#);
    let r = reply(&a).expect("its answer");
    assert_eq!(r.body, br#"{"id":"big"}"#);
    assert_eq!(header_of(&r.headers, "x-ai-cb-served-by"), Some("big"));
}

#[test]
fn when_the_larger_upstream_fails_too_the_client_gets_the_original_400() {
    let mut c = Case::new(BIG);
    c.post(CHAT);
    c.response(400, &[JSON]);
    c.response_body(ANTHROPIC_LONG, true);
    let a = c.answer(500, b"down");
    assert!(
        call(&a).is_none(),
        "no other upstream for a context-length error"
    );
    let r = reply(&a).expect("the held 400");
    assert_eq!(r.status, 400);
    assert_eq!(r.body, ANTHROPIC_LONG);
}

#[test]
fn without_a_context_window_fallback_a_prompt_too_long_passes_through() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    c.response(400, &[JSON]);
    assert_eq!(c.response_body(OPENAI_CONTEXT, true), Step::go());
    assert_eq!(c.count("requests{openai,ignored}"), 1);
}

#[test]
fn a_content_policy_refusal_passes_through_unchanged_and_is_no_failure() {
    let mut c = Case::new(BIG);
    c.post(CHAT);
    c.response(400, &[JSON]);
    assert_eq!(c.response_body(OPENAI_POLICY, true), Step::go());
    assert_eq!(c.count("requests{openai,ignored}"), 1);
    assert_eq!(c.count("requests{openai,failure}"), 0);
}

#[test]
fn a_long_error_body_is_judged_on_its_first_8_kib() {
    let mut c = Case::new(BIG);
    c.post(CHAT);
    c.response(403, &[JSON]);
    let big = vec![b' '; 9 * 1024];
    assert_eq!(
        c.response_body(&big, false),
        Step::go(),
        "judged, passed on"
    );
    assert_eq!(c.count("requests{openai,ignored}"), 1);
}

#[test]
fn a_client_leaving_while_an_error_body_is_read_frees_its_probe_slot() {
    let mut c = Case::new(BIG);
    c.w.rt.record(
        c.id("openai"),
        crate::breaker::Ticket::Counted,
        T0,
        &crate::outcome::Outcome::failure(crate::outcome::FailureReason::QuotaExhausted),
    );
    c.clock.set(T0 + 120_000);
    c.post(CHAT);
    c.response(429, &[JSON]);
    c.send(crate::exchange::Event::Done {
        info: &super::fake::Info::default(),
    });
    assert_eq!(c.state("openai"), StateKind::HalfOpen);
    let again = c.w.rt.admit(c.id("openai"), T0 + 120_001);
    assert!(
        matches!(again, crate::breaker::Admission::Admitted(_)),
        "the slot was freed: {again:?}"
    );
}
