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
//! | `stream_options.include_usage` | honoured: the translated stream ends with the usage chunk only then ([`Request::usage_chunk`]) |
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
//! | `presence_penalty`, `frequency_penalty`, `seed`, `logit_bias`, `store`, `metadata`, `service_tier`, `reasoning_effort`, `prediction`, `modalities`, `web_search_options`, `functions`, `function_call`, `top_p` beside `temperature` | dropped | sampling hints and bookkeeping: the answer stays valid without them |
//!
//! Every other unknown key is left out silently (Anthropic rejects unknown keys with a 400).

mod answer;
mod stream;

pub use answer::{error, response};
pub use stream::{Stream, EVENT_CAP};

use serde_json::{Map, Value};

use super::to_openai::json::{parse, W};
use super::{Refused, Request};

/// Keys dropped when present (any value but `null`).
const DROPPED: [&str; 12] = [
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
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
///
/// The body is written as JSON text with its keys in sorted order, as a `serde_json::Value`
/// object prints them (the translation built one until it was written directly, which saved
/// the tree's construction code in the wasm).
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
    if response_format(&req) == Some("json_object") {
        dropped.push("response_format");
    }
    let mut w = W::with_capacity(body.len() + 128);
    let max = (req.get("max_completion_tokens").and_then(Value::as_u64))
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
        .filter(|&m| m > 0)
        .unwrap_or(u64::from(default_max_tokens));
    w.raw("{").key("max_tokens").num(max);
    w.key("messages").raw("[");
    let system = messages_of(messages, &mut w)?;
    w.raw("]");
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        w.key("metadata").raw("{\"user_id\":").str(user).raw("}");
    }
    if let Some(model) = req.get("model") {
        w.key("model").value(model);
    }
    // A single string is kept as it is; in an array, blank stops are left out.
    let stop = req.get("stop");
    let single = matches!(stop, Some(Value::String(_)));
    let stops = match stop {
        Some(s @ Value::String(_)) => std::slice::from_ref(s),
        Some(Value::Array(a)) => a.as_slice(),
        _ => &[],
    };
    let mut open = false;
    for s in stops {
        if single || s.as_str().is_some_and(|s| !s.trim().is_empty()) {
            if !open {
                w.key("stop_sequences").raw("[");
                open = true;
            }
            w.sep().value(s);
        }
    }
    if open {
        w.raw("]");
    }
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let usage_chunk = stream
        && req
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
    if stream {
        w.key("stream").raw("true");
    }
    match system.as_slice() {
        [] => {}
        [one] => {
            w.key("system").str(one);
        }
        all => {
            w.key("system").raw("[");
            for text in all {
                text_block(&mut w, text);
            }
            w.raw("]");
        }
    }
    let temperature = req.get("temperature").and_then(Value::as_f64);
    if let Some(t) = temperature {
        w.key("temperature").value(&Value::from(t.clamp(0.0, 1.0)));
    }
    tools(&req, &mut w);
    if let Some(p) = req.get("top_p").filter(|v| v.is_number()) {
        if temperature.is_some() {
            dropped.push("top_p");
        } else {
            w.key("top_p").value(p);
        }
    }
    w.raw("}");
    Ok(Request {
        body: w.0,
        stream,
        usage_chunk,
        dropped,
    })
}

/// A key set to anything but `null`.
fn present(req: &Obj, key: &str) -> bool {
    req.get(key).is_some_and(|v| !v.is_null())
}

fn response_format(req: &Obj) -> Option<&str> {
    req.get("response_format")?.get("type")?.as_str()
}

fn refuse_unsupported(req: &Obj) -> Result<(), Refused> {
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(Refused::Unsupported("n > 1: Anthropic answers one choice"));
    }
    let top = req.get("top_logprobs").and_then(Value::as_u64);
    if req.get("logprobs").and_then(Value::as_bool) == Some(true) || top.is_some_and(|n| n > 0) {
        return Err(Refused::Unsupported("logprobs: Anthropic has none"));
    }
    if response_format(req) == Some("json_schema") {
        return Err(Refused::Unsupported(
            "response_format json_schema: Anthropic has no structured output mode",
        ));
    }
    if present(req, "audio") {
        return Err(Refused::Unsupported("audio output: Anthropic answers text"));
    }
    Ok(())
}

/// Writes the Anthropic messages (consecutive turns of one role merged, as Anthropic requires
/// alternation) and returns the system texts.
fn messages_of<'a>(messages: &'a [Value], w: &mut W) -> Result<Vec<&'a str>, Refused> {
    let mut system = Vec::new();
    let mut open: Option<&str> = None;
    let mut blocks = W::with_capacity(256);
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content");
        blocks.0.clear();
        let role = match role {
            "system" | "developer" => {
                text_parts(content, &mut |t| system.push(t));
                continue;
            }
            "user" => {
                user_blocks(content, &mut blocks)?;
                "user"
            }
            "assistant" => {
                assistant_blocks(m, content, &mut blocks);
                "assistant"
            }
            "tool" => {
                tool_result(m, content, &mut blocks);
                "user"
            }
            _ => {
                return Err(Refused::Unsupported(
                    "a message role Anthropic has no equivalent of",
                ))
            }
        };
        if blocks.0.is_empty() {
            // Anthropic rejects a message without content; OpenAI allows an empty string.
            continue;
        }
        if open != Some(role) {
            close_turn(w, open);
            w.sep().raw("{\"content\":[");
            open = Some(role);
        } else {
            w.0.push(b',');
        }
        w.0.extend_from_slice(&blocks.0);
    }
    close_turn(w, open);
    Ok(system)
}

/// Ends the turn being written (`{"content":[..],"role":..}`).
fn close_turn(w: &mut W, role: Option<&str>) {
    if let Some(role) = role {
        w.raw("],\"role\":").str(role).raw("}");
    }
}

fn text_block(w: &mut W, text: &str) {
    w.sep()
        .raw("{\"text\":")
        .str(text)
        .raw(",\"type\":\"text\"}");
}

/// The non-empty text of a string or of an array's `text` parts.
fn text_parts<'a>(content: Option<&'a Value>, each: &mut dyn FnMut(&'a str)) {
    match content {
        Some(Value::String(s)) if !s.is_empty() => each(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        each(t);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The non-empty text of a string or of an array's `text` parts, as text blocks.
fn text_blocks(content: Option<&Value>, w: &mut W) {
    text_parts(content, &mut |t| text_block(w, t));
}

fn user_blocks(content: Option<&Value>, w: &mut W) -> Result<(), Refused> {
    let Some(Value::Array(parts)) = content else {
        text_blocks(content, w);
        return Ok(());
    };
    for part in parts {
        let field = |k: &str| part.get(k);
        match field("type").and_then(Value::as_str) {
            Some("text") => {
                let text = field("text").and_then(Value::as_str).unwrap_or("");
                if !text.is_empty() {
                    text_block(w, text);
                }
            }
            Some("image_url") => {
                let url = field("image_url")
                    .and_then(|i| i.get("url"))
                    .and_then(Value::as_str);
                w.sep().raw("{\"source\":");
                source(url.unwrap_or(""), w)?;
                w.raw(",\"type\":\"image\"}");
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
                w.sep().raw("{\"source\":");
                source(data, w)?;
                w.raw(",\"type\":\"document\"}");
            }
            _ => {
                return Err(Refused::Unsupported(
                    "a content part Anthropic has no equivalent of",
                ))
            }
        }
    }
    Ok(())
}

/// An image or document source: a base64 `data:` URL or an `http(s)` URL.
fn source(url: &str, w: &mut W) -> Result<(), Refused> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((media_type, data)) = rest.split_once(";base64,") else {
            return Err(Refused::Unsupported("a data: URL that is not base64"));
        };
        w.raw("{\"data\":")
            .str(data)
            .raw(",\"media_type\":")
            .str(media_type)
            .raw(",\"type\":\"base64\"}");
        return Ok(());
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        w.raw("{\"type\":\"url\",\"url\":").str(url).raw("}");
        return Ok(());
    }
    Err(Refused::Unsupported(
        "an image URL that is neither data: nor http(s)",
    ))
}

fn assistant_blocks(m: &Value, content: Option<&Value>, w: &mut W) {
    text_blocks(content, w);
    let calls = m.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let function = call.get("function");
        let field = |k: &str| function.and_then(|f| f.get(k)).and_then(Value::as_str);
        let id = call.get("id").and_then(Value::as_str).unwrap_or("");
        w.sep().raw("{\"id\":").str(id).raw(",\"input\":");
        match serde_json::from_str::<Value>(field("arguments").unwrap_or("")) {
            Ok(v @ Value::Object(_)) => w.value(&v),
            _ => w.raw("{}"),
        };
        w.raw(",\"name\":")
            .str(field("name").unwrap_or(""))
            .raw(",\"type\":\"tool_use\"}");
    }
}

fn tool_result(m: &Value, content: Option<&Value>, w: &mut W) {
    let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
    w.sep().raw("{\"content\":");
    match content {
        Some(Value::String(s)) => {
            w.str(s);
        }
        c => {
            w.raw("[");
            text_blocks(c, w);
            w.raw("]");
        }
    }
    w.raw(",\"tool_use_id\":")
        .str(id)
        .raw(",\"type\":\"tool_result\"}");
}

/// `tool_choice` and `tools` (with `parallel_tool_calls: false`), in that order.
fn tools(req: &Obj, w: &mut W) {
    let defs = req.get("tools").and_then(Value::as_array);
    let defs = defs.map_or(&[][..], Vec::as_slice);
    if !defs.iter().any(|t| t.get("function").is_some()) {
        return;
    }
    let serial = req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    w.key("tool_choice").raw("{");
    let (kind, name) = match req.get("tool_choice") {
        Some(Value::String(c)) if c == "none" => ("none", None),
        Some(Value::String(c)) if c == "required" => ("any", None),
        Some(Value::Object(c)) => match c.get("function").and_then(|f| f.get("name")) {
            Some(name) => ("tool", Some(name)),
            None => ("auto", None),
        },
        _ => ("auto", None),
    };
    if serial && kind != "none" {
        w.key("disable_parallel_tool_use").raw("true");
    }
    if let Some(name) = name {
        w.key("name").value(name);
    }
    w.key("type").str(kind).raw("}");
    w.key("tools").raw("[");
    for f in defs.iter().filter_map(|t| t.get("function")) {
        w.sep().raw("{");
        if let Some(d) = f.get("description").filter(|d| d.is_string()) {
            w.key("description").value(d);
        }
        w.key("input_schema");
        match f.get("parameters").filter(|p| p.is_object()) {
            Some(schema) => w.value(schema),
            None => w.raw("{\"properties\":{},\"type\":\"object\"}"),
        };
        w.key("name")
            .value(f.get("name").unwrap_or(&Value::Null))
            .raw("}");
    }
    w.raw("]");
}
