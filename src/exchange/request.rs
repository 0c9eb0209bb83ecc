//! The request side of an exchange: where the request goes, and what its body needs.
//!
//! A request for the health path is answered locally. A request no route claims passes
//! through (minus any client-sent route header: a client never picks a cluster). A routed
//! request goes to the first upstream of its primary's chain whose breaker admits it, with
//! that upstream's rewrite when it is a fallback, or gets the fast-fail reply when none
//! admits. When the body must be read first (a route matches on `model`, or a fallback must
//! have its `model` rewritten) the headers are held, so the rewritten body goes out with a
//! correct `content-length`; if Envoy does not let the filter hold headers, the body is
//! rewritten on the fly and framed chunked instead.

use log::warn;

use super::body::{model_of, with_model};
use super::event::{Body, Effect, Headers, Step};
use super::failover::method_eligible;
use super::local;
use super::{Attempt, Client, Copy, Exchange, Held, Phase, BODY_WAIT_MS};
use crate::config::{Config, UpstreamId};
use crate::host::Host;
use crate::routing::{match_route, plan, ModelLookup, Plan, RequestView, RouteMatch};
use crate::runtime::{Runtime, StopIteration};

/// Where the routing decision sent a request.
enum Routed {
    To(Attempt, Vec<Effect>),
    Reply(super::Reply),
}

impl Exchange {
    pub(super) fn on_request_headers<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        headers: &dyn Headers,
        end_of_stream: bool,
    ) -> Step {
        if !matches!(self.phase, Phase::New) {
            return Step::go();
        }
        let cfg = &rt.config;
        if cfg.failover.enabled || cfg.routes_on_model() {
            // One host call for everything failover keeps and a re-route reads.
            self.client.headers = Some(headers.all());
        }
        let lookup = |client: &Client, name: &str| match &client.headers {
            Some(_) => client.header(name).map(str::to_string),
            None => headers.get(name),
        };
        self.client.path = lookup(&self.client, ":path").unwrap_or_default();
        if let Some(hp) = &cfg.health_path {
            if self.client.path.split('?').next() == Some(hp.as_str()) {
                let method = lookup(&self.client, ":method").unwrap_or_default();
                let reply = local::health(&method, || rt.health(rt.host.now_ms()));
                self.phase = Phase::Answered;
                return Step::pause().with(Effect::Reply(reply));
            }
        }
        if cfg.routes_on_host() {
            self.client.authority = lookup(&self.client, ":authority").unwrap_or_default();
        }
        let matched = self.match_request(cfg, Some(headers), ModelLookup::Unknown);
        if matched != RouteMatch::NoRoute {
            self.client.copy = self.new_copy(cfg, end_of_stream);
        }
        let now = rt.host.now_ms();
        match matched {
            RouteMatch::NoRoute => self.unrouted(cfg),
            RouteMatch::Upstream(p) => self.route(rt, p, now, Some(headers), end_of_stream, false),
            RouteMatch::NeedsBody if end_of_stream => {
                match self.match_request(cfg, Some(headers), ModelLookup::Known(None)) {
                    RouteMatch::Upstream(p) => self.route(rt, p, now, Some(headers), true, false),
                    _ => self.unrouted(cfg),
                }
            }
            RouteMatch::NeedsBody => {
                let provisional = self.match_request(cfg, Some(headers), ModelLookup::Known(None));
                match provisional {
                    RouteMatch::Upstream(p) => self.route(rt, p, now, Some(headers), false, true),
                    _ if rt.stop_iteration.get() == StopIteration::Denied => self.unrouted(cfg),
                    _ => {
                        let mut step = self.unrouted(cfg);
                        self.hold(None, true, now);
                        step.flow = super::Flow::Pause;
                        step
                    }
                }
            }
        }
    }

    pub(super) fn on_request_body<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) -> Step {
        match &self.phase {
            Phase::HeldForBody(_) => {
                // A body callback while the headers are held: Envoy grants stop-iteration.
                rt.stop_iteration.set(StopIteration::Granted);
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
                if !end_of_stream {
                    return Step::pause();
                }
                let bytes = body.read(len);
                self.keep_whole(rt, &bytes);
                let Phase::RewritingBody { attempt, model } =
                    std::mem::replace(&mut self.phase, Phase::Finished)
                else {
                    return Step::go();
                };
                let mut step = Step::go();
                match with_model(&bytes, &model) {
                    Ok(new) => step
                        .effects
                        .push(Effect::ReplaceRequestBody { len, body: new }),
                    Err(e) => warn!("request body not rewritten ({e:?}): model left as sent"),
                }
                self.phase = Phase::Sent(attempt);
                step
            }
            Phase::Sent(_) | Phase::Delivering | Phase::FailingOver(_) => {
                self.keep_chunk(rt, len, end_of_stream, body);
                Step::go()
            }
            _ => Step::go(),
        }
    }

    /// The timer fired for a request held at headers that has seen no body yet.
    pub(super) fn on_tick<H: Host>(&mut self, rt: &Runtime<H>) -> Step {
        let Phase::HeldForBody(held) = &mut self.phase else {
            return Step::go();
        };
        if rt.host.now_ms() < held.wake_ms {
            return Step::go();
        }
        if rt.stop_iteration.get() == StopIteration::Granted {
            // Envoy lets the filter wait: this client is slow. Its stream timeouts bound it.
            held.wake_ms = u64::MAX;
            return Step::go();
        }
        rt.stop_iteration_denied();
        let Phase::HeldForBody(held) = std::mem::replace(&mut self.phase, Phase::Finished) else {
            return Step::go();
        };
        // Resume on the route the headers alone gave; a pending rewrite happens on the fly.
        let mut step = Step::go();
        self.phase = match held.attempt {
            Some(attempt) => match self.pending_model(&rt.config, &attempt) {
                Some(model) => {
                    step.effects
                        .push(Effect::RemoveRequestHeader("content-length".to_string()));
                    Phase::RewritingBody { attempt, model }
                }
                None => Phase::Sent(attempt),
            },
            None => Phase::Unrouted,
        };
        step.with(Effect::ResumeRequest)
    }

    /// Matches the request against the routes, reading headers from the map kept at request
    /// time or from `headers`.
    fn match_request(
        &self,
        cfg: &Config,
        headers: Option<&dyn Headers>,
        model: ModelLookup<'_>,
    ) -> RouteMatch {
        let header = |name: &str| match (&self.client.headers, headers) {
            (Some(_), _) | (None, None) => self.client.header(name).map(str::to_string),
            (None, Some(h)) => h.get(name),
        };
        let req = RequestView {
            path: &self.client.path,
            host: &self.client.authority,
            header: &header,
        };
        match_route(cfg, &req, model)
    }

    /// A request no route claims: it passes through, minus any client-sent route header.
    fn unrouted(&mut self, cfg: &Config) -> Step {
        self.phase = Phase::Unrouted;
        Step::go().with(Effect::RemoveRequestHeader(cfg.route_header.clone()))
    }

    /// Holds the request headers until the body is complete.
    fn hold(&mut self, attempt: Option<Attempt>, route_on_model: bool, now_ms: u64) {
        self.phase = Phase::HeldForBody(Held {
            attempt,
            route_on_model,
            wake_ms: now_ms.saturating_add(BODY_WAIT_MS),
        });
    }

    /// Routes the request to `primary`'s chain. `has_body` is false when the request ended
    /// with its headers; `route_on_model` when this is a provisional route, to be decided
    /// again on the body's `model`.
    fn route<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        primary: UpstreamId,
        now_ms: u64,
        headers: Option<&dyn Headers>,
        no_body: bool,
        route_on_model: bool,
    ) -> Step {
        let cfg = &rt.config;
        let denied = rt.stop_iteration.get() == StopIteration::Denied;
        let (attempt, effects) = match self.choose(rt, primary, now_ms, headers) {
            Routed::To(a, effects) => (a, effects),
            Routed::Reply(_) if route_on_model && !denied => {
                // Nothing admits on the headers alone; the body's model may route elsewhere.
                let mut step = self.unrouted(cfg);
                self.hold(None, true, now_ms);
                step.flow = super::Flow::Pause;
                return step;
            }
            Routed::Reply(reply) => {
                self.phase = Phase::Answered;
                return Step::pause().with(Effect::Reply(reply));
            }
        };
        let mut step = Step::go();
        step.effects = effects;
        let rewrite = if no_body {
            None
        } else {
            self.pending_model(cfg, &attempt)
        };
        if (route_on_model || rewrite.is_some()) && !denied {
            // Hold the headers: the body decides the route, or gets a new length.
            self.hold(Some(attempt), route_on_model, now_ms);
            step.flow = super::Flow::Pause;
            return step;
        }
        self.phase = match rewrite {
            Some(model) => {
                // The headers leave now: the rewritten body goes chunked.
                step.effects
                    .push(Effect::RemoveRequestHeader("content-length".to_string()));
                Phase::RewritingBody { attempt, model }
            }
            None => Phase::Sent(attempt),
        };
        step
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
                    // Undo the provisional fallback's rewrite, newest change first.
                    for (name, value) in old.undo.into_iter().rev() {
                        step.effects.push(match value {
                            Some(v) => Effect::SetRequestHeader(name, v),
                            None => Effect::RemoveRequestHeader(name),
                        });
                    }
                }
                match decided {
                    Some(p) => match self.choose(rt, p, rt.host.now_ms(), None) {
                        Routed::To(a, effects) => {
                            step.effects.extend(effects);
                            attempt = Some(a);
                        }
                        Routed::Reply(reply) => {
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
        let Some(attempt) = attempt else {
            let unrouted = self.unrouted(cfg);
            step.effects.extend(unrouted.effects);
            return step;
        };
        if let Some(model) = self.pending_model(cfg, &attempt) {
            match with_model(bytes, &model) {
                Ok(new) => {
                    step.effects.push(Effect::SetRequestHeader(
                        "content-length".to_string(),
                        new.len().to_string(),
                    ));
                    step.effects
                        .push(Effect::ReplaceRequestBody { len, body: new });
                }
                Err(e) => warn!("request body not rewritten ({e:?}): model left as sent"),
            }
        }
        self.phase = Phase::Sent(attempt);
        step
    }

    /// The `model` to write into the body: the serving fallback's rewrite, if any.
    fn pending_model(&self, cfg: &Config, attempt: &Attempt) -> Option<String> {
        if attempt.upstream == attempt.primary {
            return None;
        }
        cfg.upstream(attempt.upstream)
            .rewrite_model()
            .map(str::to_string)
    }

    /// Offers the request to `primary`'s chain: the first upstream that admits serves, with
    /// its rewrite when it is a fallback; when none admits, the fast-fail reply.
    fn choose<H: Host>(
        &self,
        rt: &Runtime<H>,
        primary: UpstreamId,
        now_ms: u64,
        headers: Option<&dyn Headers>,
    ) -> Routed {
        let cfg = &rt.config;
        let metrics = rt.host.metrics();
        match plan(cfg.chain(primary).iter().copied(), |u| rt.admit(u, now_ms)) {
            Plan::Serve {
                upstream,
                ticket,
                skipped,
            } => {
                for s in skipped {
                    metrics.rejected(s);
                }
                let mut effects = Vec::new();
                let mut undo = Vec::new();
                if upstream != primary {
                    metrics.fallback(primary, upstream);
                    if let Some(rw) = &cfg.upstream(upstream).rewrite {
                        for (name, value) in rw.header_changes() {
                            let before = match (&self.client.headers, headers) {
                                (None, Some(h)) => h.get(name),
                                _ => self.client.header(name).map(str::to_string),
                            };
                            undo.push((name.to_string(), before));
                            effects.push(Effect::SetRequestHeader(
                                name.to_string(),
                                value.to_string(),
                            ));
                        }
                    }
                }
                effects.push(Effect::SetRequestHeader(
                    cfg.route_header.clone(),
                    cfg.upstream(upstream).cluster.clone(),
                ));
                let attempt = Attempt {
                    primary,
                    upstream,
                    ticket,
                    started_ms: now_ms,
                    undo,
                };
                Routed::To(attempt, effects)
            }
            Plan::AllOpen {
                retry_at_ms,
                skipped,
            } => {
                for s in skipped {
                    metrics.rejected(s);
                }
                metrics.all_open();
                Routed::Reply(local::all_open(cfg, now_ms, retry_at_ms))
            }
        }
    }

    /// A routed request is kept for failover when failover is on, its method is eligible
    /// and its announced body fits `max_body_bytes`.
    fn new_copy(&self, cfg: &Config, end_of_stream: bool) -> Option<Copy> {
        let method = self.client.header(":method")?;
        if !method_eligible(&cfg.failover, method) {
            return None;
        }
        let announced: Option<usize> = self
            .client
            .header("content-length")
            .and_then(|v| v.parse().ok());
        if announced.is_some_and(|n| n > cfg.failover.max_body_bytes) {
            return None;
        }
        Some(Copy {
            body: Vec::new(),
            complete: end_of_stream,
        })
    }

    /// Keeps one streamed body chunk for a possible failover.
    fn keep_chunk<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        len: usize,
        end_of_stream: bool,
        body: &dyn Body,
    ) {
        let max = rt.config.failover.max_body_bytes;
        let Some(copy) = self.client.copy.as_mut() else {
            return;
        };
        if copy.complete {
            return;
        }
        if len > 0 {
            if copy.body.len().saturating_add(len) > max {
                self.client.copy = None;
                return;
            }
            copy.body.extend_from_slice(&body.read(len));
        }
        copy.complete = end_of_stream;
    }

    /// Keeps the whole (buffered) body for a possible failover.
    fn keep_whole<H: Host>(&mut self, rt: &Runtime<H>, bytes: &[u8]) {
        if bytes.len() > rt.config.failover.max_body_bytes {
            self.client.copy = None;
        } else if let Some(copy) = self.client.copy.as_mut() {
            copy.body = bytes.to_vec();
            copy.complete = true;
        }
    }
}
