//! The attempt policy of one upstream: a failed attempt tried again on the *same* upstream
//! before failover (`retry`), and a first-byte deadline on a routed attempt
//! (`response_timeout`).
//!
//! A retry is a callout to the upstream's callout cluster carrying the kept request, like a
//! failover callout, after a delay: the provider's `Retry-After` (or rate-limit reset) when
//! it asks for one no longer than `max_retry_after`, else a small jittered backoff. While it
//! waits, the failed response stays held ([`Phase::Retrying`]) and the timer sends the retry
//! once the delay is over, if that upstream's breaker still admits it; otherwise the request
//! goes on to the fallbacks. A routed attempt with no response headers by its
//! `response_timeout` counts as `timeout` and fails over at once; its late answer, if any,
//! is held and dropped.

use super::event::{Effect, Step};
use super::failover::{chain_label, triggers};
use super::{Attempt, Exchange, Failover, HeldResponse, Phase, Waiting};
use crate::breaker::Admission;
use crate::config::{Policy, UpstreamId};
use crate::host::Host;
use crate::outcome::{FailureReason, Outcome};
use crate::runtime::Runtime;

/// The first retry's backoff before jitter; each further retry doubles it.
pub const RETRY_BACKOFF_MS: u64 = 100;

/// How long to wait before retrying `outcome` on an upstream with `policy`, which already
/// had `used` retries; `None` when it is not retried. `random` is in `[0, 1)`.
pub fn retry_delay(policy: &Policy, outcome: &Outcome, used: u32, random: f64) -> Option<u64> {
    let Outcome::Failure {
        reason,
        retry_after_ms,
    } = outcome
    else {
        return None;
    };
    let r = &policy.retry;
    if used >= r.attempts || !r.on.contains(reason) {
        return None;
    }
    if retry_after_ms.is_some_and(|ms| ms > r.max_retry_after_ms) {
        // A long wait is better spent on a fallback.
        return None;
    }
    let backoff = RETRY_BACKOFF_MS.saturating_mul(1 << used.min(10));
    let jittered = (backoff as f64 * (0.5 + random.clamp(0.0, 1.0))) as u64;
    Some(retry_after_ms.unwrap_or(0).max(jittered))
}

/// The outcome of a routed attempt that gave no response headers by its deadline.
fn timed_out(policy: &Policy) -> Outcome {
    if policy.conditions.timeout {
        Outcome::failure(FailureReason::Timeout)
    } else {
        Outcome::Ignored
    }
}

impl Exchange {
    /// Retries already spent on `upstream` in this failover.
    fn retries_used(f: &Failover, upstream: UpstreamId) -> u32 {
        let calls = f.called.iter().filter(|&&u| u == upstream).count();
        u32::try_from(calls.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// When `failed`'s answer (`outcome`) is to be retried on `failed` itself, and this
    /// request can be re-sent at all: the delay.
    pub(super) fn retry_wait<H: Host>(
        &self,
        rt: &Runtime<H>,
        f: Option<&Failover>,
        failed: UpstreamId,
        outcome: &Outcome,
    ) -> Option<u64> {
        self.client.headers.as_ref()?;
        self.client.copy.as_ref().filter(|c| c.complete)?;
        let used = f.map_or(0, |f| Self::retries_used(f, failed));
        let policy = &rt.config.upstream(failed).policy;
        retry_delay(policy, outcome, used, rt.host.random_unit())
    }

    /// `failed` answered with `outcome` during a failover (`f`): retry it after its delay,
    /// or go on to the next fallback, or give up.
    pub(super) fn after_failure<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        f: Failover,
        failed: UpstreamId,
        outcome: &Outcome,
        now_ms: u64,
    ) -> Step {
        match self.retry_wait(rt, Some(&f), failed, outcome) {
            Some(delay) => self.wait_to_retry(f, failed, now_ms.saturating_add(delay)),
            None => self.continue_or_give_up(rt, f, failed, now_ms),
        }
    }

    /// Holds the failed response until `at_ms`, when `upstream` is tried again.
    pub(super) fn wait_to_retry(&mut self, f: Failover, upstream: UpstreamId, at_ms: u64) -> Step {
        self.phase = Phase::Retrying(Box::new(Waiting {
            failover: f,
            upstream,
            at_ms,
        }));
        Step::go()
    }

    /// The timer, while a retry waits: once its time has come, the retry is sent if its
    /// upstream's breaker still admits it; otherwise the request goes on to the fallbacks.
    pub(super) fn on_retry_tick<H: Host>(&mut self, rt: &Runtime<H>) -> Step {
        let now = rt.host.now_ms();
        if !matches!(&self.phase, Phase::Retrying(w) if now >= w.at_ms) {
            return Step::go();
        }
        let Phase::Retrying(w) = std::mem::replace(&mut self.phase, Phase::Delivering) else {
            return Step::go();
        };
        let Waiting {
            failover: mut f,
            upstream,
            ..
        } = *w;
        match rt.admit(upstream, now) {
            Admission::Admitted(ticket) => match self.call_to(rt, &mut f, upstream, ticket, now) {
                Some(call) => {
                    self.phase = Phase::FailingOver(f);
                    Step::go().with(Effect::Call(call))
                }
                None => {
                    rt.release(upstream, ticket);
                    self.continue_or_give_up(rt, f, upstream, now)
                }
            },
            Admission::Rejected { .. } => {
                // The breaker opened while the retry waited: never send it.
                rt.host.metrics().rejected(upstream);
                self.continue_or_give_up(rt, f, upstream, now)
            }
        }
    }

    /// The timer, while a routed attempt waits for its response headers: past the
    /// upstream's `response_timeout`, the attempt is a `timeout` and is abandoned; the
    /// request fails over (or is retried), or the client gets a 504 at once.
    pub(super) fn on_sent_tick<H: Host>(&mut self, rt: &Runtime<H>) -> Step {
        let now = rt.host.now_ms();
        let due = match &self.phase {
            Phase::Sent(a) => response_deadline(&rt.config.upstream(a.upstream).policy, a)
                .is_some_and(|t| now >= t),
            _ => false,
        };
        if !due {
            return Step::go();
        }
        let Phase::Sent(a) = std::mem::replace(&mut self.phase, Phase::Delivering) else {
            return Step::go();
        };
        let cfg = &rt.config;
        let outcome = timed_out(&cfg.upstream(a.upstream).policy);
        rt.record(a.upstream, a.ticket, now, &outcome);
        self.served = Some(a.upstream);
        let held = HeldResponse {
            status: 504,
            headers: vec![("content-type".to_string(), "text/plain".to_string())],
            body: b"upstream response timeout".to_vec(),
            complete: true,
            chain: String::new(),
            stream: None,
        };
        let f = Failover::new(held, &a);
        let step = if triggers(&cfg.failover, &outcome).is_some()
            || self.retry_wait(rt, None, a.upstream, &outcome).is_some()
        {
            self.after_failure(rt, f, a.upstream, &outcome, now)
        } else {
            // No failover for a timeout: the client gets the 504 now, which abandons the
            // upstream request.
            let mut held = f.held;
            held.chain = format!("{} (failed)", chain_label(cfg, &f.called));
            self.phase = Phase::Answered;
            Step::go().with(Effect::Reply(self.failed_reply(rt, held)))
        };
        step
    }
}

/// When a routed attempt's response headers are due, if its upstream sets a
/// `response_timeout`.
pub(super) fn response_deadline(policy: &Policy, a: &Attempt) -> Option<u64> {
    policy
        .response_timeout_ms
        .map(|ms| a.started_ms.saturating_add(ms))
}
