//! The health endpoint's JSON, built from breaker snapshots.
//!
//! The shape extends the seed's `{"providers": {...}, "overall_health": ...}` with per-breaker
//! details. `overall_health` is `critical` when some route can reach no upstream that is not
//! open (its primary and every fallback are open), `degraded` when any breaker is open or
//! half-open, and `healthy` otherwise.

use serde_json::{json, Map, Value};

use crate::breaker::{Snapshot, StateKind};
use crate::config::Config;
use crate::routing::candidates;

/// Overall health, from the breakers' states.
pub fn overall(config: &Config, states: &[StateKind]) -> &'static str {
    let open = |u: usize| states.get(u) == Some(&StateKind::Open);
    let route_dead = config
        .routes
        .iter()
        .any(|r| candidates(config, r.upstream).all(open));
    if route_dead {
        "critical"
    } else if states.iter().any(|s| *s != StateKind::Closed) {
        "degraded"
    } else {
        "healthy"
    }
}

/// The endpoint's JSON document. `snapshots[i]` belongs to `config.upstreams[i]`.
pub fn render(config: &Config, snapshots: &[Snapshot], now_ms: u64) -> String {
    let states: Vec<StateKind> = snapshots.iter().map(|s| s.state).collect();
    let mut providers = Map::new();
    let mut breakers = Map::new();
    for (u, s) in config.upstreams.iter().zip(snapshots) {
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
                "last_trip_reason": s.last_trip.map(|t| format!("{} ({})", t.rule.as_str(), t.reason.as_str())),
                "fallbacks": u.fallbacks.iter().map(|&f| config.upstreams[f].name.clone()).collect::<Vec<_>>(),
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

/// Milliseconds since the Unix epoch as `2026-11-26T22:01:29.123Z`.
pub fn format_rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}
