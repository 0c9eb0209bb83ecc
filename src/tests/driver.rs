//! The driver: what the proxy's callbacks do with a worker's exchanges, on the fake host.
//! Effects carried out in order, callouts that cannot be sent, callout answers routed to the
//! stream or the root that dispatched them, timer wake-ups, alert webhooks, the plugin
//! configuration, and Envoy's properties decoded.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use super::case::{CHAT, CONFIG, MODEL_ROUTES, T0};
use super::fake::{driver, Bytes, FakeHost, FakeProxy, Map, RawProps};
use crate::breaker::Ticket;
use crate::driver::{load_config, Driver, Stream};
use crate::exchange::{Answer, Effect, Event, Flow, StreamInfo, BODY_WAIT_MS};
use crate::host::{epoch_ms, unit_from, EnvoyInfo};
use crate::outcome::{FailureReason, Outcome};
use crate::runtime::StopIteration;

const CTX: u32 = 7;

fn count(d: &Driver<FakeHost>, key: &str) -> u64 {
    d.rt.host.metrics.count(key)
}

/// The client's request: headers, then `body` in one chunk.
fn post(d: &Driver<FakeHost>, p: &FakeProxy, s: &mut Stream, body: &[u8]) {
    let len = body.len().to_string();
    let headers = Map::of(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "api.example"),
        ("content-type", "application/json"),
        ("content-length", &len),
    ]);
    let end_of_stream = false;
    s.on_event(
        d,
        p,
        Event::RequestHeaders {
            headers: &headers,
            end_of_stream,
        },
    );
    let body = &Bytes(body.to_vec());
    s.on_event(
        d,
        p,
        Event::RequestBody {
            len: body.0.len(),
            end_of_stream: true,
            body,
        },
    );
}

fn respond(
    d: &Driver<FakeHost>,
    p: &FakeProxy,
    s: &mut Stream,
    status: u16,
    extra: &[(&str, &str)],
) -> Flow {
    let st = status.to_string();
    let mut headers = Map::of(&[(":status", &st)]);
    headers.0.extend(Map::of(extra).0);
    let event = Event::ResponseHeaders {
        headers: &headers,
        info: &p.info,
        end_of_stream: false,
    };
    s.on_event(d, p, event)
}

/// Hands `f` an answer of `status` with a small JSON body.
fn answer_of(status: u16, f: impl FnOnce(Option<Answer<'_>>)) {
    let st = status.to_string();
    let headers = Map::of(&[(":status", &st), ("content-type", "application/json")]);
    let body = Bytes(br#"{"id":"x"}"#.to_vec());
    f(Some(Answer {
        headers: &headers,
        body: &body,
        body_len: body.0.len(),
    }));
}

fn calls(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Call(c) => Some(c.cluster.as_str()),
            _ => None,
        })
        .collect()
}

fn reply_status(effects: &[Effect]) -> Option<u16> {
    effects.iter().find_map(|e| match e {
        Effect::Reply(r) => Some(r.status),
        _ => None,
    })
}

#[test]
fn a_callout_that_cannot_be_sent_is_reported_back_at_once_and_the_next_fallback_is_called() {
    let (d, _) = driver(CONFIG, T0);
    let (p, mut s) = (FakeProxy::default(), Stream::new(CTX));
    post(&d, &p, &mut s, CHAT);
    p.refuse_calls.set(1);
    respond(&d, &p, &mut s, 500, &[]);
    assert_eq!(
        calls(&p.take()),
        ["anthropic", "azure-openai"],
        "in one callback"
    );
    assert_eq!(count(&d, "failovers{openai,anthropic,failure}"), 1);
    answer_of(200, |a| s.on_callout_answer(&d, &p, 1, a));
    assert_eq!(
        reply_status(&p.take()),
        Some(200),
        "azure's answer, token 1"
    );
    assert_eq!(count(&d, "failovers{openai,azure,success}"), 1);
}

#[test]
fn a_stream_drives_only_the_answer_to_its_own_callout() {
    let (d, _) = driver(CONFIG, T0);
    let (p, mut s) = (FakeProxy::default(), Stream::new(CTX));
    post(&d, &p, &mut s, CHAT);
    respond(&d, &p, &mut s, 500, &[]);
    assert_eq!(calls(&p.take()), ["anthropic"]);
    answer_of(200, |a| s.on_callout_answer(&d, &p, 2, a));
    assert!(p.take().is_empty(), "token 2 is someone else's");
    assert_eq!(s.phase_name(), "failing_over");
    answer_of(200, |a| s.on_callout_answer(&d, &p, 1, a));
    assert_eq!(reply_status(&p.take()), Some(200));
    answer_of(200, |a| s.on_callout_answer(&d, &p, 1, a));
    assert!(p.take().is_empty(), "an answer is driven once");
}

/// A stream whose request is held at its headers for its body (a route matches on `model`).
fn held() -> (Driver<FakeHost>, Rc<Cell<u64>>, FakeProxy, Stream) {
    let (d, clock) = driver(MODEL_ROUTES, T0);
    let (p, mut s) = (FakeProxy::default(), Stream::new(CTX));
    let headers = Map::of(&[(":method", "POST"), (":path", "/v1/chat/completions")]);
    let event = Event::RequestHeaders {
        headers: &headers,
        end_of_stream: false,
    };
    assert_eq!(s.on_event(&d, &p, event), Flow::Pause);
    assert_eq!(s.phase_name(), "held_for_body");
    p.take();
    (d, clock, p, s)
}

#[test]
fn the_timer_wakes_a_waiting_stream_on_its_context_when_due_and_not_before() {
    let (d, clock, mut p, s) = held();
    p.info.received = Some(40);
    clock.set(T0 + BODY_WAIT_MS - 1);
    d.on_tick(&p);
    assert!(
        p.entered.borrow().is_empty() && p.take().is_empty(),
        "not due"
    );
    clock.set(T0 + BODY_WAIT_MS);
    d.on_tick(&p);
    assert_eq!(*p.entered.borrow(), [CTX]);
    assert_eq!(
        p.take(),
        [Effect::ResumeRequest],
        "Envoy holds a body it did not show"
    );
    assert_eq!(s.phase_name(), "sent");
    clock.set(T0 + 10 * BODY_WAIT_MS);
    d.on_tick(&p);
    assert_eq!(
        p.entered.borrow().len(),
        1,
        "no longer waiting: not woken again"
    );
}

#[test]
fn the_timer_forgets_a_stream_that_went_away() {
    let (d, clock, p, s) = held();
    drop(s);
    clock.set(T0 + BODY_WAIT_MS);
    d.on_tick(&p);
    assert!(p.entered.borrow().is_empty() && p.take().is_empty());
}

#[test]
fn a_stream_the_host_cannot_enter_is_not_driven() {
    let (d, clock, p, s) = held();
    p.gone.borrow_mut().push(CTX);
    clock.set(T0 + BODY_WAIT_MS);
    d.on_tick(&p);
    assert_eq!(*p.entered.borrow(), [CTX]);
    assert!(p.take().is_empty());
    assert_eq!(s.phase_name(), "held_for_body");
}

const SSE_ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";

/// A held stream past its first-token deadline: the timer fails it over, the callout
/// (token 1) dispatched from the root.
fn failed_over_on_a_tick() -> (Driver<FakeHost>, FakeProxy, Stream) {
    let json = CONFIG.replace(
        r#""success_threshold": 1}"#,
        r#""success_threshold": 1, "first_token_timeout": 2}"#,
    );
    let (d, clock) = driver(&json, T0);
    d.rt.stop_iteration.set(StopIteration::Granted);
    let (p, mut s) = (FakeProxy::default(), Stream::new(CTX));
    post(
        &d,
        &p,
        &mut s,
        br#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
    );
    respond(
        &d,
        &p,
        &mut s,
        200,
        &[("content-type", "text/event-stream")],
    );
    let body = &Bytes(SSE_ROLE.as_bytes().to_vec());
    s.on_event(
        &d,
        &p,
        Event::ResponseBody {
            len: body.0.len(),
            end_of_stream: false,
            body,
        },
    );
    p.take();
    clock.set(T0 + 2_000);
    d.on_tick(&p);
    assert_eq!(calls(&p.take()), ["anthropic"], "dispatched from the root");
    assert_eq!(count(&d, "failures{openai,slow_first_token}"), 1);
    (d, p, s)
}

#[test]
fn a_callout_dispatched_on_a_tick_is_answered_through_the_root() {
    let (d, p, mut s) = failed_over_on_a_tick();
    answer_of(200, |a| s.on_callout_answer(&d, &p, 1, a));
    assert!(p.take().is_empty(), "the stream did not dispatch it");
    answer_of(200, |a| d.on_callout_answer(&p, 1, a));
    assert_eq!(*p.entered.borrow(), [CTX, CTX]);
    assert_eq!(reply_status(&p.take()), Some(200));
    assert_eq!(count(&d, "failovers{openai,anthropic,success}"), 1);
    assert_eq!(count(&d, "alerts{sent}") + count(&d, "alerts{failed}"), 0);
}

#[test]
fn an_answer_for_a_stream_that_went_away_is_dropped_not_counted_as_an_alert() {
    let (d, p, mut s) = failed_over_on_a_tick();
    s.on_event(&d, &p, Event::Done { info: &p.info });
    drop(s);
    answer_of(200, |a| d.on_callout_answer(&p, 1, a));
    assert_eq!(*p.entered.borrow(), [CTX], "only the tick entered it");
    assert!(p.take().is_empty());
    assert_eq!(count(&d, "alerts{sent}") + count(&d, "alerts{failed}"), 0);
}

#[test]
fn an_answer_no_exchange_waits_for_is_an_alert_webhooks_answer() {
    let (d, _) = driver(CONFIG, T0);
    let p = FakeProxy::default();
    answer_of(204, |a| d.on_callout_answer(&p, 9, a));
    assert_eq!(count(&d, "alerts{sent}"), 1);
    answer_of(500, |a| d.on_callout_answer(&p, 9, a));
    d.on_callout_answer(&p, 9, None);
    assert_eq!(count(&d, "alerts{failed}"), 2);
    assert!(p.entered.borrow().is_empty());
}

const ALERTING: &str = r#"{
    "defaults": {"failure_threshold": 1, "recovery_jitter": 0},
    "upstreams": [{"name": "openai"}, {"name": "anthropic"}],
    "routes": [{"upstream": "openai"}],
    "alerting": {"cluster": "webhook", "min_interval": 0}
}"#;

fn trip(d: &Driver<FakeHost>, name: &str) {
    let u = d.rt.config.upstream_id(name).expect("configured");
    let failure = Outcome::failure(FailureReason::Status5xx);
    d.rt.record(u, Ticket::Counted, T0, &failure);
}

#[test]
fn the_timer_sends_the_alert_webhooks_and_counts_one_it_cannot_send_as_failed() {
    let (d, _) = driver(ALERTING, T0);
    let p = FakeProxy::default();
    trip(&d, "openai");
    d.on_tick(&p);
    assert_eq!(calls(&p.take()), ["webhook"]);
    d.on_tick(&p);
    assert!(p.take().is_empty(), "sent once");
    assert_eq!(count(&d, "alerts{failed}"), 0);
    trip(&d, "anthropic");
    p.refuse_calls.set(1);
    d.on_tick(&p);
    assert_eq!(calls(&p.take()), ["webhook"]);
    assert_eq!(count(&d, "alerts{failed}"), 1);
}

#[test]
fn the_plugin_configuration_is_compiled_or_refused_with_its_error() {
    assert_eq!(
        load_config(None).err().as_deref(),
        Some("config: no plugin configuration given")
    );
    let bad = br#"{"upstreams": [{"name": "a", "fallbacks": ["b"]}]}"#;
    let e = load_config(Some(bad)).expect_err("refused");
    assert!(
        e.contains(r#"upstreams[0].fallbacks[0]: unknown upstream "b""#),
        "{e}"
    );
    let c = load_config(Some(CONFIG.as_bytes())).expect("valid");
    assert_eq!(c.upstreams().len(), 3);
}

#[test]
fn envoys_properties_are_decoded_and_anything_unexpected_reads_as_unknown() {
    let props = RawProps {
        props: vec![
            (vec!["response", "flags"], 0x40u64.to_le_bytes().to_vec()),
            (vec!["response", "code_details"], b"upstream_reset".to_vec()),
            (vec!["request", "total_size"], 100u64.to_le_bytes().to_vec()),
        ],
        request_headers: Some(vec![(":path".into(), "/v1".into())]),
    };
    let info = EnvoyInfo(props);
    assert_eq!(info.response_flags(), 0x40);
    assert_eq!(info.code_details().as_deref(), Some("upstream_reset"));
    assert_eq!(
        info.request_body_received(),
        Some(100 - 8),
        "minus the headers' bytes"
    );

    let odd = EnvoyInfo(RawProps {
        props: vec![
            (vec!["response", "flags"], vec![1, 2, 3]),
            (vec!["response", "code_details"], vec![0xff, 0xfe]),
            (vec!["request", "total_size"], 4u64.to_le_bytes().to_vec()),
        ],
        request_headers: Some(vec![(":path".into(), "/v1".into())]),
    });
    assert_eq!(odd.response_flags(), 0, "short");
    assert_eq!(odd.code_details(), None, "not UTF-8");
    assert_eq!(odd.request_body_received(), Some(0), "never below zero");

    let none = EnvoyInfo(RawProps::default());
    assert_eq!(none.response_flags(), 0);
    assert_eq!(none.code_details(), None);
    assert_eq!(none.request_body_received(), None);
}

#[test]
fn the_hosts_clock_and_random_bytes_are_read_with_safe_fallbacks() {
    assert_eq!(epoch_ms(None), 0);
    assert_eq!(
        epoch_ms(Some(UNIX_EPOCH + Duration::from_millis(1_500))),
        1_500
    );
    assert_eq!(epoch_ms(UNIX_EPOCH.checked_sub(Duration::from_secs(1))), 0);
    assert_eq!(unit_from(None), 0.5);
    assert_eq!(unit_from(Some([0; 8])), 0.0);
    let top = unit_from(Some([0xff; 8]));
    assert!((0.99..1.0).contains(&top), "{top}");
}
