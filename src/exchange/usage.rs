//! Token usage in a non-streamed JSON answer, read from the end of its body.
//!
//! OpenAI Chat Completions ends its answer with `"usage":{"prompt_tokens":..,
//! "completion_tokens":..}`, Anthropic Messages and OpenAI Responses with `"usage":
//! {"input_tokens":..,"output_tokens":..}`. The answer itself can be long, so the filter keeps
//! only its last [`TAIL_BYTES`] as they pass and reads the last top-level-looking `"usage"`
//! object there: bounded memory, one short parse per answer.

use serde::Deserialize;

/// How much of an answer's end is kept to find its usage.
pub const TAIL_BYTES: usize = 2048;

#[derive(Deserialize, Default)]
struct Counts {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// `(input, output)` tokens from the `usage` object nearest the end of `tail`.
pub fn usage_in_tail(tail: &[u8]) -> Option<(u64, u64)> {
    let key = b"\"usage\"";
    let at = tail.windows(key.len()).rposition(|w| w == key)?;
    let rest = tail.get(at + key.len()..)?;
    let colon = rest.iter().position(|&b| !b.is_ascii_whitespace())?;
    let rest = rest.get(colon..)?.strip_prefix(b":")?;
    let mut de = serde_json::Deserializer::from_slice(rest);
    let c = Counts::deserialize(&mut de).ok()?;
    let input = c.prompt_tokens.or(c.input_tokens)?;
    let output = c.completion_tokens.or(c.output_tokens).unwrap_or(0);
    Some((input, output))
}

/// Keeps the last [`TAIL_BYTES`] of an answer as its chunks pass.
#[derive(Debug, Default)]
pub struct Tail(Vec<u8>);

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        let keep = chunk.len().min(TAIL_BYTES);
        let chunk = chunk.get(chunk.len() - keep..).unwrap_or(&[]);
        let over = (self.0.len() + chunk.len()).saturating_sub(TAIL_BYTES);
        self.0.drain(..over.min(self.0.len()));
        self.0.extend_from_slice(chunk);
    }

    pub fn usage(&self) -> Option<(u64, u64)> {
        usage_in_tail(&self.0)
    }
}
