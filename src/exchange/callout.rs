//! The calls an exchange sends itself: a fallback of the primary's chain (in-request
//! failover) or the same upstream again (a retry), each a callout with the client's kept
//! request; sending the next one, and judging its answer as the upstream's own.

use log::warn;

use super::event::{Answer, Effect, Headers, Reply, Step};
use super::failover::{callout_failure, callout_headers, chain_label, reply_headers, set_header};
use super::{Attempt, Call, Exchange, Failover, HeldResponse, Phase};
use crate::breaker::{Admission, Ticket};
use crate::classify::{callout_local_reply, UPSTREAM_TIME_HEADER};
use crate::config::UpstreamId;
use crate::host::{Host, HttpCall};
use crate::metrics::FailoverResult;
use crate::outcome::Outcome;
use crate::runtime::Runtime;

use super::response::{callout_timeout, is_usable_answer, judge, status_of, CalloutInfo};
use super::stream::is_stream;
use super::translation::{label, translate_stream, TRANSLATED_HEADER};
use crate::translate;

impl Exchange {
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
        let body = match self.body_for(rt, f.primary, next, &copy.body) {
            Ok(Some(b)) => b,
            Ok(None) => copy.body.clone(),
            Err(e) => {
                warn!("call to {} skipped: body not sendable ({e:?})", target.name);
                return None;
            }
        };
        let mut call_headers = callout_headers(
            headers,
            rewrite,
            &cfg.route_header,
            &target.cluster,
            body.len(),
        );
        for (name, value) in self.translation_headers(cfg, f.primary, next) {
            // The rewrite's own headers win (its path is already left out).
            if !rewrite.is_some_and(|r| r.headers.iter().any(|(k, _)| k == name)) {
                set_header(&mut call_headers, name, value);
            }
        }
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
            let mut reply = Reply {
                status: status.unwrap_or(200),
                headers: reply_headers(
                    &a.headers.all(),
                    &cfg.response_header,
                    &target.name,
                    &chain_label(cfg, &f.called),
                ),
                body: a.body.read(a.body_len),
            };
            if let Some(pair) = self.xlate(cfg, call.upstream) {
                // The fallback's answer, in the client's format (a stream whole, as it came).
                let (client, served) = pair;
                let sse = is_stream(a.headers.get("content-type").as_deref());
                match sse {
                    true => {
                        let usage = self.client.usage_chunk.get();
                        reply.body = translate_stream(client, served, usage, &reply.body);
                    }
                    false => {
                        if let Some(b) = translate::response(client, served, &reply.body) {
                            reply.body = b;
                        }
                    }
                }
                reply
                    .headers
                    .push((TRANSLATED_HEADER.to_string(), label(pair)));
            }
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
