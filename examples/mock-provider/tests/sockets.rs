#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The mock provider's binary on real loopback sockets: what only a socket shows (a TCP
//! reset, a close without the terminating chunk, a stall with the connection open, a late
//! first byte, a refused and re-bound port, keep-alive and pipelining) and the control API
//! end to end. The byte content of every mode is unit-tested inside the crate.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Mock {
    child: Child,
    port: u16,
    control: u16,
}

impl Mock {
    fn start(args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-provider"))
            .args(["--name", "sock"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["name"], "sock");
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
        Mock {
            child,
            port: u16::try_from(v["listen"].as_u64().unwrap()).unwrap(),
            control: u16::try_from(v["control"].as_u64().unwrap()).unwrap(),
        }
    }

    fn control(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let raw = exchange(self.control, method, path, &body);
        let (status, body) = split(&raw);
        (status, serde_json::from_str(&body).unwrap())
    }

    fn mode(&self, mode: Value) {
        let (status, reply) = self.control("POST", "/mode", &mode);
        assert_eq!(status, 200, "{reply}");
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One request on a fresh connection with `connection: close`; everything until EOF.
fn exchange(port: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = request(method, path, body).replacen("\r\n", "\r\nconnection: close\r\n", 1);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Status and body of a `content-length` response.
fn split(raw: &str) -> (u16, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_owned())
}

const STREAM: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn reset_and_a_cut_with_rst_reset_the_connection() {
    let mock = Mock::start(&["--mode", "reset"]);
    let mut s = mock.connect().unwrap();
    s.write_all(request("POST", "/v1/chat/completions", "{}").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let err = s.read_to_end(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(buf.is_empty());

    mock.mode(json!({"mode":"stream_cut","after_tokens":1,"close":"rst"}));
    let mut s = mock.connect().unwrap();
    s.write_all(request("POST", "/v1/chat/completions", STREAM).as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let err = s.read_to_end(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let (_, stats) = mock.control("GET", "/stats", &Value::Null);
    assert_eq!(stats["by_mode"]["reset"], 1);
    assert_eq!(stats["by_mode"]["stream_cut"], 1);
}

#[test]
fn a_cut_stream_closes_without_the_terminating_chunk() {
    let mock = Mock::start(&["--mode", r#"{"mode":"stream_cut","after_tokens":2}"#]);
    let raw = exchange(mock.port, "POST", "/v1/chat/completions", STREAM);
    assert!(raw.contains("transfer-encoding: chunked"));
    assert!(raw.contains(r#""content":" from""#), "{raw}");
    assert!(!raw.ends_with("0\r\n\r\n"), "{raw}");
    assert!(!raw.contains("[DONE]") && !raw.contains(r#""finish_reason":"stop""#));
    // The same mode leaves a complete, cleanly ended stream for stream_no_marker.
    mock.mode(json!({"mode":"stream_no_marker","after_tokens":2}));
    let raw = exchange(mock.port, "POST", "/v1/chat/completions", STREAM);
    assert!(raw.ends_with("\r\n0\r\n\r\n"), "{raw}");
    assert!(!raw.contains("[DONE]"));
}

/// Reads a chunked SSE response event by event: (seconds since `start`, event text).
fn timed_events(s: &mut TcpStream, start: Instant) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        pending.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        while let Some(at) = pending.find("\n\n") {
            let event = pending[..at].to_owned();
            pending.drain(..at + 2);
            out.push((start.elapsed().as_secs_f64(), event));
        }
        if pending.ends_with("0\r\n\r\n") {
            return out;
        }
    }
}

#[test]
fn a_stall_keeps_the_connection_open_then_the_stream_completes() {
    let mock = Mock::start(&[
        "--mode",
        r#"{"mode":"stream_stall","after_tokens":1,"stall_ms":800}"#,
    ]);
    let mut s = mock.connect().unwrap();
    let start = Instant::now();
    s.write_all(request("POST", "/v1/chat/completions", STREAM).as_bytes())
        .unwrap();
    let events = timed_events(&mut s, start);
    let first = events
        .iter()
        .position(|(_, e)| e.contains("Hello"))
        .unwrap();
    let gap = events[first + 1].0 - events[first].0;
    assert!(
        (0.75..3.0).contains(&gap),
        "stall of {gap} s after the first token"
    );
    assert!(events.last().unwrap().1.ends_with("data: [DONE]"));
    // Keep-alive survives the stall: a second request on the same connection.
    s.write_all(request("GET", "/v1/models", "").as_bytes())
        .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
}

#[test]
fn a_late_first_token_comes_after_the_headers_or_with_them() {
    let mock = Mock::start(&[]);
    for delay_headers in [false, true] {
        mock.mode(json!({"mode":"stream_first_token_delay","delay_ms":600,
                         "delay_headers":delay_headers}));
        let mut s = mock.connect().unwrap();
        let start = Instant::now();
        s.write_all(
            request(
                "POST",
                "/v1/messages",
                &json!({"model":"c","max_tokens":5,
            "stream":true,"messages":[{"role":"user","content":"hi"}]})
                .to_string(),
            )
            .as_bytes(),
        )
        .unwrap();
        let mut first = [0u8; 1];
        s.read_exact(&mut first).unwrap();
        let first_byte = start.elapsed().as_secs_f64();
        let events = timed_events(&mut s, start);
        let token = events
            .iter()
            .find(|(_, e)| e.contains("content_block_delta"))
            .unwrap()
            .0;
        assert!(token >= 0.55, "first token at {token} s");
        if delay_headers {
            assert!(first_byte >= 0.55, "first byte at {first_byte} s");
        } else {
            assert!(first_byte < 0.4, "first byte at {first_byte} s");
        }
    }
}

#[test]
fn refuse_closes_the_port_and_down_for_reopens_it_by_itself() {
    let mock = Mock::start(&[]);
    mock.mode(json!({"mode":"refuse"}));
    let err = mock.connect().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    mock.mode(json!({"mode":"healthy"}));
    assert!(mock.connect().is_ok());

    mock.mode(json!({"mode":"down_for","down_ms":700,"with":{"mode":"refuse"}}));
    let set = Instant::now();
    assert_eq!(
        mock.connect().unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    let (_, mode) = mock.control("GET", "/mode", &Value::Null);
    assert_eq!(mode["mode"], "down_for");
    assert!(mode["remaining_ms"].as_u64().unwrap() <= 700);
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.connect().is_err() {
        assert!(Instant::now() < deadline, "the port never re-opened");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        set.elapsed() >= Duration::from_millis(650),
        "{:?}",
        set.elapsed()
    );
    let (status, _) = split(&exchange(mock.port, "GET", "/v1/models", ""));
    assert_eq!(status, 200);
}

#[test]
fn down_for_answers_models_with_the_same_health() {
    let mock = Mock::start(&[
        "--mode",
        r#"{"mode":"down_for","down_ms":600,"with":{"mode":"error","status":503}}"#,
    ]);
    let start = Instant::now();
    let (status, _) = split(&exchange(mock.port, "GET", "/v1/models", ""));
    assert_eq!(status, 503);
    std::thread::sleep(Duration::from_millis(650).saturating_sub(start.elapsed()));
    let (status, body) = split(&exchange(mock.port, "GET", "/v1/models", ""));
    assert_eq!(status, 200, "{body}");
    let (_, stats) = mock.control("GET", "/stats", &Value::Null);
    assert_eq!(stats["mode"], "down_for");
    assert_eq!(
        (
            stats["by_mode"]["error"].as_u64(),
            stats["by_mode"]["healthy"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

#[test]
fn fail_next_then_healthy_with_the_request_log_timed() {
    let mock = Mock::start(&[]);
    mock.mode(json!({"mode":"fail_next","count":2,"with":{"mode":"rate_limit","retry_after":3}}));
    let statuses: Vec<u16> = (0..3)
        .map(|_| split(&exchange(mock.port, "POST", "/v1/chat/completions", "{}")).0)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
    let (_, mode) = mock.control("GET", "/mode", &Value::Null);
    assert_eq!(mode["remaining"], 0);
    let (_, log) = mock.control(
        "GET",
        "/requests?path=%2Fv1%2Fchat%2Fcompletions",
        &Value::Null,
    );
    let log = log["requests"].as_array().unwrap();
    let modes: Vec<&str> = log.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["rate_limit", "rate_limit", "healthy"]);
    let times: Vec<u64> = log.iter().map(|r| r["unix_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times[0] > 1_600_000_000_000, "{times:?}");
}

#[test]
fn keep_alive_and_pipelined_requests_are_answered_in_order() {
    let mock = Mock::start(&[]);
    let mut s = mock.connect().unwrap();
    let two = format!(
        "{}{}",
        request("POST", "/v1/chat/completions", r#"{"model":"a"}"#),
        request("POST", "/v1/chat/completions", r#"{"model":"b"}"#)
    );
    s.write_all(two.as_bytes()).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.matches("HTTP/1.1 200 OK").count() < 2 || !got.ends_with('}') {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{got}");
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let a = got.find(r#""model":"a""#).unwrap();
    let b = got.find(r#""model":"b""#).unwrap();
    assert!(a < b, "{got}");
}

#[test]
fn control_api_errors_and_the_validation_switch() {
    let mock = Mock::start(&[]);
    let (status, reply) = mock.control(
        "POST",
        "/mode",
        &json!({"mode":"stream_cut","after_token":1}),
    );
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("after_token"),
        "{reply}"
    );
    let (status, _) = mock.control("GET", "/nowhere", &Value::Null);
    assert_eq!(status, 404);
    let (status, _) = mock.control("DELETE", "/mode", &Value::Null);
    assert_eq!(status, 405);

    let no_max_tokens = r#"{"model":"c","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, body) = split(&exchange(mock.port, "POST", "/v1/messages", no_max_tokens));
    assert_eq!(status, 400, "{body}");
    let (status, settings) = mock.control("POST", "/settings", &json!({"validate": false}));
    assert_eq!((status, &settings["validate"]), (200, &json!(false)));
    let (status, body) = split(&exchange(mock.port, "POST", "/v1/messages", no_max_tokens));
    assert_eq!(status, 200, "{body}");
    let (_, log) = mock.control("GET", "/requests", &Value::Null);
    let log = log["requests"].as_array().unwrap();
    assert_eq!(log[0]["rejected"], "max_tokens: Field required");
    assert_eq!(log[1]["rejected"], Value::Null);
    let (_, stats) = mock.control("GET", "/stats", &Value::Null);
    assert_eq!(stats["rejected"], 1);
    let (status, _) = mock.control("POST", "/reset", &json!({}));
    assert_eq!(status, 200);
    let (_, stats) = mock.control("GET", "/stats", &Value::Null);
    assert_eq!(stats["total"], 0);
}

#[test]
fn openai_validation_is_off_until_switched_on_and_answers_in_openai_shape() {
    let mock = Mock::start(&[]);
    // An Anthropic request on OpenAI's path: its top-level `system` is not an OpenAI field.
    let anthropic_shaped = r#"{"model":"c","max_tokens":9,"system":"be brief","messages":[{"role":"user","content":"hi"}]}"#;
    let (status, body) = split(&exchange(
        mock.port,
        "POST",
        "/v1/chat/completions",
        anthropic_shaped,
    ));
    assert_eq!(status, 200, "off by default: {body}");
    let (_, settings) = mock.control("GET", "/settings", &Value::Null);
    assert_eq!(
        settings,
        json!({"validate": true, "validate_openai": false})
    );
    let (status, settings) = mock.control("POST", "/settings", &json!({"validate_openai": true}));
    assert_eq!(
        (status, &settings["validate_openai"], &settings["validate"]),
        (200, &json!(true), &json!(true))
    );
    let (status, body) = split(&exchange(
        mock.port,
        "POST",
        "/v1/chat/completions",
        anthropic_shaped,
    ));
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(
        body["error"]["message"],
        "Unrecognized request argument supplied: system"
    );
    let (_, log) = mock.control("GET", "/requests", &Value::Null);
    assert_eq!(
        log["requests"][1]["rejected"],
        "Unrecognized request argument supplied: system"
    );
    // A bad setting changes nothing.
    let (status, _) = mock.control(
        "POST",
        "/settings",
        &json!({"validate": false, "validate_openai": "no"}),
    );
    assert_eq!(status, 400);
    let (_, settings) = mock.control("GET", "/settings", &Value::Null);
    assert_eq!(settings, json!({"validate": true, "validate_openai": true}));
}
