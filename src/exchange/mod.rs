//! One request's journey through the filter, as a state machine.
//!
//! An [`Exchange`] is driven by [`Event`]s (request headers, body chunks, response headers,
//! a callout's answer, a timer tick, the end of the stream) and answers each with a [`Step`]:
//! the [`Effect`]s the proxy must carry out (set a header, reply locally, call a fallback,
//! resume a paused stream, ...) and whether the current callback continues or pauses. Its
//! state is one [`Phase`], which carries the data that phase needs and nothing else.
//!
//! The request side ([`request`]) decides where the request goes: health endpoint, no route,
//! the first admitting upstream of the primary's chain, or a local fast-fail reply. It holds
//! the headers when the body must be read first (to route on `model`, or to rewrite `model`
//! with a correct `content-length`). The response side ([`response`]) judges the answer
//! against the upstream that produced it and, when it failed before anything reached the
//! client, holds it while the next fallback is called.
//!
//! The exchange never calls the proxy: the breakers, metrics and clock come through the
//! [`Runtime`] and its [`Host`](crate::host::Host), everything else through the events'
//! views and the returned effects. That is what the in-process tests drive.

mod body;
mod callout;
mod error_read;
mod event;
pub mod failover;
mod held;
pub mod local;
mod request;
mod response;
mod retry;
mod stream;
mod translation;
pub mod usage;

pub use body::{model_of, with_model, NotRewritable};
pub use event::{Answer, Body, Effect, Event, Flow, Headers, Reply, Step, StreamInfo};
pub use retry::retry_delay;
pub use translation::TRANSLATED_HEADER;

use crate::breaker::Ticket;
use crate::config::UpstreamId;
use crate::host::Host;
use crate::runtime::Runtime;

/// How much of a failed response's body is kept while fallbacks are called: what the client
/// gets if every fallback fails too. The rest is dropped, so a held response never fills
/// Envoy's buffer (a 2 MiB HTML error page from a load balancer, say).
pub const KEPT_BODY_BYTES: usize = 64 * 1024;

/// How often a request held at headers for its body checks whether Envoy lets it wait at all
/// (`allow_on_headers_stop_iteration`), until a body callback proves it does.
pub const BODY_WAIT_MS: u64 = 500;

/// One request's lifecycle.
#[derive(Debug, Default)]
pub struct Exchange {
    phase: Phase,
    client: Client,
    /// The upstream whose response headers were judged (the one the client hears from).
    served: Option<UpstreamId>,
}

/// Where a request is in its lifecycle.
#[derive(Debug, Default)]
enum Phase {
    /// Nothing seen yet.
    #[default]
    New,
    /// No route claims the request: it passes through untouched.
    Unrouted,
    /// The filter answered the request itself; nothing more to do.
    Answered,
    /// The request is refused; its body is read and dropped, then the reply goes.
    Refusing(Reply),
    /// The request headers are held until the body is complete.
    HeldForBody(Held),
    /// The headers left (chunked); the body is buffered so it can be rewritten (its
    /// `model`, its format).
    RewritingBody { attempt: Attempt },
    /// The request went to `attempt.upstream`; its response headers have not arrived.
    Sent(Attempt),
    /// An error answer held at its headers while its body is read to judge it.
    ReadingError(Box<error_read::ErrorRead>),
    /// The response is judged and flows to the client.
    Delivering,
    /// A JSON answer passing through; its end is kept to read its token usage.
    Metering {
        upstream: UpstreamId,
        tail: usage::Tail,
    },
    /// A JSON answer or an error read whole, to be translated into the client's format.
    Translating(translation::Translating),
    /// A streamed answer, judged event by event (held until its first token, maybe).
    Streaming(Box<stream::Stream>),
    /// The served attempt failed; its response is held while a fallback is called.
    FailingOver(Failover),
    /// An attempt failed and is tried again on the same upstream after a delay; the failed
    /// response is held meanwhile.
    Retrying(Box<Waiting>),
    /// Every fallback failed; the failed response goes to the client once its body is in.
    GivingUp(HeldResponse),
    /// The stream is over.
    Finished,
}

/// A request whose headers wait for its body.
#[derive(Debug)]
struct Held {
    /// Where it would go on its headers alone (already admitted, route header set), so a
    /// request Envoy never shows the body of still goes somewhere.
    attempt: Option<Attempt>,
    /// A route matches on `model`: route again once the body is read.
    route_on_model: bool,
    /// When to check on it (`u64::MAX`: never).
    wake_ms: u64,
}

/// One try of the request on one upstream, routed through Envoy.
#[derive(Debug, Clone)]
struct Attempt {
    primary: UpstreamId,
    upstream: UpstreamId,
    ticket: Ticket,
    started_ms: u64,
    /// Request headers a fallback's rewrite changed, with their values before it.
    undo: Vec<(String, Option<String>)>,
}

/// A failed response held while fallbacks are called.
#[derive(Debug)]
struct Failover {
    /// The failed response, as far as it is kept.
    held: HeldResponse,
    primary: UpstreamId,
    /// Every candidate considered so far (tried or skipped), in order.
    tried: Vec<UpstreamId>,
    /// The upstreams actually called, in order: the served one, then each callout.
    called: Vec<UpstreamId>,
    /// Callouts sent.
    attempts: u32,
    /// The callout in flight.
    call: Option<Call>,
}

/// A retry waiting for its time.
#[derive(Debug)]
struct Waiting {
    failover: Failover,
    /// The upstream tried again.
    upstream: UpstreamId,
    /// When the retry goes out.
    at_ms: u64,
}

impl Failover {
    /// A failover of `a`'s request, holding `held`, with nothing called yet.
    fn new(held: HeldResponse, a: &Attempt) -> Failover {
        Failover {
            held,
            primary: a.primary,
            tried: vec![a.upstream],
            called: vec![a.upstream],
            attempts: 0,
            call: None,
        }
    }
}

/// The served attempt's failed response, kept in case every fallback fails too.
#[derive(Debug)]
struct HeldResponse {
    status: u16,
    headers: Vec<(String, String)>,
    /// The first [`KEPT_BODY_BYTES`] of the body.
    body: Vec<u8>,
    /// The body has ended.
    complete: bool,
    /// `x-ai-cb-failover` for the reply: `openai->anthropic (failed)`.
    chain: String,
    /// The failed answer was a stream for a client of this API (its reply ends with an
    /// error event).
    stream: Option<crate::sse::Shape>,
}

/// A callout in flight.
#[derive(Debug)]
struct Call {
    upstream: UpstreamId,
    ticket: Ticket,
    started_ms: u64,
}

/// The request as the client sent it, as far as routing and failover need it.
#[derive(Debug, Default)]
struct Client {
    path: String,
    authority: String,
    /// The whole header map, read once when failover may re-send the request or the body
    /// may re-route it; header lookups read it from then on.
    headers: Option<Vec<(String, String)>>,
    /// The request body kept for failover; `None` when the request is not eligible or its
    /// body outgrew `failover.max_body_bytes`.
    copy: Option<Copy>,
    /// `content-length`, read when a route or a fallback may need the body.
    announced: Option<usize>,
    /// A `content-encoding` other than `identity`: the filter does not decode bodies.
    encoded: bool,
    /// `circuit_breaker_body_over_limit` was counted for this request.
    over_limit_counted: bool,
    /// The client's wire format, when the configuration translates and a route told it.
    api: Option<crate::translate::Api>,
    /// Upstreams that cannot take this request in their format (skipped by routing).
    refused: Vec<UpstreamId>,
    /// An OpenAI client asked for its stream's usage chunk ([`translate::Request::usage_chunk`],
    /// known once its body is translated; a `Cell` because translating reads the exchange).
    ///
    /// [`translate::Request::usage_chunk`]: crate::translate::Request::usage_chunk
    usage_chunk: std::cell::Cell<bool>,
}

/// The request body kept for a possible failover.
#[derive(Debug, Default)]
struct Copy {
    body: Vec<u8>,
    complete: bool,
}

impl Client {
    /// Why this request's body cannot have its `model` rewritten, if it cannot.
    fn unrewritable(&self, limit: usize) -> Option<&'static str> {
        if self.encoded {
            Some("the request body is compressed (content-encoding)")
        } else if self.announced.is_some_and(|n| n > limit) {
            Some("the request body is over the limit")
        } else {
            None
        }
    }

    /// A request header from the map read at request time.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Exchange {
    /// Counts, once per request, a body the filter could not hold or rewrite for its size.
    fn over_limit<H: Host>(&mut self, rt: &Runtime<H>) {
        if !self.client.over_limit_counted {
            self.client.over_limit_counted = true;
            rt.host.metrics().body_over_limit();
        }
    }

    pub fn new() -> Exchange {
        Exchange::default()
    }

    /// Handles one event.
    pub fn handle<H: Host>(&mut self, rt: &Runtime<H>, event: Event<'_>) -> Step {
        match event {
            Event::RequestHeaders {
                headers,
                end_of_stream,
            } => self.on_request_headers(rt, headers, end_of_stream),
            Event::RequestBody {
                len,
                end_of_stream,
                body,
            } => self.on_request_body(rt, len, end_of_stream, body),
            Event::ResponseHeaders {
                headers,
                info,
                end_of_stream,
            } => self.on_response_headers(rt, headers, info, end_of_stream),
            Event::ResponseBody {
                len,
                end_of_stream,
                body,
            } => match self.phase {
                Phase::Streaming(_) => self.on_stream_body(rt, len, end_of_stream, body),
                Phase::Metering { .. } => self.on_metered_body(rt, len, end_of_stream, body),
                Phase::ReadingError(_) => self.on_error_body(rt, len, end_of_stream, body),
                Phase::Translating(_) => self.on_translated_body(rt, len, end_of_stream, body),
                _ => self.on_response_body(rt, len, end_of_stream, body),
            },
            Event::CalloutAnswered(answer) => self.on_callout(rt, answer),
            Event::CalloutNotSent => self.on_callout_not_sent(rt),
            Event::Tick { stream } => match self.phase {
                Phase::Streaming(_) => self.on_stream_tick(rt),
                Phase::Retrying(_) => self.on_retry_tick(rt),
                Phase::Sent(_) => self.on_sent_tick(rt),
                _ => self.on_tick(rt, stream),
            },
            Event::Done { info } => {
                self.on_stream_done(rt, info);
                self.on_done(rt);
                Step::go()
            }
        }
    }

    /// When the exchange wants an [`Event::Tick`], if ever.
    pub fn wake_at(&self, config: &crate::config::Config) -> Option<u64> {
        match &self.phase {
            Phase::HeldForBody(h) if h.wake_ms != u64::MAX => Some(h.wake_ms),
            Phase::Streaming(s) => s.wake_at(&config.upstream(s.attempt().upstream).policy),
            Phase::Retrying(w) => Some(w.at_ms),
            Phase::Sent(a) => retry::response_deadline(&config.upstream(a.upstream).policy, a),
            _ => None,
        }
    }

    /// Whether a callout is in flight (its answer must come back to this exchange).
    pub fn awaits_callout(&self) -> bool {
        matches!(&self.phase, Phase::FailingOver(f) if f.call.is_some())
    }

    /// The phase's name, for logs and tests.
    /// Bytes of the request body kept for a possible failover.
    #[cfg(test)]
    pub(crate) fn kept_request_bytes(&self) -> usize {
        self.client.copy.as_ref().map_or(0, |c| c.body.len())
    }

    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::New => "new",
            Phase::Unrouted => "unrouted",
            Phase::Answered => "answered",
            Phase::Refusing(_) => "refusing",
            Phase::HeldForBody(_) => "held_for_body",
            Phase::RewritingBody { .. } => "rewriting_body",
            Phase::Sent(_) => "sent",
            Phase::ReadingError(_) => "reading_error",
            Phase::Delivering => "delivering",
            Phase::Metering { .. } => "metering",
            Phase::Translating(_) => "translating",
            Phase::Streaming(_) => "streaming",
            Phase::FailingOver(_) => "failing_over",
            Phase::Retrying(_) => "retrying",
            Phase::GivingUp(_) => "giving_up",
            Phase::Finished => "finished",
        }
    }

    /// The stream is over: free whatever an attempt or a callout still holds, counting
    /// nothing against the provider (the client went away, or Envoy reset the stream).
    fn on_done<H: Host>(&mut self, rt: &Runtime<H>) {
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::Sent(a)
            | Phase::RewritingBody { attempt: a, .. }
            | Phase::HeldForBody(Held {
                attempt: Some(a), ..
            }) => rt.release(a.upstream, a.ticket),
            Phase::FailingOver(Failover { call: Some(c), .. }) => rt.release(c.upstream, c.ticket),
            Phase::ReadingError(r) => rt.release(r.attempt.upstream, r.attempt.ticket),
            _ => {}
        }
    }
}
