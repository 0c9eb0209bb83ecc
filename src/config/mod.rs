//! The filter's public API: its JSON configuration.
//!
//! Configuration is read in two steps. [`raw`] is the serde layer: the JSON as users write
//! it, rejecting unknown keys. [`compile`] validates every value, resolves names to
//! [`UpstreamId`]s and precomputes what the request path needs, producing the typed
//! [`Config`] of [`model`]. Every error is a [`ConfigError`] whose message names the key
//! path, e.g. `upstreams[1].fallbacks[0]: unknown upstream "azur"`.

mod checks;
mod compile;
mod error;
mod field;
mod model;
mod policy;
mod raw;

use serde_json::Value;

pub use error::{ConfigError, ConfigErrorKind};
pub use model::*;

impl Config {
    /// Parses and validates the filter configuration.
    pub fn from_json(json: &str) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| ConfigError::new("", ConfigErrorKind::Syntax(e.to_string())))?;
        Config::from_value(value)
    }

    /// Validates a configuration that is already a JSON value (e.g. Istio's YAML `pluginConfig`).
    pub fn from_value(value: Value) -> Result<Config, ConfigError> {
        raw::RawConfig::read(value)?.compile()
    }
}
