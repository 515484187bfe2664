//! How an object is named: by class and name, with a stable id derived
//! from both (like Cloudflare's `idFromName`).

use sha2::{Digest, Sha256};

/// The longest object name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAddr {
    class: String,
    name: String,
    id: String,
}

impl ObjectAddr {
    pub fn new(class: &str, name: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(class.as_bytes());
        hasher.update([0]);
        hasher.update(name.as_bytes());
        ObjectAddr {
            class: class.to_string(),
            name: name.to_string(),
            id: to_hex(&hasher.finalize()),
        }
    }

    pub fn class(&self) -> &str {
        &self.class
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// 64 hex digits, the same for the same class and name forever.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Lower-case hex digits, two per byte.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = ObjectAddr::new("counter", "alice");
        assert_eq!(a.id(), ObjectAddr::new("counter", "alice").id());
        assert_eq!(a.id().len(), 64);
        assert_ne!(a.id(), ObjectAddr::new("counter", "bob").id());
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            ObjectAddr::new("ab", "c").id(),
            ObjectAddr::new("a", "bc").id()
        );
    }
}
