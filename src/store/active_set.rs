//! The set of breakers that are not CLOSED, by upstream name, kept in its own shared-data
//! key so the periodic tick visits only those: a healthy fleet of 1000 upstreams costs the
//! tick one read. Encoded as names separated by newlines; upstream names never contain one.

use super::{Codec, DecodeError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActiveSet(pub Vec<String>);

impl ActiveSet {
    /// Adds or removes `name`; returns false when the set already was that way.
    pub fn set(&mut self, name: &str, member: bool) -> bool {
        let present = self.0.iter().any(|n| n == name);
        match (present, member) {
            (false, true) => self.0.push(name.to_string()),
            (true, false) => self.0.retain(|n| n != name),
            _ => return false,
        }
        true
    }
}

impl Codec for ActiveSet {
    fn encode(&self) -> Vec<u8> {
        self.0.join("\n").into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<ActiveSet, DecodeError> {
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
        Ok(ActiveSet(
            text.split('\n')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }
}
