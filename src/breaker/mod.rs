//! The breaker engine: one upstream's state machine, CLOSED → OPEN → HALF_OPEN → CLOSED.
//!
//! The engine is pure. Every method takes the time (milliseconds since the Unix epoch) and,
//! where it needs one, a random value as arguments, so it is deterministic under test and the
//! adapter decides where time and randomness come from. Every method returns a [`Change`]
//! saying whether the state must be written back and which [`Transition`] happened, so
//! metrics and alerts are emitted from one place. Nothing here panics, and a clock that goes
//! backwards is tolerated (it never re-opens, expires or closes anything early).

mod transition;
pub mod window;

pub use transition::{Cause, Change, Transition, Trip, TripRule};

use crate::config::{Mode, Policy};
use crate::outcome::{FailureReason, Outcome};
use window::Window;

/// The three breaker states, carrying their own data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Calls flow; failures are counted in the window.
    Closed,
    /// Calls are short-circuited until `until_ms`.
    Open { opened_ms: u64, until_ms: u64 },
    /// A few probes test the upstream; `success_threshold` successes close it again.
    HalfOpen {
        since_ms: u64,
        successes: u32,
        probes: Vec<Probe>,
    },
}

/// A probe in flight in HALF_OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub id: u32,
    pub started_ms: u64,
}

/// The state's name, for metrics, logs and the health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    Closed,
    Open,
    HalfOpen,
}

impl StateKind {
    pub const ALL: [StateKind; 3] = [StateKind::Closed, StateKind::Open, StateKind::HalfOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Closed => "closed",
            StateKind::Open => "open",
            StateKind::HalfOpen => "half_open",
        }
    }

    /// The `circuit_breaker_state` gauge value: 0 closed, 1 open, 2 half_open.
    pub fn gauge(self) -> i64 {
        match self {
            StateKind::Closed => 0,
            StateKind::Open => 1,
            StateKind::HalfOpen => 2,
        }
    }
}

/// The proof of admission a request carries until its outcome is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    /// A normal call in CLOSED: its outcome counts in the window.
    Counted,
    /// A half-open probe holding slot `id`.
    Probe(u32),
    /// Let through without counting: mode `disabled`, or what `metrics_only` would have
    /// short-circuited.
    Uncounted,
}

/// The breaker's answer to "may this request go to the upstream?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted(Ticket),
    /// Short-circuited; the upstream may be tried again from `retry_at_ms`.
    Rejected {
        retry_at_ms: u64,
    },
}

/// One upstream's complete breaker state: what is stored in shared data.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    pub state: State,
    pub window: Window,
    /// Consecutive re-opens from HALF_OPEN, the exponent of `backoff_multiplier`.
    pub reopens: u32,
    /// When the current outage began (the first OPEN), until the breaker closes.
    pub outage_since_ms: Option<u64>,
    pub last_trip: Option<Trip>,
    pub next_probe_id: u32,
}

/// A read-only view of a breaker for the health endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub state: StateKind,
    pub mode: Mode,
    pub failures_in_window: u32,
    pub calls_in_window: u32,
    /// Failures / calls in the window, when calls are counted (the rate rule is configured).
    pub failure_rate: Option<f64>,
    pub opened_at_ms: Option<u64>,
    /// Milliseconds until an OPEN breaker lets a probe through.
    pub next_probe_in_ms: Option<u64>,
    pub last_trip: Option<Trip>,
    pub probes_in_flight: u32,
}

impl Breaker {
    /// A closed breaker with an empty window sized for `policy`.
    pub fn new(policy: &Policy) -> Breaker {
        Breaker {
            state: State::Closed,
            window: Window::new(policy.window_ms),
            reopens: 0,
            outage_since_ms: None,
            last_trip: None,
            next_probe_id: 0,
        }
    }

    /// The state as traffic sees it: `forced_open` reads as open, `disabled` as closed.
    pub fn kind(&self, policy: &Policy) -> StateKind {
        match policy.mode {
            Mode::ForcedOpen => StateKind::Open,
            Mode::Disabled => StateKind::Closed,
            Mode::Enforce | Mode::MetricsOnly => self.stored_kind(),
        }
    }

    /// The tracked state, whatever the mode.
    pub fn stored_kind(&self) -> StateKind {
        match self.state {
            State::Closed => StateKind::Closed,
            State::Open { .. } => StateKind::Open,
            State::HalfOpen { .. } => StateKind::HalfOpen,
        }
    }

    /// Adapts a state that was written under another window size (a config reload).
    pub fn fit_to(&mut self, policy: &Policy) {
        if self.window.bucket_ms != Window::bucket_width(policy.window_ms) {
            self.window = Window::new(policy.window_ms);
        }
    }

    /// Decides whether a request may go to this upstream.
    pub fn admit(&mut self, policy: &Policy, now_ms: u64) -> (Admission, Change) {
        match policy.mode {
            Mode::Disabled => return (Admission::Admitted(Ticket::Uncounted), Change::NONE),
            Mode::ForcedOpen => {
                let retry_at_ms = now_ms.saturating_add(policy.recovery_ms);
                return (Admission::Rejected { retry_at_ms }, Change::NONE);
            }
            Mode::Enforce | Mode::MetricsOnly => {}
        }
        let mut change = self.advance(policy, now_ms);
        let dry_run = policy.mode == Mode::MetricsOnly;
        let admission = match &mut self.state {
            State::Closed => Admission::Admitted(Ticket::Counted),
            State::Open { until_ms, .. } => {
                if dry_run {
                    Admission::Admitted(Ticket::Uncounted)
                } else {
                    Admission::Rejected {
                        retry_at_ms: *until_ms,
                    }
                }
            }
            State::HalfOpen { probes, .. } => {
                if probes.len() < policy.half_open_max_requests as usize {
                    let id = self.next_probe_id;
                    self.next_probe_id = self.next_probe_id.wrapping_add(1);
                    probes.push(Probe {
                        id,
                        started_ms: now_ms,
                    });
                    change.dirty = true;
                    Admission::Admitted(Ticket::Probe(id))
                } else if dry_run {
                    Admission::Admitted(Ticket::Uncounted)
                } else {
                    // A slot frees when a probe reports back, or at the latest on its timeout.
                    let earliest = probes
                        .iter()
                        .map(|p| p.started_ms.saturating_add(policy.probe_timeout_ms))
                        .min()
                        .unwrap_or(now_ms);
                    Admission::Rejected {
                        retry_at_ms: earliest.min(now_ms.saturating_add(1_000)).max(now_ms),
                    }
                }
            }
        };
        (admission, change)
    }

    /// Moves time forward with no request: OPEN → HALF_OPEN once the open time has passed,
    /// and half-open probes that never reported back free their slot after `probe_timeout`.
    pub fn advance(&mut self, policy: &Policy, now_ms: u64) -> Change {
        if policy.mode == Mode::Disabled {
            return Change::NONE;
        }
        match &mut self.state {
            State::Closed => Change::NONE,
            State::Open { until_ms, .. } => {
                if now_ms < *until_ms {
                    return Change::NONE;
                }
                let (failures, _) = self.window.totals(now_ms);
                self.state = State::HalfOpen {
                    since_ms: now_ms,
                    successes: 0,
                    probes: Vec::new(),
                };
                Change::transition(Transition {
                    from: StateKind::Open,
                    to: StateKind::HalfOpen,
                    cause: Cause::RecoveryTimeoutElapsed,
                    at_ms: now_ms,
                    failures_in_window: failures,
                    open_duration_ms: None,
                    until_ms: None,
                })
            }
            State::HalfOpen { probes, .. } => {
                let before = probes.len();
                let timeout = policy.probe_timeout_ms;
                probes.retain(|p| now_ms.saturating_sub(p.started_ms) < timeout);
                if probes.len() == before {
                    Change::NONE
                } else {
                    Change::DIRTY
                }
            }
        }
    }

    /// An active recovery probe was answered as expected: an OPEN breaker goes HALF_OPEN now,
    /// without waiting for `recovery_timeout`; live requests then confirm as usual.
    pub fn recovery_probe_succeeded(&mut self, policy: &Policy, now_ms: u64) -> Change {
        if !matches!(policy.mode, Mode::Enforce | Mode::MetricsOnly) {
            return Change::NONE;
        }
        if !matches!(self.state, State::Open { .. }) {
            return Change::NONE;
        }
        let (failures, _) = self.window.totals(now_ms);
        self.state = State::HalfOpen {
            since_ms: now_ms,
            successes: 0,
            probes: Vec::new(),
        };
        Change::transition(Transition {
            from: StateKind::Open,
            to: StateKind::HalfOpen,
            cause: Cause::RecoveryProbeSucceeded,
            at_ms: now_ms,
            failures_in_window: failures,
            open_duration_ms: None,
            until_ms: None,
        })
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

    /// Records the outcome of a request admitted with `ticket`. `random` in [0, 1) spreads the
    /// open time when this outcome opens the breaker.
    pub fn record(
        &mut self,
        policy: &Policy,
        now_ms: u64,
        ticket: Ticket,
        outcome: Outcome,
        random: f64,
    ) -> Change {
        if policy.mode == Mode::Disabled {
            return Change::NONE;
        }
        match ticket {
            Ticket::Uncounted => Change::NONE,
            Ticket::Counted => self.record_closed(policy, now_ms, outcome, random),
            Ticket::Probe(id) => self.record_probe(policy, now_ms, id, outcome, random),
        }
    }

    /// Whether recording `outcome` for `ticket` can change any state. When it cannot, the
    /// adapter skips reading shared data at all: the common success in CLOSED costs nothing.
    pub fn record_is_noop(policy: &Policy, ticket: Ticket, outcome: &Outcome) -> bool {
        if policy.mode == Mode::Disabled {
            return true;
        }
        match (ticket, outcome) {
            (Ticket::Uncounted, _) | (Ticket::Counted, Outcome::Ignored) => true,
            (Ticket::Counted, Outcome::Success) => policy.failure_rate.is_none(),
            _ => false,
        }
    }

    /// Frees whatever a request held without counting an outcome (the client went away).
    pub fn release(&mut self, ticket: Ticket) -> Change {
        if let (Ticket::Probe(id), State::HalfOpen { probes, .. }) = (ticket, &mut self.state) {
            let before = probes.len();
            probes.retain(|p| p.id != id);
            if probes.len() != before {
                return Change::DIRTY;
            }
        }
        Change::NONE
    }

    fn record_closed(
        &mut self,
        policy: &Policy,
        now_ms: u64,
        outcome: Outcome,
        random: f64,
    ) -> Change {
        // A call admitted while CLOSED that finishes after the breaker moved on is history.
        if self.state != State::Closed {
            return Change::NONE;
        }
        match outcome {
            Outcome::Ignored => Change::NONE,
            Outcome::Success => {
                // Successes only matter to the rate rule; without it nothing changes, and the
                // adapter skips the shared-data write on the hot path.
                if policy.failure_rate.is_some() {
                    self.window.record(now_ms, false);
                    Change::DIRTY
                } else {
                    Change::NONE
                }
            }
            Outcome::Failure {
                reason,
                retry_after_ms,
            } => {
                self.window.record(now_ms, true);
                // Used-up quota does not come back in a few calls: it opens at once.
                let rule = match reason {
                    FailureReason::QuotaExhausted => Some(TripRule::Count),
                    _ => self.trip_rule(policy, now_ms),
                };
                match rule {
                    Some(rule) => {
                        let trip = Trip { rule, reason };
                        self.open(policy, now_ms, trip, retry_after_ms, random)
                    }
                    None => Change::DIRTY,
                }
            }
        }
    }

    /// The adaptive threshold: with `failure_rate` set and at least `minimum_requests` calls in
    /// the window, the ratio decides; below that volume (or without it) the count decides.
    fn trip_rule(&self, policy: &Policy, now_ms: u64) -> Option<TripRule> {
        let (failures, calls) = self.window.totals(now_ms);
        match policy.failure_rate {
            Some(rate) if calls >= rate.minimum_requests => {
                let ratio = f64::from(failures) / f64::from(calls.max(1));
                (ratio >= rate.threshold).then_some(TripRule::Rate)
            }
            _ => (failures >= policy.failure_threshold).then_some(TripRule::Count),
        }
    }

    fn record_probe(
        &mut self,
        policy: &Policy,
        now_ms: u64,
        id: u32,
        outcome: Outcome,
        random: f64,
    ) -> Change {
        let State::HalfOpen {
            probes, successes, ..
        } = &mut self.state
        else {
            return Change::NONE;
        };
        let Some(pos) = probes.iter().position(|p| p.id == id) else {
            // The slot timed out and was reclaimed: a late report must not steer the state.
            return Change::NONE;
        };
        probes.remove(pos);
        match outcome {
            Outcome::Ignored => Change::DIRTY,
            Outcome::Success => {
                *successes = successes.saturating_add(1);
                if *successes >= policy.success_threshold {
                    self.close(now_ms)
                } else {
                    Change::DIRTY
                }
            }
            Outcome::Failure {
                reason,
                retry_after_ms,
            } => {
                let trip = Trip {
                    rule: TripRule::Probe,
                    reason,
                };
                self.open(policy, now_ms, trip, retry_after_ms, random)
            }
        }
    }

    fn open(
        &mut self,
        policy: &Policy,
        now_ms: u64,
        trip: Trip,
        retry_after_ms: Option<u64>,
        random: f64,
    ) -> Change {
        let from = self.stored_kind();
        if from == StateKind::HalfOpen {
            self.reopens = self.reopens.saturating_add(1);
        } else {
            self.reopens = 0;
            self.outage_since_ms = Some(now_ms);
        }
        let duration = match trip.reason {
            FailureReason::QuotaExhausted => {
                jittered(policy, policy.quota_recovery_ms as f64, random)
            }
            _ => open_duration(policy, self.reopens, retry_after_ms, random),
        };
        let until_ms = now_ms.saturating_add(duration);
        let (failures, _) = self.window.totals(now_ms);
        self.state = State::Open {
            opened_ms: now_ms,
            until_ms,
        };
        self.last_trip = Some(trip);
        Change::transition(Transition {
            from,
            to: StateKind::Open,
            cause: Cause::Tripped(trip),
            at_ms: now_ms,
            failures_in_window: failures,
            open_duration_ms: None,
            until_ms: Some(until_ms),
        })
    }

    fn close(&mut self, now_ms: u64) -> Change {
        let open_duration_ms = self.outage_since_ms.map(|s| now_ms.saturating_sub(s));
        self.state = State::Closed;
        self.window.clear();
        self.reopens = 0;
        self.outage_since_ms = None;
        Change::transition(Transition {
            from: StateKind::HalfOpen,
            to: StateKind::Closed,
            cause: Cause::ProbesSucceeded,
            at_ms: now_ms,
            failures_in_window: 0,
            open_duration_ms,
            until_ms: None,
        })
    }

    /// A view for the health endpoint.
    pub fn snapshot(&self, policy: &Policy, now_ms: u64) -> Snapshot {
        let (failures, calls) = self.window.totals(now_ms);
        let (opened_at_ms, next_probe_in_ms) = match self.state {
            State::Open {
                opened_ms,
                until_ms,
            } => (Some(opened_ms), Some(until_ms.saturating_sub(now_ms))),
            _ => (None, None),
        };
        let probes_in_flight = match &self.state {
            State::HalfOpen { probes, .. } => probes.len() as u32,
            _ => 0,
        };
        Snapshot {
            state: self.kind(policy),
            mode: policy.mode,
            failures_in_window: failures,
            calls_in_window: calls,
            failure_rate: (policy.failure_rate.is_some() && calls > 0)
                .then(|| f64::from(failures) / f64::from(calls)),
            opened_at_ms,
            next_probe_in_ms,
            last_trip: self.last_trip,
            probes_in_flight,
        }
    }
}

/// How long the breaker stays OPEN: `recovery_timeout`, stretched by the provider's
/// Retry-After when honoured, times `backoff_multiplier` per consecutive re-open, capped at
/// `max_recovery_timeout`, then spread by ±`recovery_jitter` using `random` in [0, 1).
pub fn open_duration(
    policy: &Policy,
    reopens: u32,
    retry_after_ms: Option<u64>,
    random: f64,
) -> u64 {
    let mut base = policy.recovery_ms as f64;
    if policy.honor_retry_after {
        if let Some(ra) = retry_after_ms {
            base = base.max(ra as f64);
        }
    }
    let exponent = i32::try_from(reopens.min(1_000)).unwrap_or(1_000);
    base *= policy.backoff_multiplier.powi(exponent);
    base = base.min(policy.max_recovery_ms as f64);
    jittered(policy, base, random)
}

/// `base` ms spread by ±`recovery_jitter` using `random` in [0, 1).
fn jittered(policy: &Policy, base: f64, random: f64) -> u64 {
    let r = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let jittered = base * (1.0 + policy.recovery_jitter * (2.0 * r - 1.0));
    if jittered.is_finite() {
        (jittered.round() as u64).max(1)
    } else {
        policy.max_recovery_ms.max(1)
    }
}
