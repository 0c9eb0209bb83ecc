//! One data request in, one response plan out: what each mode answers, in the shape of the
//! API the path belongs to (OpenAI unless the path ends in `/v1/messages`), after
//! Anthropic request validation on the success path. Pure (ids and time come in), so the
//! whole behaviour of a mode is unit-tested byte for byte.

use std::time::Duration;

use serde_json::Value;

use crate::http::Request;
use crate::modes::{Kind, PolicyCode, QuotaVariant, Shape, Usage};
use crate::payloads::{self, Answer, Route};
use crate::reply::Reply;
use crate::stream::{self, Fault};

const JSON: &str = "application/json";

/// What a response depends on besides the mode and the request.
pub struct Ctx<'a> {
    pub name: &'a str,
    pub name_json: &'a str,
    /// Unique per response (ids).
    pub id: u64,
    /// Unix seconds.
    pub created: u64,
    /// Anthropic request validation on `/v1/messages`.
    pub validate: bool,
    /// OpenAI request validation on `/chat/completions`.
    pub validate_openai: bool,
}

/// Plans the answer to `request` in `kind` (a leaf mode: composite modes are resolved by
/// the caller) into `reply`. Returns the validation error when the request was rejected.
pub fn respond(
    ctx: &Ctx<'_>,
    kind: &Kind,
    shape: Shape,
    request: &Request,
    reply: &mut Reply,
) -> Option<String> {
    let route = Route::of(request.path());
    let persist = request.persist();
    let mut body = Vec::new();
    let error = |reply: &mut Reply, status: u16, body: &[u8]| {
        reply.head(status, JSON, ctx.name);
        reply.body(body, persist);
    };
    match kind {
        Kind::Healthy | Kind::FailNext { .. } | Kind::DownFor { .. } => {
            return success(ctx, shape, request, route, Fault::None, reply)
        }
        Kind::Slow { delay_ms } => {
            reply.sleep(Duration::from_millis(*delay_ms));
            return success(ctx, shape, request, route, Fault::None, reply);
        }
        Kind::Refuse => reply.close(),
        Kind::Hang { hang_ms } => {
            reply.stall(Duration::from_millis(*hang_ms));
            reply.close();
        }
        Kind::Reset => reply.rst(),
        Kind::Error { status } => {
            payloads::server_error(&mut body, route, *status, ctx.id);
            error(reply, *status, &body);
        }
        Kind::Status { status } => {
            payloads::status_error(&mut body, route, *status, ctx.id);
            error(reply, *status, &body);
        }
        Kind::RateLimit { retry_after } => {
            payloads::rate_limit(&mut body, route, *retry_after, ctx.id);
            reply.head(429, JSON, ctx.name);
            let seconds = retry_after.to_string();
            reply.header("retry-after", &seconds);
            if route.anthropic() {
                reply.header("anthropic-ratelimit-requests-remaining", "0");
            } else {
                reply.header("x-ratelimit-reset-requests", &format!("{seconds}s"));
                reply.header("x-ratelimit-remaining-requests", "0");
            }
            reply.body(&body, persist);
        }
        Kind::Quota { variant } => {
            let status = if !route.anthropic() {
                body.extend_from_slice(payloads::OPENAI_QUOTA.as_bytes());
                429
            } else if *variant == QuotaVariant::BillingError {
                payloads::anthropic_error(
                    &mut body,
                    "billing_error",
                    payloads::CREDIT_BALANCE_MESSAGE,
                    Some(ctx.id),
                );
                402
            } else {
                payloads::anthropic_error(
                    &mut body,
                    "invalid_request_error",
                    payloads::CREDIT_BALANCE_MESSAGE,
                    Some(ctx.id),
                );
                400
            };
            error(reply, status, &body);
        }
        Kind::ContextLength => {
            if route.anthropic() {
                payloads::anthropic_error(
                    &mut body,
                    "invalid_request_error",
                    payloads::ANTHROPIC_CONTEXT_LENGTH,
                    Some(ctx.id),
                );
            } else {
                body.extend_from_slice(payloads::OPENAI_CONTEXT_LENGTH.as_bytes());
            }
            error(reply, 400, &body);
        }
        Kind::ContentPolicy { code } => {
            if route.anthropic() {
                return success(ctx, shape, request, route, Fault::Refusal, reply);
            }
            let text = match code {
                PolicyCode::ContentPolicyViolation => payloads::OPENAI_CONTENT_POLICY,
                PolicyCode::ContentFilter => payloads::AZURE_CONTENT_FILTER,
            };
            error(reply, 400, text.as_bytes());
        }
        Kind::LargeError { status, bytes } => {
            reply.head(*status, "text/html; charset=utf-8", ctx.name);
            reply.body(&payloads::large_html(*status, *bytes), persist);
        }
        Kind::Respond {
            status,
            headers,
            body,
        } => {
            let content_type = headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                .map_or(JSON, |(_, value)| value.as_str());
            reply.head(*status, content_type, ctx.name);
            for (name, value) in headers {
                if !name.eq_ignore_ascii_case("content-type") {
                    reply.header(name, value);
                }
            }
            reply.body(body.as_bytes(), persist);
        }
        Kind::StreamError { .. }
        | Kind::StreamCut { .. }
        | Kind::StreamNoMarker { .. }
        | Kind::StreamNoDone
        | Kind::StreamStall { .. }
        | Kind::StreamFirstTokenDelay { .. }
        | Kind::StreamMalformed { .. } => {
            return success(ctx, shape, request, route, Fault::of(kind), reply)
        }
    }
    None
}

/// The provider's answer: validated (Anthropic; OpenAI when switched on), then streamed with `fault` when the
/// request asked for a stream, or a whole JSON body (where stream faults do not apply).
fn success(
    ctx: &Ctx<'_>,
    shape: Shape,
    request: &Request,
    route: Route,
    fault: Fault<'_>,
    reply: &mut Reply,
) -> Option<String> {
    let persist = request.persist();
    let parsed: Option<Value> = match route {
        Route::Chat | Route::Messages | Route::Embeddings if !request.body.is_empty() => {
            serde_json::from_slice(&request.body).ok()
        }
        _ => None,
    };
    let mut body = Vec::new();
    if ctx.validate && route == Route::Messages {
        if let Err(message) = payloads::validate_messages_request(parsed.as_ref()) {
            payloads::anthropic_error(&mut body, "invalid_request_error", &message, Some(ctx.id));
            reply.head(400, JSON, ctx.name);
            reply.body(&body, persist);
            return Some(message);
        }
    }
    if ctx.validate_openai && route == Route::Chat {
        if let Err(message) = payloads::validate_chat_request(parsed.as_ref()) {
            payloads::openai_invalid_request(&mut body, &message);
            reply.head(400, JSON, ctx.name);
            reply.body(&body, persist);
            return Some(message);
        }
    }
    let field = |key: &str| parsed.as_ref().and_then(|v| v.get(key));
    let model_json = match field("model").and_then(Value::as_str) {
        Some(model) => Value::from(model).to_string(),
        None => r#""mock-model""#.to_owned(),
    };
    let tool = match (route, &parsed) {
        (Route::Chat | Route::Messages, Some(request)) => payloads::tool_to_call(route, request),
        _ => None,
    };
    let answer = Answer {
        name: ctx.name,
        name_json: ctx.name_json,
        model_json: &model_json,
        id: ctx.id,
        created: ctx.created,
        tool: tool.as_deref(),
    };
    let streaming = matches!(route, Route::Chat | Route::Messages)
        && field("stream").and_then(Value::as_bool) == Some(true);
    if streaming {
        let include_usage = field("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        let spec = stream::Spec {
            anthropic: route.anthropic(),
            shape,
            include_usage,
            http10: request.http10,
            persist,
            fault,
        };
        stream::write(reply, &answer, &spec);
        return None;
    }
    let usage = shape.usage != Usage::Off;
    match route {
        Route::Chat => payloads::chat_completion(&mut body, &answer, shape.tokens, usage),
        Route::Messages => payloads::message(
            &mut body,
            &answer,
            shape.tokens,
            usage,
            fault == Fault::Refusal,
        ),
        Route::Embeddings => payloads::embeddings(&mut body, &answer, usage),
        Route::Models => payloads::models(&mut body, &answer),
        Route::Other => payloads::other(&mut body, &answer, request.path()),
    }
    reply.head(200, JSON, ctx.name);
    reply.body(&body, persist);
    None
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::http::RequestReader;
    use crate::modes::Mode;
    use crate::reply::Step;
    use serde_json::json;

    fn request(path: &str, body: &Value) -> Request {
        let body = body.to_string();
        let raw = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        RequestReader::new(raw.as_bytes())
            .read_request(|| Ok(()))
            .unwrap()
    }

    /// Runs `mode` (JSON) on one request: (status, headers, body, how the plan ended).
    fn answer(
        mode: Value,
        path: &str,
        body: Value,
    ) -> (u16, String, String, Reply, Option<String>) {
        let mode = Mode::from_json(&mode).unwrap();
        let ctx = Ctx {
            name: "openai",
            name_json: r#""openai""#,
            id: 42,
            created: 1,
            validate: true,
            validate_openai: false,
        };
        let mut reply = Reply::default();
        let rejected = respond(
            &ctx,
            &mode.kind,
            mode.shape,
            &request(path, &body),
            &mut reply,
        );
        let (sent, _) = reply.sent();
        let sent = String::from_utf8(sent).unwrap();
        let (head, body) = sent.split_once("\r\n\r\n").unwrap_or((&sent, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_owned(), body.to_owned(), reply, rejected)
    }

    fn chat() -> Value {
        json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]})
    }

    fn claude() -> Value {
        json!({"model":"claude-x","max_tokens":50,"messages":[{"role":"user","content":"hi"}]})
    }

    fn js(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn healthy_answers_each_api_in_its_own_shape_and_echoes_the_model() {
        let (status, head, body, _, _) =
            answer(json!({"mode":"healthy"}), "/v1/chat/completions", chat());
        assert_eq!(status, 200);
        assert!(head.contains("x-mock-provider: openai"));
        let v = js(&body);
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello from openai");
        let (status, _, body, _, rejected) =
            answer(json!({"mode":"healthy"}), "/v1/messages", claude());
        assert_eq!((status, rejected), (200, None));
        assert_eq!(js(&body)["type"], "message");
        assert_eq!(js(&body)["model"], "claude-x");
    }

    #[test]
    fn messages_requests_invalid_for_anthropic_get_its_400() {
        let (status, _, body, _, rejected) = answer(
            json!({"mode":"healthy"}),
            "/v1/messages",
            json!({"model":"c","messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(status, 400);
        assert_eq!(rejected.as_deref(), Some("max_tokens: Field required"));
        let v = js(&body);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "max_tokens: Field required");
        assert_eq!(v["request_id"], "req_mock_42");
        // Stream modes validate first too; failure modes answer whatever the request.
        let (status, _, _, _, _) = answer(
            json!({"mode":"stream_cut"}),
            "/v1/messages",
            json!({"stream":true}),
        );
        assert_eq!(status, 400);
        let (status, _, _, _, rejected) = answer(
            json!({"mode":"error","status":503}),
            "/v1/messages",
            json!({}),
        );
        assert_eq!((status, rejected), (503, None));
    }

    #[test]
    fn stream_modes_leave_non_streaming_requests_healthy() {
        let (status, _, body, reply, _) = answer(
            json!({"mode":"stream_cut","after_tokens":1}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 200);
        assert_eq!(js(&body)["choices"][0]["finish_reason"], "stop");
        assert!(!reply.ends_connection());
    }

    #[test]
    fn streams_are_answered_natively_on_both_paths() {
        let mut req = chat();
        req["stream"] = json!(true);
        let (status, head, body, _, _) =
            answer(json!({"mode":"healthy"}), "/v1/chat/completions", req);
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/event-stream"));
        assert!(body.contains("data: [DONE]"));
        let mut req = claude();
        req["stream"] = json!(true);
        let (_, _, body, _, _) = answer(json!({"mode":"healthy"}), "/v1/messages", req);
        assert!(body.contains("event: message_start\ndata: {\"type\":\"message_start\""));
        assert!(body.contains("event: message_stop"));
        assert!(!body.contains("[DONE]"));
    }

    #[test]
    fn retry_and_recovery_error_shapes_match_the_providers() {
        let (status, head, body, _, _) = answer(
            json!({"mode":"rate_limit","retry_after":2}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 429);
        assert!(head.contains("retry-after: 2\r\n"));
        assert!(head.contains("x-ratelimit-reset-requests: 2s\r\n"));
        assert_eq!(js(&body)["error"]["code"], "rate_limit_exceeded");

        let (status, _, body, _, _) =
            answer(json!({"mode":"quota"}), "/v1/chat/completions", chat());
        assert_eq!(status, 429);
        assert_eq!(js(&body)["error"]["type"], "insufficient_quota");
        let (status, _, body, _, _) = answer(json!({"mode":"quota"}), "/v1/messages", claude());
        assert_eq!(status, 402);
        assert_eq!(js(&body)["error"]["type"], "billing_error");
        let (status, _, body, _, _) = answer(
            json!({"mode":"quota","variant":"credit_balance"}),
            "/v1/messages",
            claude(),
        );
        assert_eq!(status, 400);
        assert!(js(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Your credit balance is too low"));

        let (status, _, body, _, _) = answer(
            json!({"mode":"context_length"}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 400);
        assert_eq!(js(&body)["error"]["code"], "context_length_exceeded");
        let (status, _, body, _, _) =
            answer(json!({"mode":"context_length"}), "/v1/messages", claude());
        assert_eq!(status, 400);
        assert!(js(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("prompt is too long"));

        let (status, _, body, _, _) = answer(
            json!({"mode":"content_policy"}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 400);
        assert_eq!(js(&body)["error"]["code"], "content_policy_violation");
        let (_, _, body, _, _) = answer(
            json!({"mode":"content_policy","code":"content_filter"}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(
            js(&body)["error"]["innererror"]["code"],
            "ResponsibleAIPolicyViolation"
        );
        let (status, _, body, _, _) =
            answer(json!({"mode":"content_policy"}), "/v1/messages", claude());
        assert_eq!(status, 200);
        assert_eq!(js(&body)["stop_reason"], "refusal");
    }

    #[test]
    fn large_error_and_respond_send_what_they_are_told() {
        let (status, head, body, _, _) = answer(
            json!({"mode":"large_error","bytes":2097152}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 500);
        assert!(head.contains("content-type: text/html; charset=utf-8"));
        assert!(head.contains("content-length: 2097152"), "{head}");
        assert_eq!(body.len(), 2_097_152);

        let (status, head, body, _, _) = answer(
            json!({"mode":"respond","status":401,"body":"{\"error\":\"rotated\"}",
                   "headers":{"WWW-Authenticate":"Bearer","Content-Type":"application/problem+json"}}),
            "/v1/models",
            json!({}),
        );
        assert_eq!(status, 401);
        assert!(head.contains("content-type: application/problem+json\r\n"));
        assert!(head.contains("WWW-Authenticate: Bearer\r\n"));
        assert!(head.contains("x-mock-provider: openai\r\n"));
        assert_eq!(body, "{\"error\":\"rotated\"}");
    }

    #[test]
    fn connection_faults_end_the_plan_themselves() {
        let (_, _, _, reply, _) = answer(json!({"mode":"reset"}), "/v1/chat/completions", chat());
        assert_eq!(reply.steps, [Step::Rst]);
        let (_, _, _, reply, _) = answer(
            json!({"mode":"hang","hang_ms":5}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(
            reply.steps,
            [Step::Stall(Duration::from_millis(5)), Step::Close]
        );
        let (status, _, _, reply, _) = answer(
            json!({"mode":"slow","delay_ms":7}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 200);
        assert_eq!(reply.steps[0], Step::Sleep(Duration::from_millis(7)));
    }

    #[test]
    fn errors_keep_their_existing_openai_bodies() {
        let (status, _, body, _, _) =
            answer(json!({"mode":"error"}), "/v1/chat/completions", chat());
        assert_eq!(status, 500);
        assert_eq!(
            js(&body),
            json!({"error":{"message":"mock 500","type":"server_error","code":500}})
        );
        let (status, _, body, _, _) = answer(
            json!({"mode":"error","status":529}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 529);
        assert_eq!(js(&body)["error"]["type"], "overloaded_error");
        let (status, _, body, _, _) = answer(
            json!({"mode":"status","status":422}),
            "/v1/chat/completions",
            chat(),
        );
        assert_eq!(status, 422);
        assert_eq!(
            js(&body),
            json!({"error":{"message":"mock 422","type":"invalid_request_error"}})
        );
    }
}
