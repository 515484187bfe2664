//! In a cluster, rows another node wrote (a logout, a revoked key, a
//! member removed, a handle moved) reach this node's copy of the catalog;
//! what the accounts keep in memory follows here, as the local write
//! paths do after their own store call. The node that wrote is told too,
//! after it changed its memory or before: every step is idempotent.

use std::collections::HashSet;

use super::grants::{key_grant, member_grant, session_grant};
use super::{Accounts, millis};
use crate::storage::catalog::now_ms;
use crate::storage::shared::RowChange;

impl Accounts {
    /// Follows rows of the accounts' tables applied to the local copy;
    /// rows of other tables are ignored. Cheap, never blocks on the store:
    /// it runs on the task that applies the rows.
    pub fn shared_rows_applied(&self, changes: &[RowChange]) {
        let mut ended_sessions = Vec::new();
        let mut removed_keys = HashSet::new();
        let mut removed_users = HashSet::new();
        for change in changes {
            match change.table {
                // A logout, a reused refresh token, a disabled user; a
                // deleted user's sessions that were live.
                "sessions" | "deleted_sessions" => {
                    if let (Some(id), Some(at)) = (change.key_text(0), change.integer("revoked_at"))
                    {
                        ended_sessions.push((id.to_string(), at));
                    }
                }
                "users" if change.deleted() => {
                    if let Some(id) = change.key_text(0) {
                        removed_users.insert(id.to_string());
                    }
                }
                // Added, role changed or removed: as `change_member`.
                "org_members" => {
                    if let (Some(org), Some(user)) = (change.key_text(0), change.key_text(1)) {
                        self.roles.remove(&(org.to_string(), user.to_string()));
                        self.grants.end(&member_grant(org, user));
                    }
                }
                "api_keys" => match change.text("hash") {
                    // A new key: no lookup may keep a miss for it.
                    Some(hash) => self.keys.remove(&hash.to_string()),
                    // A deleted row names only its id, not the hash the
                    // cache is keyed by.
                    None if change.deleted() => {
                        if let Some(id) = change.key_text(0) {
                            removed_keys.insert(id.to_string());
                        }
                    }
                    None => {}
                },
                "handles" => {
                    if let (Some(class), Some(handle)) = (change.key_text(0), change.key_text(1)) {
                        self.handles
                            .remove(&(class.to_string(), handle.to_string()));
                    }
                }
                _ => {}
            }
        }
        self.sessions_revoked(&ended_sessions);
        if !removed_keys.is_empty() {
            self.keys.remove_where(|_, target| {
                target
                    .as_ref()
                    .is_some_and(|target| removed_keys.contains(&target.id))
            });
            for id in &removed_keys {
                self.grants.end(&key_grant(id));
            }
        }
        if !removed_users.is_empty() {
            self.roles
                .remove_where(|(_, user), _| removed_users.contains(user));
        }
    }

    /// Refuses the tokens of sessions ended elsewhere (with when) and
    /// closes what was opened with them here. A session that ended longer
    /// than a token's lifetime ago has no live token left to refuse.
    fn sessions_revoked(&self, sessions: &[(String, i64)]) {
        if sessions.is_empty() {
            return;
        }
        let oldest = now_ms().saturating_sub(millis(self.settings.token_ttl));
        {
            let mut revoked = self.lock_revoked();
            revoked.retain(|_, at| *at >= oldest);
            for (session, at) in sessions {
                if *at >= oldest {
                    revoked.insert(session.clone(), *at);
                }
            }
        }
        for (session, _) in sessions {
            self.grants.end(&session_grant(session));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Map, Value, json};

    use super::*;
    use crate::accounts::Admission;
    use crate::accounts::store::Store;
    use crate::config::AuthSettings;
    use crate::storage::Durability;
    use crate::storage::shared_writes::Writes;

    fn accounts(dir: &std::path::Path) -> Accounts {
        Accounts::open(
            dir,
            Durability::Normal,
            AuthSettings::default(),
            Writes::Direct,
        )
        .expect("accounts open")
    }

    /// Another node's write, as the applier leaves it: in the catalog,
    /// through a connection of its own, with nothing in this memory.
    fn other_node(dir: &std::path::Path) -> Store {
        Store::open(dir, Durability::Normal, Writes::Direct).expect("a second connection")
    }

    fn row(table: &'static str, key: &[&str], columns: Value) -> RowChange {
        let row: Map<String, Value> = serde_json::from_value(columns).expect("a row");
        RowChange {
            table,
            key: key.iter().map(|part| json!(part)).collect(),
            row: Some(row),
        }
    }

    fn deleted(table: &'static str, key: &[&str]) -> RowChange {
        RowChange {
            table,
            key: key.iter().map(|part| json!(part)).collect(),
            row: None,
        }
    }

    #[tokio::test]
    async fn a_session_ended_on_another_node_is_refused_here_and_its_sockets_close() {
        let dir = tempfile::tempdir().expect("temp dir");
        let accounts = accounts(dir.path());
        let issued = accounts
            .signup("alice@example.com", "correct horse battery".into(), None)
            .await
            .expect("signed up");
        let session = accounts
            .authenticate(&issued.token)
            .expect("a live token")
            .session;
        let socket = accounts.watch(&Admission::user(issued.user.clone(), &session));
        let at = now_ms();
        assert!(
            other_node(dir.path())
                .revoke_session(&session, at)
                .expect("revoked")
        );
        assert!(
            accounts.authenticate(&issued.token).is_ok(),
            "memory does not know yet"
        );
        let change = row(
            "sessions",
            &[&session],
            json!({ "id": session, "user_id": issued.user.id, "revoked_at": at }),
        );
        accounts.shared_rows_applied(std::slice::from_ref(&change));
        assert!(matches!(
            accounts.authenticate(&issued.token),
            Err(crate::accounts::AuthError::SessionEnded)
        ));
        tokio::time::timeout(Duration::from_secs(1), socket.ended())
            .await
            .expect("the socket admitted with the session closes");
        // Told again (the writing node is told too): nothing changes.
        accounts.shared_rows_applied(&[change]);
        assert!(accounts.authenticate(&issued.token).is_err());
    }

    #[tokio::test]
    async fn a_live_session_row_and_foreign_tables_change_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let accounts = accounts(dir.path());
        let issued = accounts
            .signup("bob@example.com", "correct horse battery".into(), None)
            .await
            .expect("signed up");
        let session = accounts.authenticate(&issued.token).expect("live").session;
        accounts.shared_rows_applied(&[
            row(
                "sessions",
                &[&session],
                json!({ "id": session, "revoked_at": null }),
            ),
            row("tenants", &["t"], json!({ "name": "t" })),
            deleted("class_versions", &["c", "1"]),
        ]);
        assert!(accounts.authenticate(&issued.token).is_ok());
    }

    #[tokio::test]
    async fn a_key_revoked_on_another_node_stops_routing_here() {
        let dir = tempfile::tempdir().expect("temp dir");
        let accounts = accounts(dir.path());
        let key = accounts
            .create_key("inbox", "a", "owner")
            .await
            .expect("a key");
        let kept = accounts
            .create_key("inbox", "b", "other")
            .await
            .expect("a key");
        // Both cached now.
        for made in [&key, &kept] {
            let target = accounts.resolve_key(&made.key).await.ok().flatten();
            assert!(target.is_some());
        }
        let socket = accounts.watch(&Admission::key(key.info.id.clone()));
        let removed = other_node(dir.path())
            .delete_key(&key.info.id)
            .expect("deleted");
        assert!(removed.is_some());
        let cached = accounts.resolve_key(&key.key).await.ok().flatten();
        assert!(cached.is_some(), "the cache does not know yet");
        accounts.shared_rows_applied(&[deleted("api_keys", &[&key.info.id])]);
        let target = accounts.resolve_key(&key.key).await.ok().flatten();
        assert!(target.is_none(), "refused once the row is gone");
        tokio::time::timeout(Duration::from_secs(1), socket.ended())
            .await
            .expect("what the key opened closes");
        let other = accounts.resolve_key(&kept.key).await.ok().flatten();
        assert_eq!(other.map(|target| target.name).as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_handle_or_member_changed_on_another_node_is_read_afresh() {
        let dir = tempfile::tempdir().expect("temp dir");
        let accounts = accounts(dir.path());
        // A miss is cached too.
        assert_eq!(
            accounts
                .resolve_handle("inbox", "alice")
                .await
                .ok()
                .flatten(),
            None
        );
        other_node(dir.path())
            .set_handle("inbox", "alice", "a", now_ms())
            .expect("set");
        accounts.shared_rows_applied(&[row(
            "handles",
            &["inbox", "alice"],
            json!({ "class": "inbox", "handle": "alice", "name": "a" }),
        )]);
        assert_eq!(
            accounts
                .resolve_handle("inbox", "alice")
                .await
                .ok()
                .flatten()
                .as_deref(),
            Some("a")
        );

        let owner = accounts
            .signup("carol@example.com", "correct horse battery".into(), None)
            .await
            .expect("signed up")
            .user;
        let org = accounts.create_org(&owner, "team").await.expect("an org");
        let member = accounts
            .signup("dave@example.com", "correct horse battery".into(), None)
            .await
            .expect("signed up");
        accounts
            .set_member(
                &org.id,
                &owner,
                "dave@example.com",
                crate::accounts::Role::Member,
            )
            .await
            .expect("added");
        assert!(accounts.role(&org.id, &member.user).await.is_ok(), "cached");
        let session = accounts.authenticate(&member.token).expect("live").session;
        let socket = accounts.watch(&Admission::member(
            member.user.clone(),
            &session,
            &org.id,
            crate::accounts::Role::Member,
        ));
        let removed = other_node(dir.path())
            .update_member(&org.id, &owner.id, &member.user.id, None, now_ms())
            .expect("removed");
        assert!(matches!(
            removed,
            crate::accounts::store::MemberChange::Done
        ));
        accounts.shared_rows_applied(&[deleted("org_members", &[&org.id, &member.user.id])]);
        assert!(accounts.role(&org.id, &member.user).await.is_err());
        tokio::time::timeout(Duration::from_secs(1), socket.ended())
            .await
            .expect("what the membership opened closes");
    }
}
