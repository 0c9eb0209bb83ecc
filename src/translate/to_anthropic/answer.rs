//! Anthropic answers in OpenAI's shapes: a whole message as a `chat.completion`, an error as
//! OpenAI's error object, and the pieces the stream translation shares with them.
//!
//! Error types (the status is kept by the caller, and the OpenAI SDK picks its exception class
//! by status; `type` and `code` tell the client what happened):
//!
//! | Anthropic `error.type` | OpenAI `type` | OpenAI `code` |
//! |---|---|---|
//! | `invalid_request_error`, `not_found_error`, `permission_error`, `request_too_large` | `invalid_request_error` | the Anthropic type |
//! | `authentication_error` | `invalid_request_error` | `invalid_api_key` |
//! | `rate_limit_error` | `rate_limit_exceeded` | `rate_limit_exceeded` |
//! | `billing_error` | `insufficient_quota` | `insufficient_quota` |
//! | `api_error`, `overloaded_error`, `timeout_error` | `server_error` | the Anthropic type |
//! | anything else, or a body that is not Anthropic's error | by status: 429 as rate limits, ≥ 500 `server_error`, else `invalid_request_error` | the Anthropic type, or `null` |
//!
//! `created` is 0: the translation is pure (no clock) and Anthropic's answer carries no time;
//! the OpenAI SDK requires an integer, not a meaningful one.

//! Everything is written as JSON text with its keys in sorted order, as a `serde_json::Value`
//! object prints them.

use serde_json::Value;

use crate::translate::to_openai::json::{parse, W};

/// The longest message taken from an error body that is not JSON.
const MESSAGE_CAP: usize = 512;

/// Translates an Anthropic message into an OpenAI `chat.completion`; `None` when the body is
/// not an Anthropic message.
pub fn response(body: &[u8]) -> Option<Vec<u8>> {
    let msg = parse(body)?;
    let content = msg.get("content")?.as_array()?;
    if msg.get("type").is_some_and(|t| t != "message") {
        return None;
    }
    let mut text = String::new();
    let mut calls = W::with_capacity(0);
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(str_of(block, "text")),
            Some("tool_use") => tool_call(
                &mut calls,
                str_of(block, "id"),
                str_of(block, "name"),
                &block
                    .get("input")
                    .map_or_else(|| "{}".into(), Value::to_string),
                None,
            ),
            // Thinking and server-tool blocks have no place in a chat completion.
            _ => {}
        }
    }
    let usage = msg.get("usage");
    let count = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let prompt = count("input_tokens")
        .saturating_add(count("cache_creation_input_tokens"))
        .saturating_add(count("cache_read_input_tokens"));
    let finish = finish_reason(msg.get("stop_reason").and_then(Value::as_str));
    let mut w = W::with_capacity(body.len() + 256);
    w.raw("{\"choices\":[{\"finish_reason\":")
        .str(finish)
        .raw(",\"index\":0,\"logprobs\":null,\"message\":{\"content\":");
    if text.is_empty() && !calls.0.is_empty() {
        w.raw("null");
    } else {
        w.str(&text);
    }
    w.raw(",\"role\":\"assistant\"");
    if !calls.0.is_empty() {
        w.raw(",\"tool_calls\":[");
        w.0.extend_from_slice(&calls.0);
        w.raw("]");
    }
    w.raw("}}],\"created\":0,\"id\":")
        .str(str_of(&msg, "id"))
        .raw(",\"model\":")
        .str(str_of(&msg, "model"))
        .raw(",\"object\":\"chat.completion\",\"usage\":");
    usage_value(
        &mut w,
        prompt,
        count("output_tokens"),
        count("cache_read_input_tokens"),
    );
    w.raw("}");
    Some(w.0)
}

/// The string at `key`, `""` when absent.
pub(super) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An OpenAI tool call (the full one, or a stream's first delta with `arguments` empty and
/// its `index`).
pub(super) fn tool_call(w: &mut W, id: &str, name: &str, arguments: &str, index: Option<u64>) {
    w.sep()
        .raw("{\"function\":{\"arguments\":")
        .str(arguments)
        .raw(",\"name\":")
        .str(name)
        .raw("},\"id\":")
        .str(id);
    if let Some(index) = index {
        w.raw(",\"index\":").num(index);
    }
    w.raw(",\"type\":\"function\"}");
}

/// OpenAI's `usage`: input (cached input included, as OpenAI counts it) and output tokens.
pub(super) fn usage_value(w: &mut W, prompt: u64, completion: u64, cached: u64) {
    w.raw("{\"completion_tokens\":")
        .num(completion)
        .raw(",\"prompt_tokens\":")
        .num(prompt)
        .raw(",\"prompt_tokens_details\":{\"cached_tokens\":")
        .num(cached)
        .raw("},\"total_tokens\":")
        .num(prompt.saturating_add(completion))
        .raw("}");
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`.
pub(super) fn finish_reason(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything newer.
        _ => "stop",
    }
}

/// Translates an Anthropic error body into OpenAI's error shape; a body that is not JSON
/// becomes the message (its first 512 bytes) of an error typed by `status`.
pub fn error(status: u16, body: &[u8]) -> Vec<u8> {
    let parsed = parse(body);
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = err.and_then(|e| e.get("type")).and_then(Value::as_str);
    let mut w = W::with_capacity(128);
    match err.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(m) => error_value(&mut w, status, kind, m),
        None => error_value(&mut w, status, kind, &fallback_message(status, body)),
    }
    w.0
}

/// `{"error":{..}}` for an Anthropic error of type `kind` (`None` when unknown).
pub(super) fn error_value(w: &mut W, status: u16, kind: Option<&str>, message: &str) {
    let (openai_type, code) = match kind {
        Some("authentication_error") => ("invalid_request_error", Some("invalid_api_key")),
        Some("rate_limit_error") => ("rate_limit_exceeded", Some("rate_limit_exceeded")),
        Some("billing_error") => ("insufficient_quota", Some("insufficient_quota")),
        Some(
            k @ ("invalid_request_error"
            | "not_found_error"
            | "permission_error"
            | "request_too_large"),
        ) => ("invalid_request_error", Some(k)),
        Some(k @ ("api_error" | "overloaded_error" | "timeout_error")) => ("server_error", Some(k)),
        k if status == 429 => ("rate_limit_exceeded", k),
        k if status >= 500 => ("server_error", k),
        k => ("invalid_request_error", k),
    };
    w.raw("{\"error\":{\"code\":");
    match code {
        Some(code) => w.str(code),
        None => w.raw("null"),
    };
    w.raw(",\"message\":")
        .str(message)
        .raw(",\"param\":null,\"type\":")
        .str(openai_type)
        .raw("}}");
}
/// The message for an error body that is not Anthropic's: its text, bounded, or the status.
fn fallback_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        let mut m = String::from("upstream answered HTTP ");
        m.push_str(&u64::from(status).to_string());
        return m;
    }
    let mut end = text.len().min(MESSAGE_CAP);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("").to_string()
}
