//! The operator's side of accounts (`/admin/users`): finding users,
//! disabling and enabling them, deleting them. Disabling or deleting a
//! user ends their sessions at once: tokens are refused from memory and
//! the WebSockets and event streams opened with them close.

use super::store::UserInfo;
use super::{Accounts, AuthError, millis, normalize_email};
use crate::storage::catalog::now_ms;

/// Users listed at most when no email is given.
pub const MAX_LISTED: u32 = 1000;

impl Accounts {
    /// The user with `email`, if any; without one, the oldest users.
    pub async fn find_users(&self, email: Option<&str>) -> Result<Vec<UserInfo>, AuthError> {
        let email = email.map(normalize_email).transpose()?;
        Ok(self
            .blocking(move |store| store.users(email.as_deref(), MAX_LISTED))
            .await?)
    }

    pub async fn user_info(&self, id: &str) -> Result<UserInfo, AuthError> {
        let id = id.to_string();
        self.blocking(move |store| store.user(&id))
            .await?
            .ok_or(AuthError::UnknownUserId)
    }

    /// Disables a user (they can no longer log in or refresh) and ends
    /// their sessions; or enables them again (they log in anew).
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<UserInfo, AuthError> {
        let now = now_ms();
        let user = id.to_string();
        let found = self
            .blocking(move |store| store.set_disabled(&user, disabled, now))
            .await?;
        if !found {
            return Err(AuthError::UnknownUserId);
        }
        if disabled {
            let user = id.to_string();
            let ended = self
                .blocking(move |store| store.revoke_sessions_of(&user, now))
                .await?;
            self.sessions_ended(ended, now);
            tracing::info!(user = %id, "account disabled");
        } else {
            tracing::info!(user = %id, "account enabled");
        }
        self.user_info(id).await
    }

    /// Deletes a user, their sessions and memberships; their per-user
    /// objects are the caller's to delete or keep.
    pub async fn delete_user(&self, id: &str) -> Result<(), AuthError> {
        let now = now_ms();
        let user = id.to_string();
        let ended = self
            .blocking(move |store| store.delete_user(&user, now))
            .await?
            .ok_or(AuthError::UnknownUserId)?;
        self.sessions_ended(ended, now);
        self.roles.remove_where(|(_, user), _| user == id);
        tracing::info!(user = %id, "account deleted");
        Ok(())
    }

    /// Whether the user may not log in or refresh.
    pub(super) async fn is_disabled(&self, id: &str) -> Result<bool, AuthError> {
        let id = id.to_string();
        Ok(self.blocking(move |store| store.is_disabled(&id)).await?)
    }

    /// Refuses the tokens of `sessions` from now on and closes what was
    /// opened with them.
    fn sessions_ended(&self, sessions: Vec<String>, now: i64) {
        {
            let mut revoked = self.lock_revoked();
            let oldest = now.saturating_sub(millis(self.settings.token_ttl));
            revoked.retain(|_, at| *at >= oldest);
            for session in &sessions {
                revoked.insert(session.clone(), now);
            }
        }
        for session in &sessions {
            self.grants.end(&super::grants::session_grant(session));
        }
    }
}
