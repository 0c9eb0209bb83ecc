//! Typed values in proxy-wasm shared data, updated by compare-and-swap.
//!
//! Every Envoy worker runs its own wasm VM; they share state only through the host's
//! shared-data store, as bytes with a CAS token. Four kinds of value live there (each
//! breaker's [`Breaker`](crate::breaker::Breaker) state, each breaker's alert log, the set
//! of breakers that are not CLOSED, and each recovery probe's lease). Each implements [`Codec`], and every change to any of
//! them goes through the one [`update`] loop: read, decode, change, write back if the token
//! still matches, else start over. No update is lost, and the closure runs on the value every
//! other worker sees, so a transition is performed (and announced) by exactly one worker.

pub mod active_set;
pub mod breaker_state;
pub mod probe_lease;

use std::fmt;

use crate::host::{Host, WriteError};

/// Attempts of one compare-and-swap update before giving up.
pub const MAX_CAS_ATTEMPTS: usize = 64;

/// Prefix of every shared-data key: Istio puts all plugins in one namespace.
pub const KEY_PREFIX: &str = "ai_circuit_breaker.v1";

/// A value stored in shared data.
pub trait Codec: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// Why stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnsupportedVersion(u8),
    Truncated,
    BadTag(u8),
    TooManyProbes(u64),
    TrailingBytes(usize),
    Overflow,
    NotUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty value"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported encoding version {v}"),
            DecodeError::Truncated => write!(f, "truncated value"),
            DecodeError::BadTag(t) => write!(f, "invalid tag {t}"),
            DecodeError::TooManyProbes(n) => write!(f, "{n} probes"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            DecodeError::Overflow => write!(f, "number out of range"),
            DecodeError::NotUtf8 => write!(f, "not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A value as read: decoded, or `fresh` when the key is missing or unreadable.
pub struct Read<T> {
    pub value: T,
    pub cas: Option<u32>,
    /// Set when bytes were there but could not be decoded (the caller may log it).
    pub unreadable: Option<DecodeError>,
}

/// Reads and decodes `key`.
pub fn read<T: Codec>(host: &impl Host, key: &str, fresh: impl Fn() -> T) -> Read<T> {
    let (bytes, cas) = host.shared_get(key);
    match bytes.as_deref().map(T::decode) {
        Some(Ok(value)) => Read {
            value,
            cas,
            unreadable: None,
        },
        Some(Err(e)) => Read {
            value: fresh(),
            cas,
            unreadable: Some(e),
        },
        None => Read {
            value: fresh(),
            cas,
            unreadable: None,
        },
    }
}

/// The result of an [`update`].
pub struct Updated<R> {
    /// What the closure returned on its last run.
    pub result: R,
    /// The change is stored (always true when the closure changed nothing).
    pub committed: bool,
    /// The closure changed the value and that change is the one stored.
    pub wrote: bool,
    pub unreadable: Option<DecodeError>,
}

/// Applies `change` to the value at `key` by compare-and-swap. `change` returns its result
/// and whether it modified the value; it may run several times (once per conflict), always
/// on the freshest value, and only its last run's result is returned.
pub fn update<T: Codec, R>(
    host: &impl Host,
    key: &str,
    fresh: impl Fn() -> T,
    mut change: impl FnMut(&mut T) -> (R, bool),
) -> Updated<R> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Read {
            mut value,
            cas,
            unreadable,
        } = read(host, key, &fresh);
        let (result, dirty) = change(&mut value);
        if !dirty {
            return Updated {
                result,
                committed: true,
                wrote: false,
                unreadable,
            };
        }
        match host.shared_set(key, &value.encode(), cas) {
            Ok(()) => {
                return Updated {
                    result,
                    committed: true,
                    wrote: true,
                    unreadable,
                }
            }
            Err(WriteError::CasMismatch) if attempt < MAX_CAS_ATTEMPTS => continue,
            Err(_) => {
                return Updated {
                    result,
                    committed: false,
                    wrote: false,
                    unreadable,
                }
            }
        }
    }
}

/// Creates `key` with `initial` unless it exists. Creation ignores CAS in proxy-wasm, so
/// this runs at configure time, before traffic; a reload keeps the existing value.
pub fn create<T: Codec>(host: &impl Host, key: &str, initial: &T) {
    if host.shared_get(key).0.is_none() {
        let _ = host.shared_set(key, &initial.encode(), None);
    }
}
