//! The health endpoint's JSON, built from breaker snapshots.
//!
//! The shape is `{"providers": {name: state}, "overall_health": ...}`, the simple view
//! dashboards poll, plus per-breaker details under `breakers`. `overall_health` is `critical` when some route can reach no upstream that is not
//! open (its primary and every fallback are open), `degraded` when any breaker is open or
//! half-open, and `healthy` otherwise.

use serde_json::{json, Map, Value};

use crate::breaker::{Snapshot, StateKind};
use crate::config::Config;
use crate::hints::format_rfc3339;
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
fn probe_json(lease: &ProbeLease) -> Value {
    json!({
        "successes": lease.successes,
        "failures": lease.failures,
        "last_result": lease.last.map(|l| l.result.as_str()),
        "last_status": lease.last.and_then(|l| l.status),
        "last_at": lease.last.map(|l| format_rfc3339(l.at_ms)),
    })
}

/// The endpoint's JSON document. `snapshots[i]` and `probes[i]` (the recovery probe's
/// lease, for upstreams that have one) belong to `config.upstreams[i]`.
pub fn render(
    config: &Config,
    snapshots: &[Snapshot],
    probes: &[Option<ProbeLease>],
    now_ms: u64,
) -> String {
    let states: Vec<StateKind> = snapshots.iter().map(|s| s.state).collect();
    let mut providers = Map::new();
    let mut breakers = Map::new();
    for (i, (u, s)) in config.upstreams().iter().zip(snapshots).enumerate() {
        let probe = match probes.get(i) {
            Some(Some(lease)) => probe_json(lease),
            _ => Value::Null,
        };
        providers.insert(u.name.clone(), Value::from(s.state.as_str()));
        breakers.insert(
            u.name.clone(),
            json!({
                "cluster": u.cluster,
                "state": s.state.as_str(),
                "mode": s.mode.as_str(),
                "failures_in_window": s.failures_in_window,
                "calls_in_window": if u.policy.failure_rate.is_some() { Some(s.calls_in_window) } else { None },
                "failure_rate": s.failure_rate,
                "opened_at": s.opened_at_ms.map(format_rfc3339),
                "next_probe_in_seconds": s.next_probe_in_ms.map(|ms| ms as f64 / 1000.0),
                "probes_in_flight": s.probes_in_flight,
                "last_trip_reason": s.last_trip.map(|t| t.describe()),
                "recovery_probe": probe,
                "fallbacks": u.fallbacks.iter().map(|&f| config.upstream(f).name.as_str()).collect::<Vec<_>>(),
            }),
        );
    }
    json!({
        "providers": providers,
        "overall_health": overall(config, &states),
        "breakers": breakers,
        "timestamp": format_rfc3339(now_ms),
    })
    .to_string()
}
