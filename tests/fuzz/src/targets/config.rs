//! `config::Config::from_json`: any text is a config or an error naming a key, never a
//! panic; and what compiles is what the rest of the filter relies on: every id in range, each
//! chain its primary then its fallbacks without repeats or cycles, names that find their
//! upstream, policies the engine can run (its open time within `max_recovery_timeout` and the
//! jitter), and a health document that is JSON naming every upstream.
//!
//! Input: the configuration text (lossy UTF-8).

use std::collections::HashSet;

use ai_circuit_breaker::breaker::{open_duration, Admission, Breaker, StateKind};
use ai_circuit_breaker::config::{Config, Mode, UpstreamId};
use ai_circuit_breaker::health;
use ai_circuit_breaker::outcome::{FailureReason, Outcome};

pub fn run(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let config = match Config::from_json(&text) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error message");
            return;
        }
    };
    let n = config.upstreams().len();
    assert!(n > 0, "a config without upstreams compiled");
    let ids: Vec<UpstreamId> = config.ids().collect();
    assert_eq!(ids.len(), n);
    for &id in &ids {
        let u = config.upstream(id);
        assert_eq!(
            config.upstream_id(&u.name),
            Some(id),
            "{} not found by name",
            u.name
        );
        let chain = config.chain(id);
        assert_eq!(
            chain.first(),
            Some(&id),
            "a chain must start with its primary"
        );
        assert_eq!(&chain[1..], u.fallbacks.as_slice());
        let distinct: HashSet<_> = chain.iter().collect();
        assert_eq!(
            distinct.len(),
            chain.len(),
            "{} repeats an upstream",
            u.name
        );
        assert!(chain.iter().all(|c| c.index() < n), "an id out of range");
        assert!(
            !reaches(&config, id),
            "{}'s fallbacks lead back to it",
            u.name
        );
        engine_runs(&config, id);
    }
    for r in &config.routes {
        assert!(r.upstream.index() < n, "a route to an id out of range");
    }
    let snapshots: Vec<_> = ids
        .iter()
        .map(|&id| {
            let p = &config.upstream(id).policy;
            Breaker::new(p).snapshot(p, 1_700_000_000_000)
        })
        .collect();
    let doc = health::render(&config, &snapshots, &[], 1_700_000_000_000);
    let v: serde_json::Value = serde_json::from_str(&doc).expect("health is not JSON");
    for u in config.upstreams() {
        assert!(
            v["providers"].get(&u.name).is_some(),
            "health misses {}",
            u.name
        );
    }
}

/// Whether following fallbacks from `start` comes back to it.
fn reaches(config: &Config, start: UpstreamId) -> bool {
    let mut seen = HashSet::new();
    let mut todo: Vec<UpstreamId> = config.upstream(start).fallbacks.clone();
    while let Some(u) = todo.pop() {
        if u == start {
            return true;
        }
        if seen.insert(u) {
            todo.extend(config.upstream(u).fallbacks.iter().copied());
        }
    }
    false
}

/// Opens the upstream's breaker (bounded: thresholds may be huge) and checks its open time.
fn engine_runs(config: &Config, id: UpstreamId) {
    let p = &config.upstream(id).policy;
    let mut b = Breaker::new(p);
    let start = 1_700_000_000_000u64;
    let failures = p.failure_threshold.min(64);
    for i in 0..failures {
        let now = start + u64::from(i);
        if let (Admission::Admitted(t), _) = b.admit(p, now) {
            let failure = Outcome::Failure {
                reason: FailureReason::Status5xx,
                retry_after_ms: Some(86_400_000),
            };
            b.record(p, now, t, failure, 0.999);
        }
    }
    // Enforced, counted, and every failure inside the window: the threshold opens it.
    if p.mode == Mode::Enforce
        && p.failure_rate.is_none()
        && p.failure_threshold == failures
        && p.window_ms >= 1_000
    {
        assert_eq!(
            b.stored_kind(),
            StateKind::Open,
            "{failures} failures left it closed"
        );
    }
    for reopens in [0, 1, 7, 1_000, u32::MAX] {
        for random in [0.0, 0.5, 0.999_999] {
            let d = open_duration(p, reopens, Some(86_400_000), random);
            let most = p.max_recovery_ms as f64 * (1.0 + p.recovery_jitter) + 1.0;
            assert!(d >= 1 && d as f64 <= most, "open for {d} ms, over {most}");
        }
    }
}
