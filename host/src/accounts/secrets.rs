//! Random ids and secrets, and the digests stored in their place.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// `prefix` and 32 hex digits of randomness: `u_…` for users, `o_…` for
/// organizations, `k_…` for API keys, `s_…` for sessions.
pub fn random_id(prefix: &str) -> anyhow::Result<String> {
    Ok(format!("{prefix}{}", hex::encode(random_bytes::<16>()?)))
}

/// `prefix` and 256 random bits in URL-safe base64: unguessable, so a
/// plain digest is enough to store it.
pub fn random_secret(prefix: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("the system's random source failed: {error}"))?;
    Ok(bytes)
}

/// What the catalog keeps instead of a secret: its SHA-256, in hex.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_are_distinct_and_shaped() -> anyhow::Result<()> {
        let id = random_id("u_")?;
        assert_eq!(id.len(), 34);
        assert!(id.starts_with("u_"));
        assert_ne!(id, random_id("u_")?);
        let secret = random_secret("pk_")?;
        assert_eq!(secret.len(), 3 + 43);
        assert_eq!(digest(&secret), digest(&secret));
        assert_ne!(digest(&secret), digest(&random_secret("pk_")?));
        Ok(())
    }
}
