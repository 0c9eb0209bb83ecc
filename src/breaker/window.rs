//! Rolling time window of call and failure counts, in a fixed number of buckets.
//!
//! Memory is bounded (`BUCKETS` pairs of counters) whatever the traffic, and the window is
//! time-based: failures expire on their own, they are not reset by a success. A call recorded
//! at time `t` is counted until the bucket that holds it falls out of the window, that is for
//! between `window_size - window_size/BUCKETS` and `window_size`.

/// Number of buckets a window is split into.
pub const BUCKETS: usize = 20;

/// Counts per bucket; bucket `i` (absolute index `time / bucket_ms`) lives in slot `i % BUCKETS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Width of one bucket in milliseconds.
    pub bucket_ms: u64,
    /// Absolute index of the newest bucket written.
    pub head: u64,
    pub failures: [u32; BUCKETS],
    pub calls: [u32; BUCKETS],
}

impl Window {
    /// An empty window covering `window_ms`.
    pub fn new(window_ms: u64) -> Window {
        Window {
            bucket_ms: Self::bucket_width(window_ms),
            head: 0,
            failures: [0; BUCKETS],
            calls: [0; BUCKETS],
        }
    }

    /// Bucket width for a window length (at least 1 ms).
    pub fn bucket_width(window_ms: u64) -> u64 {
        window_ms.div_ceil(BUCKETS as u64).max(1)
    }

    fn index(&self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms.max(1)
    }

    /// Moves the head to `now`, zeroing the buckets that expired. A clock that went backwards
    /// keeps the current head: the call lands in the newest bucket.
    fn advance(&mut self, now_ms: u64) -> usize {
        let idx = self.index(now_ms);
        if idx > self.head {
            let gap = (idx - self.head).min(BUCKETS as u64);
            for k in 1..=gap {
                let slot = slot_of(self.head + k);
                if let Some(f) = self.failures.get_mut(slot) {
                    *f = 0;
                }
                if let Some(c) = self.calls.get_mut(slot) {
                    *c = 0;
                }
            }
            self.head = idx;
        }
        slot_of(self.head)
    }

    /// Records one call at `now`.
    pub fn record(&mut self, now_ms: u64, failed: bool) {
        let slot = self.advance(now_ms);
        if let Some(c) = self.calls.get_mut(slot) {
            *c = c.saturating_add(1);
        }
        if failed {
            if let Some(f) = self.failures.get_mut(slot) {
                *f = f.saturating_add(1);
            }
        }
    }

    /// `(failures, calls)` inside the window as seen at `now`.
    pub fn totals(&self, now_ms: u64) -> (u32, u32) {
        let idx = self.index(now_ms).max(self.head);
        let mut failures = 0u32;
        let mut calls = 0u32;
        for k in 0..BUCKETS as u64 {
            let Some(abs) = self.head.checked_sub(k) else {
                break;
            };
            // Not `abs + BUCKETS <= idx`: a head near u64::MAX (stored bytes) overflowed it.
            if idx.saturating_sub(abs) >= BUCKETS as u64 {
                break;
            }
            let slot = slot_of(abs);
            failures = failures.saturating_add(self.failures.get(slot).copied().unwrap_or(0));
            calls = calls.saturating_add(self.calls.get(slot).copied().unwrap_or(0));
        }
        (failures, calls)
    }

    /// Forgets every call.
    pub fn clear(&mut self) {
        self.failures = [0; BUCKETS];
        self.calls = [0; BUCKETS];
    }
}

/// The ring slot of absolute bucket index `abs`.
fn slot_of(abs: u64) -> usize {
    (abs % BUCKETS as u64) as usize
}
