//! JSON read and written for the translation (both directions) with the least code in the
//! wasm module.
//!
//! Bodies are parsed with `serde_json::from_str` into a `Value`, the same instance of the
//! parser the configuration uses (`from_slice` would link a second one), and the translated
//! JSON is written as text straight into a byte buffer: no `Value` tree is built to be
//! printed once, and strings are escaped by the same serde_json routine the SSE error event
//! uses. Measured with a live call in the release module: 26.9 KB with `Value` trees and
//! `from_slice`, 17.5 KB written this way.

use serde_json::Value;

/// The JSON object or array in `body`; `None` when it is not UTF-8 JSON.
pub(crate) fn parse(body: &[u8]) -> Option<Value> {
    serde_json::from_str(std::str::from_utf8(body).ok()?).ok()
}

/// The string field `key` of `v`.
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// JSON text being written.
pub(crate) struct W(pub Vec<u8>);

impl W {
    pub fn with_capacity(n: usize) -> W {
        W(Vec::with_capacity(n))
    }

    #[inline(never)]
    pub fn raw(&mut self, s: &str) -> &mut W {
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// A comma unless the last byte opened an object or array.
    #[inline(never)]
    pub fn sep(&mut self) -> &mut W {
        if !matches!(self.0.last(), None | Some(b'{' | b'[')) {
            self.0.push(b',');
        }
        self
    }

    /// `,"key":` (the comma when needed); `key` needs no escaping.
    #[inline(never)]
    pub fn key(&mut self, key: &str) -> &mut W {
        self.sep().raw("\"").raw(key).raw("\":")
    }

    /// `s` as a JSON string.
    #[inline(never)]
    pub fn str(&mut self, s: &str) -> &mut W {
        let _ = serde_json::to_writer(&mut self.0, s);
        self
    }

    #[inline(never)]
    pub fn num(&mut self, n: u64) -> &mut W {
        self.raw(&n.to_string())
    }

    /// Any value, written back as JSON text.
    pub fn value(&mut self, v: &Value) -> &mut W {
        match v {
            Value::Null => self.raw("null"),
            Value::Bool(b) => self.raw(if *b { "true" } else { "false" }),
            Value::Number(n) => self.raw(&n.to_string()),
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.raw("[");
                for item in items {
                    self.sep().value(item);
                }
                self.raw("]")
            }
            Value::Object(map) => {
                self.raw("{");
                for (k, item) in map {
                    self.sep().str(k).raw(":").value(item);
                }
                self.raw("}")
            }
        }
    }
}

/// The value at `path` (object keys, or array indexes written in decimal), as
/// `Value::pointer` finds it for a path of plain tokens, without its escape handling
/// (`str::replace` and the pointer's parsing cost ~1 KB of the wasm module).
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = v;
    for token in path {
        v = match v {
            Value::Object(map) => map.get(*token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}
