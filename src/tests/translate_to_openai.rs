//! Anthropic client, OpenAI upstream: request, JSON answer, errors and streams translated, on
//! fixtures written from the two public API references.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::sse::{Frame, Framer};
use crate::translate::to_openai::{error, request, response, Stream, EVENT_CAP};
use crate::translate::{Refused, Request};

fn translate(req: Value) -> Request {
    match request(req.to_string().as_bytes()) {
        Ok(r) => r,
        Err(e) => panic!("refused: {}", e.reason()),
    }
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn refused(req: Value) -> Refused {
    request(req.to_string().as_bytes()).unwrap_err()
}

fn base(messages: Value) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": messages})
}

#[test]
fn request_string_system_and_text_become_system_then_user_message() {
    let mut req = base(json!([{"role": "user", "content": "Hello, Claude"}]));
    req["system"] = json!("You are terse.");
    let r = translate(req);
    assert_eq!(
        body(&r),
        json!({
            "model": "claude-sonnet-4-5",
            "max_completion_tokens": 1024,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hello, Claude"}
            ]
        })
    );
    assert!(!r.stream);
    assert!(r.dropped.is_empty());
}

#[test]
fn request_system_text_blocks_are_joined_into_one_system_message() {
    let mut req = base(json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]));
    req["system"] = json!([
        {"type": "text", "text": "Rule one.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Rule two."}
    ]);
    let b = body(&translate(req));
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "Rule one.\nRule two."})
    );
    assert_eq!(
        b["messages"][1],
        json!({"role": "user", "content": [{"type": "text", "text": "Hi"}]})
    );
}

#[test]
fn request_images_become_image_url_parts_with_data_url_or_url() {
    let b = body(&translate(base(json!([{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "What are these?"}
    ]}]))));
    assert_eq!(
        b["messages"][0]["content"],
        json!([
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "text", "text": "What are these?"}
        ])
    );
}

fn weather_tool() -> Value {
    json!({
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    })
}

#[test]
fn request_tools_become_function_tools_and_tool_choice_maps_each_kind() {
    let cases = [
        (json!({"type": "auto"}), json!("auto")),
        (json!({"type": "any"}), json!("required")),
        (json!({"type": "none"}), json!("none")),
        (
            json!({"type": "tool", "name": "get_weather"}),
            json!({"type": "function", "function": {"name": "get_weather"}}),
        ),
    ];
    for (choice, expected) in cases {
        let mut req = base(json!([{"role": "user", "content": "Weather in Paris?"}]));
        req["tools"] = json!([weather_tool()]);
        req["tool_choice"] = choice;
        let b = body(&translate(req));
        assert_eq!(
            b["tools"],
            json!([{"type": "function", "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
            }}])
        );
        assert_eq!(b["tool_choice"], expected);
        assert!(b.get("parallel_tool_calls").is_none());
    }
}

#[test]
fn request_disable_parallel_tool_use_becomes_parallel_tool_calls_false() {
    let mut req = base(json!([{"role": "user", "content": "Hi"}]));
    req["tools"] = json!([weather_tool()]);
    req["tool_choice"] = json!({"type": "auto", "disable_parallel_tool_use": true});
    assert_eq!(body(&translate(req))["parallel_tool_calls"], json!(false));
}

#[test]
fn request_tool_choice_without_tools_is_not_sent() {
    let mut req = base(json!([{"role": "user", "content": "Hi"}]));
    req["tool_choice"] = json!({"type": "any"});
    req["tools"] = json!([]);
    let b = body(&translate(req));
    assert!(b.get("tool_choice").is_none() && b.get("tools").is_none());
}

#[test]
fn request_tool_use_and_tool_result_become_tool_calls_and_tool_messages() {
    let b = body(&translate(base(json!([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"location": "Rome"}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "15 degrees"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": true,
             "content": [{"type": "text", "text": "service down"}, {"type": "text", "text": "retry later"}]},
            {"type": "text", "text": "Summarise."}
        ]}
    ]))));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "toolu_01B", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "15 degrees"},
            {"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: service down\nretry later"},
            {"role": "user", "content": [{"type": "text", "text": "Summarise."}]}
        ])
    );
}

#[test]
fn request_assistant_with_only_tool_use_has_null_content() {
    let b = body(&translate(base(json!([
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}
    ]))));
    assert_eq!(b["messages"][1]["content"], Value::Null);
    assert_eq!(
        b["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!("{}")
    );
    assert_eq!(
        b["messages"][2],
        json!({"role": "tool", "tool_call_id": "t1", "content": ""})
    );
    assert_eq!(b["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn request_sampling_stop_and_user_parameters_are_mapped() {
    let mut req = base(json!([{"role": "user", "content": "Hi"}]));
    req["temperature"] = json!(0.2);
    req["top_p"] = json!(0.9);
    req["stop_sequences"] = json!(["END", "\n\nHuman:"]);
    req["metadata"] = json!({"user_id": "user-42"});
    let r = translate(req);
    let b = body(&r);
    assert_eq!(b["temperature"], json!(0.2));
    assert_eq!(b["top_p"], json!(0.9));
    assert_eq!(b["stop"], json!(["END", "\n\nHuman:"]));
    assert_eq!(b["user"], json!("user-42"));
    assert_eq!(b["model"], json!("claude-sonnet-4-5"));
    assert!(b.get("max_tokens").is_none());
    assert!(r.dropped.is_empty());
}

#[test]
fn request_stream_asks_for_usage_in_the_stream() {
    let mut req = base(json!([{"role": "user", "content": "Hi"}]));
    req["stream"] = json!(true);
    let r = translate(req);
    assert!(r.stream);
    let b = body(&r);
    assert_eq!(b["stream"], json!(true));
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
}

#[test]
fn request_thinking_enabled_is_dropped_and_listed_disabled_is_not() {
    let mut req = base(json!([
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Hello"}
        ]},
        {"role": "user", "content": "More"}
    ]));
    req["thinking"] = json!({"type": "enabled", "budget_tokens": 512});
    let r = translate(req.clone());
    assert_eq!(r.dropped, vec!["thinking"]);
    let b = body(&r);
    assert!(b.get("thinking").is_none());
    assert_eq!(
        b["messages"][1],
        json!({"role": "assistant", "content": "Hello"})
    );

    let mut off = base(json!([{"role": "user", "content": "Hi"}]));
    off["thinking"] = json!({"type": "disabled"});
    assert!(translate(off).dropped.is_empty());
}

#[test]
fn request_top_k_service_tier_and_tool_strict_are_dropped_and_listed() {
    let mut req = base(json!([{"role": "user", "content": "Hi"}]));
    req["top_k"] = json!(40);
    req["service_tier"] = json!("standard_only");
    let mut tool = weather_tool();
    tool["strict"] = json!(true);
    req["tools"] = json!([tool]);
    let r = translate(req);
    assert_eq!(r.dropped, vec!["tools[].strict", "top_k", "service_tier"]);
    let b = body(&r);
    for key in ["top_k", "service_tier"] {
        assert!(b.get(key).is_none(), "{key} sent");
    }
    assert!(b["tools"][0]["function"].get("strict").is_none());
}

#[test]
fn request_more_than_four_stop_sequences_is_refused() {
    let mut req = base(json!([{"role": "user", "content": "Hi"}]));
    req["stop_sequences"] = json!(["a", "b", "c", "d", "e"]);
    assert!(matches!(refused(req), Refused::Unsupported(_)));
}

#[test]
fn request_server_tools_documents_and_hosted_features_are_refused() {
    let mut server_tool = base(json!([{"role": "user", "content": "Hi"}]));
    server_tool["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let document = base(json!([{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    ]}]));
    let image_in_result = base(json!([{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
        ]}
    ]}]));
    let mut mcp = base(json!([{"role": "user", "content": "Hi"}]));
    mcp["mcp_servers"] = json!([{"type": "url", "url": "https://mcp.example.com", "name": "x"}]);
    for req in [server_tool, document, image_in_result, mcp] {
        assert!(
            matches!(refused(req.clone()), Refused::Unsupported(_)),
            "{req}"
        );
    }
}

#[test]
fn request_that_is_not_an_anthropic_json_object_is_refused_as_not_json() {
    for raw in [
        &b"not json"[..],
        b"[1,2]",
        b"42",
        b"{\"model\":\"m\"}",
        b"{\"messages\":{}}",
        b"{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
        b"{\"messages\":[{\"role\":\"user\"}]}",
        b"{\"messages\":[{\"role\":\"user\",\"content\":7}]}",
        b"",
    ] {
        assert_eq!(
            request(raw),
            Err(Refused::NotJson),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn request_with_wrong_types_everywhere_is_refused_or_translated_without_panic() {
    let hostile = [
        json!({"messages": [{"role": "user", "content": [{"type": "image", "source": 5}]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": []}]}]}),
        json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": 1}]}]}),
        json!({"messages": [], "system": [{"type": "image"}]}),
        json!({"messages": [], "tools": [{"name": "f"}]}),
        json!({"messages": [], "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool"}}),
        json!({"messages": [], "tools": "x", "stop_sequences": "y", "metadata": 3, "thinking": 1}),
        json!({"messages": [{"role": "user", "content": [null, 1, "x"]}]}),
    ];
    for req in hostile {
        let _ = request(req.to_string().as_bytes());
    }
}

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

// ---- streams ----

fn chunk(delta: Value, finish: Value) -> String {
    let c = json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    });
    ["data: ", &c.to_string(), "\n\n"].concat()
}

const USAGE_CHUNK: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\n\n";

fn text_stream() -> String {
    [
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        chunk(json!({"content": "Hello"}), Value::Null),
        chunk(json!({"content": " there"}), Value::Null),
        chunk(json!({}), json!("stop")),
        USAGE_CHUNK.to_string(),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat()
}

fn tool_stream() -> String {
    let call = |v: Value| chunk(json!({"tool_calls": [v]}), Value::Null);
    [
        chunk(json!({"role": "assistant", "content": "Checking."}), Value::Null),
        call(json!({"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}})),
        call(json!({"index": 0, "function": {"arguments": "{\"location\":"}})),
        call(json!({"index": 0, "function": {"arguments": "\"Paris\"}"}})),
        call(json!({"index": 1, "id": "call_B", "type": "function", "function": {"name": "now", "arguments": "{}"}})),
        chunk(json!({}), json!("tool_calls")),
        USAGE_CHUNK.to_string(),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat()
}

/// Feeds `parts` in order, then finishes.
fn run(parts: &[&[u8]]) -> Vec<u8> {
    let mut s = Stream::new();
    let mut out = Vec::new();
    for p in parts {
        s.feed(p, &mut out);
    }
    s.finish(&mut out);
    out
}

/// The Anthropic events written, as `(event name, data)`; checks each `event:` name matches
/// its data's `type`, as Anthropic writes them.
fn events(out: &[u8]) -> Vec<(String, Value)> {
    let mut f = Framer::new(1 << 20);
    let mut evs = Vec::new();
    f.feed(out, &mut |frame| {
        if let Frame::Event(e) = frame {
            let data: Value = serde_json::from_slice(e.data).unwrap();
            let name = e.name.unwrap().to_string();
            assert_eq!(data["type"], json!(name));
            evs.push((name, data));
        }
    });
    assert!(!f.mid_event());
    evs
}

#[test]
fn stream_text_becomes_anthropic_events_with_usage_in_message_delta() {
    let evs = events(&run(&[text_stream().as_bytes()]));
    let data: Vec<Value> = evs.into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        data,
        vec![
            json!({"type": "message_start", "message": {"id": "chatcmpl-123", "type": "message", "role": "assistant",
                "content": [], "model": "gpt-4o-mini-2024-07-18", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"input_tokens": 9, "output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ]
    );
}

#[test]
fn stream_each_text_delta_goes_out_in_the_feed_that_completed_it() {
    let mut s = Stream::new();
    let mut out = Vec::new();
    s.feed(
        chunk(json!({"content": "Hel"}), Value::Null).as_bytes(),
        &mut out,
    );
    assert!(String::from_utf8_lossy(&out).contains("\"text\":\"Hel\""));
    let before = out.len();
    s.feed(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}",
        &mut out,
    );
    assert_eq!(out.len(), before, "a partial event writes nothing");
    s.feed(b"}]}\n\n", &mut out);
    assert!(String::from_utf8_lossy(&out[before..]).contains("\"text\":\"lo\""));
}

#[test]
fn stream_tool_calls_become_one_tool_use_block_each_after_the_text_block() {
    let evs = events(&run(&[tool_stream().as_bytes()]));
    let data: Vec<Value> = evs.into_iter().map(|(_, d)| d).skip(1).collect();
    assert_eq!(
        data,
        vec![
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_B", "name": "now", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 9, "output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ]
    );
}

#[test]
fn stream_length_and_content_filter_finishes_give_max_tokens_and_refusal() {
    for (finish, stop) in [("length", "max_tokens"), ("content_filter", "refusal")] {
        let s = [
            chunk(json!({"content": "x"}), Value::Null),
            chunk(json!({}), json!(finish)),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let evs = events(&run(&[s.as_bytes()]));
        let (name, delta) = &evs[evs.len() - 2];
        assert_eq!(name, "message_delta");
        assert_eq!(delta["delta"]["stop_reason"], json!(stop));
        assert_eq!(
            delta["usage"],
            json!({"input_tokens": 0, "output_tokens": 0})
        );
    }
}

#[test]
fn stream_error_chunk_becomes_an_anthropic_error_event_and_ends_the_translation() {
    let s = [
        chunk(json!({"content": "partial"}), Value::Null),
        "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n".to_string(),
        chunk(json!({"content": "ignored"}), Value::Null),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let evs = events(&run(&[s.as_bytes()]));
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        evs[3].1,
        json!({"type": "error", "error": {"type": "api_error", "message": "The server had an error"}})
    );
    let rate = events(&run(&[
        b"data: {\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n",
    ]));
    assert_eq!(
        rate,
        vec![(
            "error".to_string(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        )]
    );
}

#[test]
fn stream_ending_after_finish_reason_without_done_is_closed_by_finish() {
    let s = [
        chunk(json!({"content": "Hi"}), Value::Null),
        chunk(json!({}), json!("stop")),
    ]
    .concat();
    let evs = events(&run(&[s.as_bytes()]));
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}

#[test]
fn stream_cut_before_finish_reason_gets_nothing_from_finish() {
    let mut s = Stream::new();
    let mut out = Vec::new();
    s.feed(
        chunk(json!({"content": "Hi"}), Value::Null).as_bytes(),
        &mut out,
    );
    s.feed(b"data: {\"choices\":[{\"ind", &mut out);
    let before = out.clone();
    s.finish(&mut out);
    assert_eq!(out, before);
    assert!(!String::from_utf8_lossy(&out).contains("message_stop"));
}

#[test]
fn stream_skips_chunks_that_are_not_json_objects() {
    let s = [
        "data: not json\n\n: comment\n\ndata: [1]\n\n",
        &text_stream(),
    ]
    .concat();
    assert_eq!(run(&[s.as_bytes()]), run(&[text_stream().as_bytes()]));
}

#[test]
fn stream_split_at_every_byte_boundary_translates_the_same() {
    for fixture in [text_stream(), tool_stream().replace("\n\n", "\r\n\r\n")] {
        let whole = run(&[fixture.as_bytes()]);
        let b = fixture.as_bytes();
        for i in 0..=b.len() {
            assert_eq!(run(&[&b[..i], &b[i..]]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
    }
}

#[test]
fn stream_holds_at_most_the_cap_for_a_multi_mib_line_and_recovers() {
    let mut s = Stream::new();
    let mut out = Vec::new();
    s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"", &mut out);
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..64 {
        s.feed(&block, &mut out);
        assert!(s.held_bytes() <= EVENT_CAP, "held {}", s.held_bytes());
    }
    s.feed(b"\"}}]}\n\n", &mut out);
    assert!(out.is_empty(), "an oversized event is skipped");
    s.feed(text_stream().as_bytes(), &mut out);
    s.finish(&mut out);
    assert_eq!(out, run(&[text_stream().as_bytes()]));
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use proptest::prelude::*;

    use super::{run, text_stream, tool_stream};

    proptest! {
        #[test]
        fn stream_split_anywhere_many_times_translates_the_same(
            tool in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let fixture = if tool { tool_stream() } else { text_stream() };
            let b = fixture.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(b.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for i in at {
                parts.push(&b[from..i]);
                from = i;
            }
            parts.push(&b[from..]);
            prop_assert_eq!(run(&parts), run(&[b]));
        }

        #[test]
        fn request_never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = crate::translate::to_openai::request(&raw);
            let _ = crate::translate::to_openai::response(&raw);
            let _ = crate::translate::to_openai::error(500, &raw);
            let mut out = Vec::new();
            let mut s = crate::translate::to_openai::Stream::new();
            s.feed(&raw, &mut out);
            s.finish(&mut out);
        }
    }
}
