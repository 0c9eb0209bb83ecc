//! The health endpoint's JSON, built from breaker snapshots.
//!
//! The shape is `{"providers": {name: state}, "overall_health": ...}`, the simple view
//! dashboards poll, plus per-breaker details under `breakers`. `overall_health` is `critical` when some route can reach no upstream that is not
//! open (its primary and every fallback are open), `degraded` when any breaker is open or
//! half-open, and `healthy` otherwise.

use crate::breaker::{Snapshot, StateKind};
use crate::config::Config;
use crate::hints::format_rfc3339;
use crate::json_out::{array, string, Object};
use crate::store::probe_lease::ProbeLease;

/// Overall health, from the breakers' states.
pub fn overall(config: &Config, states: &[StateKind]) -> &'static str {
    let open = |u: &crate::config::UpstreamId| states.get(u.index()) == Some(&StateKind::Open);
    let route_dead = config
        .routes
        .iter()
        .any(|r| config.chain(r.upstream).iter().all(open));
    if route_dead {
        "critical"
    } else if states.iter().any(|s| *s != StateKind::Closed) {
        "degraded"
    } else {
        "healthy"
    }
}

/// A recovery probe's lease as the endpoint shows it.
fn probe_json(lease: &ProbeLease) -> String {
    let last = lease.last;
    Object::new()
        .num("failures", lease.failures)
        .opt_str("last_at", last.map(|l| format_rfc3339(l.at_ms)).as_deref())
        .opt_str("last_result", last.map(|l| l.result.as_str()))
        .opt_num("last_status", last.and_then(|l| l.status).map(u64::from))
        .num("successes", lease.successes)
        .end()
}

/// The endpoint's JSON document. `snapshots[i]` and `probes[i]` (the recovery probe's
/// lease, for upstreams that have one) belong to `config.upstreams[i]`. Objects list their
/// keys sorted, as serde_json's map did when this was built from a `Value`.
pub fn render(
    config: &Config,
    snapshots: &[Snapshot],
    probes: &[Option<ProbeLease>],
    now_ms: u64,
) -> String {
    let states: Vec<StateKind> = snapshots.iter().map(|s| s.state).collect();
    let mut providers = Object::new();
    let mut breakers = Object::new();
    // Upstreams in name order (names are unique), picked one by one: a sort's generic code
    // would cost more wasm than the few upstreams cost time.
    let mut last: Option<&str> = None;
    while let Some((i, (u, s))) = config
        .upstreams()
        .iter()
        .zip(snapshots)
        .enumerate()
        .filter(|(_, (u, _))| last.is_none_or(|l| u.name.as_str() > l))
        .min_by(|a, b| a.1 .0.name.cmp(&b.1 .0.name))
    {
        last = Some(&u.name);
        let probe = match probes.get(i) {
            Some(Some(lease)) => probe_json(lease),
            _ => "null".to_string(),
        };
        providers = providers.str(&u.name, s.state.as_str());
        let fallbacks: Vec<String> = u
            .fallbacks
            .iter()
            .map(|&f| string(&config.upstream(f).name))
            .collect();
        let calls = u.policy.failure_rate.is_some().then_some(s.calls_in_window);
        let breaker = Object::new()
            .opt_num("calls_in_window", calls.map(u64::from))
            .str("cluster", &u.cluster)
            .opt_float("failure_rate", s.failure_rate)
            .num("failures_in_window", u64::from(s.failures_in_window))
            .raw("fallbacks", &array(&fallbacks))
            .opt_str(
                "last_trip_reason",
                s.last_trip.map(|t| t.describe()).as_deref(),
            )
            .str("mode", s.mode.as_str())
            .opt_float(
                "next_probe_in_seconds",
                s.next_probe_in_ms.map(|ms| ms as f64 / 1000.0),
            )
            .opt_str("opened_at", s.opened_at_ms.map(format_rfc3339).as_deref())
            .num("probes_in_flight", u64::from(s.probes_in_flight))
            .raw("recovery_probe", &probe)
            .str("state", s.state.as_str())
            .end();
        breakers = breakers.raw(&u.name, &breaker);
    }
    Object::new()
        .raw("breakers", &breakers.end())
        .str("overall_health", overall(config, &states))
        .raw("providers", &providers.end())
        .str("timestamp", &format_rfc3339(now_ms))
        .end()
}
