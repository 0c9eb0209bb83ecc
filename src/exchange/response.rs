//! The response side of an exchange: judge each attempt against the upstream that produced
//! it, and fail over while nothing has reached the client.
//!
//! The served attempt's response headers are classified and recorded against its breaker.
//! When the outcome is a failure listed in `failover.on` and the request was kept, the
//! response is held and the next fallback of the primary's chain whose breaker admits it is
//! called with the client's request (and that fallback's rewrite). Only a successful answer
//! replaces the held response; any other answer is recorded against that fallback and the
//! chain goes on. When nothing is left, the held response goes to the client, marked
//! `(failed)`.

use log::warn;

use super::body::with_model;
use super::event::{Answer, Effect, Headers, Reply, Step, StreamInfo};
use super::failover::{
    callout_failure, callout_headers, chain_label, reply_headers, triggers, FAILOVER_HEADER,
};
use super::{Attempt, Call, Exchange, Failover, Held, Phase};
use crate::breaker::Admission;
use crate::classify::{classify, is_plain_success, ResponseInfo};
use crate::config::UpstreamId;
use crate::hints::RATELIMIT_RESET_HEADERS;
use crate::host::{Host, HttpCall};
use crate::metrics::FailoverResult;
use crate::outcome::Outcome;
use crate::runtime::Runtime;

/// The HTTP status of a header map.
fn status_of(headers: &dyn Headers) -> Option<u16> {
    headers.get(":status").and_then(|s| s.parse().ok())
}

/// Classifies one attempt's answer on `u`, reading only what the status makes necessary.
/// `stream` is Envoy's view of a routed attempt (flags and code details); a callout has none.
/// Returns the outcome and the time it was judged at (0 when the clock was not needed).
fn judge<H: Host>(
    rt: &Runtime<H>,
    u: UpstreamId,
    ticket: crate::breaker::Ticket,
    started_ms: u64,
    status: Option<u16>,
    headers: &dyn Headers,
    stream: Option<&dyn StreamInfo>,
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
    let (flags, details) = match stream {
        Some(info) if failing => (info.response_flags(), info.code_details()),
        Some(_) => (0, None),
        None => (0, Some("via_upstream".to_string())),
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

/// Whether a fallback's answer may replace the held response: a real answer, not an error.
fn is_usable_answer(status: Option<u16>) -> bool {
    matches!(status, Some(s) if (200..400).contains(&s))
}

impl Exchange {
    pub(super) fn on_response_headers<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        headers: &dyn Headers,
        info: &dyn StreamInfo,
    ) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Delivering) {
            Phase::Sent(a) => self.judge_served(rt, a, headers, info, true),
            // An answer before the request was complete (an early upstream reply, or Envoy's
            // own): judge it, but the request cannot be re-sent.
            Phase::RewritingBody { attempt, .. }
            | Phase::HeldForBody(Held {
                attempt: Some(attempt),
                ..
            }) => self.judge_served(rt, attempt, headers, info, false),
            other => {
                self.phase = other;
                Step::go()
            }
        }
    }

    fn judge_served<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        a: Attempt,
        headers: &dyn Headers,
        info: &dyn StreamInfo,
        may_fail_over: bool,
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
            Some(info),
        );
        rt.record(a.upstream, a.ticket, now, &outcome);
        let mut step = Step::go().with(Effect::SetResponseHeader(
            cfg.response_header.clone(),
            cfg.upstream(a.upstream).name.clone(),
        ));
        if !may_fail_over || triggers(&cfg.failover, &outcome).is_none() {
            return step;
        }
        let now = if now == 0 { rt.host.now_ms() } else { now };
        let mut f = Failover {
            primary: a.primary,
            tried: vec![a.upstream],
            called: vec![a.upstream],
            attempts: 0,
            call: None,
        };
        if let Some(call) = self.next_call(rt, &mut f, a.upstream, now) {
            // Hold the failed response until the fallback answers.
            self.phase = Phase::FailingOver(f);
            step.effects.push(Effect::Call(call));
            step.flow = super::Flow::Pause;
        }
        step
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
        let headers = self.client.headers.as_ref()?;
        let copy = self.client.copy.as_ref().filter(|c| c.complete)?;
        let metrics = rt.host.metrics();
        while f.attempts < cfg.failover.max_attempts {
            let next = cfg
                .chain(f.primary)
                .iter()
                .copied()
                .find(|u| !f.tried.contains(u))?;
            f.tried.push(next);
            let target = cfg.upstream(next);
            let body = match target.rewrite_model() {
                Some(model) => match with_model(&copy.body, model) {
                    Ok(b) => b,
                    Err(e) => {
                        // Never send a fallback the wrong model.
                        warn!(
                            "failover to {} skipped: body not rewritable ({e:?})",
                            target.name
                        );
                        metrics.failover(failed, next, FailoverResult::Skipped);
                        continue;
                    }
                },
                None => copy.body.clone(),
            };
            let ticket = match rt.admit(next, now_ms) {
                Admission::Admitted(t) => t,
                Admission::Rejected { .. } => {
                    metrics.failover(failed, next, FailoverResult::Skipped);
                    continue;
                }
            };
            let call_headers = callout_headers(
                headers,
                target.rewrite.as_ref(),
                &cfg.route_header,
                &target.cluster,
                body.len(),
            );
            f.attempts += 1;
            f.call = Some(Call {
                upstream: next,
                ticket,
                started_ms: now_ms,
            });
            return Some(HttpCall {
                cluster: target.callout_cluster.clone(),
                headers: call_headers,
                body,
                timeout_ms: cfg.failover.timeout_ms,
            });
        }
        None
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
            Some(a) => judge(
                rt,
                call.upstream,
                call.ticket,
                call.started_ms,
                status,
                a.headers,
                None,
            ),
            None => {
                let now = rt.host.now_ms();
                let elapsed = now.saturating_sub(call.started_ms);
                let reason = callout_failure(elapsed, cfg.failover.timeout_ms);
                (Outcome::failure(reason), now)
            }
        };
        let now = if now == 0 { rt.host.now_ms() } else { now };
        rt.record(call.upstream, call.ticket, now, &outcome);
        let metrics = rt.host.metrics();
        let from = f.called.last().copied().unwrap_or(call.upstream);
        f.called.push(call.upstream);
        if let (Some(a), true) = (&answer, is_usable_answer(status)) {
            metrics.failover(from, call.upstream, FailoverResult::Success);
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
        metrics.failover(from, call.upstream, FailoverResult::Failure);
        self.continue_or_give_up(rt, f, call.upstream, now)
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

    /// Calls the next fallback, or lets the held response go, marked as a failed failover.
    fn continue_or_give_up<H: Host>(
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
        self.phase = Phase::Delivering;
        let chain = format!("{} (failed)", chain_label(&rt.config, &f.called));
        Step::go()
            .with(Effect::SetResponseHeader(
                FAILOVER_HEADER.to_string(),
                chain,
            ))
            .with(Effect::ResumeResponse)
    }
}
