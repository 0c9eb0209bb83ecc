//! The wire form of a streamed event's data: what the [`Judge`](super::judge::Judge) reads
//! from it, in one pass.
//!
//! Every event's data is read by one visitor ([`Node`]) walking a small schema of the fields
//! the judge reads ([`At`]); every other value is skipped by serde_json's own skipper (which
//! still checks it is JSON, for the malformed count). One visitor type for every shape keeps
//! the wasm module small: each type serde_json deserializes is compiled anew.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::judge::{bounded, StreamError};

/// What the judge reads from an event's data, whatever its shape.
#[derive(Default)]
pub(super) struct Wire<'a> {
    /// The top-level `type`: names a typed event (Anthropic, Responses) that came without
    /// its `event:` line.
    pub(super) kind: Option<Cow<'a, str>>,
    /// A top-level `choices` list: a Chat Completions chunk.
    pub(super) choices: bool,
    /// Some choice's delta carries generated output (text, refusal, reasoning, tool call).
    pub(super) content: bool,
    /// Some choice has a non-null `finish_reason`.
    pub(super) finished: bool,
    /// `usage`, `message.usage` (`message_start`) or `response.usage` (Responses).
    pub(super) usage: Option<TokenUsage>,
    /// `error` (Chat, Anthropic) or `response.error` (`response.failed`).
    pub(super) error: Option<ErrorBody<'a>>,
    /// The top-level `code` and `message` string (the Responses `error` event).
    pub(super) code: Option<Cow<'a, str>>,
    pub(super) message: Option<Cow<'a, str>>,
}

impl<'a> Wire<'a> {
    /// Reads `data`; `None` when it is not JSON.
    pub(super) fn read(data: &'a [u8]) -> Option<Wire<'a>> {
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
pub(super) struct TokenUsage {
    pub(super) input: Option<u64>,
    pub(super) output: Option<u64>,
}

/// An error object `{"type":..,"code":..,"message":..}`, or a bare string (its message).
#[derive(Default)]
pub(super) struct ErrorBody<'a> {
    pub(super) kind: Option<Cow<'a, str>>,
    pub(super) code: Option<Cow<'a, str>>,
    pub(super) message: Option<Cow<'a, str>>,
}

impl ErrorBody<'_> {
    pub(super) fn into_error(self, fallback: &str) -> StreamError {
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
