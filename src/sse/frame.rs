//! Incremental Server-Sent Events framing (the WHATWG `text/event-stream` format).
//!
//! A [`Framer`] is fed the bytes of a response as they arrive, chunk by chunk, cut anywhere,
//! and reports each complete event (its `event:` name and its `data:` lines joined by `\n`).
//! It never holds more than one event: the partial line and the event being assembled, at
//! most `cap` bytes together. An event that would grow past `cap` is dropped (reported once
//! as [`Frame::Oversized`]) and the framer skips to the next blank line, so memory stays
//! bounded whatever the upstream sends. Lines end with LF, CRLF or CR; a CRLF split across
//! two chunks counts once. Comments (`:` lines), `id:` and `retry:` are ignored.

/// One thing the framer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete event.
    Event(Event<'a>),
    /// An event grew past the cap and was dropped.
    Oversized,
}

/// A complete event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; `None` for the default type (`message`).
    pub name: Option<&'a str>,
    /// The `data:` lines, joined by `\n`.
    pub data: &'a [u8],
}

/// Incremental SSE framer with bounded memory.
#[derive(Debug, Clone)]
pub struct Framer {
    cap: usize,
    /// The line being read (no terminator).
    line: Vec<u8>,
    name: String,
    data: Vec<u8>,
    /// Some field of the current event was seen (a blank line then dispatches it).
    has_fields: bool,
    /// A `data:` line of the current event was seen (the next one is joined by `\n`).
    has_data: bool,
    /// The current event outgrew the cap: skip to the next blank line.
    skipping: bool,
    /// The previous chunk ended with CR: a leading LF belongs to that line break.
    after_cr: bool,
    /// Bytes seen in total.
    seen: u64,
}

impl Framer {
    /// A framer that holds at most `cap` bytes of one event.
    pub fn new(cap: usize) -> Framer {
        Framer {
            cap: cap.max(1),
            line: Vec::new(),
            name: String::new(),
            data: Vec::new(),
            has_fields: false,
            has_data: false,
            skipping: false,
            after_cr: false,
            seen: 0,
        }
    }

    /// Feeds the next chunk, calling `on` for every frame it completes.
    pub fn feed(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.push_partial(rest, on);
                    return;
                }
                Some(i) => {
                    let (part, tail) = rest.split_at(i);
                    self.push_partial(part, on);
                    self.end_line(on);
                    let cr = tail.first() == Some(&b'\r');
                    rest = tail.get(1..).unwrap_or(&[]);
                    if cr {
                        match rest.first() {
                            Some(b'\n') => rest = rest.get(1..).unwrap_or(&[]),
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                }
            }
        }
    }

    /// Whether bytes of an unfinished event are held (a stream that ends now was cut
    /// mid-event).
    pub fn mid_event(&self) -> bool {
        !self.line.is_empty() || self.has_fields
    }

    /// Bytes fed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    fn held(&self) -> usize {
        self.line.len() + self.data.len() + self.name.len()
    }

    fn push_partial(&mut self, part: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        if self.skipping || part.is_empty() {
            return;
        }
        if self.held().saturating_add(part.len()) > self.cap {
            self.overflow(on);
            return;
        }
        self.line.extend_from_slice(part);
    }

    fn overflow(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        self.skipping = true;
        self.line.clear();
        self.data.clear();
        self.name.clear();
        self.has_fields = false;
        self.has_data = false;
        on(Frame::Oversized);
    }

    fn end_line(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        if self.line.is_empty() {
            // A blank line ends the event.
            if self.skipping {
                self.skipping = false;
            } else if self.has_fields {
                let name = (!self.name.is_empty()).then_some(self.name.as_str());
                on(Frame::Event(Event {
                    name,
                    data: &self.data,
                }));
            }
            self.name.clear();
            self.data.clear();
            self.has_fields = false;
            self.has_data = false;
            return;
        }
        if self.skipping {
            self.line.clear();
            return;
        }
        let line = std::mem::take(&mut self.line);
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => {
                // A comment: nothing to do but keep the allocation.
                self.line = line;
                self.line.clear();
                return;
            }
            Some(i) => {
                let (f, v) = line.split_at(i);
                let v = v.get(1..).unwrap_or(&[]);
                (f, v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line.as_slice(), &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_fields = true;
                self.has_data = true;
            }
            b"event" => {
                self.name = String::from_utf8_lossy(value).into_owned();
                self.has_fields = true;
            }
            _ => {}
        }
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }
}
