//! The stream judge on recorded streams of every shape, written to the providers' public API
//! references: the commit point, error events, terminal markers, usage, malformed events and
//! the verdict; and the same judgment whatever the chunking, down to one byte per chunk.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::sse::{error_event, End, Judge, Shape, StreamError, Truncation, Usage, Verdict};

const CAP: usize = 64 * 1024;

// --- OpenAI Chat Completions -----------------------------------------------------------------

/// One `chat.completion.chunk` with one choice; `usage` is the field as sent with
/// `stream_options.include_usage` (`None`: the field is absent, as without it).
fn chat(delta: &str, finish: Option<&str>, usage: Option<&str>) -> String {
    let finish = finish.map_or("null".to_string(), |f| format!("\"{f}\""));
    let usage = usage.map_or(String::new(), |u| format!(",\"usage\":{u}"));
    format!(
        "data: {{\"id\":\"chatcmpl-9xQz\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,\
         \"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\
         \"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{usage}}}\n\n"
    )
}

const CHAT_ROLE: &str = r#"{"role":"assistant","content":"","refusal":null}"#;
const CHAT_USAGE: &str = "data: {\"id\":\"chatcmpl-9xQz\",\"object\":\"chat.completion.chunk\",\
    \"created\":1718000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\
    \"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":3,\"total_tokens\":22,\
    \"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\
    \"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0}}}\n\n";
const DONE: &str = "data: [DONE]\n\n";
const CHAT_ERROR: &str =
    "data: {\"error\":{\"message\":\"The server had an error while processing \
    your request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";

/// The role chunk and `n` text chunks.
fn chat_head(n: usize, usage: Option<&str>) -> String {
    let mut s = chat(CHAT_ROLE, None, usage);
    for i in 0..n {
        s += &chat(&format!("{{\"content\":\"tok{i} \"}}"), None, usage);
    }
    s
}

fn chat_complete(usage: bool) -> String {
    let u = usage.then_some("null");
    let mut s = chat_head(3, u) + &chat("{}", Some("stop"), u);
    if usage {
        s += CHAT_USAGE;
    }
    s + DONE
}

fn chat_tool_call() -> String {
    chat(
        r#"{"role":"assistant","content":null,"refusal":null}"#,
        None,
        None,
    ) + &chat(
        r#"{"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
        None,
        None,
    ) + &chat(
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":"}}]}"#,
        None,
        None,
    ) + &chat(
        r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}"#,
        None,
        None,
    ) + &chat("{}", Some("tool_calls"), None)
        + DONE
}

// --- Anthropic Messages ----------------------------------------------------------------------

fn ant(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn ant_head(n: usize) -> String {
    let mut s = ant(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    ) + &ant(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ) + &ant("ping", r#"{"type": "ping"}"#);
    for i in 0..n {
        s += &ant(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"tok{i} "}}}}"#
            ),
        );
    }
    s
}

fn ant_tail(stop_reason: &str) -> String {
    ant(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ) + &ant(
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}","stop_sequence":null}},"usage":{{"output_tokens":15}}}}"#
        ),
    ) + &ant("message_stop", r#"{"type":"message_stop"}"#)
}

fn ant_complete() -> String {
    ant_head(3) + &ant_tail("end_turn")
}

const ANT_OVERLOADED: &str = "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \
    \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";

fn ant_tool_use() -> String {
    ant(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}"#,
    ) + &ant(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
    ) + &ant(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    ) + &ant(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Fra"}}"#,
    ) + &ant(
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\"}"}}"#,
    ) + &ant_tail("tool_use")
}

// --- OpenAI Responses ------------------------------------------------------------------------

fn resp(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

const RESP_OBJECT: &str = r#""id":"resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654","object":"response","created_at":1741290958,"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","user":null,"metadata":{}"#;

fn resp_head(n: usize) -> String {
    let mut s = resp(
        "response.created",
        &format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{{{RESP_OBJECT},"status":"in_progress","error":null,"output":[],"usage":null}}}}"#
        ),
    ) + &resp(
        "response.in_progress",
        &format!(
            r#"{{"type":"response.in_progress","sequence_number":1,"response":{{{RESP_OBJECT},"status":"in_progress","error":null,"output":[],"usage":null}}}}"#
        ),
    ) + &resp(
        "response.output_item.added",
        r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
    ) + &resp(
        "response.content_part.added",
        r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}"#,
    );
    for i in 0..n {
        s += &resp(
            "response.output_text.delta",
            &format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{},"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"delta":"tok{i} ","logprobs":[]}}"#,
                4 + i
            ),
        );
    }
    s
}

fn resp_complete_with(text: &str) -> String {
    resp(
        "response.output_text.done",
        &format!(
            r#"{{"type":"response.output_text.done","sequence_number":20,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","output_index":0,"content_index":0,"text":"{text}","logprobs":[]}}"#
        ),
    ) + &resp(
        "response.completed",
        &format!(
            r#"{{"type":"response.completed","sequence_number":21,"response":{{{RESP_OBJECT},"status":"completed","error":null,"output":[{{"id":"msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_text","text":"{text}","annotations":[]}}]}}],"usage":{{"input_tokens":37,"input_tokens_details":{{"cached_tokens":0}},"output_tokens":11,"output_tokens_details":{{"reasoning_tokens":0}},"total_tokens":48}}}}}}"#
        ),
    )
}

fn resp_complete() -> String {
    resp_head(3) + &resp_complete_with("tok0 tok1 tok2 ")
}

fn resp_failed() -> String {
    resp_head(2)
        + &resp(
            "response.failed",
            &format!(
                r#"{{"type":"response.failed","sequence_number":9,"response":{{{RESP_OBJECT},"status":"failed","error":{{"code":"server_error","message":"The model failed to generate a response."}},"output":[],"usage":null}}}}"#
            ),
        )
}

const RESP_ERROR: &str = "event: error\ndata: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\
    \"message\":\"Something went wrong\",\"param\":null,\"sequence_number\":1}\n\n";

// --- Helpers ---------------------------------------------------------------------------------

/// What a whole run of the judge says, to compare runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    clean: Verdict,
    reset: Verdict,
    commit_at: Option<u64>,
    usage: Usage,
    malformed: u32,
    oversized: u32,
    shape: Option<Shape>,
}

/// Feeds `chunks`, checks what each step says against the judge's running state (the commit,
/// error and terminal each reported once, in the chunk they arrived in), and sums it up.
fn judge_chunks(chunks: &[&[u8]], cap: usize, expect: Option<Shape>) -> Summary {
    let mut j = Judge::new(cap, expect);
    let (mut commits, mut errors, mut terminals, mut malformed) = (0, 0, 0, 0);
    for c in chunks {
        let start = j.bytes_seen();
        let had = (j.committed(), j.error().is_some(), j.terminal());
        let step = j.feed(c);
        if let Some(at) = step.commit {
            commits += 1;
            assert!(at <= c.len(), "commit offset inside the chunk");
            assert_eq!(Some(start + at as u64), j.commit_offset());
        }
        assert_eq!(step.commit.is_some(), !had.0 && j.committed());
        assert_eq!(step.error, !had.1 && j.error().is_some());
        assert_eq!(step.terminal, !had.2 && j.terminal());
        errors += usize::from(step.error);
        terminals += usize::from(step.terminal);
        malformed += step.malformed;
    }
    assert!(commits <= 1 && errors <= 1 && terminals <= 1);
    assert_eq!(malformed, j.malformed());
    Summary {
        clean: j.verdict(End::Clean),
        reset: j.verdict(End::Reset),
        commit_at: j.commit_offset(),
        usage: j.usage(),
        malformed: j.malformed(),
        oversized: j.oversized(),
        shape: j.shape(),
    }
}

fn judge(stream: &str) -> Summary {
    judge_chunks(&[stream.as_bytes()], CAP, None)
}

fn err(kind: &str, code: Option<&str>, message: &str) -> Verdict {
    Verdict::Errored(StreamError {
        kind: kind.to_string(),
        code: code.map(str::to_string),
        message: message.to_string(),
    })
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input: Some(input),
        output: Some(output),
    }
}

/// Offset just past the first occurrence of `needle`'s event (its blank line).
fn end_of_event_with(stream: &str, needle: &str) -> u64 {
    let at = stream.find(needle).expect("needle in stream");
    (at + stream[at..].find("\n\n").expect("event end") + 2) as u64
}

// --- OpenAI Chat Completions: every case -----------------------------------------------------

#[test]
fn chat_complete_commits_at_the_first_text_chunk_not_the_role_chunk() {
    let s = chat_complete(false);
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.commit_at, Some(end_of_event_with(&s, "tok0")));
    assert_eq!(got.usage, Usage::default());
    assert_eq!(got.shape, Some(Shape::OpenAiChat));
    assert_eq!(got.malformed, 0);
}

#[test]
fn chat_usage_is_read_from_the_include_usage_chunk() {
    let got = judge(&chat_complete(true));
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.usage, usage(19, 3));
}

#[test]
fn chat_error_as_the_first_event_is_an_error_before_any_commit() {
    let mut j = Judge::new(CAP, Some(Shape::OpenAiChat));
    let step = j.feed(CHAT_ERROR.as_bytes());
    assert!(step.error);
    assert_eq!(step.commit, None);
    let want = err(
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    );
    assert_eq!(j.verdict(End::Clean), want);
    assert_eq!(j.verdict(End::Reset), want);
}

#[test]
fn chat_error_after_tokens_is_seen_in_the_chunk_that_brings_it() {
    let mut j = Judge::new(CAP, None);
    let first = j.feed(chat_head(5, None).as_bytes());
    assert!(first.commit.is_some());
    assert!(!first.error);
    let second = j.feed(CHAT_ERROR.as_bytes());
    assert!(second.error);
    assert_eq!(j.error().map(|e| e.kind.as_str()), Some("server_error"));
    assert!(matches!(j.verdict(End::Clean), Verdict::Errored(_)));
}

#[test]
fn chat_cut_after_tokens_is_truncated_mid_event_or_reset() {
    let s = chat_head(4, None) + &chat("{\"content\":\"tok4\"}", None, None)[..60];
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Truncated(Truncation::MidEvent));
    assert_eq!(got.reset, Verdict::Truncated(Truncation::Reset));
    assert!(got.commit_at.is_some());
}

#[test]
fn chat_clean_end_without_a_terminal_marker_is_truncated() {
    let got = judge(&chat_head(4, None));
    assert_eq!(got.clean, Verdict::Truncated(Truncation::NoTerminal));
}

#[test]
fn chat_finish_reason_without_done_is_complete() {
    let s = chat_head(2, None) + &chat("{}", Some("length"), None);
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    // A reset after the finish chunk loses nothing of the answer.
    assert_eq!(got.reset, Verdict::Complete);
}

#[test]
fn chat_malformed_event_in_a_good_stream_is_counted_not_failed() {
    let s = chat_head(2, None)
        + "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}\n\n"
        + &chat("{\"content\":\"more\"}", None, None)
        + &chat("{}", Some("stop"), None)
        + DONE;
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.malformed, 1);
}

#[test]
fn chat_tool_call_stream_commits_at_the_first_tool_call_delta() {
    let s = chat_tool_call();
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.commit_at, Some(end_of_event_with(&s, "call_DdmO9pD3")));
}

#[test]
fn chat_role_only_and_empty_content_chunks_do_not_commit() {
    let s = chat(CHAT_ROLE, None, Some("null"))
        + &chat(r#"{"content":""}"#, None, None)
        + &chat(
            r#"{"role":"assistant","content":null,"tool_calls":[]}"#,
            None,
            None,
        );
    let mut j = Judge::new(CAP, None);
    assert_eq!(j.feed(s.as_bytes()).commit, None);
    assert!(!j.committed());
}

#[test]
fn chat_reasoning_and_refusal_deltas_commit() {
    for delta in [
        r#"{"reasoning_content":"Let me think"}"#,
        r#"{"refusal":"I can't"}"#,
    ] {
        let s = chat(CHAT_ROLE, None, None) + &chat(delta, None, None);
        assert!(judge(&s).commit_at.is_some(), "{delta}");
    }
}

#[test]
fn valid_json_of_an_unexpected_form_is_not_malformed() {
    let s = "data: {\"choices\":\"none\",\"usage\":{\"prompt_tokens\":\"12\"}}\n\n\
             data: [1,2]\n\ndata: \"text\"\n\ndata: {\"choices\":[{\"delta\":[],\"finish_reason\":null}]}\n\n";
    let got = judge(s);
    assert_eq!(got.malformed, 0);
    assert_eq!(got.commit_at, None);
    assert_eq!(got.usage, Usage::default());
    assert_eq!(got.clean, Verdict::Truncated(Truncation::NoTerminal));
}

#[test]
fn chat_error_with_a_code_keeps_type_and_code() {
    let s = "data: {\"error\":{\"message\":\"You exceeded your current quota\",\
             \"type\":\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}\n\n";
    assert_eq!(
        judge(s).clean,
        err(
            "insufficient_quota",
            Some("insufficient_quota"),
            "You exceeded your current quota"
        )
    );
}

// --- Anthropic Messages: every case ----------------------------------------------------------

#[test]
fn anthropic_complete_commits_at_the_first_content_block_delta() {
    let s = ant_complete();
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.commit_at, Some(end_of_event_with(&s, "tok0")));
    assert_eq!(got.usage, usage(25, 15));
    assert_eq!(got.shape, Some(Shape::Anthropic));
}

#[test]
fn anthropic_message_start_and_ping_do_not_commit() {
    let mut j = Judge::new(CAP, None);
    let step = j.feed(ant_head(0).as_bytes());
    assert_eq!(step.commit, None);
    assert_eq!(j.usage().input, Some(25));
}

#[test]
fn anthropic_overloaded_error_first_is_an_error() {
    let s = ant(
        "message_start",
        r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#,
    ) + ANT_OVERLOADED;
    let got = judge(&s);
    assert_eq!(got.clean, err("overloaded_error", None, "Overloaded"));
    assert_eq!(got.commit_at, None);
}

#[test]
fn anthropic_overloaded_error_after_tokens_is_an_error() {
    let got = judge(&(ant_head(6) + ANT_OVERLOADED));
    assert_eq!(got.clean, err("overloaded_error", None, "Overloaded"));
    assert_eq!(got.reset, err("overloaded_error", None, "Overloaded"));
    assert!(got.commit_at.is_some());
}

#[test]
fn anthropic_cut_after_tokens_is_truncated() {
    let s = ant_head(4) + "event: content_block_delta\ndata: {\"type\":\"content_bl";
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Truncated(Truncation::MidEvent));
    assert_eq!(got.reset, Verdict::Truncated(Truncation::Reset));
}

#[test]
fn anthropic_clean_end_without_message_stop_is_truncated() {
    let got = judge(&ant_head(4));
    assert_eq!(got.clean, Verdict::Truncated(Truncation::NoTerminal));
}

#[test]
fn anthropic_malformed_event_in_a_good_stream_is_counted_not_failed() {
    let s = ant_head(2)
        + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":\n\n"
        + &ant_tail("end_turn");
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.malformed, 1);
    assert_eq!(got.usage, usage(25, 15));
}

#[test]
fn anthropic_stream_without_usage_reports_none() {
    let s = ant("message_start", r#"{"type":"message_start","message":{}}"#)
        + &ant(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        )
        + &ant("message_stop", r#"{"type":"message_stop"}"#);
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.usage, Usage::default());
}

#[test]
fn anthropic_tool_use_stream_commits_at_its_first_input_json_delta() {
    let s = ant_tool_use();
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(
        got.commit_at,
        Some(end_of_event_with(&s, "input_json_delta"))
    );
    assert_eq!(got.usage, usage(472, 15));
}

#[test]
fn anthropic_stream_without_event_lines_is_judged_by_the_data_type() {
    let stripped: String = ant_complete()
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let with = judge(&ant_complete());
    let without = judge(&stripped);
    assert_eq!(without.clean, Verdict::Complete);
    assert_eq!(without.usage, with.usage);
    assert_eq!(without.shape, Some(Shape::Anthropic));
    let error: String = ANT_OVERLOADED.replace("event: error\n", "");
    assert_eq!(
        judge(&error).clean,
        err("overloaded_error", None, "Overloaded")
    );
}

// --- OpenAI Responses: every case ------------------------------------------------------------

#[test]
fn responses_completed_commits_at_the_first_output_text_delta() {
    let s = resp_complete();
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.commit_at, Some(end_of_event_with(&s, "tok0")));
    assert_eq!(got.usage, usage(37, 11));
    assert_eq!(got.shape, Some(Shape::OpenAiResponses));
}

#[test]
fn responses_failed_is_an_error_with_its_code() {
    let got = judge(&resp_failed());
    assert_eq!(
        got.clean,
        err(
            "server_error",
            Some("server_error"),
            "The model failed to generate a response."
        )
    );
}

#[test]
fn responses_error_event_first_is_an_error() {
    let got = judge(RESP_ERROR);
    assert_eq!(
        got.clean,
        err(
            "ERR_SOMETHING",
            Some("ERR_SOMETHING"),
            "Something went wrong"
        )
    );
    assert_eq!(got.shape, Some(Shape::OpenAiResponses));
}

#[test]
fn responses_error_after_tokens_and_cut_and_clean_end() {
    assert!(matches!(
        judge(&(resp_head(3) + RESP_ERROR)).clean,
        Verdict::Errored(_)
    ));
    let cut = resp_head(3) + "event: response.output_text.delta\ndata: {\"type\":";
    assert_eq!(judge(&cut).clean, Verdict::Truncated(Truncation::MidEvent));
    assert_eq!(
        judge(&resp_head(3)).clean,
        Verdict::Truncated(Truncation::NoTerminal)
    );
}

#[test]
fn responses_lifecycle_events_do_not_commit() {
    let mut j = Judge::new(CAP, None);
    assert_eq!(j.feed(resp_head(0).as_bytes()).commit, None);
    assert_eq!(j.shape(), Some(Shape::OpenAiResponses));
}

#[test]
fn responses_completed_larger_than_the_cap_still_ends_the_stream() {
    // A long answer: `response.completed` carries the whole text, past a 4 KiB cap.
    let text = "lorem ipsum ".repeat(1000);
    let s = resp_head(3) + &resp_complete_with(&text);
    let got = judge_chunks(&[s.as_bytes()], 4096, None);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.oversized, 2, "output_text.done and completed");
    assert_eq!(got.usage, Usage::default(), "its usage is lost with it");
}

#[test]
fn responses_malformed_delta_is_counted_not_failed() {
    let s = resp_head(2)
        + "event: response.output_text.delta\ndata: {\"delta\":\"x\"\n\n"
        + &resp_complete_with("tok0 tok1 x");
    let got = judge(&s);
    assert_eq!(got.clean, Verdict::Complete);
    assert_eq!(got.malformed, 1);
}

// --- Across shapes ---------------------------------------------------------------------------

#[test]
fn the_expected_shape_is_known_before_any_event_and_detection_follows_the_events() {
    let mut j = Judge::new(CAP, Some(Shape::Anthropic));
    assert_eq!(j.shape(), Some(Shape::Anthropic));
    assert_eq!(j.detected(), None);
    j.feed(chat_head(1, None).as_bytes());
    assert_eq!(j.detected(), Some(Shape::OpenAiChat));
    // Nothing at all: truncated, whatever was expected.
    assert_eq!(
        Judge::new(CAP, Some(Shape::OpenAiChat)).verdict(End::Clean),
        Verdict::Truncated(Truncation::NoTerminal)
    );
}

#[test]
fn the_first_error_is_kept_and_its_strings_are_bounded() {
    let long = "é".repeat(1000);
    let s = format!(
        "data: {{\"error\":{{\"type\":\"{long}\",\"message\":\"{long}\"}}}}\n\n{CHAT_ERROR}"
    );
    let mut j = Judge::new(CAP, None);
    j.feed(s.as_bytes());
    let e = j.error().expect("error");
    assert!(e.kind.len() <= StreamError::KIND_CAP && e.kind.starts_with('é'));
    assert!(e.message.len() <= StreamError::MESSAGE_CAP && e.message.len() > 500);
}

#[test]
fn an_error_event_with_garbage_data_is_still_an_error() {
    let got = judge("event: error\ndata: <html>502 Bad Gateway</html>\n\n");
    assert_eq!(got.clean, err("error", None, ""));
    assert_eq!(got.malformed, 1);
}

#[test]
fn crlf_streams_are_judged_like_lf_streams() {
    for s in [chat_complete(true), ant_complete(), resp_complete()] {
        let crlf = s.replace('\n', "\r\n");
        let (a, b) = (judge(&s), judge(&crlf));
        assert_eq!((a.clean, a.usage), (b.clean, b.usage));
        assert!(b.commit_at.is_some());
    }
}

// --- The final error event the client gets -----------------------------------------------

#[test]
fn the_final_error_event_is_an_error_to_the_judge_after_a_clean_or_a_cut_end() {
    let cases = [
        (Shape::OpenAiChat, chat_head(3, None)),
        (Shape::Anthropic, ant_head(3)),
        (Shape::OpenAiResponses, resp_head(3)),
    ];
    for (shape, head) in cases {
        let event = error_event(shape, "api_error", "upstream stream \"cut\"");
        // After an event boundary, after a line that ended its event's last field, and after
        // a line ended by a CR whose LF never came.
        for tail in ["", "event: content_block_stop\n", "data: {\"x\":1}\r"] {
            let s = [head.as_bytes(), tail.as_bytes(), &event].concat();
            let mut j = Judge::new(CAP, None);
            j.feed(&s);
            // Anthropic's error object has no code.
            let code = (shape != Shape::Anthropic).then_some("api_error");
            assert_eq!(
                j.verdict(End::Clean),
                err("api_error", code, "upstream stream \"cut\""),
                "{shape:?} after {tail:?}"
            );
            assert!(!j.mid_event());
        }
    }
}

#[test]
fn the_final_error_event_has_each_shape_s_wire_form() {
    assert_eq!(
        String::from_utf8(error_event(Shape::OpenAiChat, "api_error", "cut")).unwrap(),
        "\r\ndata: {\"error\":{\"message\":\"cut\",\"type\":\"api_error\",\"param\":null,\"code\":\"api_error\"}}\n\n"
    );
    assert_eq!(
        String::from_utf8(error_event(Shape::Anthropic, "api_error", "cut")).unwrap(),
        "\r\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"cut\"}}\n\n"
    );
    assert_eq!(
        String::from_utf8(error_event(Shape::OpenAiResponses, "api_error", "cut")).unwrap(),
        "\r\nevent: error\ndata: {\"type\":\"error\",\"code\":\"api_error\",\"message\":\"cut\",\"param\":null,\
         \"error\":{\"message\":\"cut\",\"type\":\"api_error\",\"param\":null,\"code\":\"api_error\"}}\n\n"
    );
}

// --- Any chunking gives the same judgment ----------------------------------------------------

/// Every recorded stream above, whole and cut.
pub(crate) fn recorded() -> Vec<String> {
    vec![
        chat_complete(false),
        chat_complete(true),
        CHAT_ERROR.to_string(),
        chat_head(3, None) + CHAT_ERROR,
        chat_head(3, None) + &chat("{\"content\":\"x\"}", None, None)[..70],
        chat_head(2, None) + &chat("{}", Some("stop"), None),
        chat_head(1, None) + "data: {\"choices\":[\n\n" + &chat("{}", Some("stop"), None) + DONE,
        chat_tool_call(),
        ant_complete(),
        ant_head(3) + ANT_OVERLOADED,
        ant_head(3) + "event: content_block_delta\ndata: {\"ty",
        ant_head(3),
        ant_tool_use(),
        resp_complete(),
        resp_failed(),
        resp_head(2) + RESP_ERROR,
        ant_complete().replace('\n', "\r\n"),
    ]
}

#[test]
fn one_byte_per_chunk_gives_the_same_judgment_for_every_recorded_stream() {
    for s in recorded() {
        let whole = judge(&s);
        let bytes: Vec<&[u8]> = s.as_bytes().chunks(1).collect();
        assert_eq!(judge_chunks(&bytes, CAP, None), whole, "{s}");
        // A small cap drops the big Responses events whatever the chunking, the same way.
        let small = judge_chunks(&[s.as_bytes()], 300, None);
        assert_eq!(judge_chunks(&bytes, 300, None), small, "{s}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use proptest::prelude::*;

    use super::{judge, judge_chunks, recorded, CAP};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn any_split_gives_the_same_verdict_commit_offset_and_usage(
            which in 0usize..17,
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let streams = recorded();
            let s = streams[which % streams.len()].as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(s.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in at {
                chunks.push(&s[from..c]);
                from = c;
            }
            chunks.push(&s[from..]);
            let whole = judge(std::str::from_utf8(s).unwrap());
            prop_assert_eq!(judge_chunks(&chunks, CAP, None), whole);
        }
    }
}
