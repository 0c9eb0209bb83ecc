//! The request body's `model`: read it to route, and rewrite it for a fallback in place.
//!
//! The rewrite changes only the bytes of the top-level `model` value; every other byte stays
//! as the client sent it (key order, number spelling such as `1e2`, big integers, escapes,
//! even lone surrogates that JavaScript's `JSON.stringify` emits). serde_json does the JSON
//! parsing: the top-level object is read as borrowed [`RawValue`]s, whose positions in the
//! body give the exact span to replace.

use std::borrow::Cow;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a body's `model` cannot be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRewritable {
    /// Not a JSON object (or not JSON at all).
    NotJsonObject,
    /// The body is compressed (`content-encoding`); the filter does not decode it.
    Encoded,
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The JSON body's top-level `model`, if the body is a JSON object with a string `model`.
pub fn model_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ModelField<'_>>(body)
        .ok()
        .and_then(|m| m.model.map(Cow::into_owned))
}

/// The body with the value of its top-level `model` replaced by `model` (or `model` added
/// first when there is none). Only those bytes change.
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, NotRewritable> {
    let spans = model_spans(body).ok_or(NotRewritable::NotJsonObject)?;
    let value = serde_json::to_string(model).map_err(|_| NotRewritable::NotJsonObject)?;
    let mut out = Vec::with_capacity(body.len() + value.len());
    if spans.values.is_empty() {
        // No `model` yet: insert it as the first member.
        let (head, tail) = body.split_at(spans.open.min(body.len()));
        out.extend_from_slice(head);
        out.extend_from_slice(b"\"model\":");
        out.extend_from_slice(value.as_bytes());
        if !spans.empty_object {
            out.push(b',');
        }
        out.extend_from_slice(tail);
        return Ok(out);
    }
    let mut at = 0;
    for (start, end) in spans.values {
        out.extend_from_slice(body.get(at..start).ok_or(NotRewritable::NotJsonObject)?);
        out.extend_from_slice(value.as_bytes());
        at = end;
    }
    out.extend_from_slice(body.get(at..).ok_or(NotRewritable::NotJsonObject)?);
    Ok(out)
}

/// Where the top-level object's `model` values are, and where its first member would go.
struct Spans {
    /// Byte ranges of every top-level `model` value (duplicates included), in order.
    values: Vec<(usize, usize)>,
    /// Just after the object's opening brace.
    open: usize,
    empty_object: bool,
}

fn model_spans(body: &[u8]) -> Option<Spans> {
    let members: TopLevel<'_> = serde_json::from_slice(body).ok()?;
    let base = body.as_ptr() as usize;
    let open = body.iter().position(|&b| b == b'{')? + 1;
    let mut values = Vec::new();
    for (key, raw) in &members.0 {
        if key != "model" {
            continue;
        }
        let start = (raw.get().as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(raw.get().len())?;
        values.push((start, end));
    }
    Some(Spans {
        values,
        open,
        empty_object: members.0.is_empty(),
    })
}

/// The members of a top-level JSON object, in order, values unparsed.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = TopLevel<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(TopLevel(out))
            }
        }
        d.deserialize_map(Members)
    }
}
