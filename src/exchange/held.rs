//! A request whose headers are held until its body is read: to route on `model`, or to
//! rewrite `model` for a fallback and send it with a correct `content-length`.
//!
//! The body is buffered by Envoy up to `body_buffer_limit`. A body callback while the headers
//! are held proves Envoy grants stop-iteration. The timer checks on a request that has seen
//! no body: if Envoy holds body bytes it never showed the filter, stop-iteration is denied
//! (for this VM); if it holds none, the client is slow and the request keeps waiting. A body
//! over the limit is routed on the headers alone, or refused with a 413 when a fallback
//! needs its model rewritten (a fallback never receives the wrong model). When Envoy's own
//! buffer overflows first (one read can carry more than the limit), Envoy's bare 413 is
//! answered by the filter's JSON one.

use log::warn;

use super::body::model_of;
use super::event::{Body, Effect, Reply, Step, StreamInfo};
use super::local;
use super::request::Routed;
use super::translation::Unsendable;
use super::{Attempt, Exchange, Held, Phase, BODY_WAIT_MS};
use crate::host::Host;
use crate::routing::{ModelLookup, RouteMatch};
use crate::runtime::{Runtime, StopIteration};

impl Exchange {
    pub(super) fn on_request_body<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        let limit = rt.config.body_buffer_limit;
        match &self.phase {
            Phase::HeldForBody(_) => {
                // A body callback while the headers are held: Envoy grants stop-iteration.
                rt.stop_iteration.set(StopIteration::Granted);
                if len > limit {
                    return self.held_body_over_limit(rt, len, end_of_stream);
                }
                if !end_of_stream {
                    return Step::pause();
                }
                let bytes = body.read(len);
                self.keep_whole(rt, &bytes);
                match std::mem::replace(&mut self.phase, Phase::Finished) {
                    Phase::HeldForBody(held) => self.release_held(rt, held, len, &bytes),
                    other => {
                        self.phase = other;
                        Step::go()
                    }
                }
            }
            Phase::RewritingBody { .. } => {
                if len > limit {
                    let why = "the request body is over the limit";
                    return self.refuse_unrewritable(rt, why, len, end_of_stream);
                }
                if !end_of_stream {
                    return Step::pause();
                }
                let bytes = body.read(len);
                self.keep_whole(rt, &bytes);
                let Phase::RewritingBody { attempt } =
                    std::mem::replace(&mut self.phase, Phase::Finished)
                else {
                    return Step::go();
                };
                let mut step = Step::go();
                match self.body_for(rt, attempt.primary, attempt.upstream, &bytes) {
                    Ok(Some(new)) => step
                        .effects
                        .push(Effect::ReplaceRequestBody { len, body: new }),
                    Ok(None) => {}
                    Err(Unsendable::Model(e)) => {
                        warn!("request body not rewritten ({e:?}): model left as sent")
                    }
                    Err(Unsendable::Refused) => {
                        // Its headers left already: it cannot go elsewhere, and never goes
                        // where it would be rejected.
                        rt.release(attempt.upstream, attempt.ticket);
                        self.phase = Phase::Answered;
                        let now = rt.host.now_ms();
                        return Step::pause()
                            .with(Effect::ClearRequestBody { len })
                            .with(Effect::Reply(local::all_open(&rt.config, now, now)));
                    }
                }
                self.phase = Phase::Sent(attempt);
                step
            }
            Phase::Refusing(_) => {
                let drained = Step::pause().with(Effect::ClearRequestBody { len });
                match std::mem::replace(&mut self.phase, Phase::Answered) {
                    Phase::Refusing(reply) => self.refusing(reply, drained, end_of_stream),
                    _ => drained,
                }
            }
            Phase::Sent(_) | Phase::Delivering | Phase::FailingOver(_) => {
                self.keep_chunk(rt, len, end_of_stream, body);
                Step::go()
            }
            _ => Step::go(),
        }
    }

    /// A held body outgrew `body_buffer_limit`. When only routing wanted it, the request
    /// goes on the route its headers gave (Envoy releases what it holds when the callback
    /// continues); when a fallback needs its model rewritten, it is refused with a 413.
    fn held_body_over_limit<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
    ) -> Step {
        self.over_limit(rt);
        let needs_rewrite = match &self.phase {
            Phase::HeldForBody(h) => h
                .attempt
                .as_ref()
                .is_some_and(|a| self.needs_body(&rt.config, a.primary, a.upstream)),
            _ => false,
        };
        if needs_rewrite {
            let why = "the request body is over the limit";
            return self.refuse_unrewritable(rt, why, len, end_of_stream);
        }
        log::info!(
            "request body over body_buffer_limit ({len} > {} bytes): routed on its headers alone",
            rt.config.body_buffer_limit
        );
        self.client.copy = None;
        match std::mem::replace(&mut self.phase, Phase::Finished) {
            Phase::HeldForBody(Held {
                attempt: Some(a), ..
            }) => {
                self.phase = Phase::Sent(a);
                Step::go()
            }
            _ => self.unrouted(&rt.config),
        }
    }

    /// Refuses a request the only upstreams able to serve it cannot take unrewritten.
    /// Called from a body callback with `len` bytes buffered and more to come (or not).
    pub(super) fn refuse_unrewritable<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        why: &str,
        len: usize,
        end_of_stream: bool,
    ) -> Step {
        match std::mem::replace(&mut self.phase, Phase::Answered) {
            Phase::HeldForBody(Held {
                attempt: Some(a), ..
            })
            | Phase::RewritingBody { attempt: a, .. }
            | Phase::Sent(a) => rt.release(a.upstream, a.ticket),
            _ => {}
        }
        let reply = local::body_not_rewritable(&rt.config, why);
        let drained = Step::pause().with(Effect::ClearRequestBody { len });
        self.refusing(reply, drained, end_of_stream)
    }

    /// Answers with `reply` once the client has sent its whole body (read and dropped,
    /// chunk by chunk): answering while it still uploads makes Envoy close the connection
    /// under it, and the client sees a reset instead of the answer.
    pub(super) fn refuse_after_body(&mut self, reply: Reply, no_body: bool, denied: bool) -> Step {
        if no_body || denied {
            // Nothing more to read, or Envoy would not show it: answer now.
            self.phase = Phase::Answered;
            return Step::pause().with(Effect::Reply(reply));
        }
        self.phase = Phase::Refusing(reply);
        Step::pause()
    }

    fn refusing(&mut self, reply: Reply, mut step: Step, end_of_stream: bool) -> Step {
        if end_of_stream {
            self.phase = Phase::Answered;
            step.effects.push(Effect::Reply(reply));
        } else {
            self.phase = Phase::Refusing(reply);
        }
        step
    }

    /// Whether Envoy buffers (or buffered) this request's body for the filter: held to read
    /// or rewrite `model`, read to be refused, or held until it outgrew `body_buffer_limit`.
    pub(super) fn made_envoy_buffer_the_body(&self) -> bool {
        match self.phase {
            Phase::HeldForBody(_) | Phase::RewritingBody { .. } | Phase::Refusing(_) => true,
            Phase::Sent(_) => self.client.over_limit_counted,
            _ => false,
        }
    }

    /// Envoy answered its bare 413 because a body it buffered for the filter outgrew its
    /// buffer: one read from the client can carry more than the limit before the filter
    /// sees it, and `per_connection_buffer_limit_bytes` may be below `body_buffer_limit`.
    /// The request cannot go on (Envoy stopped reading it): the client gets the filter's
    /// JSON 413 naming the limit instead, the request counts as over the limit, and the
    /// upstream it was meant for gets its probe slot back.
    pub(super) fn envoy_refused_the_body<H: Host>(&mut self, rt: &Runtime<H>) -> Step {
        self.over_limit(rt);
        let reply = match std::mem::replace(&mut self.phase, Phase::Answered) {
            Phase::Refusing(reply) => reply,
            Phase::HeldForBody(Held {
                attempt: Some(a), ..
            })
            | Phase::RewritingBody { attempt: a, .. }
            | Phase::Sent(a) => {
                rt.release(a.upstream, a.ticket);
                local::body_over_buffer(&rt.config)
            }
            _ => local::body_over_buffer(&rt.config),
        };
        log::info!(
            "Envoy refused a request body over its buffer limit (per_connection_buffer_limit_bytes) \
             while the filter held it: answered 413 (body_buffer_limit {} bytes)",
            rt.config.body_buffer_limit
        );
        Step::pause().with(Effect::Reply(reply))
    }

    /// The timer fired for a request held at headers that has seen no body yet. Envoy has
    /// shown the filter no body although it holds some: it does not grant stop-iteration,
    /// for this VM and every later request. Envoy holds no body yet: the client is slow,
    /// check again later. Once a body callback proved stop-iteration granted, a held
    /// request is never timed out (Envoy's own stream timeouts bound a client that never
    /// sends its body).
    pub(super) fn on_tick<H: Host>(&mut self, rt: &Runtime<H>, stream: &dyn StreamInfo) -> Step {
        let Phase::HeldForBody(held) = &mut self.phase else {
            return Step::go();
        };
        let now = rt.host.now_ms();
        if now < held.wake_ms {
            return Step::go();
        }
        if rt.stop_iteration.get() == StopIteration::Granted {
            held.wake_ms = u64::MAX;
            return Step::go();
        }
        match stream.request_body_received() {
            Some(0) => {
                held.wake_ms = now.saturating_add(BODY_WAIT_MS);
                return Step::go();
            }
            Some(_) => rt.stop_iteration_denied(),
            // Envoy does not say: this request goes on its headers alone, and nothing is
            // concluded for the others.
            None => {}
        }
        let Phase::HeldForBody(held) = std::mem::replace(&mut self.phase, Phase::Finished) else {
            return Step::go();
        };
        // Resume on the route the headers alone gave; a pending rewrite happens on the fly.
        let mut step = Step::go();
        self.phase = match held.attempt {
            Some(attempt) if self.needs_body(&rt.config, attempt.primary, attempt.upstream) => {
                step.effects
                    .push(Effect::RemoveRequestHeader("content-length".to_string()));
                Phase::RewritingBody { attempt }
            }
            Some(attempt) => Phase::Sent(attempt),
            None => Phase::Unrouted,
        };
        step.with(Effect::ResumeRequest)
    }

    /// Holds the request headers until the body is complete.
    pub(super) fn hold(&mut self, attempt: Option<Attempt>, route_on_model: bool, now_ms: u64) {
        self.phase = Phase::HeldForBody(Held {
            attempt,
            route_on_model,
            wake_ms: now_ms.saturating_add(BODY_WAIT_MS),
        });
    }

    /// The body is complete and the headers are still held: route again on `model` if a
    /// route looks at it, rewrite the body for a fallback, and let everything go.
    fn release_held<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        held: Held,
        len: usize,
        bytes: &[u8],
    ) -> Step {
        let cfg = &rt.config;
        let mut step = Step::go();
        let mut attempt = held.attempt;
        if held.route_on_model {
            let model = model_of(bytes);
            let decided = match self.match_request(cfg, None, ModelLookup::Known(model.as_deref()))
            {
                RouteMatch::Upstream(p) => Some(p),
                _ => None,
            };
            if decided != attempt.as_ref().map(|a| a.primary) {
                if let Some(old) = attempt.take() {
                    rt.release(old.upstream, old.ticket);
                    step.effects.extend(undo(old));
                }
                match decided {
                    Some(p) => match self.choose(rt, p, rt.host.now_ms(), None, true) {
                        Routed::To(a, effects) => {
                            step.effects.extend(effects);
                            attempt = Some(a);
                        }
                        Routed::Reply(reply) | Routed::Refuse(reply) => {
                            self.phase = Phase::Answered;
                            step.effects.push(Effect::Reply(reply));
                            step.flow = super::Flow::Pause;
                            return step;
                        }
                    },
                    None => {
                        let unrouted = self.unrouted(cfg);
                        step.effects.extend(unrouted.effects);
                        return step;
                    }
                }
            }
        }
        let Some(mut attempt) = attempt else {
            let unrouted = self.unrouted(cfg);
            step.effects.extend(unrouted.effects);
            return step;
        };
        // Each refusal takes one upstream out of the chain: bounded by its length.
        for _ in 0..=cfg.chain(attempt.primary).len() {
            match self.body_for(rt, attempt.primary, attempt.upstream, bytes) {
                Ok(Some(new)) => {
                    step.effects.push(Effect::SetRequestHeader(
                        "content-length".to_string(),
                        new.len().to_string(),
                    ));
                    step.effects
                        .push(Effect::ReplaceRequestBody { len, body: new });
                }
                Ok(None) => {}
                Err(Unsendable::Model(e)) => {
                    warn!("request body not rewritten ({e:?}): model left as sent")
                }
                Err(Unsendable::Refused) => {
                    // That upstream cannot take it in its format: the next one may.
                    rt.release(attempt.upstream, attempt.ticket);
                    self.client.refused.push(attempt.upstream);
                    let primary = attempt.primary;
                    step.effects.extend(undo(attempt));
                    match self.choose(rt, primary, rt.host.now_ms(), None, true) {
                        Routed::To(a, effects) => {
                            step.effects.extend(effects);
                            attempt = a;
                            continue;
                        }
                        Routed::Reply(reply) | Routed::Refuse(reply) => {
                            self.phase = Phase::Answered;
                            step.effects.push(Effect::Reply(reply));
                            step.flow = super::Flow::Pause;
                            return step;
                        }
                    }
                }
            }
            break;
        }
        self.phase = Phase::Sent(attempt);
        step
    }
}

/// The effects that undo an abandoned attempt's header changes, newest first.
fn undo(old: Attempt) -> impl Iterator<Item = Effect> {
    old.undo.into_iter().rev().map(|(name, value)| match value {
        Some(v) => Effect::SetRequestHeader(name, v),
        None => Effect::RemoveRequestHeader(name),
    })
}
