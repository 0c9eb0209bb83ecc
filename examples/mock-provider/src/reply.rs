//! A response as a plan: the bytes to send and the steps that pace them (write, pause,
//! stall with the connection open, close, reset). Modes build a plan without touching a
//! socket, so their exact byte output is unit-tested; `server` executes it. The HTTP
//! framing is written here by hand on purpose: a fault-injecting mock must be able to send
//! each SSE event as its own chunk, stop before the terminating chunk, or pause between
//! the head and the body, which server crates do not allow.

use std::io::Write;
use std::time::Duration;

use crate::http::Persist;

/// One action of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the plan's bytes up to this offset (one `write` per step).
    Flush(usize),
    /// Sleep, writing nothing.
    Sleep(Duration),
    /// Keep the connection open and write nothing, discarding input, for this long (or
    /// until the peer closes).
    Stall(Duration),
    /// Close the connection (FIN) here; the rest of the plan is not sent.
    Close,
    /// Reset the connection (RST) here; the rest of the plan is not sent.
    Rst,
}

/// How the body of a streamed response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Chunked,
    /// HTTP/1.0: no chunked encoding; the body ends when the connection closes.
    UntilClose,
}

#[derive(Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub steps: Vec<Step>,
    /// Whether the connection stays open after the plan has run to its end.
    pub keep_alive: bool,
    framing: Framing,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            bytes: Vec::new(),
            steps: Vec::new(),
            keep_alive: true,
            framing: Framing::Chunked,
        }
    }
}

/// Reason phrases for the status line (clients ignore them; they help humans reading logs).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Mock Status",
    }
}

impl Reply {
    /// Empties the plan for the next response on the connection.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.steps.clear();
        self.keep_alive = true;
        self.framing = Framing::Chunked;
    }

    /// Ends the current write: what was added so far goes out in one `write`.
    pub fn flush(&mut self) {
        let end = self.bytes.len();
        let flushed = self.steps.iter().rev().find_map(|step| match step {
            Step::Flush(at) => Some(*at),
            _ => None,
        });
        if flushed.unwrap_or(0) < end {
            self.steps.push(Step::Flush(end));
        }
    }

    pub fn sleep(&mut self, duration: Duration) {
        self.flush();
        if !duration.is_zero() {
            self.steps.push(Step::Sleep(duration));
        }
    }

    pub fn stall(&mut self, duration: Duration) {
        self.flush();
        self.steps.push(Step::Stall(duration));
    }

    /// Closes (FIN) after what was written so far; nothing added later is sent.
    pub fn close(&mut self) {
        self.flush();
        self.steps.push(Step::Close);
        self.keep_alive = false;
    }

    /// Resets (RST) after what was written so far; nothing added later is sent.
    pub fn rst(&mut self) {
        self.flush();
        self.steps.push(Step::Rst);
        self.keep_alive = false;
    }

    /// Whether the plan ends the connection itself (after which nothing is sent).
    #[cfg(test)]
    pub fn ends_connection(&self) -> bool {
        matches!(self.steps.last(), Some(Step::Close | Step::Rst))
    }

    /// The status line and the headers every response carries, without the blank line.
    pub fn head(&mut self, status: u16, content_type: &str, provider: &str) {
        // Writing to a Vec cannot fail.
        let _ = write!(
            self.bytes,
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nx-mock-provider: {provider}\r\n",
            reason(status)
        );
    }

    /// One more header line (the caller has validated name and value).
    pub fn header(&mut self, name: &str, value: &str) {
        let _ = write!(self.bytes, "{name}: {value}\r\n");
    }

    /// Ends the head with `content-length` and writes the whole body.
    pub fn body(&mut self, body: &[u8], persist: Persist) {
        let _ = write!(self.bytes, "content-length: {}\r\n", body.len());
        self.bytes.extend_from_slice(persist.header());
        self.bytes.extend_from_slice(b"\r\n");
        self.bytes.extend_from_slice(body);
        self.keep_alive &= persist.keep_alive();
    }

    /// Ends the head of a streamed response: chunked, or (HTTP/1.0) delimited by close.
    pub fn start_stream(&mut self, http10: bool, persist: Persist) {
        if http10 {
            self.framing = Framing::UntilClose;
            self.bytes.extend_from_slice(b"connection: close\r\n\r\n");
            self.keep_alive = false;
        } else {
            self.framing = Framing::Chunked;
            self.bytes
                .extend_from_slice(b"transfer-encoding: chunked\r\n");
            self.bytes.extend_from_slice(persist.header());
            self.bytes.extend_from_slice(b"\r\n");
            self.keep_alive &= persist.keep_alive();
        }
    }

    /// One piece of a streamed body, as its own chunk and its own write.
    pub fn chunk(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.framing == Framing::Chunked {
            let _ = write!(self.bytes, "{:x}\r\n", data.len());
            self.bytes.extend_from_slice(data);
            self.bytes.extend_from_slice(b"\r\n");
        } else {
            self.bytes.extend_from_slice(data);
        }
        self.flush();
    }

    /// Ends a streamed body properly (the terminating chunk), sent with the last piece.
    pub fn end_stream(&mut self) {
        match self.framing {
            Framing::Chunked => {
                if let Some(Step::Flush(_)) = self.steps.last() {
                    // Send the terminator in the same write as the last event.
                    self.steps.pop();
                }
                self.bytes.extend_from_slice(b"0\r\n\r\n");
                self.flush();
            }
            Framing::UntilClose => self.close(),
        }
    }

    /// The bytes that reach the peer, in order, each with the step that ends the plan
    /// early if there is one: for tests.
    #[cfg(test)]
    #[allow(clippy::indexing_slicing)]
    pub fn sent(&self) -> (Vec<u8>, Option<Step>) {
        let mut out = Vec::new();
        let mut start = 0;
        for step in &self.steps {
            match *step {
                Step::Flush(end) => {
                    out.extend_from_slice(&self.bytes[start..end]);
                    start = end;
                }
                Step::Close | Step::Rst => return (out, Some(*step)),
                Step::Sleep(_) | Step::Stall(_) => {}
            }
        }
        out.extend_from_slice(&self.bytes[start..]);
        (out, None)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_body_has_its_length_and_the_connection_header() {
        let mut reply = Reply::default();
        reply.head(429, "application/json", "openai");
        reply.header("retry-after", "2");
        reply.body(b"{}", Persist::Close);
        let (sent, end) = reply.sent();
        assert_eq!(
            String::from_utf8(sent).unwrap(),
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
x-mock-provider: openai\r\nretry-after: 2\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
        );
        assert_eq!(end, None);
        assert!(!reply.keep_alive);
    }

    #[test]
    fn each_chunk_is_one_write_and_the_terminator_rides_with_the_last() {
        let mut reply = Reply::default();
        reply.head(200, "text/event-stream", "m");
        reply.start_stream(false, Persist::KeepAlive);
        reply.flush();
        reply.sleep(Duration::from_millis(5));
        reply.chunk(b"data: 1\n\n");
        reply.chunk(b"data: 2\n\n");
        reply.end_stream();
        let head_end =
            reply.bytes.len() - "9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n".len();
        let first = head_end + "9\r\ndata: 1\n\n\r\n".len();
        assert_eq!(
            reply.steps,
            [
                Step::Flush(head_end),
                Step::Sleep(Duration::from_millis(5)),
                Step::Flush(first),
                Step::Flush(reply.bytes.len()),
            ]
        );
        assert!(reply.keep_alive);
    }

    #[test]
    fn a_close_drops_everything_planned_after_it() {
        let mut reply = Reply::default();
        reply.head(200, "text/event-stream", "m");
        reply.start_stream(false, Persist::KeepAlive);
        reply.chunk(b"data: 1\n\n");
        reply.close();
        reply.chunk(b"data: 2\n\n");
        let (sent, end) = reply.sent();
        let sent = String::from_utf8(sent).unwrap();
        assert!(sent.ends_with("9\r\ndata: 1\n\n\r\n"), "{sent}");
        assert_eq!(end, Some(Step::Close));
        assert!(reply.ends_connection() || !reply.keep_alive);
    }

    #[test]
    fn http10_streams_are_delimited_by_close() {
        let mut reply = Reply::default();
        reply.head(200, "text/event-stream", "m");
        reply.start_stream(true, Persist::KeepAlive10);
        reply.chunk(b"data: 1\n\n");
        reply.end_stream();
        let (sent, end) = reply.sent();
        let sent = String::from_utf8(sent).unwrap();
        assert!(
            sent.contains("connection: close\r\n\r\ndata: 1\n\n"),
            "{sent}"
        );
        assert!(!sent.contains("transfer-encoding"));
        assert_eq!(end, Some(Step::Close));
    }
}
