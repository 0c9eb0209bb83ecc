//! The final SSE error event appended to a stream that cannot end whole.
//!
//! After the commit point the client already has part of an answer, so a stream that is cut,
//! stalls or ends without its terminal marker must not look finished: one last event in the
//! client's own API shape makes its SDK raise an error instead of returning half an answer.
//! The shapes are the ones the official SDKs raise on (checked with the `openai` and
//! `anthropic` Python packages):
//!
//! - OpenAI Chat Completions: `data: {"error":{"message":..,"type":..,"param":null,"code":..}}`
//!   (the SDK raises `APIError` on any chunk with a top-level `error`);
//! - Anthropic Messages: `event: error` and `data: {"type":"error","error":{"type":..,
//!   "message":..}}` (the SDK raises on the `error` event, by `error.type`);
//! - OpenAI Responses: `event: error` and the documented `{"type":"error","code":..,
//!   "message":..,"param":null}`, plus the same `error` object as Chat, which the SDK raises on.
//!
//! The event starts with a CRLF, so it starts on a line of its own whatever the upstream sent
//! last: after an event boundary that is an empty line, which SSE parsers skip; after a
//! line that was ended (with CR or LF) but not the event, it dispatches that event first;
//! after a cut inside a line it ends that line, and that cut event is lost either way.

use super::judge::Shape;

/// The bytes of one SSE error event in `client`'s shape, `kind` as the error's type and
/// code (e.g. `api_error`, `overloaded_error`), `message` as its message.
pub fn error_event(client: Shape, kind: &str, message: &str) -> Vec<u8> {
    let (kind, message) = (json_string(kind), json_string(message));
    // `{"message":..,"type":..,"param":null,"code":..}`: OpenAI's error object.
    let openai_error = [
        "{\"message\":",
        &message,
        ",\"type\":",
        &kind,
        ",\"param\":null,\"code\":",
        &kind,
        "}",
    ];
    let mut out = String::with_capacity(message.len() + 2 * kind.len() + 160);
    out.push_str("\r\n");
    match client {
        Shape::OpenAiChat => {
            out.push_str("data: {\"error\":");
            openai_error.iter().for_each(|p| out.push_str(p));
        }
        Shape::Anthropic => {
            for p in [
                "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":",
                &kind,
                ",\"message\":",
                &message,
                "}",
            ] {
                out.push_str(p);
            }
        }
        Shape::OpenAiResponses => {
            for p in [
                "event: error\ndata: {\"type\":\"error\",\"code\":",
                &kind,
                ",\"message\":",
                &message,
                ",\"param\":null,\"error\":",
            ] {
                out.push_str(p);
            }
            openai_error.iter().for_each(|p| out.push_str(p));
        }
    }
    out.push_str("}\n\n");
    out.into_bytes()
}

/// `s` as a JSON string literal (serde_json's escaping, which cannot fail on a `str`).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}
