//! An OpenAI client served by an Anthropic upstream: the request OpenAI Chat Completions →
//! Anthropic Messages ([`request`]), the answer Anthropic → OpenAI: whole ([`response`]), an
//! error ([`error`]) or a stream event by event ([`Stream`]).
//!
//! Request mapping (OpenAI → Anthropic):
//!
//! | OpenAI | Anthropic |
//! |---|---|
//! | `system` / `developer` messages (anywhere) | top-level `system`, in order |
//! | `user` text / `image_url` parts | `user` text / `image` blocks (`data:` URL → base64 source, `http(s)` → url source) |
//! | `file` part with `file_data` (a `data:` URL) | `document` block, base64 source |
//! | assistant `content` + `tool_calls` | `assistant` text + `tool_use` blocks (`arguments` parsed; not an object → `{}`) |
//! | `tool` messages | `tool_result` blocks of one `user` message |
//! | consecutive messages of one role | merged into one message (Anthropic requires alternation) |
//! | `tools` (`function`) | `tools` (`name`, `description`, `input_schema`) |
//! | `tool_choice` auto / none / required / named | `auto` / `none` / `any` / `tool` |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use` |
//! | `max_completion_tokens`, else `max_tokens` | `max_tokens` (the upstream's default when absent) |
//! | `temperature` (0..2) | `temperature`, clamped to Anthropic's 0..1 (above 1 is a 400 there) |
//! | `top_p` | `top_p`, unless `temperature` is set too (current Claude models reject both: dropped) |
//! | `stop` (string or array) | `stop_sequences` |
//! | `stream`, `model` | kept (the model is rewritten later, by the fallback's rewrite) |
//! | `user` | `metadata.user_id` |
//!
//! Parameters with no equivalent:
//!
//! | OpenAI | Decision | Why |
//! |---|---|---|
//! | `n` > 1 | refused | Anthropic answers one choice: the client would get fewer than asked |
//! | `logprobs` / `top_logprobs` | refused | Anthropic has no log probabilities |
//! | `response_format` `json_schema` | refused | the client parses the answer against its schema; prose would break it |
//! | `response_format` `json_object` | dropped | the prompt must already ask for JSON (OpenAI requires it), which Claude follows |
//! | `audio`, `input_audio` parts, `file_id` parts | refused | no audio; files by id live at OpenAI |
//! | `presence_penalty`, `frequency_penalty`, `seed`, `logit_bias`, `stream_options`, `store`, `metadata`, `service_tier`, `reasoning_effort`, `prediction`, `modalities`, `web_search_options`, `functions`, `function_call`, `top_p` beside `temperature` | dropped | sampling hints and bookkeeping: the answer stays valid without them |
//!
//! Every other unknown key is left out silently (Anthropic rejects unknown keys with a 400).

mod answer;
mod json;
mod stream;

pub use answer::{error, response};
pub use stream::{Stream, EVENT_CAP};

use json::{obj, parse, print, s};
use serde_json::{Map, Value};

use super::{Refused, Request};

/// Keys dropped when present (any value but `null`).
const DROPPED: [&str; 13] = [
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "stream_options",
    "store",
    "metadata",
    "service_tier",
    "reasoning_effort",
    "prediction",
    "modalities",
    "web_search_options",
    "functions",
];

type Obj = Map<String, Value>;

/// Translates an OpenAI chat request into an Anthropic Messages request.
pub fn request(body: &[u8], default_max_tokens: u32) -> Result<Request, Refused> {
    let Some(Value::Object(req)) = parse(body) else {
        return Err(Refused::NotJson);
    };
    let Some(Value::Array(messages)) = req.get("messages") else {
        return Err(Refused::NotJson);
    };
    refuse_unsupported(&req)?;
    let mut dropped = Vec::new();
    for key in DROPPED {
        if present(&req, key) {
            dropped.push(key);
        }
    }
    if present(&req, "function_call") {
        dropped.push("function_call");
    }
    // `json_schema` was refused above; `text` is the default.
    let format = req.get("response_format").and_then(|f| f.get("type"));
    if format.and_then(Value::as_str) == Some("json_object") {
        dropped.push("response_format");
    }
    let mut out = Obj::new();
    if let Some(model) = req.get("model") {
        out.insert("model".into(), model.clone());
    }
    let (system, turns) = messages_of(messages)?;
    if !system.is_empty() {
        out.insert("system".into(), system_value(system));
    }
    out.insert("messages".into(), Value::Array(turns));
    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.get(*k).and_then(Value::as_u64))
        .filter(|&m| m > 0)
        .unwrap_or(u64::from(default_max_tokens));
    out.insert("max_tokens".into(), max.into());
    let temperature = req.get("temperature").and_then(Value::as_f64);
    if let Some(t) = temperature {
        out.insert("temperature".into(), Value::from(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.get("top_p").filter(|v| v.is_number()) {
        if temperature.is_some() {
            dropped.push("top_p");
        } else {
            out.insert("top_p".into(), p.clone());
        }
    }
    let stops: Vec<Value> = match req.get("stop") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(a)) => a
            .iter()
            .filter(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), obj(&mut [("user_id", s(user))]));
    }
    tools(&req, &mut out);
    let body = print(&Value::Object(out));
    Ok(Request {
        body,
        stream,
        dropped,
    })
}

/// A key set to anything but `null`.
fn present(req: &Obj, key: &str) -> bool {
    req.get(key).is_some_and(|v| !v.is_null())
}

fn refuse_unsupported(req: &Obj) -> Result<(), Refused> {
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(Refused::Unsupported("n > 1: Anthropic answers one choice"));
    }
    let top = req.get("top_logprobs").and_then(Value::as_u64);
    if req.get("logprobs").and_then(Value::as_bool) == Some(true) || top.is_some_and(|n| n > 0) {
        return Err(Refused::Unsupported("logprobs: Anthropic has none"));
    }
    let format = req.get("response_format").and_then(|f| f.get("type"));
    if format.and_then(Value::as_str) == Some("json_schema") {
        return Err(Refused::Unsupported(
            "response_format json_schema: Anthropic has no structured output mode",
        ));
    }
    if present(req, "audio") {
        return Err(Refused::Unsupported("audio output: Anthropic answers text"));
    }
    Ok(())
}

/// `(system texts, Anthropic messages)`.
fn messages_of(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), Refused> {
    let mut system = Vec::new();
    let mut turns: Vec<Value> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content");
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(content));
                continue;
            }
            "user" => ("user", user_blocks(content)?),
            "assistant" => ("assistant", assistant_blocks(m, content)),
            "tool" => ("user", vec![tool_result(m, content)]),
            _ => {
                return Err(Refused::Unsupported(
                    "a message role Anthropic has no equivalent of",
                ))
            }
        };
        if blocks.is_empty() {
            // Anthropic rejects a message without content; OpenAI allows an empty string.
            continue;
        }
        let last = turns
            .last_mut()
            .filter(|t| t.get("role").and_then(Value::as_str) == Some(role));
        match last
            .and_then(|t| t.get_mut("content"))
            .and_then(Value::as_array_mut)
        {
            Some(content) => content.extend(blocks),
            None => turns.push(obj(&mut [
                ("role", s(role)),
                ("content", Value::Array(blocks)),
            ])),
        }
    }
    Ok((system, turns))
}

/// One system text as a string, several as text blocks.
fn system_value(mut blocks: Vec<Value>) -> Value {
    if blocks.len() == 1 {
        if let Some(text) = blocks.pop().as_mut().and_then(|b| b.get_mut("text")) {
            return text.take();
        }
    }
    Value::Array(blocks)
}

fn text_block(text: &str) -> Value {
    obj(&mut [("type", s("text")), ("text", s(text))])
}

/// The non-empty text of a string or of an array's `text` parts, as text blocks.
fn text_blocks(content: Option<&Value>) -> Vec<Value> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => vec![text_block(s)],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .filter(|t| !t.is_empty())
            .map(text_block)
            .collect(),
        _ => Vec::new(),
    }
}

fn user_blocks(content: Option<&Value>) -> Result<Vec<Value>, Refused> {
    let Some(Value::Array(parts)) = content else {
        return Ok(text_blocks(content));
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        let field = |k: &str| part.get(k);
        match field("type").and_then(Value::as_str) {
            Some("text") => {
                let text = field("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    blocks.push(text_block(text));
                }
            }
            Some("image_url") => {
                let url = field("image_url")
                    .and_then(|i| i.get("url"))
                    .and_then(Value::as_str);
                blocks.push(obj(&mut [
                    ("type", s("image")),
                    ("source", source(url.unwrap_or(""))?),
                ]));
            }
            Some("file") => {
                let data = field("file")
                    .and_then(|f| f.get("file_data"))
                    .and_then(Value::as_str);
                let Some(data) = data.filter(|d| d.starts_with("data:")) else {
                    return Err(Refused::Unsupported(
                        "a file part by id: files live at OpenAI",
                    ));
                };
                blocks.push(obj(&mut [
                    ("type", s("document")),
                    ("source", source(data)?),
                ]));
            }
            _ => {
                return Err(Refused::Unsupported(
                    "a content part Anthropic has no equivalent of",
                ))
            }
        }
    }
    Ok(blocks)
}

/// An image or document source: a base64 `data:` URL or an `http(s)` URL.
fn source(url: &str) -> Result<Value, Refused> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((media_type, data)) = rest.split_once(";base64,") else {
            return Err(Refused::Unsupported("a data: URL that is not base64"));
        };
        return Ok(obj(&mut [
            ("type", s("base64")),
            ("media_type", s(media_type)),
            ("data", s(data)),
        ]));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(obj(&mut [("type", s("url")), ("url", s(url))]));
    }
    Err(Refused::Unsupported(
        "an image URL that is neither data: nor http(s)",
    ))
}

fn assistant_blocks(m: &Value, content: Option<&Value>) -> Vec<Value> {
    let mut blocks = text_blocks(content);
    let calls = m.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let function = call.get("function");
        let field = |k: &str| function.and_then(|f| f.get(k)).and_then(Value::as_str);
        let input = match serde_json::from_str::<Value>(field("arguments").unwrap_or("")) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::Object(Obj::new()),
        };
        blocks.push(obj(&mut [
            ("type", s("tool_use")),
            (
                "id",
                s(call.get("id").and_then(Value::as_str).unwrap_or("")),
            ),
            ("name", s(field("name").unwrap_or(""))),
            ("input", input),
        ]));
    }
    blocks
}

fn tool_result(m: &Value, content: Option<&Value>) -> Value {
    let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
    let content = match content {
        Some(Value::String(s)) => Value::String(s.clone()),
        c => Value::Array(text_blocks(c)),
    };
    obj(&mut [
        ("type", s("tool_result")),
        ("tool_use_id", s(id)),
        ("content", content),
    ])
}

/// `tools` and `tool_choice` (with `parallel_tool_calls: false`).
fn tools(req: &Obj, out: &mut Obj) {
    let defs = req.get("tools").and_then(Value::as_array);
    let tools: Vec<Value> = defs
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut tool = Obj::new();
            tool.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                tool.insert("description".into(), d.clone());
            }
            let schema = f.get("parameters").filter(|p| p.is_object()).cloned();
            let schema = schema
                .unwrap_or_else(|| obj(&mut [("type", s("object")), ("properties", obj(&mut []))]));
            tool.insert("input_schema".into(), schema);
            Value::Object(tool)
        })
        .collect();
    if tools.is_empty() {
        return;
    }
    out.insert("tools".into(), Value::Array(tools));
    let kind = |k: &str| obj(&mut [("type", s(k))]);
    let mut choice = match req.get("tool_choice") {
        Some(Value::String(c)) if c == "none" => kind("none"),
        Some(Value::String(c)) if c == "required" => kind("any"),
        Some(Value::Object(c)) => match c.get("function").and_then(|f| f.get("name")) {
            Some(name) => obj(&mut [("type", s("tool")), ("name", name.clone())]),
            None => kind("auto"),
        },
        _ => kind("auto"),
    };
    let serial = req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    let none = choice.get("type").and_then(Value::as_str) == Some("none");
    if serial && !none {
        if let Some(c) = choice.as_object_mut() {
            c.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    out.insert("tool_choice".into(), choice);
}
