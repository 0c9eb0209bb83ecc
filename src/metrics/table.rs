//! Metric ids, defined once per worker at configure time, so recording is an integer lookup.
//!
//! The proxy offers three primitives ([`Stats`]): define a metric by name, increment a
//! counter, record a gauge or histogram value. [`StatSink`] defines every metric the filter
//! can emit, for every upstream and label value of the configuration, and implements
//! [`MetricsSink`] over the ids. Labels travel in the stat name (see [`stat_name`]).

use super::{stat_name, AlertResult, FailoverResult, MetricsSink, TranslationResult};
use crate::breaker::StateKind;
use crate::config::{Config, UpstreamId};
use crate::outcome::{FailureReason, Outcome};
use crate::store::probe_lease::ProbeResult;

/// What a metric is, as the proxy defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// The proxy's stats primitives.
pub trait Stats {
    /// Defines a metric; `None` when the proxy refuses (recording it is then a no-op).
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment(&self, id: u32) {
        self.add(id, 1);
    }
    /// Adds `n` to a counter.
    fn add(&self, id: u32, n: u64);
    /// Sets a gauge, or adds a histogram sample.
    fn record(&self, id: u32, value: u64);
}

const TRANSITIONS: [(StateKind, StateKind); 4] = [
    (StateKind::Closed, StateKind::Open),
    (StateKind::Open, StateKind::HalfOpen),
    (StateKind::HalfOpen, StateKind::Closed),
    (StateKind::HalfOpen, StateKind::Open),
];

type Id = Option<u32>;

struct PerUpstream {
    state: Id,
    requests: [Id; 3],
    failures: [Id; FailureReason::COUNT],
    rejected: Id,
    transitions: [Id; 4],
    probes: [Id; 2],
    /// Defined only for upstreams with a `recovery_probe`.
    recovery_probes: [Id; 2],
    open_duration: Id,
    first_token: Id,
    input_tokens: Id,
    output_tokens: Id,
    malformed: Id,
    translations: [Id; 3],
    /// `(to, fallbacks counter)` per fallback.
    edges: Vec<(UpstreamId, Id)>,
}

/// Every metric id of one configuration, over the proxy's [`Stats`].
pub struct StatSink<S: Stats> {
    stats: S,
    upstreams: Vec<PerUpstream>,
    /// `[success, failure, skipped]` per ordered pair of a fallback chain, each pair once. A
    /// list searched in order, not a `HashMap`: failovers are rare and the pairs few, and the
    /// map linked SipHash, its random seed and its own table code into the wasm.
    failovers: Vec<((UpstreamId, UpstreamId), [Id; 3])>,
    all_open: Id,
    body_over_limit: Id,
    alerts: [Id; 3],
}

impl<S: Stats> StatSink<S> {
    pub fn define(config: &Config, stats: S) -> StatSink<S> {
        let counter = |metric: &str, labels: &[(&str, &str)]| {
            stats.define(MetricKind::Counter, &stat_name(metric, labels))
        };
        let upstreams = config
            .upstreams()
            .iter()
            .map(|u| {
                let up = [("upstream", u.name.as_str())];
                let with = |metric: &str, k: &str, v: &str| {
                    counter(metric, &[("upstream", u.name.as_str()), (k, v)])
                };
                PerUpstream {
                    state: stats
                        .define(MetricKind::Gauge, &stat_name("circuit_breaker_state", &up)),
                    requests: Outcome::LABELS
                        .map(|o| with("circuit_breaker_requests", "outcome", o)),
                    failures: FailureReason::ALL
                        .map(|r| with("circuit_breaker_failures", "reason", r.as_str())),
                    rejected: counter("circuit_breaker_rejected", &up),
                    transitions: TRANSITIONS.map(|(f, t)| {
                        counter(
                            "circuit_breaker_transitions",
                            &[
                                ("upstream", u.name.as_str()),
                                ("from", f.as_str()),
                                ("to", t.as_str()),
                            ],
                        )
                    }),
                    probes: ["success", "failure"]
                        .map(|r| with("circuit_breaker_probes", "result", r)),
                    recovery_probes: match u.recovery_probe {
                        Some(_) => ProbeResult::ALL
                            .map(|r| with("circuit_breaker_recovery_probes", "result", r.as_str())),
                        None => [None; 2],
                    },
                    open_duration: stats.define(
                        MetricKind::Histogram,
                        &stat_name("circuit_breaker_open_duration_ms", &up),
                    ),
                    first_token: stats.define(
                        MetricKind::Histogram,
                        &stat_name("circuit_breaker_time_to_first_token_ms", &up),
                    ),
                    input_tokens: counter("circuit_breaker_input_tokens", &up),
                    output_tokens: counter("circuit_breaker_output_tokens", &up),
                    malformed: counter("circuit_breaker_stream_malformed_events", &up),
                    translations: TranslationResult::ALL
                        .map(|r| with("circuit_breaker_translations", "result", r.as_str())),
                    edges: u
                        .fallbacks
                        .iter()
                        .map(|&f| {
                            let pair = [
                                ("from", u.name.as_str()),
                                ("to", config.upstream(f).name.as_str()),
                            ];
                            (f, counter("circuit_breaker_fallbacks", &pair))
                        })
                        .collect(),
                }
            })
            .collect();
        // A failover goes from the upstream that failed to any later one of its chain.
        let mut failovers: Vec<((UpstreamId, UpstreamId), [Id; 3])> = Vec::new();
        for p in config.ids() {
            let chain = config.chain(p);
            for (i, &from) in chain.iter().enumerate() {
                for &to in chain.iter().skip(i + 1) {
                    if failovers.iter().any(|(pair, _)| *pair == (from, to)) {
                        continue;
                    }
                    let (f, t) = (&config.upstream(from).name, &config.upstream(to).name);
                    let ids = FailoverResult::ALL.map(|r| {
                        counter(
                            "circuit_breaker_failovers",
                            &[
                                ("from", f.as_str()),
                                ("to", t.as_str()),
                                ("result", r.as_str()),
                            ],
                        )
                    });
                    failovers.push(((from, to), ids));
                }
            }
        }
        let all_open = counter("circuit_breaker_all_open", &[]);
        let body_over_limit = counter("circuit_breaker_body_over_limit", &[]);
        let alerts =
            AlertResult::ALL.map(|r| counter("circuit_breaker_alerts", &[("result", r.as_str())]));
        StatSink {
            stats,
            upstreams,
            failovers,
            all_open,
            body_over_limit,
            alerts,
        }
    }

    fn up(&self, u: UpstreamId) -> Option<&PerUpstream> {
        self.upstreams.get(u.index())
    }

    fn inc(&self, id: Option<&Id>) {
        if let Some(Some(id)) = id {
            self.stats.increment(*id);
        }
    }

    fn set(&self, id: Option<&Id>, value: u64) {
        if let Some(Some(id)) = id {
            self.stats.record(*id, value);
        }
    }
}

impl<S: Stats> MetricsSink for StatSink<S> {
    fn state(&self, upstream: UpstreamId, state: StateKind) {
        self.set(self.up(upstream).map(|u| &u.state), state.gauge() as u64);
    }

    fn request(&self, upstream: UpstreamId, outcome: &Outcome) {
        self.inc(
            self.up(upstream)
                .and_then(|u| u.requests.get(outcome.index())),
        );
    }

    fn failure(&self, upstream: UpstreamId, reason: FailureReason) {
        self.inc(
            self.up(upstream)
                .and_then(|u| u.failures.get(reason.index())),
        );
    }

    fn rejected(&self, upstream: UpstreamId) {
        self.inc(self.up(upstream).map(|u| &u.rejected));
    }

    fn fallback(&self, from: UpstreamId, to: UpstreamId) {
        let edge = self
            .up(from)
            .and_then(|u| u.edges.iter().find(|e| e.0 == to));
        self.inc(edge.map(|e| &e.1));
    }

    fn transition(&self, upstream: UpstreamId, from: StateKind, to: StateKind) {
        let i = TRANSITIONS.iter().position(|t| *t == (from, to));
        self.inc(self.up(upstream).and_then(|u| u.transitions.get(i?)));
    }

    fn all_open(&self) {
        self.inc(Some(&self.all_open));
    }

    fn first_token(&self, upstream: UpstreamId, ms: u64) {
        self.set(self.up(upstream).map(|u| &u.first_token), ms);
    }

    fn tokens(&self, upstream: UpstreamId, input: u64, output: u64) {
        if let Some(u) = self.up(upstream) {
            for (id, n) in [(u.input_tokens, input), (u.output_tokens, output)] {
                if let (Some(id), true) = (id, n > 0) {
                    self.stats.add(id, n);
                }
            }
        }
    }

    fn malformed_event(&self, upstream: UpstreamId) {
        self.inc(self.up(upstream).map(|u| &u.malformed));
    }

    fn body_over_limit(&self) {
        self.inc(Some(&self.body_over_limit));
    }

    fn probe(&self, upstream: UpstreamId, success: bool) {
        self.inc(
            self.up(upstream)
                .and_then(|u| u.probes.get(usize::from(!success))),
        );
    }

    fn recovery_probe(&self, upstream: UpstreamId, result: ProbeResult) {
        let i = ProbeResult::ALL.iter().position(|r| *r == result);
        self.inc(self.up(upstream).and_then(|u| u.recovery_probes.get(i?)));
    }

    fn open_duration(&self, upstream: UpstreamId, ms: u64) {
        self.set(self.up(upstream).map(|u| &u.open_duration), ms);
    }

    fn failover(&self, from: UpstreamId, to: UpstreamId, result: FailoverResult) {
        let i = FailoverResult::ALL.iter().position(|r| *r == result);
        let ids = self.failovers.iter().find(|(pair, _)| *pair == (from, to));
        self.inc(ids.and_then(|(_, ids)| ids.get(i?)));
    }

    fn translation(&self, upstream: UpstreamId, result: TranslationResult) {
        let i = TranslationResult::ALL.iter().position(|r| *r == result);
        self.inc(self.up(upstream).and_then(|u| u.translations.get(i?)));
    }

    fn alert(&self, result: AlertResult) {
        let i = AlertResult::ALL.iter().position(|r| *r == result);
        self.inc(i.and_then(|i| self.alerts.get(i)));
    }
}
