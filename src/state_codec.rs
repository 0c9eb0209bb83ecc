//! Binary encoding of a [`Breaker`] for proxy-wasm shared data.
//!
//! Every Envoy worker thread runs its own wasm VM; they share breaker state through the host's
//! shared-data store, as bytes. The encoding is versioned (first byte), compact (LEB128
//! varints, so an idle window is one byte per counter) and round-trip exact. Decoding never
//! panics: garbage, truncated or foreign-version bytes give a [`DecodeError`] the caller can
//! log, and [`decode_or_closed`] turns that into a clean CLOSED breaker.

use std::fmt;

use crate::breaker::{Breaker, Probe, State, Trip, TripRule};
use crate::classifier::FailureReason;
use crate::config::{Policy, MAX_HALF_OPEN_REQUESTS};
use crate::window::{Window, BUCKETS};

/// The current encoding version, the first byte of every value.
pub const VERSION: u8 = 1;

const TAG_CLOSED: u8 = 0;
const TAG_OPEN: u8 = 1;
const TAG_HALF_OPEN: u8 = 2;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnsupportedVersion(u8),
    Truncated,
    BadTag(u8),
    TooManyProbes(u64),
    TrailingBytes(usize),
    Overflow,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty breaker state"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "breaker state version {v} (expected {VERSION})")
            }
            DecodeError::Truncated => write!(f, "truncated breaker state"),
            DecodeError::BadTag(t) => write!(f, "invalid tag {t} in breaker state"),
            DecodeError::TooManyProbes(n) => write!(f, "{n} probes in breaker state"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes after breaker state"),
            DecodeError::Overflow => write!(f, "number out of range in breaker state"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Encodes a breaker state.
pub fn encode(b: &Breaker) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    match &b.state {
        State::Closed => out.push(TAG_CLOSED),
        State::Open {
            opened_ms,
            until_ms,
        } => {
            out.push(TAG_OPEN);
            put(&mut out, *opened_ms);
            put(&mut out, *until_ms);
        }
        State::HalfOpen {
            since_ms,
            successes,
            probes,
        } => {
            out.push(TAG_HALF_OPEN);
            put(&mut out, *since_ms);
            put(&mut out, u64::from(*successes));
            put(&mut out, probes.len() as u64);
            for p in probes {
                put(&mut out, u64::from(p.id));
                put(&mut out, p.started_ms);
            }
        }
    }
    put(&mut out, u64::from(b.reopens));
    match b.outage_since_ms {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put(&mut out, t);
        }
    }
    match b.last_trip {
        None => out.push(0),
        Some(t) => {
            out.push(rule_code(t.rule));
            out.push(t.reason.code());
        }
    }
    put(&mut out, u64::from(b.next_probe_id));
    put(&mut out, b.window.bucket_ms);
    put(&mut out, b.window.head);
    for i in 0..BUCKETS {
        put(&mut out, u64::from(b.window.failures[i]));
        put(&mut out, u64::from(b.window.calls[i]));
    }
    out
}

/// Decodes a breaker state written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Breaker, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.byte().map_err(|_| DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let state = match r.byte()? {
        TAG_CLOSED => State::Closed,
        TAG_OPEN => State::Open {
            opened_ms: r.u64()?,
            until_ms: r.u64()?,
        },
        TAG_HALF_OPEN => {
            let since_ms = r.u64()?;
            let successes = r.u32()?;
            let n = r.u64()?;
            if n > u64::from(MAX_HALF_OPEN_REQUESTS) {
                return Err(DecodeError::TooManyProbes(n));
            }
            let mut probes = Vec::with_capacity(n as usize);
            for _ in 0..n {
                probes.push(Probe {
                    id: r.u32()?,
                    started_ms: r.u64()?,
                });
            }
            State::HalfOpen {
                since_ms,
                successes,
                probes,
            }
        }
        t => return Err(DecodeError::BadTag(t)),
    };
    let reopens = r.u32()?;
    let outage_since_ms = match r.byte()? {
        0 => None,
        1 => Some(r.u64()?),
        t => return Err(DecodeError::BadTag(t)),
    };
    let last_trip = match r.byte()? {
        0 => None,
        rule => {
            let rule = rule_from_code(rule).ok_or(DecodeError::BadTag(rule))?;
            let code = r.byte()?;
            let reason = FailureReason::from_code(code).ok_or(DecodeError::BadTag(code))?;
            Some(Trip { rule, reason })
        }
    };
    let next_probe_id = r.u32()?;
    let bucket_ms = r.u64()?;
    if bucket_ms == 0 {
        return Err(DecodeError::Overflow);
    }
    let head = r.u64()?;
    let mut failures = [0u32; BUCKETS];
    let mut calls = [0u32; BUCKETS];
    for i in 0..BUCKETS {
        failures[i] = r.u32()?;
        calls[i] = r.u32()?;
    }
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - r.pos));
    }
    Ok(Breaker {
        state,
        window: Window {
            bucket_ms,
            head,
            failures,
            calls,
        },
        reopens,
        outage_since_ms,
        last_trip,
        next_probe_id,
    })
}

/// Decodes, or falls back to a clean CLOSED breaker for `policy` and returns the error to log.
pub fn decode_or_closed(bytes: &[u8], policy: &Policy) -> (Breaker, Option<DecodeError>) {
    match decode(bytes) {
        Ok(mut b) => {
            b.fit_to(policy);
            (b, None)
        }
        Err(e) => (Breaker::new(policy), Some(e)),
    }
}

fn rule_code(rule: TripRule) -> u8 {
    match rule {
        TripRule::Count => 1,
        TripRule::Rate => 2,
        TripRule::Probe => 3,
    }
}

fn rule_from_code(code: u8) -> Option<TripRule> {
    match code {
        1 => Some(TripRule::Count),
        2 => Some(TripRule::Rate),
        3 => Some(TripRule::Probe),
        _ => None,
    }
}

/// Appends `v` as an unsigned LEB128 varint.
fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Overflow);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Overflow)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError::Overflow)
    }
}

/// The set of breakers that are not CLOSED, by upstream name, kept in its own shared-data
/// key so the periodic tick visits only those (a healthy fleet of 1000 upstreams costs the
/// tick one read). Encoded as names separated by newlines; upstream names never contain one.
pub mod active_set {
    /// Decodes the set; unreadable bytes are an empty set.
    pub fn decode(bytes: &[u8]) -> Vec<String> {
        std::str::from_utf8(bytes)
            .unwrap_or("")
            .split('\n')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn encode(names: &[String]) -> Vec<u8> {
        names.join("\n").into_bytes()
    }

    /// Adds or removes `name`; returns false when the set already was that way.
    pub fn set(names: &mut Vec<String>, name: &str, member: bool) -> bool {
        let present = names.iter().any(|n| n == name);
        match (present, member) {
            (false, true) => names.push(name.to_string()),
            (true, false) => names.retain(|n| n != name),
            _ => return false,
        }
        true
    }
}
