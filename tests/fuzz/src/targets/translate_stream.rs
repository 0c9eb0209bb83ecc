//! `translate::StreamTranslator`, both directions: any stream, cut into chunks anywhere,
//! translates to the same bytes as the whole stream at once; the translator never holds more
//! than its framer's cap; what it writes is SSE whose every `data:` is JSON or `[DONE]`.
//!
//! Input: one byte choosing the direction (even: an OpenAI client of an Anthropic stream,
//! odd: the reverse) and seeding the chunk sizes, then the upstream's stream.

use ai_circuit_breaker::sse::{Frame, Framer};
use ai_circuit_breaker::translate::{Api, StreamTranslator};

use super::sse_framing::Chunks;

/// The translators' framer cap (`EVENT_CAP` in both directions).
const CAP: usize = 256 * 1024;

pub fn run(input: &[u8]) {
    let [pick, stream @ ..] = input else {
        return;
    };
    let (client, served) = if pick % 2 == 0 {
        (Api::OpenAi, Api::Anthropic)
    } else {
        (Api::Anthropic, Api::OpenAi)
    };
    let whole = translate(client, served, std::iter::once(stream));
    let cut = translate(client, served, Chunks::new(stream, *pick));
    assert_eq!(
        cut, whole,
        "chunks of seed {pick} differ from the whole stream"
    );
    let mut framer = Framer::new(usize::MAX);
    framer.feed(&whole, &mut |frame| {
        let Frame::Event(e) = frame else {
            panic!("an oversized event written");
        };
        assert!(
            e.data == b"[DONE]" || serde_json::from_slice::<serde_json::Value>(e.data).is_ok(),
            "a data line that is not JSON: {}",
            String::from_utf8_lossy(e.data)
        );
    });
    assert!(!framer.mid_event(), "the output ends mid-event");
}

fn translate<'a>(client: Api, served: Api, chunks: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let Some(mut t) = StreamTranslator::new(client, served) else {
        panic!("no translator between two formats");
    };
    let mut out = Vec::new();
    for chunk in chunks {
        t.feed(chunk, &mut out);
        assert!(t.held_bytes() <= CAP, "holds {} bytes", t.held_bytes());
    }
    t.finish(&mut out);
    out
}
