//! ai-circuit-breaker: a circuit breaker for AI API traffic, built as a proxy-wasm filter.
//!
//! The crate has a pure core (no proxy-wasm types, time passed in, never panics) and a thin
//! adapter that only exists when compiled for `wasm32-wasip1`, the target Envoy loads.
//!
//! Core: [`config`] (the public API), [`breaker`] (the state machine) over [`window`],
//! [`classifier`] (what counts as a failure), [`routing`] (which upstream serves),
//! [`state_codec`] (shared-data encoding) and [`metrics`] (what is measured).

pub mod alert;
pub mod breaker;
pub mod classifier;
pub mod config;
pub mod failover;
pub mod health;
pub mod metrics;
pub mod routing;
pub mod state_codec;
pub mod window;

#[cfg(target_os = "wasi")]
mod adapter;

#[cfg(test)]
mod tests;
