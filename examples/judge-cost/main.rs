//! The stream judge's CPU cost per chunk: 200-chunk streams of each shape, one event per chunk
//! (as providers flush them), fed to a fresh `Judge` many times; the framer alone is the floor.
//! Prints medians over repeated runs. Measures, asserts nothing. See README.md.

use std::hint::black_box;
use std::time::Instant;

use ai_circuit_breaker::sse::{End, Framer, Judge, Shape, Verdict};

const CHUNKS: usize = 200;
const CAP: usize = 64 * 1024;

fn chat() -> Vec<Vec<u8>> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-9xQz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,\
             \"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{{\
             \"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
        )
    };
    let mut out = vec![chunk(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    )];
    for i in 0..CHUNKS - 4 {
        out.push(chunk(&format!("{{\"content\":\" word{i}\"}}"), "null"));
    }
    out.push(chunk("{}", "\"stop\""));
    out.push(
        "data: {\"id\":\"chatcmpl-9xQz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,\
         \"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\
         \"completion_tokens\":197,\"total_tokens\":216}}\n\n"
            .to_string(),
    );
    out.push("data: [DONE]\n\n".to_string());
    out.into_iter().map(String::into_bytes).collect()
}

fn anthropic() -> Vec<Vec<u8>> {
    let ev = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![
        ev(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        ),
        ev(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ev("ping", r#"{"type": "ping"}"#),
    ];
    for i in 0..CHUNKS - 6 {
        out.push(ev(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":" word{i}"}}}}"#
            ),
        ));
    }
    out.push(ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    out.push(ev(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":194}}"#,
    ));
    out.push(ev("message_stop", r#"{"type":"message_stop"}"#));
    out.into_iter().map(String::into_bytes).collect()
}

fn responses() -> Vec<Vec<u8>> {
    let ev = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
    let resp = r#""id":"resp_67c9","object":"response","created_at":1741290958,"incomplete_details":null,"instructions":null,"model":"gpt-4.1-2025-04-14","parallel_tool_calls":true,"tool_choice":"auto","tools":[]"#;
    let mut out = vec![
        ev(
            "response.created",
            &format!(
                r#"{{"type":"response.created","sequence_number":0,"response":{{{resp},"status":"in_progress","error":null,"output":[],"usage":null}}}}"#
            ),
        ),
        ev(
            "response.in_progress",
            &format!(
                r#"{{"type":"response.in_progress","sequence_number":1,"response":{{{resp},"status":"in_progress","error":null,"output":[],"usage":null}}}}"#
            ),
        ),
        ev(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67c9","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
        ),
        ev(
            "response.content_part.added",
            r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67c9","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}"#,
        ),
    ];
    let mut text = String::new();
    for i in 0..CHUNKS - 8 {
        let word = format!(" word{i}");
        text += &word;
        out.push(ev(
            "response.output_text.delta",
            &format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{},"item_id":"msg_67c9","output_index":0,"content_index":0,"delta":"{word}","logprobs":[]}}"#,
                i + 4
            ),
        ));
    }
    out.push(ev(
        "response.output_text.done",
        &format!(r#"{{"type":"response.output_text.done","sequence_number":196,"item_id":"msg_67c9","output_index":0,"content_index":0,"text":"{text}","logprobs":[]}}"#),
    ));
    out.push(ev(
        "response.content_part.done",
        &format!(r#"{{"type":"response.content_part.done","sequence_number":197,"item_id":"msg_67c9","output_index":0,"content_index":0,"part":{{"type":"output_text","text":"{text}","annotations":[]}}}}"#),
    ));
    let item = format!(
        r#"{{"id":"msg_67c9","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_text","text":"{text}","annotations":[]}}]}}"#
    );
    out.push(ev(
        "response.output_item.done",
        &format!(r#"{{"type":"response.output_item.done","sequence_number":198,"output_index":0,"item":{item}}}"#),
    ));
    out.push(ev(
        "response.completed",
        &format!(r#"{{"type":"response.completed","sequence_number":199,"response":{{{resp},"status":"completed","error":null,"output":[{item}],"usage":{{"input_tokens":37,"output_tokens":192,"total_tokens":229}}}}}}"#),
    ));
    out.into_iter().map(String::into_bytes).collect()
}

/// This thread's time on a CPU, in ns (Linux `/proc/thread-self/schedstat`): unlike the wall
/// clock, it leaves out the time other processes had the CPU, so a busy machine inflates it
/// less. `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Median and minimum of `runs` timings of `streams` passes over `chunks`, in ns per chunk.
fn measure(
    chunks: &[Vec<u8>],
    runs: usize,
    streams: usize,
    mut pass: impl FnMut(&[Vec<u8>]),
) -> (f64, f64) {
    let mut per_chunk: Vec<f64> = (0..runs)
        .map(|_| {
            let (wall, cpu) = (Instant::now(), cpu_ns());
            for _ in 0..streams {
                pass(black_box(chunks));
            }
            let ns = match (cpu, cpu_ns()) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64,
                _ => wall.elapsed().as_nanos() as f64,
            };
            ns / (streams * chunks.len()) as f64
        })
        .collect();
    per_chunk.sort_by(f64::total_cmp);
    (per_chunk[runs / 2], per_chunk[0])
}

fn main() {
    let runs = 15;
    let streams = 500;
    let clock = if cpu_ns().is_some() {
        "on-CPU time"
    } else {
        "wall clock"
    };
    println!(
        "stream judge, {CHUNKS} chunks per stream (one event per chunk), {streams} streams per run, \
         median (min) of {runs} runs, ns per chunk ({clock})"
    );
    println!(
        "{:<26} {:>9} {:>17} {:>17} {:>11}",
        "shape", "B/chunk", "framer alone", "judge", "judge-framer"
    );
    for (name, shape, chunks) in [
        ("OpenAI Chat (usage on)", Shape::OpenAiChat, chat()),
        ("Anthropic Messages", Shape::Anthropic, anthropic()),
        ("OpenAI Responses", Shape::OpenAiResponses, responses()),
    ] {
        assert_eq!(chunks.len(), CHUNKS);
        // The stream is what it claims to be: judged complete, with usage.
        let mut j = Judge::new(CAP, Some(shape));
        chunks.iter().for_each(|c| {
            j.feed(c);
        });
        assert_eq!(j.verdict(End::Clean), Verdict::Complete, "{name}");
        assert!(
            j.usage().input.is_some() && j.usage().output.is_some(),
            "{name}"
        );
        assert_eq!(j.malformed(), 0);

        let bytes: usize = chunks.iter().map(Vec::len).sum();
        let (framer, framer_min) = measure(&chunks, runs, streams, |cs| {
            let mut f = Framer::new(CAP);
            let mut n = 0usize;
            for c in cs {
                f.feed(c, &mut |frame| {
                    n += black_box(matches!(frame, ai_circuit_breaker::sse::Frame::Event(_)))
                        as usize
                });
            }
            black_box(n);
        });
        let (judge, judge_min) = measure(&chunks, runs, streams, |cs| {
            let mut j = Judge::new(CAP, Some(shape));
            for c in cs {
                black_box(j.feed(c));
            }
            black_box(j.verdict(End::Clean));
        });
        println!(
            "{name:<26} {:>9} {:>9.0} ({:>5.0}) {:>9.0} ({:>5.0}) {:>11.0}",
            bytes / CHUNKS,
            framer,
            framer_min,
            judge,
            judge_min,
            judge - framer
        );
    }
}
