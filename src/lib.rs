//! ai-circuit-breaker: a circuit breaker for AI API traffic, built as a proxy-wasm filter.
//!
//! The crate is a pure core and a thin adapter. The core takes time as an argument or from
//! its [`host::Host`], never panics and is unit-tested natively and as wasm:
//!
//! - [`config`]: the JSON configuration, parsed ([`config`]'s `raw`) and compiled into a typed
//!   [`config::Config`];
//! - [`outcome`]: the shared vocabulary (outcomes and failure reasons);
//! - [`classify`]: what an attempt's answer means for its upstream's breaker, with
//!   [`hints`] for the providers' Retry-After and rate-limit headers;
//! - [`breaker`]: one upstream's state machine, over its rolling window;
//! - [`routing`]: which upstream a request belongs to and which one serves it;
//! - [`exchange`]: one request's lifecycle, a state machine of events and effects;
//! - [`store`]: typed values in shared data, updated by compare-and-swap;
//! - [`runtime`]: one worker's view of every breaker, transitions and alerts;
//! - [`translate`]: OpenAI Chat Completions ↔ Anthropic Messages, requests, answers and streams;
//! - [`recovery`]: active recovery probes of OPEN upstreams, one worker at a time;
//! - [`driver`]: what the proxy's callbacks do with a worker's exchanges (effects carried
//!   out, timer wake-ups, callout answers routed, the configuration loaded);
//! - [`health`], [`alert`], [`metrics`]: what operators see.
//!
//! The adapter (`adapter`, only compiled for `wasm32-wasip1`, the target Envoy loads) turns
//! proxy-wasm callbacks into calls of the [`driver`] and effects into host calls.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod alert;
pub mod breaker;
pub mod classify;
pub mod config;
pub mod driver;
pub mod error_body;
pub mod exchange;
pub mod health;
pub mod hints;
pub mod host;
pub mod json_out;
pub mod metrics;
pub mod outcome;
pub mod recovery;
pub mod routing;
pub mod runtime;
pub mod sse;
pub mod store;
pub mod translate;

#[cfg(target_os = "wasi")]
mod adapter;

#[cfg(test)]
mod tests;
