//! Provider shapes: the JSON bodies OpenAI (Chat Completions, embeddings, models) and
//! Anthropic (Messages) answer with, their error bodies, and Anthropic's request checks.
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
    for message in messages {
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
}
