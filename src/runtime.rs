//! One worker's view of the filter: the compiled config, the host, and every breaker's state
//! in shared data.
//!
//! Each Envoy worker runs its own VM with its own `Runtime`; they agree through shared data.
//! Every breaker change goes through [`store::update`], so several workers never lose an
//! update, never admit more probes than allowed, and exactly one of them performs each
//! transition. That worker, and only it, emits the transition's metrics and log line and
//! decides (again by compare-and-swap, on the breaker's alert log) whether to announce it.

use std::cell::{Cell, RefCell};

use log::{info, warn};

use crate::alert::{payload, AlertDecision, AlertEvent, AlertLog};
use crate::breaker::{Admission, Breaker, Change, Snapshot, StateKind, Ticket, Transition};
use crate::config::{Config, UpstreamId};
use crate::health;
use crate::host::{Host, HttpCall};
use crate::metrics::{record_outcome, record_transition, AlertResult};
use crate::outcome::Outcome;
use crate::store::probe_lease::{lease_key, ProbeLease, ProbeResult};
use crate::store::{self, active_set::ActiveSet, KEY_PREFIX};

/// Whether Envoy lets the filter pause at request headers (`allow_on_headers_stop_iteration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopIteration {
    /// Not known yet: no request has waited for its body.
    Unknown,
    /// A body callback arrived while headers were paused.
    Granted,
    /// Envoy held back a body it had received while the headers were paused.
    Denied,
}

pub struct Runtime<H: Host> {
    pub config: Config,
    pub host: H,
    keys: Vec<String>,
    alert_keys: Vec<String>,
    active_key: String,
    alerts: RefCell<Vec<HttpCall>>,
    pub stop_iteration: Cell<StopIteration>,
    unreadable_logged: Cell<bool>,
}

impl<H: Host> Runtime<H> {
    /// Builds the runtime and creates every breaker's shared-data key that does not exist
    /// yet (a reload keeps the state of upstreams it still names).
    pub fn new(config: Config, host: H) -> Runtime<H> {
        let key = |kind: &str, name: &str| format!("{KEY_PREFIX}.{kind}.{name}");
        let keys: Vec<String> = config
            .upstreams()
            .iter()
            .map(|u| key("breaker", &u.name))
            .collect();
        let alert_keys: Vec<String> = config
            .upstreams()
            .iter()
            .map(|u| key("alerts", &u.name))
            .collect();
        for (k, u) in keys.iter().zip(config.upstreams()) {
            store::create(&host, k, &Breaker::new(&u.policy));
        }
        for k in &alert_keys {
            store::create(&host, k, &AlertLog::default());
        }
        let active_key = format!("{KEY_PREFIX}.active");
        store::create(&host, &active_key, &ActiveSet::default());
        let rt = Runtime {
            config,
            host,
            keys,
            alert_keys,
            active_key,
            alerts: RefCell::new(Vec::new()),
            stop_iteration: Cell::new(StopIteration::Unknown),
            unreadable_logged: Cell::new(false),
        };
        let now = rt.host.now_ms();
        for u in rt.config.ids() {
            rt.host.metrics().state(u, rt.snapshot(u, now).state);
        }
        rt
    }

    fn key(&self, u: UpstreamId) -> &str {
        self.keys.get(u.index()).map_or("", String::as_str)
    }

    fn log_unreadable(&self, u: UpstreamId, e: Option<store::DecodeError>) {
        if let Some(e) = e {
            if !self.unreadable_logged.replace(true) {
                warn!(
                    "upstream {}: unreadable shared state ({e}); starting CLOSED",
                    self.config.upstream(u).name
                );
            }
        }
    }

    /// Applies `f` to upstream `u`'s breaker by compare-and-swap and performs the transition
    /// it reports, if this worker's write is the one stored. Returns `f`'s result and whether
    /// the change was committed.
    fn update<R>(
        &self,
        u: UpstreamId,
        mut f: impl FnMut(&mut Breaker) -> (R, Change),
    ) -> (R, bool) {
        let policy = &self.config.upstream(u).policy;
        let mut transition = None;
        let done = store::update(
            &self.host,
            self.key(u),
            || Breaker::new(policy),
            |b| {
                b.fit_to(policy);
                let (r, change) = f(b);
                transition = change.transition;
                (r, change.dirty)
            },
        );
        self.log_unreadable(u, done.unreadable);
        if done.wrote {
            if let Some(t) = transition {
                self.on_transition(u, &t);
            }
        }
        (done.result, done.committed)
    }

    /// Asks upstream `u`'s breaker to admit a request.
    pub fn admit(&self, u: UpstreamId, now_ms: u64) -> Admission {
        let policy = &self.config.upstream(u).policy;
        match self.update(u, |b| b.admit(policy, now_ms)) {
            // A probe slot that could not be recorded must not be used.
            (Admission::Admitted(Ticket::Probe(_)), false) => Admission::Rejected {
                retry_at_ms: now_ms.saturating_add(1_000),
            },
            (a, _) => a,
        }
    }

    /// Records an attempt's outcome against the upstream that produced it: the breaker and
    /// the request, failure and probe metrics.
    pub fn record(&self, u: UpstreamId, ticket: Ticket, now_ms: u64, outcome: &Outcome) {
        let metrics = self.host.metrics();
        record_outcome(metrics, u, outcome);
        if matches!(ticket, Ticket::Probe(_)) && *outcome != Outcome::Ignored {
            metrics.probe(u, *outcome == Outcome::Success);
        }
        let policy = &self.config.upstream(u).policy;
        if Breaker::record_is_noop(policy, ticket, outcome) {
            return;
        }
        // Only a failure can open the breaker and need jitter: spare the host call otherwise.
        let random = match outcome {
            Outcome::Failure { .. } => self.host.random_unit(),
            Outcome::Success | Outcome::Ignored => 0.5,
        };
        self.update(u, |b| {
            ((), b.record(policy, now_ms, ticket, *outcome, random))
        });
    }

    /// Whether recording `outcome` for `ticket` can change `u`'s state (the clock is then
    /// needed); a plain success in CLOSED without the rate rule cannot.
    pub fn record_needs_clock(&self, u: UpstreamId, ticket: Ticket, outcome: &Outcome) -> bool {
        !Breaker::record_is_noop(&self.config.upstream(u).policy, ticket, outcome)
    }

    /// Frees what a request held without counting an outcome.
    pub fn release(&self, u: UpstreamId, ticket: Ticket) {
        if matches!(ticket, Ticket::Probe(_)) {
            self.update(u, |b| ((), b.release(ticket)));
        }
    }

    /// Applies an active recovery probe's result to `u`'s breaker.
    pub fn recovery_probe_result(&self, u: UpstreamId, result: ProbeResult, now_ms: u64) {
        let policy = &self.config.upstream(u).policy;
        self.update(u, |b| {
            let change = match result {
                ProbeResult::Success => b.recovery_probe_succeeded(policy, now_ms),
                ProbeResult::Failure => b.recovery_probe_failed(policy, now_ms),
            };
            ((), change)
        });
    }

    /// A read-only view of upstream `u`.
    pub fn snapshot(&self, u: UpstreamId, now_ms: u64) -> Snapshot {
        let policy = &self.config.upstream(u).policy;
        let read = store::read(&self.host, self.key(u), || Breaker::new(policy));
        self.log_unreadable(u, read.unreadable);
        let mut b = read.value;
        b.fit_to(policy);
        b.snapshot(policy, now_ms)
    }

    /// The health endpoint's JSON.
    pub fn health(&self, now_ms: u64) -> String {
        let snapshots: Vec<Snapshot> = self
            .config
            .ids()
            .map(|u| self.snapshot(u, now_ms))
            .collect();
        let probes: Vec<Option<ProbeLease>> = self
            .config
            .upstreams()
            .iter()
            .map(|up| {
                up.recovery_probe.as_ref().map(|_| {
                    store::read(&self.host, &lease_key(&up.name), ProbeLease::default).value
                })
            })
            .collect();
        health::render(&self.config, &snapshots, &probes, now_ms)
    }

    /// Moves the breakers that are not CLOSED forward in time (OPEN → HALF_OPEN, expired
    /// probe slots) and refreshes their gauges. Closed breakers need nothing: every
    /// transition sets the gauge when it happens.
    pub fn tick(&self, now_ms: u64) {
        let active = store::read(&self.host, &self.active_key, ActiveSet::default).value;
        for name in &active.0 {
            let Some(u) = self.config.upstream_id(name) else {
                continue;
            };
            let policy = &self.config.upstream(u).policy;
            let (kind, _) = self.update(u, |b| {
                let c = b.advance(policy, now_ms);
                (b.kind(policy), c)
            });
            self.host.metrics().state(u, kind);
        }
    }

    /// Envoy does not let this VM hold request headers: route on headers alone from now on.
    /// Logged once, when first concluded.
    pub fn stop_iteration_denied(&self) {
        if self.stop_iteration.replace(StopIteration::Denied) != StopIteration::Denied {
            warn!(
                "Envoy did not let the filter wait for the request body \
                 (set allow_on_headers_stop_iteration: true in the wasm PluginConfig); \
                 routes that match on \"model\" are skipped and requests are routed on headers alone"
            );
        }
    }

    /// Alert webhooks decided since the last call, for the root context to send.
    pub fn take_alerts(&self) -> Vec<HttpCall> {
        std::mem::take(&mut *self.alerts.borrow_mut())
    }

    /// Counts a webhook's answer (`None`: no answer at all).
    pub fn alert_answered(&self, status: Option<u16>) {
        let ok = matches!(status, Some(s) if (200..300).contains(&s));
        if !ok {
            warn!("alert webhook failed: status {status:?}");
        }
        self.host.metrics().alert(if ok {
            AlertResult::Sent
        } else {
            AlertResult::Failed
        });
    }

    /// Records in the shared set whether upstream `u` is away from CLOSED.
    fn mark_active(&self, u: UpstreamId, member: bool) {
        let name = &self.config.upstream(u).name;
        let done = store::update(&self.host, &self.active_key, ActiveSet::default, |set| {
            ((), set.set(name, member))
        });
        if !done.committed {
            warn!("upstream {name}: could not update the set of open breakers");
        }
    }

    /// Everything a committed transition causes: metrics, a log line and maybe an alert.
    fn on_transition(&self, u: UpstreamId, t: &Transition) {
        let up = self.config.upstream(u);
        record_transition(self.host.metrics(), u, t);
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
        let key = self.alert_keys.get(u.index()).map_or("", String::as_str);
        let decision = store::update(&self.host, key, AlertLog::default, |log| {
            let before = *log;
            let d = log.decide(cfg, t);
            (d, *log != before)
        })
        .result;
        match decision {
            AlertDecision::NotWanted => {}
            AlertDecision::Suppressed => self.host.metrics().alert(AlertResult::Suppressed),
            AlertDecision::Send => {
                let event = AlertEvent {
                    upstream: &up.name,
                    cluster: &up.cluster,
                    transition: t,
                };
                let mut headers = vec![
                    (":method".to_string(), "POST".to_string()),
                    (":path".to_string(), cfg.path.clone()),
                    (":authority".to_string(), cfg.authority.clone()),
                    ("content-type".to_string(), "application/json".to_string()),
                ];
                headers.extend(cfg.headers.iter().cloned());
                self.alerts.borrow_mut().push(HttpCall {
                    cluster: cfg.cluster.clone(),
                    headers,
                    body: payload(cfg.format, &event).into_bytes(),
                    timeout_ms: cfg.timeout_ms,
                });
            }
        }
    }
}
