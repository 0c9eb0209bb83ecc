//! Streamed answers in the exchange: judged by their events, held until the first token
//! while they may fail over, never passed off as whole when they are not.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::case::*;
use super::fake::{Bytes, Info};
use crate::classify::flags;
use crate::exchange::{Effect, Event, Flow, Step};
use crate::runtime::StopIteration;

const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
const TOKEN: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";
const FINISH: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
const DONE: &str = "data: [DONE]\n\n";
const ERROR: &str = "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
const SSE: &[(&str, &str)] = &[("content-type", "text/event-stream")];

fn streaming(grant: bool) -> Case {
    let mut c = Case::new(CONFIG);
    // Denied: a plain Istio WasmPlugin, where nothing can be held.
    c.w.rt.stop_iteration.set(if grant {
        StopIteration::Granted
    } else {
        StopIteration::Denied
    });
    c.post(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#);
    c
}

/// A body callback while the answer is held: Envoy reports everything it holds.
fn held(c: &mut Case, so_far: &str, end_of_stream: bool) -> Step {
    c.send(Event::ResponseBody {
        len: so_far.len(),
        end_of_stream,
        body: &Bytes(so_far.as_bytes().to_vec()),
    })
}

fn count(c: &Case, key: &str) -> u64 {
    c.w.metrics().count(key)
}

#[test]
fn a_stream_is_not_a_success_at_its_headers_but_when_it_ends_whole() {
    let mut c = streaming(false);
    let h = c.response(200, SSE);
    assert_eq!(h.flow, Flow::Continue, "not held without stop-iteration");
    assert_eq!(c.ex.phase_name(), "streaming");
    assert_eq!(count(&c, "requests{openai,success}"), 0);
    for chunk in [ROLE, TOKEN, FINISH, USAGE] {
        assert_eq!(c.response_body(chunk.as_bytes(), false), Step::go());
    }
    assert_eq!(count(&c, "first_token{openai}"), 1);
    let end = c.response_body(DONE.as_bytes(), true);
    assert_eq!(end, Step::go(), "nothing added to a whole stream");
    assert_eq!(count(&c, "requests{openai,success}"), 1);
    assert_eq!(count(&c, "input_tokens{openai}"), 5);
    assert_eq!(count(&c, "output_tokens{openai}"), 2);
}

#[test]
fn held_until_the_first_token_then_released_whole() {
    let mut c = streaming(true);
    assert_eq!(c.response(200, SSE).flow, Flow::Pause, "headers held");
    assert_eq!(
        held(&mut c, ROLE, false).flow,
        Flow::Pause,
        "a role chunk is not content"
    );
    let first = format!("{ROLE}{TOKEN}");
    let go = held(&mut c, &first, false);
    assert_eq!(
        go.flow,
        Flow::Continue,
        "the first token releases everything"
    );
    assert!(go.effects.is_empty(), "{go:?}");
    assert_eq!(count(&c, "first_token{openai}"), 1);
    // From here chunks flow one by one.
    assert_eq!(
        c.response_body(FINISH.as_bytes(), false).flow,
        Flow::Continue
    );
    c.response_body(DONE.as_bytes(), true);
    assert_eq!(count(&c, "requests{openai,success}"), 1);
}

#[test]
fn an_error_event_before_the_first_token_fails_over_invisibly() {
    let mut c = streaming(true);
    c.response(200, SSE);
    held(&mut c, ROLE, false);
    let all = format!("{ROLE}{ERROR}");
    let step = held(&mut c, &all, false);
    assert_eq!(step.flow, Flow::Pause, "still held");
    assert_eq!(call(&step).expect("fallback called").cluster, "anthropic");
    assert!(step
        .effects
        .contains(&Effect::ClearResponseBody { len: all.len() }));
    assert_eq!(count(&c, "failures{openai,stream_error}"), 1);
    let a = c.answer(200, b"data: [DONE]\n\n");
    let r = reply(&a).expect("the fallback's answer");
    assert_eq!(
        header_of(&r.headers, "x-ai-cb-failover"),
        Some("openai->anthropic")
    );
}

#[test]
fn with_no_fallback_a_failed_held_stream_goes_on_as_it_is() {
    let mut c = streaming(true);
    c.trip("anthropic");
    c.trip("azure");
    c.response(200, SSE);
    let all = format!("{ROLE}{ERROR}");
    let step = held(&mut c, &all, false);
    assert_eq!(
        step.flow,
        Flow::Continue,
        "released: the error event reaches the client"
    );
    assert!(call(&step).is_none());
    assert_eq!(count(&c, "failures{openai,stream_error}"), 1);
    c.response_body(b"", true);
    assert_eq!(count(&c, "requests{openai,failure}"), 1, "counted once");
}

#[test]
fn a_clean_end_before_the_first_token_fails_over_and_a_later_one_is_marked() {
    let mut c = streaming(true);
    c.response(200, SSE);
    let step = held(&mut c, ROLE, true);
    assert!(
        call(&step).is_some(),
        "an empty stream with no end fails over"
    );
    assert_eq!(count(&c, "failures{openai,stream_truncated}"), 1);

    let mut d = streaming(false);
    d.response(200, SSE);
    d.response_body(format!("{ROLE}{TOKEN}").as_bytes(), false);
    let end = d.response_body(b"", true);
    let Some(Effect::ReplaceResponseBody { len, body }) = end.effects.first() else {
        panic!("an error event is appended: {end:?}");
    };
    assert_eq!(*len, 0);
    let text = String::from_utf8_lossy(body);
    assert!(
        text.contains("\"error\"") && text.contains("stream_truncated"),
        "{text}"
    );
    assert_eq!(count(&d, "failures{openai,stream_truncated}"), 1);
}

#[test]
fn finish_reason_without_done_is_a_whole_stream() {
    let mut c = streaming(false);
    c.response(200, SSE);
    c.response_body(format!("{ROLE}{TOKEN}{FINISH}").as_bytes(), false);
    assert_eq!(c.response_body(b"", true), Step::go());
    assert_eq!(count(&c, "requests{openai,success}"), 1);
}

#[test]
fn an_error_after_the_first_token_passes_through_and_is_counted_once() {
    let mut c = streaming(false);
    c.response(200, SSE);
    c.response_body(format!("{ROLE}{TOKEN}").as_bytes(), false);
    assert_eq!(c.response_body(ERROR.as_bytes(), false), Step::go());
    assert_eq!(count(&c, "failures{openai,stream_error}"), 1);
    assert_eq!(
        c.response_body(b"", true),
        Step::go(),
        "its own error event says it"
    );
    assert_eq!(count(&c, "requests{openai,failure}"), 1);
}

#[test]
fn a_malformed_event_is_counted_and_is_not_a_failure() {
    let mut c = streaming(false);
    c.response(200, SSE);
    let stream = format!("{ROLE}{TOKEN}data: {{not json\n\n{FINISH}{DONE}");
    c.response_body(stream.as_bytes(), true);
    assert_eq!(count(&c, "malformed{openai}"), 1);
    assert_eq!(count(&c, "requests{openai,success}"), 1);
}

#[test]
fn the_first_token_deadline_fails_over_a_held_stream() {
    let json = CONFIG.replace(
        r#""success_threshold": 1}"#,
        r#""success_threshold": 1, "first_token_timeout": 2}"#,
    );
    let mut c = Case::new(&json);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    c.post(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#);
    c.response(200, SSE);
    held(&mut c, ROLE, false);
    assert_eq!(c.ex.wake_at(&c.w.rt.config), Some(T0 + 2_000));
    c.clock.set(T0 + 2_000);
    let t = c.send(Event::Tick {
        stream: &Info::default(),
    });
    assert_eq!(call(&t).expect("fallback").cluster, "anthropic");
    assert_eq!(count(&c, "failures{openai,slow_first_token}"), 1);
    assert_eq!(c.ex.phase_name(), "failing_over");
}

#[test]
fn a_committed_stream_that_stalls_is_ended() {
    let json = CONFIG.replace(
        r#""success_threshold": 1}"#,
        r#""success_threshold": 1, "stream_idle_timeout": 5}"#,
    );
    let mut c = Case::new(&json);
    c.w.rt.stop_iteration.set(StopIteration::Denied);
    c.post(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#);
    c.response(200, SSE);
    c.response_body(format!("{ROLE}{TOKEN}").as_bytes(), false);
    c.clock.set(T0 + 4_999);
    assert_eq!(
        c.send(Event::Tick {
            stream: &Info::default()
        }),
        Step::go()
    );
    c.clock.set(T0 + 5_000);
    let t = c.send(Event::Tick {
        stream: &Info::default(),
    });
    assert!(
        reply(&t).is_some(),
        "ended: the client gets an error, not a hang"
    );
    assert_eq!(count(&c, "failures{openai,stream_stall}"), 1);
}

#[test]
fn a_reset_mid_stream_is_truncated_and_a_client_that_leaves_is_not_counted() {
    let mut c = streaming(false);
    c.response(200, SSE);
    c.response_body(format!("{ROLE}{TOKEN}").as_bytes(), false);
    let reset = Info {
        flags: flags::UPSTREAM_PROTOCOL_ERROR,
        details: Some("upstream_reset_after_response_started{protocol_error}".into()),
        received: None,
    };
    c.send(Event::Done { info: &reset });
    assert_eq!(count(&c, "failures{openai,stream_truncated}"), 1);

    let mut d = streaming(false);
    d.response(200, SSE);
    d.response_body(format!("{ROLE}{TOKEN}").as_bytes(), false);
    d.send(Event::Done {
        info: &Info::default(),
    });
    assert_eq!(count(&d, "requests{openai,failure}"), 0);
    assert_eq!(count(&d, "requests{openai,success}"), 0);
}

#[test]
fn a_give_up_after_a_failed_stream_ends_with_an_error_event() {
    let mut c = streaming(true);
    c.response(200, SSE);
    let all = format!("{ROLE}{ERROR}");
    held(&mut c, &all, true);
    c.answer(503, b"{}");
    let a = c.answer(503, b"{}");
    let r = reply(&a).expect("the primary's stream, marked and ended");
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.starts_with(ROLE), "{text}");
    assert!(
        text.contains("upstream_failed"),
        "an SDK raises on it: {text}"
    );
}

#[test]
fn with_no_fallback_a_held_stream_cut_before_its_first_token_keeps_what_was_held() {
    let mut c = streaming(true);
    c.trip("anthropic");
    c.trip("azure");
    c.response(200, SSE);
    assert_eq!(held(&mut c, ROLE, false).flow, Flow::Pause, "held");
    // The upstream ends after a keep-alive comment: Envoy reports all it holds.
    let all = format!("{ROLE}: keep-alive\n\n");
    let end = held(&mut c, &all, true);
    let Some(Effect::ReplaceResponseBody { len, body }) = end.effects.first() else {
        panic!("an error event is appended: {end:?}");
    };
    assert_eq!(*len, all.len(), "the whole held buffer is replaced");
    let text = String::from_utf8_lossy(body);
    assert!(text.starts_with(ROLE), "the held start is kept: {text}");
    assert!(text.contains("stream_truncated"), "{text}");
    assert_eq!(count(&c, "failures{openai,stream_truncated}"), 1);
}

#[test]
fn a_stream_drops_its_request_copy_once_it_can_no_longer_fail_over() {
    let mut c = streaming(true);
    assert!(c.ex.kept_request_bytes() > 0, "kept for failover");
    c.response(200, SSE);
    held(&mut c, ROLE, false);
    assert!(
        c.ex.kept_request_bytes() > 0,
        "held: it may still fail over"
    );
    held(&mut c, &format!("{ROLE}{TOKEN}"), false);
    assert_eq!(c.ex.kept_request_bytes(), 0, "committed at the first token");

    let mut d = streaming(false);
    assert!(d.ex.kept_request_bytes() > 0);
    d.response(200, SSE);
    assert_eq!(
        d.ex.kept_request_bytes(),
        0,
        "not held: it can never fail over"
    );
}
