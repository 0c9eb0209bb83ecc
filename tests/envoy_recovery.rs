#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Active recovery probes in a real Envoy with the real .wasm: a flapping primary gets its
//! traffic back within about two probe intervals of recovering (not `recovery_timeout`), no
//! live call is spent on it while it is down, one worker of two sends the probes, and an
//! upstream without a `recovery_probe` behaves as before.
//!
//! The figures each test measures are printed (run with `--nocapture` to see them).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const MODELS: &str = "/v1/models";
const CHAT: &str = "/v1/chat/completions";

/// openai (primary, `probe` as its recovery probe, if any) → anthropic; failover on.
fn config(recovery_timeout: f64, probe: Option<Value>) -> Value {
    let mut openai = json!({"name": "openai", "fallbacks": ["anthropic"]});
    if let Some(p) = probe {
        openai["recovery_probe"] = p;
    }
    json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "defaults": {"failure_threshold": 5, "success_threshold": 2,
                     "recovery_timeout": recovery_timeout, "recovery_jitter": 0},
        "upstreams": [openai, {"name": "anthropic"}],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    })
}

/// When the mock logged each request to `path`, in ms since the Unix epoch.
fn times(m: &Mock, path: &str) -> Vec<u64> {
    m.requests_on(path)
        .iter()
        .filter_map(|r| r["unix_ms"].as_u64())
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_flapping_primary_gets_its_traffic_back_within_two_probe_intervals_of_recovering() {
    let probe = json!({"method": "GET", "path": MODELS, "interval": 2, "timeout": 1});
    let s = Stack::start(&config(30.0, Some(probe)), 1, Duration::from_secs(5));
    let start = now_ms();
    s.openai
        .set_mode(r#"{"mode":"down_for","down_ms":20000,"with":{"mode":"error","status":503}}"#);
    let recovered = start + 20_000;
    // One request every 2 s until the primary serves again (at most 40 s).
    let mut back_at = None;
    let mut served = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(40) {
        let r = s.chat();
        assert_eq!(
            r.status,
            200,
            "the client never sees the outage: {}",
            r.text()
        );
        let who = served_by(&r).to_string();
        served.push(who.clone());
        if who == "openai" && now_ms() > recovered {
            back_at = Some(now_ms());
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let back_at = back_at.unwrap_or_else(|| panic!("never back on the primary: {served:?}"));
    let after = back_at.saturating_sub(recovered);
    let live: Vec<u64> = times(&s.openai, CHAT);
    let live_down = live.iter().filter(|&&t| t < recovered).count();
    let probes = times(&s.openai, MODELS);
    let probes_down = probes.iter().filter(|&&t| t < recovered).count();
    println!(
        "recovery probe every 2 s: back on the primary {:.1} s after it recovered; \
         while down it got {live_down} live calls and {probes_down} probes \
         ({} probes in all)",
        after as f64 / 1000.0,
        probes.len()
    );
    // Within about two intervals: the first probe after recovery (<= 2 s + a tick) moves
    // the breaker to HALF_OPEN, and the next request (<= 2 s later) goes to the primary.
    assert!(
        after <= 5_000,
        "back {after} ms after recovery; served: {served:?}"
    );
    assert_eq!(
        live_down, 5,
        "only the failure_threshold calls reach the dead primary; probes do the rest"
    );
    assert!(probes_down >= 3, "probes while down: {probes:?}");
    assert!(
        s.metric(
            "circuit_breaker_recovery_probes",
            &[("upstream", "openai"), ("result", "failure")]
        )
        .unwrap_or(0.0)
            >= 3.0
    );
    assert!(
        s.metric(
            "circuit_breaker_recovery_probes",
            &[("upstream", "openai"), ("result", "success")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    let h = s.health();
    let p = &h["breakers"]["openai"]["recovery_probe"];
    assert!(p["successes"].as_u64() >= Some(1), "{h}");
    assert_eq!(p["last_result"], "success", "{h}");
    assert_eq!(p["last_status"], 200, "{h}");
}

#[test]
fn without_a_recovery_probe_nothing_is_probed_and_recovery_timeout_decides() {
    let s = Stack::start(&config(4.0, None), 1, Duration::from_secs(5));
    s.openai.set_mode(r#"{"mode":"error","status":503}"#);
    for _ in 0..5 {
        s.chat();
    }
    assert_eq!(s.state("openai"), "open");
    let opened = Instant::now();
    s.openai.mode("healthy");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.state("openai"),
        "open",
        "a healthy primary waits out recovery_timeout"
    );
    s.wait_state("openai", "half_open", Duration::from_secs(3));
    println!(
        "without a probe: half-open {:.1} s after opening (recovery_timeout 4 s)",
        opened.elapsed().as_secs_f64()
    );
    assert_eq!(s.openai.hits_on(MODELS), 0, "no probe request");
    assert!(s.health()["breakers"]["openai"]["recovery_probe"].is_null());
    assert_eq!(
        s.metric(
            "circuit_breaker_recovery_probes",
            &[("upstream", "openai"), ("result", "failure")]
        ),
        None,
        "the series exists only for upstreams with a recovery_probe"
    );
}

#[test]
fn exactly_one_of_two_workers_sends_each_probe() {
    let probe = json!({"path": MODELS, "interval": 1, "timeout": 0.5,
                       "headers": {"authorization": "Bearer probe-key"}});
    let s = Stack::start(&config(60.0, Some(probe)), 2, Duration::from_secs(5));
    s.openai.set_mode(r#"{"mode":"error","status":503}"#);
    // Open the breaker from both workers' connections.
    let opened = burst(5, 5, |_| post_chat(&s.envoy.addr(), "gpt-4o-mini", &[]));
    assert!(opened.iter().all(|r| r.status == 200));
    s.wait_state("openai", "open", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(8_500));
    let probes = times(&s.openai, MODELS);
    let gaps: Vec<u64> = probes.windows(2).map(|w| w[1] - w[0]).collect();
    // Per 1 s interval: how many probes the mock received.
    let first = probes.first().copied().unwrap_or(0);
    let mut per_interval = vec![0u32; 9];
    for t in &probes {
        if let Some(n) = per_interval.get_mut(((t - first) / 1_000) as usize) {
            *n += 1;
        }
    }
    println!(
        "2 workers, probe interval 1 s: {} probes in ~8 s, per interval {per_interval:?}, gaps {gaps:?} ms",
        probes.len()
    );
    assert!(
        (6..=9).contains(&probes.len()),
        "one probe a second: {probes:?}"
    );
    assert!(
        gaps.iter().all(|&g| g >= 900),
        "never two probes within one interval: {gaps:?}"
    );
    let reqs = s.openai.requests_on(MODELS);
    assert!(reqs
        .iter()
        .all(|r| r["method"] == "GET" && r["headers"]["authorization"] == "Bearer probe-key"));
    assert_eq!(s.openai.hits_on(CHAT), 5, "no live call after opening");
}
