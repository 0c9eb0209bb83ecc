#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Provider translation through a real Envoy with the release module, with the official
//! `openai` and `anthropic` Python SDKs as clients: an OpenAI client whose fallback speaks
//! Anthropic's Messages API natively (`api: "anthropic"`), and an Anthropic client whose
//! fallback speaks OpenAI Chat Completions, get answers, streams, tool calls, usage and
//! errors in their own format, on the breaker's reroute and on in-request failover.
//!
//! The mock providers check each request they receive as the real APIs do (an Anthropic
//! request without `max_tokens`, with a `system` message or with an OpenAI-only field gets a
//! 400; an OpenAI request with an Anthropic-only field too, once `validate_openai` is on), and
//! the tests read the mocks' request logs to see what was actually sent.
//!
//! SDK calls that need no mode change in between run in one Python process
//! ([`sdk_requests`]): importing both SDKs takes seconds on a busy machine.

mod common;

use std::time::Duration;

use common::sdk::sdk_requests;
use common::*;
use serde_json::{json, Value};

const CLAUDE: &str = "claude-3-5-sonnet-20241022";
const GPT: &str = "gpt-4o-mini";
/// The Anthropic fallback's `default_max_tokens`: what an OpenAI request that sets no
/// `max_tokens` is sent with.
const DEFAULT_MAX_TOKENS: u64 = 1234;
const SYSTEM: &str = "You are terse.";
/// Content pieces per answer and the pause before each, for the token-by-token stream.
const TOKENS: u64 = 5;
const PIECE_DELAY_MS: u64 = 250;

/// What the `TOKENS`-piece answer of the mock named `name` reads.
fn answer(name: &str) -> String {
    format!("Hello from {name} 4 5")
}

/// An OpenAI client (`/v1/chat/completions`) on `openai`, with `anthropic` (native Messages
/// API) as its fallback. `openai_policy` is merged into the primary's keys.
fn openai_client_stack(openai_policy: Value) -> Stack {
    let mut openai = json!({"name": "openai", "fallbacks": ["anthropic"]});
    if let (Some(o), Some(extra)) = (openai.as_object_mut(), openai_policy.as_object()) {
        o.extend(extra.clone());
    }
    let cfg = json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "defaults": {"failure_threshold": 20, "recovery_timeout": 300, "recovery_jitter": 0},
        "upstreams": [
            openai,
            {"name": "anthropic", "api": "anthropic", "anthropic_version": "2023-06-01",
             "default_max_tokens": DEFAULT_MAX_TOKENS,
             "rewrite": {"model": CLAUDE, "headers": {"x-provider": "anthropic"}}}
        ],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    });
    Stack::start(&cfg, 1, Duration::from_secs(20))
}

/// An Anthropic client (`/v1/messages`) on `anthropic`, with `openai` (Chat Completions) as
/// its fallback; the OpenAI mock checks its requests as OpenAI's API does.
fn anthropic_client_stack(anthropic_policy: Value) -> Stack {
    let mut anthropic = json!({"name": "anthropic", "api": "anthropic", "fallbacks": ["openai"]});
    if let (Some(o), Some(extra)) = (anthropic.as_object_mut(), anthropic_policy.as_object()) {
        o.extend(extra.clone());
    }
    let cfg = json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "defaults": {"failure_threshold": 20, "recovery_timeout": 300, "recovery_jitter": 0},
        "upstreams": [
            anthropic,
            {"name": "openai", "api": "openai", "rewrite": {"model": GPT}}
        ],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "anthropic"}]
    });
    let s = Stack::start(&cfg, 1, Duration::from_secs(20));
    s.openai.settings(r#"{"validate_openai":true}"#);
    s
}

/// Opens `primary`'s breaker (its threshold is 1 in these stacks): one request it answers
/// with a 500. Then clears every mock's log, leaving the primary failing.
fn open_primary(s: &Stack, primary: &Mock, path: &str, body: &Value) {
    primary.set_mode(r#"{"mode":"error","status":500}"#);
    let _ = http(
        "POST",
        &format!("{}{path}", s.envoy.addr()),
        &[
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ],
        body.to_string().as_bytes(),
    );
    s.wait_state(primary.name(), "open", Duration::from_secs(5));
    for m in [&s.openai, &s.anthropic, &s.azure] {
        m.reset();
    }
}

fn openai_body() -> Value {
    json!({"model": GPT, "messages": [{"role": "user", "content": "hi"}]})
}

fn anthropic_body() -> Value {
    json!({"model": CLAUDE, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
}

/// An OpenAI-SDK request spec for this stack; `extra` keys are merged in.
fn openai_spec(s: &Stack, extra: Value) -> Value {
    spec("openai", format!("http://{}/v1", s.envoy.addr()), extra)
}

/// An Anthropic-SDK request spec (the SDK appends `/v1/messages`).
fn anthropic_spec(s: &Stack, extra: Value) -> Value {
    spec("anthropic", format!("http://{}", s.envoy.addr()), extra)
}

fn spec(api: &str, base_url: String, extra: Value) -> Value {
    let mut spec = json!({"api": api, "base_url": base_url, "timeout": 15});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    spec
}

fn run(specs: &[Value]) -> Vec<Value> {
    sdk_requests(specs, Duration::from_secs(60))
}

fn served(r: &Value) -> &str {
    r["headers"]["x-ai-cb-served-by"]
        .as_str()
        .unwrap_or("<none>")
}

fn failover(r: &Value) -> Option<&str> {
    r["headers"]["x-ai-cb-failover"].as_str()
}

fn translated(r: &Value) -> Option<&str> {
    r["headers"]["x-ai-cb-translated"].as_str()
}

/// The JSON body a mock logged for `request`.
fn sent_body(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().unwrap_or("")).unwrap_or(Value::Null)
}

/// The arguments of a tool call the SDK reported, parsed.
fn arguments(call: &Value) -> Value {
    serde_json::from_str(call["arguments"].as_str().unwrap_or("")).unwrap_or(Value::Null)
}

/// The time between the first and the last content piece the SDK yielded, in seconds.
fn spread(r: &Value) -> f64 {
    let pieces: Vec<f64> = r["pieces"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    match (pieces.first(), pieces.last()) {
        (Some(first), Some(last)) => last - first,
        _ => 0.0,
    }
}

/// Every request the mock logged on `path` was accepted by its validation, and nothing
/// reached it on another path.
fn assert_all_valid(mock: &Mock, path: &str, count: usize) -> Vec<Value> {
    let all = mock.requests();
    let on_path: Vec<Value> = all.iter().filter(|r| r["path"] == path).cloned().collect();
    assert_eq!(
        (on_path.len(), all.len()),
        (count, count),
        "{}: {count} requests, all on {path}: {all:?}",
        mock.name()
    );
    for r in &on_path {
        assert!(
            r["rejected"].is_null(),
            "{} rejected a request: {} ({})",
            mock.name(),
            r["rejected"],
            r["body"]
        );
    }
    assert_eq!(mock.stats()["rejected"], 0, "{}", mock.name());
    on_path
}

// =============================================================================================
// The breaker's reroute: the primary is open
// =============================================================================================

#[test]
fn an_openai_sdk_client_whose_primary_is_open_gets_openai_answers_from_native_anthropic() {
    let s = openai_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.openai, "/v1/chat/completions", &openai_body());
    s.anthropic.set_mode(&format!(
        r#"{{"mode":"healthy","tokens":{TOKENS},"chunk_delay_ms":{PIECE_DELAY_MS}}}"#
    ));
    let out = run(&[
        openai_spec(&s, json!({"system": SYSTEM})),
        openai_spec(&s, json!({"stream": true, "include_usage": true})),
    ]);
    let (whole, stream) = (&out[0], &out[1]);

    // A completion, in OpenAI's shape, naming the model that served.
    assert_eq!(whole["ok"], true, "{whole}");
    assert_eq!(whole["text"], answer("anthropic"), "{whole}");
    assert_eq!(whole["finish"], "stop", "end_turn → stop: {whole}");
    assert_eq!(whole["model"], CLAUDE, "{whole}");
    assert_eq!(
        whole["usage"],
        json!({"input": 5, "output": TOKENS}),
        "{whole}"
    );
    assert_eq!(served(whole), "anthropic");
    assert_eq!(
        failover(whole),
        None,
        "rerouted by the breaker, not a failover"
    );
    assert_eq!(translated(whole), Some("openai->anthropic"));

    // A stream, token by token: the pieces arrive as the mock writes them, not at the end.
    assert_eq!(stream["ok"], true, "{stream}");
    assert_eq!(stream["text"], answer("anthropic"), "{stream}");
    assert_eq!(stream["finish"], "stop", "{stream}");
    assert_eq!(
        stream["usage"],
        json!({"input": 5, "output": TOKENS}),
        "the usage chunk include_usage asked for: {stream}"
    );
    assert_eq!(
        stream["pieces"].as_array().map(Vec::len),
        Some(TOKENS as usize),
        "one content delta per Anthropic text_delta: {stream}"
    );
    let spread = spread(stream);
    assert!(
        spread >= 0.6,
        "the first token arrived {spread} s before the last; the mock spaced them \
         {PIECE_DELAY_MS} ms apart, so they were held: {stream}"
    );
    assert_eq!(served(stream), "anthropic");

    // What Anthropic received: valid Messages requests, on its own path, with its version
    // header, the configured max_tokens, the system prompt at the top level and the rewrites.
    let got = assert_all_valid(&s.anthropic, "/v1/messages", 2);
    for r in &got {
        assert_eq!(r["headers"]["anthropic-version"], "2023-06-01", "{r}");
        assert_eq!(
            r["headers"]["x-provider"], "anthropic",
            "rewrite.headers: {r}"
        );
        let body = sent_body(r);
        assert_eq!(body["model"], CLAUDE, "rewrite.model: {body}");
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS, "{body}");
        assert!(body.get("stream_options").is_none(), "{body}");
        let roles: Vec<&str> = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["role"].as_str())
            .collect();
        assert_eq!(roles, ["user"], "{body}");
    }
    let whole_sent = sent_body(&got[0]);
    let system = &whole_sent["system"];
    assert!(
        system == SYSTEM || system[0]["text"] == SYSTEM,
        "the system message became the top-level system: {whole_sent}"
    );
    assert_eq!(sent_body(&got[1])["stream"], true);
    assert_eq!(s.openai.hits(), 0, "the open primary is not called");
}

#[test]
fn an_openai_sdk_tool_call_is_served_by_native_anthropic_whole_and_streamed() {
    let s = openai_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.openai, "/v1/chat/completions", &openai_body());
    let out = run(&[
        openai_spec(&s, json!({"tools": true})),
        openai_spec(&s, json!({"tools": true, "stream": true})),
    ]);
    let want = json!({"query": "Hello from anthropic"});
    for r in &out {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["finish"], "tool_calls", "tool_use → tool_calls: {r}");
        let calls = r["tool_calls"].as_array().cloned().unwrap_or_default();
        assert_eq!(calls.len(), 1, "{r}");
        assert_eq!(calls[0]["name"], "get_weather", "{r}");
        assert_eq!(arguments(&calls[0]), want, "{r}");
        assert_eq!(served(r), "anthropic");
    }
    for r in assert_all_valid(&s.anthropic, "/v1/messages", 2) {
        let body = sent_body(&r);
        let tool = &body["tools"][0];
        assert_eq!(tool["name"], "get_weather", "{body}");
        assert_eq!(tool["input_schema"]["type"], "object", "{body}");
        assert!(tool.get("function").is_none(), "{body}");
    }
}

#[test]
fn an_anthropic_sdk_client_whose_primary_is_open_gets_anthropic_answers_from_openai() {
    let s = anthropic_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.anthropic, "/v1/messages", &anthropic_body());
    s.openai.set_mode(&format!(
        r#"{{"mode":"healthy","tokens":{TOKENS},"chunk_delay_ms":{PIECE_DELAY_MS}}}"#
    ));
    let out = run(&[
        anthropic_spec(&s, json!({"system": SYSTEM})),
        anthropic_spec(&s, json!({"stream": true})),
    ]);
    let (whole, stream) = (&out[0], &out[1]);

    assert_eq!(whole["ok"], true, "{whole}");
    assert_eq!(whole["text"], answer("openai"), "{whole}");
    assert_eq!(whole["finish"], "end_turn", "stop → end_turn: {whole}");
    assert_eq!(whole["model"], GPT, "{whole}");
    assert_eq!(
        whole["usage"],
        json!({"input": 5, "output": TOKENS}),
        "{whole}"
    );
    assert_eq!(served(whole), "openai");
    assert_eq!(failover(whole), None);
    assert_eq!(translated(whole), Some("anthropic->openai"));

    assert_eq!(stream["ok"], true, "{stream}");
    assert_eq!(stream["text"], answer("openai"), "{stream}");
    assert_eq!(stream["finish"], "end_turn", "{stream}");
    assert_eq!(
        stream["usage"],
        json!({"input": 5, "output": TOKENS}),
        "{stream}"
    );
    let spread = spread(stream);
    assert!(
        spread >= 0.6,
        "the first token arrived {spread} s before the last: {stream}"
    );

    // What OpenAI received: valid Chat Completions requests on its own path.
    let got = assert_all_valid(&s.openai, "/v1/chat/completions", 2);
    let whole_sent = sent_body(&got[0]);
    assert_eq!(whole_sent["model"], GPT, "{whole_sent}");
    assert_eq!(
        whole_sent["messages"][0],
        json!({"role": "system", "content": SYSTEM}),
        "the top-level system became the first message: {whole_sent}"
    );
    assert_eq!(whole_sent["messages"][1]["role"], "user", "{whole_sent}");
    let limit = whole_sent
        .get("max_completion_tokens")
        .or_else(|| whole_sent.get("max_tokens"));
    assert_eq!(limit, Some(&json!(64)), "{whole_sent}");
    let stream_sent = sent_body(&got[1]);
    assert_eq!(stream_sent["stream"], true, "{stream_sent}");
    assert_eq!(
        stream_sent["stream_options"]["include_usage"], true,
        "asked for the usage the Anthropic stream reports: {stream_sent}"
    );
    assert_eq!(s.anthropic.hits(), 0, "the open primary is not called");
}

#[test]
fn an_anthropic_sdk_tool_call_is_served_by_openai_whole_and_streamed() {
    let s = anthropic_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.anthropic, "/v1/messages", &anthropic_body());
    let out = run(&[
        anthropic_spec(&s, json!({"tools": true})),
        anthropic_spec(&s, json!({"tools": true, "stream": true})),
    ]);
    let want = json!({"query": "Hello from openai"});
    for r in &out {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["finish"], "tool_use", "tool_calls → tool_use: {r}");
        let calls = r["tool_calls"].as_array().cloned().unwrap_or_default();
        assert_eq!(calls.len(), 1, "{r}");
        assert_eq!(calls[0]["name"], "get_weather", "{r}");
        assert_eq!(arguments(&calls[0]), want, "{r}");
        assert_eq!(served(r), "openai");
    }
    for r in assert_all_valid(&s.openai, "/v1/chat/completions", 2) {
        let body = sent_body(&r);
        let tool = &body["tools"][0];
        assert_eq!(tool["type"], "function", "{body}");
        assert_eq!(tool["function"]["name"], "get_weather", "{body}");
        assert_eq!(tool["function"]["parameters"]["type"], "object", "{body}");
    }
}

/// A conversation carrying what the formats spell differently: a system prompt, an image, a
/// tool call and its result. The mocks reject any of it left in the other format.
#[test]
fn a_conversation_with_an_image_a_tool_call_and_its_result_is_translated_both_ways() {
    const PNG: &str = "iVBORw0KGgo=";
    let tools_openai = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let openai_conversation = json!({
        "model": GPT, "temperature": 1.5, "stop": "END", "tools": tools_openai,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this was taken?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]
    });
    let s = openai_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.openai, "/v1/chat/completions", &openai_body());
    let r = http(
        "POST",
        &format!("{}/v1/chat/completions", s.envoy.addr()),
        &[("content-type", "application/json")],
        openai_conversation.to_string().as_bytes(),
    );
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
    let answer = r.json();
    assert_eq!(answer["object"], "chat.completion", "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Hello from anthropic"
    );
    let sent = sent_body(&assert_all_valid(&s.anthropic, "/v1/messages", 1)[0]);
    let messages = sent["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        messages.len(),
        3,
        "user, assistant, user (the tool result): {sent}"
    );
    let block = |m: usize, kind: &str| -> Value {
        messages[m]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["type"] == kind)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(block(0, "image")["source"]["data"], PNG, "{sent}");
    assert_eq!(
        block(1, "tool_use")["input"],
        json!({"city": "Paris"}),
        "{sent}"
    );
    assert_eq!(
        block(1, "tool_use")["id"],
        block(2, "tool_result")["tool_use_id"]
    );
    assert_eq!(sent["stop_sequences"], json!(["END"]), "{sent}");
    assert!(
        sent["temperature"].as_f64().is_some_and(|t| t <= 1.0),
        "{sent}"
    );
    drop(s);

    let anthropic_conversation = json!({
        "model": CLAUDE, "max_tokens": 64, "system": SYSTEM, "stop_sequences": ["END"],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this was taken?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
        ]
    });
    let s = anthropic_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.anthropic, "/v1/messages", &anthropic_body());
    let r = http(
        "POST",
        &format!("{}/v1/messages", s.envoy.addr()),
        &[
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ],
        anthropic_conversation.to_string().as_bytes(),
    );
    assert_eq!((r.status, served_by(&r)), (200, "openai"), "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(
        answer["content"][0]["text"], "Hello from openai",
        "{answer}"
    );
    let sent = sent_body(&assert_all_valid(&s.openai, "/v1/chat/completions", 1)[0]);
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"], "{sent}");
    let image = &sent["messages"][1]["content"][1];
    assert_eq!(image["type"], "image_url", "{sent}");
    assert_eq!(
        image["image_url"]["url"],
        format!("data:image/png;base64,{PNG}"),
        "{sent}"
    );
    let call = &sent["messages"][2]["tool_calls"][0];
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or(""))
            .unwrap_or_default();
    assert_eq!(arguments, json!({"city": "Paris"}), "{sent}");
    assert_eq!(sent["messages"][3]["tool_call_id"], call["id"], "{sent}");
    assert_eq!(sent["stop"], json!(["END"]), "{sent}");
}

// =============================================================================================
// In-request failover: the primary answers 500 (or a stream fails before its first token)
// =============================================================================================

#[test]
fn an_openai_request_that_fails_on_the_primary_is_answered_by_anthropic_in_openai_shape() {
    let s = openai_client_stack(json!({}));
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    let out = run(&[
        openai_spec(&s, json!({})),
        openai_spec(&s, json!({"stream": true, "include_usage": true})),
    ]);
    for r in &out {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["text"], "Hello from anthropic", "{r}");
        assert_eq!(r["finish"], "stop", "{r}");
        assert_eq!(r["model"], CLAUDE, "{r}");
        assert_eq!(r["usage"], json!({"input": 5, "output": 3}), "{r}");
        assert_eq!(served(r), "anthropic");
        assert_eq!(failover(r), Some("openai->anthropic"), "{r}");
    }
    assert_eq!(s.openai.hits(), 2, "each request tried the primary first");
    for r in assert_all_valid(&s.anthropic, "/v1/messages", 2) {
        assert_eq!(r["headers"]["anthropic-version"], "2023-06-01", "{r}");
        assert_eq!(sent_body(&r)["max_tokens"], DEFAULT_MAX_TOKENS);
    }
    assert_eq!(s.state("openai"), "closed", "two failures of twenty");
}

#[test]
fn an_openai_stream_that_fails_before_its_first_token_fails_over_to_anthropic() {
    let s = openai_client_stack(json!({}));
    // Teaches the worker that Envoy grants stop-iteration, so the answer can be held until
    // its first token (see envoy_streams.rs).
    assert_eq!(s.chat().status, 200);
    s.openai.reset();
    s.openai
        .set_mode(r#"{"mode":"stream_error","after_tokens":0,"preamble":false}"#);
    let out = run(&[openai_spec(&s, json!({"stream": true}))]);
    let r = &out[0];
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["text"], "Hello from anthropic", "{r}");
    assert_eq!(r["finish"], "stop", "{r}");
    assert_eq!(served(r), "anthropic");
    assert_eq!(s.openai.hits(), 1);
    assert_all_valid(&s.anthropic, "/v1/messages", 1);
}

// =============================================================================================
// Errors from the other-format fallback, in the client's error shape
// =============================================================================================

#[test]
fn an_anthropic_error_reaches_an_openai_sdk_as_the_matching_exception() {
    let s = openai_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.openai, "/v1/chat/completions", &openai_body());
    for (mode, want_status, want_class) in [
        (r#"{"mode":"status","status":400}"#, 400, "BadRequestError"),
        (
            r#"{"mode":"rate_limit","retry_after":1}"#,
            429,
            "RateLimitError",
        ),
        (
            r#"{"mode":"error","status":529}"#,
            529,
            "InternalServerError",
        ),
    ] {
        s.anthropic.set_mode(mode);
        // The raw body first: OpenAI's error shape, not Anthropic's envelope.
        let raw = http(
            "POST",
            &format!("{}/v1/chat/completions", s.envoy.addr()),
            &[("content-type", "application/json")],
            openai_body().to_string().as_bytes(),
        );
        assert_eq!(raw.status, want_status, "{mode}: {}", raw.text());
        let body = raw.json();
        assert!(body["error"]["message"].is_string(), "{mode}: {body}");
        assert!(body["error"]["type"].is_string(), "{mode}: {body}");
        assert_ne!(body["type"], "error", "not Anthropic's envelope: {body}");
        // Then the SDK, whole and streamed.
        let out = run(&[
            openai_spec(&s, json!({})),
            openai_spec(&s, json!({"stream": true})),
        ]);
        for r in &out {
            assert_eq!(r["ok"], false, "{mode}: {r}");
            assert_eq!(r["error"]["class"], want_class, "{mode}: {r}");
            assert_eq!(r["error"]["status"], want_status, "{mode}: {r}");
        }
    }
}

#[test]
fn an_openai_error_reaches_an_anthropic_sdk_as_the_matching_exception() {
    let s = anthropic_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.anthropic, "/v1/messages", &anthropic_body());
    for (mode, want_status, want_class, want_type) in [
        (
            r#"{"mode":"status","status":400}"#,
            400,
            "BadRequestError",
            "invalid_request_error",
        ),
        (
            r#"{"mode":"rate_limit","retry_after":1}"#,
            429,
            "RateLimitError",
            "rate_limit_error",
        ),
        (
            r#"{"mode":"error","status":500}"#,
            500,
            "InternalServerError",
            "api_error",
        ),
    ] {
        s.openai.set_mode(mode);
        let raw = http(
            "POST",
            &format!("{}/v1/messages", s.envoy.addr()),
            &[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
            ],
            anthropic_body().to_string().as_bytes(),
        );
        assert_eq!(raw.status, want_status, "{mode}: {}", raw.text());
        let body = raw.json();
        assert_eq!(body["type"], "error", "Anthropic's envelope: {body}");
        assert_eq!(body["error"]["type"], want_type, "{mode}: {body}");
        assert!(body["error"]["message"].is_string(), "{mode}: {body}");
        let out = run(&[
            anthropic_spec(&s, json!({})),
            anthropic_spec(&s, json!({"stream": true})),
        ]);
        for r in &out {
            assert_eq!(r["ok"], false, "{mode}: {r}");
            assert_eq!(r["error"]["class"], want_class, "{mode}: {r}");
            assert_eq!(r["error"]["status"], want_status, "{mode}: {r}");
            assert_eq!(r["error"]["body"]["type"], "error", "{mode}: {r}");
            assert_eq!(
                r["error"]["body"]["error"]["type"], want_type,
                "{mode}: {r}"
            );
        }
    }
}

// =============================================================================================
// Parameters with no equivalent: dropped, or that fallback skipped
// =============================================================================================

#[test]
fn a_parameter_anthropic_cannot_honour_skips_it_and_one_it_can_leave_out_is_dropped() {
    let s = openai_client_stack(json!({"failure_threshold": 1}));
    open_primary(&s, &s.openai, "/v1/chat/completions", &openai_body());
    let post = |body: Value| {
        http(
            "POST",
            &format!("{}/v1/chat/completions", s.envoy.addr()),
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let translations = |result: &str| {
        s.metric(
            "circuit_breaker_translations",
            &[("upstream", "anthropic"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    let before = (translations("dropped"), translations("refused"));
    // A sampling hint Anthropic does not have: sent without it, answered.
    let mut body = openai_body();
    body["seed"] = json!(7);
    body["presence_penalty"] = json!(0.5);
    let r = post(body);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["object"], "chat.completion", "{}", r.text());
    let sent = sent_body(&assert_all_valid(&s.anthropic, "/v1/messages", 1)[0]);
    assert!(
        sent.get("seed").is_none() && sent.get("presence_penalty").is_none(),
        "{sent}"
    );
    assert_eq!(translations("dropped"), before.0 + 1.0);
    // Two choices, which Anthropic cannot give: never sent there. With the primary open and
    // no other fallback, the client gets the fast-fail answer, not Anthropic's 400.
    let mut body = openai_body();
    body["n"] = json!(2);
    let r = post(body);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["error"]["message"].is_string(), "{}", r.text());
    assert_eq!(
        s.anthropic.hits(),
        1,
        "the refused request never reached Anthropic"
    );
    assert_eq!(translations("refused"), before.1 + 1.0);
}

// =============================================================================================
// The mocks catch an untranslated request (what makes the checks above meaningful)
// =============================================================================================

#[test]
fn the_mocks_reject_a_request_in_the_other_format_as_the_real_apis_do() {
    let anthropic = Mock::start("anthropic");
    let openai = Mock::start("openai");
    openai.settings(r#"{"validate_openai":true}"#);
    // An OpenAI request on Anthropic's path: no max_tokens.
    let r = http(
        "POST",
        &format!("{}/v1/messages", anthropic.addr()),
        &[("content-type", "application/json")],
        openai_body().to_string().as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // With max_tokens but the system prompt as a message.
    let mut body = openai_body();
    body["max_tokens"] = json!(64);
    body["messages"] =
        json!([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]);
    let r = http(
        "POST",
        &format!("{}/v1/messages", anthropic.addr()),
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("system"), "{}", r.text());
    // An Anthropic request on OpenAI's path: top-level system is not an OpenAI parameter.
    let mut body = anthropic_body();
    body["system"] = json!(SYSTEM);
    let r = http(
        "POST",
        &format!("{}/v1/chat/completions", openai.addr()),
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(
        (
            anthropic.stats()["rejected"].clone(),
            openai.stats()["rejected"].clone()
        ),
        (json!(2), json!(1))
    );
}

#[test]
fn a_route_api_tells_the_client_format_of_a_path_that_does_not() {
    let cfg = json!({
        "health_path": HEALTH_PATH,
        "defaults": {"failure_threshold": 1, "recovery_timeout": 300, "recovery_jitter": 0},
        "upstreams": [
            {"name": "openai", "fallbacks": ["anthropic"]},
            {"name": "anthropic", "api": "anthropic", "rewrite": {"model": CLAUDE}}
        ],
        "routes": [{"match": {"path_prefix": "/llm/"}, "api": "openai", "upstream": "openai"}]
    });
    let s = Stack::start(&cfg, 1, Duration::from_secs(20));
    open_primary(&s, &s.openai, "/llm/chat", &openai_body());
    let r = http(
        "POST",
        &format!("{}/llm/chat", s.envoy.addr()),
        &[("content-type", "application/json")],
        openai_body().to_string().as_bytes(),
    );
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-ai-cb-translated"), Some("openai->anthropic"));
    assert_eq!(r.json()["object"], "chat.completion", "{}", r.text());
    assert_all_valid(&s.anthropic, "/v1/messages", 1);
}
