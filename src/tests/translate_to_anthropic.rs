//! OpenAI client, Anthropic upstream: the request OpenAI → Anthropic and the answers (JSON,
//! errors, streams) back, on fixtures written from the providers' public API references.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::translate::to_anthropic::{error, request, response, Stream};
use crate::translate::Refused;

/// The translated request body as JSON, and what was dropped.
fn translate(req: Value) -> (Value, Vec<&'static str>) {
    let body = serde_json::to_vec(&req).unwrap();
    let out = request(&body, 4096).unwrap();
    (serde_json::from_slice(&out.body).unwrap(), out.dropped)
}

fn refused(req: Value) -> Refused {
    request(&serde_json::to_vec(&req).unwrap(), 4096).unwrap_err()
}

fn chat(messages: Value) -> Value {
    json!({ "model": "claude-sonnet-4-5", "messages": messages })
}

#[test]
fn system_and_developer_messages_become_the_top_level_system() {
    let (out, dropped) = translate(chat(json!([
        { "role": "system", "content": "Be brief." },
        { "role": "user", "content": "Hi" },
    ])));
    assert_eq!(
        out,
        json!({
            "model": "claude-sonnet-4-5",
            "system": "Be brief.",
            "messages": [{ "role": "user", "content": [{ "type": "text", "text": "Hi" }] }],
            "max_tokens": 4096,
        })
    );
    assert!(dropped.is_empty());
    let (out, _) = translate(chat(json!([
        { "role": "developer", "content": [{ "type": "text", "text": "One." }] },
        { "role": "user", "content": "Hi" },
        { "role": "system", "content": "Two." },
    ])));
    assert_eq!(
        out["system"],
        json!([{ "type": "text", "text": "One." }, { "type": "text", "text": "Two." }])
    );
    assert_eq!(out["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn sampling_parameters_map_and_temperature_is_clamped_to_anthropics_range() {
    let mut req = chat(json!([{ "role": "user", "content": "Hi" }]));
    let extra = json!({
        "max_tokens": 10, "max_completion_tokens": 20, "temperature": 1.5,
        "stop": ["END", " ", "STOP"], "stream": true, "user": "u-42",
    });
    req.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let body = serde_json::to_vec(&req).unwrap();
    let out = request(&body, 4096).unwrap();
    assert!(out.stream);
    let out: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(out["max_tokens"], 20);
    assert_eq!(out["temperature"], 1.0);
    assert_eq!(out["stop_sequences"], json!(["END", "STOP"]));
    assert_eq!(out["stream"], true);
    assert_eq!(out["metadata"], json!({ "user_id": "u-42" }));
    assert_eq!(out["model"], "claude-sonnet-4-5");

    let mut req = chat(json!([{ "role": "user", "content": "Hi" }]));
    let extra = json!({ "max_tokens": 10, "top_p": 0.9, "stop": "END", "stream": false });
    req.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (out, dropped) = translate(req);
    assert_eq!(out["max_tokens"], 10);
    assert_eq!(out["top_p"], 0.9);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert!(out.get("stream").is_none() && out.get("temperature").is_none());
    assert!(dropped.is_empty());
}

#[test]
fn top_p_beside_temperature_is_dropped_as_current_claude_models_reject_both() {
    let mut req = chat(json!([{ "role": "user", "content": "Hi" }]));
    req["temperature"] = json!(0.2);
    req["top_p"] = json!(0.5);
    let (out, dropped) = translate(req);
    assert_eq!(out["temperature"], 0.2);
    assert!(out.get("top_p").is_none());
    assert_eq!(dropped, ["top_p"]);
}

#[test]
fn image_parts_become_base64_or_url_image_blocks() {
    let (out, _) = translate(chat(json!([{ "role": "user", "content": [
        { "type": "text", "text": "What is this?" },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
        { "type": "image_url", "image_url": { "url": "https://example.com/cat.jpg", "detail": "low" } },
    ]}])));
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            { "type": "text", "text": "What is this?" },
            { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
            { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.jpg" } },
        ])
    );
}

#[test]
fn pdf_file_data_becomes_a_document_block() {
    let (out, _) = translate(chat(json!([{ "role": "user", "content": [
        { "type": "file", "file": { "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0=" } },
    ]}])));
    assert_eq!(
        out["messages"][0]["content"][0],
        json!({ "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBERi0=" } })
    );
}

#[test]
fn content_anthropic_cannot_take_is_refused() {
    for part in [
        json!({ "type": "image_url", "image_url": { "url": "ftp://example.com/a.png" } }),
        json!({ "type": "image_url", "image_url": { "url": "data:image/png,raw" } }),
        json!({ "type": "input_audio", "input_audio": { "data": "AAA=", "format": "wav" } }),
        json!({ "type": "file", "file": { "file_id": "file-abc" } }),
    ] {
        let req = chat(json!([{ "role": "user", "content": [part] }]));
        assert!(matches!(refused(req), Refused::Unsupported(_)));
    }
    let req = chat(json!([{ "role": "function", "name": "f", "content": "1" }]));
    assert!(matches!(refused(req), Refused::Unsupported(_)));
}

fn tool_conversation() -> Value {
    let mut req = chat(json!([
        { "role": "user", "content": "Weather in Paris and Rome?" },
        { "role": "assistant", "content": null, "tool_calls": [
            { "id": "call_1", "type": "function",
              "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
            { "id": "call_2", "type": "function",
              "function": { "name": "get_weather", "arguments": "not json" } },
        ]},
        { "role": "tool", "tool_call_id": "call_1", "content": "18C" },
        { "role": "tool", "tool_call_id": "call_2", "content": [{ "type": "text", "text": "21C" }] },
        { "role": "user", "content": "Thanks" },
    ]));
    req["tools"] = json!([{ "type": "function", "function": {
        "name": "get_weather", "description": "Current weather",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } } },
    }}]);
    req
}

#[test]
fn tool_calls_become_tool_use_and_tool_results_merge_into_one_user_turn() {
    let (out, _) = translate(tool_conversation());
    assert_eq!(
        out["tools"],
        json!([{ "name": "get_weather", "description": "Current weather",
                 "input_schema": { "type": "object", "properties": { "city": { "type": "string" } } } }])
    );
    assert_eq!(out["tool_choice"], json!({ "type": "auto" }));
    assert_eq!(
        out["messages"],
        json!([
            { "role": "user", "content": [{ "type": "text", "text": "Weather in Paris and Rome?" }] },
            { "role": "assistant", "content": [
                { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                { "type": "tool_use", "id": "call_2", "name": "get_weather", "input": {} },
            ]},
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "call_1", "content": "18C" },
                { "type": "tool_result", "tool_use_id": "call_2", "content": [{ "type": "text", "text": "21C" }] },
                { "type": "text", "text": "Thanks" },
            ]},
        ])
    );
}

#[test]
fn tool_choice_maps_auto_none_required_and_a_named_function() {
    for (choice, want) in [
        (json!("auto"), json!({ "type": "auto" })),
        (json!("none"), json!({ "type": "none" })),
        (json!("required"), json!({ "type": "any" })),
        (
            json!({ "type": "function", "function": { "name": "get_weather" } }),
            json!({ "type": "tool", "name": "get_weather" }),
        ),
    ] {
        let mut req = tool_conversation();
        req["tool_choice"] = choice;
        assert_eq!(translate(req).0["tool_choice"], want);
    }
    let mut req = tool_conversation();
    req["parallel_tool_calls"] = json!(false);
    let (out, dropped) = translate(req);
    assert_eq!(
        out["tool_choice"],
        json!({ "type": "auto", "disable_parallel_tool_use": true })
    );
    assert!(dropped.is_empty());
}

#[test]
fn consecutive_messages_of_one_role_merge_and_empty_ones_are_skipped() {
    let (out, _) = translate(chat(json!([
        { "role": "user", "content": "a" },
        { "role": "user", "content": "" },
        { "role": "user", "content": [{ "type": "text", "text": "b" }] },
        { "role": "assistant", "content": "c" },
        { "role": "assistant", "content": "d" },
    ])));
    assert_eq!(
        out["messages"],
        json!([
            { "role": "user", "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }] },
            { "role": "assistant", "content": [{ "type": "text", "text": "c" }, { "type": "text", "text": "d" }] },
        ])
    );
}

#[test]
fn parameters_without_an_equivalent_are_dropped_and_named() {
    for (key, value) in [
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(0.5)),
        ("seed", json!(7)),
        ("logit_bias", json!({ "50256": -100 })),
        ("store", json!(true)),
        ("metadata", json!({ "k": "v" })),
        ("service_tier", json!("auto")),
        ("reasoning_effort", json!("low")),
        ("prediction", json!({ "type": "content", "content": "x" })),
        ("modalities", json!(["text"])),
        ("web_search_options", json!({})),
        ("functions", json!([{ "name": "f" }])),
        ("function_call", json!("auto")),
        ("response_format", json!({ "type": "json_object" })),
    ] {
        let mut req = chat(json!([{ "role": "user", "content": "Hi" }]));
        req[key] = value;
        let (out, dropped) = translate(req);
        assert_eq!(dropped, [key], "{key}");
        assert!(out.get(key).is_none() || key == "metadata", "{key}");
        assert!(out.get("metadata").is_none(), "{key}");
    }
    let mut req = chat(json!([{ "role": "user", "content": "Hi" }]));
    req["seed"] = Value::Null;
    req["response_format"] = json!({ "type": "text" });
    req["n"] = json!(1);
    req["logprobs"] = json!(false);
    assert!(translate(req).1.is_empty());
}

#[test]
fn parameters_that_would_change_the_answer_are_refused() {
    for (key, value) in [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("audio", json!({ "voice": "alloy", "format": "wav" })),
        (
            "response_format",
            json!({ "type": "json_schema", "json_schema": { "name": "x", "schema": {} } }),
        ),
    ] {
        let mut req = chat(json!([{ "role": "user", "content": "Hi" }]));
        req[key] = value;
        assert!(matches!(refused(req), Refused::Unsupported(_)), "{key}");
    }
}

#[test]
fn a_body_that_is_not_a_chat_request_is_not_json() {
    for body in [
        &b"not json"[..],
        b"[1,2]",
        b"{\"model\":\"x\"}",
        b"{\"messages\":{}}",
        b"",
    ] {
        assert_eq!(request(body, 10).unwrap_err(), Refused::NotJson);
    }
}

#[test]
fn hostile_shapes_are_translated_or_refused_without_panicking() {
    for body in [
        json!({ "messages": [1, null, "x", { "role": 5 }] }),
        json!({ "messages": [{ "role": "assistant", "tool_calls": [1, { "function": 2 }] }] }),
        json!({ "messages": [{ "role": "tool", "content": 3 }], "tools": [1, { "function": 1 }] }),
        json!({ "messages": [], "tool_choice": { "function": 1 }, "tools": "x", "stop": 1 }),
        json!({ "messages": [{ "role": "user", "content": [1, { "type": "image_url" }] }] }),
        json!({ "messages": [], "max_tokens": -1, "temperature": "hot", "user": 1, "n": "2" }),
    ] {
        let _ = request(&serde_json::to_vec(&body).unwrap(), 10);
    }
}

// --- answers -------------------------------------------------------------------------------

fn answer(body: Value) -> Value {
    serde_json::from_slice(&response(&serde_json::to_vec(&body).unwrap()).unwrap()).unwrap()
}

#[test]
fn a_text_message_becomes_a_chat_completion_naming_the_serving_model() {
    let out = answer(json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{ "type": "text", "text": "Hello" }, { "type": "text", "text": ", world" }],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": 12, "output_tokens": 5 },
    }));
    assert_eq!(
        out,
        json!({
            "id": "msg_01", "object": "chat.completion", "created": 0,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Hello, world" },
                          "finish_reason": "stop", "logprobs": null }],
            "usage": { "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                       "prompt_tokens_details": { "cached_tokens": 0 } },
        })
    );
}

#[test]
fn tool_use_blocks_become_tool_calls_with_json_string_arguments() {
    let out = answer(json!({
        "id": "msg_02", "type": "message", "role": "assistant", "model": "claude",
        "content": [
            { "type": "thinking", "thinking": "hmm", "signature": "s" },
            { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
        ],
        "stop_reason": "tool_use",
        "usage": { "input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 100,
                   "cache_creation_input_tokens": 5 },
    }));
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{ "id": "toolu_1", "type": "function",
                 "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } }])
    );
    assert_eq!(out["usage"]["prompt_tokens"], 115);
    assert_eq!(out["usage"]["total_tokens"], 118);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
}

#[test]
fn stop_reasons_map_to_finish_reasons() {
    for (stop, finish) in [
        (json!("end_turn"), "stop"),
        (json!("stop_sequence"), "stop"),
        (json!("max_tokens"), "length"),
        (json!("tool_use"), "tool_calls"),
        (json!("refusal"), "content_filter"),
        (json!("pause_turn"), "stop"),
        (Value::Null, "stop"),
    ] {
        let out = answer(json!({ "type": "message", "content": [], "stop_reason": stop }));
        assert_eq!(out["choices"][0]["finish_reason"], finish, "{stop}");
    }
}

#[test]
fn a_body_that_is_not_an_anthropic_message_is_left_alone() {
    for body in [
        &b"nope"[..],
        b"{}",
        b"{\"type\":\"error\",\"content\":[]}",
        b"[1]",
    ] {
        assert_eq!(response(body), None);
    }
}

fn openai_error(status: u16, body: &[u8]) -> Value {
    serde_json::from_slice(&error(status, body)).unwrap()
}

#[test]
fn anthropic_errors_become_openai_errors_by_type() {
    for (status, kind, want_type, want_code) in [
        (
            400,
            "invalid_request_error",
            "invalid_request_error",
            json!("invalid_request_error"),
        ),
        (
            401,
            "authentication_error",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        (
            403,
            "permission_error",
            "invalid_request_error",
            json!("permission_error"),
        ),
        (
            404,
            "not_found_error",
            "invalid_request_error",
            json!("not_found_error"),
        ),
        (
            413,
            "request_too_large",
            "invalid_request_error",
            json!("request_too_large"),
        ),
        (
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
            json!("rate_limit_exceeded"),
        ),
        (500, "api_error", "server_error", json!("api_error")),
        (
            529,
            "overloaded_error",
            "server_error",
            json!("overloaded_error"),
        ),
        (
            503,
            "brand_new_error",
            "server_error",
            json!("brand_new_error"),
        ),
    ] {
        let body = json!({ "type": "error", "error": { "type": kind, "message": "why" },
                           "request_id": "req_1" });
        let out = openai_error(status, &serde_json::to_vec(&body).unwrap());
        assert_eq!(
            out,
            json!({ "error": { "message": "why", "type": want_type, "param": null, "code": want_code } }),
            "{kind}"
        );
    }
}

#[test]
fn an_error_body_that_is_not_json_still_becomes_an_openai_error() {
    let out = openai_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(
        out,
        json!({ "error": { "message": "<html>Bad Gateway</html>", "type": "server_error",
                           "param": null, "code": null } })
    );
    assert_eq!(
        openai_error(429, b"")["error"]["message"],
        "upstream answered HTTP 429"
    );
    assert_eq!(
        openai_error(429, b"")["error"]["type"],
        "rate_limit_exceeded"
    );
    assert_eq!(
        openai_error(400, b"{}")["error"]["type"],
        "invalid_request_error"
    );
    let long = "é".repeat(1000);
    let message = openai_error(500, long.as_bytes())["error"]["message"].clone();
    assert_eq!(message.as_str().unwrap().len(), 512);
}

// --- streams -------------------------------------------------------------------------------

/// A streamed text answer as Anthropic's streaming reference shows it (CRLF and LF mixed).
pub(crate) const TEXT_STREAM: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" wörld\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// A streamed tool call: text, then a tool_use block whose input arrives in pieces.
pub(crate) const TOOL_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"usage\":{\"input_tokens\":40,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Pa\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ris\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":30}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// The output for `chunks` fed in order, then finish.
pub(crate) fn translate_stream(chunks: &[&[u8]]) -> Vec<u8> {
    let mut s = Stream::new();
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, &mut out);
    }
    s.finish(&mut out);
    out
}

/// The `data:` payloads of an OpenAI stream.
fn payloads(out: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split_terminator("\n\n")
        .map(|e| e.strip_prefix("data: ").unwrap().to_string())
        .collect()
}

fn chunk(id: &str, model: &str, delta: Value, finish: Value) -> String {
    json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }] })
    .to_string()
}

fn usage_chunk(id: &str, model: &str, prompt: u64, completion: u64) -> String {
    json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [], "usage": { "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": { "cached_tokens": 0 } } })
    .to_string()
}

#[test]
fn a_text_stream_becomes_openai_chunks_then_usage_then_done() {
    let out = translate_stream(&[TEXT_STREAM.as_bytes()]);
    let c = |delta, finish| chunk("msg_1", "claude-sonnet-4-5", delta, finish);
    assert_eq!(
        payloads(&out),
        [
            c(json!({ "role": "assistant", "content": "" }), Value::Null),
            c(json!({ "content": "Hello" }), Value::Null),
            c(json!({ "content": " wörld" }), Value::Null),
            c(json!({}), json!("stop")),
            usage_chunk("msg_1", "claude-sonnet-4-5", 25, 15),
            "[DONE]".to_string(),
        ]
    );
}

#[test]
fn a_tool_use_stream_becomes_tool_call_deltas() {
    let out = translate_stream(&[TOOL_STREAM.as_bytes()]);
    let c = |delta, finish| chunk("msg_2", "claude-x", delta, finish);
    assert_eq!(
        payloads(&out),
        [
            c(json!({ "role": "assistant", "content": "" }), Value::Null),
            c(json!({ "content": "Checking." }), Value::Null),
            c(
                json!({ "tool_calls": [{ "index": 0, "id": "toolu_1", "type": "function",
                                         "function": { "name": "get_weather", "arguments": "" } }] }),
                Value::Null
            ),
            c(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"city\": \"Pa" } }] }),
                Value::Null
            ),
            c(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "ris\"}" } }] }),
                Value::Null
            ),
            c(json!({}), json!("tool_calls")),
            usage_chunk("msg_2", "claude-x", 40, 30),
            "[DONE]".to_string(),
        ]
    );
}

#[test]
fn a_stream_error_event_becomes_the_error_chunk_the_openai_sdk_raises_on() {
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n\
event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let out = payloads(&translate_stream(&[stream.as_bytes()]));
    assert_eq!(out.len(), 2, "nothing after the error: {out:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&out[1]).unwrap(),
        json!({ "error": { "message": "Overloaded", "type": "server_error", "param": null,
                           "code": "overloaded_error" } })
    );
}

#[test]
fn a_cut_stream_gets_nothing_from_finish() {
    let cut = &TEXT_STREAM.as_bytes()[..TEXT_STREAM.find("event: message_delta").unwrap() + 10];
    let out = payloads(&translate_stream(&[cut]));
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|p| p != "[DONE]"));
}

#[test]
fn a_stream_split_at_every_byte_gives_the_same_output_as_whole() {
    for fixture in [TEXT_STREAM, TOOL_STREAM] {
        let bytes = fixture.as_bytes();
        let whole = translate_stream(&[bytes]);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(translate_stream(&[a, b]), whole, "split at {i}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(translate_stream(&singles), whole);
    }
}

#[test]
fn a_multi_mib_event_is_never_held_beyond_the_cap_and_fails_the_stream() {
    let cap = crate::translate::to_anthropic::EVENT_CAP;
    let mut s = Stream::new();
    let mut out = Vec::new();
    let start = TEXT_STREAM.find("event: ping").unwrap();
    s.feed(&TEXT_STREAM.as_bytes()[..start], &mut out);
    s.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"", &mut out);
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..48 {
        s.feed(&block, &mut out);
        assert!(s.held_bytes() <= cap, "{}", s.held_bytes());
    }
    s.feed(b"\"}}\n\n", &mut out);
    s.feed(&TEXT_STREAM.as_bytes()[start..], &mut out);
    let out = payloads(&out);
    assert_eq!(
        out.len(),
        2,
        "role chunk then the error, nothing after: {out:?}"
    );
    let err: Value = serde_json::from_str(&out[1]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert_eq!(s.held_bytes(), 0);
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use proptest::prelude::*;

    use super::{translate_stream, TEXT_STREAM, TOOL_STREAM};
    use crate::translate::to_anthropic::{error, request, response};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn a_stream_cut_anywhere_any_number_of_times_gives_the_same_output(
            tool in any::<bool>(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)
        ) {
            let bytes = if tool { TOOL_STREAM } else { TEXT_STREAM }.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for &to in &at {
                chunks.push(&bytes[from..to]);
                from = to;
            }
            chunks.push(&bytes[from..]);
            prop_assert_eq!(translate_stream(&chunks), translate_stream(&[bytes]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = request(&body, 1);
            let _ = response(&body);
            let _ = error(500, &body);
            let _ = translate_stream(&[&body]);
        }
    }
}

/// `body` is exactly what printing its parsed `Value` gives: compact, keys sorted.
fn assert_canonical(body: &[u8]) {
    let parsed: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        String::from_utf8_lossy(body),
        parsed.to_string(),
        "not written as serde_json prints it"
    );
}

#[test]
fn the_request_is_written_byte_for_byte_as_serde_json_prints_it() {
    let req = json!({
        "model": "gpt-4o", "max_tokens": 50, "temperature": 2, "stop": "END", "stream": true,
        "user": "u\"1", "parallel_tool_calls": false,
        "tool_choice": { "type": "function", "function": { "name": "get" } },
        "tools": [
            { "type": "function", "function": { "name": "get", "description": "Gets.",
              "parameters": { "type": "object", "properties": { "b": {}, "a": {} } } } },
            { "type": "function", "function": { "name": "put" } },
        ],
        "messages": [
            { "role": "system", "content": "One." },
            { "role": "developer", "content": [{ "type": "text", "text": "Two\n" }] },
            { "role": "user", "content": [
                { "type": "text", "text": "Look" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
                { "type": "image_url", "image_url": { "url": "https://x.test/a.png" } },
                { "type": "file", "file": { "file_data": "data:application/pdf;base64,BBBB" } },
            ] },
            { "role": "user", "content": "again" },
            { "role": "assistant", "content": "Calling", "tool_calls": [
                { "id": "c1", "type": "function",
                  "function": { "name": "get", "arguments": "{\"z\":1,\"a\":[true,null]}" } },
                { "id": "c2", "type": "function", "function": { "name": "put", "arguments": "[" } },
            ] },
            { "role": "tool", "tool_call_id": "c1", "content": "42" },
            { "role": "tool", "tool_call_id": "c2", "content": [{ "type": "text", "text": "ok" }] },
            { "role": "assistant", "content": "" },
            { "role": "user", "content": "done?" },
        ],
    });
    let body = request(&serde_json::to_vec(&req).unwrap(), 4096)
        .unwrap()
        .body;
    assert_canonical(&body);
    let mut req = req;
    req["stop"] = json!(["a", " ", "b"]);
    req["top_p"] = json!(0.5);
    req["temperature"] = Value::Null;
    req["tool_choice"] = json!("none");
    req["messages"] =
        json!([{ "role": "system", "content": "Only." }, { "role": "user", "content": "Hi" }]);
    let body = request(&serde_json::to_vec(&req).unwrap(), 4096)
        .unwrap()
        .body;
    assert_canonical(&body);
    assert!(String::from_utf8_lossy(&body).contains(r#""system":"Only.""#));
}

#[test]
fn answers_errors_and_stream_chunks_are_written_byte_for_byte_as_serde_json_prints_them() {
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude\t4",
        "content": [
            { "type": "text", "text": "Hi \"there\"" },
            { "type": "tool_use", "id": "t1", "name": "get", "input": { "z": 1, "a": "x" } },
        ],
        "stop_reason": "tool_use",
        "usage": { "input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 2 },
    });
    assert_canonical(&response(&serde_json::to_vec(&answer).unwrap()).unwrap());
    let mut only_tools = answer.clone();
    only_tools["content"] = json!([{ "type": "tool_use", "id": "t1", "name": "get" }]);
    assert_canonical(&response(&serde_json::to_vec(&only_tools).unwrap()).unwrap());
    let err =
        json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Busy" } });
    assert_canonical(&error(529, &serde_json::to_vec(&err).unwrap()));
    assert_canonical(&error(418, b"<html>teapot</html>"));

    let events = [
        json!({ "type": "message_start", "message": { "id": "m", "model": "c",
            "usage": { "input_tokens": 5, "output_tokens": 1 } } }),
        json!({ "type": "content_block_start", "index": 0,
            "content_block": { "type": "text", "text": "A" } }),
        json!({ "type": "content_block_delta", "index": 0,
            "delta": { "type": "text_delta", "text": "b\n" } }),
        json!({ "type": "content_block_start", "index": 1,
            "content_block": { "type": "tool_use", "id": "t", "name": "get", "input": {} } }),
        json!({ "type": "content_block_delta", "index": 1,
            "delta": { "type": "input_json_delta", "partial_json": "{\"a\":" } }),
        json!({ "type": "message_delta", "delta": { "stop_reason": "tool_use" },
            "usage": { "output_tokens": 9 } }),
        json!({ "type": "message_stop" }),
    ];
    let mut input = Vec::new();
    for e in &events {
        input.extend_from_slice(format!("event: x\ndata: {e}\n\n").as_bytes());
    }
    let mut stream = Stream::new();
    let mut out = Vec::new();
    stream.feed(&input, &mut out);
    let mut error_stream = Stream::new();
    let failure = json!({ "type": "error", "error": { "type": "api_error", "message": "m" } });
    error_stream.feed(format!("data: {failure}\n\n").as_bytes(), &mut out);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.split("\n\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 9, "{text}");
    for line in lines {
        let data = line.strip_prefix("data: ").unwrap();
        if data != "[DONE]" {
            assert_canonical(data.as_bytes());
        }
    }
}

#[test]
fn include_usage_is_honoured_and_a_stream_ends_with_the_usage_chunk_only_when_asked() {
    let mut req = chat(json!([{ "role": "user", "content": "Hi" }]));
    req["stream"] = json!(true);
    let body = serde_json::to_vec(&req).unwrap();
    let plain = request(&body, 4096).unwrap();
    assert!(!plain.usage_chunk, "not asked for");
    req["stream_options"] = json!({ "include_usage": true });
    let body = serde_json::to_vec(&req).unwrap();
    let asked = request(&body, 4096).unwrap();
    assert!(asked.usage_chunk);
    assert!(
        asked.dropped.is_empty(),
        "honoured, not dropped: {:?}",
        asked.dropped
    );

    // As OpenAI streams without include_usage: the finish_reason chunk, then [DONE].
    let mut s = Stream::new();
    s.usage_chunk(false);
    let mut out = Vec::new();
    s.feed(TEXT_STREAM.as_bytes(), &mut out);
    let p = payloads(&out);
    assert_eq!(p.len(), 5, "{p:?}");
    assert_eq!(
        p[3],
        chunk("msg_1", "claude-sonnet-4-5", json!({}), json!("stop"))
    );
    assert_eq!(p[4], "[DONE]");
    assert!(!String::from_utf8_lossy(&out).contains("\"usage\""));
}
