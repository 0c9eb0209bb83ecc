//! The stream judge: what a streamed LLM response is doing, told chunk by chunk.
//!
//! Providers fail inside 200-OK streams: an error event, a cut before the last token. The
//! judge is fed a response body as it arrives and says, for each chunk, whether the first
//! *content* event arrived in it (the commit point), whether an error event or a terminal
//! marker was first seen in it; and at the end, given how the stream ended, a [`Verdict`]. It
//! also keeps the token usage the provider sends and counts malformed events.
//!
//! It knows three shapes, from their public API references, and tells them apart by the
//! events themselves (the `event:` name, else the data's `type` field, else a Chat chunk):
//!
//! | | OpenAI Chat Completions | Anthropic Messages | OpenAI Responses |
//! |---|---|---|---|
//! | content (commit) | a `choices[].delta` with text, refusal, reasoning or a tool call | `content_block_delta` | any `response.*.delta` |
//! | terminal | `[DONE]`, a non-null `finish_reason` | `message_stop` | `response.completed`, `response.incomplete` |
//! | error | a chunk with a top-level `error` | `error` (`error.type`, e.g. `overloaded_error`) | `error`, `response.failed` |
//! | usage | `usage.prompt_tokens` / `completion_tokens` | `message_start`'s `message.usage.input_tokens`, `message_delta`'s `usage.output_tokens` | `response.usage.input_tokens` / `output_tokens` |
//!
//! Memory is the framer's one event (at most `cap` bytes) and the first error, cut to a few
//! hundred bytes; the stream itself is never kept. The hot path parses only what it reads:
//! an event acts by its name, and its data is read in one pass that keeps only the few fields
//! the judge uses (borrowed, not copied) and lets serde_json skip the rest, which still
//! checks the whole event is JSON, for the malformed count. Events that say all by their name
//! and carry nothing the judge reads (`ping`, `content_block_start`/`stop`, the Responses
//! lifecycle and `*.done` events, whose data can be the whole answer) are not parsed at all.
//! An event over the cap is judged by its name: a long answer's `response.completed` is still
//! a terminal marker, without its usage.
//!
//! A malformed event acts by its name only (an `error` event with garbage data is still an
//! error; an unnamed one says nothing). Valid JSON of an unexpected form is not malformed: the
//! fields the judge reads are taken where they have the expected type and ignored otherwise.

use super::frame::{Frame, Framer};
use super::wire::{ErrorBody, TokenUsage, Wire};

/// The streamed APIs the judge knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// OpenAI Chat Completions (and Azure OpenAI): `data:` chunks, then `data: [DONE]`.
    OpenAiChat,
    /// Anthropic Messages: `event:` + `data:` pairs, ending with `message_stop`.
    Anthropic,
    /// OpenAI Responses: typed `response.*` events, ending with `response.completed`.
    OpenAiResponses,
}

/// Token counts the provider reported; `None` until it sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens (`prompt_tokens`, `input_tokens`).
    pub input: Option<u64>,
    /// Generated tokens (`completion_tokens`, `output_tokens`).
    pub output: Option<u64>,
}

/// An error event of the stream. The strings are cut to [`StreamError::KIND_CAP`] and
/// [`StreamError::MESSAGE_CAP`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// The provider's error type (`overloaded_error`, `server_error`), else its code, else the
    /// event (`error`, `response.failed`).
    pub kind: String,
    /// The provider's error code when it sent one (`rate_limit_exceeded`,
    /// `insufficient_quota`).
    pub code: Option<String>,
    /// The provider's message; empty when it sent none.
    pub message: String,
}

impl StreamError {
    pub const KIND_CAP: usize = 64;
    pub const MESSAGE_CAP: usize = 512;
}

/// What one fed chunk brought. One chunk can bring several things (the first content and an
/// error event, say); none of its bytes has reached the client yet when the caller reads this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// The first content event ended in this chunk, this many bytes into it: the commit point.
    pub commit: Option<usize>,
    /// The first error event was seen in this chunk ([`Judge::error`] has it).
    pub error: bool,
    /// The first terminal marker was seen in this chunk.
    pub terminal: bool,
    /// Malformed events completed in this chunk.
    pub malformed: u32,
}

/// How the stream ended, as the caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The body ended normally at the HTTP level (end of stream).
    Clean,
    /// The upstream reset, or the stream was abandoned (a stall, a deadline).
    Reset,
}

/// The judgment of a whole stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A terminal marker arrived, and no error event. What follows the marker does not matter
    /// (a reset after `finish_reason`, before `[DONE]` or the usage chunk, loses no answer).
    Complete,
    /// It ended before any terminal marker, without an error event.
    Truncated(Truncation),
    /// An error event arrived (the first one is kept), terminal marker or not.
    Errored(StreamError),
}

/// How a truncated stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// The upstream reset or the stream was abandoned.
    Reset,
    /// It ended cleanly but inside an event (a partial line or an undispatched event).
    MidEvent,
    /// It ended cleanly between events, before a terminal marker.
    NoTerminal,
}

/// Judges one streamed response. Feed every chunk of the body to [`Judge::feed`], then ask
/// [`Judge::verdict`] how the stream ended.
#[derive(Debug, Clone)]
pub struct Judge {
    framer: Framer,
    seen: Seen,
}

/// Everything the judge learnt, apart from the framer (so the framer's callback can write it).
#[derive(Debug, Clone, Default)]
struct Seen {
    expected: Option<Shape>,
    detected: Option<Shape>,
    commit_at: Option<u64>,
    terminal: bool,
    error: Option<StreamError>,
    usage: Usage,
    malformed: u32,
    oversized: u32,
}

impl Judge {
    /// A judge holding at most `cap` bytes of one event. `expect` is the shape the caller
    /// expects (from the request's API), if it knows; the shape is otherwise detected from the
    /// first event that tells. Every event is read by its own markers either way.
    pub fn new(cap: usize, expect: Option<Shape>) -> Judge {
        Judge {
            framer: Framer::new(cap),
            seen: Seen {
                expected: expect,
                ..Seen::default()
            },
        }
    }

    /// Reads the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Step {
        let base = self.framer.bytes_seen();
        let had_commit = self.seen.commit_at.is_some();
        let had_error = self.seen.error.is_some();
        let had_terminal = self.seen.terminal;
        let malformed = self.seen.malformed;
        let seen = &mut self.seen;
        self.framer.feed(chunk, &mut |frame| seen.frame(frame));
        let commit = match self.seen.commit_at {
            Some(at) if !had_commit => {
                Some(usize::try_from(at.saturating_sub(base)).unwrap_or(chunk.len()))
            }
            _ => None,
        };
        Step {
            commit,
            error: !had_error && self.seen.error.is_some(),
            terminal: !had_terminal && self.seen.terminal,
            malformed: self.seen.malformed.saturating_sub(malformed),
        }
    }

    /// The judgment if the stream ended now, the way `end` says.
    pub fn verdict(&self, end: End) -> Verdict {
        if let Some(error) = &self.seen.error {
            return Verdict::Errored(error.clone());
        }
        if self.seen.terminal {
            return Verdict::Complete;
        }
        Verdict::Truncated(match end {
            End::Reset => Truncation::Reset,
            End::Clean if self.framer.mid_event() => Truncation::MidEvent,
            End::Clean => Truncation::NoTerminal,
        })
    }

    /// The shape detected from the events, else the one expected.
    pub fn shape(&self) -> Option<Shape> {
        self.seen.detected.or(self.seen.expected)
    }

    /// The shape the events showed, if one did (compare with the expected one to spot an
    /// upstream that answers in another API).
    pub fn detected(&self) -> Option<Shape> {
        self.seen.detected
    }

    /// Whether the first content event arrived.
    pub fn committed(&self) -> bool {
        self.seen.commit_at.is_some()
    }

    /// Offset in the stream just past the first content event.
    pub fn commit_offset(&self) -> Option<u64> {
        self.seen.commit_at
    }

    /// Whether a terminal marker arrived.
    pub fn terminal(&self) -> bool {
        self.seen.terminal
    }

    /// The first error event.
    pub fn error(&self) -> Option<&StreamError> {
        self.seen.error.as_ref()
    }

    /// Token usage as reported so far.
    pub fn usage(&self) -> Usage {
        self.seen.usage
    }

    /// Events whose data the judge read and found not to be JSON.
    pub fn malformed(&self) -> u32 {
        self.seen.malformed
    }

    /// Events dropped for outgrowing the cap (judged by their name alone).
    pub fn oversized(&self) -> u32 {
        self.seen.oversized
    }

    /// Whether the stream, if it ended now, would end inside an event.
    pub fn mid_event(&self) -> bool {
        self.framer.mid_event()
    }

    /// Bytes fed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.framer.bytes_seen()
    }
}

/// An event's data, as the judge has it.
enum Data<'a> {
    /// Not read yet.
    Raw(&'a [u8]),
    /// Read already (an unnamed event, named by its `type`).
    Read(Wire<'a>),
    /// Dropped for outgrowing the cap.
    Dropped,
}

impl Seen {
    fn frame(&mut self, frame: Frame<'_>) {
        match frame {
            Frame::Event(e) => match e.name {
                Some(name) => self.named(name, Data::Raw(e.data), e.end),
                None => self.unnamed(e.data, e.end),
            },
            Frame::Oversized { name, end } => {
                self.oversized = self.oversized.saturating_add(1);
                if let Some(name) = name {
                    self.named(name, Data::Dropped, end);
                }
            }
        }
    }

    /// An event with an `event:` name (or a `type` in its data). It acts by its name; its
    /// data is read for what the name does not tell, and checked for the malformed count.
    fn named(&mut self, name: &str, data: Data<'_>, end: u64) {
        match name {
            "ping" | "content_block_start" | "content_block_stop" => self.detect(Shape::Anthropic),
            "content_block_delta" => {
                self.detect(Shape::Anthropic);
                self.read(data);
                self.content(end);
            }
            "message_start" | "message_delta" => {
                self.detect(Shape::Anthropic);
                if let Some(w) = self.read(data) {
                    // `message_start`'s `message.usage`, `message_delta`'s `usage`.
                    self.add_usage(w.usage);
                }
            }
            "message_stop" => {
                self.detect(Shape::Anthropic);
                self.read(data);
                self.terminal = true;
            }
            "error" => {
                let w = self.read(data).unwrap_or_default();
                let body = match w.error {
                    // Anthropic: `{"type":"error","error":{"type":..,"message":..}}`.
                    Some(body) => {
                        self.detect(Shape::Anthropic);
                        body
                    }
                    // Responses: `{"type":"error","code":..,"message":..}`.
                    None => {
                        if w.code.is_some() || w.message.is_some() {
                            self.detect(Shape::OpenAiResponses);
                        }
                        ErrorBody {
                            kind: None,
                            code: w.code,
                            message: w.message,
                        }
                    }
                };
                self.fail(body.into_error("error"));
            }
            "response.completed" | "response.incomplete" => {
                self.detect(Shape::OpenAiResponses);
                if let Some(w) = self.read(data) {
                    // `response.usage`.
                    self.add_usage(w.usage);
                }
                self.terminal = true;
            }
            "response.failed" => {
                self.detect(Shape::OpenAiResponses);
                // `response.error` and `response.usage`.
                let w = self.read(data).unwrap_or_default();
                self.add_usage(w.usage);
                self.fail(w.error.unwrap_or_default().into_error("response.failed"));
            }
            _ if name.starts_with("response.") => {
                self.detect(Shape::OpenAiResponses);
                if name.ends_with(".delta") {
                    self.read(data);
                    self.content(end);
                }
            }
            // Not an event of the shapes we know: nothing to judge.
            _ => {}
        }
    }

    /// An event without a name: a Chat Completions chunk, `[DONE]`, or a typed event whose
    /// `event:` line was left out (its data's `type` names it).
    fn unnamed(&mut self, data: &[u8], end: u64) {
        if data.trim_ascii() == b"[DONE]" {
            self.detect(Shape::OpenAiChat);
            self.terminal = true;
            return;
        }
        let Some(mut w) = self.read(Data::Raw(data)) else {
            return;
        };
        if !w.choices {
            if let Some(kind) = w.kind.take() {
                self.named(&kind, Data::Read(w), end);
                return;
            }
        }
        self.detect(Shape::OpenAiChat);
        if let Some(body) = w.error {
            self.fail(body.into_error("error"));
        }
        if w.content {
            self.content(end);
        }
        if w.finished {
            self.terminal = true;
        }
        self.add_usage(w.usage);
    }

    /// The event's data read, or `None` when it was dropped or is not JSON (counted).
    fn read<'a>(&mut self, data: Data<'a>) -> Option<Wire<'a>> {
        match data {
            Data::Raw(bytes) => {
                let wire = Wire::read(bytes);
                if wire.is_none() {
                    self.malformed = self.malformed.saturating_add(1);
                }
                wire
            }
            Data::Read(wire) => Some(wire),
            Data::Dropped => None,
        }
    }

    fn detect(&mut self, shape: Shape) {
        if self.detected.is_none() {
            self.detected = Some(shape);
        }
    }

    fn content(&mut self, end: u64) {
        if self.commit_at.is_none() {
            self.commit_at = Some(end);
        }
    }

    fn fail(&mut self, error: StreamError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    fn add_usage(&mut self, usage: Option<TokenUsage>) {
        let Some(u) = usage else { return };
        if let Some(input) = u.input {
            self.usage.input = Some(input);
        }
        if let Some(output) = u.output {
            self.usage.output = Some(output);
        }
    }
}

/// `s` cut to at most `cap` bytes, on a character boundary.
pub(super) fn bounded(s: &str, cap: usize) -> String {
    let mut end = cap.min(s.len());
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default().to_string()
}
