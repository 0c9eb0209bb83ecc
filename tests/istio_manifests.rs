#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Checks the Istio example in `examples/istio/` without a cluster:
//!
//! - every YAML document in `examples/istio/*.yaml` parses and validates against the OpenAPI v3
//!   schema of its kind, from Istio 1.30.3's CRDs vendored in `tests/istio-crds/` (source,
//!   version and licence in the README there). The `jsonschema` crate does the validating. The
//!   schemas are first made strict the way the API server reads them: unknown fields are
//!   errors (as with `kubectl apply --validate=strict`), `nullable` admits null, `int32`
//!   bounds the value. What this does NOT check: CEL rules (`x-kubernetes-validations`, such as
//!   "only one of selector or targetRefs") and list-map key uniqueness. The API server checks
//!   those when the manifests are applied;
//! - the filter accepts the configuration in the WasmPlugin (`pluginConfig`) and in the
//!   body-routing EnvoyFilter;
//! - the VirtualServices route exactly the `cluster` values the filter writes into its route
//!   header, and each provider has a ServiceEntry and TLS origination;
//! - the mesh config turns every label of the filter's metrics into a Prometheus label.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ai_circuit_breaker::config::Config;
use ai_circuit_breaker::metrics::LABEL_NAMES;
use jsonschema::{Draft, Validator};
use serde::Deserialize;
use serde_json::{json, Value};

/// Istio's CRDs for the kinds the example uses, vendored from Istio 1.30.3.
const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/istio-crds/istio-1.30.3-crds.yaml"
);
const EXAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/istio");

/// The manifests the README walks through. A renamed or deleted file fails here instead of
/// silently dropping out of the checks.
const EXPECTED_FILES: &[&str] = &[
    "egress.yaml",
    "envoyfilter-body-routing.yaml",
    "mesh-config.yaml",
    "virtualservice-chaos.yaml",
    "virtualservice.yaml",
    "wasmplugin.yaml",
];

/// Kinds that are not API server resources, so no CRD describes them. They are checked for
/// the envelope (apiVersion, kind, metadata, an object `spec`) only.
const NON_CRD_KINDS: &[(&str, &str)] = &[
    // Read by `istioctl install`; its schema lives in istioctl, not in a CRD.
    ("install.istio.io/v1alpha1", "IstioOperator"),
];

/// The egress gateway Service that sidecars send AI traffic to.
const EGRESS_GATEWAY_HOST: &str = "istio-egressgateway.istio-system.svc.cluster.local";

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Parses every document of a YAML stream into JSON values, skipping empty documents.
fn yaml_documents(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(i, doc)| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{origin}: YAML document {i} does not parse: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// One document of one file in `examples/istio/`.
struct Manifest {
    file: String,
    index: usize,
    doc: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("<no kind>")
    }

    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("<no name>")
    }

    fn namespace(&self) -> &str {
        self.doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    }

    fn spec(&self) -> &Value {
        &self.doc["spec"]
    }

    /// `wasmplugin.yaml#0 WasmPlugin/ai-circuit-breaker`, for messages.
    fn label(&self) -> String {
        format!(
            "{}#{} {}/{}",
            self.file,
            self.index,
            self.kind(),
            self.name()
        )
    }
}

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(EXAMPLES_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

fn manifests() -> &'static [Manifest] {
    static MANIFESTS: OnceLock<Vec<Manifest>> = OnceLock::new();
    MANIFESTS.get_or_init(|| {
        let mut out = Vec::new();
        for path in example_files() {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            for (index, doc) in yaml_documents(&text, &file).into_iter().enumerate() {
                out.push(Manifest {
                    file: file.clone(),
                    index,
                    doc,
                });
            }
        }
        out
    })
}

fn of_kind(kind: &str) -> Vec<&'static Manifest> {
    manifests().iter().filter(|m| m.kind() == kind).collect()
}

// ---------------------------------------------------------------------------------------------
// Schemas: Istio's CRDs, read as the API server reads them, validated by `jsonschema`
// ---------------------------------------------------------------------------------------------

/// The part of Kubernetes' ObjectMeta that a manifest may set and the API server checks
/// before the CRD schema applies: DNS-1123 names, string maps, nothing else.
fn object_meta_schema() -> Value {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "required": ["name"],
        "additionalProperties": false,
        "properties": {
            "name": {
                "type": "string", "maxLength": 253,
                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            },
            "namespace": {
                "type": "string", "maxLength": 63,
                "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
            },
            "labels": string_map,
            "annotations": string_map
        }
    })
}

/// Rewrites a Kubernetes structural schema (OpenAPI v3) into the JSON Schema the API server
/// effectively enforces: objects with `properties` reject other fields unless they preserve
/// unknown fields, `nullable` admits null, and `format: int32` bounds the integer.
fn strict(schema: &mut Value) {
    let Some(s) = schema.as_object_mut() else {
        return;
    };
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if s.contains_key("properties") && !s.contains_key("additionalProperties") && !preserve {
        s.insert("additionalProperties".into(), Value::Bool(false));
    }
    if s.get("nullable") == Some(&Value::Bool(true)) {
        if let Some(ty) = s.get("type").cloned() {
            s.insert("type".into(), json!([ty, "null"]));
        }
        if let Some(Value::Array(allowed)) = s.get_mut("enum") {
            allowed.push(Value::Null);
        }
    }
    if s.get("format").and_then(Value::as_str) == Some("int32") {
        s.entry("minimum").or_insert(json!(i32::MIN));
        s.entry("maximum").or_insert(json!(i32::MAX));
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = s.get_mut(key) {
            props.values_mut().for_each(strict);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = s.get_mut(key) {
            strict(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = s.get_mut(key) {
            branches.iter_mut().for_each(strict);
        }
    }
}

/// The schema of a whole manifest of one CRD version: the CRD's own schema (spec, status)
/// made strict, plus the envelope the API server adds: apiVersion, kind and metadata.
fn manifest_schema(api_version: &str, kind: &str, crd_schema: &Value) -> Value {
    let mut schema = crd_schema.clone();
    strict(&mut schema);
    schema["properties"]["apiVersion"] = json!({"enum": [api_version]});
    schema["properties"]["kind"] = json!({"enum": [kind]});
    schema["properties"]["metadata"] = object_meta_schema();
    let mut required: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    required.extend(["apiVersion", "kind", "metadata"].map(String::from));
    schema["required"] = json!(required);
    schema
}

fn compile(schema: &Value, what: &str) -> Validator {
    // OpenAPI v3.0 schemas are JSON Schema draft 4 plus extensions (`exclusiveMinimum` is
    // a boolean there). Formats are not asserted: `int32` is turned into bounds above.
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .build(schema)
        .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"))
}

/// Validators by (apiVersion, kind): one per version of every vendored CRD, and an
/// envelope-only one for [`NON_CRD_KINDS`].
type SchemaIndex = BTreeMap<(String, String), Validator>;

fn crd_schemas() -> &'static SchemaIndex {
    static SCHEMAS: OnceLock<SchemaIndex> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let text =
            std::fs::read_to_string(CRD_FILE).unwrap_or_else(|e| panic!("reading {CRD_FILE}: {e}"));
        let mut index = SchemaIndex::new();
        for crd in yaml_documents(&text, CRD_FILE) {
            assert_eq!(crd["kind"], "CustomResourceDefinition", "{CRD_FILE}");
            let group = crd["spec"]["group"].as_str().expect("CRD spec.group");
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .expect("CRD spec.names.kind");
            for version in crd["spec"]["versions"].as_array().expect("CRD versions") {
                let name = version["name"].as_str().expect("CRD version name");
                let api_version = format!("{group}/{name}");
                let crd_schema = &version["schema"]["openAPIV3Schema"];
                assert!(crd_schema.is_object(), "{kind} {name}: no openAPIV3Schema");
                let schema = manifest_schema(&api_version, kind, crd_schema);
                let validator = compile(&schema, &format!("{api_version} {kind}"));
                index.insert((api_version, kind.to_string()), validator);
            }
        }
        for (api_version, kind) in NON_CRD_KINDS {
            let schema = json!({
                "type": "object",
                "required": ["apiVersion", "kind", "metadata", "spec"],
                "additionalProperties": false,
                "properties": {
                    "apiVersion": {"enum": [api_version]},
                    "kind": {"enum": [kind]},
                    "metadata": object_meta_schema(),
                    "spec": {"type": "object"}
                }
            });
            let validator = compile(&schema, &format!("{api_version} {kind}"));
            index.insert((api_version.to_string(), kind.to_string()), validator);
        }
        index
    })
}

/// Every problem with one manifest, each as `<JSON pointer>: <message>`.
fn validate_manifest(doc: &Value) -> Vec<String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or("<no apiVersion>");
    let kind = doc["kind"].as_str().unwrap_or("<no kind>");
    let Some(validator) = crd_schemas().get(&(api_version.to_string(), kind.to_string())) else {
        return vec![format!(
            "apiVersion/kind: no schema for {api_version} {kind} in {CRD_FILE}"
        )];
    };
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers for the cross-checks
// ---------------------------------------------------------------------------------------------

/// The filter configurations in the manifests: each WasmPlugin's `pluginConfig` and the JSON
/// `configuration` of the body-routing EnvoyFilter, with where they come from.
fn filter_configs() -> Vec<(String, Config)> {
    let mut out = Vec::new();
    for m in of_kind("WasmPlugin") {
        let json = serde_json::to_string(&m.spec()["pluginConfig"]).unwrap();
        let config = Config::from_json(&json)
            .unwrap_or_else(|e| panic!("{}: spec.pluginConfig is rejected: {e}", m.label()));
        out.push((m.label(), config));
    }
    for (label, wasm) in envoyfilter_wasm_configs() {
        let json = wasm["configuration"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{label}: configuration.value must be a JSON string"));
        let config = Config::from_json(json)
            .unwrap_or_else(|e| panic!("{label}: configuration.value is rejected: {e}"));
        out.push((label, config));
    }
    assert!(!out.is_empty(), "no filter configuration in examples/istio");
    out
}

/// `typed_config.config` (an envoy.extensions.wasm.v3.PluginConfig) of every EXTENSION_CONFIG
/// patch that defines a Wasm HTTP filter.
fn envoyfilter_wasm_configs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for m in of_kind("EnvoyFilter") {
        for (i, patch) in m.spec()["configPatches"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let typed = &patch["patch"]["value"]["typed_config"];
            if patch["applyTo"] == "EXTENSION_CONFIG"
                && typed["@type"]
                    == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
            {
                out.push((
                    format!("{} configPatches[{i}]", m.label()),
                    typed["config"].clone(),
                ));
            }
        }
    }
    out
}

fn str_set<'a>(values: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    values
        .into_iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Every `spec.http[]` route of every VirtualService, with its JSON path.
fn virtualservice_routes() -> Vec<(String, &'static Manifest, &'static Value)> {
    let mut out = Vec::new();
    for m in of_kind("VirtualService") {
        for (i, route) in array(&m.spec()["http"]).iter().enumerate() {
            out.push((format!("{} spec.http[{i}]", m.label()), m, route));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The manifests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_istio_manifest_validates_against_its_crd_schema() {
    let files: BTreeSet<String> = example_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in EXPECTED_FILES {
        assert!(
            files.contains(*expected),
            "examples/istio/{expected} is missing"
        );
    }

    let mut problems = Vec::new();
    for m in manifests() {
        for e in validate_manifest(&m.doc) {
            problems.push(format!("{}: {e}", m.label()));
        }
    }
    assert!(
        problems.is_empty(),
        "invalid manifests:\n  {}",
        problems.join("\n  ")
    );

    let kinds: BTreeSet<&str> = manifests().iter().map(Manifest::kind).collect();
    for kind in [
        "DestinationRule",
        "EnvoyFilter",
        "Gateway",
        "ServiceEntry",
        "VirtualService",
        "WasmPlugin",
    ] {
        assert!(kinds.contains(kind), "no {kind} in examples/istio");
    }
}

#[test]
fn manifests_avoid_yaml_words_that_kubectl_reads_as_booleans() {
    // serde_yaml reads YAML 1.2, where `yes`/`no`/`on`/`off` are strings; kubectl's YAML 1.1
    // parser reads them as booleans. Such a value would mean something else in the cluster.
    let words = ["y", "n", "yes", "no", "on", "off"];
    let mut problems = Vec::new();
    for path in example_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or("").trim();
            if code.starts_with('#') {
                continue;
            }
            // The scalar after `key: ` or after a list dash.
            let value = match code.split_once(": ") {
                Some((_, v)) => v.trim(),
                None => code.strip_prefix("- ").unwrap_or("").trim(),
            };
            if words.iter().any(|w| value.eq_ignore_ascii_case(w)) {
                problems.push(format!(
                    "{}:{}: quote {value:?}",
                    path.file_name().unwrap().to_string_lossy(),
                    n + 1
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn wasmplugin_plugin_config_is_accepted_by_the_filter() {
    let plugins = of_kind("WasmPlugin");
    assert!(!plugins.is_empty(), "no WasmPlugin in examples/istio");
    for m in plugins {
        let spec = m.spec();
        let config = &spec["pluginConfig"];
        assert!(
            config.is_object(),
            "{}: spec.pluginConfig is missing",
            m.label()
        );
        let json = serde_json::to_string(config).unwrap();
        if let Err(e) = Config::from_json(&json) {
            panic!("{}: the filter rejects spec.pluginConfig: {e}", m.label());
        }

        let url = spec["url"].as_str().unwrap_or("");
        assert!(
            ["oci://", "file://", "http://", "https://"]
                .iter()
                .any(|scheme| url.starts_with(scheme)),
            "{}: spec.url {url:?} has no oci://, file:// or http(s):// scheme",
            m.label()
        );
        assert_eq!(
            spec["failStrategy"],
            "FAIL_OPEN",
            "{}: the example fails open (Istio's default is FAIL_CLOSE)",
            m.label()
        );
    }
}

#[test]
fn body_routing_envoyfilter_allows_stop_iteration_and_carries_a_model_routing_config() {
    let wasm_configs = envoyfilter_wasm_configs();
    assert_eq!(
        wasm_configs.len(),
        1,
        "expected one Wasm EXTENSION_CONFIG patch"
    );
    let (label, wasm) = &wasm_configs[0];
    assert_eq!(
        wasm["allow_on_headers_stop_iteration"], true,
        "{label}: body routing needs allow_on_headers_stop_iteration: true"
    );
    assert_eq!(wasm["failure_policy"], "FAIL_OPEN", "{label}");
    assert_eq!(
        wasm["configuration"]["@type"], "type.googleapis.com/google.protobuf.StringValue",
        "{label}: the filter reads its configuration as a string"
    );
    let json = wasm["configuration"]["value"].as_str().unwrap();
    let config = Config::from_json(json)
        .unwrap_or_else(|e| panic!("{label}: the filter rejects configuration.value: {e}"));
    assert!(
        config.routes_on_model(),
        "{label}: the body-routing example should route on `model`"
    );

    // The filter reference in the HTTP filter chain must name the extension defined above.
    let m = of_kind("EnvoyFilter")[0];
    let patches = array(&m.spec()["configPatches"]);
    let defined: BTreeSet<String> = patches
        .iter()
        .filter(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .filter_map(|p| p["patch"]["value"]["name"].as_str().map(str::to_string))
        .collect();
    let referenced: BTreeSet<String> = patches
        .iter()
        .filter(|p| p["applyTo"] == "HTTP_FILTER")
        .filter_map(|p| {
            let value = &p["patch"]["value"];
            assert!(
                array(&value["config_discovery"]["type_urls"])
                    .iter()
                    .any(|t| t == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"),
                "{}: the HTTP_FILTER patch must discover a Wasm filter",
                m.label()
            );
            value["name"].as_str().map(str::to_string)
        })
        .collect();
    assert!(
        !referenced.is_empty(),
        "{}: no HTTP_FILTER patch",
        m.label()
    );
    assert_eq!(
        defined,
        referenced,
        "{}: HTTP_FILTER names must match EXTENSION_CONFIG names",
        m.label()
    );
}

#[test]
fn virtualservice_header_routes_match_exactly_the_filter_cluster_values() {
    let configs = filter_configs();
    let route_header = configs[0].1.route_header.clone();
    for (label, config) in &configs {
        assert_eq!(
            config.route_header, route_header,
            "{label}: all examples must use the same route_header"
        );
    }

    let services = of_kind("VirtualService");
    assert!(!services.is_empty(), "no VirtualService in examples/istio");
    for vs in services {
        // cluster value -> destination hosts of the routes that match it.
        let mut routed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (i, route) in array(&vs.spec()["http"]).iter().enumerate() {
            let at = format!("{} spec.http[{i}]", vs.label());
            let hosts = str_set(
                array(&route["route"])
                    .iter()
                    .map(|r| &r["destination"]["host"]),
            );
            for (j, m) in array(&route["match"]).iter().enumerate() {
                let Some(headers) = m["headers"].as_object() else {
                    continue;
                };
                for (name, string_match) in headers {
                    if name.starts_with("x-ai-cb") {
                        assert_eq!(
                            *name, route_header,
                            "{at}.match[{j}].headers: matches {name}, but the filter sets {route_header}"
                        );
                    }
                    if *name != route_header {
                        continue;
                    }
                    let value = string_match["exact"].as_str().unwrap_or_else(|| {
                        panic!(
                            "{at}.match[{j}].headers.{name}: match the cluster value with `exact`, \
                             got {string_match}"
                        )
                    });
                    routed
                        .entry(value.to_string())
                        .or_default()
                        .extend(hosts.iter().cloned());
                }
            }
        }

        for (label, config) in &configs {
            let clusters: BTreeSet<String> = config
                .upstreams()
                .iter()
                .map(|u| u.cluster.clone())
                .collect();
            let matched: BTreeSet<String> = routed.keys().cloned().collect();
            assert_eq!(
                matched,
                clusters,
                "{}: the {route_header} values it routes differ from the `cluster` values of {label}",
                vs.label()
            );

            // A fallback's host rewrite and its route must agree on the provider.
            for upstream in config.upstreams() {
                let Some(host) = upstream.rewrite.as_ref().and_then(|r| r.host.clone()) else {
                    continue;
                };
                let hosts = &routed[&upstream.cluster];
                assert!(
                    hosts.len() == 1 && hosts.contains(&host),
                    "{}: {route_header}: {} is routed to {hosts:?}, but upstream {} of {label} \
                     rewrites the host to {host}",
                    vs.label(),
                    upstream.cluster,
                    upstream.name
                );
            }
        }

        // The last route is the default: no route-header condition.
        let http = array(&vs.spec()["http"]);
        let last = http.last().expect("http routes");
        assert!(
            array(&last["match"])
                .iter()
                .all(|m| m["headers"].get(&route_header).is_none()),
            "{}: the last http route should be a default route without a {route_header} match",
            vs.label()
        );
    }
}

#[test]
fn every_provider_route_has_a_service_entry_and_tls_origination() {
    let service_entries = of_kind("ServiceEntry");
    let destination_rules = of_kind("DestinationRule");
    let gateways = of_kind("Gateway");

    for (at, vs, route) in virtualservice_routes() {
        for (k, dest) in array(&route["route"]).iter().enumerate() {
            let host = dest["destination"]["host"].as_str().unwrap();
            let port = dest["destination"]["port"]["number"].as_u64();
            let at = format!("{at}.route[{k}].destination");
            if host == EGRESS_GATEWAY_HOST {
                let subset = dest["destination"]["subset"].as_str().unwrap_or("");
                assert!(
                    destination_rules.iter().any(|dr| dr.spec()["host"] == host
                        && array(&dr.spec()["subsets"])
                            .iter()
                            .any(|s| s["name"] == subset)),
                    "{at}: no DestinationRule defines subset {subset:?} of {host}"
                );
                continue;
            }
            let port = port.unwrap_or_else(|| panic!("{at}: set the port (443)"));
            assert!(
                service_entries.iter().any(|se| {
                    array(&se.spec()["hosts"]).iter().any(|h| h == host)
                        && array(&se.spec()["ports"])
                            .iter()
                            .any(|p| p["number"].as_u64() == Some(port))
                }),
                "{at}: no ServiceEntry declares {host} port {port}"
            );
            let tls = destination_rules
                .iter()
                .filter(|dr| dr.spec()["host"] == host)
                .flat_map(|dr| array(&dr.spec()["trafficPolicy"]["portLevelSettings"]))
                .find(|p| p["port"]["number"].as_u64() == Some(port))
                .map(|p| &p["tls"])
                .unwrap_or_else(|| {
                    panic!("{at}: no DestinationRule port setting for {host}:{port}")
                });
            assert_eq!(tls["mode"], "SIMPLE", "{at}: TLS origination to {host}");
            assert_eq!(tls["sni"], host, "{at}: SNI for {host}");
        }

        // Every gateway a route names exists and serves the VirtualService's hosts.
        for m in array(&route["match"]) {
            for gw in array(&m["gateways"]).iter().filter_map(Value::as_str) {
                if gw == "mesh" {
                    continue;
                }
                let (ns, name) = gw.split_once('/').unwrap_or((vs.namespace(), gw));
                let gateway = gateways
                    .iter()
                    .find(|g| g.name() == name && g.namespace() == ns)
                    .unwrap_or_else(|| panic!("{at}: no Gateway {ns}/{name}"));
                let served: BTreeSet<String> = array(&gateway.spec()["servers"])
                    .iter()
                    .flat_map(|s| str_set(array(&s["hosts"])))
                    .collect();
                for host in array(&vs.spec()["hosts"]).iter().filter_map(Value::as_str) {
                    assert!(
                        served.contains(host),
                        "{at}: Gateway {ns}/{name} does not serve {host}"
                    );
                }
                assert!(
                    array(&vs.spec()["gateways"]).iter().any(|g| g == gw),
                    "{at}: match names gateway {gw}, which spec.gateways does not list"
                );
            }
        }
    }
}

#[test]
fn mesh_config_turns_every_filter_metric_label_into_a_prometheus_label() {
    let operators = of_kind("IstioOperator");
    assert_eq!(operators.len(), 1, "expected one IstioOperator");
    let proxy = &operators[0].spec()["meshConfig"]["defaultConfig"];
    let tags = str_set(array(&proxy["extraStatTags"]));
    let labels: BTreeSet<String> = LABEL_NAMES.iter().map(|l| l.to_string()).collect();
    assert_eq!(
        tags, labels,
        "meshConfig.defaultConfig.extraStatTags must list exactly the filter's metric labels"
    );
    let regexes = str_set(array(&proxy["proxyStatsMatcher"]["inclusionRegexps"]));
    assert!(
        regexes.iter().any(|r| r.contains("circuit_breaker")),
        "proxyStatsMatcher.inclusionRegexps should keep the circuit_breaker_* stats"
    );
}

#[test]
fn readme_applies_every_manifest_it_ships() {
    let readme_path = Path::new(EXAMPLES_DIR).join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", readme_path.display()));
    for file in EXPECTED_FILES {
        assert!(
            readme.contains(&format!("examples/istio/{file}")),
            "examples/istio/README.md never mentions examples/istio/{file}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Broken manifests: the validation must reject what the API server rejects.
// ---------------------------------------------------------------------------------------------

/// The first shipped manifest of `kind`, as a starting point to break.
fn shipped(kind: &str) -> Value {
    of_kind(kind)
        .first()
        .unwrap_or_else(|| panic!("no {kind} in examples/istio"))
        .doc
        .clone()
}

/// The validation errors of `doc` after `edit`.
fn errors_after(doc: &Value, edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut doc = doc.clone();
    edit(&mut doc);
    validate_manifest(&doc)
}

/// Asserts an error at JSON pointer `path` whose message contains `needle`.
#[track_caller]
fn assert_rejected(errors: &[String], path: &str, needle: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
        "expected an error at {path:?} containing {needle:?}, got {errors:#?}"
    );
}

#[test]
fn shipped_manifests_still_validate_before_they_are_broken() {
    // The tests below break these documents one field at a time; each must start valid.
    for kind in [
        "VirtualService",
        "WasmPlugin",
        "EnvoyFilter",
        "DestinationRule",
        "ServiceEntry",
        "Gateway",
        "IstioOperator",
    ] {
        assert_eq!(
            validate_manifest(&shipped(kind)),
            Vec::<String>::new(),
            "{kind}"
        );
    }
}

#[test]
fn a_misspelt_field_anywhere_in_a_manifest_is_rejected() {
    let vs = shipped("VirtualService");
    let e = errors_after(&vs, |d| d["spec"]["http"][1]["mach"] = json!([]));
    assert_rejected(&e, "/spec/http/1", "'mach' was unexpected");
    // Inside a map's value schema (StringMatch has exact/prefix/regex).
    let e = errors_after(&vs, |d| {
        d["spec"]["http"][1]["match"][0]["headers"]["x-ai-cb-upstream"] =
            json!({"exakt": "openai"});
    });
    assert_rejected(
        &e,
        "/spec/http/1/match/0/headers/x-ai-cb-upstream",
        "'exakt' was unexpected",
    );
    let e = errors_after(&vs, |d| d["metadata"]["lables"] = json!({}));
    assert_rejected(&e, "/metadata", "'lables' was unexpected");
    let e = errors_after(&vs, |d| d["spex"] = json!({}));
    assert_rejected(&e, "", "'spex' was unexpected");

    let wp = shipped("WasmPlugin");
    let e = errors_after(&wp, |d| d["spec"]["vmConfig"] = json!({"envs": []}));
    assert_rejected(&e, "/spec/vmConfig", "'envs' was unexpected");
    // pluginConfig preserves unknown fields: the filter's own validation judges it.
    assert_eq!(
        errors_after(&wp, |d| d["spec"]["pluginConfig"]["anything"] = json!(1)),
        Vec::<String>::new()
    );

    let ef = shipped("EnvoyFilter");
    let e = errors_after(&ef, |d| {
        d["spec"]["configPatches"][0]["aplyTo"] = json!("x")
    });
    assert_rejected(&e, "/spec/configPatches/0", "'aplyTo' was unexpected");
    let dr = shipped("DestinationRule");
    let e = errors_after(&dr, |d| {
        d["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["snii"] = json!("x");
    });
    assert_rejected(
        &e,
        "/spec/trafficPolicy/portLevelSettings/0/tls",
        "'snii' was unexpected",
    );
    let se = shipped("ServiceEntry");
    let e = errors_after(&se, |d| d["spec"]["resolutions"] = json!("DNS"));
    assert_rejected(&e, "/spec", "'resolutions' was unexpected");
    let gw = shipped("Gateway");
    let e = errors_after(&gw, |d| d["spec"]["servers"][0]["hostz"] = json!([]));
    assert_rejected(&e, "/spec/servers/0", "'hostz' was unexpected");
}

#[test]
fn wrong_types_missing_fields_and_bad_values_are_rejected() {
    let vs = shipped("VirtualService");
    let e = errors_after(&vs, |d| d["spec"]["hosts"] = json!("api.openai.com"));
    assert_rejected(&e, "/spec/hosts", "is not of type \"array\"");
    let e = errors_after(&vs, |d| {
        d["spec"]["http"][1]["route"][0]["destination"]["port"]["number"] = json!("443");
    });
    assert_rejected(
        &e,
        "/spec/http/1/route/0/destination/port/number",
        "is not of type \"integer\"",
    );
    let e = errors_after(&vs, |d| {
        d["spec"]["http"][1]["route"][0]["destination"]
            .as_object_mut()
            .unwrap()
            .remove("host");
    });
    assert_rejected(
        &e,
        "/spec/http/1/route/0/destination",
        "\"host\" is a required property",
    );
    // StringMatch is a oneOf: exactly one of exact, prefix, regex.
    let e = errors_after(&vs, |d| {
        d["spec"]["http"][1]["match"][0]["headers"]["x-ai-cb-upstream"] =
            json!({"exact": "openai", "prefix": "open"});
    });
    assert_rejected(&e, "/spec/http/1/match/0/headers/x-ai-cb-upstream", "oneOf");
    let e = errors_after(&vs, |d| d["metadata"]["name"] = json!("AI_Providers"));
    assert_rejected(&e, "/metadata/name", "does not match");
    let e = errors_after(&vs, |d| d["apiVersion"] = json!("networking.istio.io/v2"));
    assert_rejected(
        &e,
        "apiVersion/kind",
        "no schema for networking.istio.io/v2",
    );

    let wp = shipped("WasmPlugin");
    // Envoy spells it FAIL_CLOSED, Istio FAIL_CLOSE: an easy mistake.
    let e = errors_after(&wp, |d| d["spec"]["failStrategy"] = json!("FAIL_CLOSED"));
    assert_rejected(&e, "/spec/failStrategy", "is not one of");
    let e = errors_after(&wp, |d| d["spec"]["sha256"] = json!("sha256:0000"));
    assert_rejected(&e, "/spec/sha256", "does not match");
    let e = errors_after(&wp, |d| d["spec"]["priority"] = json!(1_u64 << 31));
    assert_rejected(&e, "/spec/priority", "is greater than the maximum");
    // priority is nullable; url is not.
    assert_eq!(
        errors_after(&wp, |d| d["spec"]["priority"] = Value::Null),
        Vec::<String>::new()
    );
    let e = errors_after(&wp, |d| d["spec"]["url"] = Value::Null);
    assert_rejected(&e, "/spec/url", "is not of type \"string\"");
    let e = errors_after(&wp, |d| d["spec"]["pluginConfig"] = json!("{\"a\": 1}"));
    assert_rejected(&e, "/spec/pluginConfig", "is not of type \"object\"");
    let e = errors_after(&wp, |d| {
        d.as_object_mut().unwrap().remove("spec");
    });
    assert_rejected(&e, "", "\"spec\" is a required property");

    let se = shipped("ServiceEntry");
    let e = errors_after(&se, |d| d["spec"]["resolution"] = json!("DNSS"));
    assert_rejected(&e, "/spec/resolution", "is not one of");
    // (The 1..=65535 port range is a CEL rule, which is not evaluated here.)
    let e = errors_after(&se, |d| d["spec"]["ports"][0]["number"] = json!(-1));
    assert_rejected(&e, "/spec/ports/0/number", "is less than the minimum");

    let op = shipped("IstioOperator");
    let e = errors_after(&op, |d| d["spec"] = json!("profile: default"));
    assert_rejected(&e, "/spec", "is not of type \"object\"");
}
