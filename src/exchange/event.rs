//! What drives an exchange (events, with views onto the proxy's data) and what it asks the
//! proxy to do (effects).
//!
//! Events carry *views*, not copies: the exchange reads only the headers, bodies and stream
//! properties it needs, so a plain success costs no more host calls than it must. The adapter
//! implements the views with host calls; tests implement them with plain data.

use crate::host::HttpCall;

/// A header map the exchange may read.
pub trait Headers {
    /// One header by lower-case name.
    fn get(&self, name: &str) -> Option<String>;
    /// Every header, in order (one host call in the adapter).
    fn all(&self) -> Vec<(String, String)>;
}

/// The bytes of the body buffer a callback announced.
pub trait Body {
    /// Bytes `[0, len)` of the buffer (what the callback announced).
    fn read(&self, len: usize) -> Vec<u8> {
        self.read_range(0, len)
    }
    /// Bytes `[start, start + len)` of the buffer.
    fn read_range(&self, start: usize, len: usize) -> Vec<u8>;
}

/// What Envoy knows about the upstream stream, read only when a response is not a plain
/// success.
pub trait StreamInfo {
    /// `response.flags`.
    fn response_flags(&self) -> u64;
    /// `response.code_details`.
    fn code_details(&self) -> Option<String>;
    /// Request body bytes Envoy has received from the client so far, whether or not it
    /// showed them to the filter (`None`: Envoy does not say).
    fn request_body_received(&self) -> Option<u64> {
        None
    }
}

/// An answer to a callout.
pub struct Answer<'a> {
    pub headers: &'a dyn Headers,
    pub body: &'a dyn Body,
    pub body_len: usize,
}

/// Something that happened to the request.
pub enum Event<'a> {
    RequestHeaders {
        headers: &'a dyn Headers,
        end_of_stream: bool,
    },
    RequestBody {
        len: usize,
        end_of_stream: bool,
        body: &'a dyn Body,
    },
    ResponseHeaders {
        headers: &'a dyn Headers,
        info: &'a dyn StreamInfo,
        end_of_stream: bool,
    },
    ResponseBody {
        len: usize,
        end_of_stream: bool,
        body: &'a dyn Body,
    },
    /// The callout the exchange asked for answered; `None` when the host reported no
    /// response at all (timed out or could not connect).
    CalloutAnswered(Option<Answer<'a>>),
    /// The callout the exchange asked for could not be sent.
    CalloutNotSent,
    /// The timer fired at or after the time the exchange asked to wake at.
    Tick { stream: &'a dyn StreamInfo },
    /// The stream is over (Envoy's log phase): complete, reset or cancelled.
    Done { info: &'a dyn StreamInfo },
}

/// A local reply, sent instead of the upstream's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Something the exchange asks the proxy to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    SetRequestHeader(String, String),
    RemoveRequestHeader(String),
    SetResponseHeader(String, String),
    RemoveResponseHeader(String),
    /// Replace the buffered request body (`len` bytes, as announced) with `body`.
    ReplaceRequestBody {
        len: usize,
        body: Vec<u8>,
    },
    /// Drop the `len` bytes of response body Envoy holds (they were kept by the exchange),
    /// so a held response never fills Envoy's buffer.
    ClearResponseBody {
        len: usize,
    },
    /// Drop the `len` bytes of request body Envoy holds (a refused request's upload).
    ClearRequestBody {
        len: usize,
    },
    /// Replace the `len` bytes of response body of this callback with `body`.
    ReplaceResponseBody {
        len: usize,
        body: Vec<u8>,
    },
    /// Answer the client locally.
    Reply(Reply),
    /// Call another cluster; its answer comes back as [`Event::CalloutAnswered`].
    Call(HttpCall),
    /// Let a request paused at headers continue.
    ResumeRequest,
    /// Let a held response continue.
    ResumeResponse,
}

/// Whether the callback that delivered the event lets the stream go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// The exchange's answer to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub effects: Vec<Effect>,
    pub flow: Flow,
}

impl Step {
    pub fn go() -> Step {
        Step {
            effects: Vec::new(),
            flow: Flow::Continue,
        }
    }

    pub fn pause() -> Step {
        Step {
            effects: Vec::new(),
            flow: Flow::Pause,
        }
    }

    pub fn with(mut self, effect: Effect) -> Step {
        self.effects.push(effect);
        self
    }
}
