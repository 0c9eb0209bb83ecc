//! The tests' HTTP client: [`ureq`] (blocking, HTTP/1.1) set up so that what a test sends and
//! sees is what goes over the wire, plus a streaming reader and one raw-TCP helper.
//!
//! The agent is configured not to act behind the tests' back:
//! - no redirects followed (a 3xx is returned as is), no retries (ureq 3 has none);
//! - no proxy from `HTTP_PROXY`/`ALL_PROXY` (ureq reads them by default);
//! - no automatic `user-agent`, `accept` or `accept-encoding` header (the crate is built
//!   without gzip/brotli, so bodies are never decoded either), no cookies;
//! - 4xx/5xx are responses, not errors;
//! - one connection per request (`connection: close` unless the test sets `connection`
//!   itself, and no idle pool), as a fresh client would do.
//!
//! What ureq still adds: `host` (unless given) and the body framing (`content-length`, or
//! `transfer-encoding: chunked` when the test sets that header). A request whose bytes must be
//! exact, such as a body framed in chunks chosen by the test or a malformed request, goes
//! through [`raw_http`] instead.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use ureq::http::{self, HeaderMap};
use ureq::Agent;

/// Default timeout of [`http`] and friends: a hang fails the test instead of blocking it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased; repeated headers are kept, each value in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Every value of this header (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
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

fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn all_headers<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn header_list(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes());
            (k.as_str().to_string(), v.trim().to_string())
        })
        .collect()
}

fn agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent("")
            .accept("")
            .accept_encoding("")
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .allow_non_standard_methods(true)
            .build()
            .new_agent()
    })
}

/// `http://host:port/path` for `http://…`, `host:port/path` or `host:port` (path `/`).
fn full_url(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("HTTP://"))
        .unwrap_or(url);
    if rest.contains('/') {
        format!("http://{rest}")
    } else {
        format!("http://{rest}/")
    }
}

fn to_io(e: ureq::Error) -> io::Error {
    match e {
        ureq::Error::Timeout(t) => io::Error::new(io::ErrorKind::TimedOut, format!("timeout: {t}")),
        other => other.into_io(),
    }
}

/// Sends one request and returns the response head with the body still unread.
fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<http::Response<ureq::Body>> {
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut req = http::Request::builder().method(method).uri(full_url(url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !has("connection") {
        req = req.header("connection", "close");
    }
    let bad = |e: http::Error| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
    // As the tests always did: a body, or a method that has one, is sent with its length;
    // a GET, HEAD or DELETE without a body has no framing header at all.
    let with_body = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    let agent = agent();
    let result = if with_body {
        let req = req.body(body).map_err(bad)?;
        let req = agent
            .configure_request(req)
            .timeout_global(Some(timeout))
            .build();
        agent.run(req)
    } else {
        let req = req.body(()).map_err(bad)?;
        let req = agent
            .configure_request(req)
            .timeout_global(Some(timeout))
            .build();
        agent.run(req)
    };
    result.map_err(to_io)
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
    let (parts, mut body) = send(method, url, headers, body, timeout)?.into_parts();
    let body = body
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .map_err(to_io)?;
    Ok(Response {
        status: parts.status.as_u16(),
        headers: header_list(&parts.headers),
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

/// What one read of a streamed body returned, and when.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Time since the request was sent.
    pub at: Duration,
    pub data: Vec<u8>,
}

/// One server-sent event: the block of lines up to a blank line.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// Time since the request was sent, when the event's last byte arrived.
    pub at: Duration,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (`[DONE]` for OpenAI's last event).
    pub data: String,
    /// The block as received, without its terminating blank line.
    pub raw: String,
}

impl SseEvent {
    /// `data` as JSON (`None` when it is not, e.g. `[DONE]`).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// A response whose body is read as it arrives: [`StreamingResponse::chunks`] yields each
/// read with its arrival time, [`StreamingResponse::events`] the server-sent events.
pub struct StreamingResponse {
    pub status: u16,
    /// As [`Response::headers`].
    pub headers: Vec<(String, String)>,
    sent: Instant,
    reader: ureq::BodyReader<'static>,
}

impl std::fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Sends one request and returns as soon as the response head has arrived. `timeout` bounds
/// the whole exchange, body included (a stalled stream then fails with `TimedOut`).
pub fn http_stream(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<StreamingResponse> {
    let sent = Instant::now();
    let (parts, body) = send(method, url, headers, body, timeout)?.into_parts();
    Ok(StreamingResponse {
        status: parts.status.as_u16(),
        headers: header_list(&parts.headers),
        sent,
        reader: body.into_with_config().limit(u64::MAX).reader(),
    })
}

impl StreamingResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Every value of this header (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
    }

    /// The next piece of the (de-chunked) body as it arrived; `None` at its end. A piece is
    /// what one read returned: usually one write of the server, but the network and Envoy
    /// may join or split writes, so assert on [`StreamingResponse::events`] for SSE.
    pub fn next_chunk(&mut self) -> Option<io::Result<Chunk>> {
        let mut buf = vec![0u8; 64 * 1024];
        match self.reader.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(Ok(Chunk {
                    at: self.sent.elapsed(),
                    data: buf,
                }))
            }
            Err(e) => Some(Err(e)),
        }
    }

    /// The body as an iterator of [`Chunk`]s; an error ends it (after being yielded).
    pub fn chunks(self) -> Chunks {
        Chunks {
            inner: self,
            done: false,
        }
    }

    /// The body as an iterator of server-sent events (blocks separated by a blank line; CRLF
    /// or LF line ends). A trailing block without its blank line is yielded at the end.
    pub fn events(self) -> SseEvents {
        SseEvents {
            chunks: self.chunks(),
            pending: Vec::new(),
            at: Duration::ZERO,
            ended: false,
        }
    }

    /// Reads the rest of the body into a [`Response`].
    pub fn into_response(self) -> io::Result<Response> {
        let mut body = Vec::new();
        let StreamingResponse {
            status,
            headers,
            mut reader,
            ..
        } = self;
        reader.read_to_end(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// See [`StreamingResponse::chunks`].
pub struct Chunks {
    inner: StreamingResponse,
    done: bool,
}

impl Iterator for Chunks {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.inner.next_chunk();
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}

/// See [`StreamingResponse::events`].
pub struct SseEvents {
    chunks: Chunks,
    pending: Vec<u8>,
    at: Duration,
    ended: bool,
}

impl SseEvents {
    /// Takes one complete block off `pending`, if there is one (or the rest, at the end).
    /// Works on bytes, so a UTF-8 sequence or a CRLF split across reads is no problem.
    fn take_block(&mut self) -> Option<SseEvent> {
        loop {
            let (block_len, consumed) = match blank_line(&self.pending) {
                Some(found) => found,
                None if self.ended && !self.pending.is_empty() => {
                    (self.pending.len(), self.pending.len())
                }
                None => return None,
            };
            let block: Vec<u8> = self.pending.drain(..consumed).take(block_len).collect();
            let raw = String::from_utf8_lossy(&block)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if !raw.is_empty() {
                return Some(parse_sse_block(raw, self.at));
            }
        }
    }
}

/// The first blank line in `buf`: `(length of the block before it, bytes up to its end)`.
fn blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for (i, b) in buf.iter().enumerate() {
        if *b == b'\n' {
            if buf[line_start..i].iter().all(|c| *c == b'\r') {
                return Some((line_start, i + 1));
            }
            line_start = i + 1;
        }
    }
    None
}

fn parse_sse_block(raw: String, at: Duration) -> SseEvent {
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in raw.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {} // comments (`:`), `id`, `retry`
        }
    }
    let data = data.join("\n");
    SseEvent {
        at,
        event,
        data,
        raw,
    }
}

impl Iterator for SseEvents {
    type Item = io::Result<SseEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(ev) = self.take_block() {
                return Some(Ok(ev));
            }
            if self.ended {
                return None;
            }
            match self.chunks.next() {
                Some(Ok(c)) => {
                    self.at = c.at;
                    self.pending.extend_from_slice(&c.data);
                }
                Some(Err(e)) => {
                    self.ended = true;
                    return Some(Err(e));
                }
                None => self.ended = true,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw requests
// ---------------------------------------------------------------------------------------------

/// Sends `request` byte for byte to `addr` (`127.0.0.1:PORT`) and reads until the server
/// closes the connection (so `request` should carry `connection: close`) or `timeout`.
/// Only for requests the client crate would not send as written: bodies framed in chunks the
/// test chooses, malformed requests. The head is parsed with `httparse`; `body` holds the
/// bytes after it exactly as received (still chunk-framed if the response is chunked).
pub fn raw_http(addr: &str, request: &[u8], timeout: Duration) -> io::Result<Response> {
    raw_http_paced(addr, &[request], Duration::ZERO, timeout)
}

/// Like [`raw_http`], but writes `parts` one after another with `pause` between them: a
/// slow client (e.g. the head, then the body 2 s later).
pub fn raw_http_paced(
    addr: &str,
    parts: &[&[u8]],
    pause: Duration,
    timeout: Duration,
) -> io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let sock = addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {addr}"))
    })?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        stream.write_all(part)?;
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "raw HTTP timeout"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "raw HTTP timeout"))
            }
            Err(e) => return Err(e),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let len = match head.parse(&received) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(bad("response head cut short".into())),
        Err(e) => return Err(bad(format!("bad response head: {e}"))),
    };
    Ok(Response {
        status: head.code.unwrap_or(0),
        headers: head
            .headers
            .iter()
            .map(|h| {
                let v = String::from_utf8_lossy(h.value);
                (h.name.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect(),
        body: received[len..].to_vec(),
    })
}

/// POSTs a body in exactly these chunks (`transfer-encoding: chunked`, no `content-length`),
/// all in one write after the head, through [`raw_http`]; panics on an I/O error.
pub fn post_chunked(addr: &str, path: &str, chunks: &[&str]) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    raw_http(addr, req.as_bytes(), DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("chunked POST {addr}{path} failed: {e}"))
}
