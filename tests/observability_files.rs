#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Keeps `examples/observability/` in step with the filter, without a running Envoy:
//!
//! - `promtool check rules` and `promtool test rules` (Debian's `prometheus` package, which
//!   `make test` installs) on the shipped rules and their unit tests;
//! - the Grafana dashboard, the rules and the rule unit tests may only use metrics and labels
//!   that `ai_circuit_breaker::metrics` defines (or that Prometheus adds). PromQL is parsed by
//!   the `promql-parser` crate (see `tests/common/observability.rs`);
//! - README.md's metric table lists exactly the filter's metrics, and the observability README
//!   gives the `stats_tags` regex for every label.
//!
//! `tests/envoy_prometheus.rs` runs the same files in a real Prometheus scraping a real Envoy.

#[path = "common/observability.rs"]
mod observability;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use ai_circuit_breaker::metrics::{stats_tag_regex, LABEL_NAMES, METRIC_NAMES};
use observability::*;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// Labels that Prometheus, its scrape configuration or histograms add on top of the filter's.
const SCRAPE_LABELS: &[&str] = &["le", "instance", "job", "pod", "namespace"];
/// Labels the rule file adds itself (in `labels:`), so annotations may template them.
const RULE_LABELS: &[&str] = &["severity", "route_group"];
const SEVERITIES: &[&str] = &["critical", "warning", "info"];

// ---------------------------------------------------------------------------------------
// promtool

/// Runs `promtool ARGS` in `dir` and returns (success, stdout + stderr).
fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}). It comes with Debian's prometheus package, which \
                 `make test` installs (apt-get install prometheus)."
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn observability_dir() -> std::path::PathBuf {
    observability_path("")
}

#[test]
fn promtool_check_rules_accepts_the_shipped_rules() {
    let (ok, out) = promtool(
        &observability_dir(),
        &["check", "rules", "prometheus-rules.yaml"],
    );
    assert!(ok, "promtool check rules failed:\n{out}");
    let count = rules(&rule_file()).len();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let (ok, out) = promtool(
        &observability_dir(),
        &["test", "rules", "prometheus-rules.test.yaml"],
    );
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_test_fails_when_an_expected_alert_does_not_fire() {
    // The same unit tests with one expectation changed: CircuitBreakerOpen already firing at
    // 5m, before its `for: 5m` has passed. promtool must report the failure, so the test
    // above cannot pass on a run that checks nothing.
    let dir = std::env::temp_dir().join(format!("aicb-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        observability_path("prometheus-rules.yaml"),
        dir.join("prometheus-rules.yaml"),
    )
    .unwrap();
    let mut tests = rule_tests();
    let cases = tests["tests"][0]["alert_rule_test"]
        .as_sequence_mut()
        .unwrap();
    let firing = cases
        .iter()
        .find(|c| {
            c["alertname"] == "CircuitBreakerOpen"
                && c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty())
        })
        .expect("a case where CircuitBreakerOpen fires")
        .clone();
    let early = cases
        .iter_mut()
        .find(|c| {
            c["alertname"] == "CircuitBreakerOpen"
                && c["exp_alerts"].as_sequence().is_some_and(|a| a.is_empty())
        })
        .expect("a case where CircuitBreakerOpen does not fire yet");
    early["exp_alerts"] = firing["exp_alerts"].clone();
    std::fs::write(
        dir.join("broken.test.yaml"),
        serde_yaml::to_string(&tests).unwrap(),
    )
    .unwrap();
    let (ok, out) = promtool(&dir, &["test", "rules", "broken.test.yaml"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "promtool accepted a wrong expectation:\n{out}");
    assert!(out.contains("CircuitBreakerOpen"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Names: only what the filter defines

/// The names a dashboard query uses, with Grafana's variables expanded.
fn promql(d: &Json, expr: &str) -> Names {
    names(&expand_grafana(d, expr, "5m", "1h"))
}

/// A metric name as Prometheus sees it is defined when it is a non-histogram metric of the
/// filter, or a histogram of the filter plus `_bucket`, `_sum` or `_count`.
fn metric_is_defined(name: &str) -> bool {
    documented_metric(&readme_metric_table(), name)
        .is_some_and(|(base, _)| METRIC_NAMES.contains(&base))
}

fn label_is_known(label: &str) -> bool {
    LABEL_NAMES.contains(&label) || SCRAPE_LABELS.contains(&label)
}

/// Every unknown metric or label in `exprs`, one line each.
fn unknown_names(exprs: &[Names]) -> Vec<String> {
    let mut problems = Vec::new();
    for n in exprs {
        for m in n.metrics.iter().filter(|m| !metric_is_defined(m)) {
            problems.push(format!("unknown metric {m}"));
        }
        for l in n.labels.iter().filter(|l| !label_is_known(l)) {
            problems.push(format!("unknown label {l}"));
        }
    }
    problems
}

#[track_caller]
fn assert_only_known_names(what: &str, exprs: &[String], parse: impl Fn(&str) -> Names) {
    assert!(!exprs.is_empty(), "{what}: found no PromQL to check");
    let problems: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            unknown_names(&[parse(e)])
                .into_iter()
                .map(move |p| format!("{p} in: {e}"))
        })
        .collect();
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

#[test]
fn name_check_flags_made_up_metrics_and_labels() {
    let n = names(
        r#"sum by (model, upstream) (rate(circuit_breaker_made_up{tenant="a", outcome!~"x"}[5m]))
           / on (cluster) group_left (region) circut_breaker_state"#,
    );
    assert_eq!(
        n.metrics,
        BTreeSet::from([
            "circuit_breaker_made_up".into(),
            "circut_breaker_state".into()
        ])
    );
    assert_eq!(
        unknown_names(&[n]),
        vec![
            "unknown metric circuit_breaker_made_up",
            "unknown metric circut_breaker_state",
            "unknown label cluster",
            "unknown label model",
            "unknown label region",
            "unknown label tenant",
        ]
    );
    // Envoy adds no `_total`; histograms exist only with their suffixes, and only histograms
    // have suffixes.
    for bad in [
        "circuit_breaker_requests_total",
        "circuit_breaker_open_duration_ms",
        "circuit_breaker_requests_bucket",
    ] {
        assert!(!metric_is_defined(bad), "{bad}");
    }
    assert!(metric_is_defined("circuit_breaker_open_duration_ms_bucket"));
    assert!(metric_is_defined("circuit_breaker_state"));
}

#[test]
fn readme_metric_table_lists_exactly_the_filter_metrics_and_labels() {
    let table = readme_metric_table();
    let documented: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    let defined: BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
    assert_eq!(
        documented, defined,
        "README.md metric table vs METRIC_NAMES"
    );
    let labels: BTreeSet<&str> = table
        .values()
        .flat_map(|m| m.labels.iter().map(String::as_str))
        .collect();
    let defined: BTreeSet<&str> = LABEL_NAMES.iter().copied().collect();
    assert_eq!(
        labels, defined,
        "labels in README.md's metric table vs LABEL_NAMES"
    );
    for (name, m) in &table {
        assert!(
            ["counter", "gauge", "histogram"].contains(&m.kind.as_str()),
            "{name}: type {}",
            m.kind
        );
    }
}

#[test]
fn dashboard_queries_only_metrics_and_labels_the_filter_defines() {
    let d = dashboard();
    let exprs: Vec<String> = dashboard_queries(&d).into_iter().map(|q| q.expr).collect();
    assert!(
        exprs.len() >= 15,
        "only {} dashboard queries found",
        exprs.len()
    );
    // Queries inside the collapsed row and the annotation are part of what is checked.
    assert!(exprs.iter().any(|e| e.contains("circuit_breaker_alerts")));
    assert!(exprs.iter().any(|e| e.contains(r#"to="open""#)));
    assert_only_known_names("dashboard", &exprs, |e| promql(&d, e));
}

#[test]
fn dashboard_charts_every_metric_the_filter_defines() {
    let d = dashboard();
    let table = readme_metric_table();
    let charted: BTreeSet<String> = dashboard_queries(&d)
        .iter()
        .flat_map(|q| promql(&d, &q.expr).metrics)
        .filter_map(|m| documented_metric(&table, &m).map(|(base, _)| base.to_owned()))
        .collect();
    let missing: Vec<&&str> = METRIC_NAMES
        .iter()
        .filter(|m| !charted.contains(**m))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics without a dashboard panel: {missing:?}"
    );
}

#[test]
fn rules_query_only_metrics_and_labels_the_filter_defines() {
    let file = rule_file();
    assert_only_known_names("rules", &rule_exprs(&file), names);

    // `{{ $labels.x }}` in annotations must name a label the alert can carry.
    for r in rules(&file) {
        let alert = r["alert"].as_str().unwrap();
        let annotations = r["annotations"].as_mapping().unwrap();
        for text in annotations.values().filter_map(Yaml::as_str) {
            for piece in text.split("$labels.").skip(1) {
                let label: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    label_is_known(&label) || RULE_LABELS.contains(&label.as_str()),
                    "{alert}: annotation uses unknown label {label}"
                );
            }
        }
    }
}

#[test]
fn rule_unit_tests_feed_only_metrics_and_labels_the_filter_defines() {
    let tests = rule_tests();
    let files: Vec<&str> = tests["rule_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(files, vec!["prometheus-rules.yaml"]);
    let series: Vec<String> = tests["tests"]
        .as_sequence()
        .expect("rule tests have a `tests:` list")
        .iter()
        .flat_map(|t| t["input_series"].as_sequence().cloned().unwrap_or_default())
        .map(|s| {
            s["series"]
                .as_str()
                .expect("every input series is a string")
                .to_owned()
        })
        .collect();
    assert_only_known_names("rule unit-test series", &series, names);

    // Every alert has a promtool test case in which it fires.
    let fired: BTreeSet<String> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["alert_rule_test"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|a| a["exp_alerts"].as_sequence().is_some_and(|s| !s.is_empty()))
        .filter_map(|a| a["alertname"].as_str().map(str::to_owned))
        .collect();
    for r in rules(&rule_file()) {
        let alert = r["alert"].as_str().unwrap();
        assert!(
            fired.contains(alert),
            "no promtool test case where {alert} fires"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Grafana dashboard.

#[test]
fn dashboard_is_an_importable_grafana_dashboard() {
    let d = dashboard();
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion too old"
    );

    let vars = template_vars(&d);
    let ds = vars
        .iter()
        .find(|v| v["name"] == "DS_PROMETHEUS")
        .expect("a DS_PROMETHEUS template variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let upstream = vars
        .iter()
        .find(|v| v["name"] == "upstream")
        .expect("an upstream variable");
    assert_eq!(upstream["type"], "query");
    assert_eq!(
        upstream["definition"],
        "label_values(circuit_breaker_state, upstream)"
    );

    let panels = all_panels(&d);
    let mut ids = BTreeSet::new();
    for p in &panels {
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        for k in ["x", "y", "w", "h"] {
            assert!(
                p["gridPos"][k].as_u64().is_some(),
                "panel {id} lacks gridPos.{k}"
            );
        }
        assert!(p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "panel {id} has no title"
        );
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {id} datasource"
        );
        let targets = p["targets"].as_array().expect("every panel has targets");
        assert!(!targets.is_empty(), "panel {id} has no targets");
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "panel {id}: target without expr"
            );
            assert!(
                ref_ids.insert(t["refId"].as_str().expect("target refId")),
                "panel {id}: duplicate refId"
            );
            assert_eq!(
                t["datasource"]["uid"], "${DS_PROMETHEUS}",
                "panel {id} target datasource"
            );
        }
    }
    assert!(
        panels.iter().any(|p| p["type"] == "row"
            && p["collapsed"] == true
            && p["panels"].as_array().is_some_and(|n| !n.is_empty())),
        "expected a collapsed row with nested panels (exercises nested-panel scanning)"
    );
}

#[test]
fn dashboard_state_panel_maps_0_closed_1_open_2_half_open() {
    let d = dashboard();
    let state_panels: Vec<Json> = all_panels(&d)
        .into_iter()
        .filter(|p| p["type"] == "state-timeline" || p["type"] == "timeseries")
        .filter(|p| {
            panel_exprs(p)
                .iter()
                .any(|e| promql(&d, e).metrics.contains("circuit_breaker_state"))
        })
        .collect();
    assert!(
        !state_panels.is_empty(),
        "no state timeline / time series over circuit_breaker_state"
    );
    for p in &state_panels {
        let mappings = p["fieldConfig"]["defaults"]["mappings"]
            .as_array()
            .expect("value mappings");
        let options = mappings
            .iter()
            .find(|m| m["type"] == "value")
            .map(|m| &m["options"])
            .unwrap_or_else(|| panic!("panel {} has no value mapping", p["title"]));
        for (value, text, color) in [
            ("0", "closed", "green"),
            ("1", "open", "red"),
            ("2", "half_open", "yellow"),
        ] {
            assert_eq!(
                options[value]["text"], text,
                "panel {}: value {value}",
                p["title"]
            );
            assert_eq!(
                options[value]["color"], color,
                "panel {}: value {value}",
                p["title"]
            );
        }
    }
    assert!(state_panels.iter().any(|p| p["type"] == "state-timeline"));
}

#[test]
fn dashboard_has_failure_fallback_share_and_recovery_panels() {
    let exprs: Vec<String> = dashboard_queries(&dashboard())
        .into_iter()
        .map(|q| q.expr)
        .collect();
    let has = |needles: &[&str]| exprs.iter().any(|e| needles.iter().all(|n| e.contains(n)));
    assert!(
        has(&["sum by (upstream, reason)", "rate(circuit_breaker_failures"]),
        "failure rate by reason"
    );
    assert!(
        has(&["circuit_breaker_failures", "/", "circuit_breaker_requests"]),
        "failure ratio"
    );
    assert!(
        has(&["circuit_breaker_fallbacks", "/", "circuit_breaker_requests"]),
        "fallback share"
    );
    assert!(
        has(&[
            "histogram_quantile",
            "le",
            "circuit_breaker_open_duration_ms_bucket"
        ]),
        "open duration quantiles"
    );
    for m in [
        "circuit_breaker_rejected",
        "circuit_breaker_all_open",
        "circuit_breaker_transitions",
        "circuit_breaker_probes",
        "circuit_breaker_recovery_probes",
        "circuit_breaker_failovers",
    ] {
        assert!(has(&[m]), "no panel for {m}");
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus rules.

#[test]
fn rules_each_have_alert_expr_severity_summary_description_and_runbook() {
    let file = rule_file();
    let rules = rules(&file);
    assert!(rules.len() >= 4, "expected at least 4 alerting rules");
    let mut names = BTreeSet::new();
    for r in &rules {
        let alert = r["alert"]
            .as_str()
            .expect("every rule is an alerting rule with `alert:`");
        assert!(names.insert(alert.to_owned()), "duplicate alert {alert}");
        assert!(
            r["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
            "{alert}: expr"
        );
        let severity = r["labels"]["severity"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert}: labels.severity"));
        assert!(
            SEVERITIES.contains(&severity),
            "{alert}: severity {severity}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                r["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{alert}: annotations.{key}"
            );
        }
        if let Some(f) = r.get("for") {
            let f = f
                .as_str()
                .unwrap_or_else(|| panic!("{alert}: `for` is a duration string"));
            assert!(
                f.ends_with('m') || f.ends_with('s') || f.ends_with('h'),
                "{alert}: for {f}"
            );
        }
    }
}

#[test]
fn rules_cover_long_open_all_open_flapping_and_failover_failures() {
    let file = rule_file();
    let rules = rules(&file);
    let find = |needles: &[&str]| {
        rules.iter().find(|r| {
            let e = r["expr"].as_str().unwrap();
            needles.iter().all(|n| e.contains(n))
        })
    };
    let open = find(&["circuit_breaker_state == 1"]).expect("a breaker-open-too-long rule");
    assert!(open.get("for").is_some(), "the open rule needs `for:`");
    find(&["increase(circuit_breaker_all_open"]).expect("an all-upstreams-open (503) rule");
    find(&["circuit_breaker_state", "upstream=~", "== bool 1"])
        .expect("a state-based route-group rule");
    find(&["circuit_breaker_transitions", r#"to="open""#, "[30m]"]).expect("a flapping rule");
    find(&["circuit_breaker_failovers", r#"result="failure""#]).expect("a failover-failure rule");
}

// ---------------------------------------------------------------------------------------
// README: the Envoy and Istio settings that turn stat-name segments into labels.

#[test]
fn readme_gives_the_stats_tags_regex_and_istio_tag_for_every_label() {
    let readme = observability_file("README.md");
    for label in LABEL_NAMES {
        let regex = stats_tag_regex(label);
        assert!(
            readme.contains(&format!("'{regex}'")),
            "README lacks stats_tags regex {regex}"
        );
        assert!(
            readme.contains(&format!("tag_name: {label}")),
            "README lacks tag_name: {label}"
        );
    }
    let istio = readme
        .lines()
        .find(|l| l.contains("sidecar.istio.io/extraStatTags:"))
        .expect("README shows the sidecar.istio.io/extraStatTags annotation");
    for label in LABEL_NAMES {
        assert!(
            istio.contains(label),
            "extraStatTags annotation lacks {label}: {istio}"
        );
    }
}
