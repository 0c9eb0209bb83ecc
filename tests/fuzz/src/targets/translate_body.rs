//! `translate::{request, response, error}`, both directions: any bytes give a typed refusal or
//! well-formed JSON of the other format, never a panic. A translated request is a JSON object
//! that names the format's required fields (Anthropic: `max_tokens` and `messages`; OpenAI:
//! `messages`); a translated answer or error is a JSON object.
//!
//! Input: one byte choosing the client's format (even: OpenAI, odd: Anthropic) and the
//! error status, then the body.

use ai_circuit_breaker::translate::{self, Api, Target};
use serde_json::Value;

pub fn run(input: &[u8]) {
    let [pick, body @ ..] = input else {
        return;
    };
    let (client, served) = if pick % 2 == 0 {
        (Api::OpenAi, Api::Anthropic)
    } else {
        (Api::Anthropic, Api::OpenAi)
    };
    let target = Target {
        api: served,
        anthropic_version: "2023-06-01",
        default_max_tokens: 4096,
    };
    if let Ok(req) = translate::request(client, &target, body) {
        let v = object(&req.body, "a translated request");
        assert!(
            v.get("messages").is_some_and(Value::is_array),
            "no messages: {v}"
        );
        if served == Api::Anthropic {
            assert!(
                v.get("max_tokens").is_some_and(Value::is_u64),
                "no max_tokens: {v}"
            );
        }
    }
    if let Some(answer) = translate::response(client, served, body) {
        object(&answer, "a translated answer");
    }
    let status = 400 + u16::from(*pick) % 200;
    object(
        &translate::error(client, served, status, body),
        "a translated error",
    );
}

fn object(bytes: &[u8], what: &str) -> Value {
    let v: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => panic!(
            "{what} is not JSON ({e}): {}",
            String::from_utf8_lossy(bytes)
        ),
    };
    assert!(v.is_object(), "{what} is not an object: {v}");
    v
}
