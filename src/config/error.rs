//! Configuration errors: the key path and what is wrong there, e.g.
//! `upstreams[1].fallbacks[0]: unknown upstream "azur"`.

use std::fmt;

/// A configuration error: the key path and what is wrong there.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub kind: ConfigErrorKind,
}

/// What is wrong with a configuration value.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigErrorKind {
    /// Not JSON, a wrong type, a missing or unknown key (serde's own message).
    Syntax(String),
    /// A value outside its allowed range.
    OutOfRange(String),
    /// A name that refers to no upstream.
    UnknownUpstream(String),
    /// Two upstreams with one name.
    DuplicateUpstream(String),
    /// Fallbacks that lead back to where they started.
    FallbackCycle(Vec<String>),
    /// A list that must not be empty.
    Empty(&'static str),
}

impl ConfigError {
    pub(super) fn new(path: impl Into<String>, kind: ConfigErrorKind) -> Self {
        ConfigError {
            path: path.into(),
            kind,
        }
    }

    pub(super) fn range(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::new(path, ConfigErrorKind::OutOfRange(reason.into()))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "config"
        } else {
            &self.path
        };
        match &self.kind {
            ConfigErrorKind::Syntax(m) | ConfigErrorKind::OutOfRange(m) => write!(f, "{path}: {m}"),
            ConfigErrorKind::UnknownUpstream(n) => write!(f, "{path}: unknown upstream \"{n}\""),
            ConfigErrorKind::DuplicateUpstream(n) => {
                write!(f, "{path}: duplicate upstream name \"{n}\"")
            }
            ConfigErrorKind::FallbackCycle(c) => {
                write!(f, "{path}: fallback cycle {}", c.join(" -> "))
            }
            ConfigErrorKind::Empty(what) => write!(f, "{path}: at least one {what} is required"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `base` and a path inside it joined: `upstreams[1]` + `rewrite.model`.
pub(super) fn join_path(base: &str, inner: &str) -> String {
    match (base.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_string(),
        (false, true) => base.to_string(),
        (false, false) if inner.starts_with('[') => format!("{base}{inner}"),
        (false, false) => format!("{base}.{inner}"),
    }
}
