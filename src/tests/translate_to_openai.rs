//! Anthropic client, OpenAI upstream: the request translated, each parameter mapped, dropped
//! or refused, on fixtures written from the two public API references.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::translate::to_openai::request;
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
