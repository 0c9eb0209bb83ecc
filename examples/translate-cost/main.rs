//! Provider translation's CPU cost, natively: per non-streaming request (the request body
//! translated on the way out, the JSON answer on the way back) against a plain copy and a bare
//! JSON parse of the same bodies, and per streamed chunk (the served stream judged and
//! translated) against the stream judge alone, which is what the untranslated path runs.
//! Prints medians over repeated runs. Measures, asserts nothing about speed. See README.md.

use std::hint::black_box;
use std::time::Instant;

use ai_circuit_breaker::sse::{End, Judge, Shape, Verdict};
use ai_circuit_breaker::translate::{self, Api, StreamTranslator, Target};

const CHUNKS: usize = 200;
const CAP: usize = 64 * 1024;
const RUNS: usize = 15;

const TEXT: &str = "The capital of France is Paris. It lies on the Seine, in the north of the country, \
and has been the seat of government for most of the last thousand years. Its population is about two \
million people in the city proper and over twelve million in the metropolitan area, which makes it one \
of the largest urban areas in Europe. Paris is known for its museums, among them the Louvre, for its \
architecture, and for the Eiffel Tower, built for the 1889 World's Fair.";

const SCHEMA: &str = r#"{"type":"object","properties":{"location":{"type":"string","description":"City and country, e.g. Paris, France"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}"#;

/// An Anthropic Messages request: system prompt, two tools, a tool round trip, four turns.
fn anthropic_request() -> String {
    format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"temperature":0.3,"system":"You are a concise travel assistant. Answer in plain prose, cite no sources, and use the tools when the user asks about weather or local time.","tools":[{{"name":"get_weather","description":"Get the current weather in a given location","input_schema":{SCHEMA}}},{{"name":"get_time","description":"Get the local time in a given location","input_schema":{SCHEMA}}}],"messages":[{{"role":"user","content":"What is the capital of France, and what is the weather there?"}},{{"role":"assistant","content":[{{"type":"text","text":"Let me check the weather in Paris."}},{{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{{"location":"Paris, France","unit":"celsius"}}}}]}},{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_01A09q90qw90lq917835lq9","content":"15 degrees, light rain"}},{{"type":"text","text":"Thanks. Tell me more about the city."}}]}}]}}"#
    )
}

/// The same conversation as an OpenAI Chat Completions request.
fn openai_request() -> String {
    let tool = |name: &str, what: &str| {
        format!(
            r#"{{"type":"function","function":{{"name":"{name}","description":"{what}","parameters":{SCHEMA}}}}}"#
        )
    };
    format!(
        r#"{{"model":"gpt-4o-mini","max_completion_tokens":1024,"temperature":0.3,"tools":[{},{}],"messages":[{{"role":"system","content":"You are a concise travel assistant. Answer in plain prose, cite no sources, and use the tools when the user asks about weather or local time."}},{{"role":"user","content":"What is the capital of France, and what is the weather there?"}},{{"role":"assistant","content":"Let me check the weather in Paris.","tool_calls":[{{"id":"call_Zq1B2t3","type":"function","function":{{"name":"get_weather","arguments":"{{\"location\":\"Paris, France\",\"unit\":\"celsius\"}}"}}}}]}},{{"role":"tool","tool_call_id":"call_Zq1B2t3","content":"15 degrees, light rain"}},{{"role":"user","content":"Thanks. Tell me more about the city."}}]}}"#,
        tool("get_weather", "Get the current weather in a given location"),
        tool("get_time", "Get the local time in a given location"),
    )
}

fn openai_answer() -> String {
    format!(
        r#"{{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"message":{{"role":"assistant","content":"{TEXT}","refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":212,"completion_tokens":96,"total_tokens":308,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_50cad350e4"}}"#
    )
}

fn anthropic_answer() -> String {
    format!(
        r#"{{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"{TEXT}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":212,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":96,"service_tier":"standard"}}}}"#
    )
}

/// 200 OpenAI chunks with `include_usage`, one per read (as judge-cost's).
fn openai_stream() -> Vec<Vec<u8>> {
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

/// 200 Anthropic events, one per read (as judge-cost's).
fn anthropic_stream() -> Vec<Vec<u8>> {
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
            &format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":" word{i}"}}}}"#),
        ));
    }
    out.push(ev(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    out.push(ev("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":194}}"#));
    out.push(ev("message_stop", r#"{"type":"message_stop"}"#));
    out.into_iter().map(String::into_bytes).collect()
}

/// This thread's time on a CPU, in ns (Linux `/proc/thread-self/schedstat`); `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Median and minimum over RUNS of `reps` calls of `pass`, in ns per `per` units.
fn measure(reps: usize, per: usize, mut pass: impl FnMut()) -> (f64, f64) {
    let mut t: Vec<f64> = (0..RUNS)
        .map(|_| {
            let (wall, cpu) = (Instant::now(), cpu_ns());
            for _ in 0..reps {
                pass();
            }
            let ns = match (cpu, cpu_ns()) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64,
                _ => wall.elapsed().as_nanos() as f64,
            };
            ns / (reps * per) as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[RUNS / 2], t[0])
}

fn cell((median, min): (f64, f64)) -> String {
    format!("{median:>7.0} ({min:>5.0})")
}

struct Direction {
    name: &'static str,
    client: Api,
    served: Api,
    request: String,
    answer: String,
    stream: Vec<Vec<u8>>,
    shape: Shape,
}

fn main() {
    let clock = if cpu_ns().is_some() {
        "on-CPU time"
    } else {
        "wall clock"
    };
    let target = |api| Target {
        api,
        anthropic_version: "2023-06-01",
        default_max_tokens: 4096,
    };
    let directions = [
        Direction {
            name: "Anthropic client, OpenAI upstream",
            client: Api::Anthropic,
            served: Api::OpenAi,
            request: anthropic_request(),
            answer: openai_answer(),
            stream: openai_stream(),
            shape: Shape::OpenAiChat,
        },
        Direction {
            name: "OpenAI client, Anthropic upstream",
            client: Api::OpenAi,
            served: Api::Anthropic,
            request: openai_request(),
            answer: anthropic_answer(),
            stream: anthropic_stream(),
            shape: Shape::Anthropic,
        },
    ];

    let reqs = 20_000;
    println!(
        "non-streaming, per request (request body out + JSON answer back), {reqs} requests per run, \
         median (min) of {RUNS} runs, ns ({clock})"
    );
    println!(
        "{:<34} {:>11} {:>15} {:>15} {:>15} {:>10}",
        "direction", "B req/ans", "plain copy", "JSON parse", "translate", "tr.-parse"
    );
    for d in &directions {
        let (req, ans) = (d.request.as_bytes(), d.answer.as_bytes());
        // Each translation does what it claims: a JSON body of the other format comes out.
        let out = translate::request(d.client, &target(d.served), req);
        assert!(
            out.is_ok_and(|o| serde_json::from_slice::<serde_json::Value>(&o.body).is_ok()),
            "{}: request refused or not JSON",
            d.name
        );
        assert!(
            translate::response(d.client, d.served, ans).is_some(),
            "{}",
            d.name
        );

        // A copy is ~100 times faster: more of them, so a run outlasts the clock's resolution.
        let copy = measure(reqs * 50, 1, || {
            black_box(black_box(req).to_vec());
            black_box(black_box(ans).to_vec());
        });
        let parse = measure(reqs, 1, || {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(req)).ok());
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(ans)).ok());
        });
        let tr = measure(reqs, 1, || {
            black_box(translate::request(d.client, &target(d.served), black_box(req)).ok());
            black_box(translate::response(d.client, d.served, black_box(ans)));
        });
        println!(
            "{:<34} {:>5}/{:<5} {} {} {} {:>10.0}",
            d.name,
            req.len(),
            ans.len(),
            cell(copy),
            cell(parse),
            cell(tr),
            tr.0 - parse.0
        );
    }

    let streams = 1_000;
    println!();
    println!(
        "streamed, per chunk ({CHUNKS} chunks per stream, one event per chunk), {streams} streams per run, \
         median (min) of {RUNS} runs, ns ({clock})"
    );
    println!(
        "{:<34} {:>9} {:>15} {:>15} {:>15} {:>10}",
        "direction", "B/chunk", "judge alone", "translate alone", "judge+translate", "added"
    );
    for d in &directions {
        let chunks = &d.stream;
        assert_eq!(chunks.len(), CHUNKS);
        let mut j = Judge::new(CAP, Some(d.shape));
        chunks.iter().for_each(|c| {
            j.feed(c);
        });
        assert_eq!(j.verdict(End::Clean), Verdict::Complete, "{}", d.name);
        let mut t = StreamTranslator::new(d.client, d.served);
        assert!(t.is_some(), "{}", d.name);
        let mut out = Vec::new();
        if let Some(t) = t.as_mut() {
            chunks.iter().for_each(|c| t.feed(c, &mut out));
            t.finish(&mut out);
        }
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("message_stop") || text.contains("[DONE]"),
            "{}: the translated stream ends whole",
            d.name
        );

        let judge = measure(streams, CHUNKS, || {
            let mut j = Judge::new(CAP, Some(d.shape));
            for c in chunks {
                black_box(j.feed(c));
            }
            black_box(j.verdict(End::Clean));
        });
        let alone = measure(streams, CHUNKS, || {
            let mut t = StreamTranslator::new(d.client, d.served);
            let mut out = Vec::with_capacity(256);
            for c in chunks {
                if let Some(t) = t.as_mut() {
                    t.feed(c, &mut out);
                }
                black_box(&out);
                out.clear();
            }
        });
        let both = measure(streams, CHUNKS, || {
            let mut j = Judge::new(CAP, Some(d.shape));
            let mut t = StreamTranslator::new(d.client, d.served);
            let mut out = Vec::with_capacity(256);
            for c in chunks {
                black_box(j.feed(c));
                if let Some(t) = t.as_mut() {
                    t.feed(c, &mut out);
                }
                black_box(&out);
                out.clear();
            }
            black_box(j.verdict(End::Clean));
        });
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        println!(
            "{:<34} {:>9} {} {} {} {:>10.0}",
            d.name,
            bytes / CHUNKS,
            cell(judge),
            cell(alone),
            cell(both),
            both.0 - judge.0
        );
    }
}
