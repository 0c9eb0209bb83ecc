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
//! left, the client gets the held response, marked `(failed)`.

use log::warn;

use super::body::with_model;
use super::event::{Answer, Body, Effect, Headers, Reply, Step, StreamInfo};
use super::failover::{callout_failure, callout_headers, chain_label, reply_headers, triggers};
use super::stream::is_stream;
use super::{Attempt, Call, Exchange, Failover, Held, HeldResponse, Phase, KEPT_BODY_BYTES};
use crate::breaker::{Admission, Ticket};
use crate::classify::{
    callout_local_reply, classify, is_plain_success, ResponseInfo, UPSTREAM_TIME_HEADER,
};
use crate::config::UpstreamId;
use crate::hints::RATELIMIT_RESET_HEADERS;
use crate::host::{Host, HttpCall};
use crate::metrics::FailoverResult;
use crate::outcome::Outcome;
use crate::runtime::Runtime;
use crate::sse::error_event;

/// The HTTP status of a header map.
fn status_of(headers: &dyn Headers) -> Option<u16> {
    headers.get(":status").and_then(|s| s.parse().ok())
}

/// What Envoy said about a callout's answer: nothing for an upstream's own answer; the flags
/// and details of a routed failure for Envoy's own local reply.
struct CalloutInfo(Option<(u64, &'static str)>);

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
fn judge<H: Host>(
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
fn callout_timeout(cfg: &crate::config::Config, u: UpstreamId) -> u64 {
    let t = cfg.failover.timeout_ms;
    cfg.upstream(u)
        .policy
        .response_timeout_ms
        .map_or(t, |r| r.min(t))
}

/// Whether a fallback's answer may replace the held response: a real answer, not an error.
fn is_usable_answer(status: Option<u16>) -> bool {
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
    fn into_reply(mut self, response_header: &str, served_by: &str) -> Reply {
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
        held.into_reply(&cfg.response_header, served)
    }

    /// `end_of_stream` is `None` when the request cannot be re-sent.
    fn judge_served<H: Host>(
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
                self.phase = Phase::ReadingError(Box::new(super::error_read::ErrorRead {
                    status: status.unwrap_or(400),
                    outcome,
                    headers: headers.all(),
                    resendable: end_of_stream.is_some(),
                    attempt: a,
                }));
                step.flow = super::Flow::Pause;
                return step;
            }
        }
        rt.record(a.upstream, a.ticket, now, &outcome);
        if content_type.is_some_and(|c| c.contains("json")) && end_of_stream != Some(true) {
            // A JSON answer: its usage is read from its end as it passes.
            self.phase = Phase::Metering {
                upstream: a.upstream,
                tail: Default::default(),
            };
            return step;
        }
        let Some(end_of_stream) = end_of_stream else {
            return step;
        };
        let retry = self.retry_wait(rt, None, a.upstream, &outcome);
        if triggers(&cfg.failover, &outcome).is_none() && retry.is_none() {
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
        if let Some(started) = self.start_failover(rt, &a, held, Some(headers), now) {
            step.effects.extend(started.effects);
            step.flow = super::Flow::Pause;
        }
        step
    }

    /// Holds `a`'s failed answer (`held`) and calls the first fallback that admits the
    /// request; `None`, and nothing changed, when none can be called. `headers` are the
    /// failed answer's, read only when a fallback is called.
    pub(super) fn start_failover<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        a: &Attempt,
        held: HeldResponse,
        headers: Option<&dyn Headers>,
        now_ms: u64,
    ) -> Option<Step> {
        let mut f = Failover::new(held, a);
        let call = self.next_call(rt, &mut f, a.upstream, now_ms)?;
        if let Some(h) = headers {
            f.held.headers = h.all();
        }
        self.phase = Phase::FailingOver(f);
        Some(Step::pause().with(Effect::Call(call)))
    }

    /// Picks the next admitting fallback after `failed` and builds its callout. `None` when
    /// the request was not kept, attempts are used up or no candidate admits.
    fn next_call<H: Host>(
        &self,
        rt: &Runtime<H>,
        f: &mut Failover,
        failed: UpstreamId,
        now_ms: u64,
    ) -> Option<HttpCall> {
        let cfg = &rt.config;
        self.client.headers.as_ref()?;
        self.client.copy.as_ref().filter(|c| c.complete)?;
        let metrics = rt.host.metrics();
        while f.attempts < cfg.failover.max_attempts {
            let next = cfg
                .chain(f.primary)
                .iter()
                .copied()
                .find(|u| !f.tried.contains(u))?;
            f.tried.push(next);
            let ticket = match rt.admit(next, now_ms) {
                Admission::Admitted(t) => t,
                Admission::Rejected { .. } => {
                    metrics.failover(failed, next, FailoverResult::Skipped);
                    continue;
                }
            };
            match self.call_to(rt, f, next, ticket, now_ms) {
                Some(call) => {
                    f.attempts += 1;
                    return Some(call);
                }
                None => {
                    // Never send a fallback the wrong model.
                    rt.release(next, ticket);
                    metrics.failover(failed, next, FailoverResult::Skipped);
                }
            }
        }
        None
    }

    /// The callout carrying the kept request to `target`, admitted with `ticket`, with its
    /// rewrite when it is not the primary; recorded as `f`'s call in flight. `None` when
    /// the request was not kept or its body cannot take the rewrite.
    pub(super) fn call_to<H: Host>(
        &self,
        rt: &Runtime<H>,
        f: &mut Failover,
        next: UpstreamId,
        ticket: Ticket,
        now_ms: u64,
    ) -> Option<HttpCall> {
        let cfg = &rt.config;
        let headers = self.client.headers.as_ref()?;
        let copy = self.client.copy.as_ref().filter(|c| c.complete)?;
        let target = cfg.upstream(next);
        let rewrite = (next != f.primary)
            .then_some(target.rewrite.as_ref())
            .flatten();
        let body = match rewrite.and_then(|r| r.model.as_deref()) {
            Some(model) => match with_model(&copy.body, model) {
                Ok(b) => b,
                Err(e) => {
                    warn!(
                        "call to {} skipped: body not rewritable ({e:?})",
                        target.name
                    );
                    return None;
                }
            },
            None => copy.body.clone(),
        };
        let call_headers = callout_headers(
            headers,
            rewrite,
            &cfg.route_header,
            &target.cluster,
            body.len(),
        );
        f.call = Some(Call {
            upstream: next,
            ticket,
            started_ms: now_ms,
        });
        Some(HttpCall {
            cluster: target.callout_cluster.clone(),
            headers: call_headers,
            body,
            timeout_ms: callout_timeout(cfg, next),
        })
    }

    /// The failover in progress and its callout in flight, taken out of the phase (which
    /// stays as it was when there is none).
    fn take_call(&mut self) -> Option<(Failover, Call)> {
        if !matches!(&self.phase, Phase::FailingOver(f) if f.call.is_some()) {
            return None;
        }
        match std::mem::replace(&mut self.phase, Phase::Delivering) {
            Phase::FailingOver(mut f) => f.call.take().map(|call| (f, call)),
            _ => None,
        }
    }

    /// The callout answered (or the host reported no answer at all).
    pub(super) fn on_callout<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        answer: Option<Answer<'_>>,
    ) -> Step {
        let Some((mut f, call)) = self.take_call() else {
            return Step::go();
        };
        let cfg = &rt.config;
        let status = answer.as_ref().and_then(|a| status_of(a.headers));
        let (outcome, now) = match &answer {
            Some(a) => {
                // Envoy's own reply to a callout it could not complete is judged like the
                // same failure on a routed request (only error statuses need the body).
                let local = match status {
                    Some(s) if s >= 500 => {
                        let from_upstream = a.headers.get(UPSTREAM_TIME_HEADER).is_some();
                        let head = a.body.read(a.body_len.min(128));
                        callout_local_reply(status, from_upstream, &head)
                    }
                    _ => None,
                };
                let info = CalloutInfo(local);
                judge(
                    rt,
                    call.upstream,
                    call.ticket,
                    call.started_ms,
                    status,
                    a.headers,
                    &info,
                )
            }
            None => {
                let now = rt.host.now_ms();
                let elapsed = now.saturating_sub(call.started_ms);
                let reason = callout_failure(elapsed, callout_timeout(cfg, call.upstream));
                (Outcome::failure(reason), now)
            }
        };
        let now = if now == 0 { rt.host.now_ms() } else { now };
        rt.record(call.upstream, call.ticket, now, &outcome);
        let metrics = rt.host.metrics();
        let from = f.called.last().copied().unwrap_or(call.upstream);
        // A retry on the same upstream is not a failover.
        let failover = from != call.upstream;
        f.called.push(call.upstream);
        if let (Some(a), true) = (&answer, is_usable_answer(status)) {
            if failover {
                metrics.failover(from, call.upstream, FailoverResult::Success);
            }
            let target = cfg.upstream(call.upstream);
            let reply = Reply {
                status: status.unwrap_or(200),
                headers: reply_headers(
                    &a.headers.all(),
                    &cfg.response_header,
                    &target.name,
                    &chain_label(cfg, &f.called),
                ),
                body: a.body.read(a.body_len),
            };
            self.phase = Phase::Answered;
            return Step::go().with(Effect::Reply(reply));
        }
        if failover {
            metrics.failover(from, call.upstream, FailoverResult::Failure);
        }
        self.after_failure(rt, f, call.upstream, &outcome, now)
    }

    /// The callout could not be sent: free its slot and try the next fallback.
    pub(super) fn on_callout_not_sent<H: Host>(&mut self, rt: &Runtime<H>) -> Step {
        let Some((f, call)) = self.take_call() else {
            return Step::go();
        };
        let cfg = &rt.config;
        let target = cfg.upstream(call.upstream);
        warn!(
            "failover to upstream {} could not be sent to cluster {}",
            target.name, target.callout_cluster
        );
        rt.release(call.upstream, call.ticket);
        let from = f.called.last().copied().unwrap_or(call.upstream);
        rt.host
            .metrics()
            .failover(from, call.upstream, FailoverResult::Failure);
        let now = rt.host.now_ms();
        self.continue_or_give_up(rt, f, call.upstream, now)
    }

    /// Calls the next fallback, or gives the client the failed response, marked: at once
    /// when its body is in, else when it ends.
    pub(super) fn continue_or_give_up<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        mut f: Failover,
        failed: UpstreamId,
        now_ms: u64,
    ) -> Step {
        if let Some(call) = self.next_call(rt, &mut f, failed, now_ms) {
            self.phase = Phase::FailingOver(f);
            return Step::go().with(Effect::Call(call));
        }
        let mut held = f.held;
        held.chain = format!("{} (failed)", chain_label(&rt.config, &f.called));
        if !held.complete {
            self.phase = Phase::GivingUp(held);
            return Step::go();
        }
        self.phase = Phase::Answered;
        Step::go().with(Effect::Reply(self.failed_reply(rt, held)))
    }
}
