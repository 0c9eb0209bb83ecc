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

use serde_json::Value;

use super::json::{at, parse, str_of, W};

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
    let n = |p: &[&str]| at(u, p).and_then(Value::as_u64).unwrap_or(0);
    let cached = n(&["prompt_tokens_details", "cached_tokens"]);
    (
        n(&["prompt_tokens"]).saturating_sub(cached),
        n(&["completion_tokens"]),
        cached,
    )
}

/// Translates an OpenAI `chat.completion` into an Anthropic `message`; `None` when the body is
/// not one (no `choices[0].message`).
pub fn response(body: &[u8]) -> Option<Vec<u8>> {
    let v = parse(body)?;
    let choice = v.get("choices")?.as_array()?.first()?;
    let msg = choice.get("message").filter(|m| m.is_object())?;
    let mut w = W::with_capacity(body.len());
    w.raw(r#"{"id":"#).str(str_of(&v, "id").unwrap_or(""));
    w.raw(r#","type":"message","role":"assistant","model":"#);
    w.str(str_of(&v, "model").unwrap_or(""))
        .raw(r#","content":["#);
    let text = ["content", "refusal"]
        .iter()
        .find_map(|k| str_of(msg, k).filter(|t| !t.is_empty()));
    if let Some(t) = text {
        w.raw(r#"{"type":"text","text":"#).str(t).raw("}");
    }
    for call in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function");
        let field = |k: &str| f.and_then(|f| str_of(f, k));
        w.sep()
            .raw(r#"{"type":"tool_use","id":"#)
            .str(str_of(call, "id").unwrap_or(""));
        w.raw(r#","name":"#)
            .str(field("name").unwrap_or(""))
            .raw(r#","input":"#);
        match field("arguments").and_then(|a| serde_json::from_str::<Value>(a).ok()) {
            Some(input @ Value::Object(_)) => w.value(&input),
            _ => w.raw("{}"),
        };
        w.raw("}");
    }
    let finish = str_of(choice, "finish_reason").unwrap_or("");
    let (input_tokens, output_tokens, cached) = v.get("usage").map(usage).unwrap_or((0, 0, 0));
    w.raw(r#"],"stop_reason":""#).raw(stop_reason(finish));
    w.raw(r#"","stop_sequence":null,"usage":{"input_tokens":"#)
        .num(input_tokens);
    w.raw(r#","output_tokens":"#).num(output_tokens);
    if cached > 0 {
        w.raw(r#","cache_read_input_tokens":"#).num(cached);
    }
    w.raw("}}");
    Some(w.0)
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
    let parsed = parse(body);
    let found = parsed
        .as_ref()
        .and_then(|v| at(v, &["error", "message"]).or_else(|| v.get("message")))
        .and_then(Value::as_str);
    let text = String::from_utf8_lossy(body.get(..512).unwrap_or(body));
    let mut w = W::with_capacity(128);
    w.raw(r#"{"type":"error","error":{"type":""#)
        .raw(error_type(status));
    w.raw(r#"","message":"#);
    match found.or(Some(text.trim()).filter(|t| !t.is_empty())) {
        Some(m) => w.str(m),
        None => w
            .raw(r#""upstream answered HTTP "#)
            .num(status.into())
            .raw("\""),
    };
    w.raw("}}");
    w.0
}
