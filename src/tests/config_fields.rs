//! Every configuration key is typed by `config::field`, not by serde: these tests hold its
//! messages to serde_json's own (`serde_json::from_value` as the oracle), for every JSON kind
//! of value at a key of every type, so error texts stay what users saw before.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::*;
use crate::outcome::FailureReason;

/// Values of every JSON kind, including the edges of each integer type.
const VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "1",
    "5",
    "-1",
    "-9223372036854775808",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "1.5",
    "5.0",
    "-0.0",
    "1e300",
    "1e-7",
    "0.1",
    r#""""#,
    r#""x""#,
    r#""a\"b\n""#,
    r#""enforce""#,
    r#""json""#,
    r#""half_open""#,
    r#""status_5xx""#,
    "[]",
    "[1]",
    r#"["x"]"#,
    "{}",
    r#"{"a":"b"}"#,
    r#"{"a":1}"#,
    r#"{"enforce":null}"#,
    r#"{"enforce":1}"#,
    r#"{"json":null}"#,
    r#"{"x":null}"#,
    r#"{"json":null,"slack":null}"#,
];

/// Checks the key `path` of the config `template` (its `@` replaced by each value) against
/// serde typing the value as `T`: serde's error is ours at `path`; serde's success is no
/// type error there.
fn agrees_with_serde<T: DeserializeOwned>(template: &str, path: &str) {
    for text in VALUES {
        let json = template.replace('@', text);
        let value: Value = serde_json::from_str(text).expect("test value is JSON");
        let ours = Config::from_json(&json).err();
        match serde_json::from_value::<T>(value) {
            Err(e) => {
                let ours = ours.map(|e| e.to_string());
                assert_eq!(ours, Some(format!("{path}: {e}")), "{json}");
            }
            Ok(_) => {
                if let Some(e) = ours {
                    let typing = e.path == path && matches!(e.kind, ConfigErrorKind::Syntax(_));
                    assert!(!typing, "{json}: serde accepts it, we said {e}");
                }
            }
        }
    }
}

fn in_defaults(key: &str) -> String {
    format!(
        r#"{{"defaults":{{"{key}":@}},"upstreams":[{{"name":"a"}}],"routes":[{{"upstream":"a"}}]}}"#
    )
}

#[test]
fn integer_keys_give_serdes_messages() {
    agrees_with_serde::<u32>(
        &in_defaults("failure_threshold"),
        "defaults.failure_threshold",
    );
    let codes = r#"{"defaults":{"failure_conditions":{"status_codes":[@]}},"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#;
    agrees_with_serde::<u16>(codes, "defaults.failure_conditions.status_codes[0]");
    let top = r#"{"body_buffer_limit":@,"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#;
    agrees_with_serde::<usize>(top, "body_buffer_limit");
}

#[test]
fn float_bool_and_string_keys_give_serdes_messages() {
    agrees_with_serde::<f64>(&in_defaults("window_size"), "defaults.window_size");
    agrees_with_serde::<bool>(
        &in_defaults("honor_retry_after"),
        "defaults.honor_retry_after",
    );
    let top = r#"{"route_header":@,"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#;
    agrees_with_serde::<String>(top, "route_header");
    let name = r#"{"upstreams":[{"name":@}],"routes":[]}"#;
    agrees_with_serde::<String>(name, "upstreams[0].name");
}

#[test]
fn enum_keys_give_serdes_messages() {
    agrees_with_serde::<Mode>(&in_defaults("mode"), "defaults.mode");
    let format = r#"{"alerting":{"cluster":"c","format":@},"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#;
    agrees_with_serde::<AlertFormat>(format, "alerting.format");
    let on = r#"{"alerting":{"cluster":"c","on":[@]},"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#;
    agrees_with_serde::<AlertOn>(on, "alerting.on[0]");
    let failover =
        r#"{"failover":{"on":[@]},"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#;
    agrees_with_serde::<FailureReason>(failover, "failover.on[0]");
}

#[test]
fn header_maps_give_serdes_messages() {
    let rewrite =
        r#"{"upstreams":[{"name":"a","rewrite":{"headers":@}}],"routes":[{"upstream":"a"}]}"#;
    agrees_with_serde::<BTreeMap<String, String>>(rewrite, "upstreams[0].rewrite.headers");
}
