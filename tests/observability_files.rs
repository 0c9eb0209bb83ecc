#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Keeps `examples/observability/` in step with the filter: the Grafana dashboard, the
//! Prometheus alerting rules and their promtool unit tests may only query metrics and labels
//! that `ai_circuit_breaker::metrics` defines (or that Prometheus itself adds), and the README
//! must give the `stats_tags` regex for every label.
//!
//! PromQL is tokenized simply: string literals, `[...]` ranges and Grafana `$variables` are
//! skipped; every `circuit_breaker_*` identifier (and any identifier directly before `{`) is a
//! metric name; identifiers inside `by/without/on/ignoring/group_left/group_right (...)`, before
//! a matcher operator inside `{...}`, and the last argument of `label_values(...)` are labels.
//! `promtool` is not needed; README.md shows how to run it as well.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ai_circuit_breaker::metrics::{stats_tag_regex, LABEL_NAMES, METRIC_NAMES};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// Labels that Prometheus, its scrape configuration or histograms add on top of the filter's.
const SCRAPE_LABELS: &[&str] = &["le", "instance", "job", "pod", "namespace"];
/// Labels the rule file adds itself (in `labels:`), so annotations may template them.
const RULE_LABELS: &[&str] = &["severity", "route_group"];
/// Metrics Envoy exports as Prometheus histograms (`_bucket`, `_sum`, `_count` only).
const HISTOGRAMS: &[&str] = &["circuit_breaker_open_duration_ms"];
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];
const SEVERITIES: &[&str] = &["critical", "warning", "info"];

fn observability_file(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "examples",
        "observability",
        name,
    ]
    .iter()
    .collect();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn dashboard() -> Json {
    serde_json::from_str(&observability_file("grafana-dashboard.json"))
        .expect("grafana-dashboard.json is valid JSON")
}

fn rule_file() -> Yaml {
    serde_yaml::from_str(&observability_file("prometheus-rules.yaml"))
        .expect("prometheus-rules.yaml is valid YAML")
}

fn rule_tests() -> Yaml {
    serde_yaml::from_str(&observability_file("prometheus-rules.test.yaml"))
        .expect("prometheus-rules.test.yaml is valid YAML")
}

// ---------------------------------------------------------------------------------------
// A deliberately small PromQL tokenizer.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A string literal (contents are label values or regexes, never names).
    Str,
    /// Punctuation or an operator: `(`, `{`, `=~`, `==`, `,` ...
    Sym(String),
    /// A number, a duration outside brackets, a `[...]` range or a Grafana `$variable`.
    Other,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn tokenize(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            toks.push(Tok::Str);
        } else if c == '[' {
            // Range or subquery selector, possibly with a Grafana variable: `[$__rate_interval]`.
            let mut depth = 0;
            while i < chars.len() {
                match chars[i] {
                    '[' => depth += 1,
                    ']' => depth -= 1,
                    _ => {}
                }
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            toks.push(Tok::Other);
        } else if c == '$' {
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
            }
            toks.push(Tok::Other);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
            toks.push(Tok::Other);
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            if ["=~", "!~", "!=", "==", ">=", "<="].contains(&two.as_str()) {
                toks.push(Tok::Sym(two));
                i += 2;
            } else {
                toks.push(Tok::Sym(c.to_string()));
                i += 1;
            }
        }
    }
    toks
}

/// Metric and label names one expression refers to.
#[derive(Debug, Default)]
struct Refs {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

fn is_sym(t: Option<&Tok>, s: &str) -> bool {
    matches!(t, Some(Tok::Sym(x)) if x == s)
}

fn scan(expr: &str) -> Refs {
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const MATCH_OPS: &[&str] = &["=", "!=", "=~", "!~"];
    let toks = tokenize(expr);
    let mut refs = Refs::default();
    let mut brace_depth = 0usize;
    for (i, tok) in toks.iter().enumerate() {
        match tok {
            Tok::Sym(s) if s == "{" => brace_depth += 1,
            Tok::Sym(s) if s == "}" => brace_depth = brace_depth.saturating_sub(1),
            Tok::Ident(name) => {
                let next = toks.get(i + 1);
                let in_matcher = brace_depth > 0
                    && matches!(next, Some(Tok::Sym(op)) if MATCH_OPS.contains(&op.as_str()));
                if in_matcher {
                    refs.labels.insert(name.clone());
                } else if name.starts_with("circuit_breaker_") || is_sym(next, "{") {
                    refs.metrics.insert(name.clone());
                } else if GROUPING.contains(&name.as_str()) && is_sym(next, "(") {
                    for t in &toks[i + 2..] {
                        match t {
                            Tok::Ident(label) => {
                                refs.labels.insert(label.clone());
                            }
                            Tok::Sym(s) if s == ")" => break,
                            _ => {}
                        }
                    }
                } else if name == "label_values" && is_sym(next, "(") {
                    // Grafana: label_values(metric, label) or label_values(label). The label is
                    // the last identifier before the closing parenthesis at this depth.
                    let mut depth = 0usize;
                    let mut last = None;
                    for t in &toks[i + 1..] {
                        match t {
                            Tok::Sym(s) if s == "(" || s == "{" => depth += 1,
                            Tok::Sym(s) if s == ")" || s == "}" => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Tok::Ident(id) if depth == 1 => last = Some(id.clone()),
                            _ => {}
                        }
                    }
                    refs.labels.extend(last);
                }
            }
            _ => {}
        }
    }
    refs
}

/// A metric name as Prometheus sees it is defined when it is a non-histogram metric of the
/// filter, or a histogram of the filter plus `_bucket`, `_sum` or `_count`.
fn metric_is_defined(name: &str) -> bool {
    if METRIC_NAMES.contains(&name) {
        return !HISTOGRAMS.contains(&name);
    }
    HISTOGRAM_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| HISTOGRAMS.contains(&base) && METRIC_NAMES.contains(&base))
    })
}

/// The filter's metric a Prometheus name belongs to (`_bucket`/`_sum`/`_count` stripped).
fn base_metric(name: &str) -> &str {
    HISTOGRAM_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| HISTOGRAMS.contains(base))
        .unwrap_or(name)
}

fn label_is_known(label: &str) -> bool {
    LABEL_NAMES.contains(&label) || SCRAPE_LABELS.contains(&label)
}

fn unknown_metrics(expr: &str) -> Vec<String> {
    scan(expr)
        .metrics
        .into_iter()
        .filter(|m| !metric_is_defined(m))
        .collect()
}

fn unknown_labels(expr: &str) -> Vec<String> {
    scan(expr)
        .labels
        .into_iter()
        .filter(|l| !label_is_known(l))
        .collect()
}

/// Fails with every offending expression at once, so one run shows all of them.
fn assert_only_known_names(what: &str, exprs: &[String]) {
    assert!(!exprs.is_empty(), "{what}: found no PromQL to check");
    let mut problems = Vec::new();
    for expr in exprs {
        let metrics = unknown_metrics(expr);
        if !metrics.is_empty() {
            problems.push(format!("unknown metric(s) {metrics:?} in: {expr}"));
        }
        let labels = unknown_labels(expr);
        if !labels.is_empty() {
            problems.push(format!("unknown label(s) {labels:?} in: {expr}"));
        }
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Collecting PromQL from the files.

/// Every `expr` anywhere in the dashboard (panel targets, panels nested in collapsed rows,
/// annotation queries) plus every templating variable query.
fn dashboard_exprs(d: &Json) -> Vec<String> {
    fn walk(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Json::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(d, &mut out);
    for var in template_vars(d) {
        if var["type"] != "query" {
            continue;
        }
        match &var["query"] {
            Json::String(q) => out.push(q.clone()),
            Json::Object(q) => out.extend(q.get("query").and_then(Json::as_str).map(str::to_owned)),
            _ => {}
        }
        out.extend(var["definition"].as_str().map(str::to_owned));
    }
    out
}

fn template_vars(d: &Json) -> Vec<Json> {
    d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// All panels, with the panels of collapsed rows flattened in.
fn all_panels(d: &Json) -> Vec<Json> {
    fn walk(panels: &Json, out: &mut Vec<Json>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

fn panel_exprs(p: &Json) -> Vec<String> {
    p["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

fn rules(file: &Yaml) -> Vec<Yaml> {
    let groups = file["groups"]
        .as_sequence()
        .expect("rule file has a `groups:` list");
    assert!(!groups.is_empty(), "rule file has no groups");
    groups
        .iter()
        .flat_map(|g| {
            assert!(g["name"].as_str().is_some(), "every rule group has a name");
            g["rules"]
                .as_sequence()
                .expect("every group has `rules:`")
                .clone()
        })
        .collect()
}

fn rule_exprs(file: &Yaml) -> Vec<String> {
    rules(file)
        .iter()
        .map(|r| {
            r["expr"]
                .as_str()
                .expect("every rule has a string expr")
                .to_owned()
        })
        .collect()
}

fn rule_test_series(tests: &Yaml) -> Vec<String> {
    tests["tests"]
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
        .collect()
}

// ---------------------------------------------------------------------------------------
// The scanner itself: negative checks so the file checks below cannot pass vacuously.

#[test]
fn scanner_flags_a_made_up_metric() {
    let sample = r#"sum by (upstream) (rate(circuit_breaker_made_up_metric{upstream=~"$upstream"}[5m]))
        / sum by (upstream) (rate(circuit_breaker_requests[$__rate_interval]))"#;
    assert_eq!(
        unknown_metrics(sample),
        vec!["circuit_breaker_made_up_metric".to_owned()]
    );

    // Envoy adds no `_total`, histograms exist only with their suffixes, and only histograms
    // have suffixes.
    assert_eq!(
        unknown_metrics("rate(circuit_breaker_requests_total[5m])").len(),
        1
    );
    assert_eq!(
        unknown_metrics("circuit_breaker_open_duration_ms > 0").len(),
        1
    );
    assert_eq!(unknown_metrics("circuit_breaker_requests_bucket").len(), 1);
    assert!(unknown_metrics("rate(circuit_breaker_open_duration_ms_bucket[5m])").is_empty());

    // A misspelt selector is still caught as a metric name.
    assert_eq!(
        unknown_metrics(r#"circut_breaker_state{upstream="a"}"#),
        vec!["circut_breaker_state".to_owned()]
    );
}

#[test]
fn scanner_flags_an_unknown_label_and_ignores_strings_ranges_and_variables() {
    let sample = r#"sum by (model, upstream) (rate(circuit_breaker_requests{tenant="a", outcome!~"x"}[$__rate_interval]))"#;
    assert_eq!(
        unknown_labels(sample),
        vec!["model".to_owned(), "tenant".to_owned()]
    );
    assert_eq!(
        unknown_labels("label_values(circuit_breaker_state, model)"),
        vec!["model".to_owned()]
    );
    assert_eq!(
        unknown_labels("a / on (cluster) group_left (region) b"),
        vec!["cluster".to_owned(), "region".to_owned()]
    );

    let quiet = r#"circuit_breaker_state{upstream="circuit_breaker_fake", to='by (x)'} offset 5m
        # circuit_breaker_in_a_comment
        and circuit_breaker_state[${__range}]"#;
    let refs = scan(quiet);
    assert_eq!(
        refs.metrics.into_iter().collect::<Vec<_>>(),
        vec!["circuit_breaker_state".to_owned()]
    );
    assert_eq!(
        refs.labels.into_iter().collect::<Vec<_>>(),
        vec!["to".to_owned(), "upstream".to_owned()]
    );
}

#[test]
fn histogram_list_matches_the_filter() {
    for h in HISTOGRAMS {
        assert!(METRIC_NAMES.contains(h), "{h} is not in METRIC_NAMES");
    }
    assert_eq!(
        base_metric("circuit_breaker_open_duration_ms_count"),
        "circuit_breaker_open_duration_ms"
    );
    assert_eq!(
        base_metric("circuit_breaker_requests_count"),
        "circuit_breaker_requests_count"
    );
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
fn dashboard_queries_only_metrics_the_filter_defines() {
    let d = dashboard();
    let exprs = dashboard_exprs(&d);
    assert!(
        exprs.len() >= 15,
        "only {} dashboard queries found",
        exprs.len()
    );
    // Queries inside the collapsed row are part of what is checked.
    assert!(exprs.iter().any(|e| e.contains("circuit_breaker_alerts")));
    assert_only_known_metrics("dashboard queries", &exprs);
}

#[test]
fn dashboard_queries_only_labels_the_filter_or_prometheus_adds() {
    assert_only_known_names("dashboard", &dashboard_exprs(&dashboard()));
}

#[test]
fn dashboard_charts_every_metric_the_filter_defines() {
    let charted: BTreeSet<String> = dashboard_exprs(&dashboard())
        .iter()
        .flat_map(|e| scan(e).metrics)
        .map(|m| base_metric(&m).to_owned())
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
fn dashboard_state_panel_maps_0_closed_1_open_2_half_open() {
    let d = dashboard();
    let state_panels: Vec<Json> = all_panels(&d)
        .into_iter()
        .filter(|p| p["type"] == "state-timeline" || p["type"] == "timeseries")
        .filter(|p| {
            panel_exprs(p)
                .iter()
                .any(|e| scan(e).metrics.contains("circuit_breaker_state"))
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
    let exprs = dashboard_exprs(&dashboard());
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
fn rules_query_only_metrics_the_filter_defines() {
    let exprs = rule_exprs(&rule_file());
    assert_only_known_metrics("rules query", &exprs);
}

/// Fails with every unknown metric and the expression it appears in.
fn assert_only_known_metrics(what: &str, exprs: &[String]) {
    let problems: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            unknown_metrics(e)
                .into_iter()
                .map(move |m| format!("{m} in: {e}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{what} unknown metrics:\n{}",
        problems.join("\n")
    );
}

#[test]
fn rules_use_only_labels_the_filter_or_prometheus_adds() {
    let file = rule_file();
    assert_only_known_names("rules", &rule_exprs(&file));

    // `{{ $labels.x }}` in annotations must name a label the alert can carry.
    for r in rules(&file) {
        let alert = r["alert"].as_str().unwrap();
        let annotations = r["annotations"].as_mapping().unwrap();
        for text in annotations.values().filter_map(Yaml::as_str) {
            for piece in text.split("$labels.").skip(1) {
                let label: String = piece.chars().take_while(|c| is_ident_char(*c)).collect();
                assert!(
                    label_is_known(&label) || RULE_LABELS.contains(&label.as_str()),
                    "{alert}: annotation uses unknown label {label}"
                );
            }
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
    assert_only_known_names("rule unit-test series", &rule_test_series(&tests));

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
