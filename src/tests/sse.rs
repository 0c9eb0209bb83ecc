//! SSE framing: events whatever the chunking, bounded memory, every line ending.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::sse::{Frame, Framer};

/// `(name, data)` of every event, `None` data for an oversized one.
pub(crate) fn frames(chunks: &[&[u8]], cap: usize) -> Vec<(Option<String>, Option<String>)> {
    let mut f = Framer::new(cap);
    let mut out = Vec::new();
    for c in chunks {
        f.feed(c, &mut |frame| {
            out.push(match frame {
                Frame::Event(e) => (
                    e.name.map(str::to_string),
                    Some(String::from_utf8_lossy(e.data).into_owned()),
                ),
                Frame::Oversized => (None, None),
            })
        });
    }
    out
}

fn ev(name: Option<&str>, data: &str) -> (Option<String>, Option<String>) {
    (name.map(str::to_string), Some(data.to_string()))
}

const ANTHROPIC: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\n\n";

#[test]
fn events_carry_their_name_and_data() {
    let got = frames(&[ANTHROPIC], 1 << 16);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0],
        ev(Some("message_start"), "{\"type\":\"message_start\"}")
    );
    assert_eq!(got[1].0.as_deref(), Some("ping"));
}

#[test]
fn data_lines_join_with_newlines_and_comments_are_skipped() {
    let got = frames(
        &[b": keep-alive\ndata: a\ndata:b\nid: 7\nretry: 10\n\ndata: [DONE]\n\n"],
        64,
    );
    assert_eq!(got, vec![ev(None, "a\nb"), ev(None, "[DONE]")]);
}

#[test]
fn every_line_ending_works_including_a_crlf_split_across_chunks() {
    let got = frames(&[b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\n\n"], 64);
    assert_eq!(got, vec![ev(None, "a"), ev(None, "b"), ev(None, "c")]);
}

#[test]
fn an_event_over_the_cap_is_dropped_once_and_the_next_one_arrives() {
    let big = format!("data: {}\n\n", "x".repeat(500));
    let input = [big.as_bytes(), b"data: small\n\n"].concat();
    let got = frames(&[&input], 100);
    assert_eq!(got, vec![(None, None), ev(None, "small")]);
}

#[test]
fn a_stream_cut_mid_event_is_visible() {
    let mut f = Framer::new(64);
    f.feed(b"data: {\"a\":", &mut |_| {});
    assert!(f.mid_event());
    f.feed(b"1}\n\n", &mut |_| {});
    assert!(!f.mid_event());
    assert_eq!(f.bytes_seen(), 15);
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use proptest::prelude::*;

    use super::{frames, ANTHROPIC};

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(cuts in prop::collection::vec(0usize..ANTHROPIC.len(), 0..20)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&ANTHROPIC[at..c]);
                at = c;
            }
            chunks.push(&ANTHROPIC[at..]);
            prop_assert_eq!(frames(&chunks, 1 << 16), frames(&[ANTHROPIC], 1 << 16));
        }
    }

    #[test]
    fn one_byte_per_chunk_gives_the_same_events() {
        let chunks: Vec<&[u8]> = ANTHROPIC.chunks(1).collect();
        assert_eq!(frames(&chunks, 1 << 16), frames(&[ANTHROPIC], 1 << 16));
    }
}
