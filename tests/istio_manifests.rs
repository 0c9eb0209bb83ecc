#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Checks the Istio example in `examples/istio/` without a cluster:
//!
//! - every YAML document in `examples/istio/*.yaml` parses, and its `spec` validates against the
//!   OpenAPI v3 schema of its kind in Istio's `crd-all.gen.yaml` (in `../shared/istio/`, next to
//!   this repository). Unknown fields are errors, as with `kubectl apply --validate=strict`;
//! - the filter accepts the configuration in the WasmPlugin (`pluginConfig`) and in the
//!   body-routing EnvoyFilter;
//! - the VirtualServices route exactly the `cluster` values the filter writes into its route
//!   header, and each provider has a ServiceEntry and TLS origination;
//! - the mesh config turns every label of the filter's metrics into a Prometheus label.
//!
//! The schema validator below covers the OpenAPI v3 subset that Kubernetes structural schemas
//! use: `type`, `properties`, `required`, `additionalProperties` (bool or schema), `items`,
//! `enum`, `minimum`/`maximum`, `minItems`/`maxItems`, `minLength`/`maxLength`,
//! `minProperties`/`maxProperties`, `oneOf`/`anyOf`/`allOf`/`not`,
//! `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`, `nullable`,
//! `x-kubernetes-list-type` (set/map uniqueness) and the int32/uint32 `format`s.
//! It does NOT check `pattern` (regular expressions) or `x-kubernetes-validations` (CEL rules,
//! such as "only one of selector or targetRefs" or duration syntax). The API server checks
//! those when the manifests are applied. The WasmPlugin `sha256` pattern is checked by hand
//! below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ai_circuit_breaker::config::Config;
use ai_circuit_breaker::metrics::LABEL_NAMES;
use serde::Deserialize;
use serde_json::{json, Value};

/// Istio's CRDs with their OpenAPI v3 schemas (istio/istio manifests/charts/base/files/).
const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/istio/crd-all.gen.yaml"
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

/// Kinds that are not API server resources described by `crd-all.gen.yaml`. They are checked for
/// shape (apiVersion, kind, metadata, spec) only.
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

/// OpenAPI v3 schemas by (group, version, kind).
type SchemaIndex = BTreeMap<(String, String, String), Value>;

fn crd_schemas() -> &'static SchemaIndex {
    static SCHEMAS: OnceLock<SchemaIndex> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let text = std::fs::read_to_string(CRD_FILE).unwrap_or_else(|e| {
            panic!(
                "cannot read Istio's CRD schemas at {CRD_FILE}: {e}\n\
                 The manifest checks validate examples/istio/*.yaml against this file \
                 (istio/istio manifests/charts/base/files/crd-all.gen.yaml). Put it there."
            )
        });
        let mut index = SchemaIndex::new();
        for crd in yaml_documents(&text, CRD_FILE) {
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let group = crd["spec"]["group"].as_str().expect("CRD spec.group");
            let kind = crd["spec"]["names"]["kind"]
                .as_str()
                .expect("CRD spec.names.kind");
            for version in crd["spec"]["versions"].as_array().expect("CRD versions") {
                let name = version["name"].as_str().expect("CRD version name");
                let schema = version["schema"]["openAPIV3Schema"].clone();
                assert!(schema.is_object(), "{kind} {name}: no openAPIV3Schema");
                index.insert((group.into(), name.into(), kind.into()), schema);
            }
        }
        assert!(!index.is_empty(), "{CRD_FILE} holds no CRDs");
        index
    })
}

// ---------------------------------------------------------------------------------------------
// OpenAPI v3 (Kubernetes structural schema) validation
// ---------------------------------------------------------------------------------------------

/// Structural: the schema says which fields exist, so any other field is an error.
/// ValueOnly: inside `allOf`/`anyOf`/`oneOf`/`not`, which Kubernetes uses only to constrain
/// values (their branches list `required` keys and never declare all fields).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Structural,
    ValueOnly,
}

fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '@');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64()
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        other => panic!("schema uses an unsupported type {other:?}"),
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn flag(schema: &serde_json::Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

fn num(schema: &serde_json::Map<String, Value>, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn count(schema: &serde_json::Map<String, Value>, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .map(|n| usize::try_from(n).unwrap())
}

/// Validates `value` at `path` against `schema`, appending one message per problem.
fn validate(schema: &Value, value: &Value, path: &str, mode: Mode, errors: &mut Vec<String>) {
    let s = schema
        .as_object()
        .unwrap_or_else(|| panic!("{path}: schema is not an object: {schema}"));

    if value.is_null() {
        if flag(s, "nullable") {
            return;
        }
        if mode == Mode::Structural {
            errors.push(format!("{path}: null is not allowed here"));
            return;
        }
    }

    if flag(s, "x-kubernetes-int-or-string") {
        if !(is_integer(value) || value.is_string()) {
            errors.push(format!(
                "{path}: expected an integer or a string, got {}",
                describe(value)
            ));
            return;
        }
    } else if let Some(ty) = s.get("type").and_then(Value::as_str) {
        if !type_matches(ty, value) {
            errors.push(format!("{path}: expected {ty}, got {}", describe(value)));
            return;
        }
    }

    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.iter().any(|a| json_eq(a, value)) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            errors.push(format!(
                "{path}: {value} is not one of [{}]",
                list.join(", ")
            ));
        }
    }

    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            if let Some(min) = num(s, "minimum") {
                let exclusive = flag(s, "exclusiveMinimum");
                if x < min || (exclusive && x == min) {
                    errors.push(format!("{path}: {n} is below the minimum {min}"));
                }
            }
            if let Some(max) = num(s, "maximum") {
                let exclusive = flag(s, "exclusiveMaximum");
                if x > max || (exclusive && x == max) {
                    errors.push(format!("{path}: {n} is above the maximum {max}"));
                }
            }
            let range = match s.get("format").and_then(Value::as_str) {
                Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
                Some("uint32") => Some((0.0, f64::from(u32::MAX))),
                _ => None,
            };
            if let Some((lo, hi)) = range {
                if x < lo || x > hi {
                    errors.push(format!(
                        "{path}: {n} does not fit format {}",
                        s["format"].as_str().unwrap()
                    ));
                }
            }
        }
        Value::String(text) => {
            // `pattern` is not checked (see the module comment).
            let len = text.chars().count();
            if let Some(min) = count(s, "minLength") {
                if len < min {
                    errors.push(format!("{path}: shorter than {min} characters"));
                }
            }
            if let Some(max) = count(s, "maxLength") {
                if len > max {
                    errors.push(format!("{path}: longer than {max} characters"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = count(s, "minItems") {
                if items.len() < min {
                    errors.push(format!("{path}: fewer than {min} items"));
                }
            }
            if let Some(max) = count(s, "maxItems") {
                if items.len() > max {
                    errors.push(format!("{path}: more than {max} items"));
                }
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), mode, errors);
                }
            }
            check_list_type(s, items, path, errors);
        }
        Value::Object(obj) => {
            if let Some(min) = count(s, "minProperties") {
                if obj.len() < min {
                    errors.push(format!("{path}: fewer than {min} properties"));
                }
            }
            if let Some(max) = count(s, "maxProperties") {
                if obj.len() > max {
                    errors.push(format!("{path}: more than {max} properties"));
                }
            }
            if let Some(required) = s.get("required").and_then(Value::as_array) {
                for key in required.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(key) {
                        errors.push(format!("{}: missing required field", child_path(path, key)));
                    }
                }
            }
            let properties = s.get("properties").and_then(Value::as_object);
            let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
            for (key, v) in obj {
                let at = child_path(path, key);
                if let Some(prop) = properties.and_then(|p| p.get(key)) {
                    validate(prop, v, &at, mode, errors);
                    continue;
                }
                match s.get("additionalProperties") {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: unknown field (additionalProperties: false)"));
                    }
                    Some(extra) => validate(extra, v, &at, mode, errors),
                    None if mode == Mode::Structural && !preserve => {
                        errors.push(format!("{at}: unknown field"));
                    }
                    None => {}
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }

    // Value validation: the branches never add fields, so they are checked in ValueOnly mode.
    let passes = |branch: &Value| {
        let mut e = Vec::new();
        validate(branch, value, path, Mode::ValueOnly, &mut e);
        e
    };
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for branch in all {
            errors.extend(passes(branch));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let results: Vec<Vec<String>> = any.iter().map(passes).collect();
        if results.iter().all(|e| !e.is_empty()) {
            errors.push(format!(
                "{path}: matches none of the anyOf schemas ({})",
                results.concat().join("; ")
            ));
        }
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let matched = one.iter().filter(|b| passes(b).is_empty()).count();
        if matched != 1 {
            errors.push(format!(
                "{path}: must match exactly one of the oneOf schemas, matches {matched} \
                 (typically: set exactly one of the alternative fields)"
            ));
        }
    }
    if let Some(not) = s.get("not") {
        if passes(not).is_empty() {
            errors.push(format!(
                "{path}: matches a schema it must not match ({not})"
            ));
        }
    }
}

/// `x-kubernetes-list-type: set` items are unique; `map` items are unique by their
/// `x-kubernetes-list-map-keys`.
fn check_list_type(
    s: &serde_json::Map<String, Value>,
    items: &[Value],
    path: &str,
    errors: &mut Vec<String>,
) {
    let key_of = |item: &Value| -> Value {
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                let keys = s
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                Value::Array(
                    keys.iter()
                        .map(|k| item[k.as_str().unwrap()].clone())
                        .collect(),
                )
            }
            _ => item.clone(),
        }
    };
    if !matches!(
        s.get("x-kubernetes-list-type").and_then(Value::as_str),
        Some("map" | "set")
    ) {
        return;
    }
    for (i, a) in items.iter().enumerate() {
        for (j, b) in items.iter().enumerate().skip(i + 1) {
            if json_eq(&key_of(a), &key_of(b)) {
                errors.push(format!(
                    "{path}[{j}]: duplicate of {path}[{i}] (list key {})",
                    key_of(a)
                ));
            }
        }
    }
}

/// A DNS-1123 subdomain (`metadata.name`) or, with `max == 63` and no dots, a label.
fn is_dns1123(name: &str, max: usize, dots: bool) -> bool {
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    !name.is_empty()
        && name.len() <= max
        && name.chars().all(ok_char)
        && name
            .split('.')
            .all(|part| !part.is_empty() && !part.starts_with('-') && !part.ends_with('-'))
}

/// Validates a whole manifest: its envelope and metadata, then `spec` against the schema of
/// its kind. Returns every problem found, each naming its JSON path.
fn validate_manifest(doc: &Value, schemas: &SchemaIndex) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(obj) = doc.as_object() else {
        return vec![format!(
            "document: expected an object, got {}",
            describe(doc)
        )];
    };
    for key in obj.keys() {
        if !["apiVersion", "kind", "metadata", "spec"].contains(&key.as_str()) {
            errors.push(format!("{key}: unknown top-level field"));
        }
    }
    let (Some(api_version), Some(kind)) = (doc["apiVersion"].as_str(), doc["kind"].as_str()) else {
        errors.push("apiVersion, kind: both are required strings".to_string());
        return errors;
    };

    match doc.get("metadata").and_then(Value::as_object) {
        None => errors.push("metadata: required object is missing".to_string()),
        Some(meta) => {
            for (key, v) in meta {
                match key.as_str() {
                    "name" => {
                        if !v.as_str().is_some_and(|n| is_dns1123(n, 253, true)) {
                            errors.push(format!("metadata.name: {v} is not a DNS-1123 name"));
                        }
                    }
                    "namespace" => {
                        if !v.as_str().is_some_and(|n| is_dns1123(n, 63, false)) {
                            errors.push(format!("metadata.namespace: {v} is not a DNS-1123 label"));
                        }
                    }
                    "labels" | "annotations" => {
                        let all_strings = v
                            .as_object()
                            .is_some_and(|m| m.values().all(Value::is_string));
                        if !all_strings {
                            errors.push(format!("metadata.{key}: must map strings to strings"));
                        }
                    }
                    other => errors.push(format!("metadata.{other}: unknown field")),
                }
            }
            if !meta.contains_key("name") {
                errors.push("metadata.name: missing required field".to_string());
            }
        }
    }

    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let Some(schema) = schemas.get(&(group.to_string(), version.to_string(), kind.to_string()))
    else {
        if NON_CRD_KINDS.contains(&(api_version, kind)) {
            if !doc["spec"].is_object() {
                errors.push("spec: expected an object".to_string());
            }
        } else {
            errors.push(format!(
                "apiVersion/kind: no CRD for {api_version} {kind} in {CRD_FILE}"
            ));
        }
        return errors;
    };
    if let Some(required) = schema["required"].as_array() {
        for key in required.iter().filter_map(Value::as_str) {
            if doc.get(key).is_none() {
                errors.push(format!("{key}: missing required field"));
            }
        }
    }
    if let Some(spec) = doc.get("spec") {
        validate(
            &schema["properties"]["spec"],
            spec,
            "spec",
            Mode::Structural,
            &mut errors,
        );
    }
    errors
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

    let schemas = crd_schemas();
    let mut problems = Vec::new();
    for m in manifests() {
        for e in validate_manifest(&m.doc, schemas) {
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

        // The CRD's `pattern` for sha256, which the schema validator does not check.
        let sha = spec["sha256"].as_str().unwrap_or("");
        assert!(
            sha.is_empty()
                || (sha.len() == 64
                    && sha
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))),
            "{}: spec.sha256 must be empty or 64 lower-case hex digits, got {sha:?}",
            m.label()
        );
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
// The validator itself: it must reject what the API server rejects.
// ---------------------------------------------------------------------------------------------

fn valid_virtualservice() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "ai-providers", "namespace": "istio-system"},
        "spec": {
            "hosts": ["api.openai.com"],
            "gateways": ["ai-egressgateway"],
            "http": [{
                "match": [{"headers": {"x-ai-cb-upstream": {"exact": "openai"}}}],
                "route": [{"destination": {"host": "api.openai.com", "port": {"number": 443}}}],
                "timeout": "300s",
                "retries": {"attempts": 0}
            }]
        }
    })
}

fn valid_wasmplugin() -> Value {
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "ai-circuit-breaker", "namespace": "istio-system"},
        "spec": {
            "selector": {"matchLabels": {"istio": "egressgateway"}},
            "url": "oci://ghcr.io/example/ai-circuit-breaker:0.1.0",
            "phase": "AUTHN",
            "priority": 1000,
            "failStrategy": "FAIL_OPEN",
            "pluginConfig": {"anything": {"goes": ["here"]}}
        }
    })
}

/// Applies `edit` to a copy of `doc` and returns the validation errors.
fn errors_after(doc: &Value, edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut doc = doc.clone();
    edit(&mut doc);
    validate_manifest(&doc, crd_schemas())
}

#[track_caller]
fn assert_rejected(errors: &[String], path: &str, reason: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("{path}:")) && e.contains(reason)),
        "expected an error at {path} containing {reason:?}, got {errors:#?}"
    );
}

#[test]
fn validator_accepts_the_reference_documents() {
    assert_eq!(
        validate_manifest(&valid_virtualservice(), crd_schemas()),
        Vec::<String>::new()
    );
    assert_eq!(
        validate_manifest(&valid_wasmplugin(), crd_schemas()),
        Vec::<String>::new()
    );
}

#[test]
fn validator_rejects_unknown_fields_like_kubectl_validate_strict() {
    let vs = valid_virtualservice();
    let e = errors_after(&vs, |d| d["spec"]["http"][0]["mach"] = json!([]));
    assert_rejected(&e, "spec.http[0].mach", "unknown field");

    // A typo inside a map's value schema (StringMatch has exact/prefix/regex).
    let e = errors_after(&vs, |d| {
        d["spec"]["http"][0]["match"][0]["headers"]["x-ai-cb-upstream"] =
            json!({"exakt": "openai"});
    });
    assert_rejected(
        &e,
        "spec.http[0].match[0].headers.x-ai-cb-upstream.exakt",
        "unknown field",
    );

    let e = errors_after(&vs, |d| d["metadata"]["lables"] = json!({}));
    assert_rejected(&e, "metadata.lables", "unknown field");

    let e = errors_after(&vs, |d| d["status"] = json!({}));
    assert_rejected(&e, "status", "unknown top-level field");

    // pluginConfig preserves unknown fields, but its siblings do not.
    let wp = valid_wasmplugin();
    let e = errors_after(&wp, |d| d["spec"]["vmConfig"]["envs"] = json!([]));
    assert_rejected(&e, "spec.vmConfig.envs", "unknown field");
}

#[test]
fn validator_rejects_wrong_types_and_missing_required_fields() {
    let vs = valid_virtualservice();
    let e = errors_after(&vs, |d| d["spec"]["hosts"] = json!("api.openai.com"));
    assert_rejected(&e, "spec.hosts", "expected array, got string");

    let e = errors_after(&vs, |d| {
        d["spec"]["http"][0]["route"][0]["destination"]["port"]["number"] = json!("443");
    });
    assert_rejected(
        &e,
        "spec.http[0].route[0].destination.port.number",
        "expected integer, got string",
    );

    let e = errors_after(&vs, |d| {
        d["spec"]["http"][0]["route"][0]["destination"]
            .as_object_mut()
            .unwrap()
            .remove("host");
    });
    assert_rejected(
        &e,
        "spec.http[0].route[0].destination.host",
        "missing required field",
    );

    let wp = valid_wasmplugin();
    let e = errors_after(&wp, |d| {
        d["spec"].as_object_mut().unwrap().remove("url");
    });
    assert_rejected(&e, "spec.url", "missing required field");

    let e = errors_after(&wp, |d| d["spec"]["url"] = Value::Null);
    assert_rejected(&e, "spec.url", "null is not allowed");

    let e = errors_after(&wp, |d| d["spec"]["pluginConfig"] = json!("{\"a\": 1}"));
    assert_rejected(&e, "spec.pluginConfig", "expected object, got string");

    let e = errors_after(&wp, |d| {
        d.as_object_mut().unwrap().remove("spec");
    });
    assert_rejected(&e, "spec", "missing required field");

    let e = errors_after(&wp, |d| d["kind"] = json!("WasmPlugins"));
    assert_rejected(&e, "apiVersion/kind", "no CRD for");
}

#[test]
fn validator_enforces_enums_ranges_lengths_and_one_of() {
    let wp = valid_wasmplugin();
    // Envoy spells it FAIL_CLOSED, Istio FAIL_CLOSE: an easy mistake.
    let e = errors_after(&wp, |d| d["spec"]["failStrategy"] = json!("FAIL_CLOSED"));
    assert_rejected(&e, "spec.failStrategy", "is not one of");

    let e = errors_after(&wp, |d| d["spec"]["priority"] = json!(1_u64 << 31));
    assert_rejected(&e, "spec.priority", "does not fit format int32");

    let e = errors_after(&wp, |d| d["spec"]["imagePullSecret"] = json!(""));
    assert_rejected(&e, "spec.imagePullSecret", "shorter than 1 characters");

    let e = errors_after(&wp, |d| {
        d["spec"]["match"] = json!([{"ports": [{"number": 0}]}]);
    });
    assert_rejected(&e, "spec.match[0].ports[0].number", "below the minimum 1");

    let e = errors_after(&wp, |d| {
        d["spec"]["match"] = json!([{"ports": [{"number": 80}, {"number": 80}]}]);
    });
    assert_rejected(&e, "spec.match[0].ports[1]", "duplicate of");

    let e = errors_after(&wp, |d| {
        d["spec"]["targetRefs"] = json!((0..17)
            .map(|i| json!({"kind": "Gateway", "name": format!("g{i}")}))
            .collect::<Vec<_>>());
    });
    assert_rejected(&e, "spec.targetRefs", "more than 16 items");

    let vs = valid_virtualservice();
    let e = errors_after(&vs, |d| {
        d["spec"]["http"][0]["match"][0]["headers"]["x-ai-cb-upstream"] =
            json!({"exact": "openai", "prefix": "open"});
    });
    assert_rejected(
        &e,
        "spec.http[0].match[0].headers.x-ai-cb-upstream",
        "exactly one of the oneOf",
    );
}

#[test]
fn validator_handles_nullable_int_or_string_and_combinators() {
    // WasmPlugin.priority is `nullable: true`.
    let wp = valid_wasmplugin();
    assert_eq!(
        errors_after(&wp, |d| d["spec"]["priority"] = Value::Null),
        Vec::<String>::new()
    );

    let int_or_string = json!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    });
    for ok in [json!(8080), json!("http")] {
        let mut e = Vec::new();
        validate(&int_or_string, &ok, "port", Mode::Structural, &mut e);
        assert!(e.is_empty(), "{ok}: {e:?}");
    }
    let mut e = Vec::new();
    validate(
        &int_or_string,
        &json!(1.5),
        "port",
        Mode::Structural,
        &mut e,
    );
    assert_rejected(&e, "port", "expected an integer or a string");

    let schema = json!({
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "allOf": [{"required": ["a"]}],
        "not": {"required": ["b"]}
    });
    let mut e = Vec::new();
    validate(&schema, &json!({"a": "x"}), "obj", Mode::Structural, &mut e);
    assert!(e.is_empty(), "{e:?}");
    let mut e = Vec::new();
    validate(&schema, &json!({"b": "x"}), "obj", Mode::Structural, &mut e);
    assert_rejected(&e, "obj.a", "missing required field");
    assert_rejected(&e, "obj", "must not match");
}
