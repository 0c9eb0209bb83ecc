//! SSE framing: events whatever the chunking, bounded memory, every line ending.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::sse::{Frame, Framer};

/// `(name, data)` of every event, `None` data for an oversized one.
pub(crate) fn frames(chunks: &[&[u8]], cap: usize) -> Vec<(Option<String>, Option<String>)> {
    frames_at(chunks, cap)
        .into_iter()
        .map(|(name, data, _)| (name, data))
        .collect()
}

/// `(name, data, end)` of every frame, `None` data for an oversized one.
pub(crate) fn frames_at(
    chunks: &[&[u8]],
    cap: usize,
) -> Vec<(Option<String>, Option<String>, u64)> {
    let mut f = Framer::new(cap);
    let mut out = Vec::new();
    for c in chunks {
        f.feed(c, &mut |frame| {
            out.push(match frame {
                Frame::Event(e) => (
                    e.name.map(str::to_string),
                    Some(String::from_utf8_lossy(e.data).into_owned()),
                    e.end,
                ),
                Frame::Oversized { name, end } => (name.map(str::to_string), None, end),
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
fn an_oversized_event_of_many_lines_is_dropped_whole_and_keeps_its_name() {
    let big = "x".repeat(100);
    let input = format!(
        "event: response.completed\ndata: {big}\ndata: tail\nid: 1\n\nevent: next\ndata: ok\n\n"
    );
    let got = frames(&[input.as_bytes()], 64);
    assert_eq!(
        got,
        vec![
            (Some("response.completed".to_string()), None),
            ev(Some("next"), "ok")
        ]
    );
}

#[test]
fn every_frame_ends_just_past_the_line_break_that_completed_it() {
    let input = b"data: a\r\n\r\nevent: e\ndata: b\n\n";
    let got = frames_at(&[input], 64);
    // "data: a\r\n" is 9 bytes, the blank line's CR is byte 10.
    assert_eq!(got[0].2, 10);
    assert_eq!(got[1].2, input.len() as u64);
}

#[test]
fn a_stream_cut_inside_an_oversized_event_is_mid_event() {
    let mut f = Framer::new(8);
    f.feed(b"data: 0123456789\n", &mut |_| {});
    assert!(f.mid_event());
    let mut frames = 0;
    f.feed(b"\n", &mut |_| frames += 1);
    assert_eq!(frames, 1);
    assert!(!f.mid_event());
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

    use super::{frames_at, ANTHROPIC};

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
            prop_assert_eq!(frames_at(&chunks, 1 << 16), frames_at(&[ANTHROPIC], 1 << 16));
            // A small cap: the oversized events and their offsets do not depend on the chunking.
            prop_assert_eq!(frames_at(&chunks, 40), frames_at(&[ANTHROPIC], 40));
        }
    }

    #[test]
    fn one_byte_per_chunk_gives_the_same_events() {
        let chunks: Vec<&[u8]> = ANTHROPIC.chunks(1).collect();
        assert_eq!(
            frames_at(&chunks, 1 << 16),
            frames_at(&[ANTHROPIC], 1 << 16)
        );
    }
}
