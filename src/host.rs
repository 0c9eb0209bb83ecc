//! The host boundary: everything the core needs from the proxy, behind one trait.
//!
//! The core never calls proxy-wasm. It asks a [`Host`] for the time, for randomness, for
//! process-wide shared data (read with a compare-and-swap token, written only if nobody wrote
//! in between) and for its metrics sink. The adapter implements it with Envoy's host calls;
//! the tests implement it with an in-memory fake that can inject CAS conflicts and interleave
//! two workers, so the multi-worker guarantees are unit tests.
//!
//! What acts on one stream ([`StreamHost`]: carrying out an exchange's effects) and the raw
//! reads behind Envoy's stream properties ([`Properties`]) are traits too, so what the adapter
//! does with their answers (fallbacks, decoding) is decided here and tested on fakes.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::exchange::{Effect, StreamInfo};
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

/// The host calls that act on one stream: what carrying out an exchange's effects needs.
pub trait StreamHost {
    /// Makes `context_id` the stream the next calls act on (the root context reaching a
    /// stream); `false` when the host refuses (the stream is gone).
    fn enter(&self, context_id: u32) -> bool;
    /// Carries out one effect on the current stream. For [`Effect::Call`], the callout's
    /// token, or `None` when it could not be sent; `None` for every other effect.
    fn apply(&self, effect: Effect) -> Option<u32>;
    /// The current stream's properties.
    fn info(&self) -> &dyn StreamInfo;
}

/// Envoy's stream properties as the host hands them out: raw bytes by path.
pub trait Properties {
    /// The property at `path` (`["response", "flags"]`), if the host has it.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The current request headers.
    fn request_headers(&self) -> Option<Vec<(String, String)>>;
}

/// Envoy's properties, decoded for the exchange. A property the host lacks or encodes
/// unexpectedly reads as "unknown" (no flags, no details), never as an error.
pub struct EnvoyInfo<P>(pub P);

impl<P: Properties> EnvoyInfo<P> {
    /// An 8-byte little-endian integer property such as `response.flags`.
    fn u64_at(&self, path: &[&str]) -> Option<u64> {
        let bytes = self.0.property(path)?;
        let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(raw))
    }
}

impl<P: Properties> StreamInfo for EnvoyInfo<P> {
    fn response_flags(&self) -> u64 {
        self.u64_at(&["response", "flags"]).unwrap_or(0)
    }

    fn code_details(&self) -> Option<String> {
        String::from_utf8(self.0.property(&["response", "code_details"])?).ok()
    }

    /// `request.total_size` counts the request headers' bytes (names and values) and every
    /// body byte received from the client.
    fn request_body_received(&self) -> Option<u64> {
        let total = self.u64_at(&["request", "total_size"])?;
        let headers = self.0.request_headers()?;
        let head: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        Some(total.saturating_sub(u64::try_from(head).ok()?))
    }
}

/// Milliseconds since the Unix epoch of the host's clock (`None`, or a time before the
/// epoch: 0).
pub fn epoch_ms(now: Option<SystemTime>) -> u64 {
    now.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A uniform value in [0, 1) from 8 random bytes (53 bits of them); 0.5 without any.
pub fn unit_from(bytes: Option<[u8; 8]>) -> f64 {
    match bytes {
        Some(b) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        None => 0.5,
    }
}
