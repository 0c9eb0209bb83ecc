#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Proves the integration-test harness (`tests/common/mod.rs`) against a bare Envoy (no wasm
//! filter) and the mock provider: requests get through, failures surface as Envoy's own
//! answers, metrics are readable, the HTTP client copes with chunked and keep-alive answers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn bare(mock: &Mock) -> Envoy {
    Envoy::builder()
        .cluster("openai", mock.port())
        .route_timeout(Duration::from_millis(300))
        .start()
}

#[test]
fn request_through_bare_envoy_reaches_the_mock() {
    let mock = Mock::start("openai");
    let envoy = bare(&mock);

    let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[("x-test", "1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-mock-provider"), Some("openai"));
    let body = r.json();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["model"], "gpt-4o-mini");

    assert_eq!(mock.hits(), 1);
    assert_eq!(mock.hits_on("/v1/chat/completions"), 1);
    let reqs = mock.requests_on("/v1/chat/completions");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["method"], "POST");
    assert_eq!(reqs[0]["headers"]["x-test"], "1");
    let sent: serde_json::Value = serde_json::from_str(reqs[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert!(mock.requests_on("/other").is_empty());

    mock.reset();
    assert_eq!(mock.hits(), 0);
    assert!(mock.requests().is_empty());

    // Envoy's own counter, with the cluster name as a Prometheus label.
    let total = envoy.wait_metric(
        "envoy_cluster_upstream_rq_total",
        &[("envoy_cluster_name", "openai")],
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    assert_eq!(total, Some(1.0));
    assert_eq!(
        envoy.metric_sum(
            "envoy_cluster_upstream_rq",
            &[("envoy_cluster_name", "openai")]
        ),
        Some(1.0),
        "the 2xx series (label envoy_response_code) sums to 1"
    );
    assert_eq!(envoy.metric("no_such_metric", &[]), None);
    assert!(
        envoy.access_log().contains("cluster=openai"),
        "{}",
        envoy.access_log()
    );
}

#[test]
fn mock_failure_modes_surface_through_envoy() {
    let mock = Mock::start("openai");
    let envoy = bare(&mock);
    let addr = envoy.addr();

    mock.set_mode(r#"{"mode":"error","status":500}"#);
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "server_error", "{}", r.text());

    mock.set_mode(r#"{"mode":"rate_limit","retry_after":2}"#);
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));

    // route timeout 0.3 s → Envoy's own 504
    mock.set_mode(r#"{"mode":"hang","hang_ms":5000}"#);
    let started = Instant::now();
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.text(), "upstream request timeout");

    mock.mode("reset");
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 503, "{}", r.text());

    mock.mode("refuse");
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("connection"),
        "connect failure details: {}",
        r.text()
    );

    mock.mode("healthy");
    let r = post_chat(&addr, "gpt-4o-mini", &[]);
    assert_eq!(r.status, 200, "{}", r.text());

    assert!(wait_until(Duration::from_secs(5), || {
        envoy.access_log().contains("504 UT response_timeout")
    }));
    assert_eq!(
        envoy.metric(
            "envoy_cluster_upstream_rq_timeout",
            &[("envoy_cluster_name", "openai")]
        ),
        Some(1.0)
    );
}

#[test]
fn streaming_and_burst() {
    let mock = Mock::start("openai");
    let envoy = bare(&mock);
    let addr = envoy.addr();

    // Chunked server-sent events, straight from the mock and through Envoy.
    let body =
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for target in [mock.addr(), addr.clone()] {
        let r = http(
            "POST",
            &format!("http://{target}/v1/chat/completions"),
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream"));
        assert!(
            r.text().trim_end().ends_with("data: [DONE]"),
            "{}",
            r.text()
        );
    }

    let rs = burst(40, 8, |i| post_chat(&addr, &format!("m{i}"), &[]));
    assert_eq!(rs.len(), 40);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["model"], format!("m{i}"));
    }
    assert_eq!(mock.hits(), 42);

    // A bad address fails fast instead of hanging.
    let err = try_http("GET", "127.0.0.1:1/", &[], b"", Duration::from_secs(2));
    assert!(err.is_err());
}

#[test]
fn invalid_envoy_config_is_reported_with_the_log() {
    // Two clusters with one name: Envoy refuses the bootstrap and exits.
    let res = Envoy::builder()
        .cluster("dup", 1)
        .cluster("dup", 2)
        .ready_timeout(Duration::from_secs(10))
        .try_start();
    let err = res.err().expect("duplicate clusters must be refused");
    assert!(err.contains("envoy exited"), "{err}");
    assert!(err.contains("dup"), "{err}");
}

#[test]
fn prometheus_parser() {
    let text = "# TYPE a counter\na{x=\"1\",y=\"q\\\"uote\"} 3\na{x=\"2\"} 4\nb 5\n\
                h_bucket{le=\"+Inf\",u=\"o\"} 2\nh_count{u=\"o\"} 2\nh_sum{u=\"o\"} 7.5\n\
                c{} 6\nd{v=\"x,y=z\"} 1\n";
    let s = parse_prometheus(text);
    assert_eq!(s.len(), 8);
    assert_eq!(find_metric(&s, "c", &[]), Some(6.0), "Envoy's empty braces");
    assert_eq!(find_metric(&s, "d", &[("v", "x,y=z")]), Some(1.0));
    assert_eq!(
        find_metric(&s, "a", &[("y", "q\"uote"), ("x", "1")]),
        Some(3.0)
    );
    assert_eq!(find_metric(&s, "a", &[("x", "1")]), None, "exact label set");
    assert_eq!(sum_metric(&s, "a", &[]), Some(7.0));
    assert_eq!(find_metric(&s, "b", &[]), Some(5.0));
    assert_eq!(
        find_metric(&s, "h", &[("u", "o")]),
        Some(2.0),
        "histogram → _count"
    );
}

#[test]
fn client_sends_only_what_the_test_asks_for() {
    let mock = Mock::start("openai");
    post_chat(&mock.addr(), "gpt-4o-mini", &[("x-test", "1")]);
    http("GET", &format!("{}/v1/models", mock.addr()), &[], b"");
    let reqs = mock.requests();
    let names = |i: usize| -> Vec<String> {
        let mut v: Vec<String> = reqs[i]["headers"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    };
    // No user-agent, accept or accept-encoding added behind the test's back.
    assert_eq!(
        names(0),
        [
            "connection",
            "content-length",
            "content-type",
            "host",
            "x-test"
        ],
        "{}",
        reqs[0]
    );
    assert_eq!(reqs[0]["headers"]["connection"], "close");
    assert_eq!(names(1), ["connection", "host"], "{}", reqs[1]);
}

/// A bare Envoy with two extra routes of its own: a redirect and a response with a repeated
/// header (through `edit_bootstrap`, which is also what this proves).
fn envoy_with_local_routes(mock: &Mock) -> Envoy {
    Envoy::builder()
        .cluster("openai", mock.port())
        .edit_bootstrap(|b| {
            let routes = &mut b.hcm()["route_config"]["virtual_hosts"][0]["routes"];
            let add = |v: &str| {
                json!({"header": {"key": "x-rep", "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"})
            };
            let local = [
                json!({"match": {"path": "/redirect"}, "redirect": {"path_redirect": "/elsewhere"}}),
                json!({"match": {"path": "/repeat"},
                       "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                       "response_headers_to_add": [add("a"), add("b")]}),
            ];
            let all = routes.as_array_mut().unwrap();
            for (i, r) in local.into_iter().enumerate() {
                all.insert(i, r);
            }
        })
        .start()
}

#[test]
fn client_returns_redirects_and_repeated_headers_as_received() {
    let mock = Mock::start("openai");
    let envoy = envoy_with_local_routes(&mock);
    let r = http("GET", &format!("{}/redirect", envoy.addr()), &[], b"");
    assert_eq!(r.status, 301, "not followed");
    assert!(r.header("location").unwrap().ends_with("/elsewhere"));
    let r = http("GET", &format!("{}/repeat", envoy.addr()), &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(r.header_all("X-Rep"), ["a", "b"]);
    assert_eq!(r.header("x-rep"), Some("a"));
    assert_eq!(mock.hits(), 0);
}

#[test]
fn raw_requests_reach_envoy_as_written() {
    let mock = Mock::start("openai");
    let envoy = bare(&mock);
    // Malformed: Envoy answers 400 itself, the mock sees nothing.
    let r = raw_http(
        &envoy.addr(),
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n",
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    // A body in chunks of the test's choosing arrives whole.
    let r = post_chunked(
        &envoy.addr(),
        "/v1/chat/completions",
        &[r#"{"model":"gpt-4o-mi"#, r#"ni","messages":[]}"#],
    );
    assert_eq!(r.status, 200);
    let sent = &mock.requests_on("/v1/chat/completions")[0];
    assert_eq!(sent["body"], r#"{"model":"gpt-4o-mini","messages":[]}"#);
    assert_eq!(sent["headers"]["transfer-encoding"], "chunked");
    assert_eq!(mock.hits(), 1);
}

/// A one-request server that answers with `pieces` as a chunked `text/event-stream`, one
/// write per piece, `gap` apart; returns its port.
fn sse_server(pieces: &'static [&'static str], gap: Duration) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .unwrap();
        for p in pieces {
            std::thread::sleep(gap);
            conn.write_all(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes())
                .unwrap();
        }
        conn.write_all(b"0\r\n\r\n").unwrap();
    });
    port
}

const SSE_PIECES: &[&str] = &[
    "data: {\"n\":1}\n",
    "\n",
    "data: {\"n\":2}\r\n\r\n",
    "event: done\ndata: [DONE]\n\n",
];

#[test]
fn streamed_chunks_arrive_one_by_one_with_their_times() {
    let gap = Duration::from_millis(150);
    let port = sse_server(SSE_PIECES, gap);
    let s = http_stream(
        "GET",
        &format!("127.0.0.1:{port}/stream"),
        &[],
        b"",
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    let chunks: Vec<Chunk> = s.chunks().map(Result::unwrap).collect();
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(&c.data))
        .collect();
    assert_eq!(text, SSE_PIECES.concat());
    assert_eq!(
        chunks.len(),
        SSE_PIECES.len(),
        "one read per write: {chunks:?}"
    );
    for pair in chunks.windows(2) {
        assert!(pair[1].at >= pair[0].at + gap / 2, "{chunks:?}");
    }
}

#[test]
fn server_sent_events_through_envoy_keep_their_arrival_times() {
    let gap = Duration::from_millis(200);
    let port = sse_server(SSE_PIECES, gap);
    let envoy = Envoy::builder()
        .cluster("sse", port)
        .route_timeout(Duration::from_secs(5))
        .start();
    let s = http_stream(
        "GET",
        &format!("{}/stream", envoy.addr()),
        &[],
        b"",
        DEFAULT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(s.status, 200);
    let events: Vec<SseEvent> = s.events().map(Result::unwrap).collect();
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, [r#"{"n":1}"#, r#"{"n":2}"#, "[DONE]"], "{events:?}");
    assert_eq!(events[0].json().unwrap()["n"], 1);
    assert_eq!(events[2].event.as_deref(), Some("done"));
    assert_eq!(events[2].json(), None);
    // The first event is complete only with its second piece, one gap after its first.
    assert!(events[0].at >= gap * 2, "{events:?}");
    for pair in events.windows(2) {
        assert!(pair[1].at >= pair[0].at + gap / 2, "{events:?}");
    }
}

#[test]
fn timeout_and_buffer_options_reach_envoy() {
    let mock = Mock::start("openai");
    let envoy = Envoy::builder()
        .cluster("openai", mock.port())
        .route_timeout(Duration::ZERO)
        .route_idle_timeout(Duration::from_millis(700))
        .stream_idle_timeout(Duration::from_secs(3))
        .buffer_limit_bytes(65536)
        .start();
    let dump: serde_json::Value =
        serde_json::from_str(&envoy.admin_get("/config_dump?include_eds")).unwrap();
    let text = dump.to_string();
    assert!(text.contains(r#""idle_timeout":"0.700s""#), "{text}");
    assert!(text.contains(r#""timeout":"0s""#), "{text}");
    assert!(text.contains(r#""stream_idle_timeout":"3s""#), "{text}");
    assert!(
        text.contains(r#""per_connection_buffer_limit_bytes":65536"#),
        "{text}"
    );
    assert_eq!(post_chat(&envoy.addr(), "m", &[]).status, 200);
}

#[test]
fn listener_from_file_is_reloaded_on_update() {
    let first = Mock::start("openai");
    let second = Mock::start("anthropic");
    let mut envoy = Envoy::builder()
        .clusters(&[("openai", first.port()), ("anthropic", second.port())])
        .listener_from_file()
        .start();
    let r = post_chat(&envoy.addr(), "m", &[]);
    assert_eq!(r.header("x-mock-provider"), Some("openai"));
    let before = envoy.addr();
    envoy.update_listener(|b| b.route()["cluster"] = json!("anthropic"));
    let r = post_chat(&envoy.addr(), "m", &[]);
    assert_eq!(r.header("x-mock-provider"), Some("anthropic"));
    assert_eq!(envoy.addr(), before, "the listener keeps its port");
    assert_eq!((first.hits(), second.hits()), (1, 1));
}
