//! Unit tests of the pure core. They run natively (`cargo test`) and again compiled to
//! `wasm32-unknown-unknown` under Node through wasm-bindgen-test (`make test-wasm`): each
//! file imports `wasm_bindgen_test as test` on wasm, so the same `#[test]` functions run there.

mod alert;
mod breaker;
mod classifier;
mod codec;
mod config;
mod failover;
mod health;
#[cfg(not(target_arch = "wasm32"))]
mod properties;
mod routing;
mod window;

use crate::config::Policy;

/// The seed's policy without jitter, so open times are exact.
pub(crate) fn seed_policy() -> Policy {
    Policy {
        recovery_jitter: 0.0,
        ..Policy::default()
    }
}
