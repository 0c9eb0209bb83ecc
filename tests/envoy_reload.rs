#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Config reload under traffic (issue 15, part 3): Envoy serves the listener through LDS
//! from a watched file (filesystem xDS, as Istio pushes config), and the filter's config is
//! swapped while a breaker is OPEN and requests flow at a steady rate.
//!
//! Breaker state lives in shared data under each upstream's name, and a reload keeps the
//! VM (same `vm_id`, same code), so the new config picks up the state of every upstream it
//! still names, whatever their order. An invalid config is rejected by Envoy (the filter's
//! `on_configure` fails) and the previous listener keeps serving.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The filter config of one version: `openai` (primary of the default route, failing over
/// to `anthropic`), then `extra` upstreams, each with a `model` route of its own name.
fn config(upstreams: Value, routes: Value) -> String {
    json!({
        "health_path": HEALTH_PATH,
        "defaults": {"failure_threshold": 3, "recovery_timeout": 600, "max_recovery_timeout": 600,
                     "recovery_jitter": 0},
        "upstreams": upstreams,
        "routes": routes,
        "tick_interval": 1
    })
    .to_string()
}

fn set_config(b: &mut Bootstrap, cfg: &str) {
    b.wasm_config()["configuration"]["value"] = json!(cfg);
}

/// Steady client traffic on the default route: one request every 20 ms from each of two
/// threads until `stop` (bounded: at most 60 s and 3,000 requests per thread). Returns every
/// answer that was not a 200, with its index.
fn steady_traffic(addr: &str, stop: &AtomicBool, sent: &Mutex<u64>) -> Vec<String> {
    let failures = Mutex::new(Vec::new());
    thread::scope(|s| {
        for t in 0..2 {
            let failures = &failures;
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0..3000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let r = try_http(
                        "POST",
                        &format!("{addr}/v1/chat/completions"),
                        &[("content-type", "application/json")],
                        chat_body("gpt-4o-mini").as_bytes(),
                        Duration::from_secs(10),
                    );
                    *sent.lock().unwrap() += 1;
                    let failed = match r {
                        Ok(r) if r.status == 200 => None,
                        Ok(r) => Some(format!("{} {}", r.status, r.text())),
                        Err(e) => Some(format!("I/O error: {e}")),
                    };
                    if let Some(why) = failed {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("thread {t} request {i}: {why}"));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

#[test]
fn a_reload_under_traffic_keeps_open_breakers_by_name_applies_new_thresholds_and_rejects_an_invalid_config(
) {
    let openai = Mock::start_with_mode("openai", r#"{"mode":"error","status":500}"#);
    let anthropic = Mock::start("anthropic");
    let azure = Mock::start_with_mode("azure", r#"{"mode":"error","status":500}"#);
    let mistral = Mock::start("mistral");
    let gemini = Mock::start_with_mode("gemini", r#"{"mode":"error","status":500}"#);
    let v1 = config(
        json!([
            {"name": "openai", "fallbacks": ["anthropic"]},
            {"name": "anthropic"},
            {"name": "azure"},
            {"name": "gemini", "failure_threshold": 5}
        ]),
        json!([
            {"match": {"model": "azure"}, "upstream": "azure"},
            {"match": {"model": "gemini"}, "upstream": "gemini"},
            {"upstream": "openai"}
        ]),
    );
    let mut envoy = Envoy::builder()
        .filter_config(v1)
        .clusters(&[
            ("openai", openai.port()),
            ("anthropic", anthropic.port()),
            ("azure", azure.port()),
            ("mistral", mistral.port()),
            ("gemini", gemini.port()),
        ])
        .concurrency(2)
        .listener_from_file()
        .start();
    let addr = envoy.addr();
    let state = |envoy: &Envoy, u: &str| state_at(envoy, HEALTH_PATH, u);

    // openai opens (its three 500s are failed over to anthropic: the clients see 200s).
    for _ in 0..3 {
        assert_eq!(post_chat(&addr, "gpt-4o-mini", &[]).status, 200);
    }
    wait_state_at(
        &envoy,
        HEALTH_PATH,
        "openai",
        "open",
        Duration::from_secs(5),
    );
    // azure opens too (no fallback: its clients see the 500s).
    for _ in 0..3 {
        assert_eq!(post_chat(&addr, "azure", &[]).status, 500);
    }
    wait_state_at(&envoy, HEALTH_PATH, "azure", "open", Duration::from_secs(5));
    // gemini has 2 failures in its window, under a threshold of 5.
    for _ in 0..2 {
        assert_eq!(post_chat(&addr, "gemini", &[]).status, 500);
    }
    assert_eq!(state(&envoy, "gemini"), "closed");
    let openai_hits = openai.hits();

    let stop = AtomicBool::new(false);
    let sent = Mutex::new(0u64);
    let failures = thread::scope(|s| {
        let traffic = s.spawn(|| steady_traffic(&addr, &stop, &sent));
        thread::sleep(Duration::from_millis(500));

        // v2: reordered, azure removed, mistral added where azure was, gemini's threshold 3.
        let v2 = config(
            json!([
                {"name": "gemini", "failure_threshold": 3},
                {"name": "mistral"},
                {"name": "anthropic"},
                {"name": "openai", "fallbacks": ["anthropic"]}
            ]),
            json!([
                {"match": {"model": "azure"}, "upstream": "mistral"},
                {"match": {"model": "gemini"}, "upstream": "gemini"},
                {"upstream": "openai"}
            ]),
        );
        envoy.update_listener(|b| set_config(b, &v2));
        thread::sleep(Duration::from_millis(500));
        let h = health_at(&envoy, HEALTH_PATH);
        assert_eq!(breaker_state(&h, "openai"), "open", "kept by name: {h}");
        assert_eq!(breaker_state(&h, "gemini"), "closed", "{h}");
        assert_eq!(
            breaker_state(&h, "mistral"),
            "closed",
            "nothing of azure's open state leaks into the upstream now in its place: {h}"
        );
        assert_eq!(
            breaker_state(&h, "azure"),
            "?",
            "a removed upstream is not reported: {h}"
        );
        let r = post_chat(&envoy.addr(), "azure", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served_by(&r), "mistral");
        // gemini's two failures were kept; under the new threshold of 3 the next one opens it.
        assert_eq!(post_chat(&envoy.addr(), "gemini", &[]).status, 500);
        wait_state_at(
            &envoy,
            HEALTH_PATH,
            "gemini",
            "open",
            Duration::from_secs(5),
        );

        // v3 fails validation (a fallback naming an unknown upstream): Envoy rejects it and
        // v2 keeps serving.
        let v3 = config(
            json!([{"name": "openai", "fallbacks": ["azur"]}, {"name": "anthropic"}]),
            json!([{"upstream": "openai"}]),
        );
        let rejected = envoy.try_update_listener(|b| set_config(b, &v3));
        let why = rejected.expect_err("an invalid filter config must be rejected");
        assert!(
            envoy.log().contains(r#"unknown upstream "azur""#),
            "the filter names the key: {why}"
        );
        thread::sleep(Duration::from_millis(500));
        let r = post_chat(&envoy.addr(), "azure", &[]);
        assert_eq!(served_by(&r), "mistral", "v2 still serves");
        let h = health_at(&envoy, HEALTH_PATH);
        assert_eq!(breaker_state(&h, "openai"), "open", "{h}");
        assert_eq!(breaker_state(&h, "gemini"), "open", "{h}");

        stop.store(true, Ordering::Relaxed);
        traffic.join().unwrap()
    });
    let sent = *sent.lock().unwrap();
    assert!(sent >= 50, "steady traffic ran: {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} client requests failed across the reloads: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        openai.hits(),
        openai_hits,
        "the open breaker stayed open through every reload: no request reached openai"
    );
    eprintln!("reload under traffic: {sent} requests, 0 failed, 2 reloads applied, 1 rejected");
}
