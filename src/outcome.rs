//! The vocabulary every part of the core shares: what one attempt's outcome means for its
//! upstream's breaker, and why a failure is a failure.
//!
//! It lives on its own so that the config (which lists reasons in `failover.on`), the
//! classifier (which produces outcomes), the breaker (which counts them) and the metrics (which
//! label them) depend on it and not on each other.

// serde derives these enums in tests only, as the oracle of src/tests/config_fields.rs: the
// filter reads them through `config::field`, with the same messages.
#[cfg(test)]
use serde::Deserialize;

/// Why a call counted as a provider failure. The names are the metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(Deserialize), serde(rename_all = "snake_case"))]
pub enum FailureReason {
    /// A status listed in `failure_conditions.status_codes` (5xx and Anthropic's 529).
    /// (`snake_case` alone would read it as `status5xx`, not its documented name.)
    #[cfg_attr(test, serde(rename = "status_5xx"))]
    Status5xx,
    /// The upstream did not answer in time.
    Timeout,
    /// Connecting failed, or the connection was reset before a response.
    ConnectFailure,
    /// 429 Too Many Requests.
    RateLimit,
    /// A successful call slower than `slow_call_duration`.
    Slow,
    /// An error event inside a 200-OK stream (e.g. Anthropic's `overloaded_error`).
    StreamError,
    /// A stream that ended before its terminal marker, or was reset mid-body.
    StreamTruncated,
    /// A stream with no bytes for `stream_idle_timeout` (or Envoy's stream idle timeout).
    StreamStall,
    /// No first content token within `first_token_timeout`.
    SlowFirstToken,
    /// The account's quota or credit is used up (OpenAI `insufficient_quota`, Anthropic's
    /// billing errors): it opens the breaker at once, for `quota_recovery_timeout`.
    QuotaExhausted,
}

impl FailureReason {
    pub const COUNT: usize = 10;

    pub const ALL: [FailureReason; FailureReason::COUNT] = [
        FailureReason::Status5xx,
        FailureReason::Timeout,
        FailureReason::ConnectFailure,
        FailureReason::RateLimit,
        FailureReason::Slow,
        FailureReason::StreamError,
        FailureReason::StreamTruncated,
        FailureReason::StreamStall,
        FailureReason::SlowFirstToken,
        FailureReason::QuotaExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Status5xx => "status_5xx",
            FailureReason::Timeout => "timeout",
            FailureReason::ConnectFailure => "connect_failure",
            FailureReason::RateLimit => "rate_limit",
            FailureReason::Slow => "slow",
            FailureReason::StreamError => "stream_error",
            FailureReason::StreamTruncated => "stream_truncated",
            FailureReason::StreamStall => "stream_stall",
            FailureReason::SlowFirstToken => "slow_first_token",
            FailureReason::QuotaExhausted => "quota_exhausted",
        }
    }

    /// Stable small number, used by the state encoding.
    pub fn code(self) -> u8 {
        match self {
            FailureReason::Status5xx => 1,
            FailureReason::Timeout => 2,
            FailureReason::ConnectFailure => 3,
            FailureReason::RateLimit => 4,
            FailureReason::Slow => 5,
            FailureReason::StreamError => 6,
            FailureReason::StreamTruncated => 7,
            FailureReason::StreamStall => 8,
            FailureReason::SlowFirstToken => 9,
            FailureReason::QuotaExhausted => 10,
        }
    }

    pub fn from_code(code: u8) -> Option<FailureReason> {
        FailureReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Position in [`FailureReason::ALL`], for per-reason tables (metric ids).
    pub fn index(self) -> usize {
        usize::from(self.code() - 1)
    }
}

/// What a finished call means for its upstream's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure {
        reason: FailureReason,
        /// How long the provider asked us to stay away (Retry-After or rate-limit reset).
        retry_after_ms: Option<u64>,
    },
    /// Neither: a client or configuration error, or a condition that is switched off.
    Ignored,
}

impl Outcome {
    pub const LABELS: [&'static str; 3] = ["success", "failure", "ignored"];

    /// A failure for `reason` with no hint from the provider.
    pub fn failure(reason: FailureReason) -> Outcome {
        Outcome::Failure {
            reason,
            retry_after_ms: None,
        }
    }

    /// The `outcome` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure { .. } => "failure",
            Outcome::Ignored => "ignored",
        }
    }

    /// Position of [`Outcome::label`] in [`Outcome::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            Outcome::Success => 0,
            Outcome::Failure { .. } => 1,
            Outcome::Ignored => 2,
        }
    }

    pub fn reason(&self) -> Option<FailureReason> {
        match self {
            Outcome::Failure { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}
