//! Session tokens: JSON Web Tokens signed with HMAC-SHA256 (HS256), and
//! nothing else. A token whose header names any other algorithm, `none`
//! included, is refused before its signature is looked at.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The header every token carries, already encoded.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"HS256","typ":"JWT"}

/// What a token says. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    pub email: String,
    /// The session the token belongs to; logging out revokes it.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// Signs and checks tokens with the server's secret.
pub struct Signer {
    key: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Signer { key: key.to_vec() }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{HEADER}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{signature}")
    }

    /// The token's claims if its signature is ours and it has not expired
    /// at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let claims = self.verify_signature(token)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// The token's claims if its signature is ours, expired or not: enough
    /// to know which session to end at logout.
    pub fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenError::Invalid)?;
        if payload.contains('.') {
            return Err(TokenError::Invalid);
        }
        let header: Header = decode_json(header)?;
        if header.alg != "HS256" {
            return Err(TokenError::Invalid);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Invalid)?;
        self.mac(signed)
            .verify_slice(&signature)
            .map_err(|_| TokenError::Invalid)?;
        decode_json(payload)
    }

    fn mac(&self, signed: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(signed.as_bytes());
        mac
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u_1".into(),
            email: "a@example.com".into(),
            sid: "s_1".into(),
            iat: 100,
            exp,
        }
    }

    #[test]
    fn round_trips_until_expiry() {
        let signer = Signer::new(b"a key of thirty-two bytes or so!");
        let token = signer.sign(&claims(200));
        assert_eq!(signer.verify(&token, 150), Ok(claims(200)));
        assert_eq!(signer.verify(&token, 200), Err(TokenError::Expired));
        assert_eq!(signer.verify_signature(&token), Ok(claims(200)));
    }

    #[test]
    fn refuses_other_keys_tampering_and_other_algorithms() {
        let signer = Signer::new(b"key one");
        let token = signer.sign(&claims(200));
        assert_eq!(
            Signer::new(b"key two").verify(&token, 150),
            Err(TokenError::Invalid)
        );
        // Another user's id in the payload, the signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(200);
        forged.sub = "u_2".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap_or_default());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(signer.verify(&tampered, 150), Err(TokenError::Invalid));
        // alg=none with no signature, and alg=none with the old one.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        for token in [
            format!("{none}.{payload}."),
            format!("{none}.{}.{}", parts[1], parts[2]),
        ] {
            assert_eq!(signer.verify(&token, 150), Err(TokenError::Invalid));
        }
        for junk in ["", "a.b", "a.b.c.d", "...", "x.y.z"] {
            assert_eq!(signer.verify(junk, 150), Err(TokenError::Invalid));
        }
    }
}
