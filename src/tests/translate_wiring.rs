//! Provider translation on the exchange's paths, driven in-process: a reroute to a fallback
//! of the other format (both ways), a failover callout, a refused translation skipping its
//! upstream, the rewrite applied after translation, and a stream translated chunk by chunk
//! while it is judged on the upstream's own events.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::Value;

use super::case::*;
use super::fake::{Bytes, Map};
use crate::exchange::{Answer, Effect, Event, Flow, Step};
use crate::runtime::StopIteration;

const XCFG: &str = r#"{
    "defaults": {"failure_threshold": 2, "recovery_timeout": 10, "recovery_jitter": 0,
                 "success_threshold": 1},
    "upstreams": [
        {"name": "openai", "api": "openai", "fallbacks": ["anthropic", "azure"]},
        {"name": "anthropic", "api": "anthropic", "default_max_tokens": 256,
         "rewrite": {"model": "claude-x", "headers": {"x-provider": "anthropic"}}},
        {"name": "azure", "cluster": "azure-openai",
         "rewrite": {"path": "/openai/deployments/x/chat/completions", "host": "azure.example"}},
        {"name": "claude", "api": "anthropic", "fallbacks": ["gpt"]},
        {"name": "gpt", "api": "openai", "rewrite": {"model": "gpt-4o"}}
    ],
    "routes": [{"match": {"path_prefix": "/v1/messages"}, "upstream": "claude"},
               {"match": {"path_prefix": "/v1/"}, "upstream": "openai"}],
    "failover": {"max_attempts": 2}
}"#;

const ANTHROPIC_REQUEST: &[u8] = br#"{"model":"claude-3-5-sonnet","max_tokens":100,"system":"be brief","messages":[{"role":"user","content":"hi"}]}"#;

const ANTHROPIC_ANSWER: &[u8] = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":3}}"#;

const OPENAI_ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#;

const SSE: &[(&str, &str)] = &[("content-type", "text/event-stream")];

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

fn replaced(step: &Step) -> Option<&[u8]> {
    step.effects.iter().find_map(|e| match e {
        Effect::ReplaceResponseBody { body, .. } => Some(body.as_slice()),
        _ => None,
    })
}

fn removes_response(step: &Step, name: &str) -> bool {
    step.effects
        .iter()
        .any(|e| matches!(e, Effect::RemoveResponseHeader(n) if n == name))
}

/// An Anthropic-SDK request (`/v1/messages`) with its body.
fn anthropic_post(c: &mut Case, body: &[u8]) -> (Step, Step) {
    let len = body.len().to_string();
    let h = c.request(
        &[(":path", "/v1/messages"), ("content-length", &len)],
        false,
    );
    (h, c.body(body, true))
}

#[test]
fn an_openai_request_rerouted_to_an_anthropic_fallback_is_translated_then_rewritten() {
    let mut c = Case::new(XCFG);
    c.trip("openai");
    let h = c.request(&[("content-length", &CHAT.len().to_string())], false);
    assert_eq!(h.flow, Flow::Pause, "held for its body");
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("anthropic"));
    assert_eq!(set_header(&h, ":path"), Some("/v1/messages"));
    assert_eq!(set_header(&h, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(set_header(&h, "x-provider"), Some("anthropic"));
    assert_eq!(set_header(&h, "accept-encoding"), Some("identity"));
    let b = c.body(CHAT, true);
    let sent = new_body(&b).expect("translated");
    let v = json(sent.as_bytes());
    assert_eq!(
        v["model"], "claude-x",
        "the rewrite's model, after translation"
    );
    assert_eq!(v["max_tokens"], 256, "the upstream's default_max_tokens");
    assert_eq!(v["messages"][0]["role"], "user");
    assert_eq!(
        set_header(&b, "content-length"),
        Some(sent.len().to_string().as_str())
    );

    let r = c.response(
        200,
        &[
            ("content-type", "application/json"),
            ("content-length", "9"),
        ],
    );
    assert_eq!(response_header(&r, "x-ai-cb-served-by"), Some("anthropic"));
    assert_eq!(
        response_header(&r, "x-ai-cb-translated"),
        Some("openai->anthropic")
    );
    assert!(removes_response(&r, "content-length"), "{r:?}");
    assert_eq!(c.ex.phase_name(), "translating");
    let half = ANTHROPIC_ANSWER.len() / 2;
    let first = c.response_body(&ANTHROPIC_ANSWER[..half], false);
    assert_eq!(first.flow, Flow::Pause, "read whole first");
    let done = c.response_body(ANTHROPIC_ANSWER, true);
    let v = json(replaced(&done).expect("replaced"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(c.count("requests{anthropic,success}"), 1);
    assert_eq!(c.count("input_tokens{anthropic}"), 7);
    assert_eq!(c.count("translations{anthropic,translated}"), 1);
    assert_eq!(c.count("translations{anthropic,dropped}"), 0);
}

#[test]
fn an_anthropic_request_rerouted_to_an_openai_fallback_is_translated_both_ways() {
    let mut c = Case::new(XCFG);
    c.trip("claude");
    let (h, b) = anthropic_post(&mut c, ANTHROPIC_REQUEST);
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("gpt"));
    assert_eq!(set_header(&h, ":path"), Some("/v1/chat/completions"));
    assert_eq!(set_header(&h, "anthropic-version"), None);
    let v = json(new_body(&b).expect("translated").as_bytes());
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["messages"][0]["role"], "system");
    assert_eq!(v["messages"][1]["content"], "hi");

    let r = c.response(200, &[("content-type", "application/json")]);
    assert_eq!(
        response_header(&r, "x-ai-cb-translated"),
        Some("anthropic->openai")
    );
    let done = c.response_body(OPENAI_ANSWER, true);
    let v = json(replaced(&done).expect("replaced"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Hello");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 3);
}

#[test]
fn a_request_of_the_upstreams_own_format_is_never_translated() {
    let mut c = Case::new(XCFG);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    let (h, b) = c.post(CHAT);
    assert_eq!(set_header(&h, ":path"), None);
    assert_eq!(new_body(&b), None);
    let r = c.response(200, &[("content-type", "application/json")]);
    assert_eq!(response_header(&r, "x-ai-cb-translated"), None);
    assert_eq!(c.ex.phase_name(), "metering");
}

#[test]
fn a_request_the_fallback_cannot_take_skips_it_for_the_next() {
    let mut c = Case::new(XCFG);
    c.trip("openai");
    let n2 = br#"{"model":"gpt-4o","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let h = c.request(&[("content-length", &n2.len().to_string())], false);
    assert_eq!(
        set_header(&h, "x-ai-cb-upstream"),
        Some("anthropic"),
        "provisional"
    );
    let b = c.body(n2, true);
    assert_eq!(b.flow, Flow::Continue);
    assert_eq!(set_header(&b, "x-ai-cb-upstream"), Some("azure-openai"));
    assert!(removes(&b, "anthropic-version"), "{b:?}");
    assert!(removes(&b, "x-provider"), "{b:?}");
    assert_eq!(
        set_header(&b, ":path"),
        Some("/openai/deployments/x/chat/completions"),
        "azure's own rewrite"
    );
    assert_eq!(
        new_body(&b),
        None,
        "azure speaks openai: the body goes as sent"
    );
    c.response(200, &[]);
    assert_eq!(c.count("requests{azure,success}"), 1);
    assert_eq!(c.count("requests{anthropic,success}"), 0);
    assert_eq!(c.count("translations{anthropic,refused}"), 1);
    assert_eq!(c.count("translations{anthropic,translated}"), 0);

    // With azure open too, nothing can take it: the fast-fail answer, never a doomed call.
    let mut d = Case::new(XCFG);
    d.trip("openai");
    d.trip("azure");
    d.request(&[("content-length", &n2.len().to_string())], false);
    let b = d.body(n2, true);
    let r = reply(&b).expect("answered locally");
    assert_eq!(r.status, 503);
    assert_eq!(d.ex.phase_name(), "answered");
}

#[test]
fn an_error_from_a_translated_upstream_reaches_the_client_in_its_shape() {
    let mut c = Case::new(XCFG);
    c.trip("openai");
    c.post(CHAT);
    let r = c.response(404, &[("content-type", "application/json")]);
    assert_eq!(c.ex.phase_name(), "translating");
    assert!(r.effects.contains(&Effect::SetResponseHeader(
        "content-type".to_string(),
        "application/json".to_string()
    )));
    let err = br#"{"type":"error","error":{"type":"not_found_error","message":"no such model"}}"#;
    let done = c.response_body(err, true);
    let v = json(replaced(&done).expect("replaced"));
    assert_eq!(v["error"]["message"], "no such model");
    assert!(v["error"]["type"].is_string());

    // A 400 read to be judged and passed on is translated too.
    let mut d = Case::new(XCFG);
    d.trip("openai");
    d.post(CHAT);
    let r = d.response(400, &[("content-type", "application/json")]);
    assert_eq!(r.flow, Flow::Pause, "read first");
    let bad = br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#;
    let done = d.response_body(bad, true);
    let v = json(replaced(&done).expect("replaced"));
    assert_eq!(v["error"]["message"], "bad");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[test]
fn a_failover_callout_to_an_anthropic_fallback_is_translated_and_so_is_its_answer() {
    let mut c = Case::new(XCFG);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    c.post(CHAT);
    let failed = c.response(500, &[("content-type", "application/json")]);
    let call = call(&failed).expect("failover callout");
    assert_eq!(header_of(&call.headers, ":path"), Some("/v1/messages"));
    assert_eq!(
        header_of(&call.headers, "anthropic-version"),
        Some("2023-06-01")
    );
    assert_eq!(header_of(&call.headers, "x-provider"), Some("anthropic"));
    let v = json(&call.body);
    assert_eq!(v["model"], "claude-x");
    assert_eq!(v["max_tokens"], 256);
    assert_eq!(
        header_of(&call.headers, "content-length"),
        Some(call.body.len().to_string().as_str())
    );
    let done = c.answer(200, ANTHROPIC_ANSWER);
    let r = reply(&done).expect("the fallback's answer");
    assert_eq!(
        header_of(&r.headers, "x-ai-cb-translated"),
        Some("openai->anthropic")
    );
    assert_eq!(
        header_of(&r.headers, "x-ai-cb-failover"),
        Some("openai->anthropic")
    );
    let v = json(&r.body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
}

#[test]
fn a_callout_that_answers_with_a_stream_is_translated_into_the_clients_events() {
    let mut c = Case::new(XCFG);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    c.post(br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
    let failed = c.response(503, &[]);
    assert!(call(&failed).is_some());
    let sse = ANTHROPIC_STREAM.concat();
    let h = Map::of(&[(":status", "200"), ("content-type", "text/event-stream")]);
    let b = Bytes(sse.as_bytes().to_vec());
    let done = c.send(Event::CalloutAnswered(Some(Answer {
        headers: &h,
        body: &b,
        body_len: sse.len(),
    })));
    let r = reply(&done).expect("the fallback's stream");
    let text = String::from_utf8(r.body.clone()).expect("utf-8");
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.contains("\"Hel\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("content_block_delta"), "{text}");
}

const ANTHROPIC_STREAM: [&str; 7] = [
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":3}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];

/// A rerouted, translated stream: the request to `anthropic` sent, its answer's headers in.
fn translated_stream() -> Case {
    translated_stream_of(
        br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
}

fn translated_stream_of(body: &[u8]) -> Case {
    let mut c = Case::new(XCFG);
    c.w.rt.stop_iteration.set(StopIteration::Denied);
    c.trip("openai");
    c.request(&[], false);
    let b = c.body(body, true);
    assert!(new_body(&b).is_some_and(|s| s.contains("\"stream\":true")));
    let h = c.response(200, SSE);
    assert_eq!(h.flow, Flow::Continue, "not held without stop-iteration");
    assert_eq!(c.ex.phase_name(), "streaming");
    c
}

#[test]
fn a_translated_stream_is_judged_on_the_upstreams_events_and_each_chunk_is_replaced() {
    let mut c = translated_stream();
    let mut client = String::new();
    for (i, chunk) in ANTHROPIC_STREAM.iter().enumerate() {
        let last = i + 1 == ANTHROPIC_STREAM.len();
        let step = c.response_body(chunk.as_bytes(), last);
        let out = replaced(&step).expect("every chunk is replaced");
        client.push_str(std::str::from_utf8(out).expect("utf-8"));
    }
    assert!(
        client.contains("\"Hel\"") && client.contains("\"lo\""),
        "{client}"
    );
    assert!(client.contains("\"finish_reason\":\"stop\""), "{client}");
    assert!(client.trim_end().ends_with("data: [DONE]"), "{client}");
    assert!(!client.contains("message_start"), "{client}");
    // Judged on the Anthropic events: whole (message_stop), first token, usage.
    assert_eq!(c.count("requests{anthropic,success}"), 1);
    assert_eq!(c.count("failures{anthropic,stream_truncated}"), 0);
    assert_eq!(c.count("first_token{anthropic}"), 1);
    assert_eq!(c.count("input_tokens{anthropic}"), 7);
}

/// The client's bytes of a whole translated stream.
fn client_stream(c: &mut Case) -> String {
    let mut client = String::new();
    for (i, chunk) in ANTHROPIC_STREAM.iter().enumerate() {
        let step = c.response_body(chunk.as_bytes(), i + 1 == ANTHROPIC_STREAM.len());
        let out = replaced(&step).expect("every chunk is replaced");
        client.push_str(std::str::from_utf8(out).expect("utf-8"));
    }
    client
}

#[test]
fn a_translated_stream_ends_with_the_usage_chunk_only_when_the_openai_client_asked() {
    let mut plain = translated_stream();
    let out = client_stream(&mut plain);
    assert!(!out.contains("\"usage\""), "not asked for: {out}");
    assert!(out.trim_end().ends_with("data: [DONE]"), "{out}");

    let asked = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let mut c = translated_stream_of(asked);
    let out = client_stream(&mut c);
    assert!(out.contains("\"choices\":[],"), "the usage chunk: {out}");
    assert!(out.contains("\"prompt_tokens\":7"), "{out}");
}

#[test]
fn a_cut_translated_stream_ends_with_an_error_event_in_the_clients_shape() {
    let mut c = translated_stream();
    for chunk in &ANTHROPIC_STREAM[..3] {
        c.response_body(chunk.as_bytes(), false);
    }
    let end = c.response_body(ANTHROPIC_STREAM[3].as_bytes(), true);
    let out = String::from_utf8(replaced(&end).expect("replaced").to_vec()).expect("utf-8");
    assert!(out.contains("\"lo\""), "{out}");
    assert!(
        out.contains("data: {\"error\":"),
        "OpenAI's error chunk: {out}"
    );
    assert!(!out.contains("event: error"), "not Anthropic's: {out}");
    assert!(!out.contains("[DONE]"), "never passed off as whole: {out}");
    assert_eq!(c.count("failures{anthropic,stream_truncated}"), 1);
}

#[test]
fn a_parameter_the_target_cannot_express_is_dropped_and_counted() {
    let mut c = Case::new(XCFG);
    c.trip("openai");
    let seeded = br#"{"model":"gpt-4o","seed":7,"messages":[{"role":"user","content":"hi"}]}"#;
    c.request(&[("content-length", &seeded.len().to_string())], false);
    let b = c.body(seeded, true);
    let v = json(new_body(&b).expect("translated").as_bytes());
    assert!(v.get("seed").is_none(), "{v}");
    assert_eq!(c.count("translations{anthropic,translated}"), 1);
    assert_eq!(c.count("translations{anthropic,dropped}"), 1);
}

#[test]
fn a_held_translated_stream_is_released_at_its_first_token_as_the_clients_events() {
    let mut c = Case::new(XCFG);
    c.trip("openai");
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    c.request(&[("content-length", &body.len().to_string())], false);
    c.body(body, true);
    assert_eq!(c.w.rt.stop_iteration.get(), StopIteration::Granted);
    assert_eq!(
        c.response(200, SSE).flow,
        Flow::Pause,
        "held until its first token"
    );
    // While held, Envoy reports everything it holds.
    let mut so_far = String::new();
    for chunk in &ANTHROPIC_STREAM[..2] {
        so_far.push_str(chunk);
        let step = c.send(Event::ResponseBody {
            len: so_far.len(),
            end_of_stream: false,
            body: &Bytes(so_far.as_bytes().to_vec()),
        });
        assert_eq!(step.flow, Flow::Pause, "no content yet");
        assert_eq!(replaced(&step), None);
    }
    so_far.push_str(ANTHROPIC_STREAM[2]);
    let go = c.send(Event::ResponseBody {
        len: so_far.len(),
        end_of_stream: false,
        body: &Bytes(so_far.as_bytes().to_vec()),
    });
    assert_eq!(go.flow, Flow::Continue);
    let out =
        String::from_utf8(replaced(&go).expect("all held, replaced").to_vec()).expect("utf-8");
    assert!(out.contains("\"role\":\"assistant\""), "{out}");
    assert!(out.contains("\"Hel\""), "{out}");
    assert!(!out.contains("event: "), "{out}");
}

#[test]
fn when_every_upstream_fails_the_translated_upstreams_error_reaches_the_client_in_its_shape() {
    let mut c = Case::new(XCFG);
    c.trip("openai");
    c.post(CHAT);
    let failed = c.response(529, &[("content-type", "application/json")]);
    assert!(call(&failed).is_some(), "azure is called");
    let overloaded =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    c.response_body(overloaded, true);
    let done = c.answer(500, br#"{"error":{"message":"azure down"}}"#);
    let r = reply(&done).expect("the held failure, after all");
    assert_eq!(r.status, 529);
    assert_eq!(
        header_of(&r.headers, "content-type"),
        Some("application/json")
    );
    let v = json(&r.body);
    assert_eq!(
        v["error"]["message"], "Overloaded",
        "anthropic's error, OpenAI-shaped"
    );
    assert!(v.get("type").is_none(), "not Anthropic's envelope: {v}");
}

#[test]
fn an_openai_client_routed_to_an_anthropic_primary_is_translated_and_so_is_its_retry() {
    let json_cfg = XCFG
        .replace(
            r#"{"name": "claude", "api": "anthropic", "fallbacks": ["gpt"]}"#,
            r#"{"name": "claude", "api": "anthropic", "fallbacks": ["gpt"], "retry": {"attempts": 1}}"#,
        )
        .replace(
            r#""routes": ["#,
            r#""routes": [{"match": {"headers": {"x-team": "c"}}, "upstream": "claude"},"#,
        );
    let mut c = Case::new(&json_cfg);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    let len = CHAT.len().to_string();
    let h = c.request(&[("x-team", "c"), ("content-length", &len)], false);
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("claude"));
    assert_eq!(set_header(&h, ":path"), Some("/v1/messages"));
    let b = c.body(CHAT, true);
    let v = json(new_body(&b).expect("translated for the primary").as_bytes());
    assert_eq!(v["model"], "gpt-4o", "a primary gets no model rewrite");
    assert_eq!(v["max_tokens"], 4096, "the default default_max_tokens");
    let r = c.response(429, &[("retry-after", "1")]);
    assert_eq!(c.ex.phase_name(), "retrying", "{r:?}");
    c.response_body(b"slow down", true);
    c.clock.set(T0 + 1_000);
    let t = c.tick(None);
    let retry = call(&t).expect("retried");
    assert_eq!(retry.cluster, "claude");
    assert_eq!(header_of(&retry.headers, ":path"), Some("/v1/messages"));
    assert_eq!(json(&retry.body)["max_tokens"], 4096);
    let a = c.answer(200, ANTHROPIC_ANSWER);
    let reply = reply(&a).expect("the retry's answer");
    assert_eq!(json(&reply.body)["object"], "chat.completion");
}

#[test]
fn a_refused_body_whose_headers_already_left_is_answered_locally_never_sent() {
    let mut c = Case::new(XCFG);
    c.w.rt.stop_iteration.set(StopIteration::Denied);
    c.trip("openai");
    let h = c.request(&[], false);
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("anthropic"));
    assert_eq!(c.ex.phase_name(), "rewriting_body");
    let n2 = br#"{"model":"gpt-4o","n":3,"messages":[{"role":"user","content":"hi"}]}"#;
    let b = c.body(n2, true);
    assert_eq!(b.flow, Flow::Pause);
    assert_eq!(new_body(&b), None, "nothing sent to anthropic");
    assert!(b
        .effects
        .contains(&Effect::ClearRequestBody { len: n2.len() }));
    assert_eq!(reply(&b).map(|r| r.status), Some(503));
    assert_eq!(c.ex.phase_name(), "answered");
    assert_eq!(c.count("translations{anthropic,refused}"), 1);
}

#[test]
fn two_refusals_in_a_row_restore_the_clients_path_for_the_next_upstream() {
    let cfg = r#"{
        "defaults": {"failure_threshold": 2, "recovery_timeout": 10},
        "upstreams": [
            {"name": "openai", "fallbacks": ["a1", "a2", "plain"]},
            {"name": "a1", "api": "anthropic"},
            {"name": "a2", "api": "anthropic"},
            {"name": "plain"}
        ],
        "routes": [{"upstream": "openai"}],
        "failover": {"enabled": false}
    }"#;
    let mut c = Case::new(cfg);
    c.trip("openai");
    let n2 = br#"{"model":"gpt-4o","n":2,"messages":[{"role":"user","content":"hi"}]}"#;
    c.request(&[("content-length", &n2.len().to_string())], false);
    let b = c.body(n2, true);
    assert_eq!(set_header(&b, "x-ai-cb-upstream"), Some("plain"));
    let last_path = b.effects.iter().rev().find_map(|e| match e {
        Effect::SetRequestHeader(n, v) if n == ":path" => Some(Some(v.as_str())),
        Effect::RemoveRequestHeader(n) if n == ":path" => Some(None),
        _ => None,
    });
    assert_eq!(last_path, Some(Some("/v1/chat/completions")), "{b:?}");
    assert_eq!(c.count("translations{a1,refused}"), 1);
    assert_eq!(c.count("translations{a2,refused}"), 1);
}
