//! The control API, on its own port so that a test can switch modes and read what the data
//! port received while the data port is failing: `POST /mode`, `GET /mode`, `GET /stats`,
//! `GET /requests`, `POST /reset`, `GET`/`POST /settings`.

use serde_json::{json, Map, Value};

use crate::http::Request;
use crate::modes::Mode;
use crate::state::Shared;

/// The status and JSON body answering one control request.
pub fn handle(shared: &Shared, request: &Request) -> (u16, Value) {
    match (request.method.as_str(), request.path()) {
        ("POST", "/mode") => set_mode(shared, &request.body),
        ("GET", "/mode") => (200, shared.mode_json()),
        ("GET", "/stats") => (200, shared.stats_json()),
        ("GET", "/requests") => {
            let filter = request.query().and_then(|q| query_param(q, "path"));
            (200, shared.requests_json(filter.as_deref()))
        }
        ("POST", "/reset") => {
            shared.reset_stats();
            (200, json!({ "ok": true }))
        }
        ("GET", "/settings") => (200, settings(shared)),
        ("POST", "/settings") => set_settings(shared, &request.body),
        (_, "/mode" | "/stats" | "/requests" | "/reset" | "/settings") => {
            (405, error("method not allowed"))
        }
        _ => (
            404,
            error("unknown control path; use POST /mode, GET /mode, GET /stats, GET /requests, POST /reset, GET or POST /settings"),
        ),
    }
}

fn error(message: &str) -> Value {
    json!({ "ok": false, "error": message })
}

fn set_mode(shared: &Shared, body: &[u8]) -> (u16, Value) {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return (400, error(&format!("invalid JSON body: {e}"))),
    };
    let mode = match Mode::from_json(&value) {
        Ok(mode) => mode,
        Err(message) => return (400, error(&message)),
    };
    let mut reply = mode.to_json();
    let status = match shared.set_mode(mode) {
        Ok(()) => 200,
        Err(message) => {
            reply.insert("error".into(), message.into());
            500
        }
    };
    reply.insert("ok".into(), (status == 200).into());
    (status, Value::Object(reply))
}

fn settings(shared: &Shared) -> Value {
    json!({ "validate": shared.validate(), "validate_openai": shared.validate_openai() })
}

/// `{"validate": bool, "validate_openai": bool}`: switches Anthropic request validation on
/// `/v1/messages` and OpenAI request validation on `/chat/completions`.
fn set_settings(shared: &Shared, body: &[u8]) -> (u16, Value) {
    let value: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => return (400, error(&format!("expected a JSON object: {e}"))),
    };
    let (mut validate, mut validate_openai) = (None, None);
    for (key, v) in &value {
        let slot = match key.as_str() {
            "validate" => &mut validate,
            "validate_openai" => &mut validate_openai,
            other => return (400, error(&format!("unknown setting {other:?}"))),
        };
        match v {
            Value::Bool(on) => *slot = Some(*on),
            other => {
                return (
                    400,
                    error(&format!("\"{key}\" must be true or false, got {other}")),
                )
            }
        }
    }
    // Checked whole before applying: a bad request changes nothing.
    if let Some(on) = validate {
        shared.set_validate(on);
    }
    if let Some(on) = validate_openai {
        shared.set_validate_openai(on);
    }
    let mut reply = settings(shared);
    if let Some(object) = reply.as_object_mut() {
        object.insert("ok".into(), true.into());
    }
    (200, reply)
}

/// The percent-decoded value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_filter_is_percent_decoded() {
        assert_eq!(
            query_param("a=1&path=%2Fv1%2Fchat%2Fcompletions", "path").as_deref(),
            Some("/v1/chat/completions")
        );
        assert_eq!(
            query_param("path=/alerts", "path").as_deref(),
            Some("/alerts")
        );
        assert_eq!(query_param("x=1", "path"), None);
    }
}
