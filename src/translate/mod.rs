//! Provider translation: OpenAI Chat Completions ↔ Anthropic Messages, both ways.
//!
//! A client speaks one wire format ([`Api`], told by its request path); each upstream declares
//! the one it speaks. When the upstream that serves a request speaks another format, the
//! request body is translated on the way out and the answer on the way back: a JSON answer
//! whole ([`response`]), an error into the client's error shape with its status kept
//! ([`error`]), and a stream event by event ([`StreamTranslator`]), so tokens keep flowing and
//! nothing is held beyond the current event.
//!
//! Two modules, one per direction of the *request*:
//! - [`to_anthropic`]: an OpenAI client served by an Anthropic upstream (the request goes
//!   OpenAI → Anthropic, the answer Anthropic → OpenAI);
//! - [`to_openai`]: an Anthropic client served by an OpenAI upstream.
//!
//! Everything here is pure: bytes in, bytes out, no proxy types, never a panic. The JSON is
//! read into a `serde_json::Value`, which the filter links anyway, and written as text by
//! one writer both directions share (`to_openai::json::W`), so the wasm pays for the
//! mapping logic only.

pub mod to_anthropic;
pub mod to_openai;

/// The wire formats the filter translates between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Api {
    /// OpenAI Chat Completions (`/v1/chat/completions`; also Azure OpenAI).
    #[default]
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

impl Api {
    /// The format a request path speaks (the query string is ignored); `None` for any other
    /// path, which is never translated.
    pub fn of_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or(path);
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/v1/messages") {
            Some(Api::Anthropic)
        } else {
            None
        }
    }

    /// The provider's own path for this format.
    pub fn path(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    /// The name used in the configuration, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }
}

/// What the serving upstream needs beyond its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub api: Api,
    /// The `anthropic-version` header an Anthropic upstream is sent.
    pub anthropic_version: &'a str,
    /// `max_tokens` for a request to Anthropic that sets none (Anthropic requires it).
    pub default_max_tokens: u32,
}

/// A translated request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub body: Vec<u8>,
    /// The request asks for a stream (`"stream": true`).
    pub stream: bool,
    /// An OpenAI client asked for the stream's usage (`stream_options.include_usage`): its
    /// translated stream ends with a usage chunk (`choices: []`), which it would otherwise
    /// not expect (code that reads `choices[0]` of every chunk breaks on it).
    pub usage_chunk: bool,
    /// Parameters the target cannot express that were dropped (for the log and a metric).
    pub dropped: Vec<&'static str>,
}

/// Why a request cannot go to an upstream of another format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The body is not a JSON object of the client's format.
    NotJson,
    /// It asks for something the target cannot do and that cannot be dropped without changing
    /// the answer (`n > 1`, say): that upstream is skipped for this request.
    Unsupported(&'static str),
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::NotJson => "request body is not a JSON object",
            Refused::Unsupported(what) => what,
        }
    }
}

/// Translates a request body written for `client` into `target`'s format. `client` and
/// `target.api` differ (the caller never translates a format into itself).
pub fn request(client: Api, target: &Target<'_>, body: &[u8]) -> Result<Request, Refused> {
    match (client, target.api) {
        (Api::OpenAi, Api::Anthropic) => to_anthropic::request(body, target.default_max_tokens),
        (Api::Anthropic, Api::OpenAi) => to_openai::request(body),
        _ => Ok(Request {
            body: body.to_vec(),
            stream: false,
            usage_chunk: false,
            dropped: Vec::new(),
        }),
    }
}

/// Translates a successful JSON answer from `served`'s format into `client`'s; `None` when
/// the body is not an answer of `served`'s format (it is then passed on as it is).
pub fn response(client: Api, served: Api, body: &[u8]) -> Option<Vec<u8>> {
    match (client, served) {
        (Api::OpenAi, Api::Anthropic) => to_anthropic::response(body),
        (Api::Anthropic, Api::OpenAi) => to_openai::response(body),
        _ => None,
    }
}

/// Translates an error answer (any status ≥ 400) from `served`'s error shape into `client`'s,
/// so the client's SDK raises the exception class that matches `status`. A body that is not
/// JSON still becomes a well-formed error of the client's shape.
pub fn error(client: Api, served: Api, status: u16, body: &[u8]) -> Vec<u8> {
    match (client, served) {
        (Api::OpenAi, Api::Anthropic) => to_anthropic::error(status, body),
        (Api::Anthropic, Api::OpenAi) => to_openai::error(status, body),
        _ => body.to_vec(),
    }
}

/// Translates a streamed answer event by event, across arbitrary chunk boundaries.
#[derive(Debug)]
pub enum StreamTranslator {
    /// Anthropic events to OpenAI chunks (an OpenAI client served by Anthropic).
    ToOpenAiClient(to_anthropic::Stream),
    /// OpenAI chunks to Anthropic events (an Anthropic client served by OpenAI).
    ToAnthropicClient(to_openai::Stream),
}

impl StreamTranslator {
    /// A translator for a `served` stream read by a `client`; `None` when they match.
    pub fn new(client: Api, served: Api) -> Option<StreamTranslator> {
        match (client, served) {
            (Api::OpenAi, Api::Anthropic) => {
                Some(Self::ToOpenAiClient(to_anthropic::Stream::new()))
            }
            (Api::Anthropic, Api::OpenAi) => {
                Some(Self::ToAnthropicClient(to_openai::Stream::new()))
            }
            _ => None,
        }
    }

    /// Whether an OpenAI client's stream ends with the usage chunk ([`Request::usage_chunk`];
    /// on unless switched off here). No effect on an Anthropic client, whose usage always
    /// travels in `message_start` and `message_delta`.
    pub fn with_usage_chunk(mut self, on: bool) -> StreamTranslator {
        if let Self::ToOpenAiClient(s) = &mut self {
            s.usage_chunk(on);
        }
        self
    }

    /// Feeds the next chunk of the upstream's stream, appending the client's bytes for every
    /// event it completes to `out` (nothing for a partial event, which is kept, bounded).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match self {
            Self::ToOpenAiClient(s) => s.feed(chunk, out),
            Self::ToAnthropicClient(s) => s.feed(chunk, out),
        }
    }

    /// The upstream's stream ended: appends what the client still needs, if anything.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Self::ToOpenAiClient(s) => s.finish(out),
            Self::ToAnthropicClient(s) => s.finish(out),
        }
    }

    /// Bytes held for a partial event (bounded by the framer's cap).
    pub fn held_bytes(&self) -> usize {
        match self {
            Self::ToOpenAiClient(s) => s.held_bytes(),
            Self::ToAnthropicClient(s) => s.held_bytes(),
        }
    }
}
