//! The accounts' tables in the catalog's database: users, sessions,
//! organizations and their members, API keys and handles. Every call is
//! synchronous; callers run them on blocking threads.

use std::path::Path;

use parking_lot::{Mutex, MutexGuard};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde::Serialize;

use super::caller::{Role, User};
use super::secrets::random_bytes;
use crate::storage::Durability;
use crate::storage::shared_writes::Writes;

pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id),
        refresh_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE INDEX IF NOT EXISTS sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
    CREATE TABLE IF NOT EXISTS orgs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS org_members (
        org_id TEXT NOT NULL REFERENCES orgs (id),
        user_id TEXT NOT NULL REFERENCES users (id),
        role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
        added_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS org_members_by_user ON org_members (user_id);
    CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        class TEXT NOT NULL,
        name TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS api_keys_by_object ON api_keys (class, name);
    CREATE TABLE IF NOT EXISTS handles (
        class TEXT NOT NULL,
        handle TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (class, handle)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS handles_by_object ON handles (class, name);
    CREATE TABLE IF NOT EXISTS retired_refresh_tokens (
        hash TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        retired_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS retired_refresh_by_session ON retired_refresh_tokens (session_id);
    CREATE TABLE IF NOT EXISTS disabled_users (
        user_id TEXT PRIMARY KEY REFERENCES users (id),
        disabled_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id);
    CREATE TABLE IF NOT EXISTS deleted_sessions (
        id TEXT PRIMARY KEY,
        revoked_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS settings (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
";

/// A session as stored. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    pub user: User,
    pub expires_at: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrgMembership {
    pub id: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub added_at: i64,
}

pub enum MemberChange {
    Done,
    /// The actor is not a member.
    NotAMember,
    /// The user to remove is not a member.
    NoSuchMember,
    RoleTooLow(Role),
    LastOwner,
}

/// Where an API key leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTarget {
    pub id: String,
    pub class: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub label: String,
    pub created_at: i64,
}

/// A user as the operator sees them (`/admin/users`).
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub created_at: i64,
    pub disabled: bool,
    pub disabled_at: Option<i64>,
}

pub struct Store {
    conn: Mutex<Connection>,
    writes: Writes,
}

impl Store {
    /// Opens the catalog's database (the catalog has created it) with its
    /// own connection.
    pub fn open(data_dir: &Path, durability: Durability, writes: Writes) -> anyhow::Result<Self> {
        let conn = crate::storage::catalog::connect(data_dir, durability)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
            writes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// Runs `write` as one transaction (see `storage::shared_writes`).
    fn write<T>(
        &self,
        write: impl FnMut(&mut Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.writes.run(&self.conn, write)
    }

    /// The key tokens are signed with: made and kept on first use.
    pub fn signing_key(&self) -> anyhow::Result<Vec<u8>> {
        self.write(|conn| {
                    let key = random_bytes::<32>()?;
            conn.execute(
                "INSERT INTO settings (key, value) VALUES ('signing_key', ?1) ON CONFLICT DO NOTHING",
                [&key[..]],
            )?;
            Ok(conn.query_row(
                "SELECT value FROM settings WHERE key = 'signing_key'",
                [],
                |row| row.get(0),
            )?)
        })
    }

    /// Creates a user; `Ok(false)` if the email is taken.
    pub fn create_user(&self, user: &User, password_hash: &str, now: i64) -> anyhow::Result<bool> {
        self.write(|conn| {
            let inserted = conn.execute(
                "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user.id, user.email, password_hash, now],
            );
            match inserted {
                Ok(_) => Ok(true),
                Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Ok(false)
                }
                Err(error) => Err(error.into()),
            }
        })
    }

    /// The user with this email and their password hash.
    pub fn user_by_email(&self, email: &str) -> anyhow::Result<Option<(User, String)>> {
        self.writes.read_fresh(&self.conn, |conn| {
            Ok(conn
                .query_row(
                    "SELECT id, email, password_hash FROM users WHERE email = ?1",
                    [email],
                    |row| {
                        Ok((
                            User {
                                id: row.get(0)?,
                                email: row.get(1)?,
                            },
                            row.get(2)?,
                        ))
                    },
                )
                .optional()?)
        })
    }

    pub fn create_session(
        &self,
        id: &str,
        user_id: &str,
        refresh_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO sessions (id, user_id, refresh_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, user_id, refresh_hash, now, expires_at],
            )?;
            Ok(())
        })
    }

    const SESSION: &str = "SELECT s.id, u.id, u.email, s.expires_at, s.revoked_at IS NOT NULL
        FROM sessions s JOIN users u ON u.id = s.user_id";

    fn session_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
        Ok(SessionRow {
            id: row.get(0)?,
            user: User {
                id: row.get(1)?,
                email: row.get(2)?,
            },
            expires_at: row.get(3)?,
            revoked: row.get(4)?,
        })
    }

    pub fn session_by_refresh(&self, refresh_hash: &str) -> anyhow::Result<Option<SessionRow>> {
        self.writes.read_fresh(&self.conn, |conn| {
            Ok(conn
                .query_row(
                    &format!("{} WHERE s.refresh_hash = ?1", Self::SESSION),
                    [refresh_hash],
                    Self::session_row,
                )
                .optional()?)
        })
    }

    /// Replaces a live session's refresh token and remembers the old one
    /// (to catch its reuse); `false` if the session was revoked or its
    /// token rotated meanwhile.
    pub fn rotate_refresh(
        &self,
        id: &str,
        old_hash: &str,
        new_hash: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        self.write(|conn| {
            let tx = conn.savepoint()?;
            let rotated = tx.execute(
                "UPDATE sessions SET refresh_hash = ?3
                 WHERE id = ?1 AND refresh_hash = ?2 AND revoked_at IS NULL",
                params![id, old_hash, new_hash],
            )? > 0;
            if rotated {
                tx.execute(
                    "INSERT OR IGNORE INTO retired_refresh_tokens (hash, session_id, retired_at)
                     VALUES (?1, ?2, ?3)",
                    params![old_hash, id, now],
                )?;
            }
            tx.commit()?;
            Ok(rotated)
        })
    }

    /// The session a rotated (no longer valid) refresh token belonged to.
    pub fn session_by_retired_refresh(&self, hash: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .lock()
            .query_row(
                "SELECT session_id FROM retired_refresh_tokens WHERE hash = ?1",
                [hash],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Ends a session; `false` if it had already ended.
    pub fn revoke_session(&self, id: &str, now: i64) -> anyhow::Result<bool> {
        self.write(|conn| {
            Ok(conn.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )? > 0)
        })
    }

    /// Deletes sessions that expired before `now`, with their retired
    /// refresh tokens; returns how many.
    pub fn delete_expired_sessions(&self, now: i64) -> anyhow::Result<usize> {
        self.write(|conn| {
            let deleted = conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
            conn.execute("DELETE FROM deleted_sessions WHERE expires_at < ?1", [now])?;
            conn.execute(
                "DELETE FROM retired_refresh_tokens
                 WHERE session_id NOT IN (SELECT id FROM sessions)",
                [],
            )?;
            Ok(deleted)
        })
    }

    /// Sessions revoked at or after `since`.
    pub fn revoked_since(&self, since: i64) -> anyhow::Result<Vec<(String, i64)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, revoked_at FROM sessions WHERE revoked_at >= ?1
                 UNION ALL SELECT id, revoked_at FROM deleted_sessions WHERE revoked_at >= ?1",
        )?;
        let rows = stmt.query_map([since], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn create_org(&self, id: &str, name: &str, owner: &str, now: i64) -> anyhow::Result<()> {
        self.write(|conn| {
                    let tx = conn.savepoint()?;
            tx.execute(
                "INSERT INTO orgs (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![id, name, now],
            )?;
            tx.execute(
                "INSERT INTO org_members (org_id, user_id, role, added_at) VALUES (?1, ?2, 'owner', ?3)",
                params![id, owner, now],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The organizations `user_id` belongs to, with their role.
    pub fn orgs_of(&self, user_id: &str) -> anyhow::Result<Vec<OrgMembership>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT o.id, o.name, m.role FROM org_members m JOIN orgs o ON o.id = m.org_id
             WHERE m.user_id = ?1 ORDER BY o.created_at, o.id",
        )?;
        let rows = stmt.query_map([user_id], |row| {
            Ok(OrgMembership {
                id: row.get(0)?,
                name: row.get(1)?,
                role: role_column(row, 2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `user_id`'s role in `org`, if a member.
    pub fn role(&self, org: &str, user_id: &str) -> anyhow::Result<Option<Role>> {
        Ok(self
            .lock()
            .prepare_cached("SELECT role FROM org_members WHERE org_id = ?1 AND user_id = ?2")?
            .query_row([org, user_id], |row| role_column(row, 0))
            .optional()?)
    }

    pub fn members(&self, org: &str) -> anyhow::Result<Vec<Member>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT u.id, u.email, m.role, m.added_at FROM org_members m
             JOIN users u ON u.id = m.user_id WHERE m.org_id = ?1 ORDER BY m.added_at, u.email",
        )?;
        let rows = stmt.query_map([org], |row| {
            Ok(Member {
                id: row.get(0)?,
                email: row.get(1)?,
                role: role_column(row, 2)?,
                added_at: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Member `actor` adds `target`, changes their role (`Some`) or removes
    /// them (`None`), if `actor`'s role allows it and the organization
    /// keeps an owner: all in one transaction, so concurrent changes
    /// cannot combine into one that neither would have been allowed.
    pub fn update_member(
        &self,
        org: &str,
        actor: &str,
        target: &str,
        role: Option<Role>,
        now: i64,
    ) -> anyhow::Result<MemberChange> {
        self.write(|conn| {
                    let tx = conn.savepoint()?;
            let role_of = |user: &str| {
                tx.query_row(
                    "SELECT role FROM org_members WHERE org_id = ?1 AND user_id = ?2",
                    [org, user],
                    |row| role_column(row, 0),
                )
                .optional()
            };
            let Some(own) = role_of(actor)? else {
                return Ok(MemberChange::NotAMember);
            };
            let current = role_of(target)?;
            let needed = match role {
                None if actor == target => Role::Member,
                None => match current {
                    Some(current) => current.max(Role::Admin),
                    None => return Ok(MemberChange::NoSuchMember),
                },
                Some(Role::Owner) => Role::Owner,
                Some(_) if current == Some(Role::Owner) => Role::Owner,
                Some(_) => Role::Admin,
            };
            if own < needed {
                return Ok(MemberChange::RoleTooLow(needed));
            }
            match role {
                None => tx.execute(
                    "DELETE FROM org_members WHERE org_id = ?1 AND user_id = ?2",
                    [org, target],
                )?,
                Some(role) => tx.execute(
                    "INSERT INTO org_members (org_id, user_id, role, added_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                    params![org, target, role.as_str(), now],
                )?,
            };
            let owners: i64 = tx.query_row(
                "SELECT count(*) FROM org_members WHERE org_id = ?1 AND role = 'owner'",
                [org],
                |row| row.get(0),
            )?;
            if owners == 0 {
                return Ok(MemberChange::LastOwner);
            }
            tx.commit()?;
            Ok(MemberChange::Done)
        })
    }

    const USER_INFO: &str = "SELECT u.id, u.email, u.created_at, d.disabled_at
        FROM users u LEFT JOIN disabled_users d ON d.user_id = u.id";

    fn user_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserInfo> {
        let disabled_at: Option<i64> = row.get(3)?;
        Ok(UserInfo {
            id: row.get(0)?,
            email: row.get(1)?,
            created_at: row.get(2)?,
            disabled: disabled_at.is_some(),
            disabled_at,
        })
    }

    /// Users, by email if given, else the first `limit` by creation.
    pub fn users(&self, email: Option<&str>, limit: u32) -> anyhow::Result<Vec<UserInfo>> {
        let conn = self.lock();
        let rows = match email {
            Some(email) => conn
                .prepare_cached(&format!("{} WHERE u.email = ?1", Self::USER_INFO))?
                .query_map([email], Self::user_info)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare_cached(&format!(
                    "{} ORDER BY u.created_at, u.id LIMIT ?1",
                    Self::USER_INFO
                ))?
                .query_map([limit], Self::user_info)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }

    pub fn user(&self, id: &str) -> anyhow::Result<Option<UserInfo>> {
        Ok(self
            .lock()
            .query_row(
                &format!("{} WHERE u.id = ?1", Self::USER_INFO),
                [id],
                Self::user_info,
            )
            .optional()?)
    }

    pub fn is_disabled(&self, user_id: &str) -> anyhow::Result<bool> {
        Ok(self
            .lock()
            .query_row(
                "SELECT 1 FROM disabled_users WHERE user_id = ?1",
                [user_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Disables or enables a user; `false` if there is no such user.
    pub fn set_disabled(&self, user_id: &str, disabled: bool, now: i64) -> anyhow::Result<bool> {
        self.write(|conn| {
            let exists = conn
                .query_row("SELECT 1 FROM users WHERE id = ?1", [user_id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(false);
            }
            if disabled {
                conn.execute(
                    "INSERT INTO disabled_users (user_id, disabled_at) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    params![user_id, now],
                )?;
            } else {
                conn.execute("DELETE FROM disabled_users WHERE user_id = ?1", [user_id])?;
            }
            Ok(true)
        })
    }

    /// Ends every live session of a user; returns their ids.
    pub fn revoke_sessions_of(&self, user_id: &str, now: i64) -> anyhow::Result<Vec<String>> {
        self.write(|conn| {
            let tx = conn.savepoint()?;
            let ids = tx
                .prepare("SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL")?
                .query_map([user_id], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            tx.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
                params![user_id, now],
            )?;
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Deletes a user with their sessions and memberships; the ids of the
    /// sessions that were live, or `None` if there was no such user. The
    /// live ones are remembered in `deleted_sessions` until they would
    /// have expired, so their tokens stay refused across restarts.
    pub fn delete_user(&self, user_id: &str, now: i64) -> anyhow::Result<Option<Vec<String>>> {
        self.write(|conn| {
                    let tx = conn.savepoint()?;
            let live = tx
                .prepare("SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2")?
                .query_map(params![user_id, now], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            // Their tokens stay refused after a restart (see `revoked_since`).
            tx.execute(
                "INSERT OR IGNORE INTO deleted_sessions (id, revoked_at, expires_at)
                 SELECT id, ?2, expires_at FROM sessions
                 WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                params![user_id, now],
            )?;
            tx.execute(
                "DELETE FROM retired_refresh_tokens
                 WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?1)",
                [user_id],
            )?;
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
            tx.execute("DELETE FROM org_members WHERE user_id = ?1", [user_id])?;
            tx.execute("DELETE FROM disabled_users WHERE user_id = ?1", [user_id])?;
            let deleted = tx.execute("DELETE FROM users WHERE id = ?1", [user_id])? > 0;
            tx.commit()?;
            Ok(deleted.then_some(live))
        })
    }

    pub fn user_id_by_email(&self, email: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .lock()
            .query_row("SELECT id FROM users WHERE email = ?1", [email], |row| {
                row.get(0)
            })
            .optional()?)
    }

    pub fn create_key(
        &self,
        target: &KeyTarget,
        hash: &str,
        label: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO api_keys (id, hash, class, name, label, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![target.id, hash, target.class, target.name, label, now],
            )?;
            Ok(())
        })
    }

    pub fn key_by_hash(&self, hash: &str) -> anyhow::Result<Option<KeyTarget>> {
        self.writes.read_fresh(&self.conn, |conn| {
            Ok(conn
                .prepare_cached("SELECT id, class, name FROM api_keys WHERE hash = ?1")?
                .query_row([hash], |row| {
                    Ok(KeyTarget {
                        id: row.get(0)?,
                        class: row.get(1)?,
                        name: row.get(2)?,
                    })
                })
                .optional()?)
        })
    }

    pub fn keys_of(&self, class: &str, name: &str) -> anyhow::Result<Vec<KeyInfo>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, label, created_at FROM api_keys WHERE class = ?1 AND name = ?2
             ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([class, name], |row| {
            Ok(KeyInfo {
                id: row.get(0)?,
                label: row.get(1)?,
                created_at: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a key; returns its hash if it existed.
    pub fn delete_key(&self, id: &str) -> anyhow::Result<Option<String>> {
        self.write(|conn| {
            Ok(conn
                .query_row(
                    "DELETE FROM api_keys WHERE id = ?1 RETURNING hash",
                    [id],
                    |row| row.get(0),
                )
                .optional()?)
        })
    }

    /// Deletes key `id` if it names object `name` of `class`; its hash.
    pub fn delete_key_of(
        &self,
        class: &str,
        name: &str,
        id: &str,
    ) -> anyhow::Result<Option<String>> {
        self.write(|conn| {
            Ok(conn
                .query_row(
                    "DELETE FROM api_keys WHERE id = ?1 AND class = ?2 AND name = ?3 RETURNING hash",
                    [id, class, name],
                    |row| row.get(0),
                )
                .optional()?)
        })
    }

    /// Points `handle` of `class` at object `name` if it points nowhere;
    /// returns the name it points at afterwards (under one lock, so two
    /// claims cannot both win).
    pub fn claim_handle(
        &self,
        class: &str,
        handle: &str,
        name: &str,
        now: i64,
    ) -> anyhow::Result<String> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO handles (class, handle, name, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (class, handle) DO NOTHING",
                params![class, handle, name, now],
            )?;
            Ok(conn.query_row(
                "SELECT name FROM handles WHERE class = ?1 AND handle = ?2",
                [class, handle],
                |row| row.get(0),
            )?)
        })
    }

    /// Points `handle` of `class` at object `name`, replacing any target.
    pub fn set_handle(
        &self,
        class: &str,
        handle: &str,
        name: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO handles (class, handle, name, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (class, handle) DO UPDATE SET name = excluded.name",
                params![class, handle, name, now],
            )?;
            Ok(())
        })
    }

    pub fn handle(&self, class: &str, handle: &str) -> anyhow::Result<Option<String>> {
        self.writes.read_fresh(&self.conn, |conn| {
            Ok(conn
                .prepare_cached("SELECT name FROM handles WHERE class = ?1 AND handle = ?2")?
                .query_row([class, handle], |row| row.get(0))
                .optional()?)
        })
    }

    pub fn handles_of(&self, class: &str, name: &str) -> anyhow::Result<Vec<String>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT handle FROM handles WHERE class = ?1 AND name = ?2 ORDER BY handle")?;
        let rows = stmt.query_map([class, name], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_handle(&self, class: &str, handle: &str) -> anyhow::Result<bool> {
        self.write(|conn| {
            Ok(conn.execute(
                "DELETE FROM handles WHERE class = ?1 AND handle = ?2",
                [class, handle],
            )? > 0)
        })
    }

    /// Removes every key and handle of an object (it was deleted); returns
    /// the keys' ids and hashes.
    pub fn forget_object(&self, class: &str, name: &str) -> anyhow::Result<Vec<(String, String)>> {
        self.write(|conn| {
            let tx = conn.savepoint()?;
            let keys = tx
                .prepare("DELETE FROM api_keys WHERE class = ?1 AND name = ?2 RETURNING id, hash")?
                .query_map([class, name], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
            tx.execute(
                "DELETE FROM handles WHERE class = ?1 AND name = ?2",
                [class, name],
            )?;
            tx.commit()?;
            Ok(keys)
        })
    }
}

fn role_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Role> {
    let text: String = row.get(index)?;
    Role::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown role {text:?}").into(),
        )
    })
}
