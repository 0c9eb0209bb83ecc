#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::config::*;
use crate::outcome::FailureReason;

/// The reference configuration from the README.
pub(crate) const FULL: &str = r#"{
  "route_header": "x-ai-cb-upstream",
  "response_header": "x-ai-cb-served-by",
  "health_path": "/health/circuit-breakers",
  "defaults": {
    "failure_threshold": 5, "window_size": 60, "recovery_timeout": 30, "success_threshold": 2,
    "half_open_max_requests": 1, "probe_timeout": 60, "mode": "enforce",
    "failure_rate": {"threshold": 0.5, "minimum_requests": 20},
    "slow_call_duration": 30,
    "honor_retry_after": true, "backoff_multiplier": 1.0, "max_recovery_timeout": 300, "recovery_jitter": 0.1,
    "failure_conditions": {"status_codes": [500, 502, 503, 504, 529], "timeout": true, "connect_failure": true, "rate_limit": true}
  },
  "upstreams": [
    {"name": "openai", "cluster": "openai", "fallbacks": ["anthropic", "azure"]},
    {"name": "openai-embeddings", "cluster": "openai", "failure_threshold": 10, "recovery_timeout": 60},
    {"name": "anthropic", "cluster": "anthropic", "api": "anthropic", "rewrite": {"model": "claude-3-5-sonnet-20241022"}},
    {"name": "azure", "cluster": "azure-openai", "failure_threshold": 3,
     "rewrite": {"path": "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-02-15-preview", "host": "myco.openai.azure.com"}}
  ],
  "routes": [
    {"match": {"path_prefix": "/v1/embeddings"}, "upstream": "openai-embeddings"},
    {"match": {"path_prefix": "/v1/", "model": "gpt-4o-mini"}, "upstream": "openai"},
    {"match": {"path_prefix": "/"}, "upstream": "openai"}
  ]
}"#;

const MINIMAL: &str = r#"{"upstreams":[{"name":"openai"}],"routes":[{"upstream":"openai"}]}"#;

fn err(json: &str) -> String {
    match Config::from_json(json) {
        Ok(_) => panic!("expected an error for {json}"),
        Err(e) => e.to_string(),
    }
}

/// A config with the given upstreams/routes JSON fragments.
fn with(upstreams: &str, routes: &str) -> String {
    format!(r#"{{"upstreams":{upstreams},"routes":{routes}}}"#)
}

/// A one-upstream config whose `defaults` is `defaults`.
fn with_defaults(defaults: &str) -> String {
    format!(
        r#"{{"defaults":{defaults},"upstreams":[{{"name":"a"}}],"routes":[{{"upstream":"a"}}]}}"#
    )
}

#[test]
fn reference_config_parses_with_overrides_applied() {
    let c = Config::from_json(FULL).expect("reference config is valid");
    assert_eq!(c.upstreams().len(), 4);
    let openai = &c.upstreams()[0];
    let names: Vec<&str> = openai
        .fallbacks
        .iter()
        .map(|&f| c.upstream(f).name.as_str())
        .collect();
    assert_eq!(names, vec!["anthropic", "azure"]);
    assert_eq!(
        openai.chain.first().copied(),
        c.upstream_id("openai"),
        "a chain starts with its primary"
    );
    assert_eq!(openai.policy.failure_threshold, 5);
    assert_eq!(openai.policy.slow_call_ms, Some(30_000));
    let emb = &c.upstreams()[1];
    assert_eq!(
        emb.cluster, "openai",
        "several upstreams may share a cluster"
    );
    assert_eq!(
        (emb.policy.failure_threshold, emb.policy.recovery_ms),
        (10, 60_000)
    );
    assert_eq!(
        emb.policy.window_ms, 60_000,
        "defaults fill what is not overridden"
    );
    assert_eq!(c.upstreams()[3].policy.failure_threshold, 3);
    assert_eq!(
        c.upstreams()[2]
            .rewrite
            .as_ref()
            .and_then(|r| r.model.as_deref()),
        Some("claude-3-5-sonnet-20241022")
    );
    assert_eq!(c.routes[1].model.as_deref(), Some("gpt-4o-mini"));
    assert!(c.routes_on_model());
    assert!(c.rewrites_body());
    assert_eq!(c.health_path.as_deref(), Some("/health/circuit-breakers"));
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = Config::from_json(MINIMAL).expect("valid");
    assert_eq!(c.route_header, "x-ai-cb-upstream");
    assert_eq!(c.response_header, "x-ai-cb-served-by");
    assert_eq!(c.health_path, None);
    let p = &c.upstreams()[0].policy;
    assert_eq!(*p, Policy::default());
    assert_eq!(
        (
            p.failure_threshold,
            p.window_ms,
            p.recovery_ms,
            p.success_threshold
        ),
        (5, 60_000, 30_000, 2)
    );
    assert_eq!(p.half_open_max_requests, 1);
    assert_eq!(p.failure_rate, None);
    assert_eq!(p.slow_call_ms, None);
    assert_eq!(p.conditions.status_codes, vec![500, 502, 503, 504, 529]);
    assert_eq!(
        c.upstreams()[0].cluster,
        "openai",
        "cluster defaults to name"
    );
    assert_eq!(
        (c.fast_fail.status, c.fast_fail.message.as_str()),
        (503, "All AI providers are currently unavailable")
    );
    assert!(c.failover.enabled);
    assert_eq!(c.failover.max_attempts, 1);
    assert_eq!(c.failover.max_body_bytes, 1 << 20);
    assert_eq!(
        c.failover.on,
        vec![
            FailureReason::Status5xx,
            FailureReason::Timeout,
            FailureReason::ConnectFailure,
            FailureReason::RateLimit,
            FailureReason::StreamError,
            FailureReason::StreamTruncated,
            FailureReason::StreamStall,
            FailureReason::SlowFirstToken,
            FailureReason::QuotaExhausted
        ],
        "slow calls succeeded: they are not re-sent"
    );
    assert_eq!(c.failover.timeout_ms, 30_000);
    assert_eq!(c.failover.methods, vec!["POST".to_string()]);
    assert_eq!(
        c.upstreams()[0].callout_cluster,
        "openai",
        "defaults to cluster"
    );
    assert!(c.alerting.is_none());
    assert!(!c.routes_on_model() && !c.rewrites_body());
}

#[test]
fn fractional_durations_are_allowed() {
    let c = Config::from_json(&with_defaults(
        r#"{"recovery_timeout":0.5,"window_size":0.25}"#,
    ))
    .expect("valid");
    assert_eq!(c.upstreams()[0].policy.recovery_ms, 500);
    assert_eq!(c.upstreams()[0].policy.window_ms, 250);
}

#[test]
fn not_json_is_reported() {
    assert!(err("{").starts_with("config: "), "{}", err("{"));
}

#[test]
fn unknown_top_level_key_is_rejected() {
    let e = err(r#"{"upstream":[],"routes":[]}"#);
    assert!(e.contains("unknown field `upstream`"), "{e}");
}

#[test]
fn unknown_policy_key_names_its_path() {
    let e = err(&with_defaults(r#"{"failure_treshold":3}"#));
    assert!(e.starts_with("defaults"), "{e}");
    assert!(e.contains("unknown field `failure_treshold`"), "{e}");
    let e = err(&with(
        r#"[{"name":"a","recovery":3}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert!(e.starts_with("upstreams[0]"), "{e}");
    assert!(e.contains("unknown field `recovery`"), "{e}");
}

#[test]
fn wrong_types_name_the_nested_key() {
    let e = err(&with_defaults(
        r#"{"failure_conditions":{"status_codes":[500,"x"]}}"#,
    ));
    assert!(
        e.starts_with("defaults.failure_conditions.status_codes[1]: "),
        "{e}"
    );
    let e = err(&with(
        r#"[{"name":"a","failure_threshold":"5"}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert!(e.starts_with("upstreams[0].failure_threshold: "), "{e}");
    let e = err(&with_defaults(r#"{"mode":"enforcing"}"#));
    assert!(
        e.starts_with("defaults.mode: unknown variant `enforcing`"),
        "{e}"
    );
}

#[test]
fn thresholds_must_be_at_least_one() {
    assert_eq!(
        err(&with_defaults(r#"{"failure_threshold":0}"#)),
        "defaults.failure_threshold: must be at least 1, got 0"
    );
    assert_eq!(
        err(&with_defaults(r#"{"success_threshold":0}"#)),
        "defaults.success_threshold: must be at least 1, got 0"
    );
    assert_eq!(
        err(&with_defaults(r#"{"half_open_max_requests":0}"#)),
        "defaults.half_open_max_requests: must be at least 1, got 0"
    );
    assert_eq!(
        err(&with_defaults(r#"{"half_open_max_requests":65}"#)),
        "defaults.half_open_max_requests: must be at most 64, got 65"
    );
    assert_eq!(
        err(&with(
            r#"[{"name":"a","failure_threshold":0}]"#,
            r#"[{"upstream":"a"}]"#
        )),
        "upstreams[0].failure_threshold: must be at least 1, got 0"
    );
}

#[test]
fn durations_must_be_positive() {
    for key in [
        "window_size",
        "recovery_timeout",
        "probe_timeout",
        "slow_call_duration",
        "max_recovery_timeout",
    ] {
        let e = err(&with_defaults(&format!(r#"{{"{key}":0}}"#)));
        assert_eq!(
            e,
            format!("defaults.{key}: must be a duration in seconds, > 0 and <= 86400, got 0")
        );
        let e = err(&with_defaults(&format!(r#"{{"{key}":-1}}"#)));
        assert!(e.starts_with(&format!("defaults.{key}: ")), "{e}");
    }
}

#[test]
fn ratios_must_be_in_range() {
    assert_eq!(
        err(&with_defaults(r#"{"failure_rate":{"threshold":0}}"#)),
        "defaults.failure_rate.threshold: must be in (0, 1], got 0"
    );
    assert_eq!(
        err(&with_defaults(r#"{"failure_rate":{"threshold":1.5}}"#)),
        "defaults.failure_rate.threshold: must be in (0, 1], got 1.5"
    );
    assert_eq!(
        err(&with_defaults(
            r#"{"failure_rate":{"threshold":0.5,"minimum_requests":0}}"#
        )),
        "defaults.failure_rate.minimum_requests: must be at least 1, got 0"
    );
    assert_eq!(
        err(&with_defaults(r#"{"recovery_jitter":1}"#)),
        "defaults.recovery_jitter: must be in [0, 1), got 1"
    );
    assert_eq!(
        err(&with_defaults(r#"{"backoff_multiplier":0.5}"#)),
        "defaults.backoff_multiplier: must be between 1.0 and 100.0, got 0.5"
    );
}

#[test]
fn max_recovery_must_cover_recovery() {
    assert_eq!(
        err(&with_defaults(
            r#"{"recovery_timeout":60,"max_recovery_timeout":30}"#
        )),
        "defaults.max_recovery_timeout: must be at least recovery_timeout (60 s), got 30 s"
    );
}

#[test]
fn status_codes_must_be_http_statuses() {
    assert_eq!(
        err(&with_defaults(
            r#"{"failure_conditions":{"status_codes":[500,700]}}"#
        )),
        "defaults.failure_conditions.status_codes[1]: must be an HTTP status (100-599), got 700"
    );
}

#[test]
fn unknown_fallback_names_its_path() {
    let e = err(&with(
        r#"[{"name":"openai"},{"name":"anthropic","fallbacks":["azur"]}]"#,
        r#"[{"upstream":"openai"}]"#,
    ));
    assert_eq!(e, r#"upstreams[1].fallbacks[0]: unknown upstream "azur""#);
}

#[test]
fn duplicate_upstream_names_are_rejected() {
    let e = err(&with(
        r#"[{"name":"a"},{"name":"a"}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert_eq!(e, r#"upstreams[1].name: duplicate upstream name "a""#);
}

#[test]
fn upstream_names_must_be_label_safe() {
    let e = err(&with(
        r#"[{"name":"open ai"}]"#,
        r#"[{"upstream":"open ai"}]"#,
    ));
    assert_eq!(
        e,
        "upstreams[0].name: \"open ai\" may only contain letters, digits, '-' and '_'"
    );
}

#[test]
fn fallback_cycles_are_rejected() {
    let e = err(&with(
        r#"[{"name":"a","fallbacks":["b"]},{"name":"b","fallbacks":["c"]},{"name":"c","fallbacks":["a"]}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert_eq!(
        e,
        "upstreams[2].fallbacks[0]: fallback cycle a -> b -> c -> a"
    );
    let e = err(&with(
        r#"[{"name":"a","fallbacks":["a"]}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert_eq!(e, "upstreams[0].fallbacks[0]: fallback cycle a -> a");
}

#[test]
fn shared_fallback_without_cycle_is_fine() {
    let c = Config::from_json(&with(
        r#"[{"name":"a","fallbacks":["c"]},{"name":"b","fallbacks":["c"]},{"name":"c"}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert!(c.is_ok());
}

#[test]
fn duplicate_fallback_is_rejected() {
    let e = err(&with(
        r#"[{"name":"a","fallbacks":["b","b"]},{"name":"b"}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert_eq!(e, r#"upstreams[0].fallbacks[1]: "b" is listed twice"#);
}

#[test]
fn at_least_one_route_and_upstream() {
    assert_eq!(
        err(r#"{"upstreams":[{"name":"a"}],"routes":[]}"#),
        "routes: at least one route is required"
    );
    assert_eq!(
        err(r#"{"upstreams":[{"name":"a"}]}"#),
        "routes: at least one route is required"
    );
    assert_eq!(
        err(r#"{"upstreams":[],"routes":[]}"#),
        "upstreams: at least one upstream is required"
    );
}

#[test]
fn routes_must_name_known_upstreams() {
    let e = err(&with(
        r#"[{"name":"a"}]"#,
        r#"[{"upstream":"a"},{"upstream":"b"}]"#,
    ));
    assert_eq!(e, r#"routes[1].upstream: unknown upstream "b""#);
}

#[test]
fn route_and_rewrite_paths_must_be_absolute() {
    let e = err(&with(
        r#"[{"name":"a"}]"#,
        r#"[{"match":{"path_prefix":"v1"},"upstream":"a"}]"#,
    ));
    assert_eq!(e, "routes[0].match.path_prefix: must start with '/'");
    let e = err(&with(
        r#"[{"name":"a","rewrite":{"path":"x"}}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert_eq!(e, "upstreams[0].rewrite.path: must start with '/'");
    let e =
        err(r#"{"health_path":"health","upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#);
    assert_eq!(e, "health_path: must start with '/'");
}

#[test]
fn rewrite_may_not_touch_managed_headers() {
    let e = err(&with(
        r#"[{"name":"a","rewrite":{"headers":{"x-ai-cb-upstream":"z"}}}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert_eq!(e, "upstreams[0].rewrite.headers.x-ai-cb-upstream: this header is managed by the filter and cannot be rewritten");
}

#[test]
fn header_names_are_validated() {
    let e = err(
        r#"{"route_header":"bad header","upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#,
    );
    assert_eq!(
        e,
        r#"route_header: "bad header" is not a valid HTTP header name"#
    );
    let c = Config::from_json(
        r#"{"route_header":"X-Upstream","upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#,
    )
    .expect("valid");
    assert_eq!(c.route_header, "x-upstream", "header names are lower-cased");
}

#[test]
fn fast_fail_status_must_be_an_error_status() {
    let e = err(
        r#"{"fast_fail":{"status":200},"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#,
    );
    assert_eq!(e, "fast_fail.status: must be a 4xx or 5xx status, got 200");
}

#[test]
fn failover_settings_are_validated() {
    let base = |f: &str| {
        format!(r#"{{"failover":{f},"upstreams":[{{"name":"a"}}],"routes":[{{"upstream":"a"}}]}}"#)
    };
    assert_eq!(
        err(&base(r#"{"max_attempts":0}"#)),
        "failover.max_attempts: must be at least 1, got 0"
    );
    assert_eq!(
        err(&base(r#"{"on":[]}"#)),
        "failover.on: at least one failure reason is required"
    );
    assert!(err(&base(r#"{"on":["status_500"]}"#)).starts_with("failover.on[0]: unknown variant"));
    assert_eq!(
        err(&base(r#"{"methods":["post"]}"#)),
        "failover.methods[0]: \"post\" is not an upper-case HTTP method"
    );
    assert_eq!(
        err(&base(r#"{"max_body_bytes":0}"#)),
        "failover.max_body_bytes: must be between 1 and 67108864, got 0"
    );
    let c = Config::from_json(&base(r#"{"enabled":false,"timeout":2.5,"on":["timeout"]}"#))
        .expect("valid");
    assert!(!c.failover.enabled);
    assert_eq!(c.failover.timeout_ms, 2_500);
    assert_eq!(c.failover.on, vec![FailureReason::Timeout]);
}

#[test]
fn alerting_settings_are_validated() {
    let base = |a: &str| {
        format!(r#"{{"alerting":{a},"upstreams":[{{"name":"a"}}],"routes":[{{"upstream":"a"}}]}}"#)
    };
    assert!(
        err(&base(r#"{}"#)).starts_with("alerting: missing field `cluster`"),
        "{}",
        err(&base("{}"))
    );
    assert!(err(&base(r#"{"cluster":"hooks","format":"xml"}"#))
        .starts_with("alerting.format: unknown variant"));
    assert_eq!(
        err(&base(r#"{"cluster":"hooks","path":"x"}"#)),
        "alerting.path: must start with '/'"
    );
    let c = Config::from_json(&base(
        r#"{"cluster":"hooks","on":["open","half_open","close"],"min_interval":0}"#,
    ))
    .expect("valid");
    let a = c.alerting.expect("alerting");
    assert_eq!(a.authority, "hooks");
    assert_eq!(a.format, AlertFormat::Slack);
    assert_eq!(a.min_interval_ms, 0);
    assert_eq!(a.on, vec![AlertOn::Open, AlertOn::HalfOpen, AlertOn::Close]);
}

#[test]
fn callout_cluster_can_name_the_real_envoy_cluster() {
    let c = Config::from_json(&with(
        r#"[{"name":"a","cluster":"a-route","callout_cluster":"outbound|443||api.a.com"}]"#,
        r#"[{"upstream":"a"}]"#,
    ))
    .expect("valid");
    assert_eq!(c.upstreams()[0].cluster, "a-route");
    assert_eq!(c.upstreams()[0].callout_cluster, "outbound|443||api.a.com");
    let e = err(&with(
        r#"[{"name":"a","callout_cluster":""}]"#,
        r#"[{"upstream":"a"}]"#,
    ));
    assert_eq!(e, "upstreams[0].callout_cluster: must not be empty");
}

#[test]
fn config_errors_are_typed() {
    let e = Config::from_json(&with(
        r#"[{"name":"a","fallbacks":["zz"]}]"#,
        r#"[{"upstream":"a"}]"#,
    ))
    .unwrap_err();
    assert_eq!(e.path, "upstreams[0].fallbacks[0]");
    assert_eq!(e.kind, ConfigErrorKind::UnknownUpstream("zz".to_string()));
}

#[test]
fn failover_on_reads_every_reason_by_the_name_metrics_and_the_readme_give_it() {
    // `status_5xx` was read as `status5xx` (serde's snake_case of `Status5xx`), so the
    // README's failover example did not load.
    for reason in FailureReason::ALL {
        let json = format!(
            r#"{{"upstreams": [{{"name": "a"}}], "routes": [{{"upstream": "a"}}],
                "failover": {{"on": ["{}"]}}}}"#,
            reason.as_str()
        );
        let c = Config::from_json(&json).unwrap_or_else(|e| panic!("{}: {e}", reason.as_str()));
        assert_eq!(c.failover.on, vec![reason]);
    }
}

/// One upstream `a` with `recovery_probe` set to `probe`.
fn with_probe(probe: &str) -> String {
    with(
        &format!(r#"[{{"name":"a","cluster":"a_cluster","recovery_probe":{probe}}}]"#),
        r#"[{"upstream":"a"}]"#,
    )
}

#[test]
fn a_recovery_probe_gets_the_documented_defaults() {
    let c = Config::from_json(&with_probe("{}")).expect("valid");
    let p = c.upstreams()[0].recovery_probe.clone().expect("configured");
    assert_eq!(
        p.headers,
        vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), "/v1/models".to_string()),
            (":authority".to_string(), "a_cluster".to_string()),
        ]
    );
    assert!(p.body.is_empty());
    assert_eq!((p.interval_ms, p.timeout_ms), (5_000, 3_000));
    assert_eq!(p.expected_statuses, vec![200]);
    let none = Config::from_json(MINIMAL).expect("valid");
    assert!(
        none.upstreams()[0].recovery_probe.is_none(),
        "off by default"
    );
}

#[test]
fn a_recovery_probe_takes_every_field_and_the_rewrite_host() {
    let json = with(
        r#"[{"name":"a","rewrite":{"host":"api.example.com"},"recovery_probe":{
            "method":"POST","path":"/v1/chat/completions","headers":{"Authorization":"Bearer k"},
            "body":"{\"model\":\"m\",\"max_tokens\":1}","interval":2,"timeout":0.5,
            "expected_statuses":[200,400]}}]"#,
        r#"[{"upstream":"a"}]"#,
    );
    let c = Config::from_json(&json).expect("valid");
    let p = c.upstreams()[0].recovery_probe.clone().expect("configured");
    let h = |k: &str| {
        p.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h(":method").as_deref(), Some("POST"));
    assert_eq!(h(":path").as_deref(), Some("/v1/chat/completions"));
    assert_eq!(h(":authority").as_deref(), Some("api.example.com"));
    assert_eq!(h("authorization").as_deref(), Some("Bearer k"));
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    assert_eq!(p.body, br#"{"model":"m","max_tokens":1}"#.to_vec());
    assert_eq!((p.interval_ms, p.timeout_ms), (2_000, 500));
    assert_eq!(p.expected_statuses, vec![200, 400]);
}

#[test]
fn recovery_probe_errors_name_the_key() {
    for (probe, want) in [
        (
            r#"{"intervall":2}"#,
            "upstreams[0].recovery_probe: unknown field `intervall`, expected one of `method`, `path`, `headers`, `body`, `interval`, `timeout`, `expected_statuses`",
        ),
        (
            r#"{"interval":0}"#,
            "upstreams[0].recovery_probe.interval: must be a duration in seconds, > 0 and <= 86400, got 0",
        ),
        (
            r#"{"timeout":-1}"#,
            "upstreams[0].recovery_probe.timeout: must be a duration in seconds, > 0 and <= 86400, got -1",
        ),
        (
            r#"{"path":"v1/models"}"#,
            "upstreams[0].recovery_probe.path: must start with '/' and be a printable header value",
        ),
        (
            r#"{"method":"get"}"#,
            "upstreams[0].recovery_probe.method: must be an HTTP method in upper case",
        ),
        (
            r#"{"expected_statuses":[]}"#,
            "upstreams[0].recovery_probe.expected_statuses: must list at least one status",
        ),
        (
            r#"{"expected_statuses":[200,99]}"#,
            "upstreams[0].recovery_probe.expected_statuses[1]: must be an HTTP status (100-599), got 99",
        ),
        (
            r#"{"headers":{"bad header":"x"}}"#,
            "upstreams[0].recovery_probe.headers.bad header: \"bad header\" is not a valid HTTP header name",
        ),
        (
            r#"{"interval":"2s"}"#,
            "upstreams[0].recovery_probe.interval: invalid type: string \"2s\", expected f64",
        ),
        (
            r#"[]"#,
            "upstreams[0].recovery_probe: invalid type: sequence, expected an object",
        ),
    ] {
        assert_eq!(err(&with_probe(probe)), want, "for {probe}");
    }
}

#[test]
fn retry_and_response_timeout_default_to_off_with_the_documented_retry_policy() {
    let c = Config::from_json(MINIMAL).expect("valid");
    let p = &c
        .upstream(c.upstream_id("openai").expect("configured"))
        .policy;
    assert_eq!(p.retry.attempts, 0);
    assert_eq!(
        p.retry.on,
        vec![
            FailureReason::Status5xx,
            FailureReason::ConnectFailure,
            FailureReason::RateLimit
        ]
    );
    assert_eq!(p.retry.max_retry_after_ms, 5_000);
    assert_eq!(p.response_timeout_ms, None);
}

#[test]
fn retry_and_response_timeout_are_read_per_upstream_over_the_defaults() {
    let c = Config::from_json(
        r#"{"defaults":{"retry":{"attempts":1},"response_timeout":2},
            "upstreams":[{"name":"a","retry":{"on":["timeout"],"max_retry_after":1.5}},{"name":"b"}],
            "routes":[{"upstream":"a"}]}"#,
    )
    .expect("valid");
    let a = &c.upstream(c.upstream_id("a").expect("a")).policy;
    assert_eq!(a.retry.attempts, 1, "inherited from defaults");
    assert_eq!(a.retry.on, vec![FailureReason::Timeout]);
    assert_eq!(a.retry.max_retry_after_ms, 1_500);
    assert_eq!(a.response_timeout_ms, Some(2_000));
    let b = &c.upstream(c.upstream_id("b").expect("b")).policy;
    assert_eq!(b.retry.attempts, 1);
    assert_eq!(b.retry.max_retry_after_ms, 5_000);
}

#[test]
fn retry_and_response_timeout_errors_name_their_key() {
    let up = |k: &str| with(&format!(r#"[{{"name":"a",{k}}}]"#), r#"[{"upstream":"a"}]"#);
    let e = Config::from_json(&up(r#""retry":{"attempts":6}"#)).unwrap_err();
    assert_eq!(e.path, "upstreams[0].retry.attempts");
    assert_eq!(
        e.kind,
        ConfigErrorKind::OutOfRange("must be at most 5, got 6".to_string())
    );
    let e = Config::from_json(&up(r#""retry":{"on":[]}"#)).unwrap_err();
    assert_eq!(e.path, "upstreams[0].retry.on");
    assert_eq!(e.kind, ConfigErrorKind::Empty("failure reason"));
    assert!(err(&up(r#""retry":{"on":["5xx"]}"#))
        .starts_with("upstreams[0].retry.on[0]: unknown variant"));
    assert_eq!(
        err(&up(r#""retry":{"max_retry_after":0}"#)),
        "upstreams[0].retry.max_retry_after: must be a duration in seconds, > 0 and <= 86400, got 0"
    );
    assert!(err(&up(r#""retry":{"attempt":1}"#)).starts_with("upstreams[0].retry"));
    assert!(matches!(
        Config::from_json(&up(r#""retry":{"attempt":1}"#))
            .unwrap_err()
            .kind,
        ConfigErrorKind::Syntax(_)
    ));
    assert!(err(&up(r#""retry":{"attempts":-1}"#)).starts_with("upstreams[0].retry.attempts"));
    assert_eq!(
        err(&up(r#""response_timeout":-1"#)),
        "upstreams[0].response_timeout: must be a duration in seconds, > 0 and <= 86400, got -1"
    );
    assert_eq!(
        err(r#"{"defaults":{"response_timeout":"2s"},"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#)
            .split(':')
            .next(),
        Some("defaults.response_timeout")
    );
}

#[test]
fn quota_recovery_timeout_and_context_window_fallback_are_read_and_checked() {
    let c = Config::from_json(&with(
        r#"[{"name":"a","context_window_fallback":"b","quota_recovery_timeout":60},{"name":"b"}]"#,
        r#"[{"upstream":"a"}]"#,
    ))
    .expect("valid");
    let (a, b) = (
        c.upstream_id("a").expect("a"),
        c.upstream_id("b").expect("b"),
    );
    assert_eq!(c.upstream(a).context_window_fallback, Some(b));
    assert_eq!(c.upstream(a).policy.quota_recovery_ms, 60_000);
    assert_eq!(c.upstream(b).context_window_fallback, None);
    assert_eq!(c.upstream(b).policy.quota_recovery_ms, 300_000, "default");
    let e = Config::from_json(&with(
        r#"[{"name":"a","context_window_fallback":"zz"}]"#,
        r#"[{"upstream":"a"}]"#,
    ))
    .unwrap_err();
    assert_eq!(e.path, "upstreams[0].context_window_fallback");
    assert_eq!(e.kind, ConfigErrorKind::UnknownUpstream("zz".to_string()));
    assert_eq!(
        err(&with(
            r#"[{"name":"a","context_window_fallback":"a"}]"#,
            r#"[{"upstream":"a"}]"#
        )),
        "upstreams[0].context_window_fallback: must name another upstream"
    );
    assert_eq!(
        err(&with(
            r#"[{"name":"a","quota_recovery_timeout":0}]"#,
            r#"[{"upstream":"a"}]"#
        )),
        "upstreams[0].quota_recovery_timeout: must be a duration in seconds, > 0 and <= 86400, got 0"
    );
    assert!(err(r#"{"defaults":{"context_window_fallback":"a"},"upstreams":[{"name":"a"}],"routes":[{"upstream":"a"}]}"#)
        .starts_with("defaults"), "an upstream key, not a policy key");
}

#[test]
fn the_fuzz_seed_with_every_key_is_a_valid_config() {
    let json = include_str!("../../tests/fuzz/corpus/config/every_key.json");
    if let Err(e) = Config::from_json(json) {
        panic!("every_key.json: {e}");
    }
}
