//! An Anthropic Messages stream as OpenAI `chat.completion.chunk`s, event by event.
//!
//! | Anthropic event | OpenAI `data:` line |
//! |---|---|
//! | `message_start` | a chunk with `delta: {"role":"assistant","content":""}` (id and model kept for every chunk) |
//! | `content_block_start` `tool_use` | a `tool_calls` delta: index (counting tool calls), id, type, name, `arguments: ""` |
//! | `content_block_start` `text` with text | a `content` delta |
//! | `content_block_delta` `text_delta` | a `content` delta |
//! | `content_block_delta` `input_json_delta` | a `tool_calls` delta of the block's call, `arguments` only |
//! | `message_delta` with `stop_reason` | a chunk with `delta: {}` and `finish_reason` |
//! | `message_stop` | the usage chunk (`choices: []`, input tokens from `message_start`), then `[DONE]` |
//! | `error` | `{"error":{..}}` as OpenAI's SDK raises it; nothing is translated after it |
//! | `ping`, `content_block_stop`, thinking deltas, unknown events | nothing |
//! | an event past the framer's cap (other than `ping`) | an `error` (its tokens are lost, so the answer would be wrong) |
//!
//! The usage chunk is sent whether or not the client asked for `stream_options.include_usage`
//! (the translator does not see the request); OpenAI's SDK yields it as a chunk without
//! choices.
//!
//! [`Stream::finish`] adds nothing: a stream that ends without `message_stop` was cut, and
//! the caller, which knows why, appends its own error event in the client's shape.
//!
//! Memory: the framer's partial event (at most [`EVENT_CAP`] bytes), the message's id and
//! model, and a few counters.

use serde_json::Value;

use super::answer::{error_value, finish_reason, str_of, tool_call, usage_value};
use super::json::{obj, parse, s};
use crate::sse::{Frame, Framer};

/// Largest event held while it is assembled.
pub const EVENT_CAP: usize = 256 * 1024;

/// One stream's translation state.
#[derive(Debug)]
pub struct Stream {
    framer: Framer,
    state: State,
}

#[derive(Debug, Default)]
struct State {
    id: String,
    model: String,
    input_tokens: u64,
    cached_tokens: u64,
    output_tokens: u64,
    /// Tool calls started so far (the next one's OpenAI index).
    tool_calls: u64,
    /// The OpenAI index of the tool call the open content block carries.
    open_tool: Option<u64>,
    /// An error was sent: the client's SDK stops there.
    failed: bool,
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
            state: State::default(),
        }
    }

    /// Feeds the next chunk of the Anthropic stream, appending the OpenAI lines of every
    /// event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let state = &mut self.state;
        self.framer.feed(chunk, &mut |frame| match frame {
            Frame::Event(e) => state.event(e.data, out),
            Frame::Oversized { name, .. } if name != Some("ping") => {
                let message = "an upstream stream event exceeded the translation limit";
                state.fail(out, Some("api_error"), message);
            }
            Frame::Oversized { .. } => {}
        });
    }

    /// The upstream's stream ended: nothing to add (see the module's note on cut streams).
    pub fn finish(&mut self, _out: &mut Vec<u8>) {}

    /// Bytes held for a partial event (at most [`EVENT_CAP`]).
    pub fn held_bytes(&self) -> usize {
        self.framer.held_bytes()
    }
}

impl State {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.failed {
            return;
        }
        let Some(ev) = parse(data) else {
            return;
        };
        let field = |k: &str| ev.get(k).unwrap_or(&Value::Null);
        match str_of(&ev, "type") {
            "message_start" => {
                let msg = field("message");
                self.id = str_of(msg, "id").to_string();
                self.model = str_of(msg, "model").to_string();
                let usage = msg.get("usage");
                let count = |k| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
                self.cached_tokens = count("cache_read_input_tokens").unwrap_or(0);
                self.input_tokens = ["input_tokens", "cache_creation_input_tokens"]
                    .into_iter()
                    .filter_map(count)
                    .fold(self.cached_tokens, u64::saturating_add);
                self.output_tokens = count("output_tokens").unwrap_or(0);
                self.chunk(
                    out,
                    obj(&mut [("role", s("assistant")), ("content", s(""))]),
                    None,
                );
            }
            "content_block_start" => {
                let block = field("content_block");
                self.open_tool = None;
                match str_of(block, "type") {
                    "tool_use" => {
                        let index = self.tool_calls;
                        self.tool_calls = index.saturating_add(1);
                        self.open_tool = Some(index);
                        let mut call =
                            tool_call(str_of(block, "id"), str_of(block, "name"), String::new());
                        if let Some(c) = call.as_object_mut() {
                            c.insert("index".into(), index.into());
                        }
                        self.tool_chunk(out, call);
                    }
                    "text" => self.text(out, str_of(block, "text")),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = field("delta");
                match (str_of(delta, "type"), self.open_tool) {
                    ("text_delta", _) => self.text(out, str_of(delta, "text")),
                    ("input_json_delta", Some(index)) => {
                        let arguments = str_of(delta, "partial_json");
                        if !arguments.is_empty() {
                            let function = obj(&mut [("arguments", s(arguments))]);
                            let call = obj(&mut [("index", index.into()), ("function", function)]);
                            self.tool_chunk(out, call);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => self.open_tool = None,
            "message_delta" => {
                let usage = field("usage");
                if let Some(n) = usage.get("output_tokens").and_then(Value::as_u64) {
                    self.output_tokens = n;
                }
                if let Some(stop) = field("delta").get("stop_reason").and_then(Value::as_str) {
                    self.chunk(out, obj(&mut []), Some(finish_reason(Some(stop))));
                }
            }
            "message_stop" => {
                let usage = usage_value(self.input_tokens, self.output_tokens, self.cached_tokens);
                let mut chunk = self.envelope(Value::Array(Vec::new()));
                if let Some(c) = chunk.as_object_mut() {
                    c.insert("usage".into(), usage);
                }
                data_line(out, &chunk);
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            "error" => {
                let err = field("error");
                let kind = err.get("type").and_then(Value::as_str);
                self.fail(out, kind, str_of(err, "message"));
            }
            // ping, and event types added later.
            _ => {}
        }
    }

    fn text(&self, out: &mut Vec<u8>, text: &str) {
        if !text.is_empty() {
            self.chunk(out, obj(&mut [("content", s(text))]), None);
        }
    }

    /// A chunk whose delta is one tool call.
    fn tool_chunk(&self, out: &mut Vec<u8>, call: Value) {
        let delta = obj(&mut [("tool_calls", Value::Array(vec![call]))]);
        self.chunk(out, delta, None);
    }

    /// One chunk with one choice.
    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let choice = obj(&mut [
            ("index", Value::from(0)),
            ("delta", delta),
            ("logprobs", Value::Null),
            ("finish_reason", finish.map_or(Value::Null, s)),
        ]);
        data_line(out, &self.envelope(Value::Array(vec![choice])));
    }

    fn envelope(&self, choices: Value) -> Value {
        obj(&mut [
            ("id", s(&self.id)),
            ("object", s("chat.completion.chunk")),
            ("created", Value::from(0)),
            ("model", s(&self.model)),
            ("choices", choices),
        ])
    }

    /// Sends OpenAI's stream error (a chunk with a top-level `error`) and stops translating.
    fn fail(&mut self, out: &mut Vec<u8>, kind: Option<&str>, message: &str) {
        if !self.failed {
            self.failed = true;
            // 500: an error inside a stream has no status of its own.
            data_line(out, &error_value(500, kind, message));
        }
    }
}

fn data_line(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
