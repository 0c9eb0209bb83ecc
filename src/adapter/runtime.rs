//! The per-VM runtime shared by the root context and every HTTP context of one worker.
//!
//! It owns the validated config and the metric ids, and is the only place that touches
//! breaker state in proxy-wasm shared data. Every change goes through compare-and-swap with
//! bounded retry, so several workers never lose an update, never admit more probes than
//! allowed, and exactly one of them performs (and announces) each transition.

use std::cell::{Cell, RefCell};

use log::{info, warn};

use super::envoy_metrics::EnvoyMetrics;
use super::host;
use crate::alert::{payload, AlertDecision, AlertEvent, AlertLog};
use crate::breaker::{Admission, Breaker, Change, Snapshot, StateKind, Ticket, Transition};
use crate::classifier::Outcome;
use crate::config::{Config, UpstreamId};
use crate::metrics::{record_transition, AlertResult, MetricsSink};
use crate::state_codec::{active_set, decode_or_closed, encode};

/// Attempts of one compare-and-swap update before giving up.
const MAX_CAS_ATTEMPTS: usize = 64;

/// Prefix of every shared-data key: Istio puts all plugins in one namespace.
const KEY_PREFIX: &str = "ai_circuit_breaker.v1";

/// Whether Envoy lets `on_http_request_headers` pause (`allow_on_headers_stop_iteration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopIteration {
    Unknown,
    Granted,
    Denied,
}

/// An alert waiting for the root context to send it.
pub struct PendingAlert {
    pub body: String,
}

pub struct Runtime {
    pub config: Config,
    /// Some route matches on the host, so `:authority` must be read to route.
    pub routes_on_host: bool,
    keys: Vec<String>,
    alert_keys: Vec<String>,
    /// Shared key listing the breakers that are not CLOSED (see [`active_set`]).
    active_key: String,
    metrics: EnvoyMetrics,
    alerts: RefCell<Vec<PendingAlert>>,
    /// Requests paused at headers waiting for their body: `(context id, resume deadline)`.
    pub paused: RefCell<Vec<(u32, u64)>>,
    pub stop_iteration: Cell<StopIteration>,
    decode_error_logged: Cell<bool>,
}

impl Runtime {
    /// Builds the runtime and creates every breaker's shared-data key that does not exist
    /// yet. Creation ignores CAS, so it must happen here, before traffic.
    pub fn new(config: Config) -> Runtime {
        let keys: Vec<String> = config
            .upstreams
            .iter()
            .map(|u| format!("{KEY_PREFIX}.breaker.{}", u.name))
            .collect();
        let alert_keys: Vec<String> = config
            .upstreams
            .iter()
            .map(|u| format!("{KEY_PREFIX}.alerts.{}", u.name))
            .collect();
        for (key, u) in keys.iter().zip(&config.upstreams) {
            create_key(key, &encode(&Breaker::new(&u.policy)));
        }
        for key in &alert_keys {
            create_key(key, &AlertLog::default().encode());
        }
        let active_key = format!("{KEY_PREFIX}.active");
        create_key(&active_key, &[]);
        let metrics = EnvoyMetrics::define(&config);
        let rt = Runtime {
            routes_on_host: config.routes.iter().any(|r| r.host.is_some()),
            config,
            keys,
            alert_keys,
            active_key,
            metrics,
            alerts: RefCell::new(Vec::new()),
            paused: RefCell::new(Vec::new()),
            stop_iteration: Cell::new(StopIteration::Unknown),
            decode_error_logged: Cell::new(false),
        };
        let now = host::now_ms();
        for u in 0..rt.config.upstreams.len() {
            rt.sink().state(u, rt.snapshot(u, now).state);
        }
        rt
    }

    /// The metrics sink.
    pub fn sink(&self) -> &EnvoyMetrics {
        &self.metrics
    }

    fn read(&self, u: UpstreamId) -> (Breaker, Option<u32>) {
        let (bytes, cas) = host::shared_get(&self.keys[u]);
        let (b, err) = decode_or_closed(
            bytes.as_deref().unwrap_or(&[]),
            &self.config.upstreams[u].policy,
        );
        if let Some(e) = err {
            if bytes.is_some() && !self.decode_error_logged.replace(true) {
                warn!(
                    "upstream {}: unreadable shared state ({e}); starting CLOSED",
                    self.config.upstreams[u].name
                );
            }
        }
        (b, cas)
    }

    /// Applies `f` to upstream `u`'s state through compare-and-swap. Returns `f`'s result,
    /// and whether the change was committed (always true when nothing needed writing).
    fn update<R>(
        &self,
        u: UpstreamId,
        mut f: impl FnMut(&mut Breaker) -> (R, Change),
    ) -> (R, bool) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut b, cas) = self.read(u);
            let (r, change) = f(&mut b);
            if !change.dirty {
                return (r, true);
            }
            match host::shared_set(&self.keys[u], &encode(&b), cas) {
                Ok(()) => {
                    if let Some(t) = change.transition {
                        self.on_transition(u, &t);
                    }
                    return (r, true);
                }
                Err(_) if attempt < MAX_CAS_ATTEMPTS => continue,
                Err(e) => {
                    warn!(
                        "upstream {}: shared state update failed after {attempt} attempts ({e:?})",
                        self.config.upstreams[u].name
                    );
                    return (r, false);
                }
            }
        }
    }

    /// Asks upstream `u`'s breaker to admit a request.
    pub fn admit(&self, u: UpstreamId, now_ms: u64) -> Admission {
        let policy = &self.config.upstreams[u].policy;
        match self.update(u, |b| b.admit(policy, now_ms)) {
            // A probe slot that could not be recorded must not be used.
            (Admission::Admitted(Ticket::Probe(_)), false) => Admission::Rejected {
                retry_at_ms: now_ms + 1_000,
            },
            (a, _) => a,
        }
    }

    /// Records a finished request's outcome against the upstream that served it.
    pub fn record(&self, u: UpstreamId, now_ms: u64, ticket: Ticket, outcome: Outcome) {
        let policy = &self.config.upstreams[u].policy;
        if Breaker::record_is_noop(policy, ticket, &outcome) {
            return;
        }
        // Only a failure can open the breaker and need jitter: spare the host call otherwise.
        let random = match outcome {
            Outcome::Failure { .. } => host::random_unit(),
            Outcome::Success | Outcome::Ignored => 0.5,
        };
        self.update(u, |b| {
            ((), b.record(policy, now_ms, ticket, outcome, random))
        });
    }

    /// Frees what a request held without counting an outcome.
    pub fn release(&self, u: UpstreamId, ticket: Ticket) {
        if matches!(ticket, Ticket::Probe(_)) {
            self.update(u, |b| ((), b.release(ticket)));
        }
    }

    /// A read-only view of upstream `u`.
    pub fn snapshot(&self, u: UpstreamId, now_ms: u64) -> Snapshot {
        self.read(u)
            .0
            .snapshot(&self.config.upstreams[u].policy, now_ms)
    }

    /// Moves the breakers that are not CLOSED forward in time (OPEN → HALF_OPEN, expired
    /// probe slots) and refreshes their gauges. Closed breakers need nothing: every
    /// transition sets the gauge when it happens.
    pub fn tick(&self, now_ms: u64) {
        let (bytes, _) = host::shared_get(&self.active_key);
        for name in active_set::decode(bytes.as_deref().unwrap_or(&[])) {
            let Some(u) = self.config.upstream_id(&name) else {
                continue;
            };
            let policy = &self.config.upstreams[u].policy;
            let (kind, _) = self.update(u, |b| {
                let c = b.advance(policy, now_ms);
                (b.kind(policy), c)
            });
            self.sink().state(u, kind);
        }
    }

    /// Records in the shared set whether upstream `u` is away from CLOSED.
    fn mark_active(&self, u: UpstreamId, member: bool) {
        let name = &self.config.upstreams[u].name;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (bytes, cas) = host::shared_get(&self.active_key);
            let mut names = active_set::decode(bytes.as_deref().unwrap_or(&[]));
            if !active_set::set(&mut names, name, member)
                || host::shared_set(&self.active_key, &active_set::encode(&names), cas).is_ok()
            {
                return;
            }
        }
        warn!("upstream {name}: could not update the set of open breakers");
    }

    /// Requests paused for their body past their deadline: Envoy did not grant
    /// stop-iteration, so they are resumed and routed on headers alone from now on.
    pub fn take_overdue_pauses(&self, now_ms: u64) -> Vec<u32> {
        let mut paused = self.paused.borrow_mut();
        let overdue: Vec<u32> = paused
            .iter()
            .filter(|(_, deadline)| *deadline <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        paused.retain(|(_, deadline)| *deadline > now_ms);
        overdue
    }

    /// Removes a request from the paused list; true if it was there.
    pub fn unpause(&self, context_id: u32) -> bool {
        let mut paused = self.paused.borrow_mut();
        let before = paused.len();
        paused.retain(|(id, _)| *id != context_id);
        paused.len() != before
    }

    pub fn take_alerts(&self) -> Vec<PendingAlert> {
        std::mem::take(&mut *self.alerts.borrow_mut())
    }

    /// Everything a committed transition causes: metrics, a log line and maybe an alert.
    fn on_transition(&self, u: UpstreamId, t: &Transition) {
        let up = &self.config.upstreams[u];
        record_transition(&mut self.sink(), u, t);
        if t.to == StateKind::Closed {
            self.mark_active(u, false);
        } else if t.from == StateKind::Closed {
            self.mark_active(u, true);
        }
        info!(
            "upstream {}: {} -> {} ({})",
            up.name,
            t.from.as_str(),
            t.to.as_str(),
            t.cause.describe()
        );
        let Some(cfg) = &self.config.alerting else {
            return;
        };
        let key = &self.alert_keys[u];
        let mut decision = AlertDecision::NotWanted;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (bytes, cas) = host::shared_get(key);
            let mut log = AlertLog::decode(bytes.as_deref().unwrap_or(&[]));
            let before = log;
            decision = log.decide(cfg, t);
            if log == before || host::shared_set(key, &log.encode(), cas).is_ok() {
                break;
            }
        }
        match decision {
            AlertDecision::NotWanted => {}
            AlertDecision::Suppressed => self.sink().alert(AlertResult::Suppressed),
            AlertDecision::Send => {
                let event = AlertEvent {
                    upstream: &up.name,
                    cluster: &up.cluster,
                    transition: t,
                };
                self.alerts.borrow_mut().push(PendingAlert {
                    body: payload(cfg.format, &event),
                });
            }
        }
    }
}

/// Creates a shared-data key that does not exist yet (a reload keeps existing state).
/// Creation ignores CAS, which is why it happens at configure time, before traffic.
fn create_key(key: &str, initial: &[u8]) {
    if host::shared_get(key).0.is_none() {
        let _ = host::shared_set(key, initial, None);
    }
}
