#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]
//! Shared integration-test harness: the fixtures of this project (provider stacks, chat
//! requests, breaker state) on top of a few support modules:
//!
//! - [`client`]: the HTTP client (the `ureq` crate), a streaming reader with arrival times
//!   and server-sent events, and a raw-TCP helper for requests that must be sent as written;
//! - [`envoy`]: a real Envoy started from [`EnvoyBuilder`] options, its admin API, metrics,
//!   logs, LDS updates, and `envoy --mode validate`;
//! - [`bootstrap`]: the Envoy bootstrap those options render, as a `serde_json::Value`;
//! - [`mock`]: the mock provider and its control API;
//! - [`metrics`]: Envoy's Prometheus text as samples;
//! - [`process`]: child processes and temp dirs.
//!
//! Every test starts its own processes on ports chosen by the OS, so tests can run in
//! parallel threads and several test binaries can run one after another. Every child process
//! is killed by PID in a `Drop` impl (also when the test panics) and every temp dir removed.
//! When a test panics while an [`Envoy`] is alive, the tail of Envoy's log and access log is
//! printed to stderr; set `AI_CB_KEEP_TMP=1` to keep the temp dirs for inspection.
//!
//! ```ignore
//! mod common;
//! use common::*;
//!
//! let openai = Mock::start("openai");
//! let envoy = Envoy::builder()
//!     .filter_config(r#"{"upstreams":[{"name":"openai"}],"routes":[{"upstream":"openai"}]}"#)
//!     .cluster("openai", openai.port())
//!     .route_timeout(Duration::from_millis(500))
//!     .start();
//! let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[]);
//! assert_eq!(r.status, 200);
//! ```

pub mod bootstrap;
pub mod client;
pub mod envoy;
pub mod metrics;
pub mod mock;
pub mod process;
pub mod sdk;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

// What `use common::*` brings in; each test binary uses a different part of it.
#[allow(unused_imports)]
pub use self::{
    bootstrap::Bootstrap,
    client::*,
    envoy::*,
    metrics::*,
    mock::*,
    process::{run_captured, TempDir},
};

/// The request header the filter writes and the route reads (`cluster_header`).
pub const ROUTE_HEADER: &str = "x-ai-cb-upstream";

/// Polls `cond` every 25 ms until it is true (→ `true`) or `timeout` has passed (→ `false`).
/// `cond` is always evaluated at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25).min(deadline - now));
    }
}

// =============================================================================================
// Chat requests
// =============================================================================================

/// An OpenAI chat completion request body for `model`.
pub fn chat_body(model: &str) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string()
}

/// POSTs an OpenAI chat request for `model` to `http://{addr}/v1/chat/completions`.
pub fn post_chat(addr: &str, model: &str, extra_headers: &[(&str, &str)]) -> Response {
    post_chat_path(addr, "/v1/chat/completions", model, extra_headers)
}

/// [`post_chat`] to another path (e.g. an Azure deployment path).
pub fn post_chat_path(
    addr: &str,
    path: &str,
    model: &str,
    extra_headers: &[(&str, &str)],
) -> Response {
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra_headers);
    http(
        "POST",
        &format!("{addr}{path}"),
        &headers,
        chat_body(model).as_bytes(),
    )
}

/// Runs `f(0..n)` on up to `concurrency` threads (scoped, bounded) and returns the responses
/// in index order.
pub fn burst<F>(n: usize, concurrency: usize, f: F) -> Vec<Response>
where
    F: Fn(usize) -> Response + Sync,
{
    let workers = concurrency.clamp(1, 64).min(n.max(1));
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<Response>> = (0..n).map(|_| None).collect();
    thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        mine.push((i, f(i)));
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(results) => {
                    for (i, r) in results {
                        out[i] = Some(r);
                    }
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    });
    out.into_iter()
        .map(|r| r.expect("every burst index ran"))
        .collect()
}

// =============================================================================================
// Provider stack
// =============================================================================================

/// The health path the stack configs use.
pub const HEALTH_PATH: &str = "/health/circuit-breakers";

/// The providers the integration tests put behind Envoy, on free ports: `openai`,
/// `anthropic`, `azure` (cluster `azure-openai`) and a `webhook` receiver for alerts.
pub struct Stack {
    pub openai: Mock,
    pub anthropic: Mock,
    pub azure: Mock,
    pub webhook: Mock,
    pub envoy: Envoy,
}

impl Stack {
    /// Starts the mocks, then Envoy with the filter configured by `filter_config` in front.
    pub fn start(filter_config: &Value, concurrency: u32, route_timeout: Duration) -> Stack {
        let openai = Mock::start("openai");
        let anthropic = Mock::start("anthropic");
        let azure = Mock::start("azure");
        let webhook = Mock::start("webhook");
        let envoy = Envoy::builder()
            .concurrency(concurrency)
            .filter_config(filter_config.to_string())
            .clusters(&[
                ("openai", openai.port()),
                ("anthropic", anthropic.port()),
                ("azure-openai", azure.port()),
                ("webhook", webhook.port()),
            ])
            .route_timeout(route_timeout)
            .start();
        Stack {
            openai,
            anthropic,
            azure,
            webhook,
            envoy,
        }
    }

    /// One OpenAI chat completion through Envoy.
    pub fn chat(&self) -> Response {
        post_chat(&self.envoy.addr(), "gpt-4o-mini", &[])
    }

    /// The filter's health JSON (the config must set `health_path` to [`HEALTH_PATH`]).
    pub fn health(&self) -> Value {
        health_at(&self.envoy, HEALTH_PATH)
    }

    /// A breaker's state as the health endpoint reports it.
    pub fn state(&self, upstream: &str) -> String {
        breaker_state(&self.health(), upstream)
    }

    /// Waits until `upstream`'s breaker is in state `want`; panics with the last health JSON
    /// after `timeout`.
    pub fn wait_state(&self, upstream: &str, want: &str, timeout: Duration) {
        wait_state_at(&self.envoy, HEALTH_PATH, upstream, want, timeout);
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.envoy.metric(name, labels)
    }
}

/// `GET path` on the listener: the filter's health JSON; panics unless it answers 200.
pub fn health_at(envoy: &Envoy, path: &str) -> Value {
    let r = http("GET", &format!("{}{path}", envoy.addr()), &[], b"");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// `upstream`'s state in a health JSON: `closed`, `open`, `half_open`, or `?` when absent.
pub fn breaker_state(health: &Value, upstream: &str) -> String {
    health["providers"][upstream]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

/// `upstream`'s state in the health JSON at `path` of this Envoy's listener.
pub fn state_at(envoy: &Envoy, path: &str, upstream: &str) -> String {
    breaker_state(&health_at(envoy, path), upstream)
}

/// Waits until the health JSON at `path` reports `upstream` in state `want`; panics with the
/// last JSON seen after `timeout`.
pub fn wait_state_at(envoy: &Envoy, path: &str, upstream: &str, want: &str, timeout: Duration) {
    let mut last = Value::Null;
    let reached = wait_until(timeout, || {
        last = health_at(envoy, path);
        breaker_state(&last, upstream) == want
    });
    assert!(
        reached,
        "{upstream} not {want} within {timeout:?}; health: {last}"
    );
}

/// The upstream the filter says served a response.
pub fn served_by(r: &Response) -> &str {
    r.header("x-ai-cb-served-by").unwrap_or("<none>")
}
