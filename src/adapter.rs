//! Adapter placeholder.
