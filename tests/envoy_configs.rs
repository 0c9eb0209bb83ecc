#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Keeps the shipped Envoy configurations (`envoy/*.yaml`) in step with the filter:
//!
//! * the filter JSON inside each one is accepted by `Config::from_json`, every cluster it
//!   names exists in the bootstrap, the route reads the filter's route header, every metric
//!   label has its `stats_tags` entry, and body routing/rewriting has
//!   `allow_on_headers_stop_iteration`;
//! * Envoy itself accepts each file (`envoy --mode validate`, which also loads the wasm
//!   module and runs the filter's configure step);
//! * the demo config works end to end against mock providers (failover, model rewrite,
//!   alert webhook, health endpoint), and the providers config injects each provider's key
//!   (and only that one) on routed traffic and on the filter's callouts alike.
//!
//! The end-to-end tests run the file itself, changed only where a test must: ports 0 instead
//! of fixed ones, mock endpoints instead of DNS + TLS, key files in a temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ai_circuit_breaker::config::Config;
use ai_circuit_breaker::metrics::{stats_tag_regex, LABEL_NAMES};
use common::*;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const CONFIGS: &[&str] = &["envoy.yaml", "envoy-providers.yaml"];
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const SECRETS_DIR: &str = "/etc/envoy/secrets";
/// The dummy key files written for the providers config, as (file stem, secret value).
const DUMMY_KEYS: &[(&str, &str)] = &[
    ("openai-key", "Bearer sk-test-openai"),
    ("anthropic-key", "sk-ant-test"),
    ("azure-openai-key", "azure-test-key"),
];

fn envoy_file(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "envoy", name].iter().collect()
}

fn read(name: &str) -> String {
    let path = envoy_file(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn parse(name: &str, text: &str) -> Yaml {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("envoy/{name}: bad YAML: {e}"))
}

/// Every mapping in the tree, depth first.
fn mappings<'a>(v: &'a Yaml, out: &mut Vec<&'a serde_yaml::Mapping>) {
    match v {
        Yaml::Mapping(m) => {
            out.push(m);
            for (_, child) in m {
                mappings(child, out);
            }
        }
        Yaml::Sequence(s) => s.iter().for_each(|c| mappings(c, out)),
        Yaml::Tagged(t) => mappings(&t.value, out),
        _ => {}
    }
}

fn typed<'a>(doc: &'a Yaml, type_url: &str) -> Vec<&'a serde_yaml::Mapping> {
    let mut all = Vec::new();
    mappings(doc, &mut all);
    all.into_iter()
        .filter(|m| m.get("@type").and_then(Yaml::as_str) == Some(type_url))
        .collect()
}

/// The wasm plugin's `config` block (exactly one per file).
fn wasm_plugin(name: &str, doc: &Yaml) -> Yaml {
    let wasm = typed(doc, WASM_TYPE);
    assert_eq!(wasm.len(), 1, "envoy/{name}: expected one wasm filter");
    wasm[0].get("config").cloned().expect("wasm filter config")
}

/// The filter's JSON configuration (the plugin's StringValue).
fn filter_json(name: &str, doc: &Yaml) -> String {
    let plugin = wasm_plugin(name, doc);
    let conf = &plugin["configuration"];
    assert_eq!(conf["@type"].as_str(), Some(STRING_VALUE), "envoy/{name}");
    conf["value"]
        .as_str()
        .unwrap_or_else(|| panic!("envoy/{name}: configuration.value is not a string"))
        .to_string()
}

fn bootstrap_clusters(doc: &Yaml) -> Vec<String> {
    doc["static_resources"]["clusters"]
        .as_sequence()
        .expect("static_resources.clusters")
        .iter()
        .map(|c| c["name"].as_str().expect("cluster name").to_string())
        .collect()
}

fn cluster_headers(doc: &Yaml) -> Vec<String> {
    let mut all = Vec::new();
    mappings(doc, &mut all);
    all.into_iter()
        .filter_map(|m| m.get("cluster_header").and_then(Yaml::as_str))
        .map(str::to_string)
        .collect()
}

#[test]
fn shipped_configs_match_the_filter() {
    for name in CONFIGS {
        let doc = parse(name, &read(name));
        let json = filter_json(name, &doc);
        let config = Config::from_json(&json)
            .unwrap_or_else(|e| panic!("envoy/{name}: filter configuration rejected: {e}"));

        let clusters = bootstrap_clusters(&doc);
        for u in config.upstreams() {
            assert!(
                clusters.contains(&u.cluster),
                "envoy/{name}: upstream {} uses cluster {} that the bootstrap lacks ({clusters:?})",
                u.name,
                u.cluster
            );
        }
        if let Some(a) = &config.alerting {
            assert!(
                clusters.contains(&a.cluster),
                "envoy/{name}: alerting cluster {} missing from the bootstrap",
                a.cluster
            );
        }

        let headers = cluster_headers(&doc);
        assert!(
            !headers.is_empty(),
            "envoy/{name}: no route uses cluster_header"
        );
        for h in &headers {
            assert_eq!(
                h, &config.route_header,
                "envoy/{name}: route reads another header"
            );
        }

        let tags: Vec<(String, String)> = doc["stats_config"]["stats_tags"]
            .as_sequence()
            .unwrap_or_else(|| panic!("envoy/{name}: no stats_config.stats_tags"))
            .iter()
            .map(|t| {
                (
                    t["tag_name"].as_str().unwrap_or("").to_string(),
                    t["regex"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for label in LABEL_NAMES {
            let want = stats_tag_regex(label);
            assert!(
                tags.iter().any(|(n, r)| n == label && *r == want),
                "envoy/{name}: stats_tags lacks {label} with regex {want}"
            );
        }

        let plugin = wasm_plugin(name, &doc);
        assert_eq!(
            plugin["vm_config"]["runtime"].as_str(),
            Some("envoy.wasm.runtime.v8")
        );
        let policy = plugin["failure_policy"].as_str();
        assert!(
            matches!(policy, Some("FAIL_OPEN" | "FAIL_CLOSED" | "FAIL_RELOAD")),
            "envoy/{name}: failure_policy must be explicit, got {policy:?}"
        );
        if config.routes_on_model() || config.rewrites_body() {
            assert_eq!(
                plugin["allow_on_headers_stop_iteration"].as_bool(),
                Some(true),
                "envoy/{name}: body routing/rewriting needs allow_on_headers_stop_iteration"
            );
        }
        let wasm = plugin["vm_config"]["code"]["local"]["filename"].as_str();
        assert_eq!(
            wasm,
            Some("target/wasm32-wasip1/release/ai_circuit_breaker.wasm"),
            "envoy/{name}: wasm path relative to the repository root"
        );
    }
}

#[test]
fn demo_config_uses_the_documented_ports() {
    let doc = parse("envoy.yaml", &read("envoy.yaml"));
    let port = |v: &Yaml| v["address"]["socket_address"]["port_value"].as_u64();
    assert_eq!(port(&doc["admin"]), Some(9901));
    assert_eq!(port(&doc["static_resources"]["listeners"][0]), Some(10000));
    let ports: Vec<(String, u64)> = doc["static_resources"]["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| {
            let sa = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"];
            assert_eq!(sa["address"].as_str(), Some("127.0.0.1"));
            (
                c["name"].as_str().unwrap().to_string(),
                sa["port_value"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("openai", 18001),
        ("anthropic", 18002),
        ("azure-openai", 18003),
        ("webhook", 18009),
    ];
    assert_eq!(
        ports,
        want.iter()
            .map(|(n, p)| ((*n).to_string(), *p))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// envoy --mode validate
// ---------------------------------------------------------------------------------------------

/// Writes the dummy key files (the layout envoy/README.md documents) into `dir`.
fn write_dummy_secrets(dir: &Path) {
    for (stem, value) in DUMMY_KEYS {
        let yaml = format!(
            "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: {stem}\n  generic_secret:\n    secret:\n      inline_string: \"{value}\"\n"
        );
        std::fs::write(dir.join(format!("{stem}.yaml")), yaml).unwrap();
    }
}

/// The providers config with its key files moved to `secrets`.
fn providers_text(secrets: &Path) -> String {
    let text = read("envoy-providers.yaml");
    assert!(
        text.contains(SECRETS_DIR),
        "key files are expected under {SECRETS_DIR}"
    );
    text.replace(SECRETS_DIR, &secrets.display().to_string())
}

#[test]
fn envoy_accepts_the_shipped_configs() {
    let (ok, log) = envoy_validate(&envoy_file("envoy.yaml"));
    assert!(ok && log.contains("OK"), "envoy/envoy.yaml:\n{log}");

    let tmp = TempDir::new("providers-validate");
    write_dummy_secrets(tmp.path());
    let config = tmp.join("envoy-providers.yaml");
    std::fs::write(&config, providers_text(tmp.path())).unwrap();
    let (ok, log) = envoy_validate(&config);
    assert!(
        ok && log.contains("OK"),
        "envoy/envoy-providers.yaml:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------------------------

/// Makes a shipped config runnable under test: admin and listener on port 0, every cluster a
/// STATIC plaintext cluster on its mock's port, and optionally a changed filter config.
fn adapt(doc: &mut Yaml, ports: &[(&str, u16)], filter: impl FnOnce(&mut Json)) {
    doc["admin"]["address"]["socket_address"]["port_value"] = Yaml::from(0);
    doc["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] =
        Yaml::from(0);
    for c in doc["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
    {
        let name = c["name"].as_str().unwrap().to_string();
        let port = ports
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no mock for cluster {name}"))
            .1;
        let m = c.as_mapping_mut().unwrap();
        m.insert("type".into(), "STATIC".into());
        m.remove("dns_lookup_family");
        m.remove("transport_socket");
        m.insert("connect_timeout".into(), "0.25s".into());
        let sa = &mut c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"];
        sa["address"] = "127.0.0.1".into();
        sa["port_value"] = Yaml::from(port);
    }
    // The filter's JSON, changed by the test.
    let plugin = find_wasm_config_mut(doc);
    let value = &mut plugin["configuration"]["value"];
    let mut json: Json = serde_json::from_str(value.as_str().unwrap()).unwrap();
    filter(&mut json);
    *value = Yaml::from(json.to_string());
}

fn find_wasm_config_mut(v: &mut Yaml) -> &mut Yaml {
    fn walk(v: &mut Yaml) -> Option<&mut Yaml> {
        match v {
            Yaml::Mapping(m) => {
                if m.get("@type").and_then(Yaml::as_str) == Some(WASM_TYPE) {
                    return m.get_mut("config");
                }
                m.iter_mut().find_map(|(_, c)| walk(c))
            }
            Yaml::Sequence(s) => s.iter_mut().find_map(walk),
            _ => None,
        }
    }
    walk(v).expect("a wasm filter")
}

fn served_by(r: &Response) -> String {
    r.header("x-mock-provider").unwrap_or("-").to_string()
}

#[test]
fn demo_config_end_to_end() {
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let azure = Mock::start("azure");
    let webhook = Mock::start("webhook");
    let mut doc = parse("envoy.yaml", &read("envoy.yaml"));
    adapt(
        &mut doc,
        &[
            ("openai", openai.port()),
            ("anthropic", anthropic.port()),
            ("azure-openai", azure.port()),
            ("webhook", webhook.port()),
        ],
        |_| {},
    );
    let envoy = Envoy::builder()
        .bootstrap_yaml(serde_yaml::to_string(&doc).unwrap())
        .start();
    let addr = envoy.addr();

    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "openai".to_string()),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-ai-cb-served-by"), Some("openai"));

    // A client cannot pick the cluster: the filter overwrites the route header on routed
    // paths and removes it elsewhere (then Envoy has no cluster: 503).
    let pick = [("x-ai-cb-upstream", "webhook")];
    let r = post_chat(&addr, "gpt-4o-mini", &pick);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "openai".to_string()),
        "{}",
        r.text()
    );
    let r = http("GET", &format!("{addr}/not-routed"), &pick, b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(webhook.hits(), 0, "a client reached the webhook cluster");
    openai.reset();

    // failure_threshold 5: five 500s open openai's breaker; anthropic takes over.
    openai.set_mode(r#"{"mode":"error","status":500}"#);
    for _ in 0..5 {
        post_chat(&addr, "gpt-4o-mini", &[]);
    }
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic".to_string()),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-ai-cb-served-by"), Some("anthropic"));
    let last = anthropic
        .requests()
        .pop()
        .expect("anthropic got the request");
    let body: Json = serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["model"], "claude-3-5-sonnet-20241022",
        "model rewritten: {body}"
    );

    let health = http("GET", &format!("{addr}/health/circuit-breakers"), &[], b"");
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(
        health.json()["providers"]["openai"],
        "open",
        "{}",
        health.text()
    );

    assert!(
        wait_until(Duration::from_secs(10), || webhook.hits_on("/alerts") >= 1),
        "no alert reached the webhook; log:\n{}",
        envoy.log()
    );
    let alert = &webhook.requests_on("/alerts")[0];
    assert_eq!(alert["method"], "POST");
    assert!(
        alert["body"].as_str().unwrap().contains("openai"),
        "{alert}"
    );
    assert!(envoy
        .metric(
            "circuit_breaker_fallbacks",
            &[("from", "openai"), ("to", "anthropic")]
        )
        .is_some_and(|v| v >= 1.0));
}

#[test]
fn providers_config_injects_each_providers_key() {
    let tmp = TempDir::new("providers-e2e");
    write_dummy_secrets(tmp.path());
    let openai = Mock::start("openai");
    let anthropic = Mock::start("anthropic");
    let azure = Mock::start("azure");
    let mut doc = parse("envoy-providers.yaml", &providers_text(tmp.path()));
    adapt(
        &mut doc,
        &[
            ("openai", openai.port()),
            ("anthropic", anthropic.port()),
            ("azure-openai", azure.port()),
        ],
        // One failure opens a breaker, so the test walks the whole fallback chain quickly.
        |j| j["defaults"]["failure_threshold"] = Json::from(1),
    );
    let envoy = Envoy::builder()
        .bootstrap_yaml(serde_yaml::to_string(&doc).unwrap())
        .start();
    let addr = envoy.addr();
    // Keys a client might send: none of them may reach any provider.
    let client_keys = [
        ("authorization", "Bearer client-key"),
        ("x-api-key", "client-key"),
        ("api-key", "client-key"),
    ];

    let r = post_chat(&addr, "gpt-4o-mini", &client_keys);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "openai".to_string()),
        "{}",
        r.text()
    );
    // An Anthropic client (/v1/messages) is served by Anthropic as its primary, untranslated.
    let messages = r#"{"model":"claude-3-5-sonnet-20241022","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut anthropic_headers = vec![
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ];
    anthropic_headers.extend_from_slice(&client_keys);
    let r = http(
        "POST",
        &format!("{addr}/v1/messages"),
        &anthropic_headers,
        messages.as_bytes(),
    );
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic".to_string()),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-ai-cb-translated"), None);
    assert_eq!(r.json()["type"], "message", "{}", r.text());

    openai.set_mode(r#"{"mode":"error","status":500}"#);
    post_chat(&addr, "gpt-4o-mini", &client_keys);
    let r = post_chat(&addr, "gpt-4o-mini", &client_keys);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "anthropic".to_string()),
        "{}",
        r.text()
    );

    anthropic.set_mode(r#"{"mode":"error","status":500}"#);
    post_chat(&addr, "gpt-4o-mini", &client_keys);
    let r = post_chat(&addr, "gpt-4o-mini", &client_keys);
    assert_eq!(
        (r.status, served_by(&r)),
        (200, "azure".to_string()),
        "{}",
        r.text()
    );

    // Every request each provider saw (routed or a failover callout) carries its own key only.
    let check = |mock: &Mock, header: &str, value: &str| {
        let reqs = mock.requests();
        assert!(!reqs.is_empty(), "{} saw no request", mock.name());
        for q in reqs {
            let h = &q["headers"];
            assert_eq!(h[header], value, "{}: {q}", mock.name());
            for other in ["authorization", "x-api-key", "api-key"] {
                if other != header {
                    assert!(h.get(other).is_none(), "{} got {other}: {q}", mock.name());
                }
            }
        }
    };
    check(&openai, "authorization", "Bearer sk-test-openai");
    check(&anthropic, "x-api-key", "sk-ant-test");
    check(&azure, "api-key", "azure-test-key");

    // Anthropic is reached through its native Messages API: every OpenAI request it got
    // (rerouted or a failover callout) was translated into a valid Messages request.
    for q in anthropic.requests() {
        assert_eq!(q["path"], "/v1/messages", "{q}");
        assert_eq!(q["headers"]["anthropic-version"], "2023-06-01", "{q}");
        assert!(q["rejected"].is_null(), "the mock rejected it: {q}");
    }
    let last_azure = azure.requests().pop().unwrap();
    assert_eq!(
        last_azure["target"],
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    );
}

/// What envoy/README.md says about `failure_policy`: a filter configuration that fails
/// validation stops Envoy at start-up whatever the policy, and the log names the key path.
#[test]
fn invalid_filter_config_stops_envoy_under_every_policy() {
    let bad = r#"{"upstreams":[{"name":"openai","fallbacks":["azur"]}],
                 "routes":[{"upstream":"openai"}]}"#;
    for policy in ["FAIL_OPEN", "FAIL_CLOSED"] {
        let res = Envoy::builder()
            .filter_config(bad)
            .failure_policy(policy)
            .cluster("openai", 1)
            .ready_timeout(Duration::from_secs(15))
            .try_start();
        let err = match res {
            Ok(envoy) => panic!(
                "{policy}: Envoy started with an invalid config:\n{}",
                envoy.log()
            ),
            Err(e) => e,
        };
        assert!(err.contains("envoy exited"), "{policy}: {err}");
        assert!(
            err.contains(
                r#"invalid configuration: upstreams[0].fallbacks[0]: unknown upstream "azur""#
            ),
            "{policy}: the log should name the key path:\n{err}"
        );
    }
}
