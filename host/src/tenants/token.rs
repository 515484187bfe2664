//! Tenant tokens: `tn_` and 256 random bits, shown once; the catalog keeps
//! their SHA-256, and a given token is compared with every tenant's digest
//! in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// What every tenant token starts with.
pub const PREFIX: &str = "tn_";

/// A new token: unguessable, so a plain digest is enough to store it.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("the system's random source failed: {error}"))?;
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn digest_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// Reads a stored digest back; `None` if the row is damaged.
pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

/// Which of `digests` `given` is the token of. Every digest is compared,
/// each in constant time, so the time taken tells nothing of which one
/// matched or how much of a guess was right.
pub fn find<'a>(
    given: &str,
    digests: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>,
) -> Option<&'a str> {
    let given = digest(given);
    let mut found = None;
    for (name, expected) in digests {
        if bool::from(given.ct_eq(expected)) {
            found = Some(name);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_found_by_digest() -> anyhow::Result<()> {
        let (a, b) = (new_token()?, new_token()?);
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43);
        let (da, db) = (digest(&a), digest(&b));
        assert_eq!(parse_hex(&digest_hex(&a)), Some(da));
        let all = [("a", &da), ("b", &db)];
        assert_eq!(find(&a, all), Some("a"));
        assert_eq!(find(&b, all), Some("b"));
        assert_eq!(find("tn_guess", all), None);
        Ok(())
    }
}
