#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn probe_held_stream() {
    let cfg = json!({"upstreams": [{"name": "openai"}], "routes": [{"upstream": "openai"}]});
    let s = Stack::start(&cfg, 1, Duration::from_secs(10));
    let mode = std::env::var("PROBE_MODE")
        .unwrap_or_else(|_| r#"{"mode":"healthy","tokens":6,"chunk_delay_ms":150}"#.into());
    s.openai.set_mode(&mode);
    let body =
        json!({"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]})
            .to_string();
    let r = match try_http(
        "POST",
        &format!("{}/v1/chat/completions", s.envoy.addr()),
        &[("content-type", "application/json")],
        body.as_bytes(),
        Duration::from_secs(8),
    ) {
        Ok(r) => r,
        Err(e) => {
            println!("CLIENT error {e}");
            for l in s.envoy.log().lines().filter(|l| l.contains("PROBE")) {
                println!("LOG {}", &l[l.find("PROBE").unwrap()..]);
            }
            return;
        }
    };
    let t = r.text();
    println!(
        "CLIENT status {} tail {:?} headers {:?}",
        r.status,
        &t[t.len().saturating_sub(120)..],
        r.headers
    );
    std::thread::sleep(Duration::from_millis(200));
    for l in s.envoy.log().lines().filter(|l| l.contains("PROBE")) {
        println!("LOG {}", &l[l.find("PROBE").unwrap()..]);
    }
}
