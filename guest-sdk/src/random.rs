//! Unguessable values for session ids, lock tokens and API keys, from the
//! host's cryptographically secure generator (WASI `random`).

use crate::Error;

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|error| Error::internal(format!("no random bytes from the host: {error}")))?;
    Ok(buf)
}

/// A 128-bit random token as 32 lowercase hex digits.
pub fn token() -> Result<String, Error> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let raw = bytes::<16>()?;
    let mut text = String::with_capacity(32);
    for byte in raw {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_and_differ() {
        let a = token().expect("a token");
        let b = token().expect("a token");
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
