#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shipped observability files against a real Prometheus: Debian's `prometheus` (which
//! `make test` installs) scrapes a real Envoy's `/stats/prometheus` every second while the
//! mock provider drives an outage of openai and its recovery. Through Prometheus's HTTP API:
//!
//! - `CircuitBreakerOpen`, from the shipped rules with every `for:` shortened to 2 s in a
//!   generated copy, goes pending, then firing, and resolves after recovery; every shipped
//!   rule loads and evaluates without error;
//! - every query of the Grafana dashboard returns at least one series over the run, with its
//!   variables set as Grafana sets them for "All" upstreams and a 1 s scrape interval;
//! - every `circuit_breaker_*` series carries exactly the labels README.md's metric table
//!   lists for its metric (plus `instance`, `job`, and `le` on histogram buckets), and every
//!   metric of the table has a series.
//!
//! Prometheus runs on a free loopback port with its config, rules and data in a temp dir;
//! it is killed by PID and the dir removed on drop, also when the test fails.

mod common;
#[path = "common/observability.rs"]
mod observability;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use observability::*;
use serde_json::{json, Value};

/// Prometheus's scrape and rule evaluation interval.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// Every `for:` of the shipped rules, in the generated test rule file.
const ALERT_FOR: &str = "2s";
/// How long openai's breaker stays open: long enough for pending + `for:` + firing.
const RECOVERY_TIMEOUT_S: u64 = 10;
const ALERT: &str = "CircuitBreakerOpen";

// ---------------------------------------------------------------------------------------
// A Prometheus server for one test

struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT`
    addr: String,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Fails the test, with how to get it, when there is no `prometheus` binary on the PATH.
fn require_prometheus() {
    match Command::new("prometheus").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "cannot run `prometheus` ({other:?}). It comes with Debian's prometheus package, \
             which `make test` installs (apt-get install prometheus)."
        ),
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target`'s `/stats/prometheus` with `rules` loaded, and
    /// waits until it is ready. The port is free when picked, but another process may take
    /// it before Prometheus binds it: a bind failure is retried on a new port.
    fn start(target: &str, rules: &serde_yaml::Value) -> Prometheus {
        require_prometheus();
        let mut log = String::new();
        for attempt in 0..3 {
            let mut p = Prometheus::spawn(target, rules, attempt);
            let ready = wait_until(Duration::from_secs(20), || {
                matches!(p.child.try_wait(), Ok(Some(_)))
                    || try_http(
                        "GET",
                        &format!("{}/-/ready", p.addr),
                        &[],
                        b"",
                        Duration::from_secs(1),
                    )
                    .is_ok_and(|r| r.status == 200)
            });
            if ready && matches!(p.child.try_wait(), Ok(None)) {
                return p;
            }
            log = p.log();
            if !log.contains("address already in use") {
                break;
            }
        }
        panic!("prometheus did not become ready in 20 s; its log:\n{log}");
    }

    /// Writes the config and rules into a new temp dir and starts Prometheus on a free port.
    fn spawn(target: &str, rules: &serde_yaml::Value, attempt: u32) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "aicb-prometheus-{}-{attempt}-{}",
            std::process::id(),
            unix_now()
        ));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("rules.yaml"),
            serde_yaml::to_string(rules).unwrap(),
        )
        .unwrap();
        let interval = format!("{}s", SCRAPE_INTERVAL.as_secs());
        let config = json!({
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [dir.join("rules.yaml")],
            "scrape_configs": [{
                "job_name": "envoy",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [target]}],
            }],
        });
        fs::write(
            dir.join("prometheus.yml"),
            serde_yaml::to_string(&config).unwrap(),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = File::create(dir.join("prometheus.log")).unwrap();
        let spawned = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        match spawned {
            Ok(child) => Prometheus { child, dir, addr },
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                panic!("cannot start prometheus: {e}");
            }
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>?<params>`; returns `data` of a `"status": "success"` answer.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let url = format!("{}/api/v1/{path}?{query}", self.addr);
        let r = http("GET", &url, &[], b"");
        let v = r.json();
        assert!(
            r.status == 200 && v["status"] == "success",
            "GET /api/v1/{path} {params:?}: {} {v}",
            r.status
        );
        v["data"].clone()
    }

    /// The series `query` returns at any step in [start, end], 1 s apart.
    fn query_range(&self, query: &str, start: f64, end: f64) -> Vec<Value> {
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        let data = self.api(
            "query_range",
            &[
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", "1"),
            ],
        );
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of an instant query that returns one sample, if it does.
    fn scalar(&self, query: &str) -> Option<f64> {
        let data = self.api("query", &[("query", query)]);
        let result = data["result"].as_array()?;
        let v = result.first()?["value"][1].as_str()?;
        v.parse().ok()
    }

    /// The alerting rule `name` as `/api/v1/rules` reports it.
    fn alert_rule(&self, name: &str) -> Value {
        let data = self.api("rules", &[("type", "alert")]);
        data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no alerting rule {name} loaded: {data}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- prometheus log (last {} lines) ---\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if std::env::var_os("AI_CB_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scenario

/// The shipped rules with every `for:` shortened to [`ALERT_FOR`].
fn test_rules() -> serde_yaml::Value {
    let mut file = rule_file();
    let mut shortened = 0;
    for group in file["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            if let Some(f) = rule.get_mut("for") {
                *f = ALERT_FOR.into();
                shortened += 1;
            }
        }
    }
    assert!(shortened > 0, "no rule has `for:`");
    file
}

/// openai (primary, fails over to anthropic, with a recovery probe every second, so its
/// metric has series) and anthropic, with webhook alerts.
fn filter_config() -> Value {
    json!({
        "health_path": HEALTH_PATH,
        "tick_interval": 0.1,
        "alerting": {"cluster": "webhook", "path": "/alerts", "format": "json", "min_interval": 0},
        "defaults": {"failure_threshold": 5, "success_threshold": 2,
                     "recovery_timeout": RECOVERY_TIMEOUT_S, "recovery_jitter": 0},
        "upstreams": [{"name": "openai", "fallbacks": ["anthropic"],
                       "recovery_probe": {"interval": 1, "timeout": 1}},
                      {"name": "anthropic"}],
        "routes": [{"match": {"path_prefix": "/v1/"}, "upstream": "openai"}]
    })
}

/// Polls the alert's state until `until` (or `deadline`), recording every change.
fn follow_alert(prom: &Prometheus, seen: &mut Vec<String>, deadline: Duration, until: &str) {
    let end = Instant::now() + deadline;
    loop {
        let state = prom.alert_rule(ALERT)["state"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == until {
            return;
        }
        assert!(
            Instant::now() < end,
            "{ALERT} not {until} within {deadline:?}; states seen: {seen:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn real_prometheus_fires_and_resolves_the_open_alert_and_charts_every_dashboard_query() {
    require_prometheus();
    let s = Stack::start(&filter_config(), 2, Duration::from_secs(2));
    let prom = Prometheus::start(&s.envoy.admin(), &test_rules());
    let start = unix_now();

    // Scraped, with the breaker's state series present before any traffic.
    assert!(
        wait_until(Duration::from_secs(15), || prom
            .scalar(r#"circuit_breaker_state{upstream="openai"}"#)
            == Some(0.0)),
        "Prometheus never scraped circuit_breaker_state from Envoy; targets: {}",
        prom.api("targets", &[])
    );
    for _ in 0..3 {
        assert_eq!(s.chat().status, 200);
    }
    thread::sleep(2 * SCRAPE_INTERVAL);

    // Outage: failover hides the first failures from the client, then the breaker opens
    // and reroutes.
    s.openai.set_mode(r#"{"mode":"error","status":500}"#);
    for _ in 0..5 {
        assert_eq!(s.chat().status, 200, "failed over to anthropic");
    }
    assert_eq!(s.state("openai"), "open");
    let opened = Instant::now();
    for _ in 0..5 {
        assert_eq!(served_by(&s.chat()), "anthropic");
    }

    let mut seen = vec![prom.alert_rule(ALERT)["state"]
        .as_str()
        .unwrap_or("?")
        .to_owned()];
    let before_half_open = Duration::from_secs(RECOVERY_TIMEOUT_S).saturating_sub(opened.elapsed());
    follow_alert(&prom, &mut seen, before_half_open, "firing");
    assert!(
        seen.iter().any(|st| st == "pending"),
        "{ALERT} went firing without being pending first: {seen:?}"
    );
    assert_eq!(
        s.state("openai"),
        "open",
        "fired while the breaker was open"
    );
    let rule = prom.alert_rule(ALERT);
    let alerts = rule["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "one breaker open: {rule}");
    let alert = &alerts[0];
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["labels"]["upstream"], "openai");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["job"], "envoy");
    assert_eq!(alert["labels"]["instance"], s.envoy.admin().as_str());
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|t| t.contains("for openai")),
        "annotations are rendered with the alert's labels: {alert}"
    );

    // Recovery: the first recovery probe that succeeds moves openai to half_open, two live
    // probes close it.
    s.openai.mode("healthy");
    assert!(
        wait_until(Duration::from_secs(RECOVERY_TIMEOUT_S + 5), || s
            .state("openai")
            == "half_open"),
        "openai never went half_open"
    );
    for _ in 0..2 {
        assert_eq!(served_by(&s.chat()), "openai");
    }
    assert_eq!(s.state("openai"), "closed");
    follow_alert(&prom, &mut seen, Duration::from_secs(10), "inactive");
    assert_eq!(
        seen,
        ["inactive", "pending", "firing", "inactive"],
        "{ALERT} states"
    );
    assert_eq!(prom.alert_rule(ALERT)["alerts"], json!([]), "resolved");

    // The outage's duration reaches the histogram at Envoy's next stats flush; two scrapes
    // of it let rate() over it return a value.
    assert!(
        wait_until(Duration::from_secs(15), || {
            prom.scalar(
            r#"count_over_time(circuit_breaker_open_duration_ms_count{upstream="openai"}[1m]) >= 2 and circuit_breaker_open_duration_ms_count{upstream="openai"} >= 1"#
        )
        .is_some()
        }),
        "the open duration never reached Prometheus"
    );
    thread::sleep(SCRAPE_INTERVAL);
    let end = unix_now();

    // Every shipped rule loaded and evaluated without error.
    let groups = prom.api("rules", &[]);
    let loaded: Vec<Value> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(loaded.len(), rules(&rule_file()).len(), "rules loaded");
    for r in &loaded {
        assert_eq!(r["health"], "ok", "rule {} evaluates: {r}", r["name"]);
    }

    // Every dashboard query returns data, with Grafana's variables as Grafana sets them:
    // "All" upstreams, $__rate_interval = 4 x the scrape interval, $__range = this run.
    let d = dashboard();
    let rate_interval = format!("{}s", 4 * SCRAPE_INTERVAL.as_secs());
    let range = format!("{}s", (end - start).ceil());
    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 15, "{} dashboard queries", queries.len());
    let mut empty = Vec::new();
    for q in &queries {
        let promql = expand_grafana(&d, &q.expr, &rate_interval, &range);
        if prom.query_range(&promql, start, end).is_empty() {
            empty.push(format!("{}: {promql}", q.place));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without any series:\n{}",
        empty.join("\n")
    );
    // The upstream variable: label_values(METRIC, LABEL) is Grafana's, so it goes to the
    // label-values API.
    let upstream_var = template_vars(&d)
        .into_iter()
        .find(|v| v["name"] == "upstream")
        .unwrap();
    let definition = upstream_var["definition"].as_str().unwrap();
    let (metric, label) = definition
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|r| r.split_once(','))
        .map(|(m, l)| (m.trim(), l.trim()))
        .unwrap_or_else(|| panic!("unexpected variable definition {definition}"));
    let (from, to) = (format!("{start:.3}"), format!("{end:.3}"));
    let values = prom.api(
        &format!("label/{label}/values"),
        &[("match[]", metric), ("start", &from), ("end", &to)],
    );
    assert_eq!(values, json!(["anthropic", "openai"]), "{definition}");

    // The labels of every series are the README's, and every documented metric has one.
    let table = readme_metric_table();
    let series = prom.api(
        "series",
        &[
            ("match[]", r#"{__name__=~"circuit_breaker_.*"}"#),
            ("start", &from),
            ("end", &to),
        ],
    );
    let mut seen_metrics = BTreeSet::new();
    let mut problems = Vec::new();
    for labels in series.as_array().unwrap() {
        let name = labels["__name__"].as_str().unwrap();
        let Some((base, doc)) = documented_metric(&table, name) else {
            problems.push(format!("{name}: not in README.md's metric table"));
            continue;
        };
        seen_metrics.insert(base.to_owned());
        let mut expected: BTreeSet<String> = doc.labels.clone();
        expected.extend(["instance", "job"].map(String::from));
        if name.ends_with("_bucket") {
            expected.insert("le".into());
        }
        let actual: BTreeSet<String> = labels
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "__name__")
            .cloned()
            .collect();
        if actual != expected {
            problems.push(format!(
                "{labels}: labels {actual:?}, README says {expected:?}"
            ));
        }
    }
    let documented: BTreeSet<String> = table.keys().cloned().collect();
    let missing: Vec<&String> = documented.difference(&seen_metrics).collect();
    assert!(
        problems.is_empty() && missing.is_empty(),
        "series vs README.md's metric table:\n{}\nno series at all for: {missing:?}",
        problems.join("\n")
    );
}
