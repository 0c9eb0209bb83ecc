#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]
//! `examples/observability/` as the tests read it: the Grafana dashboard's queries with their
//! template variables filled in, the alert rules, the names a PromQL expression refers to
//! (parsed by the `promql-parser` crate), and the README's metric table.
//!
//! Included with `#[path = "common/observability.rs"] mod observability;` by
//! `tests/observability_files.rs` (static checks, promtool) and `tests/envoy_prometheus.rs`
//! (a real Prometheus scraping a real Envoy).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use promql_parser::label::Matchers;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

pub fn observability_path(name: &str) -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "examples",
        "observability",
        name,
    ]
    .iter()
    .collect()
}

pub fn observability_file(name: &str) -> String {
    let path = observability_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn dashboard() -> Json {
    serde_json::from_str(&observability_file("grafana-dashboard.json"))
        .expect("grafana-dashboard.json is valid JSON")
}

pub fn rule_file() -> Yaml {
    serde_yaml::from_str(&observability_file("prometheus-rules.yaml"))
        .expect("prometheus-rules.yaml is valid YAML")
}

pub fn rule_tests() -> Yaml {
    serde_yaml::from_str(&observability_file("prometheus-rules.test.yaml"))
        .expect("prometheus-rules.test.yaml is valid YAML")
}

// ---------------------------------------------------------------------------------------
// The dashboard

pub fn template_vars(d: &Json) -> Vec<Json> {
    d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// All panels, with the panels of collapsed rows flattened in.
pub fn all_panels(d: &Json) -> Vec<Json> {
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

pub fn panel_exprs(p: &Json) -> Vec<String> {
    p["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

/// One PromQL query of the dashboard and where it is.
#[derive(Debug, Clone)]
pub struct Query {
    pub place: String,
    pub expr: String,
}

/// Every PromQL query of the dashboard: panel targets (also inside collapsed rows) and
/// annotation queries. Template-variable queries (Grafana's `label_values`, not PromQL) are
/// in [`template_vars`].
pub fn dashboard_queries(d: &Json) -> Vec<Query> {
    let mut out = Vec::new();
    for p in all_panels(d) {
        for expr in panel_exprs(&p) {
            out.push(Query {
                place: format!("panel {} {:?}", p["id"], p["title"].as_str().unwrap_or("")),
                expr,
            });
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push(Query {
                place: format!("annotation {:?}", a["name"].as_str().unwrap_or("")),
                expr: expr.to_owned(),
            });
        }
    }
    out
}

/// `expr` with Grafana's variables replaced as Grafana would for "All" upstreams:
/// `$upstream` by its `allValue`, `$__rate_interval` and `$__range` by the given durations.
/// Panics on any other `$`, so a new variable cannot slip through unreplaced.
pub fn expand_grafana(d: &Json, expr: &str, rate_interval: &str, range: &str) -> String {
    let upstream_all = template_vars(d)
        .iter()
        .find(|v| v["name"] == "upstream")
        .and_then(|v| v["allValue"].as_str().map(str::to_owned))
        .expect("the upstream variable has an allValue");
    let mut out = expr.to_owned();
    for (var, value) in [
        ("__rate_interval", rate_interval),
        ("__range", range),
        ("upstream", upstream_all.as_str()),
    ] {
        out = out
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    assert!(
        !out.contains('$'),
        "unknown Grafana variable left in {expr:?} -> {out:?}"
    );
    out
}

// ---------------------------------------------------------------------------------------
// The rules

pub fn rules(file: &Yaml) -> Vec<Yaml> {
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

pub fn rule_exprs(file: &Yaml) -> Vec<String> {
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

// ---------------------------------------------------------------------------------------
// Names in PromQL, from promql-parser's AST

/// The metric and label names one PromQL expression refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Metric names of vector and range selectors.
    pub metrics: BTreeSet<String>,
    /// Labels in selectors' matchers, `by`/`without`, `on`/`ignoring` and
    /// `group_left`/`group_right`.
    pub labels: BTreeSet<String>,
}

impl ExprVisitor for Names {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        let mut modifier = |m: &Option<LabelModifier>| {
            if let Some(LabelModifier::Include(l) | LabelModifier::Exclude(l)) = m {
                self.labels.extend(l.labels.iter().cloned());
            }
        };
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Aggregate(a) => modifier(&a.modifier),
            Expr::Binary(b) => {
                if let Some(m) = &b.modifier {
                    modifier(&m.matching);
                    if let Some(l) = m.card.labels() {
                        self.labels.extend(l.labels.iter().cloned());
                    }
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

impl Names {
    fn selector(&mut self, vs: &VectorSelector) {
        self.metrics.extend(vs.name.clone());
        let Matchers {
            matchers,
            or_matchers,
        } = &vs.matchers;
        for m in matchers.iter().chain(or_matchers.iter().flatten()) {
            if m.name == "__name__" {
                self.metrics.insert(m.value.clone());
            } else {
                self.labels.insert(m.name.clone());
            }
        }
    }
}

/// Parses `expr` (PromQL, Grafana variables already expanded) and returns the names it uses.
pub fn names(expr: &str) -> Names {
    let ast = parser::parse(expr).unwrap_or_else(|e| panic!("not PromQL: {expr:?}: {e}"));
    let mut names = Names::default();
    match walk_expr(&mut names, &ast) {
        Ok(_) => names,
        Err(never) => match never {},
    }
}

// ---------------------------------------------------------------------------------------
// README.md's metric table

/// One row of the README's metric table.
#[derive(Debug, Clone)]
pub struct DocumentedMetric {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    pub labels: BTreeSet<String>,
}

/// `| `circuit_breaker_x` | type | label, label | meaning |` rows of README.md, by metric.
pub fn readme_metric_table() -> BTreeMap<String, DocumentedMetric> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut table = BTreeMap::new();
    for line in readme
        .lines()
        .filter(|l| l.starts_with("| `circuit_breaker_"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", metric, type, labels, meaning, ""]
        assert!(cells.len() >= 5, "README metric row: {line}");
        let name = cells[1].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let row = DocumentedMetric {
            kind: cells[2].to_owned(),
            labels,
        };
        assert!(
            table.insert(name.clone(), row).is_none(),
            "README lists {name} twice"
        );
    }
    assert!(!table.is_empty(), "README.md has no metric table");
    table
}

/// Suffixes of a Prometheus histogram's series.
pub const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

/// The README metric a Prometheus series name belongs to: itself, or for a documented
/// histogram the name without `_bucket`/`_sum`/`_count`. `None` if it is not documented.
pub fn documented_metric<'a>(
    table: &'a BTreeMap<String, DocumentedMetric>,
    series_name: &str,
) -> Option<(&'a str, &'a DocumentedMetric)> {
    if let Some((name, doc)) = table.get_key_value(series_name) {
        // A histogram exists in Prometheus only through its suffixed series.
        return (doc.kind != "histogram").then_some((name.as_str(), doc));
    }
    HISTOGRAM_SUFFIXES.iter().find_map(|suffix| {
        let base = series_name.strip_suffix(suffix)?;
        let (name, doc) = table.get_key_value(base)?;
        (doc.kind == "histogram").then_some((name.as_str(), doc))
    })
}
