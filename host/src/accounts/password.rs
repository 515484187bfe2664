//! Passwords: what counts as acceptable, and Argon2id hashing. Hashing is
//! slow and takes ~19 MiB on purpose, so it runs on blocking threads, a
//! few at a time, whatever the number of logins waiting.

use std::sync::{Arc, LazyLock, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

use super::secrets::random_bytes;

/// Longer passwords are refused: hashing cost grows with the input.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Passwords long enough to pass the length rule that attackers try first.
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789012",
    "0987654321",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "asdfghjkl;",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "iloveyou12",
    "letmein123",
    "welcome123",
    "changeme123",
    "administrator",
    "trustno1234",
];

/// Why a password was refused, in words for the user.
pub fn weakness(password: &str, email: &str, min_length: usize) -> Option<String> {
    let length = password.chars().count();
    if length < min_length {
        return Some(format!("it must be at least {min_length} characters long"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!(
            "it must be at most {MAX_PASSWORD_BYTES} bytes long"
        ));
    }
    let lower = password.to_lowercase();
    let mut distinct: Vec<char> = lower.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Some("it must use at least 4 different characters".into());
    }
    if COMMON.contains(&lower.as_str()) {
        return Some("it is one of the most common passwords".into());
    }
    let local = email.split('@').next().unwrap_or(email);
    if lower == email || (local.len() >= 4 && lower.contains(local)) {
        return Some("it must not contain the email address".into());
    }
    None
}

/// Argon2id with its default cost (19 MiB, 2 passes), which OWASP
/// recommends.
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new() -> Self {
        let parallel = std::thread::available_parallelism().map_or(2, usize::from);
        Hasher {
            permits: Arc::new(Semaphore::new(parallel)),
        }
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        self.blocking(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `stored` (a PHC string); against the
    /// decoy when there is no stored hash, which never matches.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let matches = self
            .blocking(move || {
                let stored = match stored {
                    Some(stored) => stored,
                    None => decoy()?.to_string(),
                };
                let parsed = PasswordHash::new(&stored).map_err(|error| {
                    anyhow::anyhow!("a stored password hash is corrupt: {error}")
                })?;
                Ok::<_, anyhow::Error>(
                    argon2()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok(),
                )
            })
            .await??;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("the password hasher is shut down"))?;
        Ok(tokio::task::spawn_blocking(work).await?)
    }
}

fn argon2() -> &'static Argon2<'static> {
    static ARGON2: LazyLock<Argon2<'static>> = LazyLock::new(Argon2::default);
    &ARGON2
}

/// Checked against when the email is unknown, so a login takes as long
/// whether or not the account exists.
fn decoy() -> anyhow::Result<&'static str> {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(decoy) = DECOY.get() {
        return Ok(decoy);
    }
    let hash = hash_now("not anyone's password")?;
    Ok(DECOY.get_or_init(|| hash))
}

fn hash_now(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|error| anyhow::anyhow!("cannot encode a salt: {error}"))?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("cannot hash a password: {error}"))?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_weak_passwords_with_a_reason() {
        let email = "alice@example.com";
        assert!(weakness("short", email, 10).is_some_and(|w| w.contains("at least 10")));
        assert!(weakness(&"x".repeat(300), email, 10).is_some_and(|w| w.contains("at most")));
        assert!(weakness("aaaaaaaaaaaa", email, 10).is_some());
        assert!(weakness("Password123", email, 10).is_some_and(|w| w.contains("common")));
        assert!(weakness("alice-is-great", email, 10).is_some_and(|w| w.contains("email")));
        assert_eq!(weakness("correct horse battery", email, 10), None);
    }

    #[tokio::test]
    async fn hashes_verify_only_their_password() -> anyhow::Result<()> {
        let hasher = Hasher::new();
        let stored = hasher.hash("correct horse battery".into()).await?;
        assert!(stored.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(stored.clone()))
                .await?
        );
        assert!(
            !hasher
                .verify("wrong horse battery".into(), Some(stored))
                .await?
        );
        assert!(!hasher.verify("not anyone's password".into(), None).await?);
        Ok(())
    }
}
