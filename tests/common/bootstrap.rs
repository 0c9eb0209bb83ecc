//! The Envoy bootstrap the tests run, built as a `serde_json::Value` from the options of
//! [`EnvoyBuilder`](super::EnvoyBuilder) and written as JSON (which Envoy reads as YAML).
//!
//! Shape: admin and one listener `ingress` on `127.0.0.1:0`; its HTTP connection manager has
//! a file access log, one route `/` (to the routing header's cluster with the filter, to the
//! first cluster without), the wasm filter (when configured) and the router; one STATIC
//! cluster per mock. Stats tags turn the filter's metric names into Prometheus labels.
//!
//! To change it, either add a builder option that edits the value in [`render`], or pass a
//! one-off edit to [`EnvoyBuilder::edit_bootstrap`](super::EnvoyBuilder::edit_bootstrap);
//! [`Bootstrap`]'s accessors reach the parts tests usually change (listener, connection
//! manager, route, clusters, wasm filter).

use std::path::Path;
use std::time::Duration;

use ai_circuit_breaker::metrics::{stats_tag_regex, LABEL_NAMES};
use serde_json::{json, Value};

use super::envoy::EnvoyBuilder;
use super::ROUTE_HEADER;

pub const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub const FILE_ACCESS_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// One access log line per request: code, flags, code details, cluster, routing header.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% cluster=%UPSTREAM_CLUSTER% route_header=%REQ(X-AI-CB-UPSTREAM)% served_by=%RESP(X-AI-CB-SERVED-BY)% %DURATION%ms\n";

/// A protobuf `Duration` in its JSON form, e.g. `"0.300000000s"`. Zero disables the
/// timeouts that take one (route `timeout`, `idle_timeout`, `stream_idle_timeout`).
pub fn pb_duration(d: Duration) -> Value {
    Value::String(format!("{}.{:09}s", d.as_secs(), d.subsec_nanos()))
}

/// `{ socket_address: { address: 127.0.0.1, port_value: port } }`.
pub fn loopback(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

/// A STATIC plaintext HTTP/1.1 cluster `name` → `127.0.0.1:port` (connect timeout 0.25 s).
pub fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": loopback(port) } }] }]
        }
    })
}

/// The wasm HTTP filter running this crate's module with `config` (the filter's JSON).
pub fn wasm_filter(o: &EnvoyBuilder, config: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": "ai_circuit_breaker",
                "root_id": "ai_circuit_breaker",
                "allow_on_headers_stop_iteration": o.allow_on_headers_stop_iteration,
                "failure_policy": o.failure_policy,
                "vm_config": {
                    "vm_id": "ai_circuit_breaker",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": o.wasm_path } }
                },
                "configuration": { "@type": STRING_VALUE_TYPE, "value": config }
            }
        }
    })
}

/// The `ingress` listener: connection manager, access log, route, filters.
pub fn listener(o: &EnvoyBuilder, access_log: &Path) -> Value {
    let mut route = match (&o.filter_config, o.clusters.first()) {
        (Some(_), _) => json!({ "cluster_header": ROUTE_HEADER }),
        (None, Some((first, _))) => json!({ "cluster": first }),
        (None, None) => panic!("a bare Envoy (no filter_config) needs at least one cluster"),
    };
    route["timeout"] = pb_duration(o.route_timeout);
    if let Some(t) = o.route_idle_timeout {
        route["idle_timeout"] = pb_duration(t);
    }
    let mut http_filters: Vec<Value> = o
        .filter_config
        .iter()
        .map(|cfg| wasm_filter(o, cfg))
        .collect();
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": ROUTER_TYPE }
    }));
    let mut hcm = json!({
        "@type": HCM_TYPE,
        "stat_prefix": "ingress_http",
        "codec_type": "AUTO",
        "access_log": [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": FILE_ACCESS_LOG_TYPE,
                "path": access_log.display().to_string(),
                "log_format": { "text_format_source": { "inline_string": ACCESS_LOG_FORMAT } }
            }
        }],
        "route_config": {
            "name": "local",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": [{ "match": { "prefix": "/" }, "route": route }]
            }]
        },
        "http_filters": http_filters
    });
    if let Some(t) = o.stream_idle_timeout {
        hcm["stream_idle_timeout"] = pb_duration(t);
    }
    let mut listener = json!({
        "name": "ingress",
        "address": loopback(0),
        "filter_chains": [{
            "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }]
        }]
    });
    if let Some(bytes) = o.buffer_limit_bytes {
        listener["per_connection_buffer_limit_bytes"] = json!(bytes);
    }
    listener
}

/// The bootstrap these options produce, with the builder's edits applied.
pub fn render(o: &EnvoyBuilder, access_log: &Path) -> Bootstrap {
    let stats_tags: Vec<Value> = LABEL_NAMES
        .iter()
        .map(|label| json!({ "tag_name": label, "regex": stats_tag_regex(label) }))
        .collect();
    let clusters: Vec<Value> = o
        .clusters
        .iter()
        .map(|(name, port)| {
            let mut c = static_cluster(name, *port);
            if let Some(bytes) = o.buffer_limit_bytes {
                c["per_connection_buffer_limit_bytes"] = json!(bytes);
            }
            c
        })
        .collect();
    let mut b = Bootstrap(json!({
        "admin": { "address": loopback(0) },
        // Histograms reach /stats/prometheus only on a stats flush (default 5 s): flush often.
        "stats_flush_interval": "0.5s",
        "stats_config": { "stats_tags": stats_tags },
        "static_resources": {
            "listeners": [listener(o, access_log)],
            "clusters": clusters
        }
    }));
    for edit in &o.edits.0 {
        edit(&mut b);
    }
    b
}

/// A bootstrap document, with accessors that panic with the missing path when the document
/// does not have the part asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap(pub Value);

/// `v[path[0]][path[1]]…`, where a segment is an object key or (as digits) an array index.
fn at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        let next = match (key.parse::<usize>(), cur) {
            (Ok(n), Value::Array(a)) => a.get_mut(n),
            (_, Value::Object(m)) => m.get_mut(*key),
            _ => None,
        };
        cur = next.unwrap_or_else(|| panic!("bootstrap has no {}", path[..=i].join(".")));
    }
    cur
}

impl Bootstrap {
    /// The `ingress` listener (`static_resources.listeners[0]`).
    pub fn listener(&mut self) -> &mut Value {
        at(&mut self.0, &["static_resources", "listeners", "0"])
    }

    /// The listener's HTTP connection manager config (its `typed_config`).
    pub fn hcm(&mut self) -> &mut Value {
        at(
            self.listener(),
            &["filter_chains", "0", "filters", "0", "typed_config"],
        )
    }

    /// The `route` action of the one route (cluster or cluster_header, timeouts).
    pub fn route(&mut self) -> &mut Value {
        at(
            self.hcm(),
            &["route_config", "virtual_hosts", "0", "routes", "0", "route"],
        )
    }

    /// The HTTP filters, router last.
    pub fn http_filters(&mut self) -> &mut Vec<Value> {
        match at(self.hcm(), &["http_filters"]) {
            Value::Array(a) => a,
            other => panic!("http_filters is not a list: {other}"),
        }
    }

    /// The wasm filter's `config` (`vm_config`, `configuration`, `failure_policy`, …).
    pub fn wasm_config(&mut self) -> &mut Value {
        let filter = self
            .http_filters()
            .iter_mut()
            .find(|f| f["typed_config"]["@type"] == WASM_TYPE)
            .unwrap_or_else(|| panic!("the bootstrap has no wasm filter"));
        at(filter, &["typed_config", "config"])
    }

    /// Every cluster.
    pub fn clusters(&mut self) -> &mut Vec<Value> {
        match at(&mut self.0, &["static_resources", "clusters"]) {
            Value::Array(a) => a,
            other => panic!("clusters is not a list: {other}"),
        }
    }

    /// The cluster named `name`.
    pub fn cluster(&mut self, name: &str) -> &mut Value {
        self.clusters()
            .iter_mut()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("the bootstrap has no cluster {name:?}"))
    }

    /// The document as pretty JSON (what Envoy is given).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.0).unwrap_or_else(|e| panic!("bootstrap: {e}"))
    }

    /// The document as YAML (to read or to save as an example).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.0).unwrap_or_else(|e| panic!("bootstrap: {e}"))
    }

    /// Moves the listener out into an LDS resource file: returns that file's document
    /// (`version_info` = `version`) and points `dynamic_resources.lds_config` at `lds_path`,
    /// watched through its directory (Envoy reloads when a file is moved into it).
    pub fn split_listener(&self, lds_path: &Path, version: u64) -> (Bootstrap, Value) {
        let mut b = self.clone();
        let mut listener = b.listener().clone();
        listener["@type"] = json!(LISTENER_TYPE);
        let watched = lds_path.parent().unwrap_or(Path::new("/"));
        at(&mut b.0, &["static_resources"])["listeners"] = json!([]);
        b.0["node"] = json!({ "id": "ai-cb-test", "cluster": "ai-cb-test" });
        b.0["dynamic_resources"] = json!({
            "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": lds_path.display().to_string(),
                    "watched_directory": { "path": watched.display().to_string() }
                }
            }
        });
        let lds = json!({ "version_info": version.to_string(), "resources": [listener] });
        (b, lds)
    }
}
