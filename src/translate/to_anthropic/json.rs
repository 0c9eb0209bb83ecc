//! The few JSON helpers the translation is written with, kept out of line: `json!` expands
//! into a `to_value` per field type and `from_slice`/`to_vec` into a second copy of the
//! parser and printer; these reuse the `from_str` and `Display` the filter links anyway
//! (13 KB of the release wasm saved: 418,922 → 406,117 bytes with this direction live).

use serde_json::{Map, Value};

/// An object of `pairs` (their values are taken).
pub fn obj(pairs: &mut [(&str, Value)]) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs.iter_mut() {
        map.insert((*k).to_string(), v.take());
    }
    Value::Object(map)
}

/// A JSON string.
pub fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// `bytes` parsed, when they are UTF-8 JSON.
pub fn parse(bytes: &[u8]) -> Option<Value> {
    serde_json::from_str(std::str::from_utf8(bytes).ok()?).ok()
}

/// `v` as JSON text.
pub fn print(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}
