//! The response side of an exchange: judge each attempt against the upstream that produced
//! it, and fail over while nothing has reached the client.
//!
//! The served attempt's response headers are classified and recorded against its breaker.
//! When the outcome is a failure listed in `failover.on` and the request was kept, the
//! response is held and the next fallback of the primary's chain whose breaker admits it is
//! called with the client's request (and that fallback's rewrite). While it is held, its
//! body is kept up to [`KEPT_BODY_BYTES`] and drained from Envoy's buffer. Only a successful
//! answer replaces the held response; any other answer (Envoy's own timeout or connect-error
//! reply included) is recorded against that fallback and the chain goes on. When nothing is
//! left, the client gets the held response, marked `(failed)`. Sending the fallback (or retry)
//! calls and judging their answers is [`super::callout`]'s part.

use super::event::{Body, Effect, Headers, Reply, Step, StreamInfo};
use super::failover::{reply_headers, set_header, triggers};
use super::stream::is_stream;
use super::{Attempt, Exchange, Failover, Held, HeldResponse, Phase, KEPT_BODY_BYTES};
use crate::breaker::Ticket;
use crate::classify::{classify, is_plain_success, ResponseInfo};
use crate::config::UpstreamId;
use crate::hints::RATELIMIT_RESET_HEADERS;
use crate::host::Host;
use crate::outcome::Outcome;
use crate::runtime::Runtime;
use crate::sse::error_event;
use crate::translate::{self, Api, StreamTranslator};

/// Envoy's `response.code_details` on the bare 413 it answers when a request body it
/// buffers outgrows its buffer limit.
const ENVOY_BODY_TOO_LARGE: &str = "request_payload_too_large";

/// The HTTP status of a header map.
pub(super) fn status_of(headers: &dyn Headers) -> Option<u16> {
    headers.get(":status").and_then(|s| s.parse().ok())
}

/// What Envoy said about a callout's answer: nothing for an upstream's own answer; the flags
/// and details of a routed failure for Envoy's own local reply.
pub(super) struct CalloutInfo(pub(super) Option<(u64, &'static str)>);

impl StreamInfo for CalloutInfo {
    fn response_flags(&self) -> u64 {
        self.0.map_or(0, |(f, _)| f)
    }

    fn code_details(&self) -> Option<String> {
        Some(self.0.map_or("via_upstream", |(_, d)| d).to_string())
    }
}

/// Classifies one attempt's answer on `u`, reading only what the status makes necessary.
/// Returns the outcome and the time it was judged at (0 when the clock was not needed).
pub(super) fn judge<H: Host>(
    rt: &Runtime<H>,
    u: UpstreamId,
    ticket: Ticket,
    started_ms: u64,
    status: Option<u16>,
    headers: &dyn Headers,
    stream: &dyn StreamInfo,
) -> (Outcome, u64) {
    let policy = &rt.config.upstream(u).policy;
    if is_plain_success(status, policy) {
        // The common case needs nothing else from the host, and the clock only when
        // recording it can change the state (a probe, the rate rule).
        let now = if rt.record_needs_clock(u, ticket, &Outcome::Success) {
            rt.host.now_ms()
        } else {
            0
        };
        return (Outcome::Success, now);
    }
    let now = rt.host.now_ms();
    let failing = !matches!(status, Some(s) if s < 400);
    let (flags, details) = if failing {
        (stream.response_flags(), stream.code_details())
    } else {
        (0, None)
    };
    let (retry_after, reset) = if failing {
        (
            headers.get("retry-after"),
            RATELIMIT_RESET_HEADERS.iter().find_map(|h| headers.get(h)),
        )
    } else {
        (None, None)
    };
    let info = ResponseInfo {
        status,
        flags,
        details: details.as_deref(),
        duration_ms: now.saturating_sub(started_ms),
        retry_after: retry_after.as_deref(),
        ratelimit_reset: reset.as_deref(),
        now_ms: now,
    };
    (classify(&info, policy), now)
}

/// How long a callout to `u` may take: `failover.timeout`, or the upstream's
/// `response_timeout` when shorter (a callout's answer comes whole, so this bounds it all).
pub(super) fn callout_timeout(cfg: &crate::config::Config, u: UpstreamId) -> u64 {
    let t = cfg.failover.timeout_ms;
    cfg.upstream(u)
        .policy
        .response_timeout_ms
        .map_or(t, |r| r.min(t))
}

/// Whether a fallback's answer may replace the held response: a real answer, not an error.
pub(super) fn is_usable_answer(status: Option<u16>) -> bool {
    matches!(status, Some(s) if (200..400).contains(&s))
}

impl HeldResponse {
    /// Keeps what fits of a body chunk.
    pub(super) fn keep(&mut self, chunk: &[u8], end_of_stream: bool) {
        if self.complete {
            // A body already whole (a timed-out attempt's 504) takes nothing from a late
            // answer.
            return;
        }
        let room = KEPT_BODY_BYTES.saturating_sub(self.body.len());
        self.body
            .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(&[]));
        self.complete |= end_of_stream;
    }

    /// The reply that gives the client the failed response after all, marked. A stream
    /// ends with an error event in the client's shape, so its SDK raises.
    pub(super) fn into_reply(
        mut self,
        response_header: &str,
        served_by: &str,
        xlate: Option<(Api, Api)>,
    ) -> Reply {
        if let Some((client, served)) = xlate {
            // The body is the served upstream's (or the filter's own 504): in the client's
            // shape, a stream as far as it went (its error event follows), else an error.
            self.body = match (self.stream, StreamTranslator::new(client, served)) {
                (Some(_), Some(mut t)) => {
                    let mut out = Vec::new();
                    t.feed(&self.body, &mut out);
                    out
                }
                _ => {
                    set_header(&mut self.headers, "content-type", "application/json");
                    translate::error(client, served, self.status.max(400), &self.body)
                }
            };
        }
        if let Some(client) = self.stream {
            let message = "every upstream failed; this stream is incomplete";
            self.body
                .extend_from_slice(&error_event(client, "upstream_failed", message));
        }
        Reply {
            status: self.status,
            headers: reply_headers(&self.headers, response_header, served_by, &self.chain),
            body: self.body,
        }
    }
}

impl Exchange {
    pub(super) fn on_response_headers<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        headers: &dyn Headers,
        info: &dyn StreamInfo,
        end_of_stream: bool,
    ) -> Step {
        if status_of(headers) == Some(413)
            && info.code_details().as_deref() == Some(ENVOY_BODY_TOO_LARGE)
            && self.made_envoy_buffer_the_body()
        {
            return self.envoy_refused_the_body(rt);
        }
        match std::mem::replace(&mut self.phase, Phase::Delivering) {
            Phase::Sent(a) => self.judge_served(rt, a, headers, info, Some(end_of_stream)),
            // An answer before the request was complete (an early upstream reply, or Envoy's
            // own): judge it, but the request cannot be re-sent.
            Phase::RewritingBody { attempt, .. }
            | Phase::HeldForBody(Held {
                attempt: Some(attempt),
                ..
            }) => self.judge_served(rt, attempt, headers, info, None),
            // The late answer of an attempt abandoned at its `response_timeout`: held, never
            // shown to the client (the failover's reply replaces it).
            other @ (Phase::FailingOver(_) | Phase::Retrying(_)) => {
                self.phase = other;
                Step::pause()
            }
            other => {
                self.phase = other;
                Step::go()
            }
        }
    }

    /// A chunk of a JSON answer: kept at its end, for the usage.
    pub(super) fn on_metered_body<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        if let Phase::Metering { upstream, tail } = &mut self.phase {
            let from = len.saturating_sub(super::usage::TAIL_BYTES);
            tail.push(&body.read_range(from, len - from));
            if end_of_stream {
                if let Some((input, output)) = tail.usage() {
                    rt.host.metrics().tokens(*upstream, input, output);
                }
                self.phase = Phase::Delivering;
            }
        }
        Step::go()
    }

    /// While a failed response is held, its body is kept (up to a bound) and drained from
    /// Envoy's buffer; once every fallback has failed and the body is in, it is replied.
    pub(super) fn on_response_body<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        let held = match &mut self.phase {
            Phase::FailingOver(f) => &mut f.held,
            Phase::Retrying(w) => &mut w.failover.held,
            Phase::GivingUp(h) => h,
            _ => return Step::go(),
        };
        let want = KEPT_BODY_BYTES.saturating_sub(held.body.len()).min(len);
        let chunk = if want > 0 {
            body.read(want)
        } else {
            Vec::new()
        };
        held.keep(&chunk, end_of_stream);
        let step = Step::pause().with(Effect::ClearResponseBody { len });
        if !end_of_stream || !matches!(self.phase, Phase::GivingUp(_)) {
            return step;
        }
        match std::mem::replace(&mut self.phase, Phase::Answered) {
            Phase::GivingUp(held) => step.with(Effect::Reply(self.failed_reply(rt, held))),
            other => {
                self.phase = other;
                step
            }
        }
    }

    pub(super) fn failed_reply<H: Host>(&self, rt: &Runtime<H>, held: HeldResponse) -> Reply {
        let cfg = &rt.config;
        let served = self.served.map_or("", |u| cfg.upstream(u).name.as_str());
        let xlate = self.served.and_then(|u| self.xlate(cfg, u));
        held.into_reply(&cfg.response_header, served, xlate)
    }

    /// `end_of_stream` is `None` when the request cannot be re-sent.
    pub(super) fn judge_served<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        a: Attempt,
        headers: &dyn Headers,
        info: &dyn StreamInfo,
        end_of_stream: Option<bool>,
    ) -> Step {
        let cfg = &rt.config;
        let status = status_of(headers);
        let (outcome, now) = judge(
            rt,
            a.upstream,
            a.ticket,
            a.started_ms,
            status,
            headers,
            info,
        );
        self.served = Some(a.upstream);
        let mut step = Step::go().with(Effect::SetResponseHeader(
            cfg.response_header.clone(),
            cfg.upstream(a.upstream).name.clone(),
        ));
        step.effects
            .extend(self.translated_headers(cfg, a.upstream));
        let content_type = match status {
            Some(200..=299) => headers.get("content-type"),
            _ => None,
        };
        if is_stream(content_type.as_deref()) {
            // Judged by its events and recorded when they tell; held until its first token
            // when it may still fail over.
            let may_fail_over = end_of_stream == Some(false);
            let code = status.unwrap_or(200);
            let started = self.start_stream(rt, a, code, outcome, headers, may_fail_over);
            step.flow = started.flow;
            return step;
        }
        if end_of_stream != Some(true) && matches!(status, Some(400..=499)) {
            let ct = headers.get("content-type");
            if crate::error_body::worth_reading(status, ct.as_deref()) {
                // Judged once its body says what kind of error it is.
                let translated = self.xlate(cfg, a.upstream).is_some();
                self.phase = Phase::ReadingError(Box::new(super::error_read::ErrorRead {
                    status: status.unwrap_or(400),
                    outcome,
                    headers: headers.all(),
                    resendable: end_of_stream.is_some(),
                    attempt: a,
                }));
                if translated {
                    // Translated: it reaches the client as a JSON error of its own shape.
                    step.effects.push(Effect::SetResponseHeader(
                        "content-type".to_string(),
                        "application/json".to_string(),
                    ));
                }
                step.flow = super::Flow::Pause;
                return step;
            }
        }
        rt.record(a.upstream, a.ticket, now, &outcome);
        let code = status.unwrap_or(502);
        if content_type.is_some_and(|c| c.contains("json")) && end_of_stream != Some(true) {
            // A JSON answer: its usage is read from its end as it passes.
            self.phase = Phase::Metering {
                upstream: a.upstream,
                tail: Default::default(),
            };
            self.translate_answer(cfg, a.upstream, code, true, &mut step);
            return step;
        }
        let Some(end_of_stream) = end_of_stream else {
            self.translate_answer(cfg, a.upstream, code, false, &mut step);
            return step;
        };
        let retry = self.retry_wait(rt, None, a.upstream, &outcome);
        if triggers(&cfg.failover, &outcome).is_none() && retry.is_none() {
            if !end_of_stream {
                self.translate_answer(cfg, a.upstream, code, false, &mut step);
            }
            return step;
        }
        let now = if now == 0 { rt.host.now_ms() } else { now };
        let held = HeldResponse {
            status: status.unwrap_or(502),
            headers: Vec::new(),
            body: Vec::new(),
            complete: end_of_stream,
            chain: String::new(),
            stream: None,
        };
        if let Some(delay) = retry {
            let mut f = Failover::new(held, &a);
            f.held.headers = headers.all();
            self.wait_to_retry(f, a.upstream, now.saturating_add(delay));
            step.flow = super::Flow::Pause;
            return step;
        }
        match self.start_failover(rt, &a, held, Some(headers), now) {
            Some(started) => {
                step.effects.extend(started.effects);
                step.flow = super::Flow::Pause;
            }
            None if !end_of_stream => {
                self.translate_answer(cfg, a.upstream, code, false, &mut step)
            }
            None => {}
        }
        step
    }
}
