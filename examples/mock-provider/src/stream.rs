//! Streamed answers: OpenAI Chat Completions chunks (`data:` lines, `finish_reason`, the
//! usage chunk, `data: [DONE]`) and Anthropic Messages events (`event:` + `data:` pairs from
//! `message_start` to `message_stop`), each event its own chunk, with the stream faults of
//! the `stream_*` modes applied at a given content chunk: an error event, a cut, a clean end
//! without a terminal marker, a stall, a late first token, a malformed event.

use std::fmt::Write as _;
use std::time::Duration;

use crate::http::Persist;
use crate::modes::{CloseHow, Kind, Shape, Usage};
use crate::payloads::{self, Answer, PROMPT_TOKENS};
use crate::reply::Reply;

/// What goes wrong in a stream, and after how many content chunks (`after`, clamped to the
/// stream's `tokens`: larger values mean "after the last content chunk").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault<'a> {
    None,
    /// An error event, then a proper end of the HTTP body. Without `preamble`, the opening
    /// events (role chunk / `message_start`...) are left out, so with `after` 0 the error is
    /// the very first event.
    Error {
        after: u32,
        preamble: bool,
        error_type: Option<&'a str>,
    },
    /// The connection is closed (or reset) with the body unfinished: no terminal event and
    /// no terminating chunk.
    Cut {
        after: u32,
        close: CloseHow,
    },
    /// The HTTP body ends properly but the stream has no end: no `finish_reason`/`[DONE]`
    /// (OpenAI), no `content_block_stop`/`message_delta`/`message_stop` (Anthropic).
    NoMarker {
        after: u32,
    },
    /// Complete, but without the last event: `[DONE]` (OpenAI), `message_stop` (Anthropic).
    NoDone,
    /// Nothing is written for `ms`, with the connection open; then the stream goes on.
    Stall {
        after: u32,
        ms: u64,
    },
    /// The first content chunk comes `ms` late; with `headers`, the status line itself does.
    FirstTokenDelay {
        ms: u64,
        headers: bool,
    },
    /// One event whose data is not JSON, then the stream goes on.
    Malformed {
        after: u32,
    },
    /// Anthropic's policy refusal: no content, `stop_reason: "refusal"`.
    Refusal,
}

impl<'a> Fault<'a> {
    /// The stream fault of a mode (`None` for modes that do not touch streams).
    pub fn of(kind: &'a Kind) -> Fault<'a> {
        match kind {
            Kind::StreamError {
                after_tokens,
                preamble,
                error_type,
            } => Fault::Error {
                after: *after_tokens,
                preamble: *preamble,
                error_type: error_type.as_deref(),
            },
            Kind::StreamCut {
                after_tokens,
                close,
            } => Fault::Cut {
                after: *after_tokens,
                close: *close,
            },
            Kind::StreamNoMarker { after_tokens } => Fault::NoMarker {
                after: *after_tokens,
            },
            Kind::StreamNoDone => Fault::NoDone,
            Kind::StreamStall {
                after_tokens,
                stall_ms,
            } => Fault::Stall {
                after: *after_tokens,
                ms: *stall_ms,
            },
            Kind::StreamFirstTokenDelay {
                delay_ms,
                delay_headers,
            } => Fault::FirstTokenDelay {
                ms: *delay_ms,
                headers: *delay_headers,
            },
            Kind::StreamMalformed { after_tokens } => Fault::Malformed {
                after: *after_tokens,
            },
            Kind::Healthy
            | Kind::Error { .. }
            | Kind::Status { .. }
            | Kind::RateLimit { .. }
            | Kind::Hang { .. }
            | Kind::Slow { .. }
            | Kind::Reset
            | Kind::Refuse
            | Kind::Quota { .. }
            | Kind::ContextLength
            | Kind::ContentPolicy { .. }
            | Kind::LargeError { .. }
            | Kind::Respond { .. }
            | Kind::FailNext { .. }
            | Kind::DownFor { .. } => Fault::None,
        }
    }

    fn after(&self) -> Option<u32> {
        match *self {
            Fault::Error { after, .. }
            | Fault::Cut { after, .. }
            | Fault::NoMarker { after }
            | Fault::Stall { after, .. }
            | Fault::Malformed { after } => Some(after),
            Fault::None | Fault::NoDone | Fault::FirstTokenDelay { .. } | Fault::Refusal => None,
        }
    }
}

/// Everything a streamed answer depends on.
pub struct Spec<'a> {
    pub anthropic: bool,
    pub shape: Shape,
    /// The request's `stream_options.include_usage`.
    pub include_usage: bool,
    pub http10: bool,
    pub persist: Persist,
    pub fault: Fault<'a>,
}

/// Writes one streamed answer into `reply`.
pub fn write(reply: &mut Reply, answer: &Answer<'_>, spec: &Spec<'_>) {
    let events = Events::new(answer, spec);
    let fault = spec.fault;
    let tokens = if fault == Fault::Refusal {
        0
    } else {
        spec.shape.tokens
    };
    if let Fault::FirstTokenDelay { ms, headers: true } = fault {
        reply.sleep(Duration::from_millis(ms));
    }
    reply.head(200, "text/event-stream", answer.name);
    reply.header("cache-control", "no-cache");
    reply.start_stream(spec.http10, spec.persist);
    let preamble = !matches!(
        fault,
        Fault::Error {
            preamble: false,
            ..
        }
    );
    if preamble {
        events.preamble(reply);
    }
    let fault_at = fault.after().map(|after| after.min(tokens));
    for i in 0..=tokens {
        if fault_at == Some(i) {
            match fault {
                Fault::Error { error_type, .. } => {
                    events.error(reply, error_type);
                    reply.end_stream();
                    return;
                }
                Fault::Cut { close, .. } => {
                    match close {
                        CloseHow::Fin => reply.close(),
                        CloseHow::Rst => reply.rst(),
                    }
                    return;
                }
                Fault::NoMarker { .. } => {
                    reply.end_stream();
                    return;
                }
                Fault::Stall { ms, .. } => reply.stall(Duration::from_millis(ms)),
                Fault::Malformed { .. } => events.malformed(reply),
                _ => {}
            }
        }
        if i == tokens {
            break;
        }
        if let (0, Fault::FirstTokenDelay { ms, headers: false }) = (i, fault) {
            reply.sleep(Duration::from_millis(ms));
        }
        reply.sleep(Duration::from_millis(spec.shape.chunk_delay_ms));
        events.content(reply, i);
    }
    events.finish(
        reply,
        tokens,
        fault == Fault::Refusal,
        fault != Fault::NoDone,
    );
    reply.end_stream();
}

/// The event encoder of one answer, for one of the two APIs.
struct Events<'a> {
    answer: &'a Answer<'a>,
    anthropic: bool,
    /// OpenAI: the start of every chunk's JSON, up to `"choices":`.
    prefix: String,
    /// OpenAI: whether a usage chunk ends the stream (and other chunks carry `usage: null`).
    usage_chunk: bool,
    /// Anthropic: whether `message_start` and `message_delta` carry `usage`.
    usage_fields: bool,
    /// The tool call answered instead of text: (name as JSON, arguments).
    tool: Option<(String, String)>,
    /// Content pieces in this answer (the arguments are split into as many).
    tokens: u32,
}

impl<'a> Events<'a> {
    fn new(answer: &'a Answer<'a>, spec: &Spec<'_>) -> Self {
        let usage_chunk = match spec.shape.usage {
            Usage::Auto => spec.include_usage,
            Usage::On => true,
            Usage::Off => false,
        };
        let prefix = format!(
            r#"{{"id":"chatcmpl-mock-{}","object":"chat.completion.chunk","created":{},"model":{},"choices":"#,
            answer.id, answer.created, answer.model_json
        );
        Events {
            answer,
            anthropic: spec.anthropic,
            prefix,
            usage_chunk: !spec.anthropic && usage_chunk,
            usage_fields: spec.shape.usage != Usage::Off,
            tool: answer.tool.map(|name| {
                (
                    serde_json::Value::from(name).to_string(),
                    payloads::tool_arguments(answer.name),
                )
            }),
            tokens: spec.shape.tokens,
        }
    }

    /// `data: JSON\n\n` (OpenAI) as one chunk.
    fn data(&self, reply: &mut Reply, json: &str) {
        reply.chunk(format!("data: {json}\n\n").as_bytes());
    }

    /// `event: NAME\ndata: JSON\n\n` (Anthropic) as one chunk.
    fn event(&self, reply: &mut Reply, name: &str, json: &str) {
        reply.chunk(format!("event: {name}\ndata: {json}\n\n").as_bytes());
    }

    /// An OpenAI chunk with one choice.
    fn choice(&self, reply: &mut Reply, delta: &str, finish_reason: &str) {
        let usage = if self.usage_chunk {
            r#","usage":null"#
        } else {
            ""
        };
        let json = format!(
            r#"{}[{{"index":0,"delta":{delta},"finish_reason":{finish_reason}}}]{usage}}}"#,
            self.prefix
        );
        self.data(reply, &json);
    }

    fn preamble(&self, reply: &mut Reply) {
        if self.anthropic {
            let mut start = format!(
                r#"{{"type":"message_start","message":{{"id":"msg_mock_{}","type":"message","role":"assistant","model":{},"content":[],"stop_reason":null,"stop_sequence":null"#,
                self.answer.id, self.answer.model_json
            );
            if self.usage_fields {
                let _ = write!(
                    start,
                    r#","usage":{{"input_tokens":{PROMPT_TOKENS},"output_tokens":1}}"#
                );
            }
            start.push_str("}}");
            self.event(reply, "message_start", &start);
            let block = match &self.tool {
                Some((name, _)) => format!(
                    r#"{{"type":"content_block_start","index":0,"content_block":{{"type":"tool_use","id":"toolu_mock_{}","name":{name},"input":{{}}}}}}"#,
                    self.answer.id
                ),
                None => r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.to_owned(),
            };
            self.event(reply, "content_block_start", &block);
            self.event(reply, "ping", r#"{"type":"ping"}"#);
        } else if self.tool.is_some() {
            self.choice(reply, r#"{"role":"assistant","content":null}"#, "null");
        } else {
            self.choice(reply, r#"{"role":"assistant","content":""}"#, "null");
        }
    }

    fn content(&self, reply: &mut Reply, i: u32) {
        if let Some((name, arguments)) = &self.tool {
            let piece = payloads::tool_argument_piece(arguments, self.tokens, i);
            let piece = serde_json::Value::from(piece).to_string();
            if self.anthropic {
                let json = format!(
                    r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"input_json_delta","partial_json":{piece}}}}}"#
                );
                self.event(reply, "content_block_delta", &json);
            } else if i == 0 {
                let delta = format!(
                    r#"{{"tool_calls":[{{"index":0,"id":"call_mock_{}","type":"function","function":{{"name":{name},"arguments":{piece}}}}}]}}"#,
                    self.answer.id
                );
                self.choice(reply, &delta, "null");
            } else {
                let delta = format!(
                    r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":{piece}}}}}]}}"#
                );
                self.choice(reply, &delta, "null");
            }
            return;
        }
        let text = serde_json::Value::from(payloads::piece(self.answer.name, i)).to_string();
        if self.anthropic {
            let json = format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{text}}}}}"#
            );
            self.event(reply, "content_block_delta", &json);
        } else {
            self.choice(reply, &format!(r#"{{"content":{text}}}"#), "null");
        }
    }

    fn finish(&self, reply: &mut Reply, tokens: u32, refusal: bool, last: bool) {
        if self.anthropic {
            self.event(
                reply,
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            );
            let stop_reason = match (refusal, &self.tool) {
                (true, _) => "refusal",
                (false, Some(_)) => "tool_use",
                (false, None) => "end_turn",
            };
            let mut delta = format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}","stop_sequence":null}}"#
            );
            if self.usage_fields {
                let _ = write!(delta, r#","usage":{{"output_tokens":{tokens}}}"#);
            }
            delta.push('}');
            self.event(reply, "message_delta", &delta);
            if last {
                self.event(reply, "message_stop", r#"{"type":"message_stop"}"#);
            }
        } else {
            let finish_reason = if self.tool.is_some() {
                r#""tool_calls""#
            } else {
                r#""stop""#
            };
            self.choice(reply, "{}", finish_reason);
            if self.usage_chunk {
                let json = format!(
                    r#"{}[],"usage":{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{tokens},"total_tokens":{}}}}}"#,
                    self.prefix,
                    u64::from(PROMPT_TOKENS) + u64::from(tokens)
                );
                self.data(reply, &json);
            }
            if last {
                reply.chunk(b"data: [DONE]\n\n");
            }
        }
    }

    fn error(&self, reply: &mut Reply, error_type: Option<&str>) {
        if self.anthropic {
            let error_type = error_type.unwrap_or("overloaded_error");
            let message = match error_type {
                "overloaded_error" => "Overloaded",
                "api_error" => "Internal server error",
                _ => "Mock stream error",
            };
            let mut json = Vec::new();
            payloads::anthropic_error(&mut json, error_type, message, None);
            self.event(reply, "error", &String::from_utf8_lossy(&json));
        } else {
            let mut json = Vec::new();
            payloads::openai_stream_error(&mut json, error_type.unwrap_or("server_error"));
            self.data(reply, &String::from_utf8_lossy(&json));
        }
    }

    /// A data line cut off inside its JSON string.
    fn malformed(&self, reply: &mut Reply) {
        if self.anthropic {
            self.event(
                reply,
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"unterminated"#,
            );
        } else {
            let json = format!(
                r#"{}[{{"index":0,"delta":{{"content":"unterminated"#,
                self.prefix
            );
            self.data(reply, &json);
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::reply::Step;
    use serde_json::{json, Value};

    fn answer() -> Answer<'static> {
        Answer {
            id: 1,
            ..payloads::tests::sample_answer()
        }
    }

    fn spec(anthropic: bool, fault: Fault<'static>) -> Spec<'static> {
        Spec {
            anthropic,
            shape: Shape::default(),
            include_usage: false,
            http10: false,
            persist: Persist::KeepAlive,
            fault,
        }
    }

    /// What a client receives: the body after de-chunking, whether the chunked encoding was
    /// terminated, and how the plan ended.
    struct Received {
        body: String,
        terminated: bool,
        end: Option<Step>,
        steps: Vec<Step>,
    }

    fn run(spec: &Spec<'_>) -> Received {
        let mut reply = Reply::default();
        write(&mut reply, &answer(), spec);
        let (sent, end) = reply.sent();
        let sent = String::from_utf8(sent).unwrap();
        let (head, mut rest) = sent.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-type: text/event-stream"));
        assert!(head.contains("x-mock-provider: openai"));
        assert!(head.contains("transfer-encoding: chunked"));
        let mut body = String::new();
        let mut terminated = false;
        while !rest.is_empty() {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                assert_eq!(after, "\r\n", "nothing after the terminator");
                terminated = true;
                break;
            }
            body.push_str(&after[..size]);
            assert_eq!(&after[size..size + 2], "\r\n");
            rest = &after[size + 2..];
        }
        Received {
            body,
            terminated,
            end,
            steps: reply.steps,
        }
    }

    /// Server-sent events as the SDKs' decoders see them: (event name, data).
    fn events(body: &str) -> Vec<(Option<String>, String)> {
        assert!(body.is_empty() || body.ends_with("\n\n"), "{body:?}");
        body.split("\n\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let mut name = None;
                let mut data = String::new();
                for line in block.split('\n') {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else {
                        panic!("unexpected line {line:?}");
                    }
                }
                (name, data)
            })
            .collect()
    }

    fn json(data: &str) -> Value {
        serde_json::from_str(data).unwrap_or_else(|e| panic!("{data}: {e}"))
    }

    /// OpenAI: the concatenated content, the finish reason and whether [DONE] came.
    fn openai(body: &str) -> (String, Option<String>, bool, Vec<Value>) {
        let mut text = String::new();
        let mut finish = None;
        let mut done = false;
        let mut chunks = Vec::new();
        for (name, data) in events(body) {
            assert_eq!(name, None);
            assert!(!done, "nothing after [DONE]");
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v = json(&data);
            if let Some(choice) = v["choices"].get(0) {
                if let Some(t) = choice["delta"]["content"].as_str() {
                    text.push_str(t);
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    finish = Some(f.to_owned());
                }
            }
            chunks.push(v);
        }
        (text, finish, done, chunks)
    }

    /// Anthropic: the event names, checking each data's `type` matches its event name.
    fn anthropic(body: &str) -> (Vec<String>, String, Vec<Value>) {
        let mut names = Vec::new();
        let mut text = String::new();
        let mut values = Vec::new();
        for (name, data) in events(body) {
            let name = name.expect("every Anthropic event is named");
            let v = json(&data);
            assert_eq!(v["type"], name.as_str(), "{data}");
            if name == "content_block_delta" {
                if let Some(t) = v["delta"]["text"].as_str() {
                    text.push_str(t);
                }
            }
            names.push(name);
            values.push(v);
        }
        (names, text, values)
    }

    const ANTHROPIC_OK: [&str; 9] = [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];

    #[test]
    fn a_healthy_openai_stream_is_complete_and_one_chunk_per_event() {
        let r = run(&spec(false, Fault::None));
        assert!(r.terminated);
        assert_eq!(r.end, None);
        let (text, finish, done, chunks) = openai(&r.body);
        assert_eq!(text, "Hello from openai");
        assert_eq!(finish.as_deref(), Some("stop"));
        assert!(done);
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role":"assistant","content":""})
        );
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        // head+role, 3 content chunks, finish, [DONE] with the terminator: 6 writes.
        let flushes = r
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Flush(_)))
            .count();
        assert_eq!(flushes, 6, "{:?}", r.steps);
    }

    #[test]
    fn openai_usage_follows_include_usage_unless_forced() {
        let mut s = spec(false, Fault::None);
        s.include_usage = true;
        let (_, _, done, chunks) = openai(&run(&s).body);
        assert!(done);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens":5,"completion_tokens":3,"total_tokens":8})
        );
        for chunk in &chunks[..chunks.len() - 1] {
            assert_eq!(chunk["usage"], Value::Null);
            assert!(chunk.as_object().unwrap().contains_key("usage"));
        }
        s.shape.usage = Usage::Off;
        let (_, _, _, chunks) = openai(&run(&s).body);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        let mut s = spec(false, Fault::None);
        s.shape.usage = Usage::On;
        let (_, _, _, chunks) = openai(&run(&s).body);
        assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn a_healthy_anthropic_stream_has_every_event_in_order() {
        let r = run(&spec(true, Fault::None));
        assert!(r.terminated);
        let (names, text, values) = anthropic(&r.body);
        assert_eq!(names, ANTHROPIC_OK);
        assert_eq!(text, "Hello from openai");
        assert_eq!(
            values[0]["message"]["usage"],
            json!({"input_tokens":5,"output_tokens":1})
        );
        assert_eq!(values[0]["message"]["content"], json!([]));
        assert_eq!(values[0]["message"]["stop_reason"], Value::Null);
        assert_eq!(
            values[7],
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}})
        );
        let mut s = spec(true, Fault::None);
        s.shape.usage = Usage::Off;
        let (_, _, values) = anthropic(&run(&s).body);
        assert!(values[0]["message"].get("usage").is_none());
        assert!(values[7].get("usage").is_none());
    }

    #[test]
    fn tokens_and_chunk_delay_shape_the_stream() {
        let mut s = spec(false, Fault::None);
        s.shape.tokens = 200;
        s.shape.chunk_delay_ms = 5;
        let r = run(&s);
        let (text, _, done, chunks) = openai(&r.body);
        assert!(done);
        assert_eq!(chunks.len(), 202);
        assert!(text.ends_with(" 199 200"), "{text}");
        let sleeps = r
            .steps
            .iter()
            .filter(|s| **s == Step::Sleep(Duration::from_millis(5)))
            .count();
        assert_eq!(sleeps, 200);
    }

    #[test]
    fn an_error_event_ends_the_stream_without_a_terminal_marker() {
        for after in [0, 2] {
            let r = run(&spec(
                false,
                Fault::Error {
                    after,
                    preamble: true,
                    error_type: None,
                },
            ));
            assert!(r.terminated, "the HTTP body ends properly");
            let events = events(&r.body);
            let (name, last) = events.last().unwrap();
            assert_eq!(*name, None);
            let v = json(last);
            assert_eq!(v["error"]["type"], "server_error");
            assert!(v["error"]["message"].is_string());
            assert_eq!(
                events.len(),
                1 + after as usize + 1,
                "role, {after} tokens, error"
            );
            assert!(!r.body.contains("[DONE]") && !r.body.contains("finish_reason\":\"stop"));
        }
        let r = run(&spec(
            true,
            Fault::Error {
                after: 1,
                preamble: true,
                error_type: None,
            },
        ));
        let (names, _, values) = anthropic(&r.body);
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            values[4],
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
        );
    }

    #[test]
    fn without_preamble_the_error_is_the_first_event() {
        let first = |anthropic| {
            let r = run(&spec(
                anthropic,
                Fault::Error {
                    after: 0,
                    preamble: false,
                    error_type: Some("api_error"),
                },
            ));
            events(&r.body)
        };
        let openai_events = first(false);
        assert_eq!(openai_events.len(), 1);
        assert_eq!(json(&openai_events[0].1)["error"]["type"], "api_error");
        let anthropic_events = first(true);
        assert_eq!(anthropic_events.len(), 1);
        assert_eq!(anthropic_events[0].0.as_deref(), Some("error"));
        assert_eq!(
            json(&anthropic_events[0].1)["error"],
            json!({"type":"api_error","message":"Internal server error"})
        );
    }

    #[test]
    fn a_cut_stream_lacks_the_terminator_and_every_end_marker() {
        for (anthropic_shape, close, step) in [
            (false, CloseHow::Fin, Step::Close),
            (true, CloseHow::Fin, Step::Close),
            (false, CloseHow::Rst, Step::Rst),
        ] {
            let r = run(&spec(anthropic_shape, Fault::Cut { after: 2, close }));
            assert!(!r.terminated, "no terminating chunk");
            assert_eq!(r.end, Some(step));
            assert!(!r.body.contains("[DONE]") && !r.body.contains("\"stop\""));
            assert!(!r.body.contains("message_stop") && !r.body.contains("message_delta"));
            let deltas = if anthropic_shape {
                anthropic(&r.body).1
            } else {
                openai(&r.body).0
            };
            assert_eq!(deltas, "Hello from", "two tokens before the cut");
        }
    }

    #[test]
    fn a_clean_end_without_marker_terminates_the_body_only() {
        let r = run(&spec(false, Fault::NoMarker { after: 3 }));
        assert!(r.terminated);
        assert_eq!(r.end, None);
        let (text, finish, done, _) = openai(&r.body);
        assert_eq!(
            (text.as_str(), finish, done),
            ("Hello from openai", None, false)
        );
        let r = run(&spec(true, Fault::NoMarker { after: 1 }));
        assert!(r.terminated);
        let (names, _, _) = anthropic(&r.body);
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta"
            ]
        );
    }

    #[test]
    fn no_done_keeps_finish_reason_but_drops_the_last_event() {
        let r = run(&spec(false, Fault::NoDone));
        assert!(r.terminated);
        let (text, finish, done, _) = openai(&r.body);
        assert_eq!(
            (text.as_str(), finish.as_deref(), done),
            ("Hello from openai", Some("stop"), false)
        );
        let r = run(&spec(true, Fault::NoDone));
        let (names, _, _) = anthropic(&r.body);
        assert_eq!(names, ANTHROPIC_OK[..8]);
    }

    #[test]
    fn a_stall_holds_the_connection_after_n_tokens_then_completes() {
        let r = run(&spec(false, Fault::Stall { after: 1, ms: 2500 }));
        assert!(r.terminated);
        let stall = r
            .steps
            .iter()
            .position(|s| *s == Step::Stall(Duration::from_millis(2500)))
            .unwrap();
        // head+role chunk, then the first token, then the stall.
        assert_eq!(
            r.steps[..stall]
                .iter()
                .filter(|s| matches!(s, Step::Flush(_)))
                .count(),
            2
        );
        let (text, _, done, _) = openai(&r.body);
        assert_eq!(text, "Hello from openai");
        assert!(done);
    }

    #[test]
    fn a_late_first_token_sends_headers_first_unless_they_are_delayed_too() {
        let r = run(&spec(
            true,
            Fault::FirstTokenDelay {
                ms: 3000,
                headers: false,
            },
        ));
        let delay = Step::Sleep(Duration::from_millis(3000));
        // The head with message_start, then content_block_start and ping, go out first.
        let at = r.steps.iter().position(|s| *s == delay).unwrap();
        assert_eq!(at, 3, "{:?}", r.steps);
        assert!(r.steps[..at].iter().all(|s| matches!(s, Step::Flush(_))));
        assert_eq!(anthropic(&r.body).0, ANTHROPIC_OK);
        let r = run(&spec(
            false,
            Fault::FirstTokenDelay {
                ms: 3000,
                headers: true,
            },
        ));
        assert_eq!(r.steps[0], delay, "nothing before the delay");
        assert_eq!(r.steps.iter().filter(|s| **s == delay).count(), 1);
        assert!(openai(&r.body).2);
    }

    #[test]
    fn a_malformed_event_is_one_bad_data_line_in_a_good_stream() {
        for anthropic_shape in [false, true] {
            let r = run(&spec(anthropic_shape, Fault::Malformed { after: 1 }));
            assert!(r.terminated);
            let all = events(&r.body);
            let bad: Vec<usize> = all
                .iter()
                .enumerate()
                .filter(|(_, (_, data))| {
                    data != "[DONE]" && serde_json::from_str::<Value>(data).is_err()
                })
                .map(|(i, _)| i)
                .collect();
            let expected = if anthropic_shape { 4 } else { 2 };
            assert_eq!(bad, [expected], "{}", r.body);
            assert!(
                r.body.ends_with("data: [DONE]\n\n")
                    || r.body.ends_with("data: {\"type\":\"message_stop\"}\n\n")
            );
        }
    }

    #[test]
    fn an_anthropic_refusal_has_no_content_and_stop_reason_refusal() {
        let r = run(&spec(true, Fault::Refusal));
        let (names, text, values) = anthropic(&r.body);
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(text, "");
        assert_eq!(values[4]["delta"]["stop_reason"], "refusal");
    }

    /// Runs `spec` for an answer that calls `get_weather`.
    fn run_tool(spec: &Spec<'_>) -> Received {
        let mut a = answer();
        a.tool = Some("get_weather");
        let mut reply = Reply::default();
        write(&mut reply, &a, spec);
        let (sent, end) = reply.sent();
        let sent = String::from_utf8(sent).unwrap();
        let body = sent.split_once("\r\n\r\n").unwrap().1;
        // One chunk per event: de-chunk by the sizes.
        let mut rest = body;
        let mut out = String::new();
        let mut terminated = false;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                terminated = true;
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        Received {
            body: out,
            terminated,
            end,
            steps: reply.steps,
        }
    }

    #[test]
    fn tool_calls_stream_their_arguments_as_deltas() {
        let r = run_tool(&spec(false, Fault::None));
        assert!(r.terminated);
        let (_, finish, done, chunks) = openai(&r.body);
        assert_eq!((finish.as_deref(), done), (Some("tool_calls"), true));
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role":"assistant","content":null})
        );
        let first = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(first["id"], "call_mock_1");
        assert_eq!(first["function"]["name"], "get_weather");
        let arguments: String = chunks[1..4]
            .iter()
            .map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(json(&arguments), json!({"query":"Hello from openai"}));

        let r = run_tool(&spec(true, Fault::None));
        let (names, text, values) = anthropic(&r.body);
        assert_eq!(names, ANTHROPIC_OK);
        assert_eq!(text, "");
        assert_eq!(
            values[1]["content_block"],
            json!({"type":"tool_use","id":"toolu_mock_1","name":"get_weather","input":{}})
        );
        let partial: String = values[3..6]
            .iter()
            .map(|v| {
                assert_eq!(v["delta"]["type"], "input_json_delta");
                v["delta"]["partial_json"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(json(&partial), json!({"query":"Hello from openai"}));
        assert_eq!(values[7]["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn fault_positions_past_the_last_token_apply_before_the_finish() {
        let r = run(&spec(
            false,
            Fault::Cut {
                after: 99,
                close: CloseHow::Fin,
            },
        ));
        let (text, finish, _, _) = openai(&r.body);
        assert_eq!((text.as_str(), finish), ("Hello from openai", None));
    }
}
