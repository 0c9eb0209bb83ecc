//! JSON values typed as configuration fields, with the messages serde gives for them.
//!
//! [`super::raw`] reads every key through [`Field::read`]. Typing with
//! `serde_json::from_value` instead inlined serde's visitor machinery at each of ~70 keys
//! (~19 KB of the wasm budget in one function); here each type has one reader, kept out of
//! line, reading straight from [`Value`]. The messages are serde_json's own, word for word
//! (`invalid type: floating point `1.5`, expected u32`); `src/tests/config_fields.rs` checks
//! them against serde for every JSON kind.

use serde_json::{Number, Value};

use super::error::{ConfigError, ConfigErrorKind};
use super::model::{AlertFormat, AlertOn, Mode};
use crate::outcome::FailureReason;

/// A type a configuration key can hold.
pub(super) trait Field: Sized {
    fn read(path: &str, value: Value) -> Result<Self, ConfigError>;
}

fn syntax(path: &str, message: String) -> ConfigError {
    ConfigError::new(path, ConfigErrorKind::Syntax(message))
}

/// How serde_json names an unexpected value (`Value::unexpected` shown by its error type).
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => number(n),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    }
}

fn number(n: &Number) -> String {
    if n.is_f64() {
        format!("floating point `{n}`")
    } else {
        format!("integer `{n}`")
    }
}

#[inline(never)]
fn invalid_type(path: &str, v: &Value, expected: &str) -> ConfigError {
    syntax(
        path,
        format!("invalid type: {}, expected {expected}", unexpected(v)),
    )
}

/// An unsigned integer of at most `max`, named `expected` (`u16`, `u32`, ...) in errors.
#[inline(never)]
fn unsigned(path: &str, v: Value, max: u64, expected: &str) -> Result<u64, ConfigError> {
    let Value::Number(n) = &v else {
        return Err(invalid_type(path, &v, expected));
    };
    if let Some(u) = n.as_u64() {
        if u <= max {
            return Ok(u);
        }
    } else if n.is_f64() {
        return Err(invalid_type(path, &v, expected));
    }
    Err(syntax(
        path,
        format!("invalid value: integer `{n}`, expected {expected}"),
    ))
}

impl Field for u16 {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<u16, ConfigError> {
        let u = unsigned(path, value, u16::MAX.into(), "u16")?;
        Ok(u16::try_from(u).unwrap_or(u16::MAX))
    }
}

impl Field for u32 {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<u32, ConfigError> {
        let u = unsigned(path, value, u32::MAX.into(), "u32")?;
        Ok(u32::try_from(u).unwrap_or(u32::MAX))
    }
}

impl Field for u64 {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<u64, ConfigError> {
        unsigned(path, value, u64::MAX, "u64")
    }
}

impl Field for usize {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<usize, ConfigError> {
        let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
        let u = unsigned(path, value, max, "usize")?;
        Ok(usize::try_from(u).unwrap_or(usize::MAX))
    }
}

impl Field for f64 {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<f64, ConfigError> {
        match &value {
            // Every JSON number is a finite f64 (serde_json reads integers as integers).
            Value::Number(n) => n.as_f64().ok_or_else(|| invalid_type(path, &value, "f64")),
            _ => Err(invalid_type(path, &value, "f64")),
        }
    }
}

impl Field for bool {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<bool, ConfigError> {
        match value {
            Value::Bool(b) => Ok(b),
            other => Err(invalid_type(path, &other, "a boolean")),
        }
    }
}

impl Field for String {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<String, ConfigError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(invalid_type(path, &other, "a string")),
        }
    }
}

/// A header map: `{"name": "value", ...}`, in serde_json's (sorted, duplicate-free) key order.
/// A list of pairs, not a `BTreeMap`: a second map type linked its own copy of the B-tree's
/// insert, clone, iteration and drop code into the wasm.
pub(super) type HeaderMap = Vec<(String, String)>;

impl Field for HeaderMap {
    #[inline(never)]
    fn read(path: &str, value: Value) -> Result<HeaderMap, ConfigError> {
        match value {
            Value::Object(map) => {
                let mut out = Vec::with_capacity(map.len());
                for (k, v) in map {
                    out.push((k, String::read(path, v)?));
                }
                Ok(out)
            }
            other => Err(invalid_type(path, &other, "a map")),
        }
    }
}

/// serde's list of expected names: `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// The index in `names` of a unit variant written as serde_json reads enums: `"name"`, or
/// `{"name": null}`.
#[inline(never)]
fn variant(path: &str, value: Value, names: &[&str]) -> Result<usize, ConfigError> {
    let (name, content) = match value {
        Value::String(s) => (s, None),
        Value::Object(map) if map.len() == 1 => match map.into_iter().next() {
            Some((k, v)) => (k, Some(v)),
            None => return Err(syntax(path, String::new())),
        },
        Value::Object(_) => {
            return Err(syntax(
                path,
                "invalid value: map, expected map with a single key".to_string(),
            ))
        }
        other => return Err(invalid_type(path, &other, "string or map")),
    };
    let Some(i) = names.iter().position(|n| *n == name) else {
        return Err(syntax(
            path,
            format!("unknown variant `{name}`, expected {}", one_of(names)),
        ));
    };
    match content {
        None | Some(Value::Null) => Ok(i),
        Some(other) => Err(invalid_type(path, &other, "unit")),
    }
}

/// The element of `all` whose name (by `name`) is the variant read at `path`.
fn pick<T: Copy>(
    path: &str,
    value: Value,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, ConfigError> {
    let names: Vec<&str> = all.iter().map(|&t| name(t)).collect();
    let i = variant(path, value, &names)?;
    all.get(i)
        .copied()
        .ok_or_else(|| syntax(path, String::new()))
}

impl Field for Mode {
    fn read(path: &str, value: Value) -> Result<Mode, ConfigError> {
        use Mode::*;
        pick(
            path,
            value,
            &[Enforce, MetricsOnly, ForcedOpen, Disabled],
            Mode::as_str,
        )
    }
}

impl Field for AlertFormat {
    fn read(path: &str, value: Value) -> Result<AlertFormat, ConfigError> {
        pick(
            path,
            value,
            &[AlertFormat::Slack, AlertFormat::Json],
            |f| match f {
                AlertFormat::Slack => "slack",
                AlertFormat::Json => "json",
            },
        )
    }
}

impl Field for AlertOn {
    fn read(path: &str, value: Value) -> Result<AlertOn, ConfigError> {
        use AlertOn::*;
        pick(path, value, &[Open, HalfOpen, Close], |on| match on {
            Open => "open",
            HalfOpen => "half_open",
            Close => "close",
        })
    }
}

impl Field for FailureReason {
    fn read(path: &str, value: Value) -> Result<FailureReason, ConfigError> {
        pick(path, value, &FailureReason::ALL, FailureReason::as_str)
    }
}
