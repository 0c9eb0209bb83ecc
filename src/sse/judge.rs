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

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::frame::{Frame, Framer};

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
fn bounded(s: &str, cap: usize) -> String {
    let mut end = cap.min(s.len());
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default().to_string()
}

// The wire form. Every event's data is read in one pass by one visitor ([`Node`]) walking a
// small schema of the fields the judge reads ([`At`]); every other value is skipped by
// serde_json's own skipper (which still checks it is JSON). One visitor type for every shape
// keeps the wasm module small: each type serde_json deserializes is compiled anew.

/// What the judge reads from an event's data, whatever its shape.
#[derive(Default)]
struct Wire<'a> {
    /// The top-level `type`: names a typed event (Anthropic, Responses) that came without
    /// its `event:` line.
    kind: Option<Cow<'a, str>>,
    /// A top-level `choices` list: a Chat Completions chunk.
    choices: bool,
    /// Some choice's delta carries generated output (text, refusal, reasoning, tool call).
    content: bool,
    /// Some choice has a non-null `finish_reason`.
    finished: bool,
    /// `usage`, `message.usage` (`message_start`) or `response.usage` (Responses).
    usage: Option<TokenUsage>,
    /// `error` (Chat, Anthropic) or `response.error` (`response.failed`).
    error: Option<ErrorBody<'a>>,
    /// The top-level `code` and `message` string (the Responses `error` event).
    code: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
}

impl<'a> Wire<'a> {
    /// Reads `data`; `None` when it is not JSON.
    fn read(data: &'a [u8]) -> Option<Wire<'a>> {
        let mut wire = Wire::default();
        let mut de = serde_json::Deserializer::from_slice(data);
        Node {
            at: At::Top,
            out: &mut wire,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        Some(wire)
    }
}

/// Token counts under either provider's names.
#[derive(Default)]
struct TokenUsage {
    input: Option<u64>,
    output: Option<u64>,
}

/// An error object `{"type":..,"code":..,"message":..}`, or a bare string (its message).
#[derive(Default)]
struct ErrorBody<'a> {
    kind: Option<Cow<'a, str>>,
    code: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
}

impl ErrorBody<'_> {
    fn into_error(self, fallback: &str) -> StreamError {
        let code = self.code.filter(|c| !c.is_empty());
        let kind = match (&self.kind, &code) {
            (Some(k), _) if !k.is_empty() => k.as_ref(),
            (_, Some(c)) => c.as_ref(),
            _ => fallback,
        };
        StreamError {
            kind: bounded(kind, StreamError::KIND_CAP),
            code: code.map(|c| bounded(&c, StreamError::KIND_CAP)),
            message: self
                .message
                .map(|m| bounded(&m, StreamError::MESSAGE_CAP))
                .unwrap_or_default(),
        }
    }
}

/// Where in the schema a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// The event object.
    Top,
    /// `choices`, and one of them.
    Choices,
    Choice,
    /// A choice's `delta`, and one of its output fields (`content`, `tool_calls`, ...).
    Delta,
    Output,
    /// A choice's `finish_reason`.
    Finish,
    /// A usage object, and its input and output counts.
    Usage,
    InputTokens,
    OutputTokens,
    /// The top-level `message`: Anthropic's message (for its usage) or an error message.
    Message,
    /// The Responses `response` object.
    Response,
    /// An error object (or string).
    Error,
    /// A string kept in [`Wire`].
    Text(Slot),
}

/// Which string of [`Wire`] a [`At::Text`] fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Kind,
    Code,
    ErrorKind,
    ErrorCode,
    ErrorMessage,
}

impl At {
    /// Where the member `key` of an object at `self` is, if the judge reads it.
    fn member(self, key: &str) -> Option<At> {
        Some(match (self, key) {
            (At::Top, "type") => At::Text(Slot::Kind),
            (At::Top, "choices") => At::Choices,
            (At::Top, "code") => At::Text(Slot::Code),
            (At::Top, "message") => At::Message,
            (At::Top, "response") => At::Response,
            (At::Top | At::Message | At::Response, "usage") => At::Usage,
            (At::Top | At::Response, "error") => At::Error,
            (At::Choice, "delta") => At::Delta,
            (At::Choice, "finish_reason") => At::Finish,
            (
                At::Delta,
                "content" | "refusal" | "reasoning_content" | "tool_calls" | "function_call",
            ) => At::Output,
            (At::Usage, "input_tokens" | "prompt_tokens") => At::InputTokens,
            (At::Usage, "output_tokens" | "completion_tokens") => At::OutputTokens,
            (At::Error, "type") => At::Text(Slot::ErrorKind),
            (At::Error, "code") => At::Text(Slot::ErrorCode),
            (At::Error, "message") => At::Text(Slot::ErrorMessage),
            _ => return None,
        })
    }
}

/// The one visitor: reads the value at `at` into `out`. A value of an unexpected type is
/// skipped like an unknown one (only invalid JSON makes an event malformed).
struct Node<'o, 'a> {
    at: At,
    out: &'o mut Wire<'a>,
}

impl<'a> Node<'_, 'a> {
    /// A value that is not null marks a finish reason, and an output field when not empty.
    fn something(&mut self, nonempty: bool) {
        match self.at {
            At::Output => self.out.content |= nonempty,
            At::Finish => self.out.finished = true,
            _ => {}
        }
    }

    /// Whether a string at this place is kept (else only its emptiness matters).
    fn keeps_strings(&self) -> bool {
        matches!(self.at, At::Text(_) | At::Message | At::Error)
    }

    fn string(mut self, s: Cow<'a, str>) {
        let out = &mut *self.out;
        match self.at {
            At::Text(Slot::Kind) => out.kind = Some(s),
            At::Text(Slot::Code) => out.code = Some(s),
            At::Message => out.message = Some(s),
            At::Error | At::Text(Slot::ErrorMessage) => {
                out.error.get_or_insert_with(ErrorBody::default).message = Some(s);
            }
            At::Text(Slot::ErrorKind) => {
                out.error.get_or_insert_with(ErrorBody::default).kind = Some(s);
            }
            At::Text(Slot::ErrorCode) => {
                out.error.get_or_insert_with(ErrorBody::default).code = Some(s);
            }
            _ => self.something(!s.is_empty()),
        }
    }

    fn usage(&mut self) -> &mut TokenUsage {
        self.out.usage.get_or_insert_with(TokenUsage::default)
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Node<'_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Node<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<(), M::Error> {
        self.something(true);
        if self.at == At::Error {
            self.out.error.get_or_insert_with(ErrorBody::default);
        }
        while let Some(member) = map.next_key_seed(Key(self.at))? {
            match member {
                Some(at) => map.next_value_seed(Node {
                    at,
                    out: &mut *self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'de>>(mut self, mut seq: S) -> Result<(), S::Error> {
        if self.at == At::Choices {
            self.out.choices = true;
            while seq
                .next_element_seed(Node {
                    at: At::Choice,
                    out: &mut *self.out,
                })?
                .is_some()
            {}
            return Ok(());
        }
        let mut any = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            any = true;
        }
        self.something(any);
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<(), E> {
        self.string(Cow::Borrowed(s));
        Ok(())
    }

    /// A string with escapes (decoded into a scratch buffer): copied only where it is kept.
    fn visit_str<E: de::Error>(mut self, s: &str) -> Result<(), E> {
        if self.keeps_strings() {
            self.string(Cow::Owned(s.to_string()));
        } else {
            self.something(!s.is_empty());
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, n: u64) -> Result<(), E> {
        match self.at {
            At::InputTokens => self.usage().input = Some(n),
            At::OutputTokens => self.usage().output = Some(n),
            At::Text(_) => self.string(Cow::Owned(n.to_string())),
            _ => self.something(true),
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, n: i64) -> Result<(), E> {
        match self.at {
            At::Text(_) => self.string(Cow::Owned(n.to_string())),
            _ => self.something(true),
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, _: f64) -> Result<(), E> {
        self.something(true);
        Ok(())
    }

    fn visit_bool<E: de::Error>(mut self, _: bool) -> Result<(), E> {
        self.something(true);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads an object's key into where its value is in the schema (`None`: skip it).
struct Key(At);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<At>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<At>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Option<At>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<At>, E> {
        Ok(self.0.member(key))
    }
}
