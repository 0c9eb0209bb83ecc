#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::config::FULL;
use crate::breaker::{Admission, Ticket};
use crate::config::Config;
use crate::routing::*;

fn full() -> Config {
    Config::from_json(FULL).expect("valid")
}

fn no_headers(_: &str) -> Option<String> {
    None
}

fn view<'a>(
    path: &'a str,
    host: &'a str,
    header: &'a dyn Fn(&str) -> Option<String>,
) -> RequestView<'a> {
    RequestView { path, host, header }
}

#[test]
fn first_matching_route_wins() {
    let c = full();
    let r = match_route(
        &c,
        &view("/v1/embeddings", "x", &no_headers),
        ModelLookup::Unknown,
    );
    assert_eq!(r, RouteMatch::Upstream(1));
}

#[test]
fn model_route_asks_for_the_body_then_matches_on_it() {
    let c = full();
    let req = view("/v1/chat/completions", "x", &no_headers);
    assert_eq!(
        match_route(&c, &req, ModelLookup::Unknown),
        RouteMatch::NeedsBody
    );
    assert_eq!(
        match_route(&c, &req, ModelLookup::Known(Some("gpt-4o-mini"))),
        RouteMatch::Upstream(0)
    );
    // Another model, or no model at all, falls through to the catch-all route.
    assert_eq!(
        match_route(&c, &req, ModelLookup::Known(Some("gpt-4o"))),
        RouteMatch::Upstream(0)
    );
    assert_eq!(
        match_route(&c, &req, ModelLookup::Known(None)),
        RouteMatch::Upstream(0)
    );
}

#[test]
fn host_and_header_conditions_must_all_hold() {
    let c = Config::from_json(
        r#"{"upstreams":[{"name":"a"},{"name":"b"}],
            "routes":[{"match":{"host":"api.example.com","headers":{"x-tenant":"blue"}},"upstream":"b"},
                      {"match":{"path_prefix":"/v1/"},"upstream":"a"}]}"#,
    )
    .expect("valid");
    let blue = |n: &str| (n == "x-tenant").then(|| "blue".to_string());
    let red = |n: &str| (n == "x-tenant").then(|| "red".to_string());
    assert_eq!(
        match_route(
            &c,
            &view("/v1/x", "API.example.com:8443", &blue),
            ModelLookup::Unknown
        ),
        RouteMatch::Upstream(1)
    );
    assert_eq!(
        match_route(
            &c,
            &view("/v1/x", "api.example.com", &red),
            ModelLookup::Unknown
        ),
        RouteMatch::Upstream(0)
    );
    assert_eq!(
        match_route(
            &c,
            &view("/v1/x", "other.example.com", &blue),
            ModelLookup::Unknown
        ),
        RouteMatch::Upstream(0)
    );
    assert_eq!(
        match_route(&c, &view("/v2/x", "other", &blue), ModelLookup::Unknown),
        RouteMatch::NoRoute
    );
}

#[test]
fn plan_walks_primary_then_fallbacks_in_order() {
    let c = full();
    let mut asked = Vec::new();
    let p = plan(candidates(&c, 0), |u| {
        asked.push(u);
        if u == 3 {
            Admission::Admitted(Ticket::Counted)
        } else {
            Admission::Rejected {
                retry_at_ms: 100 + u as u64,
            }
        }
    });
    assert_eq!(asked, vec![0, 2, 3]);
    assert_eq!(
        p,
        Plan::Serve {
            upstream: 3,
            ticket: Ticket::Counted,
            skipped: vec![0, 2]
        }
    );
}

#[test]
fn plan_reports_earliest_retry_when_all_open() {
    let c = full();
    let p = plan(candidates(&c, 0), |u| Admission::Rejected {
        retry_at_ms: [5_000, 0, 2_000, 9_000][u],
    });
    assert_eq!(
        p,
        Plan::AllOpen {
            retry_at_ms: 2_000,
            skipped: vec![0, 2, 3]
        }
    );
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after_secs(1_000, 1_001), 1);
    assert_eq!(retry_after_secs(1_000, 31_000), 30);
    assert_eq!(retry_after_secs(1_000, 31_001), 31);
    assert_eq!(retry_after_secs(5_000, 0), 1, "never 0");
}

#[test]
fn body_model_is_read_and_rewritten() {
    let body =
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    assert_eq!(body_model(body).as_deref(), Some("gpt-4o-mini"));
    assert_eq!(body_model(b"not json"), None);
    assert_eq!(body_model(br#"{"model":5}"#), None);
    let out = rewrite_body_model(body, "claude-3-5-sonnet-20241022").expect("json object");
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["model"], "claude-3-5-sonnet-20241022");
    assert_eq!(v["stream"], true);
    assert_eq!(v["messages"][0]["content"], "hi");
    assert_eq!(rewrite_body_model(b"[1,2]", "m"), None);
}

#[test]
fn all_open_body_is_openai_shaped() {
    let v: serde_json::Value =
        serde_json::from_str(&all_open_body("All AI providers are currently unavailable"))
            .expect("json");
    assert_eq!(
        v,
        serde_json::json!({"error":{"message":"All AI providers are currently unavailable","type":"circuit_open","code":"circuit_open"}})
    );
}
