//! Active recovery probes: learning that an OPEN upstream is back without risking a live
//! request on it.
//!
//! An upstream with a `recovery_probe` is checked every `interval` while its breaker is OPEN,
//! by exactly one worker of the process: the one holding the probe's [`ProbeLease`] in
//! shared data. A [`Prober`] is one worker's part in this. The root context drives it with
//! the time ([`Prober::tick`], which returns the calls to send) and with the answers
//! ([`Prober::answered`]); it decides, takes the lease by compare-and-swap and records the
//! outcome, so the adapter only dispatches calls and routes answers back.
//!
//! A probe answered with an expected status moves the breaker to HALF_OPEN at once (live
//! requests then confirm with `success_threshold` as usual). Any other answer, or none,
//! keeps it OPEN for at least `recovery_timeout` more: the upstream is known to be down, so
//! no live request is spent finding that out again.

use log::warn;

use crate::breaker::StateKind;
use crate::config::{Mode, UpstreamId};
use crate::host::{Host, HttpCall};
use crate::runtime::Runtime;
use crate::store;
use crate::store::probe_lease::{lease_key, ProbeLease, ProbeResult};

/// A worker's name in probe leases, from a uniform random value in [0, 1): never 0, and
/// two workers share one with odds of 1 in 2^32 (Envoy gives a VM no id of its own, and a
/// shared counter could not be created safely: creating a key ignores CAS).
pub fn worker_id(random: f64) -> u32 {
    let r = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((r * f64::from(u32::MAX - 1)) as u32).saturating_add(1)
}

/// A probe to send for `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCall {
    pub upstream: UpstreamId,
    pub call: HttpCall,
}

/// What came back for a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// Response headers with this status.
    Status(u16),
    /// No response: the callout timed out or its connection failed.
    NoAnswer,
    /// The proxy refused to send it (e.g. no such cluster): it says nothing about the upstream.
    NotSent,
}

/// One worker's recovery prober.
pub struct Prober {
    worker: u32,
    /// Lease key per upstream.
    keys: Vec<String>,
    /// When this worker sent the probe still in flight, per upstream.
    in_flight: Vec<Option<u64>>,
}

impl Prober {
    /// A prober for `rt`'s configuration, named `worker` in leases (see [`worker_id`]; 0
    /// takes no part). Creates the lease keys that do not exist yet: creation ignores CAS, so
    /// it happens at configure time, before any breaker is open.
    pub fn new<H: Host>(rt: &Runtime<H>, worker: u32) -> Prober {
        let keys: Vec<String> = rt
            .config
            .upstreams()
            .iter()
            .map(|u| lease_key(&u.name))
            .collect();
        for (k, u) in keys.iter().zip(rt.config.upstreams()) {
            if u.recovery_probe.is_some() {
                store::create(&rt.host, k, &ProbeLease::default());
            }
        }
        Prober {
            worker,
            in_flight: vec![None; keys.len()],
            keys,
        }
    }

    /// This worker's id in probe leases (0: it takes no part).
    pub fn worker(&self) -> u32 {
        self.worker
    }

    fn key(&self, u: UpstreamId) -> &str {
        self.keys.get(u.index()).map_or("", String::as_str)
    }

    /// The probes this worker must send now: for each OPEN breaker with a recovery probe,
    /// opened at least one interval ago, whose lease this worker holds or takes over, and
    /// whose previous probe from this worker has been answered.
    pub fn tick<H: Host>(&mut self, rt: &Runtime<H>, now_ms: u64) -> Vec<ProbeCall> {
        let mut calls = Vec::new();
        if self.worker == 0 {
            return calls;
        }
        for u in rt.config.ids() {
            let up = rt.config.upstream(u);
            let Some(probe) = &up.recovery_probe else {
                continue;
            };
            if let Some(Some(sent)) = self.in_flight.get(u.index()) {
                // The proxy answers every callout by its timeout; this only guards a lost one.
                if now_ms < sent.saturating_add(probe.timeout_ms.saturating_mul(2)) {
                    continue;
                }
            }
            if !matches!(up.policy.mode, Mode::Enforce | Mode::MetricsOnly) {
                continue;
            }
            let snap = rt.snapshot(u, now_ms);
            let opened_long_enough = snap
                .opened_at_ms
                .is_some_and(|t| now_ms >= t.saturating_add(probe.interval_ms));
            if snap.state != StateKind::Open || !opened_long_enough {
                continue;
            }
            let worker = self.worker;
            let done = store::update(&rt.host, self.key(u), ProbeLease::default, |l| {
                let mine = l.claim(worker, now_ms, probe.interval_ms, probe.timeout_ms);
                (mine, mine)
            });
            if done.result && done.wrote {
                if let Some(slot) = self.in_flight.get_mut(u.index()) {
                    *slot = Some(now_ms);
                }
                calls.push(ProbeCall {
                    upstream: u,
                    call: HttpCall {
                        cluster: up.callout_cluster.clone(),
                        headers: probe.headers.clone(),
                        body: probe.body.clone(),
                        timeout_ms: probe.timeout_ms,
                    },
                });
            }
        }
        calls
    }

    /// Records what came back for `u`'s probe: the metric, the lease's last result and the
    /// breaker's move (HALF_OPEN on success, a longer OPEN on a real failure).
    pub fn answered<H: Host>(
        &mut self,
        rt: &Runtime<H>,
        u: UpstreamId,
        answer: ProbeAnswer,
        now_ms: u64,
    ) -> ProbeResult {
        if let Some(slot) = self.in_flight.get_mut(u.index()) {
            *slot = None;
        }
        let up = rt.config.upstream(u);
        let (result, status) = match answer {
            ProbeAnswer::Status(s) => {
                let ok = up
                    .recovery_probe
                    .as_ref()
                    .is_some_and(|p| p.expected_statuses.contains(&s));
                let result = if ok {
                    ProbeResult::Success
                } else {
                    ProbeResult::Failure
                };
                (result, Some(s))
            }
            ProbeAnswer::NoAnswer | ProbeAnswer::NotSent => (ProbeResult::Failure, None),
        };
        if answer == ProbeAnswer::NotSent {
            warn!(
                "upstream {}: recovery probe to cluster {} could not be sent",
                up.name, up.callout_cluster
            );
        }
        rt.host.metrics().recovery_probe(u, result);
        store::update(&rt.host, self.key(u), ProbeLease::default, |l| {
            l.answered(result, status, now_ms);
            ((), true)
        });
        if answer != ProbeAnswer::NotSent {
            rt.recovery_probe_result(u, result, now_ms);
        }
        result
    }

    /// The lease of `u`'s probe, as shared data holds it (for the health endpoint).
    pub fn lease<H: Host>(&self, rt: &Runtime<H>, u: UpstreamId) -> ProbeLease {
        store::read(&rt.host, self.key(u), ProbeLease::default).value
    }
}
