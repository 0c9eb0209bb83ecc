//! An Anthropic client served by an OpenAI upstream: the request Anthropic Messages → OpenAI
//! Chat Completions, the answer (JSON, stream, error) OpenAI → Anthropic.
//!
//! Written from the two public API references (Anthropic "Messages" and "Streaming
//! Messages"; OpenAI "Chat Completions" create, chunk object and errors). The request is read
//! into a `serde_json::Value` and a new OpenAI object is built from the fields known here;
//! anything else in the request is ignored. The answer side lives in [`answer`] (JSON and
//! errors) and [`stream`] (SSE, event by event).
//!
//! | Anthropic request | OpenAI request |
//! |---|---|
//! | `model` | `model`, as is (the upstream's `rewrite.model` applies after translation) |
//! | `system` (string or text blocks, joined by `\n`) | a leading `system` message |
//! | `user` / `assistant` messages, string content | the same roles, string content |
//! | `text` block | `text` part (assistant: the texts joined into `content`) |
//! | `image` block, `base64` source | `image_url` part with a `data:<media_type>;base64,` URL |
//! | `image` block, `url` source | `image_url` part with that URL |
//! | assistant `tool_use` block | `tool_calls[]` entry, `input` as the `arguments` JSON string |
//! | user `tool_result` block | a `tool` message before the rest of that user turn (OpenAI wants tool answers right after the call); text content joined by `\n`, `is_error` as an `Error: ` prefix |
//! | `tools[]` (`name`, `description`, `input_schema`) | `function` tools (`parameters` = `input_schema`) |
//! | `tool_choice` `auto` / `any` / `tool` / `none` | `auto` / `required` / named function / `none`; only sent with tools (OpenAI rejects it without) |
//! | `tool_choice.disable_parallel_tool_use` | `parallel_tool_calls: false` |
//! | `max_tokens` | `max_completion_tokens` (below) |
//! | `temperature`, `top_p` | the same (Anthropic's 0–1 temperature range lies inside OpenAI's 0–2) |
//! | `stop_sequences` | `stop` |
//! | `stream` | `stream`, plus `stream_options.include_usage` so the stream's usage can be told |
//! | `metadata.user_id` | `user` |
//!
//! `max_tokens` becomes `max_completion_tokens`: OpenAI deprecated `max_tokens` and its
//! reasoning models (o-series, gpt-5) reject it with a 400, while every current model takes
//! `max_completion_tokens`; Azure OpenAI takes it from API version 2024-09-01-preview (GA
//! 2024-10-21), so an Azure fallback needs an `api-version` at least that recent.
//!
//! Parameters with no equivalent, one decision each:
//!
//! | Anthropic | Decision | Why |
//! |---|---|---|
//! | `thinking` `enabled` | dropped, listed | The answer stays complete and valid without thinking blocks; OpenAI's `reasoning_effort` exists only on reasoning models and is a 400 on the others, so there is nothing safe to send. Refusing would take the fallback away from every client that turns thinking on. `disabled` is the default and is not listed. |
//! | `thinking` / `redacted_thinking` blocks in the history | dropped, listed as `thinking` | Signed Anthropic reasoning that OpenAI cannot read back. |
//! | `top_k` | dropped, listed | OpenAI has no top-k sampling; it narrows sampling, it does not change what is asked. |
//! | `service_tier` | dropped, listed | The tiers are named differently and mean different things. |
//! | `tools[].strict` | dropped, listed | OpenAI's strict mode demands a schema subset (every property required, no extra properties) and answers other schemas with a 400. |
//! | `cache_control` | ignored silently | A caching hint; OpenAI caches prompts on its own. |
//! | more than 4 `stop_sequences` | refused | OpenAI takes at most 4; dropping some would let the answer run past a stop the client set. |
//! | server tools (`tools[].type` other than `custom`: web search, code execution, bash, ...) | refused | They run on Anthropic's side; OpenAI cannot run them. |
//! | `document`, `search_result` and other blocks not listed above; images in a `tool_result` | refused | Not expressible in Chat Completions messages (tool messages take text only). |
//! | `mcp_servers`, `container` | refused | Anthropic-hosted features. |
//!
//! An assistant message last in the list (Anthropic's "prefill") is sent as an assistant
//! message: OpenAI answers after it rather than continuing it.

mod answer;
pub(super) mod json;
mod stream;
mod tools;

pub use answer::{error, response};
pub use stream::{Stream, EVENT_CAP};

use serde_json::Value;

use super::{Refused, Request};
use json::{parse, str_of, W};
use tools::{tool, tool_choice};

/// OpenAI's limit on `stop`.
const MAX_STOP: usize = 4;

/// Translates an Anthropic Messages request body into an OpenAI Chat Completions one.
pub fn request(body: &[u8]) -> Result<Request, Refused> {
    let Some(Value::Object(req)) = parse(body) else {
        return Err(Refused::NotJson);
    };
    for (key, what) in [
        ("mcp_servers", "mcp_servers has no OpenAI equivalent"),
        ("container", "container has no OpenAI equivalent"),
    ] {
        if req.get(key).is_some_and(|v| !v.is_null()) {
            return Err(Refused::Unsupported(what));
        }
    }
    let mut dropped = Vec::new();
    let mut w = W::with_capacity(body.len() + 128);
    w.raw("{");
    if let Some(model) = req.get("model") {
        w.key("model").value(model);
    }

    w.key("messages").raw("[");
    if let Some(system) = req.get("system").filter(|v| !v.is_null()) {
        let text = joined_text(system, "\n").ok_or(Refused::NotJson)?;
        w.sep()
            .raw(r#"{"role":"system","content":"#)
            .str(&text)
            .raw("}");
    }
    let Some(Value::Array(list)) = req.get("messages") else {
        return Err(Refused::NotJson);
    };
    for m in list {
        let content = m.get("content").ok_or(Refused::NotJson)?;
        match str_of(m, "role") {
            Some("user") => user_turn(content, &mut w)?,
            Some("assistant") => assistant_turn(content, &mut w, &mut dropped)?,
            _ => return Err(Refused::NotJson),
        }
    }
    w.raw("]");

    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        if !tools.is_empty() {
            w.key("tools").raw("[");
            for t in tools {
                tool(t, &mut w, &mut dropped)?;
            }
            w.raw("]");
            if let Some(choice) = req.get("tool_choice").filter(|v| !v.is_null()) {
                tool_choice(choice, &mut w)?;
            }
        }
    }

    for (from, to) in [
        ("max_tokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
    ] {
        if let Some(n) = req.get(from).filter(|v| v.is_number()) {
            w.key(to).value(n);
        }
    }
    if let Some(Value::Array(stops)) = req.get("stop_sequences") {
        if stops.len() > MAX_STOP {
            return Err(Refused::Unsupported(
                "more than 4 stop_sequences (OpenAI takes at most 4)",
            ));
        }
        if !stops.is_empty() {
            w.key("stop").raw("[");
            for stop in stops {
                w.sep().value(stop);
            }
            w.raw("]");
        }
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        w.key("stream")
            .raw(r#"true,"stream_options":{"include_usage":true}"#);
    }
    if let Some(user) = req.get("metadata").and_then(|m| str_of(m, "user_id")) {
        w.key("user").str(user);
    }
    w.raw("}");

    if req.get("thinking").and_then(|t| str_of(t, "type")) == Some("enabled") {
        note(&mut dropped, "thinking");
    }
    for key in ["top_k", "service_tier"] {
        if req.get(key).is_some_and(|v| !v.is_null()) {
            note(&mut dropped, key);
        }
    }

    Ok(Request {
        body: w.0,
        stream,
        usage_chunk: false,
        dropped,
    })
}

/// Lists `what` once.
fn note(dropped: &mut Vec<&'static str>, what: &'static str) {
    if !dropped.contains(&what) {
        dropped.push(what);
    }
}

/// A string, or the `text` of an array of text blocks joined by `sep`; `None` for any other
/// shape (an image where only text can go).
fn joined_text(v: &Value, sep: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(blocks) => {
            let mut text = String::new();
            for (i, b) in blocks.iter().enumerate() {
                if str_of(b, "type") != Some("text") {
                    return None;
                }
                if i > 0 {
                    text.push_str(sep);
                }
                text.push_str(str_of(b, "text")?);
            }
            Some(text)
        }
        _ => None,
    }
}

const UNSUPPORTED_BLOCK: Refused =
    Refused::Unsupported("a content block type OpenAI Chat Completions cannot carry");

/// A user turn: its `tool_result` blocks as `tool` messages first, then the rest as one user
/// message (none when nothing is left).
fn user_turn(content: &Value, w: &mut W) -> Result<(), Refused> {
    let blocks = match content {
        Value::String(text) => {
            w.sep()
                .raw(r#"{"role":"user","content":"#)
                .str(text)
                .raw("}");
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(Refused::NotJson),
    };
    let mut parts = 0;
    for b in blocks {
        match str_of(b, "type") {
            Some("text" | "image") => parts += 1,
            Some("tool_result") => tool_message(b, w)?,
            _ => return Err(UNSUPPORTED_BLOCK),
        }
    }
    if parts == 0 {
        return Ok(());
    }
    w.sep().raw(r#"{"role":"user","content":["#);
    for b in blocks {
        match str_of(b, "type") {
            Some("text") => {
                let text = str_of(b, "text").ok_or(Refused::NotJson)?;
                w.sep().raw(r#"{"type":"text","text":"#).str(text).raw("}");
            }
            Some("image") => image(b, w)?,
            _ => {}
        }
    }
    w.raw("]}");
    Ok(())
}

/// An `image` block as an `image_url` part.
fn image(block: &Value, w: &mut W) -> Result<(), Refused> {
    let source = block.get("source").ok_or(Refused::NotJson)?;
    w.sep().raw(r#"{"type":"image_url","image_url":{"url":"#);
    match str_of(source, "type") {
        Some("base64") => {
            let media = str_of(source, "media_type").ok_or(Refused::NotJson)?;
            let data = str_of(source, "data").ok_or(Refused::NotJson)?;
            let mut url = String::with_capacity(media.len() + data.len() + 13);
            for piece in ["data:", media, ";base64,", data] {
                url.push_str(piece);
            }
            w.str(&url);
        }
        Some("url") => {
            w.str(str_of(source, "url").ok_or(Refused::NotJson)?);
        }
        _ => return Err(UNSUPPORTED_BLOCK),
    }
    w.raw("}}");
    Ok(())
}

/// A `tool_result` block as a `tool` message.
fn tool_message(block: &Value, w: &mut W) -> Result<(), Refused> {
    let id = str_of(block, "tool_use_id").ok_or(Refused::NotJson)?;
    let mut text = match block.get("is_error").and_then(Value::as_bool) {
        Some(true) => String::from("Error: "),
        _ => String::new(),
    };
    match block.get("content") {
        None | Some(Value::Null) => {}
        Some(c) => text.push_str(&joined_text(c, "\n").ok_or(UNSUPPORTED_BLOCK)?),
    }
    w.sep().raw(r#"{"role":"tool","tool_call_id":"#).str(id);
    w.raw(r#","content":"#).str(&text).raw("}");
    Ok(())
}

/// An assistant turn: its texts joined into `content`, its `tool_use` blocks as `tool_calls`.
fn assistant_turn(
    content: &Value,
    w: &mut W,
    dropped: &mut Vec<&'static str>,
) -> Result<(), Refused> {
    let blocks = match content {
        Value::String(text) => {
            w.sep()
                .raw(r#"{"role":"assistant","content":"#)
                .str(text)
                .raw("}");
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(Refused::NotJson),
    };
    let mut text: Option<String> = None;
    let mut calls = 0;
    for b in blocks {
        match str_of(b, "type") {
            Some("text") => {
                let t = str_of(b, "text").ok_or(Refused::NotJson)?;
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => calls += 1,
            Some("thinking" | "redacted_thinking") => note(dropped, "thinking"),
            _ => return Err(UNSUPPORTED_BLOCK),
        }
    }
    if text.is_none() && calls == 0 {
        // Only thinking: nothing OpenAI can read; an empty assistant turn would be a 400.
        return Ok(());
    }
    w.sep().raw(r#"{"role":"assistant","content":"#);
    match &text {
        Some(t) => w.str(t),
        None => w.raw("null"),
    };
    if calls > 0 {
        w.raw(r#","tool_calls":["#);
        for b in blocks
            .iter()
            .filter(|b| str_of(b, "type") == Some("tool_use"))
        {
            let (Some(id), Some(name)) = (str_of(b, "id"), str_of(b, "name")) else {
                return Err(Refused::NotJson);
            };
            // `Value`'s printing is the writer's (`W::value` writes what it prints).
            let args = b.get("input").map_or_else(|| "{}".into(), Value::to_string);
            w.sep().raw(r#"{"id":"#).str(id);
            w.raw(r#","type":"function","function":{"name":"#).str(name);
            w.raw(r#","arguments":"#).str(&args).raw("}}");
        }
        w.raw("]");
    }
    w.raw("}");
    Ok(())
}
