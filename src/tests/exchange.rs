//! One request's phases and transitions, driven in-process against a fake host.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::case::*;
use super::fake::{Bytes, Info, Map};
use crate::breaker::StateKind;
use crate::classify::flags;
use crate::exchange::{Answer, Effect, Event, Exchange, Flow, Step, BODY_WAIT_MS, KEPT_BODY_BYTES};
use crate::runtime::StopIteration;

// ---------------------------------------------------------------------------------------
// Request side
// ---------------------------------------------------------------------------------------

#[test]
fn a_request_no_route_claims_passes_through_without_the_route_header() {
    let mut c = Case::new(CONFIG);
    let step = c.request(
        &[(":path", "/other"), ("x-ai-cb-upstream", "azure-openai")],
        true,
    );
    assert_eq!(step.flow, Flow::Continue);
    assert!(removes(&step, "x-ai-cb-upstream"), "{step:?}");
    assert_eq!(c.ex.phase_name(), "unrouted");
    assert_eq!(c.response(200, &[]), Step::go(), "nothing is judged");
}

#[test]
fn a_routed_request_goes_to_its_primary_and_its_success_is_counted() {
    let mut c = Case::new(CONFIG);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    let (h, b) = c.post(CHAT);
    assert_eq!(h.flow, Flow::Continue);
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("openai"));
    assert_eq!(b, Step::go());
    assert_eq!(c.ex.phase_name(), "sent");
    let r = c.response(200, &[]);
    assert_eq!(r.flow, Flow::Continue);
    assert_eq!(response_header(&r, "x-ai-cb-served-by"), Some("openai"));
    assert_eq!(c.ex.phase_name(), "delivering");
    assert_eq!(c.count("requests{openai,success}"), 1);
}

#[test]
fn a_worker_that_does_not_know_holds_one_kept_request_to_learn_stop_iteration() {
    let mut c = Case::new(CONFIG);
    let h = c.request(&[("content-length", "70")], false);
    assert_eq!(h.flow, Flow::Pause, "held once to find out");
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("openai"));
    let b = c.body(CHAT, true);
    assert_eq!(b.flow, Flow::Continue);
    assert_eq!(new_body(&b), None, "the body goes as it came");
    assert_eq!(c.w.rt.stop_iteration.get(), StopIteration::Granted);
    let mut next = Case {
        ex: Exchange::new(),
        ..c
    };
    assert_eq!(
        next.request(&[], false).flow,
        Flow::Continue,
        "known now: not held"
    );
}

#[test]
fn health_answers_get_and_head_and_refuses_other_methods() {
    for (method, status) in [("GET", 200), ("HEAD", 200), ("POST", 405)] {
        let mut c = Case::new(CONFIG);
        let step = c.request(&[(":method", method), (":path", "/health?x=1")], true);
        let r = reply(&step).expect("answered locally");
        assert_eq!(r.status, status, "{method}");
        assert_eq!(step.flow, Flow::Pause);
        assert_eq!(c.ex.phase_name(), "answered");
        if status == 405 {
            assert_eq!(header_of(&r.headers, "allow"), Some("GET, HEAD"));
        } else {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            assert_eq!(v["providers"]["openai"], "closed");
        }
    }
}

#[test]
fn an_open_primary_sends_the_request_to_the_fallback_with_its_rewrite() {
    let mut c = Case::new(CONFIG);
    c.trip("openai");
    let h = c.request(&[("content-length", "70")], false);
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("anthropic"));
    assert_eq!(set_header(&h, "x-provider"), Some("anthropic"));
    assert_eq!(
        h.flow,
        Flow::Pause,
        "headers held: the body gets a new model and length"
    );
    assert_eq!(c.ex.phase_name(), "held_for_body");
    assert_eq!(c.body(&CHAT[..10], false).flow, Flow::Pause, "buffering");
    let b = c.body(CHAT, true);
    assert_eq!(b.flow, Flow::Continue);
    let body = new_body(&b).expect("body rewritten");
    assert_eq!(
        body,
        r#"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#
    );
    assert_eq!(
        set_header(&b, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(c.w.rt.stop_iteration.get(), StopIteration::Granted);
    assert_eq!(c.count("rejected{openai}"), 1);
    assert_eq!(c.count("fallbacks{openai,anthropic}"), 1);
}

#[test]
fn without_stop_iteration_the_rewritten_body_goes_chunked() {
    let mut c = Case::new(CONFIG);
    c.w.rt.stop_iteration.set(StopIteration::Denied);
    c.trip("openai");
    let h = c.request(&[("content-length", "70")], false);
    assert_eq!(h.flow, Flow::Continue);
    assert!(removes(&h, "content-length"));
    assert_eq!(c.ex.phase_name(), "rewriting_body");
    assert_eq!(c.body(&CHAT[..10], false).flow, Flow::Pause);
    let b = c.body(CHAT, true);
    assert!(new_body(&b)
        .expect("rewritten")
        .contains(r#""model":"claude""#));
    assert_eq!(set_header(&b, "content-length"), None);
    assert_eq!(c.ex.phase_name(), "sent");
}

#[test]
fn a_request_that_ends_with_its_headers_is_never_held() {
    let mut c = Case::new(CONFIG);
    c.trip("openai");
    let h = c.request(&[(":method", "GET")], true);
    assert_eq!(h.flow, Flow::Continue);
    assert_eq!(c.ex.phase_name(), "sent");
}

#[test]
fn when_every_breaker_is_open_the_filter_answers_with_retry_after() {
    let mut c = Case::new(CONFIG);
    for name in ["openai", "anthropic", "azure"] {
        c.trip(name);
    }
    c.clock.set(T0 + 4_000);
    let step = c.request(&[], true);
    let r = reply(&step).expect("fast fail");
    assert_eq!(r.status, 503);
    assert_eq!(header_of(&r.headers, "retry-after"), Some("6"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["error"]["type"], "circuit_open");
    assert_eq!(c.count("all_open"), 1);
    assert_eq!(c.ex.phase_name(), "answered");
}

#[test]
fn a_model_route_holds_the_headers_and_routes_on_the_body() {
    let mut c = Case::new(MODEL_ROUTES);
    let h = c.request(&[], false);
    assert_eq!(h.flow, Flow::Pause);
    assert_eq!(
        set_header(&h, "x-ai-cb-upstream"),
        Some("openai"),
        "provisional"
    );
    let b = c.body(br#"{"model":"gpt-4o-mini"}"#, true);
    assert_eq!(set_header(&b, "x-ai-cb-upstream"), Some("mini"));
    assert_eq!(b.flow, Flow::Continue);
    c.response(200, &[]);
    assert_eq!(c.count("requests{mini,success}"), 1);
    assert_eq!(c.count("requests{openai,success}"), 0);
}

#[test]
fn a_reroute_on_the_body_undoes_the_provisional_fallbacks_rewrite() {
    let mut c = Case::new(MODEL_ROUTES);
    c.trip("openai");
    c.clock.set(T0 + 1);
    let h = c.request(&[("x-keep", "1")], false);
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("anthropic"));
    assert_eq!(set_header(&h, "x-provider"), Some("a"));
    let b = c.body(br#"{"model":"gpt-4o-mini","n":1}"#, true);
    assert_eq!(set_header(&b, "x-ai-cb-upstream"), Some("mini"));
    assert!(removes(&b, "x-provider"), "the client sent none: {b:?}");
    assert_eq!(new_body(&b), None, "mini is a primary: no model rewrite");
}

#[test]
fn a_held_request_resumes_on_its_header_route_when_envoy_holds_a_body_it_did_not_show() {
    let mut c = Case::new(MODEL_ROUTES);
    c.request(&[], false);
    assert_eq!(c.ex.wake_at(&c.w.rt.config), Some(T0 + BODY_WAIT_MS));
    assert_eq!(c.tick(Some(40)), Step::go(), "not due yet");
    c.clock.set(T0 + BODY_WAIT_MS);
    let t = c.tick(Some(40));
    assert_eq!(t.effects, vec![Effect::ResumeRequest]);
    assert_eq!(c.w.rt.stop_iteration.get(), StopIteration::Denied);
    assert_eq!(c.ex.phase_name(), "sent");
    assert_eq!(c.ex.wake_at(&c.w.rt.config), None);
}

#[test]
fn a_slow_client_is_waited_for_and_proves_stop_iteration_is_granted() {
    let mut c = Case::new(MODEL_ROUTES);
    c.request(&[], false);
    for i in 1..=4 {
        c.clock.set(T0 + i * BODY_WAIT_MS);
        assert_eq!(
            c.tick(Some(0)),
            Step::go(),
            "no body bytes yet: keep waiting"
        );
        assert_eq!(c.ex.phase_name(), "held_for_body");
    }
    assert_eq!(c.w.rt.stop_iteration.get(), StopIteration::Unknown);
    let b = c.body(br#"{"model":"gpt-4o-mini"}"#, true);
    assert_eq!(set_header(&b, "x-ai-cb-upstream"), Some("mini"));
    assert_eq!(c.w.rt.stop_iteration.get(), StopIteration::Granted);
}

#[test]
fn when_envoy_does_not_say_only_that_request_goes_on_its_headers() {
    let mut c = Case::new(MODEL_ROUTES);
    c.request(&[], false);
    c.clock.set(T0 + BODY_WAIT_MS);
    assert_eq!(c.tick(None).effects, vec![Effect::ResumeRequest]);
    assert_eq!(
        c.w.rt.stop_iteration.get(),
        StopIteration::Unknown,
        "nothing concluded"
    );
}

#[test]
fn once_stop_iteration_is_granted_a_slow_body_is_waited_for() {
    let mut c = Case::new(MODEL_ROUTES);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    c.request(&[], false);
    c.clock.set(T0 + 10 * BODY_WAIT_MS);
    assert_eq!(c.tick(Some(40)), Step::go());
    assert_eq!(c.ex.phase_name(), "held_for_body");
    let b = c.body(br#"{"model":"gpt-4o-mini"}"#, true);
    assert_eq!(set_header(&b, "x-ai-cb-upstream"), Some("mini"));
}

#[test]
fn a_cancelled_probe_frees_its_slot() {
    let mut c = Case::new(CONFIG);
    c.trip("openai");
    c.clock.set(T0 + 10_000);
    c.request(&[(":method", "GET")], true);
    assert_eq!(c.state("openai"), StateKind::HalfOpen);
    let snapshot = |c: &Case| c.w.rt.snapshot(c.id("openai"), T0 + 10_000);
    assert_eq!(snapshot(&c).probes_in_flight, 1);
    c.send(Event::Done {
        info: &Info::default(),
    });
    assert_eq!(snapshot(&c).probes_in_flight, 0);
    assert_eq!(
        c.count("requests{openai,failure}"),
        2,
        "nothing more counted"
    );
}

// ---------------------------------------------------------------------------------------
// Response side and failover
// ---------------------------------------------------------------------------------------

#[test]
fn a_failed_response_is_held_while_the_fallback_answers_for_it() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    let r = c.response(500, &[]);
    assert_eq!(r.flow, Flow::Pause, "held");
    let call = call(&r).expect("fallback called");
    assert_eq!(call.cluster, "anthropic");
    assert_eq!(
        header_of(&call.headers, "x-ai-cb-upstream"),
        Some("anthropic")
    );
    assert_eq!(header_of(&call.headers, "x-provider"), Some("anthropic"));
    let sent = String::from_utf8(call.body.clone()).expect("utf-8");
    assert!(sent.contains(r#""model":"claude""#), "{sent}");
    assert_eq!(
        header_of(&call.headers, "content-length"),
        Some(sent.len().to_string().as_str())
    );
    let held = c.response_body(b"0123456789", true);
    assert_eq!(held.flow, Flow::Pause);
    assert_eq!(
        held.effects,
        vec![Effect::ClearResponseBody { len: 10 }],
        "kept by the exchange, drained from Envoy's buffer"
    );
    let a = c.answer(200, br#"{"id":"x"}"#);
    let reply = reply(&a).expect("fallback's answer served");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, br#"{"id":"x"}"#);
    assert_eq!(
        header_of(&reply.headers, "x-ai-cb-served-by"),
        Some("anthropic")
    );
    assert_eq!(
        header_of(&reply.headers, "x-ai-cb-failover"),
        Some("openai->anthropic")
    );
    assert_eq!(
        header_of(&reply.headers, "content-length"),
        None,
        "reframed"
    );
    assert_eq!(c.count("requests{openai,failure}"), 1);
    assert_eq!(c.count("requests{anthropic,success}"), 1);
    assert_eq!(c.count("failovers{openai,anthropic,success}"), 1);
}

#[test]
fn a_fallbacks_error_answer_is_never_served_and_the_chain_goes_on() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    c.response(500, &[]);
    let a = c.answer(401, br#"{"error":"bad key"}"#);
    assert!(reply(&a).is_none(), "a 401 is not an answer");
    let next = call(&a).expect("next fallback");
    assert_eq!(next.cluster, "azure-openai");
    assert_eq!(
        header_of(&next.headers, ":path"),
        Some("/openai/deployments/x/chat/completions")
    );
    assert_eq!(c.count("requests{anthropic,ignored}"), 1);
    assert_eq!(c.count("failovers{openai,anthropic,failure}"), 1);
    let last = c.answer(404, b"{}");
    assert!(reply(&last).is_none(), "the primary's body is still coming");
    assert_eq!(c.ex.phase_name(), "giving_up");
    let end = c.response_body(br#"{"error":"primary"}"#, true);
    let r = reply(&end).expect("the primary's answer, marked");
    assert_eq!(r.status, 500);
    assert_eq!(r.body, br#"{"error":"primary"}"#);
    assert_eq!(
        header_of(&r.headers, "x-ai-cb-failover"),
        Some("openai->anthropic->azure (failed)")
    );
    assert_eq!(header_of(&r.headers, "x-ai-cb-served-by"), Some("openai"));
    assert_eq!(
        header_of(&r.headers, "x-mock"),
        Some("primary"),
        "its headers kept"
    );
}

#[test]
fn a_huge_failed_body_is_kept_bounded_and_never_fills_envoys_buffer() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    c.response(500, &[("content-type", "text/html")]);
    let chunk = vec![b'x'; 256 * 1024];
    for _ in 0..8 {
        let step = c.response_body(&chunk, false);
        assert_eq!(
            step.effects,
            vec![Effect::ClearResponseBody { len: chunk.len() }]
        );
    }
    c.answer(500, b"{}");
    let last = c.answer(500, b"{}");
    assert!(reply(&last).is_none());
    let end = c.response_body(&chunk, true);
    let r = reply(&end).expect("marked primary answer");
    assert_eq!(
        r.body.len(),
        KEPT_BODY_BYTES,
        "2 MiB in, a bounded prefix out"
    );
    assert_eq!(header_of(&r.headers, "content-type"), Some("text/html"));
}

#[test]
fn envoys_own_callout_timeout_and_connect_error_replies_are_judged_as_such() {
    let json = CONFIG.replace(
        r#""success_threshold": 1}"#,
        r#""success_threshold": 1, "failure_conditions": {"status_codes": [500], "timeout": false, "connect_failure": false}}"#,
    );
    let mut c = Case::new(&json);
    c.post(CHAT);
    c.response(500, &[]);
    let timeout = Map::of(&[(":status", "504"), ("content-type", "text/plain")]);
    let a = c.send(Event::CalloutAnswered(Some(Answer {
        headers: &timeout,
        body: &Bytes(b"upstream request timeout".to_vec()),
        body_len: 24,
    })));
    assert!(reply(&a).is_none(), "Envoy's 504 is never served");
    assert_eq!(
        c.count("requests{anthropic,ignored}"),
        1,
        "timeouts are switched off"
    );
    let refused = Map::of(&[(":status", "503"), ("content-type", "text/plain")]);
    let body = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
    let b = c.send(Event::CalloutAnswered(Some(Answer {
        headers: &refused,
        body: &Bytes(body.to_vec()),
        body_len: body.len(),
    })));
    assert!(reply(&b).is_none(), "Envoy's 503 is never served");
    assert_eq!(c.count("requests{azure,ignored}"), 1);
    assert_eq!(
        c.ex.phase_name(),
        "giving_up",
        "the primary's 500 is what the client gets"
    );

    // With the conditions on, the same replies count as timeout and connect_failure.
    let mut d = Case::new(CONFIG);
    d.post(CHAT);
    d.response(500, &[]);
    d.send(Event::CalloutAnswered(Some(Answer {
        headers: &timeout,
        body: &Bytes(b"upstream request timeout".to_vec()),
        body_len: 24,
    })));
    assert_eq!(d.count("failures{anthropic,timeout}"), 1);
    d.send(Event::CalloutAnswered(Some(Answer {
        headers: &refused,
        body: &Bytes(body.to_vec()),
        body_len: body.len(),
    })));
    assert_eq!(d.count("failures{azure,connect_failure}"), 1);
}

#[test]
fn an_upstreams_own_504_is_a_status_failure() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    c.response(500, &[]);
    let real = Map::of(&[(":status", "504"), ("x-envoy-upstream-service-time", "3")]);
    c.send(Event::CalloutAnswered(Some(Answer {
        headers: &real,
        body: &Bytes(b"upstream request timeout".to_vec()),
        body_len: 24,
    })));
    assert_eq!(c.count("failures{anthropic,status_5xx}"), 1);
}

#[test]
fn a_callout_that_gets_no_answer_counts_as_a_timeout_or_connect_failure() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    c.response(503, &[]);
    c.clock.set(T0 + 30_000);
    let a = c.send(Event::CalloutAnswered(None));
    assert_eq!(c.count("failures{anthropic,timeout}"), 1);
    assert!(call(&a).is_some(), "azure is next");
    c.clock.set(T0 + 30_010);
    c.send(Event::CalloutAnswered(None));
    assert_eq!(c.count("failures{azure,connect_failure}"), 1);
}

#[test]
fn a_callout_that_cannot_be_sent_frees_its_slot_and_tries_the_next() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    c.response(500, &[]);
    let n = c.send(Event::CalloutNotSent);
    assert_eq!(call(&n).expect("next").cluster, "azure-openai");
    assert_eq!(c.count("failovers{openai,anthropic,failure}"), 1);
    assert_eq!(
        c.count("requests{anthropic,failure}"),
        0,
        "nothing reached it"
    );
}

#[test]
fn open_fallbacks_are_skipped_during_failover() {
    let mut c = Case::new(CONFIG);
    c.trip("anthropic");
    c.post(CHAT);
    let r = c.response(502, &[]);
    assert_eq!(call(&r).expect("azure").cluster, "azure-openai");
    assert_eq!(c.count("failovers{openai,anthropic,skipped}"), 1);
}

#[test]
fn a_body_that_cannot_be_rewritten_skips_the_fallback_that_needs_it() {
    let mut c = Case::new(CONFIG);
    let body = b"not json at all";
    c.post(body);
    let r = c.response(500, &[]);
    let next = call(&r).expect("azure needs no model rewrite");
    assert_eq!(next.cluster, "azure-openai");
    assert_eq!(next.body, body.to_vec());
    assert_eq!(c.count("failovers{openai,anthropic,skipped}"), 1);
}

#[test]
fn failures_not_listed_in_failover_on_and_client_errors_pass_through() {
    let mut c = Case::new(CONFIG);
    c.post(CHAT);
    let r = c.response(400, &[]);
    assert_eq!(r.flow, Flow::Continue);
    assert!(call(&r).is_none());
    assert_eq!(c.count("requests{openai,ignored}"), 1);
}

#[test]
fn a_request_over_max_body_bytes_is_not_kept_for_failover() {
    let json = CONFIG.replace(
        r#""max_attempts": 2"#,
        r#""max_attempts": 2, "max_body_bytes": 16"#,
    );
    let mut c = Case::new(&json);
    c.w.rt.stop_iteration.set(StopIteration::Granted);
    let h = c.request(&[], false);
    assert_eq!(h.flow, Flow::Continue);
    c.body(&CHAT[..12], false);
    c.body(&CHAT[12..], true);
    let r = c.response(500, &[]);
    assert!(call(&r).is_none(), "the body outgrew the copy");
    assert_eq!(r.flow, Flow::Continue);
}

#[test]
fn envoy_timeouts_and_resets_are_classified_from_the_stream_info() {
    let mut c = Case::new(CONFIG);
    c.request(&[(":method", "GET")], true);
    c.response_info(
        504,
        &[],
        Info {
            flags: flags::UPSTREAM_REQUEST_TIMEOUT,
            details: Some("upstream_response_timeout".into()),
            received: None,
        },
    );
    assert_eq!(c.count("failures{openai,timeout}"), 1);
    let mut d = Case::new(CONFIG);
    d.request(&[(":method", "GET")], true);
    d.response_info(
        503,
        &[],
        Info {
            flags: flags::UPSTREAM_CONNECTION_FAILURE,
            details: None,
            received: None,
        },
    );
    assert_eq!(d.count("failures{openai,connect_failure}"), 1);
}

#[test]
fn a_rate_limit_carries_the_providers_wait_into_the_breaker() {
    let mut c = Case::new(CONFIG);
    for _ in 0..2 {
        c.ex = Exchange::new();
        c.request(&[(":method", "GET")], true);
        c.response(429, &[("retry-after", "120")]);
    }
    let snap = c.w.rt.snapshot(c.id("openai"), T0);
    assert_eq!(snap.state, StateKind::Open);
    assert_eq!(
        snap.next_probe_in_ms,
        Some(120_000),
        "Retry-After stretched the open time"
    );
}

#[test]
fn a_client_that_leaves_during_failover_frees_the_fallbacks_probe_slot() {
    let mut c = Case::new(CONFIG);
    c.trip("anthropic");
    c.clock.set(T0 + 10_000);
    c.post(CHAT);
    c.response(500, &[]);
    let snap = |c: &Case| c.w.rt.snapshot(c.id("anthropic"), T0 + 10_000);
    assert_eq!(
        snap(&c).probes_in_flight,
        1,
        "the fallback's probe is in flight"
    );
    assert!(c.ex.awaits_callout());
    c.send(Event::Done {
        info: &Info::default(),
    });
    assert_eq!(snap(&c).probes_in_flight, 0);
}

// ---------------------------------------------------------------------------------------
// Bodies the filter cannot hold or rewrite
// ---------------------------------------------------------------------------------------

fn limited(json: &str, limit: usize) -> Case {
    let json = json.replacen('{', &format!(r#"{{"body_buffer_limit": {limit},"#), 1);
    Case::new(&json)
}

#[test]
fn a_body_announced_over_the_limit_routes_on_its_headers_alone() {
    let mut c = limited(MODEL_ROUTES, 100);
    let h = c.request(&[("content-length", "5000")], false);
    assert_eq!(h.flow, Flow::Continue, "not held");
    assert_eq!(set_header(&h, "x-ai-cb-upstream"), Some("openai"));
    assert_eq!(c.ex.phase_name(), "sent");
    assert_eq!(c.count("body_over_limit"), 1);
}

#[test]
fn a_held_body_that_outgrows_the_limit_goes_on_its_header_route() {
    let mut c = limited(MODEL_ROUTES, 100);
    assert_eq!(c.request(&[], false).flow, Flow::Pause);
    assert_eq!(c.body(&[b' '; 60], false).flow, Flow::Pause);
    let b = c.body(&[b' '; 160], false);
    assert_eq!(b.flow, Flow::Continue, "Envoy releases what it holds");
    assert_eq!(c.ex.phase_name(), "sent");
    assert_eq!(c.count("body_over_limit"), 1);
}

#[test]
fn a_fallback_needing_a_rewrite_is_skipped_for_a_body_over_the_limit() {
    let mut c = limited(CONFIG, 100);
    c.trip("openai");
    let h = c.request(&[("content-length", "5000")], false);
    assert_eq!(
        set_header(&h, "x-ai-cb-upstream"),
        Some("azure-openai"),
        "no model rewrite there"
    );
    assert_eq!(c.count("body_over_limit"), 1);
}

#[test]
fn a_compressed_body_never_reaches_a_fallback_that_must_rewrite_it() {
    let mut c = Case::new(MODEL_ROUTES);
    c.trip("openai");
    let h = c.request(
        &[("content-encoding", "gzip"), ("content-length", "40")],
        false,
    );
    assert_eq!(h.flow, Flow::Pause, "the upload is read first");
    assert_eq!(c.ex.phase_name(), "refusing");
    let part = c.body(&[0u8; 20], false);
    assert_eq!(
        part.effects,
        vec![Effect::ClearRequestBody { len: 20 }],
        "and dropped"
    );
    let end = c.body(&[0u8; 20], true);
    let r = reply(&end).expect("refused once the body is in");
    assert_eq!(r.status, 413);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["error"]["type"], "request_too_large");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("compressed"));
}

fn envoys_413(c: &mut Case) -> Step {
    let details = Some("request_payload_too_large".to_string());
    c.response_info(
        413,
        &[],
        Info {
            details,
            ..Info::default()
        },
    )
}

fn too_large_message(step: &Step) -> String {
    let r = reply(step).expect("the filter answers");
    assert_eq!(r.status, 413);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["error"]["type"], "request_too_large");
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

#[test]
fn envoys_own_413_for_a_refused_upload_gives_way_to_the_filters_json_413() {
    // One read from the client can overflow Envoy's buffer before the filter drops it.
    let mut c = Case::new(MODEL_ROUTES);
    c.trip("openai");
    c.request(
        &[("content-encoding", "gzip"), ("content-length", "40")],
        false,
    );
    assert_eq!(c.ex.phase_name(), "refusing");
    let envoys = envoys_413(&mut c);
    assert_eq!(envoys.flow, Flow::Pause, "Envoy's bare answer is held");
    assert!(
        too_large_message(&envoys).contains("compressed"),
        "the planned answer"
    );
    assert_eq!(c.ex.phase_name(), "answered");
}

#[test]
fn envoys_other_answers_to_a_refused_upload_pass_unchanged() {
    let mut c = Case::new(MODEL_ROUTES);
    c.trip("openai");
    c.request(
        &[("content-encoding", "gzip"), ("content-length", "40")],
        false,
    );
    let timeout = c.response(408, &[]);
    assert_eq!(timeout.flow, Flow::Continue);
    assert!(reply(&timeout).is_none(), "{timeout:?}");
}

#[test]
fn a_held_body_that_overflows_envoys_buffer_gets_the_filters_413_and_frees_the_probe() {
    // Envoy's buffer limit below body_buffer_limit: Envoy refuses first.
    let mut c = limited(MODEL_ROUTES, 1 << 30);
    c.trip("openai");
    c.clock.set(T0 + 40_000);
    assert_eq!(c.request(&[], false).flow, Flow::Pause);
    let probes = |c: &Case| {
        c.w.rt
            .snapshot(c.id("openai"), T0 + 40_000)
            .probes_in_flight
    };
    assert_eq!(probes(&c), 1, "the held request is the half-open probe");
    let envoys = envoys_413(&mut c);
    assert!(too_large_message(&envoys).contains("1073741824 bytes"));
    assert_eq!(c.count("body_over_limit"), 1);
    assert_eq!(probes(&c), 0, "the probe slot is free again");
}

#[test]
fn envoys_413_after_a_held_body_went_on_its_header_route_is_the_filters_413() {
    let mut c = limited(MODEL_ROUTES, 100);
    c.request(&[], false);
    assert_eq!(c.body(&[b' '; 160], false).flow, Flow::Continue);
    assert_eq!(c.ex.phase_name(), "sent");
    let envoys = envoys_413(&mut c);
    assert!(too_large_message(&envoys).contains("100 bytes"));
    assert!(response_header(&envoys, "x-ai-cb-served-by").is_none());
    assert_eq!(c.count("body_over_limit"), 1, "counted once");
}

#[test]
fn an_upstreams_own_413_passes_as_its_answer() {
    let mut c = Case::new(MODEL_ROUTES);
    c.request(&[], true);
    let step = c.response_info(
        413,
        &[],
        Info {
            details: Some("via_upstream".to_string()),
            ..Info::default()
        },
    );
    assert!(reply(&step).is_none());
    assert_eq!(response_header(&step, "x-ai-cb-served-by"), Some("openai"));
}

#[test]
fn a_held_body_for_a_rewrite_that_outgrows_the_limit_is_refused_with_413() {
    let mut c = limited(MODEL_ROUTES, 100);
    c.trip("openai");
    c.clock.set(T0 + 1);
    assert_eq!(c.request(&[], false).flow, Flow::Pause);
    let b = c.body(&[b' '; 200], false);
    assert_eq!(b.effects, vec![Effect::ClearRequestBody { len: 200 }]);
    assert!(c.body(&[b' '; 30], false).flow == Flow::Pause);
    let end = c.body(&[b' '; 30], true);
    let r = reply(&end).expect("refused");
    assert_eq!(r.status, 413);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("100 bytes"),
        "{v}"
    );
    let anthropic = c.w.rt.snapshot(c.id("anthropic"), T0 + 1);
    assert_eq!(anthropic.state, StateKind::Closed);
}

#[test]
fn headers_only_the_filter_may_write_are_stripped_from_requests() {
    let mut c = Case::new(CONFIG);
    let h = c.request(
        &[
            ("x-ai-cb-failover", "forged"),
            ("x-ai-cb-served-by", "forged"),
        ],
        true,
    );
    assert!(
        removes(&h, "x-ai-cb-failover") && removes(&h, "x-ai-cb-served-by"),
        "{h:?}"
    );
    let plain = Case::new(CONFIG).request(&[], true);
    assert!(!removes(&plain, "x-ai-cb-failover"), "nothing to remove");
}
