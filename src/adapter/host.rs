//! The proxy behind the core's traits: [`ProxyHost`] (clock, randomness, shared data,
//! stats) and the views events carry (header maps, body buffers, stream properties).
//!
//! The SDK's trait helpers `unwrap()` host errors, and a panic aborts the worker's VM. Every
//! call here turns a host error into `None` or a default instead, so a surprising host
//! answer degrades one request, never the proxy.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::exchange::{Body, Headers, StreamInfo};
use crate::host::{Host, Versioned, WriteError};
use crate::metrics::{MetricKind, MetricsSink, StatSink, Stats};

/// Envoy's stats primitives.
pub struct EnvoyStats;

impl Stats for EnvoyStats {
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn add(&self, id: u32, n: u64) {
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn record(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// The core's [`Host`] in Envoy.
pub struct ProxyHost {
    pub stats: StatSink<EnvoyStats>,
}

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn random_unit(&self) -> f64 {
        let mut b = [0u8; 8];
        match getrandom::fill(&mut b) {
            Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        }
    }

    fn shared_get(&self, key: &str) -> Versioned {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|e| match e {
            Status::CasMismatch => WriteError::CasMismatch,
            _ => WriteError::Failed,
        })
    }

    fn metrics(&self) -> &dyn MetricsSink {
        &self.stats
    }
}

/// A header map of the current stream (or of the current callout's answer).
///
/// Values are read as bytes: Envoy passes obs-text (bytes 0x80-0xFF) in header values, and
/// the SDK's `String` readers unwrap `from_utf8`, a panic that kills the worker's VM. A value
/// that is not UTF-8 reads with U+FFFD in place of each invalid sequence (so it never
/// matches a route condition, and a failover callout receives it so replaced). Names are
/// tokens, ASCII by Envoy's own validation.
pub struct Map(pub MapType);

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Headers for Map {
    fn get(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value_bytes(self.0, name)
            .ok()
            .flatten()
            .map(text)
    }

    fn all(&self) -> Vec<(String, String)> {
        hostcalls::get_map_bytes(self.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, text(v)))
            .collect()
    }
}

/// A body buffer of the current stream (or of the current callout's answer).
pub struct Buffer(pub BufferType);

impl Body for Buffer {
    fn read_range(&self, start: usize, len: usize) -> Vec<u8> {
        hostcalls::get_buffer(self.0, start, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

/// Envoy's stream properties.
pub struct Properties;

/// An 8-byte little-endian integer property such as `response.flags`.
fn property_u64(path: Vec<&str>) -> Option<u64> {
    let bytes = hostcalls::get_property(path).ok().flatten()?;
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(raw))
}

impl StreamInfo for Properties {
    fn response_flags(&self) -> u64 {
        property_u64(vec!["response", "flags"]).unwrap_or(0)
    }

    /// `request.total_size` counts the request headers' bytes (names and values) and every
    /// body byte received from the client.
    fn request_body_received(&self) -> Option<u64> {
        let total = property_u64(vec!["request", "total_size"])?;
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok()?;
        let head: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        Some(total.saturating_sub(u64::try_from(head).ok()?))
    }

    fn code_details(&self) -> Option<String> {
        let bytes = hostcalls::get_property(vec!["response", "code_details"])
            .ok()
            .flatten()?;
        String::from_utf8(bytes).ok()
    }
}

pub fn set_map(map: MapType, name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(map, name, value);
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub fn set_tick_period_ms(ms: u64) {
    let _ = hostcalls::set_tick_period(Duration::from_millis(ms));
}

/// Makes `context_id` the stream the next host calls act on (from the root context).
pub fn enter(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

pub fn dispatch(call: &crate::host::HttpCall) -> Option<u32> {
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    hostcalls::dispatch_http_call(
        &call.cluster,
        headers,
        Some(&call.body),
        vec![],
        Duration::from_millis(call.timeout_ms),
    )
    .ok()
}
