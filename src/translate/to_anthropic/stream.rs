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
//! | `message_stop` | the usage chunk (`choices: []`, input tokens from `message_start`) when the client asked for it, then `[DONE]` |
//! | `error` | `{"error":{..}}` as OpenAI's SDK raises it; nothing is translated after it |
//! | `ping`, `content_block_stop`, thinking deltas, unknown events | nothing |
//! | an event past the framer's cap (other than `ping`) | an `error` (its tokens are lost, so the answer would be wrong) |
//!
//! The usage chunk is sent only when the client asked for `stream_options.include_usage`, as
//! OpenAI does ([`Stream::usage_chunk`]; on by default, the exchange switches it off for a
//! client that did not ask).
//!
//! [`Stream::finish`] adds nothing: a stream that ends without `message_stop` was cut, and
//! the caller, which knows why, appends its own error event in the client's shape.
//!
//! Memory: the framer's partial event (at most [`EVENT_CAP`] bytes), the message's id and
//! model, and a few counters.

use serde_json::Value;

use crate::translate::to_openai::json::{parse, W};

use super::answer::{error_value, finish_reason, str_of, tool_call, usage_value};
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
    /// No usage chunk before `[DONE]` (the client did not ask for one).
    no_usage_chunk: bool,
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

    /// Whether the stream ends with the usage chunk (`stream_options.include_usage`).
    pub fn usage_chunk(&mut self, on: bool) {
        self.state.no_usage_chunk = !on;
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
                self.input_tokens = self
                    .cached_tokens
                    .saturating_add(count("input_tokens").unwrap_or(0))
                    .saturating_add(count("cache_creation_input_tokens").unwrap_or(0));
                self.output_tokens = count("output_tokens").unwrap_or(0);
                let mut delta = W::with_capacity(40);
                delta.raw("{\"content\":\"\",\"role\":\"assistant\"}");
                self.chunk(out, &delta, None);
            }
            "content_block_start" => {
                let block = field("content_block");
                self.open_tool = None;
                match str_of(block, "type") {
                    "tool_use" => {
                        let index = self.tool_calls;
                        self.tool_calls = index.saturating_add(1);
                        self.open_tool = Some(index);
                        let mut call = W::with_capacity(96);
                        let (id, name) = (str_of(block, "id"), str_of(block, "name"));
                        tool_call(&mut call, id, name, "", Some(index));
                        self.tool_chunk(out, &call);
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
                            let mut call = W::with_capacity(arguments.len() + 48);
                            call.raw("{\"function\":{\"arguments\":")
                                .str(arguments)
                                .raw("},\"index\":")
                                .num(index)
                                .raw("}");
                            self.tool_chunk(out, &call);
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
                    let mut delta = W::with_capacity(2);
                    delta.raw("{}");
                    self.chunk(out, &delta, Some(finish_reason(Some(stop))));
                }
            }
            "message_stop" if self.no_usage_chunk => {
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            "message_stop" => {
                let mut w = W::with_capacity(256);
                self.envelope(&mut w, b"[]");
                w.0.pop();
                w.raw(",\"usage\":");
                usage_value(
                    &mut w,
                    self.input_tokens,
                    self.output_tokens,
                    self.cached_tokens,
                );
                w.raw("}");
                data_line(out, &w);
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
            let mut delta = W::with_capacity(text.len() + 16);
            delta.raw("{\"content\":").str(text).raw("}");
            self.chunk(out, &delta, None);
        }
    }

    /// A chunk whose delta is one tool call.
    fn tool_chunk(&self, out: &mut Vec<u8>, call: &W) {
        let mut delta = W::with_capacity(call.0.len() + 16);
        delta.raw("{\"tool_calls\":[");
        delta.0.extend_from_slice(&call.0);
        delta.raw("]}");
        self.chunk(out, &delta, None);
    }

    /// One chunk with one choice.
    fn chunk(&self, out: &mut Vec<u8>, delta: &W, finish: Option<&str>) {
        let mut choice = W::with_capacity(delta.0.len() + 64);
        choice.raw("[{\"delta\":");
        choice.0.extend_from_slice(&delta.0);
        choice.raw(",\"finish_reason\":");
        match finish {
            Some(f) => choice.str(f),
            None => choice.raw("null"),
        };
        choice.raw(",\"index\":0,\"logprobs\":null}]");
        let mut w = W::with_capacity(choice.0.len() + 128);
        self.envelope(&mut w, &choice.0);
        data_line(out, &w);
    }

    /// `{"choices":..,"created":0,"id":..,"model":..,"object":"chat.completion.chunk"}`.
    fn envelope(&self, w: &mut W, choices: &[u8]) {
        w.raw("{\"choices\":");
        w.0.extend_from_slice(choices);
        w.raw(",\"created\":0,\"id\":")
            .str(&self.id)
            .raw(",\"model\":")
            .str(&self.model)
            .raw(",\"object\":\"chat.completion.chunk\"}");
    }

    /// Sends OpenAI's stream error (a chunk with a top-level `error`) and stops translating.
    fn fail(&mut self, out: &mut Vec<u8>, kind: Option<&str>, message: &str) {
        if !self.failed {
            self.failed = true;
            // 500: an error inside a stream has no status of its own.
            let mut w = W::with_capacity(message.len() + 96);
            error_value(&mut w, 500, kind, message);
            data_line(out, &w);
        }
    }
}

fn data_line(out: &mut Vec<u8>, w: &W) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&w.0);
    out.extend_from_slice(b"\n\n");
}
