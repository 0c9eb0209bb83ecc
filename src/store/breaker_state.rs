//! Binary encoding of a [`Breaker`] for shared data.
//!
//! The encoding is versioned (first byte), compact (LEB128 varints, so an idle window is one
//! byte per counter) and round-trip exact. Decoding never panics: garbage, truncated or
//! foreign-version bytes give a [`DecodeError`] the caller can log, and the caller starts from
//! a clean CLOSED breaker instead.

use super::{Codec, DecodeError};
use crate::breaker::window::{Window, BUCKETS};
use crate::breaker::{Breaker, Probe, State, Trip, TripRule};
use crate::config::MAX_HALF_OPEN_REQUESTS;
use crate::outcome::FailureReason;

/// The current encoding version, the first byte of every value.
pub const VERSION: u8 = 1;

const TAG_CLOSED: u8 = 0;
const TAG_OPEN: u8 = 1;
const TAG_HALF_OPEN: u8 = 2;

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
    for (f, c) in b.window.failures.iter().zip(&b.window.calls) {
        put(&mut out, u64::from(*f));
        put(&mut out, u64::from(*c));
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
    for (f, c) in failures.iter_mut().zip(calls.iter_mut()) {
        *f = r.u32()?;
        *c = r.u32()?;
    }
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes(
            bytes.len().saturating_sub(r.pos),
        ));
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

impl Codec for Breaker {
    fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Breaker, DecodeError> {
        decode(bytes)
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
pub(super) fn put(out: &mut Vec<u8>, mut v: u64) {
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

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Errors unless every byte was read.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        match self.bytes.len().saturating_sub(self.pos) {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    pub(super) fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
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

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError::Overflow)
    }
}
