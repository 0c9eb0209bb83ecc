//! Anthropic client, OpenAI upstream: a `chat.completion` as a Messages `message`, OpenAI
//! errors as Anthropic errors (fixtures from the public API references).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::translate::to_openai::{error, response};

fn answer(v: Value) -> Value {
    serde_json::from_slice(&response(v.to_string().as_bytes()).unwrap()).unwrap()
}

fn completion(message: Value, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                  "prompt_tokens_details": {"cached_tokens": 0}},
        "system_fingerprint": "fp_50cad350e4"
    })
}

#[test]
fn response_text_completion_becomes_an_anthropic_message() {
    let a = answer(completion(
        json!({"role": "assistant", "content": "Hello! How can I help?", "refusal": null}),
        "stop",
    ));
    assert_eq!(
        a,
        json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "type": "message",
            "role": "assistant",
            "model": "gpt-4.1-2025-04-14",
            "content": [{"type": "text", "text": "Hello! How can I help?"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 19, "output_tokens": 10}
        })
    );
}

#[test]
fn response_tool_calls_become_tool_use_blocks_with_parsed_input() {
    let a = answer(completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
            {"id": "call_def", "type": "function", "function": {"name": "now", "arguments": ""}},
            {"id": "call_ghi", "type": "function", "function": {"name": "bad", "arguments": "{\"loc"}}
        ]}),
        "tool_calls",
    ));
    assert_eq!(
        a["content"],
        json!([
            {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "call_def", "name": "now", "input": {}},
            {"type": "tool_use", "id": "call_ghi", "name": "bad", "input": {}}
        ])
    );
    assert_eq!(a["stop_reason"], json!("tool_use"));
}

#[test]
fn response_finish_reasons_become_anthropic_stop_reasons() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
    ] {
        let a = answer(completion(
            json!({"role": "assistant", "content": "x"}),
            finish,
        ));
        assert_eq!(a["stop_reason"], json!(stop), "{finish}");
        assert_eq!(a["stop_sequence"], Value::Null);
    }
}

#[test]
fn response_refusal_becomes_text_and_cached_prompt_tokens_are_cache_reads() {
    let mut c = completion(
        json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
        "stop",
    );
    c["usage"]["prompt_tokens_details"]["cached_tokens"] = json!(15);
    let a = answer(c);
    assert_eq!(
        a["content"],
        json!([{"type": "text", "text": "I can't help with that."}])
    );
    assert_eq!(
        a["usage"],
        json!({"input_tokens": 4, "output_tokens": 10, "cache_read_input_tokens": 15})
    );
}

#[test]
fn response_that_is_not_a_chat_completion_is_left_alone() {
    for raw in [
        &b"nope"[..],
        b"{}",
        b"{\"choices\":[]}",
        b"{\"choices\":[{\"text\":\"x\"}]}",
        b"[]",
    ] {
        assert_eq!(response(raw), None);
    }
}

fn anthropic_error(status: u16, raw: &[u8]) -> Value {
    serde_json::from_slice(&error(status, raw)).unwrap()
}

#[test]
fn error_type_follows_the_status_and_keeps_openai_message() {
    let body = br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ] {
        assert_eq!(
            anthropic_error(status, body),
            json!({"type": "error", "error": {"type": kind, "message": "Rate limit reached for gpt-4o"}}),
            "{status}"
        );
    }
}

#[test]
fn error_with_a_non_json_or_empty_body_is_still_a_well_formed_anthropic_error() {
    let e = anthropic_error(502, b"<html>Bad Gateway</html>\n");
    assert_eq!(
        e,
        json!({"type": "error", "error": {"type": "api_error", "message": "<html>Bad Gateway</html>"}})
    );
    let e = anthropic_error(503, b"");
    assert_eq!(e["error"]["message"], json!("upstream answered HTTP 503"));
    let long = vec![b'x'; 10_000];
    let e = anthropic_error(500, &long);
    assert_eq!(e["error"]["message"].as_str().unwrap().len(), 512);
}
