//! The host boundary: everything the core needs from the proxy, behind one trait.
//!
//! The core never calls proxy-wasm. It asks a [`Host`] for the time, for randomness, for
//! process-wide shared data (read with a compare-and-swap token, written only if nobody wrote
//! in between) and for its metrics sink. The adapter implements it with Envoy's host calls;
//! the tests implement it with an in-memory fake that can inject CAS conflicts and interleave
//! two workers, so the multi-worker guarantees are unit tests.

use crate::metrics::MetricsSink;

/// A shared-data value and its compare-and-swap token (`None` when the key does not exist).
pub type Versioned = (Option<Vec<u8>>, Option<u32>);

/// Why a shared-data write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Someone wrote the key since it was read: read again and retry.
    CasMismatch,
    /// Any other host error; retrying will not help.
    Failed,
}

/// What the core needs from the proxy.
pub trait Host {
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// A uniformly distributed value in [0, 1).
    fn random_unit(&self) -> f64;
    /// Reads a process-wide shared-data key.
    fn shared_get(&self, key: &str) -> Versioned;
    /// Writes a key if its token is still `cas` (`None` writes unconditionally).
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError>;
    /// Where measurements go.
    fn metrics(&self) -> &dyn MetricsSink;
}

/// An HTTP call the proxy makes on the core's behalf (a failover attempt, an alert webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The Envoy cluster to call.
    pub cluster: String,
    /// Request headers, pseudo-headers first.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}
