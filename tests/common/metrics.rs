//! Envoy's `/stats/prometheus` as samples, and lookups by name and label set.
//!
//! The text-format parser is our own (about 60 lines) because the crate that would replace
//! it, `prometheus-parse` 0.2.5 (last release 2023), does not read Envoy's output: measured
//! on a real scrape of this stack, it drops all 107 series Envoy writes with empty braces
//! (`circuit_breaker_all_open{} 0`, its regex wants at least one label), splits label values
//! on `,` and `=` and keeps `\"` escapes, and would add `regex` and `chrono` to the test build
//! (~17 s of CPU). Its histogram handling (buckets folded into one value, `_sum` and
//! `_count` as untyped samples) would also not save any code here: the lookups below read
//! `_count`, `_sum` and `_bucket` series as plain samples.

use std::collections::BTreeMap;

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    end = i + 1;
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                other => val.push(other),
                            },
                            '"' => break,
                            other => val.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), val);
                }
                other => key.push(other),
            }
        }
        rest = &r[end..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn labels_equal(sample: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    sample.len() == want.len()
        && want
            .iter()
            .all(|(k, v)| sample.get(*k).is_some_and(|s| s == v))
}

fn labels_include(sample: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| sample.get(*k).is_some_and(|s| s == v))
}

/// The value of series `name` (or `name_count`) with exactly `labels`.
pub fn find_metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let count = format!("{name}_count");
    [name, count.as_str()].iter().find_map(|n| {
        samples
            .iter()
            .find(|s| s.name == *n && labels_equal(&s.labels, labels))
            .map(|s| s.value)
    })
}

/// The sum of series `name` (or `name_count`) whose labels include `labels`.
pub fn sum_metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let count = format!("{name}_count");
    [name, count.as_str()].iter().find_map(|n| {
        let matching: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == *n && labels_include(&s.labels, labels))
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    })
}
