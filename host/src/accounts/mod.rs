//! Built-in accounts: users with Argon2id-hashed passwords, sessions as
//! signed tokens with refresh and revocation, organizations with roles,
//! and the API keys and handles that route requests to objects. All of it
//! lives in the catalog's database; what every request needs (token
//! checks, roles, keys, handles) is answered from memory.

mod cache;
mod caller;
mod error;
mod grants;
mod keys;
mod orgs;
mod password;
mod rate_limit;
mod secrets;
mod shared_rows;
mod store;
mod token;
mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;

pub use caller::{Caller, Role, User};
pub use error::AuthError;
pub use grants::{Admission, Revocation};
pub use rate_limit::FailureThrottle;
pub(crate) use secrets::random_id;
pub(crate) use store::SCHEMA;
pub use store::{KeyInfo, Member, OrgMembership, UserInfo};

use self::cache::Cache;
use self::grants::{Grants, session_grant};
use self::password::Hasher;
use self::rate_limit::RateLimiter;
use self::secrets::{digest, random_secret};
use self::store::{KeyTarget, Store};
use self::token::{Claims, Signer, TokenError};
use crate::config::AuthSettings;
use crate::storage::Durability;
use crate::storage::catalog::now_ms;
use crate::storage::shared_writes::Writes;

/// Entries each lookup cache keeps at most.
const CACHE_CAPACITY: u64 = 100_000;

/// Wrong admin tokens one client address may give per minute.
const ADMIN_FAILURES_PER_MINUTE: u32 = 10;

/// A new session: what signup, login and refresh answer with. Times are
/// milliseconds since the Unix epoch.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub user: User,
    /// The access token: `Authorization: Bearer <token>`.
    pub token: String,
    pub token_expires_at: i64,
    /// Trades for a new token (and a new refresh token) at
    /// `POST /auth/refresh` until the session expires.
    pub refresh_token: String,
    pub session_expires_at: i64,
}

/// A request's verified token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub session: String,
    pub expires_at: i64,
}

pub struct Accounts {
    store: Arc<Store>,
    settings: AuthSettings,
    signer: Signer,
    hasher: Hasher,
    /// Sessions ended while tokens of theirs may still be unexpired, with
    /// when they ended.
    revoked: Mutex<HashMap<String, i64>>,
    /// Failed logins per account and client address: an attacker
    /// elsewhere cannot lock the owner out.
    failures_per_account: RateLimiter,
    attempts_per_address: RateLimiter,
    /// Member additions naming an email that has no account, per user
    /// adding: held to the failed-login limit, so members cannot probe
    /// which addresses have accounts.
    failed_lookups_per_user: RateLimiter,
    admin_throttle: FailureThrottle,
    roles: Cache<(String, String), Option<Role>>,
    keys: Cache<String, Option<KeyTarget>>,
    handles: Cache<(String, String), Option<String>>,
    /// What open WebSockets and event streams were admitted with.
    grants: Grants,
}

impl Accounts {
    /// Opens the accounts' tables in the catalog of `data_dir`; tokens are
    /// signed with the configured secret, or one made on first start.
    pub fn open(
        data_dir: &Path,
        durability: Durability,
        settings: AuthSettings,
        writes: Writes,
    ) -> anyhow::Result<Self> {
        let store = Store::open(data_dir, durability, writes)?;
        let key = match &settings.secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => store.signing_key()?,
        };
        let expired = store.delete_expired_sessions(now_ms())?;
        if expired > 0 {
            tracing::info!(expired, "expired sessions deleted");
        }
        let since = now_ms().saturating_sub(millis(settings.token_ttl));
        let revoked = store.revoked_since(since)?.into_iter().collect();
        Ok(Accounts {
            signer: Signer::new(&key),
            hasher: Hasher::new(),
            revoked: Mutex::new(revoked),
            failures_per_account: RateLimiter::new(
                settings.max_failed_logins_per_account,
                settings.login_window,
            ),
            attempts_per_address: RateLimiter::new(
                settings.max_logins_per_address,
                settings.login_window,
            ),
            failed_lookups_per_user: RateLimiter::new(
                settings.max_failed_logins_per_account,
                settings.login_window,
            ),
            admin_throttle: FailureThrottle::new(
                ADMIN_FAILURES_PER_MINUTE,
                Duration::from_secs(60),
            ),
            roles: Cache::new(CACHE_CAPACITY),
            keys: Cache::new(CACHE_CAPACITY),
            handles: Cache::new(CACHE_CAPACITY),
            grants: Grants::default(),
            store: Arc::new(store),
            settings,
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Failed admin-token guesses per client address.
    pub fn admin_throttle(&self) -> &FailureThrottle {
        &self.admin_throttle
    }

    /// A revocation that fires when the admission's session, membership
    /// or key ends.
    pub fn watch(&self, admission: &Admission) -> Revocation {
        self.grants.watch(&admission.grants)
    }

    /// Creates an account and its first session.
    pub async fn signup(
        &self,
        email: &str,
        password: String,
        address: Option<IpAddr>,
    ) -> Result<Issued, AuthError> {
        self.count_attempt(address)?;
        let email = normalize_email(email)?;
        if let Some(weakness) =
            password::weakness(&password, &email, self.settings.min_password_length)
        {
            return Err(AuthError::WeakPassword(weakness));
        }
        let hash = self.hasher.hash(password).await?;
        let user = User {
            id: random_id("u_")?,
            email,
        };
        let created = {
            let user = user.clone();
            self.blocking(move |store| store.create_user(&user, &hash, now_ms()))
                .await?
        };
        if !created {
            return Err(AuthError::EmailTaken);
        }
        tracing::info!(user = %user.id, "account created");
        self.start_session(user).await
    }

    /// Checks a password and starts a session. Failures count against
    /// the account from this client address, and every attempt against
    /// the address.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        address: Option<IpAddr>,
    ) -> Result<Issued, AuthError> {
        self.count_attempt(address)?;
        let email = normalize_email(email).map_err(|_| AuthError::BadCredentials)?;
        // Counted before the (slow) check, so parallel guesses cannot all
        // slip under the limit; a success wipes the count.
        let failure_key = failure_key(&email, address);
        self.failures_per_account
            .take(&failure_key, Instant::now())
            .map_err(AuthError::RateLimited)?;
        let found = {
            let email = email.clone();
            self.blocking(move |store| store.user_by_email(&email))
                .await?
        };
        let (user, stored) = match found {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        let matches = self.hasher.verify(password, stored).await?;
        match user {
            Some(user) if matches => {
                self.failures_per_account.reset(&failure_key);
                if self.is_disabled(&user.id).await? {
                    return Err(AuthError::AccountDisabled);
                }
                self.start_session(user).await
            }
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Counts a signup or login from `address`, unless it is over its
    /// limit: each costs a password hash.
    fn count_attempt(&self, address: Option<IpAddr>) -> Result<(), AuthError> {
        let Some(address) = address else {
            return Ok(());
        };
        self.attempts_per_address
            .take(&rate_limit::address_key(address), Instant::now())
            .map_err(AuthError::RateLimited)
    }

    /// Verifies an access token: signed by us, unexpired, its session not
    /// ended. Answered from memory.
    pub fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        let claims = self
            .signer
            .verify(token, (now_ms() / 1000) as u64)
            .map_err(|error| match error {
                TokenError::Invalid => AuthError::InvalidToken,
                TokenError::Expired => AuthError::TokenExpired,
            })?;
        if self.lock_revoked().contains_key(&claims.sid) {
            return Err(AuthError::SessionEnded);
        }
        Ok(Authenticated {
            user: User {
                id: claims.sub,
                email: claims.email,
            },
            session: claims.sid,
            expires_at: (claims.exp as i64) * 1000,
        })
    }

    /// Whether `token` is one of podhost's: an API key or a token signed
    /// with our key (live or not). Such tokens never reach objects.
    pub fn is_credential(&self, token: &str) -> bool {
        token.starts_with("pk_")
            || token.starts_with("rt_")
            || self.signer.verify_signature(token).is_ok()
    }

    /// Trades a refresh token for a new access token and a new refresh
    /// token; the old one stops working. Using an old one again means it
    /// was copied: the whole session ends, its newest refresh token and
    /// its access tokens too, whoever holds them.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Issued, AuthError> {
        let old_hash = digest(refresh_token);
        let found = {
            let old_hash = old_hash.clone();
            self.blocking(move |store| store.session_by_refresh(&old_hash))
                .await?
        };
        let Some(session) = found else {
            let retired = self
                .blocking(move |store| store.session_by_retired_refresh(&old_hash))
                .await?;
            return match retired {
                Some(session) => {
                    tracing::warn!(%session, "a rotated refresh token was used again: the session is ended");
                    self.end_session(session).await?;
                    Err(AuthError::SessionEnded)
                }
                None => Err(AuthError::InvalidToken),
            };
        };
        if session.revoked || session.expires_at <= now_ms() {
            return Err(AuthError::SessionEnded);
        }
        if self.is_disabled(&session.user.id).await? {
            return Err(AuthError::AccountDisabled);
        }
        let refresh_token = random_secret("rt_")?;
        let new_hash = digest(&refresh_token);
        let id = session.id.clone();
        let rotated = self
            .blocking(move |store| store.rotate_refresh(&id, &old_hash, &new_hash, now_ms()))
            .await?;
        if !rotated {
            // Another use of the same token rotated it first: reuse too.
            tracing::warn!(session = %session.id, "a refresh token was used twice at once: the session is ended");
            self.end_session(session.id).await?;
            return Err(AuthError::SessionEnded);
        }
        Ok(self.issue(session.user, session.id, refresh_token, session.expires_at))
    }

    /// Ends the session of an access token (expired or not) or of a
    /// refresh token; returns whether one was live.
    pub async fn logout(
        &self,
        token: Option<&str>,
        refresh_token: Option<&str>,
    ) -> Result<bool, AuthError> {
        let from_token = token
            .and_then(|token| self.signer.verify_signature(token).ok())
            .map(|claims| claims.sid);
        let session = match (from_token, refresh_token) {
            (Some(session), _) => session,
            (None, Some(refresh)) => {
                let hash = digest(refresh);
                self.blocking(move |store| store.session_by_refresh(&hash))
                    .await?
                    .ok_or(AuthError::InvalidToken)?
                    .id
            }
            (None, None) if token.is_some() => return Err(AuthError::InvalidToken),
            (None, None) => return Err(AuthError::Unauthenticated),
        };
        Ok(self.end_session(session).await?)
    }

    /// Ends a session at once: its access tokens (from memory) and its
    /// refresh token, and the connections opened with it. `false` if it
    /// had ended already.
    async fn end_session(&self, session: String) -> anyhow::Result<bool> {
        let now = now_ms();
        {
            let mut revoked = self.lock_revoked();
            let oldest = now.saturating_sub(millis(self.settings.token_ttl));
            revoked.retain(|_, at| *at >= oldest);
            revoked.insert(session.clone(), now);
        }
        self.grants.end(&session_grant(&session));
        self.blocking(move |store| store.revoke_session(&session, now))
            .await
    }

    async fn start_session(&self, user: User) -> Result<Issued, AuthError> {
        let session = random_id("s_")?;
        let refresh_token = random_secret("rt_")?;
        let now = now_ms();
        let expires_at = now.saturating_add(millis(self.settings.session_ttl));
        {
            let (session, user_id, hash) =
                (session.clone(), user.id.clone(), digest(&refresh_token));
            self.blocking(move |store| {
                store.create_session(&session, &user_id, &hash, now, expires_at)
            })
            .await?;
        }
        Ok(self.issue(user, session, refresh_token, expires_at))
    }

    /// A token for `session`, expiring after the token lifetime or with
    /// the session, whichever is first.
    fn issue(
        &self,
        user: User,
        session: String,
        refresh_token: String,
        session_expires_at: i64,
    ) -> Issued {
        let now = now_ms();
        let token_expires_at = now
            .saturating_add(millis(self.settings.token_ttl))
            .min(session_expires_at);
        let token = self.signer.sign(&Claims {
            sub: user.id.clone(),
            email: user.email.clone(),
            sid: session,
            iat: (now / 1000) as u64,
            exp: (token_expires_at / 1000) as u64,
        });
        Issued {
            user,
            token,
            token_expires_at,
            refresh_token,
            session_expires_at,
        }
    }

    /// Runs a catalog call on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || call(&store)).await?
    }

    fn lock_revoked(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.revoked.lock()
    }
}

/// Drops the API keys and handles of a deleted object, with the server
/// stopped (`podhost objects delete`).
pub fn forget_routes(data_dir: &Path, class: &str, name: &str) -> anyhow::Result<()> {
    Store::open(data_dir, Durability::Full, Writes::Direct)?.forget_object(class, name)?;
    Ok(())
}

/// The key failed logins are counted under: the account and the client's
/// address (by its /64 for IPv6).
fn failure_key(email: &str, address: Option<IpAddr>) -> String {
    match address {
        Some(address) => format!("{email} {}", rate_limit::address_key(address)),
        None => email.to_string(),
    }
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Emails are compared without case or surrounding spaces.
fn normalize_email(email: &str) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(AuthError::Invalid(
            "`email` must be an address like name@example.com (at most 254 bytes)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").ok().as_deref(),
            Some("alice@example.com")
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@c.d",
            "a@b@c.d",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
