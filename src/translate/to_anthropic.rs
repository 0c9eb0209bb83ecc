//! An OpenAI client served by an Anthropic upstream: the request OpenAI Chat Completions → Anthropic Messages, the answer (JSON, stream, error) Anthropic → OpenAI.
//!
//! SKELETON: every function here is a placeholder to be replaced by the real translation.

use super::{Refused, Request};
use crate::sse::Framer;

/// Largest event held while it is assembled.
const EVENT_CAP: usize = 256 * 1024;

pub fn request(body: &[u8], _default_max_tokens: u32) -> Result<Request, Refused> {
    let _ = body;
    Err(Refused::Unsupported("translation not built yet"))
}

pub fn response(body: &[u8]) -> Option<Vec<u8>> {
    let _ = body;
    None
}

pub fn error(_status: u16, body: &[u8]) -> Vec<u8> {
    body.to_vec()
}

/// One stream's translation state.
#[derive(Debug)]
pub struct Stream {
    framer: Framer,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::new()
    }
}

impl Stream {
    pub fn new() -> Stream {
        Stream {
            framer: Framer::new(EVENT_CAP),
        }
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.framer.feed(chunk, &mut |_frame| {});
        let _ = out;
    }

    pub fn finish(&mut self, _out: &mut Vec<u8>) {}

    pub fn held_bytes(&self) -> usize {
        self.framer.held_bytes()
    }
}
