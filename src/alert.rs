//! Alert webhooks: which transitions are announced, the flapping guard, and the payloads.
//!
//! Exactly one worker performs each transition (it won the shared-data CAS), and only that
//! worker announces it. `min_interval` is kept per breaker in shared data too ([`AlertLog`]),
//! so the guard holds across workers. A breaker that opens again within `min_interval` of the
//! last announced opening stays quiet, and so does the recovery of an outage whose opening was
//! not announced, so operators never get a "closed" for an outage they were not told about.

use crate::breaker::{StateKind, Transition};
use crate::config::{AlertFormat, AlertOn, Alerting};
use crate::hints::format_rfc3339;
use crate::json_out::{array, Object};
use crate::store::{Codec, DecodeError};

/// Per-breaker alert history, stored beside the breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertLog {
    /// When the last "open" alert was sent.
    pub last_open_sent_ms: Option<u64>,
    /// Whether the current outage was announced (its "open" alert was sent).
    pub outage_announced: bool,
}

/// What to do about one transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertDecision {
    /// Not configured for this kind of transition.
    NotWanted,
    Send,
    /// Dropped by the flapping guard; counted.
    Suppressed,
}

fn kind_of(to: StateKind) -> AlertOn {
    match to {
        StateKind::Open => AlertOn::Open,
        StateKind::HalfOpen => AlertOn::HalfOpen,
        StateKind::Closed => AlertOn::Close,
    }
}

impl AlertLog {
    /// Decides whether `t` is announced, updating the log.
    ///
    /// Every opening (first or re-open) within `min_interval` of the last announced opening
    /// is suppressed. Half-open and close alerts belong to an outage and are sent only when
    /// that outage's opening was announced.
    pub fn decide(&mut self, cfg: &Alerting, t: &Transition) -> AlertDecision {
        let wanted = cfg.on.contains(&kind_of(t.to));
        match t.to {
            StateKind::Open => {
                if t.from == StateKind::Closed {
                    self.outage_announced = false;
                }
                let quiet = self
                    .last_open_sent_ms
                    .is_some_and(|last| t.at_ms.saturating_sub(last) < cfg.min_interval_ms);
                if !wanted {
                    AlertDecision::NotWanted
                } else if quiet {
                    AlertDecision::Suppressed
                } else {
                    self.last_open_sent_ms = Some(t.at_ms);
                    self.outage_announced = true;
                    AlertDecision::Send
                }
            }
            StateKind::HalfOpen | StateKind::Closed => {
                let announced = self.outage_announced || !cfg.on.contains(&AlertOn::Open);
                if t.to == StateKind::Closed {
                    self.outage_announced = false;
                }
                if !wanted {
                    AlertDecision::NotWanted
                } else if announced {
                    AlertDecision::Send
                } else {
                    AlertDecision::Suppressed
                }
            }
        }
    }
}

impl Codec for AlertLog {
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![1u8, u8::from(self.outage_announced)];
        v.extend_from_slice(
            &self
                .last_open_sent_ms
                .map_or(0, |t| t.saturating_add(1))
                .to_le_bytes(),
        );
        v
    }

    fn decode(bytes: &[u8]) -> Result<AlertLog, DecodeError> {
        match bytes {
            [1, announced, rest @ ..] => {
                let raw: [u8; 8] = rest.try_into().map_err(|_| DecodeError::Truncated)?;
                let t = u64::from_le_bytes(raw);
                Ok(AlertLog {
                    last_open_sent_ms: t.checked_sub(1),
                    outage_announced: *announced == 1,
                })
            }
            [] => Err(DecodeError::Empty),
            [v, ..] => Err(DecodeError::UnsupportedVersion(*v)),
        }
    }
}

/// Everything an alert says about a transition.
#[derive(Debug, Clone, Copy)]
pub struct AlertEvent<'a> {
    pub upstream: &'a str,
    pub cluster: &'a str,
    pub transition: &'a Transition,
}

/// The webhook body for `format`.
pub fn payload(format: AlertFormat, e: &AlertEvent<'_>) -> String {
    let t = e.transition;
    let reason = t.cause.describe();
    let at = format_rfc3339(t.at_ms);
    let next_probe = t.until_ms.map(format_rfc3339);
    match format {
        AlertFormat::Json => Object::new()
            .str("at", &at)
            .num("at_ms", t.at_ms)
            .str("cluster", e.cluster)
            .str("event", "circuit_breaker_transition")
            .num("failures_in_window", u64::from(t.failures_in_window))
            .str("from", t.from.as_str())
            .opt_str("next_probe_at", next_probe.as_deref())
            .opt_num("open_duration_ms", t.open_duration_ms)
            .str("reason", &reason)
            .str("to", t.to.as_str())
            .str("upstream", e.upstream)
            .end(),
        AlertFormat::Slack => {
            let (emoji, color, verb) = match t.to {
                StateKind::Open => (":red_circle:", "danger", "OPEN"),
                StateKind::HalfOpen => (":large_yellow_circle:", "warning", "HALF-OPEN (probing)"),
                StateKind::Closed => (":large_green_circle:", "good", "CLOSED (recovered)"),
            };
            let text = format!(
                "{emoji} Circuit breaker for *{}* is {verb}: {} → {} ({reason})",
                e.upstream,
                t.from.as_str(),
                t.to.as_str()
            );
            let field = |title: &str, value: &str, short: bool| {
                Object::new()
                    .bool("short", short)
                    .str("title", title)
                    .str("value", value)
                    .end()
            };
            let mut fields = vec![
                field(
                    "Upstream",
                    &format!("{} (cluster {})", e.upstream, e.cluster),
                    true,
                ),
                field(
                    "Transition",
                    &format!("{} → {}", t.from.as_str(), t.to.as_str()),
                    true,
                ),
                field(
                    "Failures in window",
                    &t.failures_in_window.to_string(),
                    true,
                ),
                field("Reason", &reason, true),
                field("Time", &at, false),
            ];
            if let Some(n) = &next_probe {
                fields.push(field("Next probe", n, false));
            }
            if let Some(ms) = t.open_duration_ms {
                fields.push(field(
                    "Outage lasted",
                    &format!("{:.1} s", ms as f64 / 1000.0),
                    true,
                ));
            }
            let attachment = Object::new()
                .str("color", color)
                .raw("fields", &array(&fields))
                .num("ts", t.at_ms / 1000)
                .end();
            Object::new()
                .raw("attachments", &array(&[attachment]))
                .str("text", &text)
                .end()
        }
    }
}
