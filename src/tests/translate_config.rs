//! The configuration of provider translation: each upstream's `api` (with what an Anthropic
//! upstream needs) and a route's override of the client's format.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::config::Config;
use crate::translate::Api;

fn config(upstreams: &str, routes: &str) -> Result<Config, String> {
    Config::from_json(&format!(r#"{{"upstreams":{upstreams},"routes":{routes}}}"#))
        .map_err(|e| e.to_string())
}

const ROUTE: &str = r#"[{"upstream":"openai"}]"#;

#[test]
fn an_upstream_speaks_openai_unless_it_declares_anthropic_with_documented_defaults() {
    let c = config(
        r#"[{"name":"openai","fallbacks":["claude"]},{"name":"claude","api":"anthropic"}]"#,
        ROUTE,
    )
    .expect("valid");
    let (openai, claude) = (&c.upstreams()[0], &c.upstreams()[1]);
    assert_eq!(openai.api, Api::OpenAi);
    assert_eq!(claude.api, Api::Anthropic);
    assert_eq!(claude.anthropic_version, "2023-06-01");
    assert_eq!(claude.default_max_tokens, 4096);
    assert_eq!(c.routes[0].api, None, "told by the request path");
    assert!(c.translates());
    assert!(c.rewrites_body(), "a translated body is rewritten");
}

#[test]
fn anthropic_version_default_max_tokens_and_a_route_api_are_read() {
    let c = config(
        r#"[{"name":"openai","api":"openai"},
            {"name":"claude","api":"anthropic","anthropic_version":"2024-01-01","default_max_tokens":512}]"#,
        r#"[{"upstream":"openai","api":"anthropic"}]"#,
    )
    .expect("valid");
    let claude = &c.upstreams()[1];
    assert_eq!(claude.anthropic_version, "2024-01-01");
    assert_eq!(claude.default_max_tokens, 512);
    let t = claude.target();
    assert_eq!(
        (t.api, t.anthropic_version, t.default_max_tokens),
        (Api::Anthropic, "2024-01-01", 512)
    );
    assert_eq!(c.routes[0].api, Some(Api::Anthropic));
}

#[test]
fn a_config_that_declares_no_api_translates_nothing() {
    let c = config(r#"[{"name":"openai"}]"#, ROUTE).expect("valid");
    assert!(!c.translates());
    assert!(!c.rewrites_body());
}

#[test]
fn an_unknown_api_is_an_error_naming_the_key() {
    let e = config(
        r#"[{"name":"openai"},{"name":"b","api":"antropic"}]"#,
        ROUTE,
    )
    .unwrap_err();
    assert_eq!(
        e,
        r#"upstreams[1].api: unknown api "antropic" (expected "openai" or "anthropic")"#
    );
    let e = config(
        r#"[{"name":"openai"}]"#,
        r#"[{"upstream":"openai","api":"gemini"}]"#,
    )
    .unwrap_err();
    assert_eq!(
        e,
        r#"routes[0].api: unknown api "gemini" (expected "openai" or "anthropic")"#
    );
    let e = config(r#"[{"name":"openai","api":1}]"#, ROUTE).unwrap_err();
    assert!(e.starts_with("upstreams[0].api: invalid type"), "{e}");
}

#[test]
fn default_max_tokens_must_be_at_least_one_and_anthropic_version_a_header_value() {
    let e = config(r#"[{"name":"openai","default_max_tokens":0}]"#, ROUTE).unwrap_err();
    assert_eq!(
        e,
        "upstreams[0].default_max_tokens: must be at least 1, got 0"
    );
    let e = config(r#"[{"name":"openai","default_max_tokens":-3}]"#, ROUTE).unwrap_err();
    assert!(
        e.starts_with("upstreams[0].default_max_tokens: invalid"),
        "{e}"
    );
    let e = config(r#"[{"name":"openai","anthropic_version":""}]"#, ROUTE).unwrap_err();
    assert_eq!(
        e,
        "upstreams[0].anthropic_version: must be a non-empty printable header value"
    );
}

#[test]
fn unknown_keys_next_to_api_are_still_refused() {
    let e = config(r#"[{"name":"openai","apis":"openai"}]"#, ROUTE).unwrap_err();
    assert!(e.starts_with("upstreams[0]: unknown field `apis`"), "{e}");
    assert!(
        e.contains("`api`") && e.contains("`default_max_tokens`"),
        "{e}"
    );
    let e = config(
        r#"[{"name":"openai"}]"#,
        r#"[{"upstream":"openai","format":"x"}]"#,
    )
    .unwrap_err();
    assert!(e.starts_with("routes[0]: unknown field `format`"), "{e}");
}
