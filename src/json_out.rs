//! JSON documents written straight into a `String`, byte for byte as `json!(..).to_string()`
//! writes them (keys in the order given, which callers keep sorted as serde_json's map does).
//!
//! Building a `serde_json::Value` tree to print it once cost the alert payloads and the health document ~7 KB of the
//! 400 KiB wasm budget in allocation and drop code; writing the text directly costs a few
//! hundred bytes.

/// A JSON object being written.
pub struct Object(String);

impl Object {
    pub fn new() -> Object {
        Object(String::from("{"))
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        quote(&mut self.0, key);
        self.0.push(':');
    }

    pub fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        quote(&mut self.0, value);
        self
    }

    pub fn opt_str(self, key: &str, value: Option<&str>) -> Object {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    pub fn num(mut self, key: &str, value: u64) -> Object {
        self.key(key);
        self.0.push_str(&value.to_string());
        self
    }

    pub fn opt_num(self, key: &str, value: Option<u64>) -> Object {
        match value {
            Some(v) => self.num(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// A float as serde_json prints it (shortest digits), `null` when absent or not finite.
    pub fn opt_float(self, key: &str, value: Option<f64>) -> Object {
        match value.and_then(serde_json::Number::from_f64) {
            Some(n) => self.raw(key, &n.to_string()),
            None => self.raw(key, "null"),
        }
    }

    pub fn bool(self, key: &str, value: bool) -> Object {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// `value` is JSON text already (an array or object written here).
    pub fn raw(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        self.0.push_str(value);
        self
    }

    pub fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

impl Default for Object {
    fn default() -> Self {
        Object::new()
    }
}

/// A JSON array of elements that are JSON text already.
pub fn array(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

/// `s` as a JSON string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote(&mut out, s);
    out
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}
