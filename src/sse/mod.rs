//! Server-Sent Events, the shape of streamed LLM responses.
//!
//! [`frame`] cuts a byte stream into events incrementally, with bounded memory; [`judge`]
//! reads those events to tell what a streamed LLM response is doing (its commit point, error
//! events, terminal marker, usage) and how it ended, reading each event's data in one pass
//! through `wire`; [`error_event`] writes the final error
//! event a client gets when its stream cannot end whole.

pub mod error_event;
pub mod frame;
pub mod judge;
mod wire;

pub use error_event::error_event;
pub use frame::{Event, Frame, Framer};
pub use judge::{End, Judge, Shape, Step, StreamError, Truncation, Usage, Verdict};
