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

use log::info;

use super::event::{Body, Effect, Headers, Step};
use super::failover::{method_eligible, FAILOVER_HEADER};
use super::local;
use super::{Attempt, Client, Copy, Exchange, Phase};
use crate::config::{Config, UpstreamId};
use crate::host::Host;
use crate::routing::{matched_route, plan, ModelLookup, Plan, RequestView, RouteMatch};
use crate::runtime::{Runtime, StopIteration};
use crate::translate::Api;

/// Where the routing decision sent a request.
pub(super) enum Routed {
    To(Attempt, Vec<Effect>),
    Reply(super::Reply),
    /// Refused for its body: answered once the client has sent it.
    Refuse(super::Reply),
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
        if cfg.failover.enabled || cfg.routes_on_model() || cfg.translates() {
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
        if cfg.routes_on_model() || cfg.rewrites_body() {
            self.client.announced =
                lookup(&self.client, "content-length").and_then(|v| v.parse().ok());
            self.client.encoded = lookup(&self.client, "content-encoding")
                .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        }
        // Headers only the filter may write never reach a provider from a client.
        let forged: Vec<Effect> = [FAILOVER_HEADER, cfg.response_header.as_str()]
            .iter()
            .filter(|name| lookup(&self.client, name).is_some())
            .map(|name| Effect::RemoveRequestHeader(name.to_string()))
            .collect();
        let mut step = self.route_request(rt, headers, end_of_stream);
        if !forged.is_empty() {
            step.effects.splice(0..0, forged);
        }
        step
    }

    /// Routing, once the request is known to be neither the health path's nor forged.
    fn route_request<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        headers: &dyn Headers,
        end_of_stream: bool,
    ) -> Step {
        let cfg = &rt.config;
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
                if let Some(why) = self.client.unrewritable(cfg.body_buffer_limit) {
                    // Too large to hold, or compressed: the model cannot be read, so the
                    // request routes on its headers alone.
                    if !self.client.encoded {
                        self.over_limit(rt);
                    }
                    info!("{why}: routes on \"model\" skipped for this request");
                    return match provisional {
                        RouteMatch::Upstream(p) => {
                            self.route(rt, p, now, Some(headers), false, false)
                        }
                        _ => self.unrouted(cfg),
                    };
                }
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

    /// Matches the request against the routes, reading headers from the map kept at request
    /// time or from `headers`; a matching route also tells the client's format (its `api`,
    /// else the path's), when the configuration translates.
    pub(super) fn match_request(
        &mut self,
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
        let (matched, route) = matched_route(cfg, &req, model);
        if cfg.translates() {
            if let Some(r) = route {
                self.client.api = r.api.or_else(|| Api::of_path(&self.client.path));
            }
        }
        matched
    }

    /// A request no route claims: it passes through, minus any client-sent route header.
    pub(super) fn unrouted(&mut self, cfg: &Config) -> Step {
        self.phase = Phase::Unrouted;
        Step::go().with(Effect::RemoveRequestHeader(cfg.route_header.clone()))
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
        let (attempt, effects) = match self.choose(rt, primary, now_ms, headers, !no_body) {
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
            Routed::Refuse(reply) => return self.refuse_after_body(reply, no_body, denied),
        };
        let mut step = Step::go();
        step.effects = effects;
        let rewrite = !no_body && self.needs_body(cfg, attempt.primary, attempt.upstream);
        // Until this worker knows whether Envoy lets it hold headers, a request kept for
        // failover is held once to find out: a held streamed answer (see `stream`) needs it.
        let learn = !no_body
            && self.client.copy.is_some()
            && rt.stop_iteration.get() == StopIteration::Unknown
            && self
                .client
                .announced
                .is_none_or(|n| n <= cfg.body_buffer_limit);
        if (route_on_model || rewrite || learn) && !denied {
            // Hold the headers: the body decides the route, or gets a new length.
            self.hold(Some(attempt), route_on_model, now_ms);
            step.flow = super::Flow::Pause;
            return step;
        }
        self.phase = if rewrite {
            // The headers leave now: the rewritten body goes chunked.
            step.effects
                .push(Effect::RemoveRequestHeader("content-length".to_string()));
            Phase::RewritingBody { attempt }
        } else {
            Phase::Sent(attempt)
        };
        step
    }

    /// Offers the request to `primary`'s chain: the first upstream that admits serves, with
    /// its rewrite when it is a fallback; when none admits, the fast-fail reply.
    pub(super) fn choose<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        primary: UpstreamId,
        now_ms: u64,
        headers: Option<&dyn Headers>,
        has_body: bool,
    ) -> Routed {
        let cfg = &rt.config;
        let metrics = rt.host.metrics();
        // A fallback that needs its model rewritten cannot take a body the filter cannot
        // rewrite: it is skipped, never sent the wrong model.
        let blocked = has_body
            .then(|| self.client.unrewritable(cfg.body_buffer_limit))
            .flatten();
        let mut skipped_for_body = false;
        let candidates = cfg.chain(primary).iter().copied().filter(|&u| {
            let skip = blocked.is_some() && self.needs_body(cfg, primary, u);
            skipped_for_body |= skip;
            !skip && !self.client.refused.contains(&u)
        });
        let decision = plan(candidates, |u| rt.admit(u, now_ms));
        if skipped_for_body && !self.client.encoded {
            self.over_limit(rt);
        }
        match decision {
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
                let mut changes: Vec<(&str, &str)> =
                    self.translation_headers(cfg, primary, upstream);
                if upstream != primary {
                    metrics.fallback(primary, upstream);
                    if let Some(rw) = &cfg.upstream(upstream).rewrite {
                        changes.extend(rw.header_changes());
                    }
                }
                for (name, value) in changes {
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
                match blocked.filter(|_| skipped_for_body) {
                    Some(why) => Routed::Refuse(local::body_not_rewritable(cfg, why)),
                    None => {
                        metrics.all_open();
                        // Only refused upstreams left (none rejected): retry at once.
                        let at = if retry_at_ms == u64::MAX {
                            now_ms
                        } else {
                            retry_at_ms
                        };
                        Routed::Reply(local::all_open(cfg, now_ms, at))
                    }
                }
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
    pub(super) fn keep_chunk<H: Host>(
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
    pub(super) fn keep_whole<H: Host>(&mut self, rt: &Runtime<H>, bytes: &[u8]) {
        if bytes.len() > rt.config.failover.max_body_bytes {
            self.client.copy = None;
        } else if let Some(copy) = self.client.copy.as_mut() {
            copy.body = bytes.to_vec();
            copy.complete = true;
        }
    }
}
