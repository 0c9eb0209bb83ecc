//! The [`MetricsSink`] backed by Envoy stats.
//!
//! Every metric id is defined once, at configure time, for every upstream and label value,
//! so the request path only increments integers. Labels are encoded in the stat name
//! (`upstream=.=openai;.;circuit_breaker_requests`) for Envoy's `stats_tags` to extract.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::breaker::StateKind;
use crate::classifier::{FailureReason, Outcome};
use crate::config::{Config, UpstreamId};
use crate::metrics::{stat_name, AlertResult, FailoverResult, MetricsSink};
use crate::routing::candidates;

/// Stands for a metric the host refused to define: recording it is a no-op.
const NONE: u32 = u32::MAX;

const TRANSITIONS: [(StateKind, StateKind); 4] = [
    (StateKind::Closed, StateKind::Open),
    (StateKind::Open, StateKind::HalfOpen),
    (StateKind::HalfOpen, StateKind::Closed),
    (StateKind::HalfOpen, StateKind::Open),
];

struct PerUpstream {
    state: u32,
    requests: [u32; 3],
    failures: [u32; 5],
    rejected: u32,
    transitions: [u32; 4],
    probes: [u32; 2],
    open_duration: u32,
    /// `(to, fallbacks counter)` per fallback.
    edges: Vec<(UpstreamId, u32)>,
}

pub struct EnvoyMetrics {
    upstreams: Vec<PerUpstream>,
    /// `[success, failure, skipped]` per ordered pair of a fallback chain.
    failovers: HashMap<(UpstreamId, UpstreamId), [u32; 3]>,
    all_open: u32,
    alerts: [u32; 3],
}

fn define(kind: MetricType, metric: &str, labels: &[(&str, &str)]) -> u32 {
    hostcalls::define_metric(kind, &stat_name(metric, labels)).unwrap_or(NONE)
}

fn counter(metric: &str, labels: &[(&str, &str)]) -> u32 {
    define(MetricType::Counter, metric, labels)
}

fn inc(id: u32) {
    if id != NONE {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

fn outcome_index(o: &Outcome) -> usize {
    match o {
        Outcome::Success => 0,
        Outcome::Failure { .. } => 1,
        Outcome::Ignored => 2,
    }
}

fn reason_index(r: FailureReason) -> usize {
    FailureReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

impl EnvoyMetrics {
    pub fn define(config: &Config) -> EnvoyMetrics {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let up = [("upstream", u.name.as_str())];
                let with = |k: &'static str, v: &'static str| counter_pair(&u.name, k, v);
                PerUpstream {
                    state: define(MetricType::Gauge, "circuit_breaker_state", &up),
                    requests: ["success", "failure", "ignored"]
                        .map(|o| with("outcome", o)("circuit_breaker_requests")),
                    failures: FailureReason::ALL
                        .map(|r| with("reason", r.as_str())("circuit_breaker_failures")),
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
                        .map(|r| with("result", r)("circuit_breaker_probes")),
                    open_duration: define(
                        MetricType::Histogram,
                        "circuit_breaker_open_duration_ms",
                        &up,
                    ),
                    edges: u
                        .fallbacks
                        .iter()
                        .map(|&f| {
                            let to = config.upstreams[f].name.as_str();
                            let pair = [("from", u.name.as_str()), ("to", to)];
                            (f, counter("circuit_breaker_fallbacks", &pair))
                        })
                        .collect(),
                }
            })
            .collect();
        // A failover goes from the upstream that failed to any later one of its chain.
        let mut failovers = HashMap::new();
        for p in 0..config.upstreams.len() {
            let chain: Vec<UpstreamId> = candidates(config, p).collect();
            for (i, &from) in chain.iter().enumerate() {
                for &to in &chain[i + 1..] {
                    failovers.entry((from, to)).or_insert_with(|| {
                        let (f, t) = (&config.upstreams[from].name, &config.upstreams[to].name);
                        FailoverResult::ALL.map(|r| {
                            counter(
                                "circuit_breaker_failovers",
                                &[
                                    ("from", f.as_str()),
                                    ("to", t.as_str()),
                                    ("result", r.as_str()),
                                ],
                            )
                        })
                    });
                }
            }
        }
        EnvoyMetrics {
            upstreams,
            failovers,
            all_open: counter("circuit_breaker_all_open", &[]),
            alerts: AlertResult::ALL
                .map(|r| counter("circuit_breaker_alerts", &[("result", r.as_str())])),
        }
    }

    fn edge(&self, from: UpstreamId, to: UpstreamId) -> Option<&(UpstreamId, u32)> {
        self.upstreams
            .get(from)
            .and_then(|u| u.edges.iter().find(|e| e.0 == to))
    }
}

/// A counter labelled with `upstream` and one more label, as a closure over the metric name.
fn counter_pair<'a>(
    upstream: &'a str,
    key: &'static str,
    value: &'a str,
) -> impl Fn(&str) -> u32 + 'a {
    move |metric| counter(metric, &[("upstream", upstream), (key, value)])
}

impl MetricsSink for &EnvoyMetrics {
    fn state(&mut self, upstream: UpstreamId, state: StateKind) {
        if let Some(u) = self.upstreams.get(upstream) {
            if u.state != NONE {
                let _ = hostcalls::record_metric(u.state, state.gauge() as u64);
            }
        }
    }

    fn request(&mut self, upstream: UpstreamId, outcome: &Outcome) {
        if let Some(u) = self.upstreams.get(upstream) {
            inc(u.requests[outcome_index(outcome)]);
        }
    }

    fn failure(&mut self, upstream: UpstreamId, reason: FailureReason) {
        if let Some(u) = self.upstreams.get(upstream) {
            inc(u.failures[reason_index(reason)]);
        }
    }

    fn rejected(&mut self, upstream: UpstreamId) {
        if let Some(u) = self.upstreams.get(upstream) {
            inc(u.rejected);
        }
    }

    fn fallback(&mut self, from: UpstreamId, to: UpstreamId) {
        if let Some(e) = self.edge(from, to) {
            inc(e.1);
        }
    }

    fn transition(&mut self, upstream: UpstreamId, from: StateKind, to: StateKind) {
        if let (Some(u), Some(i)) = (
            self.upstreams.get(upstream),
            TRANSITIONS.iter().position(|t| *t == (from, to)),
        ) {
            inc(u.transitions[i]);
        }
    }

    fn all_open(&mut self) {
        inc(self.all_open);
    }

    fn probe(&mut self, upstream: UpstreamId, success: bool) {
        if let Some(u) = self.upstreams.get(upstream) {
            inc(u.probes[usize::from(!success)]);
        }
    }

    fn open_duration(&mut self, upstream: UpstreamId, ms: u64) {
        if let Some(u) = self.upstreams.get(upstream) {
            if u.open_duration != NONE {
                let _ = hostcalls::record_metric(u.open_duration, ms);
            }
        }
    }

    fn failover(&mut self, from: UpstreamId, to: UpstreamId, result: FailoverResult) {
        if let (Some(ids), Some(i)) = (
            self.failovers.get(&(from, to)),
            FailoverResult::ALL.iter().position(|r| *r == result),
        ) {
            inc(ids[i]);
        }
    }

    fn alert(&mut self, result: AlertResult) {
        if let Some(i) = AlertResult::ALL.iter().position(|r| *r == result) {
            inc(self.alerts[i]);
        }
    }
}
