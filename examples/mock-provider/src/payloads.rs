//! Provider shapes: the JSON bodies OpenAI (Chat Completions, embeddings, models) and
//! Anthropic (Messages) answer with, their error bodies, and the request checks (Anthropic's,
//! and OpenAI's when switched on).
//! Written from the providers' public API references so that the official `openai` and
//! `anthropic` SDKs parse them as they parse the real thing; see the README for sources.

use std::io::Write;

use serde_json::Value;

/// Which API a path belongs to, which picks the shape of every body, errors included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Any path containing `/chat/completions` (OpenAI, Azure OpenAI).
    Chat,
    /// A path ending in `/v1/messages` (Anthropic).
    Messages,
    Embeddings,
    Models,
    Other,
}

impl Route {
    pub fn of(path: &str) -> Route {
        if path.contains("/chat/completions") {
            Route::Chat
        } else if path.ends_with("/v1/messages") {
            Route::Messages
        } else if path.ends_with("/embeddings") {
            Route::Embeddings
        } else if path.ends_with("/models") {
            Route::Models
        } else {
            Route::Other
        }
    }

    pub fn anthropic(self) -> bool {
        self == Route::Messages
    }
}

/// Input tokens reported in every `usage`.
pub const PROMPT_TOKENS: u32 = 5;

/// What one answer is about: the provider's name, the ids and the echoed model.
pub struct Answer<'a> {
    /// The provider name, already JSON-encoded.
    pub name_json: &'a str,
    pub name: &'a str,
    /// The request's `model`, JSON-encoded (`"mock-model"` when absent).
    pub model_json: &'a str,
    /// A number unique to this answer (ids).
    pub id: u64,
    /// Unix seconds (`created`).
    pub created: u64,
    /// The tool to call instead of answering text (see [`tool_to_call`]).
    pub tool: Option<&'a str>,
}

/// The tool a request makes the mock call: when it offers `tools` (and `tool_choice` is not
/// "none") and its last message is the user's (not a tool result), the first tool, or the
/// one `tool_choice` names. A real model chooses; the mock always calls, so tests know.
pub fn tool_to_call(route: Route, request: &Value) -> Option<String> {
    let tools = request.get("tools").and_then(Value::as_array)?;
    let choice = request.get("tool_choice");
    let last = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())?;
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    let name = if route.anthropic() {
        let is_result =
            |block: &Value| block.get("type").and_then(Value::as_str) == Some("tool_result");
        if last
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| blocks.iter().any(is_result))
        {
            return None;
        }
        match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
            Some("none") => return None,
            Some("tool") => choice.and_then(|c| c.get("name")),
            _ => tools.first().and_then(|t| t.get("name")),
        }
    } else {
        match choice {
            Some(Value::String(c)) if c == "none" => return None,
            Some(Value::Object(c)) => c.get("function").and_then(|f| f.get("name")),
            _ => tools
                .first()
                .and_then(|t| t.get("function"))
                .and_then(|f| f.get("name")),
        }
    };
    name.and_then(Value::as_str).map(str::to_owned)
}

/// The arguments of the mock's tool call, as JSON text: `{"query":"Hello from NAME"}`.
pub fn tool_arguments(name: &str) -> String {
    format!(
        r#"{{"query":{}}}"#,
        json_string(&format!("Hello from {name}"))
    )
}

/// The `i`-th of `n` pieces of the tool arguments (streamed as argument deltas).
pub fn tool_argument_piece(arguments: &str, n: u32, i: u32) -> &str {
    let n = usize::try_from(n.max(1)).unwrap_or(1);
    let size = arguments.len().div_ceil(n).max(1);
    let i = usize::try_from(i).unwrap_or(usize::MAX);
    let start = i.saturating_mul(size).min(arguments.len());
    let end = start.saturating_add(size).min(arguments.len());
    arguments.get(start..end).unwrap_or_default()
}

/// The `i`-th content piece: "Hello", " from", " NAME", then " 4", " 5", ... So three
/// pieces (the default) spell `Hello from NAME`, and N pieces are easy to check.
pub fn piece(name: &str, i: u32) -> String {
    match i {
        0 => "Hello".to_owned(),
        1 => " from".to_owned(),
        2 => format!(" {name}"),
        n => format!(" {}", u64::from(n) + 1),
    }
}

/// The whole text of an answer of `tokens` pieces.
pub fn text(name: &str, tokens: u32) -> String {
    (0..tokens).map(|i| piece(name, i)).collect()
}

fn json_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// A non-streamed OpenAI chat completion: text, or a tool call.
pub fn chat_completion(out: &mut Vec<u8>, a: &Answer<'_>, tokens: u32, usage: bool) {
    let (message, finish_reason) = match a.tool {
        Some(tool) => (
            format!(
                r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_mock_{}","type":"function","function":{{"name":{},"arguments":{}}}}}]}}"#,
                a.id,
                json_string(tool),
                json_string(&tool_arguments(a.name))
            ),
            "tool_calls",
        ),
        None => (
            format!(
                r#"{{"role":"assistant","content":{}}}"#,
                json_string(&text(a.name, tokens))
            ),
            "stop",
        ),
    };
    let _ = write!(
        out,
        r#"{{"id":"chatcmpl-mock-{}","object":"chat.completion","created":{},"model":{},"choices":[{{"index":0,"message":{message},"finish_reason":"{finish_reason}"}}]"#,
        a.id, a.created, a.model_json,
    );
    if usage {
        let _ = write!(
            out,
            r#","usage":{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{tokens},"total_tokens":{}}}"#,
            u64::from(PROMPT_TOKENS) + u64::from(tokens)
        );
    }
    out.push(b'}');
}

/// A non-streamed Anthropic message; `stop_reason` is `end_turn`, `tool_use` with a
/// `tool_use` block, or `refusal` with no content for `content_policy`.
pub fn message(out: &mut Vec<u8>, a: &Answer<'_>, tokens: u32, usage: bool, refusal: bool) {
    let (content, stop_reason, tokens) = if refusal {
        (String::new(), "refusal", 0)
    } else if let Some(tool) = a.tool {
        let block = format!(
            r#"{{"type":"tool_use","id":"toolu_mock_{}","name":{},"input":{}}}"#,
            a.id,
            json_string(tool),
            tool_arguments(a.name)
        );
        (block, "tool_use", tokens)
    } else {
        let block = format!(
            r#"{{"type":"text","text":{}}}"#,
            json_string(&text(a.name, tokens))
        );
        (block, "end_turn", tokens)
    };
    let _ = write!(
        out,
        r#"{{"id":"msg_mock_{}","type":"message","role":"assistant","model":{},"content":[{content}],"stop_reason":"{stop_reason}","stop_sequence":null"#,
        a.id, a.model_json,
    );
    if usage {
        let _ = write!(
            out,
            r#","usage":{{"input_tokens":{PROMPT_TOKENS},"output_tokens":{tokens}}}"#
        );
    }
    out.push(b'}');
}

pub fn embeddings(out: &mut Vec<u8>, a: &Answer<'_>, usage: bool) {
    let _ = write!(
        out,
        r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}}],"model":{}"#,
        a.model_json
    );
    if usage {
        out.extend_from_slice(br#","usage":{"prompt_tokens":3,"total_tokens":3}"#);
    }
    out.push(b'}');
}

pub fn models(out: &mut Vec<u8>, a: &Answer<'_>) {
    let _ = write!(
        out,
        r#"{{"object":"list","data":[{{"id":"mock-model","object":"model","created":1700000000,"owned_by":{0}}},{{"id":"gpt-4o-mini","object":"model","created":1700000000,"owned_by":{0}}}]}}"#,
        a.name_json
    );
}

pub fn other(out: &mut Vec<u8>, a: &Answer<'_>, path: &str) {
    let _ = write!(
        out,
        r#"{{"ok":true,"provider":{},"path":{}}}"#,
        a.name_json,
        json_string(path)
    );
}

// ---------------------------------------------------------------------------------------
// Errors

/// Anthropic's error envelope: `{"type":"error","error":{"type","message"}}`, plus
/// `"request_id"` in HTTP error bodies (`request_id: Some`), not in stream error events.
pub fn anthropic_error(
    out: &mut Vec<u8>,
    error_type: &str,
    message: &str,
    request_id: Option<u64>,
) {
    let _ = write!(
        out,
        r#"{{"type":"error","error":{{"type":{},"message":{}}}"#,
        json_string(error_type),
        json_string(message)
    );
    if let Some(id) = request_id {
        let _ = write!(out, r#","request_id":"req_mock_{id}""#);
    }
    out.push(b'}');
}

/// Anthropic's error `type` for an HTTP status, per its errors reference.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `error` mode. 529 answers Anthropic's `overloaded_error` on every path.
pub fn server_error(out: &mut Vec<u8>, route: Route, status: u16, id: u64) {
    if status == 529 {
        anthropic_error(out, "overloaded_error", "Overloaded", Some(id));
    } else if route.anthropic() {
        anthropic_error(
            out,
            anthropic_error_type(status),
            &format!("mock {status}"),
            Some(id),
        );
    } else {
        let _ = write!(
            out,
            r#"{{"error":{{"message":"mock {status}","type":"server_error","code":{status}}}}}"#
        );
    }
}

/// `status` mode. 529 answers Anthropic's `overloaded_error` on every path.
pub fn status_error(out: &mut Vec<u8>, route: Route, status: u16, id: u64) {
    if status == 529 || route.anthropic() {
        server_error(out, route, status, id);
    } else {
        let _ = write!(
            out,
            r#"{{"error":{{"message":"mock {status}","type":"invalid_request_error"}}}}"#
        );
    }
}

pub fn rate_limit(out: &mut Vec<u8>, route: Route, retry_after: u64, id: u64) {
    if route.anthropic() {
        anthropic_error(
            out,
            "rate_limit_error",
            &format!("Number of requests has exceeded your rate limit (mock). Please try again in {retry_after}s."),
            Some(id),
        );
    } else {
        let _ = write!(
            out,
            r#"{{"error":{{"message":"Rate limit reached for requests (mock). Please try again in {retry_after}s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}}}"#
        );
    }
}

pub const CREDIT_BALANCE_MESSAGE: &str = "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.";

/// OpenAI's 429 `insufficient_quota` body.
pub const OPENAI_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;

/// OpenAI's 400 `context_length_exceeded` body.
pub const OPENAI_CONTEXT_LENGTH: &str = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;

/// Anthropic's "prompt is too long" message (400 `invalid_request_error`).
pub const ANTHROPIC_CONTEXT_LENGTH: &str = "prompt is too long: 208310 tokens > 200000 maximum";

/// OpenAI's 400 `content_policy_violation` body.
pub const OPENAI_CONTENT_POLICY: &str = r#"{"error":{"message":"Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#;

/// Azure OpenAI's 400 `content_filter` body (prompt filtered).
pub const AZURE_CONTENT_FILTER: &str = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}}}"#;

/// The OpenAI error event of `stream_error`.
pub fn openai_stream_error(out: &mut Vec<u8>, error_type: &str) {
    let _ = write!(
        out,
        r#"{{"error":{{"message":"The server had an error while processing your request. Sorry about that!","type":{},"param":null,"code":null}}}}"#,
        json_string(error_type)
    );
}

/// The body of `large_error`: an HTML error page of exactly `bytes` bytes.
pub fn large_html(status: u16, bytes: u64) -> Vec<u8> {
    let title = format!("{status} {}", crate::reply::reason(status));
    let head = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1>\n<p>"
    );
    let tail = "</p></body></html>\n";
    let size = usize::try_from(bytes).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head.as_bytes());
    let filler = b"The upstream mock is failing with a deliberately large error page. ";
    let room = size.saturating_sub(body.len() + tail.len());
    body.extend(filler.iter().copied().cycle().take(room));
    body.extend_from_slice(tail.as_bytes());
    body.truncate(size);
    body
}

// ---------------------------------------------------------------------------------------
// Anthropic request validation

/// Top-level fields the Messages API accepts; anything else is rejected as the real API
/// does ("Extra inputs are not permitted"), which catches OpenAI-only fields such as
/// `stream_options`, `n` or `max_completion_tokens` left in a translated request.
pub const ANTHROPIC_FIELDS: [&str; 23] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "inference_geo",
    "cache_control",
    "speed",
    "diagnostics",
];

/// Checks a Messages request as the real API does; the error is the message of the 400
/// `invalid_request_error` to answer with.
pub fn validate_messages_request(body: Option<&Value>) -> Result<(), String> {
    let Some(object) = body.and_then(Value::as_object) else {
        return Err("Invalid request body: expected a JSON object (mock)".to_owned());
    };
    if let Some(missing) = ["model", "messages", "max_tokens"]
        .into_iter()
        .find(|key| !object.contains_key(*key))
    {
        return Err(format!("{missing}: Field required"));
    }
    if let Some(extra) = object
        .keys()
        .find(|key| !ANTHROPIC_FIELDS.contains(&key.as_str()))
    {
        return Err(format!("{extra}: Extra inputs are not permitted"));
    }
    if !object.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("max_tokens: Input should be a valid integer".to_owned());
    }
    let Some(messages) = object.get("messages").and_then(Value::as_array) else {
        return Err("messages: Input should be a valid list".to_owned());
    };
    for (i, message) in messages.iter().enumerate() {
        match message.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            Some("system") => {
                return Err("messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.".to_owned())
            }
            Some(other) => {
                return Err(format!(
                    "messages: Input tag '{other}' found using 'role' does not match any of the expected tags: 'user', 'assistant'"
                ))
            }
            None => return Err("messages: Field required: role".to_owned()),
        }
        anthropic_content(i, message)?;
    }
    anthropic_tool_pairs(messages)?;
    if let Some(system) = object.get("system") {
        let text_blocks = system.as_array().is_some_and(|blocks| {
            blocks.iter().all(|b| {
                b.get("type").and_then(Value::as_str) == Some("text")
                    && b.get("text").is_some_and(Value::is_string)
            })
        });
        if !system.is_string() && !text_blocks {
            return Err(
                "system: Input should be a valid string or a list of text blocks".to_owned(),
            );
        }
    }
    if let Some(t) = object.get("temperature") {
        match t.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => {}
            Some(_) => return Err("temperature: range: 0..1".to_owned()),
            None => return Err("temperature: Input should be a valid number".to_owned()),
        }
    }
    if let Some(stops) = object.get("stop_sequences") {
        if !stops
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
        {
            return Err("stop_sequences: Input should be a valid list of strings".to_owned());
        }
    }
    if let Some(tools) = object.get("tools") {
        let Some(tools) = tools.as_array() else {
            return Err("tools: Input should be a valid list".to_owned());
        };
        for (i, tool) in tools.iter().enumerate() {
            anthropic_tool(i, tool)?;
        }
    }
    if let Some(choice) = object.get("tool_choice") {
        let Some(c) = choice.as_object() else {
            return Err("tool_choice: Input should be a valid dictionary or object".to_owned());
        };
        match c.get("type").and_then(Value::as_str) {
            Some("auto" | "any" | "none") => {}
            Some("tool") if c.get("name").is_some_and(Value::is_string) => {}
            Some("tool") => return Err("tool_choice.tool.name: Field required".to_owned()),
            _ => {
                return Err("tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'".to_owned())
            }
        }
        if let Some(extra) = c
            .keys()
            .find(|k| !["type", "name", "disable_parallel_tool_use"].contains(&k.as_str()))
        {
            return Err(format!(
                "tool_choice.{extra}: Extra inputs are not permitted"
            ));
        }
    }
    Ok(())
}

/// Content block types a Messages request may carry.
const ANTHROPIC_BLOCKS: [&str; 9] = [
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "search_result",
    "server_tool_use",
];

/// Checks `messages[i].content`: a string, or blocks of the Messages API's types, each with
/// its required fields; `tool_use` only from the assistant, `tool_result` only from the user.
fn anthropic_content(i: usize, message: &Value) -> Result<(), String> {
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    let blocks = match message.get("content") {
        Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(blocks)) => blocks,
        Some(_) => {
            return Err(format!(
                "messages.{i}.content: Input should be a valid string or list"
            ))
        }
        None => return Err(format!("messages.{i}.content: Field required")),
    };
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("messages.{i}.content.{j}");
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        if !ANTHROPIC_BLOCKS.contains(&kind) {
            return Err(format!(
                "{at}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {}",
                ANTHROPIC_BLOCKS.map(|t| format!("'{t}'")).join(", ")
            ));
        }
        let string = |key: &str| block.get(key).is_some_and(Value::is_string);
        match kind {
            "text" if !string("text") => return Err(format!("{at}.text: Field required")),
            "image" => {
                let source = block.get("source");
                let source_type = source.and_then(|s| s.get("type")).and_then(Value::as_str);
                let has = |key: &str| {
                    source
                        .and_then(|s| s.get(key))
                        .is_some_and(Value::is_string)
                };
                let ok = match source_type {
                    Some("base64") => has("media_type") && has("data"),
                    Some("url") => has("url"),
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "{at}.image.source: Input should be a base64 source (media_type, data) or a url source"
                    ));
                }
            }
            "tool_use" if role != "assistant" => {
                return Err(format!(
                    "{at}: `tool_use` blocks may only appear in assistant messages"
                ))
            }
            "tool_use"
                if !(string("id")
                    && string("name")
                    && block.get("input").is_some_and(Value::is_object)) =>
            {
                return Err(format!(
                    "{at}.tool_use: id, name and an object input are required"
                ))
            }
            "tool_result" if role != "user" => {
                return Err(format!(
                    "{at}: `tool_result` blocks may only appear in user messages"
                ))
            }
            "tool_result" if !string("tool_use_id") => {
                return Err(format!("{at}.tool_result.tool_use_id: Field required"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The ids of the blocks of `kind` in a message (`id` for `tool_use`, `tool_use_id` for
/// `tool_result`).
fn block_ids<'a>(message: Option<&'a Value>, kind: &str, key: &str) -> Vec<&'a str> {
    message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
        .filter_map(|b| b.get(key).and_then(Value::as_str))
        .collect()
}

/// Every `tool_use` is answered by a `tool_result` in the next message, and every
/// `tool_result` answers a `tool_use` of the previous one, as the real API requires.
fn anthropic_tool_pairs(messages: &[Value]) -> Result<(), String> {
    for (i, message) in messages.iter().enumerate() {
        let uses = block_ids(Some(message), "tool_use", "id");
        let answered = block_ids(messages.get(i + 1), "tool_result", "tool_use_id");
        let missing: Vec<&str> = uses
            .iter()
            .copied()
            .filter(|id| !answered.contains(id))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                missing.join(", ")
            ));
        }
        let results = block_ids(Some(message), "tool_result", "tool_use_id");
        let previous = match i.checked_sub(1) {
            Some(p) => block_ids(messages.get(p), "tool_use", "id"),
            None => Vec::new(),
        };
        if let Some(orphan) = results.iter().find(|id| !previous.contains(id)) {
            return Err(format!(
                "messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: {orphan}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            ));
        }
    }
    Ok(())
}

/// A custom tool is `{name, description?, input_schema, ...}`; server tools (a `type` other
/// than `custom`) are not checked. An OpenAI tool (`{"type":"function","function":...}`)
/// fails here.
fn anthropic_tool(i: usize, tool: &Value) -> Result<(), String> {
    let Some(t) = tool.as_object() else {
        return Err(format!("tools.{i}: Input should be a valid dictionary"));
    };
    match t.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some("function") => {
            return Err(format!(
                "tools.{i}.custom.function: Extra inputs are not permitted"
            ))
        }
        Some(_) => return Ok(()),
    }
    if !t.get("name").is_some_and(Value::is_string) {
        return Err(format!("tools.{i}.custom.name: Field required"));
    }
    if !t.get("input_schema").is_some_and(Value::is_object) {
        return Err(format!("tools.{i}.custom.input_schema: Field required"));
    }
    let allowed = [
        "type",
        "name",
        "description",
        "input_schema",
        "cache_control",
        "strict",
    ];
    if let Some(extra) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "tools.{i}.custom.{extra}: Extra inputs are not permitted"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// OpenAI request validation (switched on with `POST /settings {"validate_openai":true}`)

/// Top-level fields Chat Completions accepts; anything else gets OpenAI's "Unrecognized
/// request argument supplied", which catches Anthropic-only fields (`system`,
/// `stop_sequences`, `top_k`, `thinking`, ...) left in a translated request.
pub const OPENAI_FIELDS: [&str; 35] = [
    "model",
    "messages",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
    "prompt_cache_retention",
];

/// Content part types of a Chat Completions message.
const OPENAI_PARTS: [&str; 5] = ["text", "image_url", "input_audio", "refusal", "file"];

/// OpenAI's 400 body for an invalid request.
pub fn openai_invalid_request(out: &mut Vec<u8>, message: &str) {
    let _ = write!(
        out,
        r#"{{"error":{{"message":{},"type":"invalid_request_error","param":null,"code":null}}}}"#,
        json_string(message)
    );
}

/// Checks a Chat Completions request as the real API does; the error is the message of the
/// 400 `invalid_request_error` to answer with.
pub fn validate_chat_request(body: Option<&Value>) -> Result<(), String> {
    let Some(object) = body.and_then(Value::as_object) else {
        return Err("We could not parse the JSON body of your request. (mock)".to_owned());
    };
    if !object.contains_key("model") {
        return Err("you must provide a model parameter".to_owned());
    }
    let Some(messages) = object.get("messages").and_then(Value::as_array) else {
        return Err("Missing required parameter: 'messages'.".to_owned());
    };
    if let Some(extra) = object
        .keys()
        .find(|key| !OPENAI_FIELDS.contains(&key.as_str()))
    {
        return Err(format!("Unrecognized request argument supplied: {extra}"));
    }
    if messages.is_empty() {
        return Err("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".to_owned());
    }
    if object.contains_key("stream_options") && object.get("stream") != Some(&Value::Bool(true)) {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".to_owned(),
        );
    }
    // The tool_call ids the next messages must answer, from the last assistant message.
    let mut pending: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "tool" && !pending.is_empty() {
            return Err(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                pending.join(", ")
            ));
        }
        match role {
            "system" | "developer" | "user" | "assistant" | "function" => {}
            "tool" => {
                let Some(id) = message.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(format!("Missing required parameter: 'messages[{i}].tool_call_id'."));
                };
                let Some(at) = pending.iter().position(|p| p == id) else {
                    return Err(format!("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'. (messages[{i}], tool_call_id {id})"));
                };
                pending.swap_remove(at);
            }
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ))
            }
        }
        match message.get("content") {
            None | Some(Value::Null) if role == "assistant" => {}
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                    if !OPENAI_PARTS.contains(&kind) {
                        return Err(format!(
                            "Invalid value: '{kind}'. Supported values are: 'text', 'image_url', 'input_audio', 'refusal', and 'file'. (messages[{i}].content[{j}].type)"
                        ));
                    }
                }
            }
            _ => return Err(format!("Invalid type for 'messages[{i}].content': expected a string or an array of content parts.")),
        }
        if role == "assistant" {
            for call in message
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ok = call.get("type").and_then(Value::as_str) == Some("function")
                    && call.get("id").is_some_and(Value::is_string)
                    && call.pointer("/function/name").is_some_and(Value::is_string)
                    && call
                        .pointer("/function/arguments")
                        .is_some_and(Value::is_string);
                if !ok {
                    return Err(format!("Invalid 'messages[{i}].tool_calls': each needs type 'function', an id, function.name and function.arguments (a string)."));
                }
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    pending.push(id.to_owned());
                }
            }
        }
    }
    if !pending.is_empty() {
        return Err(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            pending.join(", ")
        ));
    }
    if let Some(tools) = object.get("tools") {
        for (i, tool) in tools.as_array().into_iter().flatten().enumerate() {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!("Missing required parameter: 'tools[{i}].type'."));
            }
            if !tool.pointer("/function/name").is_some_and(Value::is_string) {
                return Err(format!(
                    "Missing required parameter: 'tools[{i}].function.name'."
                ));
            }
        }
    }
    if let Some(choice) = object.get("tool_choice") {
        let ok = match choice {
            Value::String(c) => ["none", "auto", "required"].contains(&c.as_str()),
            Value::Object(c) => {
                c.get("type").and_then(Value::as_str) == Some("function")
                    && choice
                        .pointer("/function/name")
                        .is_some_and(Value::is_string)
            }
            _ => false,
        };
        if !ok {
            return Err(format!("Invalid value for 'tool_choice': {choice}."));
        }
    }
    if let Some(t) = object.get("temperature") {
        if !t.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t)) {
            return Err(format!(
                "Invalid 'temperature': expected a number between 0 and 2, got {t}."
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// An answer from provider `openai` for model `gpt-4o-mini` (for other modules' tests).
    pub fn sample_answer() -> Answer<'static> {
        Answer {
            name_json: r#""openai""#,
            name: "openai",
            model_json: r#""gpt-4o-mini""#,
            id: 7,
            created: 1_700_000_000,
            tool: None,
        }
    }

    fn answer() -> Answer<'static> {
        sample_answer()
    }

    fn parse(out: &[u8]) -> Value {
        serde_json::from_slice(out).unwrap()
    }

    #[test]
    fn routes_pick_the_api_shape() {
        assert_eq!(Route::of("/v1/chat/completions"), Route::Chat);
        assert_eq!(
            Route::of("/openai/deployments/x/chat/completions"),
            Route::Chat
        );
        assert_eq!(Route::of("/v1/messages"), Route::Messages);
        assert_eq!(Route::of("/anthropic/v1/messages"), Route::Messages);
        assert_eq!(Route::of("/v1/embeddings"), Route::Embeddings);
        assert_eq!(Route::of("/v1/models"), Route::Models);
        assert_eq!(Route::of("/alerts"), Route::Other);
    }

    #[test]
    fn pieces_spell_the_greeting_then_count() {
        assert_eq!(text("openai", 3), "Hello from openai");
        assert_eq!(text("openai", 5), "Hello from openai 4 5");
        assert_eq!(text("openai", 1), "Hello");
        assert_eq!(text("openai", 0), "");
    }

    #[test]
    fn non_streamed_bodies_have_the_documented_fields_and_usage() {
        let mut out = Vec::new();
        chat_completion(&mut out, &answer(), 3, true);
        let v = parse(&out);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "chatcmpl-mock-7");
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello from openai");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens":5,"completion_tokens":3,"total_tokens":8})
        );

        out.clear();
        message(&mut out, &answer(), 4, true, false);
        let v = parse(&out);
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(
            v["content"],
            json!([{"type":"text","text":"Hello from openai 4"}])
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["stop_sequence"], Value::Null);
        assert_eq!(v["usage"], json!({"input_tokens":5,"output_tokens":4}));

        out.clear();
        message(&mut out, &answer(), 4, false, true);
        let v = parse(&out);
        assert_eq!(v["stop_reason"], "refusal");
        assert_eq!(v["content"], json!([]));
        assert!(v.get("usage").is_none());

        out.clear();
        chat_completion(&mut out, &answer(), 3, false);
        assert!(parse(&out).get("usage").is_none());
        out.clear();
        embeddings(&mut out, &answer(), true);
        assert_eq!(parse(&out)["usage"]["prompt_tokens"], 3);
        out.clear();
        models(&mut out, &answer());
        assert_eq!(parse(&out)["data"][0]["owned_by"], "openai");
        out.clear();
        other(&mut out, &answer(), "/x\"y");
        assert_eq!(parse(&out)["path"], "/x\"y");
    }

    #[test]
    fn tool_calls_answer_requests_offering_tools_to_the_user() {
        let openai_req = json!({"tools":[{"type":"function","function":{"name":"get_weather"}},
            {"type":"function","function":{"name":"other"}}],
            "messages":[{"role":"user","content":"hi"}]});
        assert_eq!(
            tool_to_call(Route::Chat, &openai_req).as_deref(),
            Some("get_weather")
        );
        let mut named = openai_req.clone();
        named["tool_choice"] = json!({"type":"function","function":{"name":"other"}});
        assert_eq!(tool_to_call(Route::Chat, &named).as_deref(), Some("other"));
        let mut none = openai_req.clone();
        none["tool_choice"] = json!("none");
        assert_eq!(tool_to_call(Route::Chat, &none), None);
        let mut answered = openai_req.clone();
        answered["messages"] = json!([{"role":"user","content":"hi"},
            {"role":"assistant","tool_calls":[]},{"role":"tool","tool_call_id":"c","content":"9"}]);
        assert_eq!(tool_to_call(Route::Chat, &answered), None);
        assert_eq!(
            tool_to_call(Route::Chat, &json!({"messages":[{"role":"user"}]})),
            None
        );

        let anthropic_req = json!({"tools":[{"name":"get_weather","input_schema":{}}],
            "messages":[{"role":"user","content":"hi"}]});
        assert_eq!(
            tool_to_call(Route::Messages, &anthropic_req).as_deref(),
            Some("get_weather")
        );
        let mut result = anthropic_req.clone();
        result["messages"] = json!([{"role":"user","content":[
            {"type":"tool_result","tool_use_id":"t","content":"9"}]}]);
        assert_eq!(tool_to_call(Route::Messages, &result), None);

        let mut a = answer();
        a.tool = Some("get_weather");
        let mut out = Vec::new();
        chat_completion(&mut out, &a, 3, true);
        let v = parse(&out);
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"query":"Hello from openai"}));
        out.clear();
        message(&mut out, &a, 3, true, false);
        let v = parse(&out);
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(
            v["content"][0],
            json!({"type":"tool_use","id":"toolu_mock_7","name":"get_weather",
                   "input":{"query":"Hello from openai"}})
        );
    }

    #[test]
    fn tool_argument_pieces_join_back_to_the_arguments() {
        let args = tool_arguments("openai");
        for n in [1, 2, 3, 7, 100] {
            let joined: String = (0..n).map(|i| tool_argument_piece(&args, n, i)).collect();
            assert_eq!(joined, args, "{n} pieces");
        }
        assert_eq!(tool_argument_piece(&args, 0, 0), args);
    }

    #[test]
    fn error_bodies_follow_the_path_shape() {
        let mut out = Vec::new();
        server_error(&mut out, Route::Chat, 500, 1);
        assert_eq!(
            parse(&out),
            json!({"error":{"message":"mock 500","type":"server_error","code":500}})
        );
        out.clear();
        server_error(&mut out, Route::Chat, 529, 1);
        assert_eq!(parse(&out)["error"]["type"], "overloaded_error");
        out.clear();
        server_error(&mut out, Route::Messages, 500, 9);
        assert_eq!(
            parse(&out),
            json!({"type":"error","error":{"type":"api_error","message":"mock 500"},"request_id":"req_mock_9"})
        );
        out.clear();
        status_error(&mut out, Route::Chat, 404, 1);
        assert_eq!(
            parse(&out),
            json!({"error":{"message":"mock 404","type":"invalid_request_error"}})
        );
        out.clear();
        status_error(&mut out, Route::Messages, 401, 1);
        assert_eq!(parse(&out)["error"]["type"], "authentication_error");
        out.clear();
        rate_limit(&mut out, Route::Chat, 2, 1);
        assert_eq!(parse(&out)["error"]["code"], "rate_limit_exceeded");
        out.clear();
        rate_limit(&mut out, Route::Messages, 2, 1);
        assert_eq!(parse(&out)["error"]["type"], "rate_limit_error");
        for body in [
            OPENAI_QUOTA,
            OPENAI_CONTEXT_LENGTH,
            OPENAI_CONTENT_POLICY,
            AZURE_CONTENT_FILTER,
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            assert!(v["error"]["message"].is_string(), "{body}");
        }
        let v: Value = serde_json::from_str(AZURE_CONTENT_FILTER).unwrap();
        assert_eq!(v["error"]["code"], "content_filter");
        assert_eq!(
            v["error"]["innererror"]["code"],
            "ResponsibleAIPolicyViolation"
        );
        assert_eq!(
            serde_json::from_str::<Value>(OPENAI_QUOTA).unwrap()["error"]["code"],
            "insufficient_quota"
        );
    }

    #[test]
    fn the_large_error_page_has_exactly_the_requested_size() {
        for size in [0, 10, 200, 2 * 1024 * 1024] {
            let body = large_html(500, size);
            assert_eq!(body.len() as u64, size);
        }
        let body = String::from_utf8(large_html(503, 1000)).unwrap();
        assert!(body.starts_with("<!DOCTYPE html>"));
        assert!(body.contains("<title>503 Service Unavailable</title>"));
        assert!(body.ends_with("</html>\n"));
    }

    #[test]
    fn anthropic_validation_rejects_what_the_real_api_rejects() {
        let ok = json!({"model":"claude","max_tokens":10,"system":"be brief",
            "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]});
        assert_eq!(validate_messages_request(Some(&ok)), Ok(()));
        let check = |v: Value| validate_messages_request(Some(&v)).unwrap_err();
        assert_eq!(
            check(json!({"model":"claude","messages":[]})),
            "max_tokens: Field required"
        );
        assert_eq!(
            check(json!({"max_tokens":1,"messages":[]})),
            "model: Field required"
        );
        let err = check(json!({"model":"c","max_tokens":1,
            "messages":[{"role":"system","content":"x"},{"role":"user","content":"hi"}]}));
        assert!(
            err.starts_with("messages: Unexpected role \"system\""),
            "{err}"
        );
        assert_eq!(
            check(json!({"model":"c","max_tokens":1,"messages":[],"stream_options":{}})),
            "stream_options: Extra inputs are not permitted"
        );
        assert!(check(json!({"model":"c","max_tokens":"9","messages":[]})).contains("integer"));
        assert!(
            check(json!({"model":"c","max_tokens":1,"messages":[{"role":"tool"}]}))
                .contains("'tool'")
        );
        assert!(validate_messages_request(None).is_err());
        assert!(validate_messages_request(Some(&json!([1]))).is_err());
    }

    /// A Messages request with a system prompt, a tool, a tool call and its result, an image.
    fn full_messages_request() -> Value {
        json!({"model":"claude","max_tokens":10,"temperature":0.5,
            "system":[{"type":"text","text":"be brief"}],"stop_sequences":["END"],
            "tools":[{"name":"get_weather","description":"d",
                      "input_schema":{"type":"object","properties":{}}}],
            "tool_choice":{"type":"auto"},
            "messages":[
                {"role":"user","content":[{"type":"text","text":"look"},
                    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}}]},
                {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}]})
    }

    #[test]
    fn anthropic_validation_checks_content_blocks_tools_and_their_pairing() {
        assert_eq!(
            validate_messages_request(Some(&full_messages_request())),
            Ok(())
        );
        let check = |edit: &dyn Fn(&mut Value)| {
            let mut v = full_messages_request();
            edit(&mut v);
            validate_messages_request(Some(&v)).unwrap_err()
        };
        // OpenAI shapes left in a translated request.
        let err = check(&|v| {
            v["messages"][0]["content"][1] =
                json!({"type":"image_url","image_url":{"url":"data:x"}})
        });
        assert!(err.contains("'image_url'"), "{err}");
        let err = check(&|v| {
            v["tools"][0] = json!({"type":"function","function":{"name":"f","parameters":{}}})
        });
        assert!(err.contains("function"), "{err}");
        let err = check(&|v| v["tools"][0] = json!({"name":"f","parameters":{}}));
        assert!(err.contains("input_schema"), "{err}");
        let err = check(&|v| v["tool_choice"] = json!("auto"));
        assert!(err.starts_with("tool_choice"), "{err}");
        let err = check(&|v| v["temperature"] = json!(1.5));
        assert!(
            err.starts_with("temperature"),
            "OpenAI's 0..2 is Anthropic's 0..1: {err}"
        );
        let err = check(&|v| v["system"] = json!({"role":"system"}));
        assert!(err.starts_with("system"), "{err}");
        let err = check(&|v| v["stop_sequences"] = json!("END"));
        assert!(err.starts_with("stop_sequences"), "{err}");
        // Tool calls and results in the wrong place or unpaired.
        let err = check(&|v| v["messages"][2]["content"][0]["tool_use_id"] = json!("toolu_9"));
        assert!(err.contains("without `tool_result`"), "{err}");
        let err = check(&|v| {
            let result = v["messages"][2].clone();
            v["messages"] = json!([{"role":"user","content":"hi"}, {"role":"assistant","content":"yo"}, result]);
        });
        assert!(err.contains("unexpected `tool_use_id`"), "{err}");
        let err = check(&|v| v["messages"][1]["role"] = json!("user"));
        assert!(err.contains("assistant messages"), "{err}");
        let err =
            check(&|v| v["messages"][1]["content"][0]["input"] = json!("{\"city\":\"Paris\"}"));
        assert!(err.contains("object input"), "arguments as a string: {err}");
        let err = check(&|v| {
            v["messages"][0]["content"][1]["source"] = json!({"type":"base64","data":"x"})
        });
        assert!(err.contains("source"), "{err}");
    }

    /// A Chat Completions request with a system message, a tool, a call and its result.
    fn full_chat_request() -> Value {
        json!({"model":"gpt-4o-mini","max_tokens":10,"temperature":1.5,"stream":true,
            "stream_options":{"include_usage":true},
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}],
            "tool_choice":"auto",
            "messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"look"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
                    "function":{"name":"get_weather","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"sunny"}]})
    }

    #[test]
    fn openai_validation_rejects_what_the_real_api_rejects() {
        assert_eq!(validate_chat_request(Some(&full_chat_request())), Ok(()));
        let check = |edit: &dyn Fn(&mut Value)| {
            let mut v = full_chat_request();
            edit(&mut v);
            validate_chat_request(Some(&v)).unwrap_err()
        };
        // Anthropic shapes left in a translated request.
        for key in ["system", "stop_sequences", "top_k", "thinking"] {
            let err = check(&|v| v[key] = json!("x"));
            assert_eq!(
                err,
                format!("Unrecognized request argument supplied: {key}")
            );
        }
        let err = check(&|v| v["messages"][1]["content"][1] = json!({"type":"image","source":{}}));
        assert!(err.contains("'image'"), "{err}");
        let err = check(&|v| {
            v["messages"][3]["content"] = json!([{"type":"tool_result","tool_use_id":"call_1"}])
        });
        assert!(err.contains("'tool_result'"), "{err}");
        let err = check(&|v| v["tools"][0] = json!({"name":"f","input_schema":{}}));
        assert!(err.contains("tools[0].type"), "{err}");
        let err = check(&|v| v["tool_choice"] = json!({"type":"any"}));
        assert!(err.contains("tool_choice"), "{err}");
        let err = check(&|v| v["messages"][3]["tool_call_id"] = json!("call_9"));
        assert!(
            err.contains("preceeding message with 'tool_calls'"),
            "{err}"
        );
        let err = check(&|v| {
            v["messages"].as_array_mut().unwrap().pop();
        });
        assert!(err.contains("call_1"), "an unanswered tool call: {err}");
        let err =
            check(&|v| v["messages"][2]["tool_calls"][0]["function"]["arguments"] = json!({}));
        assert!(
            err.contains("tool_calls"),
            "arguments must be a string: {err}"
        );
        let err = check(&|v| v["stream"] = json!(false));
        assert!(err.contains("stream_options"), "{err}");
        let err = check(&|v| v["messages"] = json!([]));
        assert!(err.contains("empty array"), "{err}");
        let err = check(&|v| v["messages"][0]["role"] = json!("model"));
        assert!(err.contains("'model'"), "{err}");
        assert!(validate_chat_request(Some(&json!({"messages":[]}))).is_err());
        assert!(validate_chat_request(None).is_err());
    }
}
