//! The proxy behind the core's traits: [`ProxyHost`] (clock, randomness, shared data,
//! stats), [`Proxy`] (effects on the current stream) and the views events carry (header
//! maps, body buffers, stream properties).
//!
//! The SDK's trait helpers `unwrap()` host errors, and a panic aborts the worker's VM. Every
//! call here turns a host error into `None` or a default instead, so a surprising host
//! answer degrades one request, never the proxy.

use std::time::Duration;

use proxy_wasm::hostcalls as hc;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::exchange::{Answer, Body, Effect, Headers, StreamInfo};
use crate::host::{self, EnvoyInfo, Host, Properties, StreamHost, Versioned, WriteError};
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
        hc::define_metric(kind, name).ok()
    }

    fn add(&self, id: u32, n: u64) {
        let _ = hc::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn record(&self, id: u32, value: u64) {
        let _ = hc::record_metric(id, value);
    }
}

/// The core's [`Host`] in Envoy.
pub struct ProxyHost {
    pub stats: StatSink<EnvoyStats>,
}

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        host::epoch_ms(hc::get_current_time().ok())
    }

    fn random_unit(&self) -> f64 {
        let mut b = [0u8; 8];
        host::unit_from(getrandom::fill(&mut b).ok().map(|()| b))
    }

    fn shared_get(&self, key: &str) -> Versioned {
        hc::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        hc::set_shared_data(key, Some(value), cas).map_err(|e| match e {
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
        hc::get_map_value_bytes(self.0, name)
            .ok()
            .flatten()
            .map(text)
    }

    fn all(&self) -> Vec<(String, String)> {
        hc::get_map_bytes(self.0)
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
        hc::get_buffer(self.0, start, len)
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

/// Envoy's stream properties, read raw.
pub struct Props;

impl Properties for Props {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hc::get_property(path.to_vec()).ok().flatten()
    }

    fn request_headers(&self) -> Option<Vec<(String, String)>> {
        let pairs = hc::get_map_bytes(MapType::HttpRequestHeaders).ok()?;
        Some(pairs.into_iter().map(|(k, v)| (k, text(v))).collect())
    }
}

/// The current stream's properties, as the exchange reads them.
pub const INFO: EnvoyInfo<Props> = EnvoyInfo(Props);

/// The host calls that act on the current stream.
pub struct Proxy;

impl StreamHost for Proxy {
    fn enter(&self, context_id: u32) -> bool {
        hc::set_effective_context(context_id).is_ok()
    }

    fn apply(&self, effect: Effect) -> Option<u32> {
        let (req, resp) = (BufferType::HttpRequestBody, BufferType::HttpResponseBody);
        let _ = match effect {
            Effect::SetRequestHeader(n, v) => set_map(MapType::HttpRequestHeaders, &n, Some(&v)),
            Effect::RemoveRequestHeader(n) => set_map(MapType::HttpRequestHeaders, &n, None),
            Effect::SetResponseHeader(n, v) => set_map(MapType::HttpResponseHeaders, &n, Some(&v)),
            Effect::RemoveResponseHeader(n) => set_map(MapType::HttpResponseHeaders, &n, None),
            Effect::ClearRequestBody { len } => hc::set_buffer(req, 0, len, &[]),
            Effect::ReplaceRequestBody { len, body } => hc::set_buffer(req, 0, len, &body),
            Effect::ClearResponseBody { len } => hc::set_buffer(resp, 0, len, &[]),
            Effect::ReplaceResponseBody { len, body } => hc::set_buffer(resp, 0, len, &body),
            Effect::Reply(r) => {
                let headers = pairs(&r.headers);
                hc::send_http_response(u32::from(r.status), headers, Some(&r.body))
            }
            Effect::Call(call) => {
                let timeout = Duration::from_millis(call.timeout_ms);
                let headers = pairs(&call.headers);
                let body = Some(call.body.as_slice());
                return hc::dispatch_http_call(&call.cluster, headers, body, vec![], timeout).ok();
            }
            Effect::ResumeRequest => hc::resume_http_request(),
            Effect::ResumeResponse => hc::resume_http_response(),
        };
        None
    }

    fn info(&self) -> &dyn StreamInfo {
        &INFO
    }
}

fn set_map(map: MapType, name: &str, value: Option<&str>) -> Result<(), Status> {
    hc::set_map_value(map, name, value)
}

fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Calls `f` with the current callout's answer (`headers` = 0: the host has none).
pub fn with_answer(headers: usize, body_len: usize, f: impl FnOnce(Option<Answer<'_>>)) {
    let (map, body) = (
        Map(MapType::HttpCallResponseHeaders),
        Buffer(BufferType::HttpCallResponseBody),
    );
    f((headers > 0).then_some(Answer {
        headers: &map,
        body: &body,
        body_len,
    }));
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hc::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub fn set_tick_period_ms(ms: u64) {
    let _ = hc::set_tick_period(Duration::from_millis(ms));
}
