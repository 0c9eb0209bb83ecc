//! What a provider's error body says, beyond its status: used-up quota (not a rate limit),
//! a prompt too long for the model's context window, or a content-policy refusal.
//!
//! Only the first [`ERROR_BODY_BYTES`] of a 4xx JSON body are read. The shapes are OpenAI's
//! and Azure OpenAI's `{"error":{"type","code","message","innererror"}}` and Anthropic's
//! `{"type":"error","error":{"type","message"}}`; anything else is [`ErrorKind::Other`],
//! judged by its status as before.

use serde_json::Value;

/// How much of an error body is read to classify it.
pub const ERROR_BODY_BYTES: usize = 8 * 1024;

/// What an error body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// OpenAI `insufficient_quota`, Anthropic `billing_error` or "credit balance is too low".
    Quota,
    /// OpenAI `context_length_exceeded`, Anthropic "prompt is too long".
    ContextLength,
    /// OpenAI `content_policy_violation`, Azure `content_filter`.
    ContentPolicy,
    /// Nothing the filter recognizes.
    Other,
}

/// Whether an answer with this status and content type has a body worth reading.
pub fn worth_reading(status: Option<u16>, content_type: Option<&str>) -> bool {
    matches!(status, Some(400 | 402 | 403 | 429))
        && content_type.is_some_and(|c| c.contains("json"))
}

/// Reads `body` (a prefix of at most [`ERROR_BODY_BYTES`] of a 4xx answer).
pub fn read(body: &[u8]) -> ErrorKind {
    // As text, so the parser the config already links is reused (a cut multi-byte
    // character at the end leaves unparsable JSON either way).
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => body
            .get(..e.valid_up_to())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or(""),
    };
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return ErrorKind::Other;
    };
    let Some(e) = v.get("error").filter(|e| e.is_object()) else {
        return ErrorKind::Other;
    };
    let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let (kind, code, message) = (field("type"), field("code"), field("message"));
    let inner = e
        .get("innererror")
        .and_then(|i| i.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if code == "insufficient_quota"
        || kind == "insufficient_quota"
        || kind == "billing_error"
        || message.contains("credit balance is too low")
    {
        ErrorKind::Quota
    } else if code == "context_length_exceeded"
        || message.starts_with("prompt is too long")
        || message.contains("maximum context length")
    {
        ErrorKind::ContextLength
    } else if code == "content_policy_violation"
        || code == "content_filter"
        || inner == "ResponsibleAIPolicyViolation"
    {
        ErrorKind::ContentPolicy
    } else {
        ErrorKind::Other
    }
}
