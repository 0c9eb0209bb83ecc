//! The request body's `model`: read, and rewritten in place with every other byte kept.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::exchange::{model_of, with_model, NotRewritable};

fn rewrite(body: &str, model: &str) -> String {
    String::from_utf8(with_model(body.as_bytes(), model).expect("rewritable")).expect("utf-8")
}

#[test]
fn model_is_read_from_a_json_object() {
    let body = br#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#;
    assert_eq!(model_of(body).as_deref(), Some("gpt-4o-mini"));
    assert_eq!(model_of(b"not json"), None);
    assert_eq!(model_of(br#"{"model":5}"#), None);
    assert_eq!(model_of(br#"{"messages":[]}"#), None);
}

#[test]
fn only_the_model_value_changes_and_key_order_is_kept() {
    assert_eq!(
        rewrite(
            r#"{"z":1,"model":"gpt-4o-mini","a":[{"b":2}]}"#,
            "claude-3-5"
        ),
        r#"{"z":1,"model":"claude-3-5","a":[{"b":2}]}"#
    );
}

#[test]
fn numbers_keep_their_spelling() {
    let body = r#"{"model":"gpt","max_tokens":1e2,"seed":12345678901234567890123,"t":0.10}"#;
    assert_eq!(
        rewrite(body, "m"),
        r#"{"model":"m","max_tokens":1e2,"seed":12345678901234567890123,"t":0.10}"#
    );
}

#[test]
fn lone_surrogates_and_escapes_elsewhere_are_kept() {
    let body = r#"{"messages":[{"content":"\ud800 and \u00e9"}], "model" : "gpt"}"#;
    assert_eq!(
        rewrite(body, "claude"),
        r#"{"messages":[{"content":"\ud800 and \u00e9"}], "model" : "claude"}"#
    );
}

#[test]
fn whitespace_and_nested_model_keys_are_left_alone() {
    let body = "{\n  \"meta\": {\"model\": \"inner\"},\n  \"model\": \"outer\"\n}\n";
    assert_eq!(
        rewrite(body, "new"),
        "{\n  \"meta\": {\"model\": \"inner\"},\n  \"model\": \"new\"\n}\n"
    );
}

#[test]
fn every_duplicate_top_level_model_is_rewritten() {
    assert_eq!(
        rewrite(r#"{"model":"a","x":1,"model":"b"}"#, "c"),
        r#"{"model":"c","x":1,"model":"c"}"#
    );
}

#[test]
fn a_missing_model_is_added_first() {
    assert_eq!(
        rewrite(r#"{"messages":[]}"#, "m"),
        r#"{"model":"m","messages":[]}"#
    );
    assert_eq!(rewrite(" { } ", "m"), r#" {"model":"m" } "#);
}

#[test]
fn the_new_model_is_json_escaped() {
    assert_eq!(rewrite(r#"{"model":"a"}"#, "x\"y"), r#"{"model":"x\"y"}"#);
}

#[test]
fn bodies_that_are_not_json_objects_are_refused() {
    for body in [
        "[1,2]",
        "not json",
        "",
        r#"{"model":"a""#,
        r#"{"model":"a"} x"#,
    ] {
        assert_eq!(
            with_model(body.as_bytes(), "m"),
            Err(NotRewritable::NotJsonObject),
            "{body:?}"
        );
    }
}

#[test]
fn usage_is_read_from_the_end_of_openai_and_anthropic_answers() {
    use crate::exchange::usage::{usage_in_tail, Tail};
    let openai = br#"{"id":"x","choices":[{"message":{"content":"usage is a word"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
    assert_eq!(usage_in_tail(openai), Some((12, 3)));
    let anthropic = br#"{"content":[{"type":"text","text":"hi"}],"usage":{ "input_tokens": 7, "output_tokens": 9 }}"#;
    assert_eq!(usage_in_tail(anthropic), Some((7, 9)));
    assert_eq!(usage_in_tail(br#"{"choices":[]}"#), None);
    let mut t = Tail::default();
    let long = vec![b' '; 10_000];
    t.push(br#"{"text":""#);
    t.push(&long);
    t.push(br#"","usage":{"prompt_tokens":1,"#);
    t.push(br#""completion_tokens":2}}"#);
    assert_eq!(
        t.usage(),
        Some((1, 2)),
        "across chunks, with bounded memory"
    );
}
