//! The HTTP filter: routes each request to the first upstream whose breaker admits it,
//! answers locally when none does, and classifies every response against the upstream
//! that actually served it.

use std::rc::Rc;

use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host;
use super::runtime::{Runtime, StopIteration};
use crate::breaker::Ticket;
use crate::classifier::{classify, Outcome, ResponseInfo};
use crate::config::UpstreamId;
use crate::health;
use crate::metrics::{record_outcome, MetricsSink};
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

pub struct Filter {
    rt: Rc<Runtime>,
    context_id: u32,
    /// The filter answered this request itself (health, all-open, 405).
    local_reply: bool,
    primary: Option<UpstreamId>,
    served: Option<Served>,
    /// Paused at headers until the body tells the `model` to route on.
    awaiting_body_route: bool,
    /// A `model` to write into the body once it is complete.
    rewrite_model: Option<String>,
}

impl Filter {
    pub fn new(rt: Rc<Runtime>, context_id: u32) -> Filter {
        Filter {
            rt,
            context_id,
            local_reply: false,
            primary: None,
            served: None,
            awaiting_body_route: false,
            rewrite_model: None,
        }
    }

    /// Finds the primary on the request's headers (and its model, when known).
    fn match_request(&self, model: ModelLookup<'_>) -> RouteMatch {
        let path = host::request_header(":path").unwrap_or_default();
        let authority = host::request_header(":authority").unwrap_or_default();
        let header = |name: &str| host::request_header(name);
        let req = RequestView {
            path: &path,
            host: &authority,
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
                host::set_request_header(&cfg.route_header, Some(&cfg.upstreams[upstream].cluster));
                host::clear_route_cache();
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

    /// Applies a fallback's rewrite: path, host and headers now, `model` once the body is in.
    fn apply_rewrite(&mut self, upstream: UpstreamId) {
        let Some(rw) = &self.rt.config.upstreams[upstream].rewrite else {
            return;
        };
        if let Some(p) = &rw.path {
            host::set_request_header(":path", Some(p));
        }
        if let Some(h) = &rw.host {
            host::set_request_header(":authority", Some(h));
        }
        for (name, value) in &rw.headers {
            host::set_request_header(name, Some(value));
        }
        if let Some(m) = &rw.model {
            // The body changes size: let Envoy frame it anew.
            host::set_request_header("content-length", None);
            self.rewrite_model = Some(m.clone());
        }
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
            _ => Action::Continue,
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
        self.rewrite_model = None;
        match new_primary {
            Some(p) => {
                self.route(p, now_ms);
            }
            None => {
                self.primary = None;
                host::set_request_header(&self.rt.config.route_header, None);
                host::clear_route_cache();
            }
        }
    }
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let rt = Rc::clone(&self.rt);
        // A client must never choose a cluster.
        host::set_request_header(&rt.config.route_header, None);
        if let Some(hp) = &rt.config.health_path {
            let path = host::request_header(":path").unwrap_or_default();
            if path.split('?').next() == Some(hp.as_str()) {
                return self.serve_health();
            }
        }
        let now = host::now_ms();
        match self.match_request(ModelLookup::Unknown) {
            RouteMatch::NoRoute => Action::Continue,
            RouteMatch::Upstream(p) => self.route(p, now),
            RouteMatch::NeedsBody if end_of_stream => {
                match self.match_request(ModelLookup::Known(None)) {
                    RouteMatch::Upstream(p) => self.route(p, now),
                    _ => Action::Continue,
                }
            }
            RouteMatch::NeedsBody => self.route_on_body(now),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.local_reply || (!self.awaiting_body_route && self.rewrite_model.is_none()) {
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
        let rt = Rc::clone(&self.rt);
        let upstream = &rt.config.upstreams[served.upstream];
        let now = host::now_ms();
        let status = host::response_header(":status").and_then(|s| s.parse::<u16>().ok());
        let retry_after = host::response_header("retry-after");
        // A plain success needs nothing else from the host: keep the hot path short.
        let (flags, details, reset) = match status {
            Some(s) if s < 400 => (0, None, None),
            _ => (
                host::property_u64(&["response", "flags"]).unwrap_or(0),
                host::property_string(&["response", "code_details"]),
                host::response_header("x-ratelimit-reset-requests")
                    .or_else(|| host::response_header("anthropic-ratelimit-requests-reset")),
            ),
        };
        let info = ResponseInfo {
            status,
            flags,
            details: details.as_deref(),
            duration_ms: now.saturating_sub(served.started_ms),
            retry_after: retry_after.as_deref(),
            ratelimit_reset: reset.as_deref(),
            now_ms: now,
        };
        let outcome = classify(&info, &upstream.policy);
        rt.record(served.upstream, now, served.ticket, outcome);
        let mut sink = rt.sink();
        record_outcome(&mut sink, served.upstream, &outcome);
        if matches!(served.ticket, Ticket::Probe(_)) && outcome != Outcome::Ignored {
            sink.probe(served.upstream, outcome == Outcome::Success);
        }
        host::set_response_header(&rt.config.response_header, Some(&upstream.name));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.rt.unpause(self.context_id);
        if let Some(s) = &self.served {
            if !s.recorded {
                // The stream ended with no response (client cancel): free any probe slot,
                // count nothing against the provider.
                self.rt.release(s.upstream, s.ticket);
            }
        }
    }
}
