//! What an active recovery probe's answer does to a breaker (`recovery_probe`): a success
//! moves an OPEN breaker to HALF_OPEN at once, a failure keeps it OPEN at least
//! `recovery_timeout` longer. Which worker probes, and when, is [`crate::recovery`]'s part.

use super::{Breaker, Cause, Change, State};
use crate::config::{Mode, Policy};

impl Breaker {
    /// An active recovery probe was answered as expected: an OPEN breaker goes HALF_OPEN now,
    /// without waiting for `recovery_timeout`; live requests then confirm as usual.
    pub fn recovery_probe_succeeded(&mut self, policy: &Policy, now_ms: u64) -> Change {
        if !matches!(policy.mode, Mode::Enforce | Mode::MetricsOnly) {
            return Change::NONE;
        }
        if !matches!(self.state, State::Open { .. }) {
            return Change::NONE;
        }
        self.half_open(now_ms, Cause::RecoveryProbeSucceeded)
    }

    /// An active recovery probe failed: the upstream is still down, so an OPEN breaker stays
    /// OPEN at least `recovery_timeout` longer and sends no live request to it meanwhile.
    pub fn recovery_probe_failed(&mut self, policy: &Policy, now_ms: u64) -> Change {
        if !matches!(policy.mode, Mode::Enforce | Mode::MetricsOnly) {
            return Change::NONE;
        }
        match &mut self.state {
            State::Open { until_ms, .. } => {
                let later = now_ms.saturating_add(policy.recovery_ms);
                if later > *until_ms {
                    *until_ms = later;
                    Change::DIRTY
                } else {
                    Change::NONE
                }
            }
            _ => Change::NONE,
        }
    }
}
