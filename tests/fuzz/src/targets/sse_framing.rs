//! `sse::Framer`: any bytes, cut into chunks anywhere (empty chunks included), give the same
//! frames as the whole stream at once, and the same as a plain, whole-stream reading of the
//! format written here from the framer's documentation; the framer never holds more than its
//! cap, and every event it hands out fits in the cap.
//!
//! Input: two bytes of cap (1..=65536, little-endian), one byte seeding the chunk sizes,
//! then the stream.

use ai_circuit_breaker::sse::{Frame, Framer};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Event {
        name: Option<String>,
        data: Vec<u8>,
        end: u64,
    },
    Oversized {
        name: Option<String>,
        end: u64,
    },
}

pub fn run(input: &[u8]) {
    let [lo, hi, seed, stream @ ..] = input else {
        return;
    };
    let cap = 1 + usize::from(u16::from_le_bytes([*lo, *hi]));
    let whole = frame(cap, std::iter::once(stream));
    let bytes = frame(cap, stream.chunks(1));
    assert_eq!(
        bytes, whole,
        "one byte per chunk differs from the whole stream"
    );
    let cut = frame(cap, Chunks::new(stream, *seed));
    assert_eq!(
        cut, whole,
        "chunks of seed {seed} differ from the whole stream"
    );
    let expected = reference(stream, cap);
    assert_eq!(
        whole, expected,
        "the framer differs from the reference reading"
    );
}

/// Frames of `chunks` fed in order, with the framer's end state; checks the bounds as it goes.
fn frame<'a>(cap: usize, chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Got>, bool, u64) {
    let mut f = Framer::new(cap);
    let mut out = Vec::new();
    let mut total = 0u64;
    for chunk in chunks {
        total += chunk.len() as u64;
        f.feed(chunk, &mut |frame| {
            let got = match frame {
                Frame::Event(e) => {
                    let held = e.data.len() + e.name.map_or(0, str::len);
                    assert!(
                        held <= cap,
                        "an event of {held} bytes passed a cap of {cap}"
                    );
                    Got::Event {
                        name: e.name.map(str::to_string),
                        data: e.data.to_vec(),
                        end: e.end,
                    }
                }
                Frame::Oversized { name, end } => Got::Oversized {
                    name: name.map(str::to_string),
                    end,
                },
            };
            out.push(got);
        });
        let held = f.held_bytes();
        assert!(
            held <= cap,
            "the framer holds {held} bytes over a cap of {cap}"
        );
        assert_eq!(f.bytes_seen(), total);
    }
    (out, f.mid_event(), f.bytes_seen())
}

/// Chunk sizes 0..=7 from a xorshift seeded by one byte: every eighth chunk or so is empty.
pub(super) struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
    done: bool,
}

impl<'a> Chunks<'a> {
    pub(super) fn new(stream: &'a [u8], seed: u8) -> Self {
        Chunks {
            rest: stream,
            state: 0x9e37_79b9 ^ u32::from(seed),
            done: false,
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        if self.rest.is_empty() {
            // One empty chunk at the end too, as a proxy's last body callback may be.
            self.done = true;
            return Some(&[]);
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let n = (self.state % 8) as usize;
        let (chunk, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

/// The documented format, read from the whole stream: lines end with CRLF, LF or CR; a blank
/// line ends an event; `data:` lines join with `\n`; `event:` names it (lossy UTF-8); one
/// space after the colon is dropped; other fields and `:` comments are ignored. An event whose
/// held bytes (the line being read, its data and its name) would pass `cap` is dropped: no
/// data is kept from there to its blank line, where it is reported as oversized with the name
/// it had. `end` is just past the line break that completed the frame (past the CR of a CRLF).
fn reference(stream: &[u8], cap: usize) -> (Vec<Got>, bool, u64) {
    let mut out = Vec::new();
    let mut name = String::new();
    let mut data: Vec<u8> = Vec::new();
    let mut has_fields = false;
    let mut has_data = false;
    let mut skipping = false;
    let mut at = 0;
    let mut partial: &[u8] = &[];
    while at < stream.len() {
        let rest = &stream[at..];
        let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
            partial = rest;
            break;
        };
        let line = &rest[..i];
        let end = (at + i + 1) as u64;
        at += i + 1;
        if rest[i] == b'\r' && stream.get(at) == Some(&b'\n') {
            at += 1;
        }
        let name_of = |n: &String| (!n.is_empty()).then(|| n.clone());
        if line.is_empty() {
            if skipping {
                out.push(Got::Oversized {
                    name: name_of(&name),
                    end,
                });
            } else if has_fields {
                out.push(Got::Event {
                    name: name_of(&name),
                    data: data.clone(),
                    end,
                });
            }
            name.clear();
            data.clear();
            (has_fields, has_data, skipping) = (false, false, false);
            continue;
        }
        if skipping {
            continue;
        }
        if name.len() + data.len() + line.len() > cap {
            data.clear();
            (has_fields, has_data, skipping) = (false, false, true);
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => continue,
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
                has_fields = true;
                has_data = true;
            }
            b"event" => {
                let n = String::from_utf8_lossy(value).into_owned();
                if data.len() + n.len() > cap {
                    // Lossy UTF-8 can outgrow its line: the event is dropped, its old name kept.
                    data.clear();
                    (has_fields, has_data, skipping) = (false, false, true);
                } else {
                    name = n;
                    has_fields = true;
                }
            }
            _ => {}
        }
    }
    if !partial.is_empty() && !skipping && name.len() + data.len() + partial.len() > cap {
        (has_fields, skipping) = (false, true);
    }
    let mid_event = !partial.is_empty() || has_fields || skipping;
    (out, mid_event, stream.len() as u64)
}
