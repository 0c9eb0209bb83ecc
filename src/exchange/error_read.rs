//! An error answer whose body is read before it is judged: the status alone does not tell
//! used-up quota from a rate limit, nor a prompt too long for the model from a bad request.
//!
//! A 400, 402, 403 or 429 JSON answer is held at its headers while Envoy buffers up to
//! [`ERROR_BODY_BYTES`] of its body; then [`error_body::read`] decides:
//! * **quota**: a `quota_exhausted` failure (it opens the breaker at once), then retry or
//!   failover as for any failure;
//! * **context length**: never a failure; re-sent to the upstream's
//!   `context_window_fallback` with that upstream's rewrite when it names one, else passed
//!   through untouched;
//! * **content policy**: never a failure; passed through untouched;
//! * anything else: judged by its status, as before.

use super::event::{Body, Effect, Step};
use super::failover::triggers;
use super::{Attempt, Exchange, Failover, HeldResponse, Phase, KEPT_BODY_BYTES};
use crate::breaker::Admission;
use crate::config::UpstreamId;
use crate::error_body::{self, ErrorKind, ERROR_BODY_BYTES};
use crate::host::Host;
use crate::outcome::{FailureReason, Outcome};
use crate::runtime::Runtime;

/// An error answer held at its headers while its body is read.
#[derive(Debug)]
pub(super) struct ErrorRead {
    pub attempt: Attempt,
    pub status: u16,
    /// The outcome its status and headers alone give.
    pub outcome: Outcome,
    pub headers: Vec<(String, String)>,
    /// The request can be re-sent (it was complete when the answer came).
    pub resendable: bool,
}

impl Exchange {
    /// A chunk of a held error answer: wait for the body's end (or its first
    /// [`ERROR_BODY_BYTES`]), then judge it and pass it, retry, or fail over.
    pub(super) fn on_error_body<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        if !end_of_stream && len < ERROR_BODY_BYTES {
            // Envoy buffers it; the next callback shows everything so far.
            return Step::pause();
        }
        let Phase::ReadingError(r) = std::mem::replace(&mut self.phase, Phase::Delivering) else {
            return Step::go();
        };
        let ErrorRead {
            attempt: a,
            status,
            outcome,
            headers,
            resendable,
        } = *r;
        let kept = body.read(len.min(KEPT_BODY_BYTES));
        let kind = error_body::read(kept.get(..ERROR_BODY_BYTES).unwrap_or(&kept));
        let outcome = match kind {
            ErrorKind::Quota => Outcome::failure(FailureReason::QuotaExhausted),
            ErrorKind::ContextLength | ErrorKind::ContentPolicy => Outcome::Ignored,
            ErrorKind::Other => outcome,
        };
        let now = rt.host.now_ms();
        rt.record(a.upstream, a.ticket, now, &outcome);
        if !resendable || kind == ErrorKind::ContentPolicy {
            return self.pass_read_error(rt, a.upstream, status, len, end_of_stream, body);
        }
        let mut held = HeldResponse {
            status,
            headers,
            body: Vec::new(),
            complete: false,
            chain: String::new(),
            stream: None,
        };
        held.keep(&kept, end_of_stream);
        let drained = Step::pause().with(Effect::ClearResponseBody { len });
        let cfg = &rt.config;
        let started = if kind == ErrorKind::ContextLength {
            match cfg.upstream(a.upstream).context_window_fallback {
                Some(target) => self.call_larger(rt, &a, held, target, now),
                None => None,
            }
        } else {
            let retry = self.retry_wait(rt, None, a.upstream, &outcome);
            if let Some(delay) = retry {
                let f = Failover::new(held, &a);
                self.wait_to_retry(f, a.upstream, now.saturating_add(delay));
                return drained;
            }
            match triggers(&cfg.failover, &outcome) {
                Some(_) => self.start_failover(rt, &a, held, None, now),
                None => None,
            }
        };
        match started {
            Some(step) => {
                let mut out = drained;
                out.effects.extend(step.effects);
                out
            }
            // Nothing to call: the answer goes to the client as it came (translated).
            None => self.pass_read_error(rt, a.upstream, status, len, end_of_stream, body),
        }
    }

    /// Re-sends a request too long for `a`'s context window to `target`, with its rewrite;
    /// no other upstream is tried after it. `None` when it cannot be called.
    fn call_larger<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        a: &Attempt,
        held: HeldResponse,
        target: UpstreamId,
        now_ms: u64,
    ) -> Option<Step> {
        let mut f = Failover::new(held, a);
        f.tried.extend(rt.config.chain(a.primary).iter().copied());
        f.tried.push(target);
        let ticket = match rt.admit(target, now_ms) {
            Admission::Admitted(t) => t,
            Admission::Rejected { .. } => {
                rt.host.metrics().rejected(target);
                return None;
            }
        };
        match self.call_to(rt, &mut f, target, ticket, now_ms) {
            Some(call) => {
                self.phase = Phase::FailingOver(f);
                Some(Step::pause().with(Effect::Call(call)))
            }
            None => {
                rt.release(target, ticket);
                None
            }
        }
    }
}
