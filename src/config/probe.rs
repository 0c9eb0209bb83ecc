//! Compilation of an upstream's `recovery_probe`: the active health check sent while its
//! breaker is OPEN, checked key by key and turned into the callout's headers and body.

use super::checks::{duration_ms, header_pairs, is_header_value, statuses};
use super::error::ConfigError;
use super::model::RecoveryProbe;
use super::raw::RawRecoveryProbe;

/// A recovery probe: `GET /v1/models` every 5 s with a 3 s timeout, 200 expected, unless
/// set. `:authority` is the upstream's rewrite host, else its cluster name.
#[inline(never)]
pub(super) fn compile_recovery_probe(
    r: &RawRecoveryProbe,
    at: &str,
    host: Option<&str>,
    cluster: &str,
) -> Result<RecoveryProbe, ConfigError> {
    let method = r.method.clone().unwrap_or_else(|| "GET".to_string());
    if method.is_empty() || !method.bytes().all(|c| c.is_ascii_uppercase()) {
        return Err(ConfigError::range(
            format!("{at}.method"),
            "must be an HTTP method in upper case",
        ));
    }
    let path = r.path.clone().unwrap_or_else(|| "/v1/models".to_string());
    if !path.starts_with('/') || !is_header_value(&path) {
        return Err(ConfigError::range(
            format!("{at}.path"),
            "must start with '/' and be a printable header value",
        ));
    }
    let interval_ms = match r.interval {
        Some(s) => duration_ms(&format!("{at}.interval"), s)?,
        None => 5_000,
    };
    let timeout_ms = match r.timeout {
        Some(s) => duration_ms(&format!("{at}.timeout"), s)?,
        None => 3_000,
    };
    let expected_statuses = r.expected_statuses.clone().unwrap_or_else(|| vec![200]);
    if expected_statuses.is_empty() {
        return Err(ConfigError::range(
            format!("{at}.expected_statuses"),
            "must list at least one status",
        ));
    }
    statuses(&format!("{at}.expected_statuses"), &expected_statuses)?;
    let body = r.body.clone().unwrap_or_default().into_bytes();
    let mut headers = vec![
        (":method".to_string(), method),
        (":path".to_string(), path),
        (
            ":authority".to_string(),
            host.unwrap_or(cluster).to_string(),
        ),
    ];
    headers.extend(header_pairs(&format!("{at}.headers"), r.headers.clone())?);
    if !body.is_empty() && !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    Ok(RecoveryProbe {
        headers,
        body,
        interval_ms,
        timeout_ms,
        expected_statuses,
    })
}
