#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::config::FULL;
use crate::breaker::{Admission, Ticket};
use crate::config::{Config, UpstreamId};
use crate::routing::*;

fn full() -> Config {
    Config::from_json(FULL).expect("valid")
}

/// The upstream called `name`.
fn u(c: &Config, name: &str) -> UpstreamId {
    c.upstream_id(name).expect("configured")
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
    assert_eq!(r, RouteMatch::Upstream(u(&c, "openai-embeddings")));
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
        RouteMatch::Upstream(u(&c, "openai"))
    );
    // Another model, or no model at all, falls through to the catch-all route.
    assert_eq!(
        match_route(&c, &req, ModelLookup::Known(Some("gpt-4o"))),
        RouteMatch::Upstream(u(&c, "openai"))
    );
    assert_eq!(
        match_route(&c, &req, ModelLookup::Known(None)),
        RouteMatch::Upstream(u(&c, "openai"))
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
        RouteMatch::Upstream(u(&c, "b"))
    );
    assert_eq!(
        match_route(
            &c,
            &view("/v1/x", "api.example.com", &red),
            ModelLookup::Unknown
        ),
        RouteMatch::Upstream(u(&c, "a"))
    );
    assert_eq!(
        match_route(
            &c,
            &view("/v1/x", "other.example.com", &blue),
            ModelLookup::Unknown
        ),
        RouteMatch::Upstream(u(&c, "a"))
    );
    assert_eq!(
        match_route(&c, &view("/v2/x", "other", &blue), ModelLookup::Unknown),
        RouteMatch::NoRoute
    );
}

#[test]
fn plan_walks_primary_then_fallbacks_in_order() {
    let c = full();
    let (openai, anthropic, azure) = (u(&c, "openai"), u(&c, "anthropic"), u(&c, "azure"));
    let mut asked = Vec::new();
    let p = plan(c.chain(openai).iter().copied(), |x| {
        asked.push(x);
        if x == azure {
            Admission::Admitted(Ticket::Counted)
        } else {
            Admission::Rejected { retry_at_ms: 100 }
        }
    });
    assert_eq!(asked, vec![openai, anthropic, azure]);
    assert_eq!(
        p,
        Plan::Serve {
            upstream: azure,
            ticket: Ticket::Counted,
            skipped: vec![openai, anthropic]
        }
    );
}

#[test]
fn plan_reports_earliest_retry_when_all_open() {
    let c = full();
    let (openai, anthropic, azure) = (u(&c, "openai"), u(&c, "anthropic"), u(&c, "azure"));
    let p = plan(c.chain(openai).iter().copied(), |x| Admission::Rejected {
        retry_at_ms: [5_000, 0, 2_000, 9_000][x.index()],
    });
    assert_eq!(
        p,
        Plan::AllOpen {
            retry_at_ms: 2_000,
            skipped: vec![openai, anthropic, azure]
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
