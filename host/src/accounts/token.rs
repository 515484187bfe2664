//! Session tokens: JSON Web Tokens signed with HMAC-SHA256 (HS256), and
//! nothing else. A token whose header names any other algorithm, `none`
//! included, is refused before its signature is looked at.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// HS256 only; expiry is checked by `verify` against the caller's
    /// clock, to the second and with no leeway, so the library checks no
    /// time claim itself.
    validation: Validation,
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims::<&str>(&[]);
        Signer {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // Serializing these claims and an HMAC cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_default()
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
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

    /// A token made by the hand-written encoder this module used before
    /// (header `{"alg":"HS256","typ":"JWT"}`, in that order) still
    /// verifies: sessions survive the upgrade.
    #[test]
    fn verifies_tokens_of_the_former_encoder() {
        let key = b"a key of thirty-two bytes or so!";
        // Made by the former `Signer::sign` for `claims(200)` and this key.
        let old = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                   eyJzdWIiOiJ1XzEiLCJlbWFpbCI6ImFAZXhhbXBsZS5jb20iLCJzaWQiOiJzXzEiLCJpYXQiOjEwMCwiZXhwIjoyMDB9.\
                   qLuteBKNw_VgLBl8mHhGME94l1kZqfwSdw-bHHJRGPY";
        let signer = Signer::new(key);
        assert_eq!(signer.verify(old, 150), Ok(claims(200)));
        assert_eq!(signer.verify(old, 200), Err(TokenError::Expired));
        assert_eq!(
            Signer::new(b"another key").verify(old, 150),
            Err(TokenError::Invalid)
        );
    }
}
