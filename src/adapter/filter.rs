//! The HTTP filter: routes each request to the first upstream whose breaker admits it,
//! answers locally when none does, classifies every response against the upstream that
//! actually served it, and re-sends a failed request to the next admitting fallback within
//! the same client request (in-request failover).

use std::rc::Rc;

use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host;
use super::runtime::{Runtime, StopIteration};
use crate::breaker::{Admission, Breaker, Ticket};
use crate::classifier::{classify, Outcome, ResponseInfo};
use crate::config::UpstreamId;
use crate::failover::{
    body_fits, callout_failure, callout_headers, chain_label, method_eligible, remaining,
    reply_headers, triggers, FAILOVER_HEADER,
};
use crate::health;
use crate::metrics::{record_outcome, FailoverResult, MetricsSink};
use crate::routing::{
    all_open_body, body_model, candidates, match_route, plan, retry_after_secs, rewrite_body_model,
    ModelLookup, Plan, RequestView, RouteMatch,
};

/// How long a request may wait at headers for its body before we conclude Envoy does not
/// grant `allow_on_headers_stop_iteration` (checked by the root context's tick).
const BODY_WAIT_MS: u64 = 500;

/// The upstream a request was sent to, and what it holds of that breaker.
struct Served {
    upstream: UpstreamId,
    ticket: Ticket,
    started_ms: u64,
    recorded: bool,
}

/// A failover call in flight.
struct Callout {
    token: u32,
    upstream: UpstreamId,
    ticket: Ticket,
    started_ms: u64,
}

/// What a request keeps so it can be re-sent to a fallback.
struct Retry {
    /// The request body as the client sent it, once complete.
    body: Vec<u8>,
    body_complete: bool,
    /// Over `failover.max_body_bytes`: never re-sent.
    too_large: bool,
    /// The request headers as the client sent them (Envoy does not expose request headers
    /// in the response phase, so they are taken at request time).
    headers: Vec<(String, String)>,
    /// Every candidate considered so far (tried or skipped), in order.
    tried: Vec<UpstreamId>,
    /// The upstreams actually called, in order: the served one, then each callout.
    called: Vec<UpstreamId>,
    attempts: u32,
    pending: Option<Callout>,
    /// The failed response is held (headers and body paused) while a callout runs.
    holding: bool,
}

pub struct Filter {
    rt: Rc<Runtime>,
    context_id: u32,
    /// `:path` and `:authority` as the client sent them (authority only when routes use it).
    path: String,
    authority: String,
    /// The filter answered this request itself (health, all-open, 405).
    local_reply: bool,
    primary: Option<UpstreamId>,
    served: Option<Served>,
    /// Paused at headers until the body tells the `model` to route on.
    awaiting_body_route: bool,
    /// A `model` to write into the body once it is complete.
    rewrite_model: Option<String>,
    /// Request headers a fallback's rewrite changed, with their values before it.
    rewritten: Vec<(String, Option<String>)>,
    /// Kept for in-request failover; `None` when the request is not eligible.
    retry: Option<Retry>,
    /// The request header map, read whole (one host call) when failover may keep it;
    /// routing looks headers up here instead of asking the host for each.
    request_headers: Option<Vec<(String, String)>>,
}

impl Filter {
    pub fn new(rt: Rc<Runtime>, context_id: u32) -> Filter {
        Filter {
            rt,
            context_id,
            path: String::new(),
            authority: String::new(),
            local_reply: false,
            primary: None,
            served: None,
            awaiting_body_route: false,
            rewrite_model: None,
            rewritten: Vec::new(),
            retry: None,
            request_headers: None,
        }
    }

    /// Finds the primary on the request's headers (and its model, when known), using the
    /// path and authority as the client sent them (a fallback's rewrite may change both).
    fn match_request(&self, model: ModelLookup<'_>) -> RouteMatch {
        let header = |name: &str| self.request_header(name);
        let req = RequestView {
            path: &self.path,
            host: &self.authority,
            header: &header,
        };
        match_route(&self.rt.config, &req, model)
    }

    /// Picks the serving upstream among `primary` and its fallbacks, sets the route header,
    /// or answers locally when nothing admits. Returns the action for the current callback.
    fn route(&mut self, primary: UpstreamId, now_ms: u64) -> Action {
        let rt = Rc::clone(&self.rt);
        let cfg = &rt.config;
        let mut sink = rt.sink();
        let decision = plan(candidates(cfg, primary), |u| rt.admit(u, now_ms));
        self.primary = Some(primary);
        match decision {
            Plan::Serve {
                upstream,
                ticket,
                skipped,
            } => {
                for s in skipped {
                    sink.rejected(s);
                }
                if upstream != primary {
                    sink.fallback(primary, upstream);
                    self.apply_rewrite(upstream);
                }
                // Envoy re-resolves the route when a filter built for ABI 0.2.1 changes a
                // request header, so no explicit clear_route_cache call is needed.
                host::set_request_header(&cfg.route_header, Some(&cfg.upstreams[upstream].cluster));
                self.served = Some(Served {
                    upstream,
                    ticket,
                    started_ms: now_ms,
                    recorded: false,
                });
                Action::Continue
            }
            Plan::AllOpen {
                retry_at_ms,
                skipped,
            } => {
                for s in skipped {
                    sink.rejected(s);
                }
                sink.all_open();
                let retry_after = retry_after_secs(now_ms, retry_at_ms).to_string();
                let body = all_open_body(&cfg.fast_fail.message);
                self.reply(
                    cfg.fast_fail.status,
                    &[
                        ("content-type", "application/json"),
                        ("retry-after", &retry_after),
                    ],
                    body.as_bytes(),
                )
            }
        }
    }

    /// A request header as the client sent it: from the map read at request time (kept by
    /// the retry once routed) when there is one, else from the host.
    fn request_header(&self, name: &str) -> Option<String> {
        let map = self
            .request_headers
            .as_ref()
            .or(self.retry.as_ref().map(|r| &r.headers));
        match map {
            Some(map) => map.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            None => host::request_header(name),
        }
    }

    /// A request no route claims passes through, minus any client-sent route header.
    fn unrouted(&self) -> Action {
        host::set_request_header(&self.rt.config.route_header, None);
        Action::Continue
    }

    /// Applies a fallback's rewrite: path, host and headers now, `model` once the body is in.
    fn apply_rewrite(&mut self, upstream: UpstreamId) {
        let rt = Rc::clone(&self.rt);
        let Some(rw) = &rt.config.upstreams[upstream].rewrite else {
            return;
        };
        let mut set = |name: &str, value: &str| {
            self.rewritten
                .push((name.to_string(), host::request_header(name)));
            host::set_request_header(name, Some(value));
        };
        if let Some(p) = &rw.path {
            set(":path", p);
        }
        if let Some(h) = &rw.host {
            set(":authority", h);
        }
        for (name, value) in &rw.headers {
            set(name, value);
        }
        if let Some(m) = &rw.model {
            // The body changes size: let Envoy frame it anew.
            host::set_request_header("content-length", None);
            self.rewrite_model = Some(m.clone());
        }
    }

    /// Records an attempt's outcome against the upstream that produced it.
    fn record(&self, u: UpstreamId, ticket: Ticket, now_ms: u64, outcome: &Outcome) {
        self.rt.record(u, now_ms, ticket, *outcome);
        let mut sink = self.rt.sink();
        record_outcome(&mut sink, u, outcome);
        if matches!(ticket, Ticket::Probe(_)) && *outcome != Outcome::Ignored {
            sink.probe(u, *outcome == Outcome::Success);
        }
    }

    /// A routed request may be re-sent when failover is on, its method is eligible and its
    /// announced body fits `max_body_bytes`.
    fn new_retry(&mut self, end_of_stream: bool) -> Option<Retry> {
        let cfg = &self.rt.config.failover;
        // The whole map was read at request time when failover is on.
        let headers = self.request_headers.as_ref()?;
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if !method_eligible(cfg, get(":method")?) {
            return None;
        }
        let announced = get("content-length").and_then(|v| v.parse().ok());
        if announced.is_some_and(|n| !body_fits(cfg, n)) {
            return None;
        }
        // The retry keeps the map; header lookups read it there from now on.
        let headers = self.request_headers.take()?;
        Some(Retry {
            body: Vec::new(),
            body_complete: end_of_stream,
            too_large: false,
            headers,
            tried: Vec::new(),
            called: Vec::new(),
            attempts: 0,
            pending: None,
            holding: false,
        })
    }

    /// Keeps one streamed body chunk for a possible failover.
    fn keep_chunk(&mut self, body_size: usize, end_of_stream: bool) {
        let max = self.rt.config.failover.max_body_bytes;
        let Some(r) = self.retry.as_mut() else {
            return;
        };
        if r.too_large || r.body_complete {
            return;
        }
        if body_size > 0 {
            let chunk = host::request_body(body_size).unwrap_or_default();
            if r.body.len() + chunk.len() > max {
                r.too_large = true;
                r.body = Vec::new();
                return;
            }
            r.body.extend_from_slice(&chunk);
        }
        r.body_complete = end_of_stream;
    }

    /// Keeps the whole (buffered) body for a possible failover.
    fn keep_whole(&mut self, body: &[u8]) {
        let cfg = &self.rt.config.failover;
        if let Some(r) = self.retry.as_mut() {
            r.body_complete = true;
            if body_fits(cfg, body.len()) {
                r.body = body.to_vec();
            } else {
                r.too_large = true;
            }
        }
    }

    /// Calls the next admitting fallback after `failed` with the original request. Returns
    /// true when a call is in flight.
    fn start_callout(&mut self, failed: UpstreamId, now_ms: u64) -> bool {
        let rt = Rc::clone(&self.rt);
        let cfg = &rt.config;
        let (Some(primary), Some(r)) = (self.primary, self.retry.as_mut()) else {
            return false;
        };
        if !r.body_complete || r.too_large {
            return false;
        }
        let mut sink = rt.sink();
        while r.attempts < cfg.failover.max_attempts {
            let Some(next) = remaining(cfg, primary, &r.tried).next() else {
                return false;
            };
            r.tried.push(next);
            let ticket = match rt.admit(next, now_ms) {
                Admission::Admitted(t) => t,
                Admission::Rejected { .. } => {
                    sink.failover(failed, next, FailoverResult::Skipped);
                    continue;
                }
            };
            let target = &cfg.upstreams[next];
            let body = match target.rewrite.as_ref().and_then(|rw| rw.model.as_deref()) {
                Some(m) => rewrite_body_model(&r.body, m).unwrap_or_else(|| r.body.clone()),
                None => r.body.clone(),
            };
            let headers = callout_headers(
                &r.headers,
                target.rewrite.as_ref(),
                &cfg.route_header,
                &target.cluster,
                body.len(),
            );
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match host::dispatch(
                &target.callout_cluster,
                &pairs,
                &body,
                cfg.failover.timeout_ms,
            ) {
                Ok(token) => {
                    r.attempts += 1;
                    r.holding = true;
                    r.pending = Some(Callout {
                        token,
                        upstream: next,
                        ticket,
                        started_ms: now_ms,
                    });
                    return true;
                }
                Err(e) => {
                    warn!(
                        "failover to upstream {} could not be sent to cluster {} ({e:?})",
                        target.name, target.callout_cluster
                    );
                    rt.release(next, ticket);
                    sink.failover(failed, next, FailoverResult::Failure);
                }
            }
        }
        false
    }

    fn reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Action {
        self.local_reply = true;
        host::send_response(status, headers, body);
        Action::Pause
    }

    fn serve_health(&mut self) -> Action {
        if host::request_header(":method").as_deref() != Some("GET") {
            return self.reply(
                405,
                &[("allow", "GET"), ("content-type", "application/json")],
                br#"{"error":{"message":"only GET is allowed","type":"method_not_allowed"}}"#,
            );
        }
        let now = host::now_ms();
        let snapshots: Vec<_> = (0..self.rt.config.upstreams.len())
            .map(|u| self.rt.snapshot(u, now))
            .collect();
        let body = health::render(&self.rt.config, &snapshots, now);
        self.reply(
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            body.as_bytes(),
        )
    }

    /// Routing on the body's `model`: route on headers alone first (so a request that Envoy
    /// never lets us see the body of still goes somewhere), then pause for the body.
    fn route_on_body(&mut self, now_ms: u64) -> Action {
        let provisional = self.match_request(ModelLookup::Known(None));
        let action = match provisional {
            RouteMatch::Upstream(p) => self.route(p, now_ms),
            _ => self.unrouted(),
        };
        if self.local_reply || self.rt.stop_iteration.get() == StopIteration::Denied {
            return action;
        }
        if self.rt.config.rewrites_body() {
            host::set_request_header("content-length", None);
        }
        self.awaiting_body_route = true;
        self.rt
            .paused
            .borrow_mut()
            .push((self.context_id, now_ms + BODY_WAIT_MS));
        Action::Pause
    }

    /// The body is complete: route again if the `model` picks another primary.
    fn reroute_on_model(&mut self, body: &[u8], now_ms: u64) {
        let model = body_model(body);
        let decided = self.match_request(ModelLookup::Known(model.as_deref()));
        let new_primary = match decided {
            RouteMatch::Upstream(p) => Some(p),
            _ => None,
        };
        if new_primary == self.primary {
            return;
        }
        if let Some(s) = self.served.take() {
            self.rt.release(s.upstream, s.ticket);
        }
        // Undo the provisional fallback's rewrite, newest change first.
        for (name, value) in std::mem::take(&mut self.rewritten).into_iter().rev() {
            host::set_request_header(&name, value.as_deref());
        }
        self.rewrite_model = None;
        match new_primary {
            Some(p) => {
                self.route(p, now_ms);
            }
            None => {
                self.primary = None;
                self.unrouted();
            }
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let rt = Rc::clone(&self.rt);
        let cfg = &rt.config;
        let Some(call) = self
            .retry
            .as_mut()
            .and_then(|r| r.pending.take_if(|c| c.token == token))
        else {
            return;
        };
        let now = host::now_ms();
        let upstream = &cfg.upstreams[call.upstream];
        let elapsed = now.saturating_sub(call.started_ms);
        let status = host::call_response_header(":status").and_then(|s| s.parse::<u16>().ok());
        let outcome = match status {
            Some(_) => {
                let retry_after = host::call_response_header("retry-after");
                let reset = ratelimit_reset(host::call_response_header);
                let info = ResponseInfo {
                    status,
                    flags: 0,
                    details: Some("via_upstream"),
                    duration_ms: elapsed,
                    retry_after: retry_after.as_deref(),
                    ratelimit_reset: reset.as_deref(),
                    now_ms: now,
                };
                classify(&info, &upstream.policy)
            }
            // No response at all: the call timed out or could not connect.
            None => Outcome::Failure {
                reason: callout_failure(elapsed, cfg.failover.timeout_ms),
                retry_after_ms: None,
            },
        };
        self.record(call.upstream, call.ticket, now, &outcome);
        let mut sink = rt.sink();
        let Some(r) = self.retry.as_mut() else {
            return;
        };
        let from = r.called.last().copied().unwrap_or(call.upstream);
        r.called.push(call.upstream);
        if let (Some(status), None) = (status, triggers(&cfg.failover, &outcome)) {
            sink.failover(from, call.upstream, FailoverResult::Success);
            let headers = reply_headers(
                &host::call_response_headers(),
                &cfg.response_header,
                &upstream.name,
                &chain_label(cfg, &r.called),
            );
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = host::call_response_body(body_size);
            r.holding = false;
            self.reply(status, &pairs, &body);
            return;
        }
        sink.failover(from, call.upstream, FailoverResult::Failure);
        if self.start_callout(call.upstream, now) {
            return;
        }
        // Every fallback failed or none admitted: the original failure goes through.
        if let Some(r) = self.retry.as_mut() {
            r.holding = false;
            let chain = format!("{} (failed)", chain_label(cfg, &r.called));
            host::set_response_header(FAILOVER_HEADER, Some(&chain));
        }
        host::resume_response();
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let rt = Rc::clone(&self.rt);
        if rt.config.failover.enabled {
            // One host call for everything failover would keep, and routing reads from it.
            self.request_headers = Some(host::request_headers());
        }
        self.path = self.request_header(":path").unwrap_or_default();
        if let Some(hp) = &rt.config.health_path {
            if self.path.split('?').next() == Some(hp.as_str()) {
                return self.serve_health();
            }
        }
        // `:authority` is only read when some route matches on the host.
        if rt.routes_on_host {
            self.authority = self.request_header(":authority").unwrap_or_default();
        }
        let now = host::now_ms();
        let matched = self.match_request(ModelLookup::Unknown);
        if matched != RouteMatch::NoRoute {
            self.retry = self.new_retry(end_of_stream);
        }
        // A client must never choose a cluster. A routed request gets the header set (which
        // replaces any client value); every other request has it removed.
        match matched {
            RouteMatch::NoRoute => self.unrouted(),
            RouteMatch::Upstream(p) => self.route(p, now),
            RouteMatch::NeedsBody if end_of_stream => {
                match self.match_request(ModelLookup::Known(None)) {
                    RouteMatch::Upstream(p) => self.route(p, now),
                    _ => self.unrouted(),
                }
            }
            RouteMatch::NeedsBody => self.route_on_body(now),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.local_reply {
            return Action::Continue;
        }
        if !self.awaiting_body_route && self.rewrite_model.is_none() {
            // Streaming through: keep a copy of each chunk in case the request is re-sent.
            self.keep_chunk(body_size, end_of_stream);
            return Action::Continue;
        }
        if self.awaiting_body_route {
            if !self.rt.unpause(self.context_id) {
                // The tick already resumed this request on its header-only route.
                self.awaiting_body_route = false;
            } else {
                self.rt.stop_iteration.set(StopIteration::Granted);
                if !end_of_stream {
                    // Still waiting for the rest: keep our place on the watch list.
                    self.rt
                        .paused
                        .borrow_mut()
                        .push((self.context_id, u64::MAX));
                }
            }
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::request_body(body_size).unwrap_or_default();
        self.keep_whole(&body);
        if self.awaiting_body_route {
            self.awaiting_body_route = false;
            self.rt.unpause(self.context_id);
            self.reroute_on_model(&body, host::now_ms());
            if self.local_reply {
                return Action::Pause;
            }
        }
        if let Some(model) = self.rewrite_model.take() {
            match rewrite_body_model(&body, &model) {
                Some(new_body) => host::replace_request_body(body_size, &new_body),
                None => warn!("request body is not a JSON object; model not rewritten"),
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.local_reply {
            return Action::Continue;
        }
        let Some(served) = self.served.as_mut() else {
            return Action::Continue;
        };
        if served.recorded {
            return Action::Continue;
        }
        served.recorded = true;
        let (u, ticket, started_ms) = (served.upstream, served.ticket, served.started_ms);
        let rt = Rc::clone(&self.rt);
        let upstream = &rt.config.upstreams[u];
        let status = host::response_header(":status").and_then(|s| s.parse::<u16>().ok());
        let (outcome, now) = match status {
            // A plain success with no slow-call rule needs nothing else from the host, and
            // the clock only when recording it can change the state (a probe, the rate rule).
            Some(s) if s < 400 && upstream.policy.slow_call_ms.is_none() => {
                let now = if Breaker::record_is_noop(&upstream.policy, ticket, &Outcome::Success) {
                    0
                } else {
                    host::now_ms()
                };
                (Outcome::Success, now)
            }
            _ => {
                let now = host::now_ms();
                let failing = !matches!(status, Some(s) if s < 400);
                let (flags, details, retry_after, reset) = if failing {
                    (
                        host::property_u64(&["response", "flags"]).unwrap_or(0),
                        host::property_string(&["response", "code_details"]),
                        host::response_header("retry-after"),
                        ratelimit_reset(host::response_header),
                    )
                } else {
                    (0, None, None, None)
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
                (classify(&info, &upstream.policy), now)
            }
        };
        self.record(u, ticket, now, &outcome);
        host::set_response_header(&rt.config.response_header, Some(&upstream.name));
        if triggers(&rt.config.failover, &outcome).is_some() {
            if let Some(r) = self.retry.as_mut() {
                r.tried.push(u);
                r.called.push(u);
            }
            if self.start_callout(u, now) {
                // Hold the failed response until the fallback answers.
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.retry.as_ref().is_some_and(|r| r.holding) {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.rt.unpause(self.context_id);
        if let Some(call) = self.retry.as_mut().and_then(|r| r.pending.take()) {
            // The client went away while a fallback was being called.
            self.rt.release(call.upstream, call.ticket);
        }
        if let Some(s) = &self.served {
            if !s.recorded {
                // The stream ended with no response (client cancel): free any probe slot,
                // count nothing against the provider.
                self.rt.release(s.upstream, s.ticket);
            }
        }
    }
}

/// A provider rate-limit reset header (OpenAI's, then Anthropic's).
fn ratelimit_reset(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    get("x-ratelimit-reset-requests").or_else(|| get("anthropic-ratelimit-requests-reset"))
}
