//! Server-Sent Events, the shape of streamed LLM responses.
//!
//! [`frame`] cuts a byte stream into events incrementally, with bounded memory; the stream
//! judge and the provider translators read those events.

pub mod frame;

pub use frame::{Event, Frame, Framer};
