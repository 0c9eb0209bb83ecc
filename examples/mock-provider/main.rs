//! Placeholder: the mock AI provider lands in the next commit.
fn main() {}
