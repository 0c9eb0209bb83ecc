//! The lease of one upstream's active recovery probe.
//!
//! While a breaker is OPEN, exactly one worker of the process sends its recovery probe. The
//! right to send is a lease in shared data, taken by compare-and-swap: its holder sends the
//! next probe when it is due, and renews the lease by doing so. A holder that goes quiet (its
//! VM stopped ticking) stops renewing; once the lease expires any other worker takes it over.
//! The lease also carries the last probe's result and the process-wide counts, for the health
//! endpoint.

use super::breaker_state::{put, Reader};
use super::{Codec, DecodeError, KEY_PREFIX};

/// The shared-data key of `upstream`'s probe lease.
pub fn lease_key(upstream: &str) -> String {
    format!("{KEY_PREFIX}.probe.{upstream}")
}

const VERSION: u8 = 1;

/// How a recovery probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Answered with an expected status.
    Success,
    /// Answered with another status, or not at all (timeout, reset, no such cluster).
    Failure,
}

impl ProbeResult {
    pub const ALL: [ProbeResult; 2] = [ProbeResult::Success, ProbeResult::Failure];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Success => "success",
            ProbeResult::Failure => "failure",
        }
    }

    fn code(self) -> u8 {
        match self {
            ProbeResult::Success => 1,
            ProbeResult::Failure => 2,
        }
    }
}

/// The last probe sent, as the health endpoint shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastProbe {
    pub result: ProbeResult,
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    pub at_ms: u64,
}

/// One upstream's probe lease (worker 0 is nobody).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeLease {
    pub holder: u32,
    /// When the holder sends the next probe.
    pub next_at_ms: u64,
    /// After this, any worker may take the lease over.
    pub expires_ms: u64,
    pub last: Option<LastProbe>,
    pub successes: u64,
    pub failures: u64,
}

impl ProbeLease {
    /// Whether `worker` sends a probe now, taking or renewing the lease if so. It does when
    /// it holds the lease and the probe is due, or when the lease has expired (a free lease
    /// is expired from the start). The lease then lasts one interval past the longest the
    /// probe can take, so a holder whose probe is in flight keeps it.
    pub fn claim(&mut self, worker: u32, now_ms: u64, interval_ms: u64, timeout_ms: u64) -> bool {
        let due = if self.holder == worker {
            now_ms >= self.next_at_ms
        } else {
            now_ms >= self.expires_ms
        };
        if due {
            self.holder = worker;
            self.next_at_ms = now_ms.saturating_add(interval_ms);
            self.expires_ms = now_ms
                .saturating_add(interval_ms.max(timeout_ms))
                .saturating_add(interval_ms);
        }
        due
    }

    /// Records a probe's result.
    pub fn answered(&mut self, result: ProbeResult, status: Option<u16>, now_ms: u64) {
        self.last = Some(LastProbe {
            result,
            status,
            at_ms: now_ms,
        });
        match result {
            ProbeResult::Success => self.successes = self.successes.saturating_add(1),
            ProbeResult::Failure => self.failures = self.failures.saturating_add(1),
        }
    }
}

impl Codec for ProbeLease {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put(&mut out, u64::from(self.holder));
        put(&mut out, self.next_at_ms);
        put(&mut out, self.expires_ms);
        match self.last {
            None => out.push(0),
            Some(l) => {
                out.push(l.result.code());
                put(&mut out, l.status.map_or(0, u64::from));
                put(&mut out, l.at_ms);
            }
        }
        put(&mut out, self.successes);
        put(&mut out, self.failures);
        out
    }

    fn decode(bytes: &[u8]) -> Result<ProbeLease, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.byte().map_err(|_| DecodeError::Empty)?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let holder = r.u32()?;
        let next_at_ms = r.u64()?;
        let expires_ms = r.u64()?;
        let last = match r.byte()? {
            0 => None,
            code => {
                let result = ProbeResult::ALL
                    .into_iter()
                    .find(|p| p.code() == code)
                    .ok_or(DecodeError::BadTag(code))?;
                let status = u16::try_from(r.u64()?).map_err(|_| DecodeError::Overflow)?;
                Some(LastProbe {
                    result,
                    status: (status != 0).then_some(status),
                    at_ms: r.u64()?,
                })
            }
        };
        let lease = ProbeLease {
            holder,
            next_at_ms,
            expires_ms,
            last,
            successes: r.u64()?,
            failures: r.u64()?,
        };
        r.finish()?;
        Ok(lease)
    }
}
