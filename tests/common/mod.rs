#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]
//! Shared integration-test harness: mock providers, a real Envoy (with or without the wasm
//! filter), a tiny blocking HTTP/1.1 client and a few polling helpers.
//!
//! Every test starts its own processes on ports chosen by the OS, so tests can run in
//! parallel threads and several test binaries can run one after another. Every child process
//! is killed by PID in a `Drop` impl (also when the test panics) and every temp dir removed.
//! When a test panics while an [`Envoy`] is alive, the tail of Envoy's log and access log is
//! printed to stderr; set `AI_CB_KEEP_TMP=1` to keep the temp dirs for inspection.
//!
//! ```ignore
//! mod common;
//! use common::*;
//!
//! let openai = Mock::start("openai");
//! let envoy = Envoy::builder()
//!     .filter_config(r#"{"upstreams":[{"name":"openai"}],"routes":[{"upstream":"openai"}]}"#)
//!     .cluster("openai", openai.port())
//!     .route_timeout(Duration::from_millis(500))
//!     .start();
//! let r = post_chat(&envoy.addr(), "gpt-4o-mini", &[]);
//! assert_eq!(r.status, 200);
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ai_circuit_breaker::metrics::{stats_tag_regex, LABEL_NAMES};
use serde_json::Value;

/// Default timeout of [`http`] and friends: a hang fails the test instead of blocking it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`EnvoyBuilder::start`] waits for `GET /ready` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub const ENVOY_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/envoy");
pub const WASM_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/wasm32-wasip1/release/ai_circuit_breaker.wasm"
);

/// The mock provider (`examples/mock-provider`, its own crate in the workspace, so tests get
/// no `CARGO_BIN_EXE_` for it): `target/release/mock-provider`, which the demo and the bench
/// use too. Built here on first use with `cargo build --release -p mock-provider`, a no-op
/// after `make mock`, so a plain `cargo test` never runs a stale mock.
pub fn mock_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "mock-provider"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the mock provider: {e}"));
        assert!(
            status.success(),
            "building the mock provider failed: {status}"
        );
        // CARGO_TARGET_TMPDIR is <target dir>/tmp, wherever the target dir is.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap_or(Path::new("target"));
        target.join("release").join("mock-provider")
    })
}

/// The request header the filter writes and the route reads (`cluster_header`).
pub const ROUTE_HEADER: &str = "x-ai-cb-upstream";

// =============================================================================================
// Polling
// =============================================================================================

/// Polls `cond` every 25 ms until it is true (→ `true`) or `timeout` has passed (→ `false`).
/// `cond` is always evaluated at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(25).min(deadline - now));
    }
}

/// A process-unique, run-unique tag for temp dir names.
fn unique_tag(kind: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("ai-cb-{kind}-{}-{n}-{nanos:08x}", std::process::id())
}

/// Stops a child by PID: SIGTERM, up to `grace` to exit, then SIGKILL; always reaps it.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if !grace.is_zero() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

// =============================================================================================
// HTTP client
// =============================================================================================

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of this header (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body: {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text (UTF-8, lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits `http://host:port/path`, `host:port/path` or `host:port` into `(authority, target)`.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("HTTP://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

/// Sends one request (with `connection: close`) and reads the whole response; panics on any
/// I/O error or after [`DEFAULT_TIMEOUT`]. `url` is `http://127.0.0.1:PORT/path`,
/// `127.0.0.1:PORT/path` or `127.0.0.1:PORT` (path `/`). A `host` header is added unless
/// given; `content-length` is added for a non-empty body or a POST/PUT/PATCH.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    http_timeout(method, url, headers, body, DEFAULT_TIMEOUT)
}

/// [`http`] with an explicit timeout for the whole exchange.
pub fn http_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Response {
    try_http(method, url, headers, body, timeout)
        .unwrap_or_else(|e| panic!("HTTP {method} {url} failed: {e}"))
}

/// [`http`] that returns I/O errors (refused, reset, timed out) instead of panicking.
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let (authority, target) = split_url(url);
    let addr: SocketAddr = authority.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad address {authority}"),
        )
    })?;
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        req.push_str(&format!("host: {authority}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let wants_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if wants_length && !has("content-length") && !has("transfer-encoding") {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if !has("connection") {
        req.push_str("connection: close\r\n");
    }
    req.push_str("\r\n");

    let mut writer = stream.try_clone()?;
    writer.set_write_timeout(Some(remaining(deadline)?))?;
    writer.write_all(req.as_bytes())?;
    writer.write_all(body)?;
    writer.flush()?;

    let mut reader = DeadlineReader { stream, deadline };
    let mut reader = BufReader::new(&mut reader);
    read_response(&mut reader, method == "HEAD")
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let now = Instant::now();
    if now >= deadline {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "HTTP timeout"));
    }
    Ok(deadline - now)
}

/// A reader whose every read is bounded by one overall deadline.
struct DeadlineReader {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream
            .set_read_timeout(Some(remaining(self.deadline)?))?;
        match self.stream.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::new(io::ErrorKind::TimedOut, "HTTP timeout"))
            }
            other => other,
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = (&mut *r).take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("non-UTF-8 header line"))
}

fn read_response(r: &mut impl BufRead, head_only: bool) -> io::Result<Response> {
    loop {
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!("bad status line {status_line:?}")));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue; // interim response (100 Continue): the real one follows
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if head_only || status == 204 || status == 304 {
            // no body
        } else if get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            read_chunked(r, &mut body)?;
        } else if let Some(len) = get("content-length") {
            let len: u64 = len.parse().map_err(|_| bad("bad content-length"))?;
            (&mut *r).take(len).read_to_end(&mut body)?;
            if body.len() as u64 != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body cut at {} of {len} bytes", body.len()),
                ));
            }
        } else {
            r.read_to_end(&mut body)?;
        }
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

fn read_chunked(r: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // trailers, up to the empty line
            while !read_line(r)?.is_empty() {}
            return Ok(());
        }
        let start = body.len();
        (&mut *r).take(size as u64).read_to_end(body)?;
        if body.len() - start != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunk cut short",
            ));
        }
        let crlf = read_line(r)?;
        if !crlf.is_empty() {
            return Err(bad("missing CRLF after chunk"));
        }
    }
}

/// An OpenAI chat completion request body for `model`.
pub fn chat_body(model: &str) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
    })
    .to_string()
}

/// POSTs an OpenAI chat request for `model` to `http://{addr}/v1/chat/completions`.
pub fn post_chat(addr: &str, model: &str, extra_headers: &[(&str, &str)]) -> Response {
    post_chat_path(addr, "/v1/chat/completions", model, extra_headers)
}

/// [`post_chat`] to another path (e.g. an Azure deployment path).
pub fn post_chat_path(
    addr: &str,
    path: &str,
    model: &str,
    extra_headers: &[(&str, &str)],
) -> Response {
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend_from_slice(extra_headers);
    http(
        "POST",
        &format!("{addr}{path}"),
        &headers,
        chat_body(model).as_bytes(),
    )
}

/// Runs `f(0..n)` on up to `concurrency` threads (scoped, bounded) and returns the responses
/// in index order.
pub fn burst<F>(n: usize, concurrency: usize, f: F) -> Vec<Response>
where
    F: Fn(usize) -> Response + Sync,
{
    let workers = concurrency.clamp(1, 64).min(n.max(1));
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<Response>> = (0..n).map(|_| None).collect();
    thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        mine.push((i, f(i)));
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(results) => {
                    for (i, r) in results {
                        out[i] = Some(r);
                    }
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    });
    out.into_iter()
        .map(|r| r.expect("every burst index ran"))
        .collect()
}

// =============================================================================================
// Mock provider
// =============================================================================================

/// A running `mock-provider` (see `examples/mock-provider/README.md`), killed on drop.
pub struct Mock {
    child: Child,
    name: String,
    port: u16,
    control: u16,
}

impl Mock {
    /// Starts a healthy mock named `name` on free ports.
    pub fn start(name: &str) -> Mock {
        Mock::spawn(name, None)
    }

    /// Starts a mock in the given mode (a mode name or a JSON object, as `--mode` takes).
    pub fn start_with_mode(name: &str, mode: &str) -> Mock {
        Mock::spawn(name, Some(mode))
    }

    fn spawn(name: &str, mode: Option<&str>) -> Mock {
        let mut cmd = Command::new(mock_bin());
        cmd.arg("--name").arg(name);
        if let Some(m) = mode {
            cmd.arg("--mode").arg(m);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", mock_bin().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let res = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(res);
            // The mock writes nothing else; dropping the pipe here is fine.
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            other => {
                stop_child(&mut child, Duration::ZERO);
                panic!("mock-provider {name} did not announce its ports: {other:?}");
            }
        };
        let v: Value = match serde_json::from_str(line.trim()) {
            Ok(v) => v,
            Err(e) => {
                stop_child(&mut child, Duration::ZERO);
                panic!("mock-provider {name}: bad port line {line:?}: {e}");
            }
        };
        let port = |k: &str| v[k].as_u64().and_then(|p| u16::try_from(p).ok());
        match (port("listen"), port("control")) {
            (Some(port), Some(control)) => Mock {
                child,
                name: name.to_string(),
                port,
                control,
            },
            _ => {
                stop_child(&mut child, Duration::ZERO);
                panic!("mock-provider {name}: port line without ports: {line:?}");
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data port (what Envoy's cluster points at).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT` of the data listener, to call the mock directly.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn control_port(&self) -> u16 {
        self.control
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn control(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        http(
            method,
            &format!("127.0.0.1:{}{path}", self.control),
            headers,
            body,
        )
    }

    /// `POST /mode`, e.g. `{"mode":"error","status":500}`; panics unless the mock answers 200.
    pub fn set_mode(&self, json: &str) {
        let r = self.control("POST", "/mode", json.as_bytes());
        assert_eq!(
            r.status,
            200,
            "mock {}: POST /mode {json} answered {}: {}",
            self.name,
            r.status,
            r.text()
        );
    }

    /// Shorthand for the common modes: `mode("healthy")`, `mode("refuse")`, ...
    pub fn mode(&self, name: &str) {
        self.set_mode(&serde_json::json!({ "mode": name }).to_string());
    }

    /// `GET /mode`.
    pub fn get_mode(&self) -> Value {
        self.control("GET", "/mode", b"").json()
    }

    /// `GET /stats`: `{"name","mode","mode_config","total","by_mode","by_path"}`.
    pub fn stats(&self) -> Value {
        let r = self.control("GET", "/stats", b"");
        assert_eq!(
            r.status,
            200,
            "mock {}: GET /stats: {}",
            self.name,
            r.text()
        );
        r.json()
    }

    /// Every request that reached the data listener since start or the last [`Mock::reset`].
    pub fn hits(&self) -> u64 {
        self.stats()["total"].as_u64().unwrap_or(0)
    }

    /// Requests to exactly this path (query string excluded).
    pub fn hits_on(&self, path: &str) -> u64 {
        self.stats()["by_path"][path].as_u64().unwrap_or(0)
    }

    /// The logged requests (last 200), oldest first.
    pub fn requests(&self) -> Vec<Value> {
        self.requests_at(None)
    }

    /// The logged requests to exactly `path`.
    pub fn requests_on(&self, path: &str) -> Vec<Value> {
        self.requests_at(Some(path))
    }

    fn requests_at(&self, path: Option<&str>) -> Vec<Value> {
        let target = match path {
            Some(p) => format!("/requests?path={}", percent_encode(p)),
            None => "/requests".to_string(),
        };
        let r = self.control("GET", &target, b"");
        assert_eq!(
            r.status,
            200,
            "mock {}: GET {target}: {}",
            self.name,
            r.text()
        );
        match r.json()["requests"].take() {
            Value::Array(a) => a,
            other => panic!("mock {}: /requests without a list: {other}", self.name),
        }
    }

    /// `POST /reset`: zero the counters and clear the request log.
    pub fn reset(&self) {
        let r = self.control("POST", "/reset", b"");
        assert_eq!(
            r.status,
            200,
            "mock {}: POST /reset: {}",
            self.name,
            r.text()
        );
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::ZERO);
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// =============================================================================================
// Envoy
// =============================================================================================

/// Options for one Envoy instance; see [`Envoy::builder`].
#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    pub concurrency: u32,
    /// The filter's JSON configuration; `None` runs a bare Envoy with no wasm filter, whose
    /// route sends everything to the first cluster.
    pub filter_config: Option<String>,
    pub clusters: Vec<(String, u16)>,
    pub route_timeout: Duration,
    pub allow_on_headers_stop_iteration: bool,
    /// `FAIL_OPEN`, `FAIL_CLOSED` or `FAIL_RELOAD`.
    pub failure_policy: String,
    pub ready_timeout: Duration,
    /// The wasm module; [`WASM_PATH`] (the release build of this crate) by default.
    pub wasm_path: String,
    /// A complete bootstrap to run instead of the rendered one (all other options except
    /// `concurrency` and `ready_timeout` are then ignored). It must bind its admin and a
    /// listener named `ingress`, normally on port 0. Envoy runs in the repository root, so
    /// relative paths (the wasm file) resolve as with `make run`.
    pub bootstrap: Option<String>,
}

impl Default for EnvoyBuilder {
    fn default() -> Self {
        EnvoyBuilder {
            concurrency: 1,
            filter_config: None,
            clusters: Vec::new(),
            route_timeout: Duration::from_secs(1),
            allow_on_headers_stop_iteration: true,
            failure_policy: "FAIL_OPEN".to_string(),
            ready_timeout: READY_TIMEOUT,
            // AI_CB_WASM runs the suite against another build of the module.
            wasm_path: std::env::var("AI_CB_WASM").unwrap_or_else(|_| WASM_PATH.to_string()),
            bootstrap: None,
        }
    }
}

impl EnvoyBuilder {
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Loads the wasm filter with this JSON configuration.
    pub fn filter_config(mut self, json: impl Into<String>) -> Self {
        self.filter_config = Some(json.into());
        self
    }

    /// No wasm filter (the default).
    pub fn no_filter(mut self) -> Self {
        self.filter_config = None;
        self
    }

    /// Adds a STATIC cluster `name` → `127.0.0.1:port` (HTTP/1.1, connect_timeout 0.25 s).
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_string(), port));
        self
    }

    pub fn clusters(mut self, clusters: &[(&str, u16)]) -> Self {
        for (n, p) in clusters {
            self.clusters.push(((*n).to_string(), *p));
        }
        self
    }

    /// The route's timeout (default 1 s); sub-second values are fine.
    pub fn route_timeout(mut self, t: Duration) -> Self {
        self.route_timeout = t;
        self
    }

    pub fn allow_on_headers_stop_iteration(mut self, on: bool) -> Self {
        self.allow_on_headers_stop_iteration = on;
        self
    }

    /// `"FAIL_OPEN"` (default), `"FAIL_CLOSED"` or `"FAIL_RELOAD"`.
    pub fn failure_policy(mut self, policy: &str) -> Self {
        self.failure_policy = policy.to_string();
        self
    }

    pub fn ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    /// Runs this bootstrap YAML instead of rendering one (see [`EnvoyBuilder::bootstrap`]).
    pub fn bootstrap_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.bootstrap = Some(yaml.into());
        self
    }

    /// Loads another wasm module than [`WASM_PATH`].
    pub fn wasm_path(mut self, path: &str) -> Self {
        self.wasm_path = path.to_string();
        self
    }

    /// The Envoy bootstrap YAML these options produce.
    pub fn render(&self, access_log_path: &Path) -> String {
        render_bootstrap(self, access_log_path)
    }

    /// Starts Envoy and waits until it is ready; panics with Envoy's log otherwise.
    pub fn start(self) -> Envoy {
        match self.try_start() {
            Ok(e) => e,
            Err(msg) => panic!("{msg}"),
        }
    }

    /// Starts Envoy; `Err` (with Envoy's log) when it exits or is not ready in time.
    pub fn try_start(self) -> Result<Envoy, String> {
        Envoy::try_start(self)
    }
}

/// A running Envoy. Dropping it stops the process (SIGTERM, then SIGKILL) and removes its
/// temp dir (config, admin address file, logs).
pub struct Envoy {
    child: Option<Child>,
    dir: PathBuf,
    admin: String,
    listener: String,
    pub options: EnvoyBuilder,
}

/// A YAML double-quoted string (JSON string syntax is valid YAML).
fn yq(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A protobuf Duration in YAML/JSON form, e.g. `"0.300000000s"`.
fn pb_duration(d: Duration) -> String {
    format!("\"{}.{:09}s\"", d.as_secs(), d.subsec_nanos())
}

fn render_bootstrap(o: &EnvoyBuilder, access_log: &Path) -> String {
    let mut y = String::new();
    y.push_str("# Rendered by tests/common/mod.rs\n");
    y.push_str("admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 0 }\n");
    // Histograms reach /stats/prometheus only on a stats flush (default 5 s): flush often.
    y.push_str("stats_flush_interval: 0.5s\n");
    y.push_str("stats_config:\n  stats_tags:\n");
    for label in LABEL_NAMES {
        y.push_str(&format!(
            "  - tag_name: {}\n    regex: {}\n",
            yq(label),
            yq(&stats_tag_regex(label))
        ));
    }
    y.push_str("static_resources:\n  listeners:\n  - name: ingress\n");
    y.push_str("    address:\n      socket_address: { address: 127.0.0.1, port_value: 0 }\n");
    y.push_str("    filter_chains:\n    - filters:\n      - name: envoy.filters.network.http_connection_manager\n");
    y.push_str("        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n");
    y.push_str("          stat_prefix: ingress_http\n          codec_type: AUTO\n");
    y.push_str("          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n");
    y.push_str("              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n");
    y.push_str(&format!(
        "              path: {}\n",
        yq(&access_log.display().to_string())
    ));
    y.push_str("              log_format:\n                text_format_source:\n                  inline_string: ");
    y.push_str(&yq("[%START_TIME%] \"%REQ(:METHOD)% %REQ(:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% cluster=%UPSTREAM_CLUSTER% route_header=%REQ(X-AI-CB-UPSTREAM)% served_by=%RESP(X-AI-CB-SERVED-BY)% %DURATION%ms\n"));
    y.push('\n');
    y.push_str("          route_config:\n            name: local\n            virtual_hosts:\n            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: { prefix: \"/\" }\n                route:\n");
    match (&o.filter_config, o.clusters.first()) {
        (Some(_), _) => y.push_str(&format!(
            "                  cluster_header: {}\n",
            yq(ROUTE_HEADER)
        )),
        (None, Some((first, _))) => {
            y.push_str(&format!("                  cluster: {}\n", yq(first)))
        }
        (None, None) => panic!("a bare Envoy (no filter_config) needs at least one cluster"),
    }
    y.push_str(&format!(
        "                  timeout: {}\n",
        pb_duration(o.route_timeout)
    ));
    y.push_str("          http_filters:\n");
    if let Some(cfg) = &o.filter_config {
        y.push_str("          - name: envoy.filters.http.wasm\n            typed_config:\n");
        y.push_str("              \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n");
        y.push_str("              config:\n                name: ai_circuit_breaker\n                root_id: ai_circuit_breaker\n");
        y.push_str(&format!(
            "                allow_on_headers_stop_iteration: {}\n",
            o.allow_on_headers_stop_iteration
        ));
        y.push_str(&format!(
            "                failure_policy: {}\n",
            o.failure_policy
        ));
        y.push_str("                vm_config:\n                  vm_id: ai_circuit_breaker\n                  runtime: envoy.wasm.runtime.v8\n");
        y.push_str(&format!(
            "                  code: {{ local: {{ filename: {} }} }}\n",
            yq(&o.wasm_path)
        ));
        y.push_str("                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n");
        y.push_str(&format!("                  value: {}\n", yq(cfg)));
    }
    y.push_str("          - name: envoy.filters.http.router\n            typed_config:\n");
    y.push_str("              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n");
    if o.clusters.is_empty() {
        y.push_str("  clusters: []\n");
    } else {
        y.push_str("  clusters:\n");
    }
    for (name, port) in &o.clusters {
        y.push_str(&format!(
            "  - name: {n}\n    type: STATIC\n    connect_timeout: 0.25s\n    lb_policy: ROUND_ROBIN\n    load_assignment:\n      cluster_name: {n}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n",
            n = yq(name)
        ));
    }
    y
}

impl Envoy {
    /// A builder with the defaults: concurrency 1, no filter, route timeout 1 s,
    /// `allow_on_headers_stop_iteration: true`, `FAIL_OPEN`.
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder::default()
    }

    /// Starts Envoy with these options. `Ok` once `GET /ready` answers 200; `Err` with the
    /// log if Envoy exits first or is not ready within `ready_timeout`. Panics (before
    /// starting anything) if Envoy or the wasm file is missing.
    pub fn try_start(options: EnvoyBuilder) -> Result<Envoy, String> {
        assert!(
            Path::new(ENVOY_BIN).exists(),
            "{ENVOY_BIN} is missing: run `make envoy` first"
        );
        let custom_wasm = options
            .bootstrap
            .as_deref()
            .is_some_and(|b| b.contains("envoy.filters.http.wasm"));
        if options.filter_config.is_some() || custom_wasm {
            let wasm = if custom_wasm {
                WASM_PATH
            } else {
                &options.wasm_path
            };
            assert!(
                Path::new(wasm).exists(),
                "{wasm} is missing: run `make build` first"
            );
        }
        let dir = std::env::temp_dir().join(unique_tag("envoy"));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let config_path = dir.join("envoy.yaml");
        let admin_path = dir.join("admin.txt");
        let log_path = dir.join("envoy.log");
        let access_path = dir.join("access.log");
        let yaml = match &options.bootstrap {
            Some(b) => b.clone(),
            None => render_bootstrap(&options, &access_path),
        };
        fs::write(&config_path, yaml)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let child = Command::new(ENVOY_BIN)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            // No hot restart, hence no shared memory and no base id: any number of Envoys
            // can run at once.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            // Access log lines reach the file within ~100 ms (the default is 10 s).
            .args(["--file-flush-interval-msec", "100"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ENVOY_BIN}: {e}"));
        let mut envoy = Envoy {
            child: Some(child),
            dir,
            admin: String::new(),
            listener: String::new(),
            options,
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(why) => Err(format!(
                "Envoy did not become ready: {why}\n--- envoy.log ---\n{}",
                envoy.log()
            )),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let admin_path = self.dir.join("admin.txt");
        let mut last = String::from("no admin address yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("envoy exited with {status}"));
                }
            }
            if self.admin.is_empty() {
                if let Ok(a) = fs::read_to_string(&admin_path) {
                    let a = a.trim();
                    if !a.is_empty() && !a.ends_with(":0") {
                        self.admin = a.to_string();
                    }
                }
            }
            if !self.admin.is_empty() {
                let url = format!("{}/ready", self.admin);
                match try_http("GET", &url, &[], b"", Duration::from_secs(2)) {
                    Ok(r) if r.status == 200 => match self.find_listener() {
                        Ok(l) => {
                            self.listener = l;
                            return Ok(());
                        }
                        Err(e) => last = e,
                    },
                    Ok(r) => last = format!("/ready: {} {}", r.status, r.text().trim()),
                    Err(e) => last = format!("/ready: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {:?} ({last})",
                    self.options.ready_timeout
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn find_listener(&self) -> Result<String, String> {
        let r = try_http(
            "GET",
            &format!("{}/listeners?format=json", self.admin),
            &[],
            b"",
            Duration::from_secs(2),
        )
        .map_err(|e| format!("/listeners: {e}"))?;
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("/listeners: {e}: {}", r.text()))?;
        v["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == "ingress")
            .and_then(|l| {
                let sa = &l["local_address"]["socket_address"];
                let port = sa["port_value"].as_u64()?;
                (port != 0)
                    .then(|| format!("{}:{port}", sa["address"].as_str().unwrap_or("127.0.0.1")))
            })
            .ok_or_else(|| format!("no bound ingress listener in {}", r.text()))
    }

    /// `127.0.0.1:PORT` of the ingress listener.
    pub fn addr(&self) -> String {
        self.listener.clone()
    }

    /// `127.0.0.1:PORT` of the admin API.
    pub fn admin(&self) -> String {
        self.admin.clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temp dir holding `envoy.yaml`, `envoy.log`, `access.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the Envoy process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// A GET on the admin API; panics unless it answers 200.
    pub fn admin_get(&self, path: &str) -> String {
        let r = http("GET", &format!("{}{path}", self.admin), &[], b"");
        assert_eq!(r.status, 200, "admin GET {path}: {} {}", r.status, r.text());
        r.text()
    }

    /// A POST on the admin API (e.g. `/reset_counters`); returns the response.
    pub fn admin_post(&self, path: &str) -> Response {
        http("POST", &format!("{}{path}", self.admin), &[], b"")
    }

    /// `GET /stats/prometheus`.
    pub fn stats_prometheus(&self) -> String {
        self.admin_get("/stats/prometheus")
    }

    /// All samples of `/stats/prometheus` as `(name, labels, value)`.
    pub fn samples(&self) -> Vec<Sample> {
        parse_prometheus(&self.stats_prometheus())
    }

    /// The value of the series `name` whose label set is exactly `labels` (order does not
    /// matter). For a histogram `name`, its `name_count` is used. `None` when absent.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        find_metric(&self.samples(), name, labels)
    }

    /// The sum over every series `name` (or `name_count`) whose labels include `labels`.
    /// `None` when there is no such series.
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sum_metric(&self.samples(), name, labels)
    }

    /// Polls [`Envoy::metric`] until `pred(value)` holds; returns the last value seen.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        timeout: Duration,
        pred: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        let mut last = None;
        wait_until(timeout, || {
            last = self.metric(name, labels);
            last.is_some_and(&pred)
        });
        last
    }

    /// Envoy's log so far (stderr: warnings and the filter's `wasm` log lines).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// The access log so far: one line per request with code, flags, code details, cluster.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Stops Envoy now (SIGTERM, then SIGKILL after 2 s). The temp dir stays until drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(2));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "--- envoy.log tail ({}) ---\n{}\n--- access.log tail ---\n{}",
                self.dir.display(),
                tail(&self.log(), 60),
                tail(&self.access_log(), 30)
            );
        }
        if std::env::var_os("AI_CB_KEEP_TMP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// =============================================================================================
// Prometheus text parsing
// =============================================================================================

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    end = i + 1;
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                other => val.push(other),
                            },
                            '"' => break,
                            other => val.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), val);
                }
                other => key.push(other),
            }
        }
        rest = &r[end..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn labels_equal(sample: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    sample.len() == want.len()
        && want
            .iter()
            .all(|(k, v)| sample.get(*k).is_some_and(|s| s == v))
}

fn labels_include(sample: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| sample.get(*k).is_some_and(|s| s == v))
}

/// The value of series `name` (or `name_count`) with exactly `labels`.
pub fn find_metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let count = format!("{name}_count");
    [name, count.as_str()].iter().find_map(|n| {
        samples
            .iter()
            .find(|s| s.name == *n && labels_equal(&s.labels, labels))
            .map(|s| s.value)
    })
}

/// The sum of series `name` (or `name_count`) whose labels include `labels`.
pub fn sum_metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let count = format!("{name}_count");
    [name, count.as_str()].iter().find_map(|n| {
        let matching: Vec<f64> = samples
            .iter()
            .filter(|s| s.name == *n && labels_include(&s.labels, labels))
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    })
}

// =============================================================================================
// Provider stack
// =============================================================================================

/// The health path the stack configs use.
pub const HEALTH_PATH: &str = "/health/circuit-breakers";

/// The providers the integration tests put behind Envoy, on free ports: `openai`,
/// `anthropic`, `azure` (cluster `azure-openai`) and a `webhook` receiver for alerts.
pub struct Stack {
    pub openai: Mock,
    pub anthropic: Mock,
    pub azure: Mock,
    pub webhook: Mock,
    pub envoy: Envoy,
}

impl Stack {
    /// Starts the mocks, then Envoy with the filter configured by `filter_config` in front.
    pub fn start(filter_config: &Value, concurrency: u32, route_timeout: Duration) -> Stack {
        let openai = Mock::start("openai");
        let anthropic = Mock::start("anthropic");
        let azure = Mock::start("azure");
        let webhook = Mock::start("webhook");
        let envoy = Envoy::builder()
            .concurrency(concurrency)
            .filter_config(filter_config.to_string())
            .clusters(&[
                ("openai", openai.port()),
                ("anthropic", anthropic.port()),
                ("azure-openai", azure.port()),
                ("webhook", webhook.port()),
            ])
            .route_timeout(route_timeout)
            .start();
        Stack {
            openai,
            anthropic,
            azure,
            webhook,
            envoy,
        }
    }

    /// One OpenAI chat completion through Envoy.
    pub fn chat(&self) -> Response {
        post_chat(&self.envoy.addr(), "gpt-4o-mini", &[])
    }

    /// The filter's health JSON (the config must set `health_path` to [`HEALTH_PATH`]).
    pub fn health(&self) -> Value {
        let r = http(
            "GET",
            &format!("{}{HEALTH_PATH}", self.envoy.addr()),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// A breaker's state as the health endpoint reports it.
    pub fn state(&self, upstream: &str) -> String {
        self.health()["providers"][upstream]
            .as_str()
            .unwrap_or("?")
            .to_string()
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.envoy.metric(name, labels)
    }
}

/// The upstream the filter says served a response.
pub fn served_by(r: &Response) -> &str {
    r.header("x-ai-cb-served-by").unwrap_or("<none>")
}
