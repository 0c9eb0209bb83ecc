//! HTTP/1.1 requests in: the head parsed by `httparse`, the body read by `content-length` or
//! `transfer-encoding: chunked` (chunk sizes and trailers also through `httparse`), with
//! the limits a test server needs. Generic over `Read`, so it is tested on byte slices.
//! Responses are not written here: see `reply`, which must keep byte-level control.

use std::io::{self, Read};

/// Request heads are capped at 64 KiB and 128 header fields (431 beyond).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 128;
/// Request bodies are capped at 8 MiB (413 beyond).
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// A chunk-size line (with extensions) longer than this is malformed.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const READ_SIZE: usize = 16 * 1024;

pub struct Request {
    pub method: String,
    /// The request target as sent, query string included.
    pub target: String,
    /// Names are lowercased; values are UTF-8-lossy and trimmed.
    pub headers: Vec<(String, String)>,
    pub http10: bool,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        match self.target.split_once('?') {
            Some((path, _)) => path,
            None => &self.target,
        }
    }

    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    fn expects_continue(&self) -> bool {
        !self.http10
            && self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// Whether the connection stays open after the response.
    pub fn persist(&self) -> Persist {
        let mut close = false;
        let mut keep_alive = false;
        for (name, value) in &self.headers {
            if name == "connection" {
                for token in value.split(',').map(str::trim) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        match (close, self.http10, keep_alive) {
            (true, _, _) | (false, true, false) => Persist::Close,
            (false, true, true) => Persist::KeepAlive10,
            (false, false, _) => Persist::KeepAlive,
        }
    }
}

/// How the connection continues after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive.
    KeepAlive10,
    Close,
}

impl Persist {
    pub fn keep_alive(self) -> bool {
        self != Persist::Close
    }

    /// The `connection` header line the response needs, if any.
    pub fn header(self) -> &'static [u8] {
        match self {
            Persist::KeepAlive => b"",
            Persist::KeepAlive10 => b"connection: keep-alive\r\n",
            Persist::Close => b"connection: close\r\n",
        }
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection before sending a byte of a new request.
    Closed,
    Bad(&'static str),
    HeadTooLarge,
    BodyTooLarge,
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl ReadError {
    /// The status and message a malformed request is answered with, if it gets an answer.
    pub fn status(&self) -> Option<(u16, &'static str)> {
        match self {
            ReadError::HeadTooLarge => Some((431, "request head too large")),
            ReadError::BodyTooLarge => Some((413, "request body too large")),
            ReadError::Bad(message) => Some((400, message)),
            ReadError::Closed | ReadError::Io(_) => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
}

/// Reads requests off one connection; bytes read past a request stay buffered for the
/// next one (pipelining).
pub struct RequestReader<R> {
    source: R,
    /// Zeroed once: `fill` reads into its free tail, so no byte is cleared per request.
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<R: Read> RequestReader<R> {
    pub fn new(source: R) -> Self {
        RequestReader {
            source,
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
        }
    }

    /// Reads one request; `before_body` runs when the client waits for `100 Continue`.
    pub fn read_request(
        &mut self,
        mut before_body: impl FnMut() -> io::Result<()>,
    ) -> Result<Request, ReadError> {
        let mut request = self.read_head()?;
        let kind = body_kind(&request.headers)?;
        if kind != BodyKind::Empty && request.expects_continue() {
            before_body()?;
        }
        request.body = match kind {
            BodyKind::Empty => Vec::new(),
            BodyKind::Length(n) => self.take_exactly(n)?,
            BodyKind::Chunked => self.read_chunked()?,
        };
        Ok(request)
    }

    fn buffered(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Reads more bytes after the buffered ones; `Ok(false)` at end of stream. The buffer
    /// is compacted when its tail is full, and doubled when it is full of unconsumed bytes
    /// (a head up to `MAX_HEAD_BYTES`).
    fn fill(&mut self) -> io::Result<bool> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        loop {
            let free = self.buf.get_mut(self.end..).unwrap_or_default();
            match self.source.read(free) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn read_head(&mut self) -> Result<Request, ReadError> {
        loop {
            if let Some((request, len)) = parse_head(self.buffered())? {
                self.consume(len);
                return Ok(request);
            }
            if self.buffered().len() >= MAX_HEAD_BYTES {
                return Err(ReadError::HeadTooLarge);
            }
            let had_bytes = !self.buffered().is_empty();
            if !self.fill()? {
                return Err(if had_bytes {
                    unexpected_eof()
                } else {
                    ReadError::Closed
                });
            }
        }
    }

    /// The next `n` bytes: the buffered ones, then straight from the source.
    fn take_exactly(&mut self, n: u64) -> Result<Vec<u8>, ReadError> {
        let n = usize::try_from(n).map_err(|_| ReadError::BodyTooLarge)?;
        let from_buffer = n.min(self.buffered().len());
        let mut out = Vec::with_capacity(n);
        out.extend_from_slice(self.buffered().get(..from_buffer).unwrap_or_default());
        self.consume(from_buffer);
        if from_buffer < n {
            out.resize(n, 0);
            let rest = out.get_mut(from_buffer..).unwrap_or_default();
            self.source.read_exact(rest).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    unexpected_eof()
                } else {
                    ReadError::Io(e)
                }
            })?;
        }
        Ok(out)
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let size = loop {
                match httparse::parse_chunk_size(self.buffered()) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.consume(len);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.buffered().len() < MAX_CHUNK_LINE => {
                        if !self.fill()? {
                            return Err(unexpected_eof());
                        }
                    }
                    Ok(httparse::Status::Partial) | Err(_) => {
                        return Err(ReadError::Bad("invalid chunk size"))
                    }
                }
            };
            if size == 0 {
                break;
            }
            if (body.len() as u64).saturating_add(size) > MAX_BODY_BYTES {
                return Err(ReadError::BodyTooLarge);
            }
            body.extend(self.take_exactly(size)?);
            if self.take_exactly(2)? != b"\r\n" {
                return Err(ReadError::Bad("missing CRLF after chunk data"));
            }
        }
        // Trailer fields, ignored, up to the final empty line.
        loop {
            let mut trailers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(self.buffered(), &mut trailers) {
                Ok(httparse::Status::Complete((len, _))) => {
                    self.consume(len);
                    return Ok(body);
                }
                Ok(httparse::Status::Partial) if self.buffered().len() < MAX_HEAD_BYTES => {
                    if !self.fill()? {
                        return Err(unexpected_eof());
                    }
                }
                Ok(httparse::Status::Partial) => return Err(ReadError::HeadTooLarge),
                Err(_) => return Err(ReadError::Bad("invalid trailer")),
            }
        }
    }
}

fn unexpected_eof() -> ReadError {
    ReadError::Io(io::ErrorKind::UnexpectedEof.into())
}

/// A complete head at the start of `buf` and its length, or `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(ReadError::Bad("unsupported HTTP version")),
        Err(httparse::Error::Token) => return Err(ReadError::Bad("invalid method")),
        Err(httparse::Error::HeaderName) => return Err(ReadError::Bad("invalid header name")),
        Err(httparse::Error::HeaderValue) => return Err(ReadError::Bad("invalid header value")),
        Err(_) => return Err(ReadError::Bad("malformed request head")),
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(ReadError::Bad("malformed request line"));
    };
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(h.value);
            (h.name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        http10: version == 0,
        body: Vec::new(),
    };
    Ok(Some((request, len)))
}

fn body_kind(headers: &[(String, String)]) -> Result<BodyKind, ReadError> {
    let mut transfer_encoding = None;
    let mut length: Option<u64> = None;
    for (name, value) in headers {
        match name.as_str() {
            "transfer-encoding" => transfer_encoding = Some(value.as_str()),
            "content-length" => {
                for part in value.split(',') {
                    let part = part.trim();
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(ReadError::Bad("invalid content-length"));
                    }
                    let n = part.parse().map_err(|_| ReadError::BodyTooLarge)?;
                    if length.is_some_and(|previous| previous != n) {
                        return Err(ReadError::Bad("conflicting content-length headers"));
                    }
                    length = Some(n);
                }
            }
            _ => {}
        }
    }
    if let Some(codings) = transfer_encoding {
        let last = codings.rsplit(',').next().unwrap_or_default().trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(BodyKind::Chunked)
        } else {
            Err(ReadError::Bad("unsupported transfer-encoding"))
        };
    }
    match length {
        Some(n) if n > MAX_BODY_BYTES => Err(ReadError::BodyTooLarge),
        Some(0) | None => Ok(BodyKind::Empty),
        Some(n) => Ok(BodyKind::Length(n)),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A source that hands out its bytes `step` at a time, as a slow client would.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(self.data.len()).min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn read_all(data: &[u8], step: usize) -> Vec<Result<Request, ReadError>> {
        let mut reader = RequestReader::new(Trickle { data, step });
        let mut out = Vec::new();
        for _ in 0..16 {
            match reader.read_request(|| Ok(())) {
                Err(ReadError::Closed) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
                ok => out.push(ok),
            }
        }
        out
    }

    fn one(data: &[u8]) -> Result<Request, ReadError> {
        let mut reader = RequestReader::new(data);
        reader.read_request(|| Ok(()))
    }

    #[test]
    fn pipelined_requests_with_every_body_framing_parse_at_any_read_size() {
        let data = b"\r\nPOST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-Dup: 1\r\n\r\nhello\
GET /mode HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n";
        for step in [1, 2, 7, 64, 4096] {
            let requests: Vec<Request> = read_all(data, step)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(requests.len(), 3, "step {step}");
            let r = &requests[0];
            assert_eq!(
                (r.method.as_str(), r.path(), r.query()),
                ("POST", "/v1/chat/completions", Some("x=1"))
            );
            assert_eq!(r.header("x-dup"), Some("1"), "names are lowercased");
            assert_eq!(r.body, b"hello");
            assert_eq!(r.persist(), Persist::KeepAlive);
            assert!(requests[1].http10);
            assert_eq!(requests[1].persist(), Persist::KeepAlive10);
            assert_eq!(requests[2].body, b"abcde");
        }
    }

    #[test]
    fn bodies_larger_than_the_read_buffer_keep_the_next_request_intact() {
        let big = "x".repeat(3 * READ_SIZE + 5);
        let data = format!(
            "POST /a HTTP/1.1\r\ncontent-length: {}\r\n\r\n{big}GET /b HTTP/1.1\r\n\r\n",
            big.len()
        );
        for step in [1000, 5000, 1 << 20] {
            let requests: Vec<Request> = read_all(data.as_bytes(), step)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(requests.len(), 2, "step {step}");
            assert_eq!(requests[0].body.len(), big.len());
            assert_eq!(requests[1].path(), "/b");
        }
    }

    #[test]
    fn connection_close_and_http10_without_keep_alive_close() {
        let r = one(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").unwrap();
        assert_eq!(r.persist(), Persist::Close);
        let r = one(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(r.persist(), Persist::Close);
    }

    #[test]
    fn expect_continue_runs_the_callback_only_when_a_body_follows() {
        let mut calls = 0;
        let data: &[u8] = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx\
POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n";
        let mut reader = RequestReader::new(data);
        reader
            .read_request(|| {
                calls += 1;
                Ok(())
            })
            .unwrap();
        reader
            .read_request(|| {
                calls += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(calls, 1);
    }

    #[test]
    fn malformed_requests_get_the_matching_status() {
        let status = |data: &[u8]| one(data).err().and_then(|e| e.status()).map(|s| s.0);
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), Some(400));
        assert_eq!(status(b"G(T / HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\n folded\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 8388609\r\n\r\n"),
            Some(413)
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), Some(431));
        let mut huge = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
        huge.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(status(&huge), Some(431));
    }

    #[test]
    fn eof_before_a_request_is_closed_and_eof_inside_one_is_an_error() {
        assert!(matches!(one(b""), Err(ReadError::Closed)));
        assert!(matches!(one(b"GET / HT"), Err(ReadError::Io(_))));
        assert!(matches!(
            one(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"),
            Err(ReadError::Io(_))
        ));
    }
}
