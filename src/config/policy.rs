//! Breaker policy compilation: `defaults`, then each upstream's overrides laid on top, every
//! key validated where it is read.

use super::checks::{at_least_one, duration_ms, ratio, statuses};
use super::error::{join_path, ConfigError, ConfigErrorKind};
use super::model::{
    FailureConditions, FailureRate, Policy, MAX_HALF_OPEN_REQUESTS, MAX_RETRY_ATTEMPTS,
};
use super::raw::{RawFailureConditions, RawPolicy};

impl RawPolicy {
    /// Applies these (possibly partial) settings on top of `base`, validating each one.
    pub(super) fn apply_to(&self, base: Policy, at: &str) -> Result<Policy, ConfigError> {
        let key = |k: &str| join_path(at, k);
        let mut p = base;
        if let Some(v) = self.failure_threshold {
            p.failure_threshold = at_least_one(&key("failure_threshold"), v)?;
        }
        if let Some(v) = self.window_size {
            p.window_ms = duration_ms(&key("window_size"), v)?;
        }
        if let Some(v) = self.recovery_timeout {
            p.recovery_ms = duration_ms(&key("recovery_timeout"), v)?;
        }
        if let Some(v) = self.success_threshold {
            p.success_threshold = at_least_one(&key("success_threshold"), v)?;
        }
        if let Some(v) = self.half_open_max_requests {
            let k = key("half_open_max_requests");
            p.half_open_max_requests = at_least_one(&k, v)?;
            if v > MAX_HALF_OPEN_REQUESTS {
                return Err(ConfigError::range(
                    k,
                    format!("must be at most {MAX_HALF_OPEN_REQUESTS}, got {v}"),
                ));
            }
        }
        if let Some(v) = self.probe_timeout {
            p.probe_timeout_ms = duration_ms(&key("probe_timeout"), v)?;
        }
        if let Some(v) = self.mode {
            p.mode = v;
        }
        if let Some(r) = &self.failure_rate {
            let k = key("failure_rate");
            p.failure_rate = Some(FailureRate {
                threshold: ratio(&join_path(&k, "threshold"), r.threshold)?,
                minimum_requests: at_least_one(
                    &join_path(&k, "minimum_requests"),
                    r.minimum_requests,
                )?,
            });
        }
        if let Some(v) = self.slow_call_duration {
            p.slow_call_ms = Some(duration_ms(&key("slow_call_duration"), v)?);
        }
        if let Some(v) = self.stream_idle_timeout {
            p.stream_idle_ms = Some(duration_ms(&key("stream_idle_timeout"), v)?);
        }
        if let Some(v) = self.first_token_timeout {
            p.first_token_ms = Some(duration_ms(&key("first_token_timeout"), v)?);
        }
        if let Some(v) = self.honor_retry_after {
            p.honor_retry_after = v;
        }
        if let Some(v) = self.backoff_multiplier {
            if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
                return Err(ConfigError::range(
                    key("backoff_multiplier"),
                    format!("must be between 1.0 and 100.0, got {v}"),
                ));
            }
            p.backoff_multiplier = v;
        }
        if let Some(v) = self.max_recovery_timeout {
            p.max_recovery_ms = duration_ms(&key("max_recovery_timeout"), v)?;
        }
        if let Some(v) = self.recovery_jitter {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(ConfigError::range(
                    key("recovery_jitter"),
                    format!("must be in [0, 1), got {v}"),
                ));
            }
            p.recovery_jitter = v;
        }
        if let Some(c) = &self.failure_conditions {
            c.apply_to(&mut p.conditions, &key("failure_conditions"))?;
        }
        if let Some(r) = &self.retry {
            let k = key("retry");
            if let Some(v) = r.attempts {
                if v > MAX_RETRY_ATTEMPTS {
                    return Err(ConfigError::range(
                        join_path(&k, "attempts"),
                        format!("must be at most {MAX_RETRY_ATTEMPTS}, got {v}"),
                    ));
                }
                p.retry.attempts = v;
            }
            if let Some(v) = &r.on {
                if v.is_empty() {
                    return Err(ConfigError::new(
                        join_path(&k, "on"),
                        ConfigErrorKind::Empty("failure reason"),
                    ));
                }
                p.retry.on = v.clone();
            }
            if let Some(v) = r.max_retry_after {
                p.retry.max_retry_after_ms = duration_ms(&join_path(&k, "max_retry_after"), v)?;
            }
        }
        if let Some(v) = self.quota_recovery_timeout {
            p.quota_recovery_ms = duration_ms(&key("quota_recovery_timeout"), v)?;
        }
        if let Some(v) = self.response_timeout {
            p.response_timeout_ms = Some(duration_ms(&key("response_timeout"), v)?);
        }
        if p.max_recovery_ms < p.recovery_ms {
            return Err(ConfigError::range(
                key("max_recovery_timeout"),
                format!(
                    "must be at least recovery_timeout ({} s), got {} s",
                    p.recovery_ms as f64 / 1000.0,
                    p.max_recovery_ms as f64 / 1000.0
                ),
            ));
        }
        Ok(p)
    }
}

impl RawFailureConditions {
    fn apply_to(&self, c: &mut FailureConditions, at: &str) -> Result<(), ConfigError> {
        if let Some(codes) = &self.status_codes {
            statuses(&format!("{at}.status_codes"), codes)?;
            c.status_codes = codes.clone();
        }
        if let Some(v) = self.timeout {
            c.timeout = v;
        }
        if let Some(v) = self.connect_failure {
            c.connect_failure = v;
        }
        if let Some(v) = self.rate_limit {
            c.rate_limit = v;
        }
        for (flag, value) in [
            (&mut c.stream_error, self.stream_error),
            (&mut c.stream_truncated, self.stream_truncated),
            (&mut c.stream_stall, self.stream_stall),
            (&mut c.slow_first_token, self.slow_first_token),
        ] {
            if let Some(v) = value {
                *flag = v;
            }
        }
        Ok(())
    }
}
