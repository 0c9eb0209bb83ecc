//! `exchange::with_model` and `model_of` on any body: no panic; a body serde_json reads as an
//! object is always rewritable; the rewrite is exactly the body with the bytes of each
//! top-level `model` value replaced (or `"model":…` inserted first when there is none), found
//! here by a scanner of its own rather than serde_json's positions; the result parses (to the
//! same JSON with the new model when the body parsed); rewriting it again changes nothing.
//!
//! Input: the new model, a NUL byte, the body; without a NUL the whole input is the body and
//! the model is `"gpt-4o-mini"`.

use ai_circuit_breaker::exchange::{model_of, with_model};
use serde_json::{Map, Value};

pub fn run(input: &[u8]) {
    let (model, body) = match input.iter().position(|&b| b == 0) {
        Some(i) => (
            String::from_utf8_lossy(&input[..i]).into_owned(),
            &input[i + 1..],
        ),
        None => ("gpt-4o-mini".to_string(), input),
    };
    let found = model_of(body);
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let out = match with_model(body, &model) {
        Ok(out) => out,
        Err(e) => {
            assert!(
                parsed.is_none(),
                "a body serde_json reads as an object was refused: {e:?}"
            );
            return;
        }
    };

    let members = scan(body).expect("with_model accepted a body that is not one JSON object");
    let value = serde_json::to_string(&model).expect("a string always serializes");
    assert_eq!(
        out,
        splice(body, &members, value.as_bytes()),
        "bytes outside `model` changed"
    );

    let models = members.values.len();
    if models <= 1 {
        assert_eq!(model_of(&out).as_deref(), Some(model.as_str()));
    }
    if models == 1 {
        assert!(
            found.is_some() || non_string_model(body),
            "model_of missed the model"
        );
    }
    if let Some(mut before) = parsed {
        let after: Map<String, Value> =
            serde_json::from_slice(&out).expect("the rewritten body does not parse");
        before.insert("model".to_string(), Value::String(model.clone()));
        assert_eq!(after, before, "the rewrite changed more than `model`");
    }
    assert_eq!(
        with_model(&out, &model).as_deref(),
        Ok(out.as_slice()),
        "a second rewrite changed the body"
    );
}

/// Whether the body's top-level `model` is something other than a string.
fn non_string_model(body: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(body)
        .map_or(true, |m| m.get("model").is_some_and(|v| !v.is_string()))
}

/// What [`scan`] found in a top-level object.
struct Members {
    /// Just after the opening brace.
    open: usize,
    /// Byte ranges of the values of every member whose key decodes to `model`.
    values: Vec<(usize, usize)>,
    empty: bool,
}

/// The expected rewrite: each `model` value replaced, or a first member inserted.
fn splice(body: &[u8], m: &Members, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if m.values.is_empty() {
        out.extend_from_slice(&body[..m.open]);
        out.extend_from_slice(b"\"model\":");
        out.extend_from_slice(value);
        if !m.empty {
            out.push(b',');
        }
        out.extend_from_slice(&body[m.open..]);
        return out;
    }
    let mut at = 0;
    for &(start, end) in &m.values {
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(value);
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Walks a JSON text that is one object, by bytes: strings (with escapes) are skipped whole,
/// brackets counted, so each top-level member's key and value span are found without a JSON
/// parser. Keys are decoded (escapes included) to compare with `model`.
fn scan(body: &[u8]) -> Option<Members> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    let open = i + 1;
    i = skip_ws(body, open);
    let mut values = Vec::new();
    let mut empty = true;
    if body.get(i) == Some(&b'}') {
        return Some(Members {
            open,
            values,
            empty,
        });
    }
    loop {
        empty = false;
        let key_end = string_end(body, i)?;
        let key: String = serde_json::from_slice(&body[i..key_end]).ok()?;
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(body, i + 1);
        let (end, next) = value_end(body, start)?;
        if key == "model" {
            values.push((start, end));
        }
        match body.get(next) {
            Some(b',') => i = skip_ws(body, next + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    Some(Members {
        open,
        values,
        empty,
    })
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// Just past the string starting at `i` (a `"`).
fn string_end(body: &[u8], i: usize) -> Option<usize> {
    if body.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match body.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end of the value starting at `start` (trailing whitespace excluded), and the position
/// of the `,` or `}` after it.
fn value_end(body: &[u8], start: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut j = start;
    let mut last = start;
    loop {
        let b = *body.get(j)?;
        match b {
            b'"' => {
                j = string_end(body, j)?;
                last = j;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b'}' if depth == 0 => return Some((last, j)),
            _ => {}
        }
        j += 1;
        if !is_ws(b) {
            last = j;
        }
    }
}
