//! API keys and handles: two ways to find an object other than its name.
//! A key (`pk_…`, shown once, stored as its SHA-256) routes the request
//! that bears it to its object; a handle (an alias such as an email
//! address) stands for the object's name within its class.

use super::grants::key_grant;
use super::store::{KeyInfo, KeyTarget};
use super::{Accounts, AuthError, digest, random_id, random_secret};
use crate::object::normalize_name;
use crate::storage::catalog::now_ms;

/// The longest handle and key label, in bytes.
pub const MAX_HANDLE_BYTES: usize = 254;
const MAX_LABEL_BYTES: usize = 200;

/// A key just made: the only time its secret is seen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    pub key: String,
}

impl Accounts {
    /// Makes an API key for object `name` of `class`.
    pub async fn create_key(
        &self,
        class: &str,
        name: &str,
        label: &str,
    ) -> Result<NewKey, AuthError> {
        if label.len() > MAX_LABEL_BYTES || label.chars().any(char::is_control) {
            return Err(AuthError::Invalid(format!(
                "`label` must be at most {MAX_LABEL_BYTES} bytes, without control characters"
            )));
        }
        let key = random_secret("pk_")?;
        let target = KeyTarget {
            id: random_id("k_")?,
            class: class.to_string(),
            name: normalize_name(name).into_owned(),
        };
        let info = KeyInfo {
            id: target.id.clone(),
            label: label.to_string(),
            created_at: now_ms(),
        };
        let (hash, label, at) = (digest(&key), info.label.clone(), info.created_at);
        self.blocking(move |store| store.create_key(&target, &hash, &label, at))
            .await?;
        Ok(NewKey { info, key })
    }

    /// Where `key` leads, if it is a live key.
    pub async fn resolve_key(&self, key: &str) -> Result<Option<KeyTarget>, AuthError> {
        if !key.starts_with("pk_") {
            return Ok(None);
        }
        let hash = digest(key);
        match self.keys.get(&hash) {
            Ok(target) => Ok(target),
            Err(generation) => {
                let found = {
                    let hash = hash.clone();
                    self.blocking(move |store| store.key_by_hash(&hash)).await?
                };
                self.keys.fill(hash, found.clone(), generation);
                Ok(found)
            }
        }
    }

    pub async fn keys_of(&self, class: &str, name: &str) -> Result<Vec<KeyInfo>, AuthError> {
        let (class, name) = (class.to_string(), normalize_name(name).into_owned());
        Ok(self
            .blocking(move |store| store.keys_of(&class, &name))
            .await?)
    }

    /// Revokes key `id`; returns whether it existed.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, AuthError> {
        let hash = {
            let id = id.to_string();
            self.blocking(move |store| store.delete_key(&id)).await?
        };
        if let Some(hash) = &hash {
            self.keys.remove(hash);
            self.grants.end(&key_grant(id));
        }
        Ok(hash.is_some())
    }

    /// Revokes key `id` if it was made for object `name` of `class`;
    /// returns whether it was.
    pub async fn revoke_key_of(
        &self,
        class: &str,
        name: &str,
        id: &str,
    ) -> Result<bool, AuthError> {
        let hash = {
            let (c, n, i) = (
                class.to_string(),
                normalize_name(name).into_owned(),
                id.to_string(),
            );
            self.blocking(move |store| store.delete_key_of(&c, &n, &i))
                .await?
        };
        if let Some(hash) = &hash {
            self.keys.remove(hash);
            self.grants.end(&key_grant(id));
        }
        Ok(hash.is_some())
    }

    /// Points `handle` of `class` at object `name`.
    pub async fn set_handle(
        &self,
        class: &str,
        handle: &str,
        name: &str,
    ) -> Result<String, AuthError> {
        let handle = normalize_handle(handle)?;
        let (c, h, n) = (
            class.to_string(),
            handle.clone(),
            normalize_name(name).into_owned(),
        );
        self.blocking(move |store| store.set_handle(&c, &h, &n, now_ms()))
            .await?;
        self.forget_handle(class, &handle);
        Ok(handle)
    }

    /// Points `handle` of `class` at object `name` unless it stands for
    /// another object already: the handle as stored, or `None` when it is
    /// taken. The check and the write are one step.
    pub async fn claim_handle(
        &self,
        class: &str,
        handle: &str,
        name: &str,
    ) -> Result<Option<String>, AuthError> {
        let handle = normalize_handle(handle)?;
        let name = normalize_name(name).into_owned();
        let (c, h, n) = (class.to_string(), handle.clone(), name.clone());
        let holder = self
            .blocking(move |store| store.claim_handle(&c, &h, &n, now_ms()))
            .await?;
        self.forget_handle(class, &handle);
        Ok((holder == name).then_some(handle))
    }

    /// The name `handle` of `class` stands for.
    pub async fn resolve_handle(
        &self,
        class: &str,
        handle: &str,
    ) -> Result<Option<String>, AuthError> {
        let Ok(handle) = normalize_handle(handle) else {
            return Ok(None);
        };
        let key = (class.to_string(), handle);
        match self.handles.get(&key) {
            Ok(name) => Ok(name),
            Err(generation) => {
                let name = {
                    let (class, handle) = key.clone();
                    self.blocking(move |store| store.handle(&class, &handle))
                        .await?
                };
                self.handles.fill(key, name.clone(), generation);
                Ok(name)
            }
        }
    }

    pub async fn handles_of(&self, class: &str, name: &str) -> Result<Vec<String>, AuthError> {
        let (class, name) = (class.to_string(), normalize_name(name).into_owned());
        Ok(self
            .blocking(move |store| store.handles_of(&class, &name))
            .await?)
    }

    /// Removes `handle` of `class`; returns whether it existed.
    pub async fn delete_handle(&self, class: &str, handle: &str) -> Result<bool, AuthError> {
        let handle = normalize_handle(handle)?;
        let (c, h) = (class.to_string(), handle.clone());
        let deleted = self
            .blocking(move |store| store.delete_handle(&c, &h))
            .await?;
        self.forget_handle(class, &handle);
        Ok(deleted)
    }

    /// Drops the keys and handles of a deleted object.
    pub async fn forget_object(&self, class: &str, name: &str) -> Result<(), AuthError> {
        let (c, n) = (class.to_string(), name.to_string());
        let keys = self
            .blocking(move |store| store.forget_object(&c, &n))
            .await?;
        for (id, hash) in &keys {
            self.keys.remove(hash);
            self.grants.end(&key_grant(id));
        }
        self.handles
            .remove_where(|(c, _), target| c == class && target.as_deref() == Some(name));
        Ok(())
    }

    fn forget_handle(&self, class: &str, handle: &str) {
        self.handles
            .remove(&(class.to_string(), handle.to_string()));
    }
}

/// Handles are compared without ASCII case (like email addresses) and in
/// Unicode NFC, as object names are.
fn normalize_handle(handle: &str) -> Result<String, AuthError> {
    let valid = !handle.is_empty()
        && handle.len() <= MAX_HANDLE_BYTES
        && !handle
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if valid {
        Ok(normalize_name(handle).to_ascii_lowercase())
    } else {
        Err(AuthError::Invalid(format!(
            "a handle must be 1 to {MAX_HANDLE_BYTES} bytes, without '/', spaces or control characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthSettings;
    use crate::storage::Durability;

    fn accounts(dir: &std::path::Path) -> Accounts {
        Accounts::open(
            dir,
            Durability::Normal,
            AuthSettings::default(),
            crate::storage::shared_writes::Writes::Direct,
        )
        .expect("accounts open")
    }

    #[tokio::test]
    async fn a_claimed_handle_is_not_taken_from_its_object() {
        let dir = tempfile::tempdir().expect("temp dir");
        let accounts = accounts(dir.path());
        let claim = |name: &'static str, handle: &'static str| {
            let accounts = &accounts;
            async move { accounts.claim_handle("inbox", handle, name).await }
        };
        assert_eq!(
            claim("a", "Alice").await.ok().flatten().as_deref(),
            Some("alice")
        );
        assert_eq!(claim("b", "alice").await.ok().flatten(), None, "taken");
        assert_eq!(
            claim("b", "ALICE").await.ok().flatten(),
            None,
            "without case"
        );
        assert_eq!(
            claim("a", "alice").await.ok().flatten().as_deref(),
            Some("alice"),
            "claiming one's own handle again is fine"
        );
        let name = accounts
            .resolve_handle("inbox", "alice")
            .await
            .ok()
            .flatten();
        assert_eq!(name.as_deref(), Some("a"));
        assert!(claim("a", "a b").await.is_err(), "an invalid handle");
    }

    #[tokio::test]
    async fn a_key_is_revoked_only_through_its_own_object() {
        let dir = tempfile::tempdir().expect("temp dir");
        let accounts = accounts(dir.path());
        let key = accounts
            .create_key("inbox", "a", "owner")
            .await
            .expect("a key");
        let id = &key.info.id;
        let revoked = accounts.revoke_key_of("inbox", "b", id).await.ok();
        assert_eq!(revoked, Some(false), "another object's key");
        let revoked = accounts.revoke_key_of("other", "a", id).await.ok();
        assert_eq!(revoked, Some(false), "another class's key");
        let target = accounts.resolve_key(&key.key).await.ok().flatten();
        assert!(target.is_some(), "still live");
        let revoked = accounts.revoke_key_of("inbox", "a", id).await.ok();
        assert_eq!(revoked, Some(true));
        let target = accounts.resolve_key(&key.key).await.ok().flatten();
        assert!(target.is_none(), "revoked at once");
    }
}
