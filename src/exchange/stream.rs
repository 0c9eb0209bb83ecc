//! A streamed (SSE) answer: judged event by event, held until its first token while it may
//! still fail over, and never passed off as whole when it is not.
//!
//! A 2xx `text/event-stream` answer is not a success at its headers: the [`Judge`] reads
//! every chunk, and the outcome is recorded once, when the stream shows it (its first error
//! event, or how it ended). When the request was kept for failover and Envoy lets the filter
//! hold response headers, the answer is held until its first *content* event (the commit
//! point). Before it, an error event, an end without a terminal marker, a stall or
//! `first_token_timeout` fails over exactly like a failed status; with nothing to fail over
//! to, the held stream goes on as it is. Envoy answers an upstream reset before the commit
//! itself (a 502 straight to the client, past every filter): that is counted, not failed
//! over. After the commit, chunks flow unbuffered; a stream that ends cleanly without its
//! terminal marker gets one last error event in the client's shape, so its SDK raises
//! instead of returning half an answer, and a stalled stream is ended.

use super::event::{Body, Effect, Headers, Reply, Step, StreamInfo};
use super::{Attempt, Exchange, HeldResponse, Phase, KEPT_BODY_BYTES};
use crate::classify::flags;
use crate::config::Policy;
use crate::exchange::failover::triggers;
use crate::host::Host;
use crate::outcome::{FailureReason, Outcome};
use crate::runtime::{Runtime, StopIteration};
use crate::sse::{error_event, End, Judge, Shape, Verdict};
use crate::translate::{Api, StreamTranslator};

/// Most bytes of one SSE event the judge holds.
pub const EVENT_CAP: usize = 64 * 1024;

/// Most bytes held before the first token; past it the stream is committed anyway.
pub const HOLD_CAP: usize = 64 * 1024;

/// One streamed answer being judged.
#[derive(Debug)]
pub(super) struct Stream {
    attempt: Attempt,
    judge: Judge,
    /// What recording the answer at its headers said (a success, or a slow success).
    head_outcome: Outcome,
    /// Bytes Envoy holds before the commit; `None` once committed, or when never held.
    held: Option<usize>,
    status: u16,
    /// The held answer's headers, for a failover that gives up.
    headers: Vec<(String, String)>,
    /// The outcome is recorded (it is recorded once).
    recorded: bool,
    /// When the first content event arrived.
    first_token_ms: Option<u64>,
    last_byte_ms: u64,
    /// The client's API, for an error event the filter adds.
    client: Shape,
    /// Turns the upstream's events into the client's format, when they differ.
    translator: Option<StreamTranslator>,
    /// Translated bytes not yet handed to Envoy (all of them while the stream is held).
    out: Vec<u8>,
}

/// Whether a 2xx answer's `content-type` says it is an SSE stream.
pub(super) fn is_stream(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| c.trim_start().starts_with("text/event-stream"))
}

/// A stream failure as `policy` counts it (ignored when its condition is switched off).
fn stream_failure(policy: &Policy, reason: FailureReason) -> Outcome {
    if policy.conditions.counts(reason) {
        Outcome::failure(reason)
    } else {
        Outcome::Ignored
    }
}

impl Stream {
    /// When the stream next needs a look: its first-token deadline while held, else the end
    /// of its idle allowance.
    pub(super) fn wake_at(&self, policy: &Policy) -> Option<u64> {
        let first = self
            .held
            .and(policy.first_token_ms)
            .map(|ms| self.attempt.started_ms.saturating_add(ms));
        let idle = policy
            .stream_idle_ms
            .map(|ms| self.last_byte_ms.saturating_add(ms));
        match (first, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn attempt(&self) -> &Attempt {
        &self.attempt
    }
}

impl Exchange {
    /// Starts judging a streamed answer whose headers alone said `head_outcome`.
    pub(super) fn start_stream<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        attempt: Attempt,
        status: u16,
        head_outcome: Outcome,
        headers: &dyn Headers,
        may_fail_over: bool,
    ) -> Step {
        let client = self.client_shape();
        let xlate = self.xlate(&rt.config, attempt.upstream);
        // The judge reads the upstream's own events, in the upstream's format.
        let upstream_shape = match xlate {
            Some((_, Api::Anthropic)) => Shape::Anthropic,
            Some((_, Api::OpenAi)) => Shape::OpenAiChat,
            None => client,
        };
        let hold = may_fail_over
            && self.client.copy.as_ref().is_some_and(|c| c.complete)
            && rt.stop_iteration.get() == StopIteration::Granted;
        let stream = Stream {
            attempt,
            judge: Judge::new(EVENT_CAP, Some(upstream_shape)),
            head_outcome,
            held: hold.then_some(0),
            status,
            headers: if hold { headers.all() } else { Vec::new() },
            recorded: false,
            first_token_ms: None,
            last_byte_ms: rt.host.now_ms(),
            client,
            translator: xlate.and_then(|(c, u)| {
                let usage = self.client.usage_chunk.get();
                StreamTranslator::new(c, u).map(|t| t.with_usage_chunk(usage))
            }),
            out: Vec::new(),
        };
        self.phase = Phase::Streaming(Box::new(stream));
        if !hold {
            // A stream that is not held can never be re-sent: its request copy goes now, not
            // when the stream ends (a long stream would hold it for minutes).
            self.client.copy = None;
        }
        if hold {
            Step::pause()
        } else {
            Step::go()
        }
    }

    /// The client's API: the format a route or the path told, else from the path it called.
    fn client_shape(&self) -> Shape {
        let path = self.client.path.split('?').next().unwrap_or("");
        if let Some(api) = self.client.api {
            return match api {
                Api::Anthropic => Shape::Anthropic,
                Api::OpenAi => Shape::OpenAiChat,
            };
        }
        if path.ends_with("/messages") {
            Shape::Anthropic
        } else if path.ends_with("/responses") {
            Shape::OpenAiResponses
        } else {
            Shape::OpenAiChat
        }
    }

    /// A chunk of a streamed answer.
    pub(super) fn on_stream_body<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        let Phase::Streaming(s) = &mut self.phase else {
            return Step::go();
        };
        let now = rt.host.now_ms();
        // Held, Envoy reports its whole buffer: only the new part is judged.
        let start = s.held.unwrap_or(0).min(len);
        let chunk = body.read_range(start, len.saturating_sub(start));
        let seen = s.judge.feed(&chunk);
        if let Some(t) = &mut s.translator {
            t.feed(&chunk, &mut s.out);
        }
        s.last_byte_ms = now;
        let metrics = rt.host.metrics();
        for _ in 0..seen.malformed {
            metrics.malformed_event(s.attempt.upstream);
        }
        if seen.commit.is_some() && s.first_token_ms.is_none() {
            s.first_token_ms = Some(now);
            metrics.first_token(s.attempt.upstream, now.saturating_sub(s.attempt.started_ms));
        }
        if s.held.is_some() {
            let failed = if seen.error {
                Some(FailureReason::StreamError)
            } else if end_of_stream && !s.judge.terminal() {
                Some(FailureReason::StreamTruncated)
            } else {
                None
            };
            if let Some(reason) = failed {
                let kept = body.read_range(0, len.min(KEPT_BODY_BYTES));
                let drain = Some(len);
                if let Some(step) = self.fail_over_stream(rt, reason, kept, drain, end_of_stream) {
                    return step;
                }
            } else if seen.commit.is_none() && !end_of_stream && len < HOLD_CAP {
                s.held = Some(len);
                return Step::pause();
            }
            // The first token, the end, or the cap: everything held goes now, and the stream
            // can no longer fail over, so the request copy goes too.
            if let Phase::Streaming(s) = &mut self.phase {
                s.held = None;
            }
            self.client.copy = None;
        }
        if seen.error {
            self.record_stream(rt, FailureReason::StreamError);
        }
        if end_of_stream {
            // Held, Envoy's buffer is everything since the start, and all of it is replaced.
            let tail = if start > 0 { body.read(len) } else { chunk };
            return self.end_stream(rt, End::Clean, Some((len, tail)));
        }
        match &mut self.phase {
            // What Envoy holds (this chunk, or all held so far) goes as the client's format.
            Phase::Streaming(s) if s.translator.is_some() => {
                let body = std::mem::take(&mut s.out);
                Step::go().with(Effect::ReplaceResponseBody { len, body })
            }
            _ => Step::go(),
        }
    }

    /// The stream ended: `tail` is the last chunk when the end came in a body callback.
    fn end_stream<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        end: End,
        tail: Option<(usize, Vec<u8>)>,
    ) -> Step {
        let Phase::Streaming(mut s) = std::mem::replace(&mut self.phase, Phase::Delivering) else {
            return Step::go();
        };
        let usage = s.judge.usage();
        let metrics = rt.host.metrics();
        metrics.tokens(
            s.attempt.upstream,
            usage.input.unwrap_or(0),
            usage.output.unwrap_or(0),
        );
        let verdict = s.judge.verdict(end);
        let mut step = Step::go();
        let truncated = matches!(verdict, Verdict::Truncated(_));
        if let Some((len, chunk)) = tail {
            let mut body = match &mut s.translator {
                Some(t) => {
                    let mut out = std::mem::take(&mut s.out);
                    if verdict == Verdict::Complete {
                        t.finish(&mut out);
                    }
                    out
                }
                None => chunk,
            };
            if truncated {
                // Whole at the HTTP level, not as an answer: the client's SDK must raise.
                let message = "the upstream ended the stream before its last event";
                body.extend_from_slice(&error_event(s.client, "stream_truncated", message));
            }
            if truncated || s.translator.is_some() {
                step.effects.push(Effect::ReplaceResponseBody { len, body });
            }
        }
        let reason = match verdict {
            Verdict::Complete => None,
            Verdict::Errored(_) => Some(FailureReason::StreamError),
            Verdict::Truncated(_) => Some(FailureReason::StreamTruncated),
        };
        record(rt, &mut s, reason);
        step
    }

    /// Records the stream's first failure (once).
    fn record_stream<H: Host>(&mut self, rt: &Runtime<H>, reason: FailureReason) {
        if let Phase::Streaming(s) = &mut self.phase {
            record(rt, s, Some(reason));
        }
    }

    /// Before its first token, the held stream failed for `reason`: record it and call the
    /// next fallback with the stream held (bounded: `kept` is its start, and the `drain`
    /// bytes Envoy holds are dropped, from a body callback). `None` when no fallback can be
    /// called: the stream then goes on as it is.
    fn fail_over_stream<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        reason: FailureReason,
        kept: Vec<u8>,
        drain: Option<usize>,
        end_of_stream: bool,
    ) -> Option<Step> {
        let Phase::Streaming(s) = &mut self.phase else {
            return None;
        };
        record(rt, s, Some(reason));
        let outcome = stream_failure(&rt.config.upstream(s.attempt.upstream).policy, reason);
        triggers(&rt.config.failover, &outcome)?;
        let held = HeldResponse {
            status: s.status,
            headers: s.headers.clone(),
            body: kept,
            complete: end_of_stream,
            chain: String::new(),
            stream: Some(s.client),
        };
        let attempt = s.attempt.clone();
        let now = rt.host.now_ms();
        let step = self.start_failover(rt, &attempt, held, None, now)?;
        Some(match drain {
            Some(len) => step.with(Effect::ClearResponseBody { len }),
            None => step,
        })
    }

    /// The timer: a held stream past its first-token deadline or idle allowance fails over
    /// (or goes on, with nothing to fail over to); a committed one that stalled is ended.
    pub(super) fn on_stream_tick<H: Host>(&mut self, rt: &Runtime<H>) -> Step {
        let Phase::Streaming(s) = &mut self.phase else {
            return Step::go();
        };
        let now = rt.host.now_ms();
        let policy = &rt.config.upstream(s.attempt.upstream).policy;
        if s.wake_at(policy).is_none_or(|t| now < t) {
            return Step::go();
        }
        let idle = policy
            .stream_idle_ms
            .is_some_and(|ms| now >= s.last_byte_ms.saturating_add(ms));
        let reason = if idle {
            FailureReason::StreamStall
        } else {
            FailureReason::SlowFirstToken
        };
        if s.held.is_some() {
            // What Envoy holds stays there: the failover's body callbacks drain it.
            if let Some(mut step) = self.fail_over_stream(rt, reason, Vec::new(), None, false) {
                // Not a body callback: nothing to pause, the failover's callbacks hold it.
                step.flow = super::Flow::Continue;
                return step;
            }
            // Nothing to fail over to: let the stream go on, judged.
            if let Phase::Streaming(s) = &mut self.phase {
                s.held = None;
            }
            return Step::go().with(Effect::ResumeResponse);
        }
        // Committed and stalled: end it, so the client gets an error, not a hang.
        record(rt, s, Some(FailureReason::StreamStall));
        let message = "the upstream stream stalled";
        let reply = Reply {
            status: 504,
            headers: vec![("content-type".to_string(), "text/event-stream".to_string())],
            body: error_event(s.client, "stream_stall", message),
        };
        self.phase = Phase::Answered;
        Step::go().with(Effect::Reply(reply))
    }

    /// The stream is over without a body end: an upstream reset (counted), Envoy's stream
    /// idle timeout (a stall), or the client leaving (nothing counted, the slot freed).
    pub(super) fn on_stream_done<H: Host>(&mut self, rt: &Runtime<H>, info: &dyn StreamInfo) {
        let Phase::Streaming(s) = &mut self.phase else {
            return;
        };
        if s.recorded {
            return;
        }
        let f = info.response_flags();
        let details = info.code_details().unwrap_or_default();
        if f & flags::STREAM_IDLE_TIMEOUT != 0 || details.contains("stream_idle_timeout") {
            record(rt, s, Some(FailureReason::StreamStall));
        } else if f & flags::UPSTREAM_RESET_ANY != 0 || details.starts_with("upstream_reset") {
            record(rt, s, Some(FailureReason::StreamTruncated));
        } else {
            s.recorded = true;
            rt.release(s.attempt.upstream, s.attempt.ticket);
        }
    }
}

/// Records a stream's outcome once: `reason`'s failure, else the answer its headers gave.
fn record<H: Host>(rt: &Runtime<H>, s: &mut Stream, reason: Option<FailureReason>) {
    if s.recorded {
        return;
    }
    s.recorded = true;
    let policy = &rt.config.upstream(s.attempt.upstream).policy;
    let outcome = match reason {
        Some(r) => stream_failure(policy, r),
        None => s.head_outcome,
    };
    rt.record(
        s.attempt.upstream,
        s.attempt.ticket,
        rt.host.now_ms(),
        &outcome,
    );
}
