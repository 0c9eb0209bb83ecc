//! An OpenAI Chat Completions stream as Anthropic Messages events, chunk by chunk.
//!
//! The [`Framer`] cuts the upstream's bytes into `data:` events (bounded: one event, at most
//! [`EVENT_CAP`] bytes); each complete chunk is translated at once and nothing else is held,
//! so every token goes out in the call that completed it:
//!
//! | OpenAI | Anthropic |
//! |---|---|
//! | first chunk | `message_start` (its `id` and `model`; usage 0, told at the end) |
//! | `delta.content` / `delta.refusal` | `content_block_start` text (first time), `content_block_delta` `text_delta` |
//! | `delta.tool_calls[i]` with a new `index` | the open block's `content_block_stop`, `content_block_start` `tool_use` (`id`, `name`, `input: {}`) |
//! | `delta.tool_calls[i].function.arguments` | `content_block_delta` `input_json_delta` (`partial_json`) |
//! | `finish_reason` | the open block's `content_block_stop`; the stop reason is kept |
//! | the usage chunk (`choices: []`, after `finish_reason` with `include_usage`) | kept |
//! | `[DONE]` | `message_delta` (stop reason, `input_tokens`, `output_tokens`), `message_stop` |
//! | `{"error":{...}}` | `event: error` (the SDK raises it); the rest of the stream is ignored |
//!
//! `message_delta` waits for `[DONE]` so the usage chunk, which comes between the
//! `finish_reason` chunk and `[DONE]`, is in it. If the stream ends after a `finish_reason`
//! without `[DONE]`, [`Stream::finish`] writes `message_delta` and `message_stop` (the answer
//! was whole); if it ends before any `finish_reason`, it writes nothing: the stream was cut
//! and the caller appends its own error event. OpenAI streams tool calls one after another;
//! a delta for a call whose block was closed opens a new block. Chunks that are not JSON
//! objects, `choices` other than the first (the request never asks for `n`), and an event
//! over the cap are skipped.

use serde_json::Value;

use super::answer::{error_type, stop_reason, usage};
use super::json::{at, parse, W};
use crate::sse::{Frame, Framer};

/// Largest event held while it is assembled.
pub const EVENT_CAP: usize = 256 * 1024;

/// The content block being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    None,
    Text(u32),
    /// A tool call: OpenAI's `index`, Anthropic's block index.
    Tool(u64, u32),
}

#[derive(Debug)]
struct State {
    started: bool,
    /// `message_stop` or an error went out: nothing more is written.
    done: bool,
    block: Block,
    next_index: u32,
    stop: Option<&'static str>,
    usage: Option<(u64, u64)>,
}

/// One stream's translation state.
#[derive(Debug)]
pub struct Stream {
    framer: Framer,
    state: State,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::new()
    }
}

impl Stream {
    pub fn new() -> Stream {
        Stream {
            framer: Framer::new(EVENT_CAP),
            state: State {
                started: false,
                done: false,
                block: Block::None,
                next_index: 0,
                stop: None,
                usage: None,
            },
        }
    }

    /// Feeds the next chunk of the OpenAI stream, appending the Anthropic events it completes.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let state = &mut self.state;
        self.framer.feed(chunk, &mut |frame| {
            if let Frame::Event(e) = frame {
                state.on_data(e.data, out);
            }
        });
    }

    /// The upstream's stream ended: closes the message when a `finish_reason` came without
    /// `[DONE]`; nothing otherwise (see the module doc).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.state.done && self.state.stop.is_some() {
            self.state.end(out);
        }
    }

    /// Bytes held for a partial event (at most [`EVENT_CAP`]).
    pub fn held_bytes(&self) -> usize {
        self.framer.held_bytes()
    }
}

fn push_event(out: &mut Vec<u8>, name: &str, parts: &[&str]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

impl State {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.end(out);
            return;
        }
        let Some(chunk @ Value::Object(_)) = parse(data) else {
            return;
        };
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            self.error(err, out);
            return;
        }
        let text_of = |k: &str| chunk.get(k).and_then(Value::as_str).unwrap_or("");
        self.start(text_of("id"), text_of("model"), out);
        if let Some(choice) = at(&chunk, &["choices", "0"]) {
            if let Some(delta) = choice.get("delta") {
                self.delta(delta, out);
            }
            if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
                self.close_block(out);
                self.stop = Some(stop_reason(finish));
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            let (input_tokens, output_tokens, cached) = usage(u);
            self.usage = Some((input_tokens.saturating_add(cached), output_tokens));
        }
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        push_event(
            out,
            "message_start",
            &[
                r#"{"type":"message_start","message":{"id":"#,
                &quoted(id),
                r#","type":"message","role":"assistant","content":[],"model":"#,
                &quoted(model),
                r#","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}"#,
            ],
        );
    }

    fn delta(&mut self, delta: &Value, out: &mut Vec<u8>) {
        for key in ["content", "refusal"] {
            if let Some(text) = delta
                .get(key)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                let index = match self.block {
                    Block::Text(i) => i,
                    _ => {
                        self.close_block(out);
                        let i = self.open(Block::Text);
                        self.block_start(i, r#"{"type":"text","text":""}"#, out);
                        i
                    }
                };
                self.block_delta(index, "text_delta", "text", text, out);
            }
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let at = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function");
            let field = |k: &str| {
                f.and_then(|f| f.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
            };
            let index = match self.block {
                Block::Tool(open_at, i) if open_at == at => i,
                _ => {
                    self.close_block(out);
                    let i = self.open(|i| Block::Tool(at, i));
                    let id = call.get("id").and_then(Value::as_str).unwrap_or("");
                    let mut start = W::with_capacity(64);
                    start
                        .raw(r#"{"type":"tool_use","id":"#)
                        .str(id)
                        .raw(r#","name":"#)
                        .str(field("name"))
                        .raw(r#","input":{}}"#);
                    // W writes UTF-8 only: the fallback is never taken.
                    self.block_start(i, std::str::from_utf8(&start.0).unwrap_or("{}"), out);
                    i
                }
            };
            let args = field("arguments");
            if !args.is_empty() {
                self.block_delta(index, "input_json_delta", "partial_json", args, out);
            }
        }
    }

    /// Takes the next block index for `block`.
    fn open(&mut self, block: impl Fn(u32) -> Block) -> u32 {
        let i = self.next_index;
        self.next_index = i.saturating_add(1);
        self.block = block(i);
        i
    }

    fn block_start(&self, index: u32, block: &str, out: &mut Vec<u8>) {
        push_event(
            out,
            "content_block_start",
            &[
                r#"{"type":"content_block_start","index":"#,
                &index.to_string(),
                r#","content_block":"#,
                block,
                "}",
            ],
        );
    }

    fn block_delta(&self, index: u32, kind: &str, key: &str, text: &str, out: &mut Vec<u8>) {
        push_event(
            out,
            "content_block_delta",
            &[
                r#"{"type":"content_block_delta","index":"#,
                &index.to_string(),
                r#","delta":{"type":""#,
                kind,
                r#"",""#,
                key,
                r#"":"#,
                &quoted(text),
                "}}",
            ],
        );
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let (Block::Text(i) | Block::Tool(_, i)) = self.block else {
            return;
        };
        self.block = Block::None;
        push_event(
            out,
            "content_block_stop",
            &[
                r#"{"type":"content_block_stop","index":"#,
                &i.to_string(),
                "}",
            ],
        );
    }

    /// `[DONE]`: closes what is open, then `message_delta` and `message_stop`.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.start("", "", out);
        self.close_block(out);
        self.done = true;
        let (input_tokens, output_tokens) = self.usage.unwrap_or((0, 0));
        push_event(
            out,
            "message_delta",
            &[
                r#"{"type":"message_delta","delta":{"stop_reason":""#,
                self.stop.unwrap_or("end_turn"),
                r#"","stop_sequence":null},"usage":{"input_tokens":"#,
                &input_tokens.to_string(),
                r#","output_tokens":"#,
                &output_tokens.to_string(),
                "}}",
            ],
        );
        push_event(out, "message_stop", &[r#"{"type":"message_stop"}"#]);
    }

    /// An OpenAI error chunk as Anthropic's `error` event, its type told by OpenAI's `code` or
    /// `type` (rate limits, invalid requests, overload), `api_error` otherwise.
    fn error(&mut self, err: &Value, out: &mut Vec<u8>) {
        self.done = true;
        let field = |k: &str| err.get(k).and_then(Value::as_str);
        // OpenAI's `code` is the precise one (`rate_limit_exceeded` comes with type `requests`).
        let status = [field("code"), field("type")]
            .into_iter()
            .flatten()
            .find_map(|k| match k {
                "rate_limit_exceeded" | "insufficient_quota" | "rate_limit_error" => Some(429),
                "invalid_request_error" | "context_length_exceeded" => Some(400),
                "server_is_overloaded" | "overloaded_error" => Some(529),
                _ => None,
            });
        let kind = error_type(status.unwrap_or(500));
        let message = field("message").unwrap_or("upstream stream error");
        push_event(
            out,
            "error",
            &[
                r#"{"type":"error","error":{"type":""#,
                kind,
                r#"","message":"#,
                &quoted(message),
                "}}",
            ],
        );
    }
}
