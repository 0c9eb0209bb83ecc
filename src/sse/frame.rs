//! Incremental Server-Sent Events framing (the WHATWG `text/event-stream` format).
//!
//! A [`Framer`] is fed the bytes of a response as they arrive, chunk by chunk, cut anywhere,
//! and reports each complete event (its `event:` name and its `data:` lines joined by `\n`).
//! It never holds more than one event: the partial line and the event being assembled, at
//! most `cap` bytes together. An event that would grow past `cap` is dropped: the framer
//! skips to the next blank line and reports it there once, as [`Frame::Oversized`] with its
//! name when an `event:` line came before the overflow, so memory stays bounded whatever the
//! upstream sends and a reader can still act on the name (a long answer's
//! `response.completed` carries the whole text). Every frame carries its `end`: the offset in
//! the stream just past the line break that completed it, the same whatever the chunking. Lines end with LF, CRLF or CR; a CRLF split across
//! two chunks counts once. Comments (`:` lines), `id:` and `retry:` are ignored.

/// One thing the framer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete event.
    Event(Event<'a>),
    /// An event grew past the cap: its data was dropped.
    Oversized {
        /// Its `event:` field, when one came before the overflow.
        name: Option<&'a str>,
        /// Offset in the stream just past the line break that ended it.
        end: u64,
    },
}

/// A complete event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; `None` for the default type (`message`).
    pub name: Option<&'a str>,
    /// The `data:` lines, joined by `\n`.
    pub data: &'a [u8],
    /// Offset in the stream just past the line break that ended it (the first byte of a
    /// CRLF: the event is complete there).
    pub end: u64,
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
    /// Bytes of the current line were seen, kept or skipped (it is not a blank line).
    in_line: bool,
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
            in_line: false,
            after_cr: false,
            seen: 0,
        }
    }

    /// Feeds the next chunk, calling `on` for every frame it completes.
    pub fn feed(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let base = self.seen;
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        let mut rest = chunk;
        // An empty chunk (a proxy may deliver one) leaves a pending CR pending.
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(r) = rest.strip_prefix(b"\n") {
                rest = r;
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.push_partial(rest);
                    return;
                }
                Some(i) => {
                    let (part, tail) = rest.split_at(i);
                    // Just past the line break: the bytes of the chunk before `tail`, plus one.
                    let end = base.saturating_add((chunk.len() - tail.len() + 1) as u64);
                    self.push_partial(part);
                    self.end_line(end, on);
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
        self.in_line || self.has_fields || self.skipping
    }

    /// Bytes fed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Bytes of the unfinished event held now (the partial line, the data and the name):
    /// never more than the cap given to [`Framer::new`].
    pub fn held_bytes(&self) -> usize {
        self.held()
    }

    fn held(&self) -> usize {
        self.line.len() + self.data.len() + self.name.len()
    }

    fn push_partial(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        self.in_line = true;
        if self.skipping {
            return;
        }
        if self.held().saturating_add(part.len()) > self.cap {
            self.overflow();
            return;
        }
        self.line.extend_from_slice(part);
    }

    /// Drops what the event holds but its name, and skips to its end.
    fn overflow(&mut self) {
        self.skipping = true;
        self.line.clear();
        self.data.clear();
        self.has_fields = false;
        self.has_data = false;
    }

    fn end_line(&mut self, end: u64, on: &mut dyn FnMut(Frame<'_>)) {
        if !std::mem::take(&mut self.in_line) {
            // A blank line ends the event.
            let name = (!self.name.is_empty()).then_some(self.name.as_str());
            if self.skipping {
                self.skipping = false;
                on(Frame::Oversized { name, end });
            } else if self.has_fields {
                on(Frame::Event(Event {
                    name,
                    data: &self.data,
                    end,
                }));
            }
            self.name.clear();
            self.data.clear();
            self.has_fields = false;
            self.has_data = false;
            return;
        }
        if self.skipping {
            // The rest of a dropped event: nothing was kept of this line.
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
                // Lossy conversion borrows valid UTF-8, but each invalid byte becomes a
                // 3-byte U+FFFD: the name may outgrow its line, and must fit the cap too.
                let name = String::from_utf8_lossy(value);
                if self.data.len().saturating_add(name.len()) > self.cap {
                    self.overflow();
                } else {
                    // Reuses the name's allocation.
                    self.name.clear();
                    self.name.push_str(&name);
                    self.has_fields = true;
                }
            }
            _ => {}
        }
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }
}
