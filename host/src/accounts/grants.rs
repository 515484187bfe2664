//! What keeps long-lived connections honest: a WebSocket or event stream
//! opened with a session, an organization membership or an API key
//! watches that grant, and ending the grant (logout, removal, revocation)
//! closes it at once instead of when it next reconnects.

use std::collections::HashMap;

use futures_util::future::select_all;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;

use super::{Caller, Role};

/// Grants being watched, by name (`session:…`, `member:…`, `key:…`).
#[derive(Default)]
pub struct Grants {
    watched: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Grants {
    /// A revocation that fires when any of `grants` ends.
    pub fn watch(&self, grants: &[String]) -> Revocation {
        let mut watched = self.lock();
        if watched.len() >= 1024 && watched.len().is_power_of_two() {
            watched.retain(|_, sender| sender.receiver_count() > 0);
        }
        Revocation(
            grants
                .iter()
                .map(|grant| {
                    watched
                        .entry(grant.clone())
                        .or_insert_with(|| watch::channel(false).0)
                        .subscribe()
                })
                .collect(),
        )
    }

    /// Ends `grant`: whatever watches it closes.
    pub fn end(&self, grant: &str) {
        if let Some(sender) = self.lock().remove(grant) {
            let _ = sender.send(true);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.watched.lock()
    }
}

pub fn session_grant(session: &str) -> String {
    format!("session:{session}")
}

pub fn member_grant(org: &str, user_id: &str) -> String {
    format!("member:{org}:{user_id}")
}

pub fn key_grant(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// Resolves when one of its grants ends; never, if it has none.
pub struct Revocation(Vec<watch::Receiver<bool>>);

impl Revocation {
    pub fn none() -> Self {
        Revocation(Vec::new())
    }

    pub async fn ended(mut self) {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.0.iter_mut().map(|receiver| {
            // A sender dropped without a word means the server is going
            // away: as good as ended.
            Box::pin(async move {
                let _ = receiver.wait_for(|ended| *ended).await;
            })
        });
        select_all(waits).await;
    }
}

/// Who a request is from, and the grants its connections depend on.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    pub caller: Option<Caller>,
    pub grants: Vec<String>,
}

impl Admission {
    /// No one in particular (a public class).
    pub fn anyone() -> Self {
        Admission::default()
    }

    /// The operator: nothing to revoke short of changing the config.
    pub fn admin() -> Self {
        Admission {
            caller: Some(Caller::Admin),
            grants: Vec::new(),
        }
    }

    pub fn user(user: super::User, session: &str) -> Self {
        Admission {
            caller: Some(Caller::User(user)),
            grants: vec![session_grant(session)],
        }
    }

    pub fn member(user: super::User, session: &str, org: &str, role: Role) -> Self {
        let grants = vec![session_grant(session), member_grant(org, &user.id)];
        Admission {
            caller: Some(Caller::Member {
                user,
                org: org.to_string(),
                role,
            }),
            grants,
        }
    }

    pub fn key(id: String) -> Self {
        Admission {
            grants: vec![key_grant(&id)],
            caller: Some(Caller::Key { id }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn ending_a_grant_fires_its_watchers_only() {
        let grants = Grants::default();
        let both = grants.watch(&[session_grant("s1"), key_grant("k1")]);
        let other = grants.watch(&[session_grant("s2")]);
        grants.end(&key_grant("k1"));
        tokio::time::timeout(Duration::from_secs(1), both.ended())
            .await
            .expect("ending k1 fires a watcher of k1");
        let still = tokio::time::timeout(Duration::from_millis(50), other.ended()).await;
        assert!(still.is_err(), "s2 is still live");
        let nothing =
            tokio::time::timeout(Duration::from_millis(10), Revocation::none().ended()).await;
        assert!(nothing.is_err());
    }
}
