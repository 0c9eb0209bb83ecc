//! Checks of single values shared by every part of compilation: durations, ratios, counts
//! HTTP header names and values, and wire formats (`api`). Each returns the typed value or an error naming `path`.

use super::error::ConfigError;
use super::field::HeaderMap;
use crate::translate::Api;

pub(super) fn at_least_one(path: &str, v: u32) -> Result<u32, ConfigError> {
    if v == 0 {
        return Err(ConfigError::range(path, "must be at least 1, got 0"));
    }
    Ok(v)
}

/// Seconds (a JSON number, fractions allowed) to milliseconds; must be > 0 and at most a day.
pub(super) fn duration_ms(path: &str, secs: f64) -> Result<u64, ConfigError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(ConfigError::range(
            path,
            format!("must be a duration in seconds, > 0 and <= 86400, got {secs}"),
        ));
    }
    Ok(((secs * 1000.0).round() as u64).max(1))
}

/// HTTP statuses (100-599), each checked at `path[i]`.
pub(super) fn statuses(path: &str, codes: &[u16]) -> Result<(), ConfigError> {
    for (i, &code) in codes.iter().enumerate() {
        if !(100..=599).contains(&code) {
            return Err(ConfigError::range(
                format!("{path}[{i}]"),
                format!("must be an HTTP status (100-599), got {code}"),
            ));
        }
    }
    Ok(())
}

pub(super) fn ratio(path: &str, v: f64) -> Result<f64, ConfigError> {
    if !(v.is_finite() && v > 0.0 && v <= 1.0) {
        return Err(ConfigError::range(
            path,
            format!("must be in (0, 1], got {v}"),
        ));
    }
    Ok(v)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

pub(super) fn is_header_value(v: &str) -> bool {
    v.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
}

/// A lower-case, non-pseudo HTTP header name.
pub(super) fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || !name.chars().all(is_token_char) {
        return Err(ConfigError::range(
            path,
            format!("\"{name}\" is not a valid HTTP header name"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

pub(super) fn header_pairs(
    path: &str,
    headers: HeaderMap,
) -> Result<Vec<(String, String)>, ConfigError> {
    headers
        .into_iter()
        .map(|(k, v)| {
            let name = header_name(&format!("{path}.{k}"), &k)?;
            if !is_header_value(&v) {
                return Err(ConfigError::range(
                    format!("{path}.{k}"),
                    "header value must be printable ASCII",
                ));
            }
            Ok((name, v))
        })
        .collect()
}

/// An `api` value: `openai` or `anthropic`.
pub(super) fn compile_api(path: String, name: &str) -> Result<Api, ConfigError> {
    // The names are `Api::name`'s.
    match name {
        "openai" => Ok(Api::OpenAi),
        "anthropic" => Ok(Api::Anthropic),
        _ => Err(ConfigError::range(
            path,
            format!("unknown api \"{name}\" (expected \"openai\" or \"anthropic\")"),
        )),
    }
}
