//! OpenAI answers for an Anthropic client: a `chat.completion` as a Messages `message`, an
//! OpenAI error as an Anthropic error.
//!
//! | OpenAI `finish_reason` | Anthropic `stop_reason` |
//! |---|---|
//! | `stop` | `end_turn` (OpenAI does not say whether a stop sequence matched, so `stop_sequence` is `null`) |
//! | `length` | `max_tokens` |
//! | `tool_calls`, `function_call` | `tool_use` |
//! | `content_filter` | `refusal` (Anthropic's reason for an answer its safety filters stopped) |
//! | anything else, or none | `end_turn` |
//!
//! Usage: `prompt_tokens` less `prompt_tokens_details.cached_tokens` is `input_tokens` (Anthropic
//! counts cache reads apart, in `cache_read_input_tokens`), `completion_tokens` is
//! `output_tokens`. The `id` is OpenAI's (`chatcmpl-…`, kept so it can be traced) and `model`
//! the one the upstream says served. A tool call's `arguments` that are not a JSON object
//! (the model wrote invalid JSON, or nothing) become `input: {}`: Anthropic promises an
//! object, and a client could not have called the tool with the broken text anyway.

use serde_json::{Map, Value};

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`.
pub(super) fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// `(input_tokens, output_tokens, cache_read_input_tokens)` of an OpenAI `usage` object.
pub(super) fn usage(u: &Value) -> (u64, u64, u64) {
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("/prompt_tokens_details/cached_tokens");
    (
        n("/prompt_tokens").saturating_sub(cached),
        n("/completion_tokens"),
        cached,
    )
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// A `tool_calls[].function.arguments` string as a tool's `input` (see the module doc).
fn input(arguments: Option<&str>) -> Value {
    match arguments.map(serde_json::from_str::<Value>) {
        Some(Ok(v @ Value::Object(_))) => v,
        _ => Value::Object(Map::new()),
    }
}

/// Translates an OpenAI `chat.completion` into an Anthropic `message`; `None` when the body is
/// not one (no `choices[0].message`).
pub fn response(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v.get("choices")?.as_array()?.first()?;
    let msg = choice.get("message")?.as_object()?;
    let mut content = Vec::new();
    let text = ["content", "refusal"].iter().find_map(|k| {
        msg.get(*k)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    });
    if let Some(t) = text {
        content.push(obj(vec![("type", s("text")), ("text", s(t))]));
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function");
        let field = |k: &str| f.and_then(|f| f.get(k)).and_then(Value::as_str);
        content.push(obj(vec![
            ("type", s("tool_use")),
            (
                "id",
                s(call.get("id").and_then(Value::as_str).unwrap_or("")),
            ),
            ("name", s(field("name").unwrap_or(""))),
            ("input", input(field("arguments"))),
        ]));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let (input_tokens, output_tokens, cached) = v.get("usage").map(usage).unwrap_or((0, 0, 0));
    let mut usage = vec![
        ("input_tokens", Value::from(input_tokens)),
        ("output_tokens", Value::from(output_tokens)),
    ];
    if cached > 0 {
        usage.push(("cache_read_input_tokens", Value::from(cached)));
    }
    let str_field = |k: &str| s(v.get(k).and_then(Value::as_str).unwrap_or(""));
    let out = obj(vec![
        ("id", str_field("id")),
        ("type", s("message")),
        ("role", s("assistant")),
        ("model", str_field("model")),
        ("content", Value::Array(content)),
        ("stop_reason", s(stop_reason(finish.unwrap_or("")))),
        ("stop_sequence", Value::Null),
        ("usage", obj(usage)),
    ]);
    serde_json::to_vec(&out).ok()
}

/// Anthropic's error `type` for an HTTP status (the SDK picks its exception class by the
/// status; the type is what a client logs and may match on).
pub(super) fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Translates an OpenAI error answer (`{"error":{"message","type","code"}}`) into Anthropic's
/// `{"type":"error","error":{"type","message"}}`, the type told by `status`. A body that is
/// not an OpenAI error still gives a well-formed one: its text (up to 512 bytes) as the
/// message, or the status when it has none.
pub fn error(status: u16, body: &[u8]) -> Vec<u8> {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message").or_else(|| v.get("message")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body.get(..512).unwrap_or(body));
            let text = text.trim();
            if text.is_empty() {
                let mut m = String::from("upstream answered HTTP ");
                m.push_str(&status.to_string());
                m
            } else {
                text.to_string()
            }
        });
    let out = obj(vec![
        ("type", s("error")),
        (
            "error",
            obj(vec![
                ("type", s(error_type(status))),
                ("message", Value::String(message)),
            ]),
        ),
    ]);
    serde_json::to_vec(&out).unwrap_or_default()
}
