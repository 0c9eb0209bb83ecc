//! Unit tests of the pure core. They run natively (`cargo test`) and again compiled to
//! `wasm32-unknown-unknown` under Node through wasm-bindgen-test (`make test-wasm`): each
//! file imports `wasm_bindgen_test as test` on wasm, so the same `#[test]` functions run there.

mod alert;
mod body;
mod breaker;
pub(crate) mod case;
mod classify;
mod config;
mod config_fields;
mod driver;
mod error_body;
mod exchange;
mod failover;
pub(crate) mod fake;
mod fuzz_found;
mod health;
mod judge;
#[cfg(not(target_arch = "wasm32"))]
mod properties;
mod recovery;
mod retry;
mod routing;
mod runtime;
mod sse;
mod store;
mod stream;
mod translate_config;
mod translate_to_anthropic;
mod translate_to_openai;
mod translate_to_openai_answer;
mod translate_to_openai_stream;
mod translate_wiring;
mod window;

use crate::config::Policy;

/// The documented default policy without jitter, so open times are exact.
pub(crate) fn default_policy() -> Policy {
    Policy {
        recovery_jitter: 0.0,
        ..Policy::default()
    }
}
