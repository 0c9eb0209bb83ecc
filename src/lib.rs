//! ai-circuit-breaker: a circuit breaker for AI API traffic, built as a proxy-wasm filter.
//!
//! The crate has a pure core (no proxy-wasm types, time passed in, never panics) and a thin
//! adapter that only exists when compiled for `wasm32-wasip1`, the target Envoy loads.
