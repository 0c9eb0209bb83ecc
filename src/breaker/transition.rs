//! What happens to a breaker, as values: which rule tripped it and why ([`Trip`]), why a
//! transition happened ([`Cause`]), the transition itself ([`Transition`]) and what an engine
//! call did to the stored state ([`Change`]). The engine returns these instead of acting, so
//! the one caller that stored the change emits the metrics, the log line and the alert.

use super::StateKind;
use crate::outcome::FailureReason;

/// Which rule opened the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripRule {
    /// `failure_threshold` failures inside the window.
    Count,
    /// The failure ratio reached `failure_rate.threshold` with enough volume.
    Rate,
    /// A half-open probe failed.
    Probe,
}

impl TripRule {
    pub fn as_str(self) -> &'static str {
        match self {
            TripRule::Count => "failure_count",
            TripRule::Rate => "failure_rate",
            TripRule::Probe => "probe_failure",
        }
    }
}

/// Why the breaker last opened: the rule and the failure that triggered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trip {
    pub rule: TripRule,
    pub reason: FailureReason,
}

impl Trip {
    /// `failure_count (status_5xx)`: the text logs, alerts and the health endpoint show.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.rule.as_str(), self.reason.as_str())
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Tripped(Trip),
    RecoveryTimeoutElapsed,
    /// An active recovery probe got an expected answer while the breaker was OPEN.
    RecoveryProbeSucceeded,
    ProbesSucceeded,
}

impl Cause {
    pub fn describe(&self) -> String {
        match self {
            Cause::Tripped(t) => t.describe(),
            Cause::RecoveryTimeoutElapsed => "recovery_timeout elapsed".to_string(),
            Cause::RecoveryProbeSucceeded => "recovery probe succeeded".to_string(),
            Cause::ProbesSucceeded => "probes succeeded".to_string(),
        }
    }
}

/// A state change, returned to the caller so metrics and alerts come from one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: StateKind,
    pub to: StateKind,
    pub cause: Cause,
    pub at_ms: u64,
    /// Failures in the window when the transition happened.
    pub failures_in_window: u32,
    /// On a transition to CLOSED: how long the outage lasted, from the first OPEN.
    pub open_duration_ms: Option<u64>,
    /// On a transition to OPEN: when the breaker will let a probe through.
    pub until_ms: Option<u64>,
}

/// What an engine call did to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    /// The state differs from before and must be written back.
    pub dirty: bool,
    pub transition: Option<Transition>,
}

impl Change {
    pub(super) const NONE: Change = Change {
        dirty: false,
        transition: None,
    };
    pub(super) const DIRTY: Change = Change {
        dirty: true,
        transition: None,
    };

    pub(super) fn transition(t: Transition) -> Change {
        Change {
            dirty: true,
            transition: Some(t),
        }
    }
}
