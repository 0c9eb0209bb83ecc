//! Anthropic client, OpenAI upstream, streamed: OpenAI chunks as Anthropic events, whatever
//! the chunking, with bounded memory (fixtures from the public streaming references).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::sse::{Frame, Framer};
use crate::translate::to_openai::{Stream, EVENT_CAP};

fn chunk(delta: Value, finish: Value) -> String {
    let c = json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    });
    ["data: ", &c.to_string(), "\n\n"].concat()
}

const USAGE_CHUNK: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\n\n";

fn text_stream() -> String {
    [
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ),
        chunk(json!({"content": "Hello"}), Value::Null),
        chunk(json!({"content": " there"}), Value::Null),
        chunk(json!({}), json!("stop")),
        USAGE_CHUNK.to_string(),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat()
}

fn tool_stream() -> String {
    let call = |v: Value| chunk(json!({"tool_calls": [v]}), Value::Null);
    [
        chunk(json!({"role": "assistant", "content": "Checking."}), Value::Null),
        call(json!({"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}})),
        call(json!({"index": 0, "function": {"arguments": "{\"location\":"}})),
        call(json!({"index": 0, "function": {"arguments": "\"Paris\"}"}})),
        call(json!({"index": 1, "id": "call_B", "type": "function", "function": {"name": "now", "arguments": "{}"}})),
        chunk(json!({}), json!("tool_calls")),
        USAGE_CHUNK.to_string(),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat()
}

/// Feeds `parts` in order, then finishes.
fn run(parts: &[&[u8]]) -> Vec<u8> {
    let mut s = Stream::new();
    let mut out = Vec::new();
    for p in parts {
        s.feed(p, &mut out);
    }
    s.finish(&mut out);
    out
}

/// The Anthropic events written, as `(event name, data)`; checks each `event:` name matches
/// its data's `type`, as Anthropic writes them.
fn events(out: &[u8]) -> Vec<(String, Value)> {
    let mut f = Framer::new(1 << 20);
    let mut evs = Vec::new();
    f.feed(out, &mut |frame| {
        if let Frame::Event(e) = frame {
            let data: Value = serde_json::from_slice(e.data).unwrap();
            let name = e.name.unwrap().to_string();
            assert_eq!(data["type"], json!(name));
            evs.push((name, data));
        }
    });
    assert!(!f.mid_event());
    evs
}

#[test]
fn stream_text_becomes_anthropic_events_with_usage_in_message_delta() {
    let evs = events(&run(&[text_stream().as_bytes()]));
    let data: Vec<Value> = evs.into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        data,
        vec![
            json!({"type": "message_start", "message": {"id": "chatcmpl-123", "type": "message", "role": "assistant",
                "content": [], "model": "gpt-4o-mini-2024-07-18", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"input_tokens": 9, "output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ]
    );
}

#[test]
fn stream_each_text_delta_goes_out_in_the_feed_that_completed_it() {
    let mut s = Stream::new();
    let mut out = Vec::new();
    s.feed(
        chunk(json!({"content": "Hel"}), Value::Null).as_bytes(),
        &mut out,
    );
    assert!(String::from_utf8_lossy(&out).contains("\"text\":\"Hel\""));
    let before = out.len();
    s.feed(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}",
        &mut out,
    );
    assert_eq!(out.len(), before, "a partial event writes nothing");
    s.feed(b"}]}\n\n", &mut out);
    assert!(String::from_utf8_lossy(&out[before..]).contains("\"text\":\"lo\""));
}

#[test]
fn stream_tool_calls_become_one_tool_use_block_each_after_the_text_block() {
    let evs = events(&run(&[tool_stream().as_bytes()]));
    let data: Vec<Value> = evs.into_iter().map(|(_, d)| d).skip(1).collect();
    assert_eq!(
        data,
        vec![
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "call_B", "name": "now", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 9, "output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ]
    );
}

#[test]
fn stream_length_and_content_filter_finishes_give_max_tokens_and_refusal() {
    for (finish, stop) in [("length", "max_tokens"), ("content_filter", "refusal")] {
        let s = [
            chunk(json!({"content": "x"}), Value::Null),
            chunk(json!({}), json!(finish)),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let evs = events(&run(&[s.as_bytes()]));
        let (name, delta) = &evs[evs.len() - 2];
        assert_eq!(name, "message_delta");
        assert_eq!(delta["delta"]["stop_reason"], json!(stop));
        assert_eq!(
            delta["usage"],
            json!({"input_tokens": 0, "output_tokens": 0})
        );
    }
}

#[test]
fn stream_error_chunk_becomes_an_anthropic_error_event_and_ends_the_translation() {
    let s = [
        chunk(json!({"content": "partial"}), Value::Null),
        "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n".to_string(),
        chunk(json!({"content": "ignored"}), Value::Null),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let evs = events(&run(&[s.as_bytes()]));
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        evs[3].1,
        json!({"type": "error", "error": {"type": "api_error", "message": "The server had an error"}})
    );
    let rate = events(&run(&[
        b"data: {\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n",
    ]));
    assert_eq!(
        rate,
        vec![(
            "error".to_string(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        )]
    );
}

#[test]
fn stream_ending_after_finish_reason_without_done_is_closed_by_finish() {
    let s = [
        chunk(json!({"content": "Hi"}), Value::Null),
        chunk(json!({}), json!("stop")),
    ]
    .concat();
    let evs = events(&run(&[s.as_bytes()]));
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
}

#[test]
fn stream_cut_before_finish_reason_gets_nothing_from_finish() {
    let mut s = Stream::new();
    let mut out = Vec::new();
    s.feed(
        chunk(json!({"content": "Hi"}), Value::Null).as_bytes(),
        &mut out,
    );
    s.feed(b"data: {\"choices\":[{\"ind", &mut out);
    let before = out.clone();
    s.finish(&mut out);
    assert_eq!(out, before);
    assert!(!String::from_utf8_lossy(&out).contains("message_stop"));
}

#[test]
fn stream_skips_chunks_that_are_not_json_objects() {
    let s = [
        "data: not json\n\n: comment\n\ndata: [1]\n\n",
        &text_stream(),
    ]
    .concat();
    assert_eq!(run(&[s.as_bytes()]), run(&[text_stream().as_bytes()]));
}

#[test]
fn stream_split_at_every_byte_boundary_translates_the_same() {
    for fixture in [text_stream(), tool_stream().replace("\n\n", "\r\n\r\n")] {
        let whole = run(&[fixture.as_bytes()]);
        let b = fixture.as_bytes();
        for i in 0..=b.len() {
            assert_eq!(run(&[&b[..i], &b[i..]]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
    }
}

#[test]
fn stream_holds_at_most_the_cap_for_a_multi_mib_line_and_recovers() {
    let mut s = Stream::new();
    let mut out = Vec::new();
    s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"", &mut out);
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..64 {
        s.feed(&block, &mut out);
        assert!(s.held_bytes() <= EVENT_CAP, "held {}", s.held_bytes());
    }
    s.feed(b"\"}}]}\n\n", &mut out);
    assert!(out.is_empty(), "an oversized event is skipped");
    s.feed(text_stream().as_bytes(), &mut out);
    s.finish(&mut out);
    assert_eq!(out, run(&[text_stream().as_bytes()]));
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use proptest::prelude::*;

    use super::{run, text_stream, tool_stream};

    proptest! {
        #[test]
        fn stream_split_anywhere_many_times_translates_the_same(
            tool in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        ) {
            let fixture = if tool { tool_stream() } else { text_stream() };
            let b = fixture.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(b.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for i in at {
                parts.push(&b[from..i]);
                from = i;
            }
            parts.push(&b[from..]);
            prop_assert_eq!(run(&parts), run(&[b]));
        }

        #[test]
        fn request_never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = crate::translate::to_openai::request(&raw);
            let _ = crate::translate::to_openai::response(&raw);
            let _ = crate::translate::to_openai::error(500, &raw);
            let mut out = Vec::new();
            let mut s = crate::translate::to_openai::Stream::new();
            s.feed(&raw, &mut out);
            s.finish(&mut out);
        }
    }
}
