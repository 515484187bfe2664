//! How an object is named: by class and name, with a stable id derived
//! from both (like Cloudflare's `idFromName`).
//!
//! Names are Unicode-normalised to NFC here, where every address is made:
//! "café" typed as `e` + U+0301 (NFD, as macOS file names and some
//! keyboards produce) and as U+00E9 (NFC) look the same to a person and
//! must reach the same object, not two.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Made for every event an object is sent: one allocation, with the id
/// (hex of a SHA-256) held inline rather than in a string of its own.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectAddr {
    /// The class, then the name.
    class_and_name: Box<str>,
    class_len: usize,
    id: [u8; ID_LEN],
}

/// An id's length: 64 hex digits.
const ID_LEN: usize = 64;

impl ObjectAddr {
    /// The address of object `name` (NFC-normalised) of `class`.
    pub fn new(class: &str, name: &str) -> Self {
        let name = normalize_name(name);
        let mut hasher = Sha256::new();
        hasher.update(class.as_bytes());
        hasher.update([0]);
        hasher.update(name.as_bytes());
        let mut id = [0; ID_LEN];
        hex::encode_to_slice(hasher.finalize(), &mut id)
            .expect("a SHA-256 is half as long as its hex");
        ObjectAddr {
            class_and_name: [class, &name].concat().into_boxed_str(),
            class_len: class.len(),
            id,
        }
    }

    pub fn class(&self) -> &str {
        &self.class_and_name[..self.class_len]
    }

    pub fn name(&self) -> &str {
        &self.class_and_name[self.class_len..]
    }

    /// 64 hex digits, the same for the same class and name forever.
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.id).expect("hex digits are ASCII")
    }
}

impl std::fmt::Debug for ObjectAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectAddr")
            .field("class", &self.class())
            .field("name", &self.name())
            .field("id", &self.id())
            .finish()
    }
}

/// `name` in Unicode Normalization Form C, the form objects are known by
/// (borrowed when it already is, as ASCII names always are).
pub fn normalize_name(name: &str) -> Cow<'_, str> {
    match is_nfc_quick(name.chars()) {
        IsNormalized::Yes => Cow::Borrowed(name),
        _ => Cow::Owned(name.nfc().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = ObjectAddr::new("counter", "alice");
        assert_eq!(a.id(), ObjectAddr::new("counter", "alice").id());
        assert_eq!(a.id().len(), 64);
        // Ids name objects' directories: their spelling may never change.
        assert_eq!(
            a.id(),
            "97409dcccfd271f097f199c55abc8177f8560968a524d46b620422abaa1bc757"
        );
        assert_ne!(a.id(), ObjectAddr::new("counter", "bob").id());
        assert_eq!((a.class(), a.name()), ("counter", "alice"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            ObjectAddr::new("ab", "c").id(),
            ObjectAddr::new("a", "bc").id()
        );
    }

    #[test]
    fn an_address_is_made_in_one_allocation() {
        // One is made for every event an object is sent.
        let before = crate::test_alloc::allocations();
        let address = ObjectAddr::new("counter", "alice");
        assert_eq!(crate::test_alloc::allocations() - before, 1);
        assert_eq!(address.name(), "alice");
    }

    #[test]
    fn nfc_and_nfd_spellings_are_one_object() {
        let nfc = ObjectAddr::new("c", "caf\u{e9}");
        let nfd = ObjectAddr::new("c", "cafe\u{301}");
        assert_eq!(nfc, nfd);
        assert_eq!(nfd.name(), "caf\u{e9}");
        assert!(matches!(normalize_name("plain"), Cow::Borrowed("plain")));
    }
}
