//! The class's migrations: run in order, once per database, in one
//! transaction; a failure keeps nothing and names the migration.

use rusqlite::OptionalExtension;

use super::transaction::BEGIN;
use super::{Database, INTERNAL_SCHEMA};
use crate::storage::authorizer::{RESERVED_PREFIX, mentions_reserved_name};

/// A class migration that failed; nothing of the migrations run with it
/// was kept.
#[derive(Debug, Clone, thiserror::Error)]
#[error("migration {number} of {total} failed: {message}")]
pub struct MigrationFailed {
    /// 1 for the first migration of the class.
    pub number: usize,
    pub total: usize,
    pub message: String,
}

impl Database {
    /// Whether the class's migrations have run on this connection.
    pub fn is_migrated(&self) -> bool {
        self.migrated
    }

    /// The class changed version: its migrations must be run again (those
    /// already applied are skipped) before the next instance's events.
    pub fn forget_migrated(&mut self) {
        self.migrated = false;
    }

    /// Runs the migrations this database has not had yet, in one
    /// transaction, and records how many it has had. Returns how many ran.
    pub fn migrate(&mut self, migrations: &[String]) -> Result<usize, MigrationFailed> {
        if migrations.is_empty() {
            self.migrated = true;
            return Ok(0);
        }
        let result = self.run_migrations(migrations);
        self.migrated = result.is_ok();
        result
    }

    fn run_migrations(&mut self, migrations: &[String]) -> Result<usize, MigrationFailed> {
        let total = migrations.len();
        let host_failure = |error: rusqlite::Error| MigrationFailed {
            number: 0,
            total,
            message: format!("the host could not run migrations: {error}"),
        };
        self.run_cached(BEGIN).map_err(host_failure)?;
        let applied = self.apply_migrations(migrations);
        let committed = applied.and_then(|count| {
            self.commit_statement().map_err(host_failure)?;
            Ok(count)
        });
        match committed {
            Ok(count) => {
                self.schema_ready = true;
                Ok(count)
            }
            Err(failure) => {
                self.rollback();
                Err(failure)
            }
        }
    }

    fn apply_migrations(&mut self, migrations: &[String]) -> Result<usize, MigrationFailed> {
        let total = migrations.len();
        let failed = |number: usize, message: String| MigrationFailed {
            number,
            total,
            message,
        };
        let host_failure = |error: rusqlite::Error| {
            failed(0, format!("the host could not run migrations: {error}"))
        };
        if !self.schema_ready {
            self.conn
                .execute_batch(INTERNAL_SCHEMA)
                .map_err(host_failure)?;
        }
        let done: i64 = self
            .conn
            .query_row(
                "SELECT value FROM _podhost_meta WHERE key = 'migrations'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(host_failure)?
            .unwrap_or(0);
        let done = usize::try_from(done).unwrap_or(0);
        if done > total {
            tracing::warn!(
                done,
                total,
                "the database has had more migrations than its class declares"
            );
            return Ok(0);
        }
        if done == total {
            // Every wake of a class with migrations gets here: no statement
            // to prepare and run for a count that stays the same.
            return Ok(0);
        }
        for (index, migration) in migrations.iter().enumerate().skip(done) {
            if mentions_reserved_name(migration) {
                return Err(failed(
                    index + 1,
                    format!("names starting with {RESERVED_PREFIX} are reserved for the host"),
                ));
            }
            self.as_guest(|conn| conn.execute_batch(migration))
                .map_err(|failure| {
                    failed(
                        index + 1,
                        failure.denial.unwrap_or_else(|| failure.error.to_string()),
                    )
                })?;
        }
        self.conn
            .execute(
                "INSERT INTO _podhost_meta (key, value) VALUES ('migrations', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [total as i64],
            )
            .map_err(host_failure)?;
        Ok(total - done)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Durability, test_settings};
    use super::*;

    #[test]
    fn migrations_run_once_in_order_and_fail_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = test_settings(Durability::Normal);
        let path = dir.path().join("migrated.sqlite");
        let mut db = Database::open(&path, &settings).expect("open");
        let v1 = vec!["CREATE TABLE items (id INTEGER PRIMARY KEY)".to_string()];
        assert_eq!(db.migrate(&v1).expect("v1"), 1);
        assert_eq!(db.migrate(&v1).expect("again"), 0, "nothing runs twice");
        let changes = db.host().total_changes();
        db.forget_migrated();
        assert_eq!(db.migrate(&v1).expect("on wake"), 0);
        assert_eq!(
            db.host().total_changes(),
            changes,
            "a wake with nothing to migrate writes nothing"
        );

        let mut broken = v1.clone();
        broken.push("ALTER TABLE items ADD COLUMN name TEXT".into());
        broken.push("ALTER TABLE missing ADD COLUMN x".into());
        let failure = db.migrate(&broken).expect_err("the third fails");
        assert_eq!((failure.number, failure.total), (3, 3));
        assert!(failure.message.contains("missing"), "{}", failure.message);
        let columns: i64 = db
            .host()
            .query_row("SELECT count(*) FROM pragma_table_info('items')", [], |r| {
                r.get(0)
            })
            .expect("columns");
        assert_eq!(
            columns, 1,
            "the second migration was rolled back with the third"
        );
        assert!(!db.in_transaction());

        let mut fixed = v1.clone();
        fixed.push("ALTER TABLE items ADD COLUMN name TEXT".into());
        assert_eq!(db.migrate(&fixed).expect("v2"), 1);
        let sneaky = vec![
            "CREATE TABLE t (x)".to_string(),
            "DROP TABLE _podhost_kv".to_string(),
        ];
        let mut fresh = Database::open(&dir.path().join("other.sqlite"), &settings).expect("open");
        assert!(
            fresh
                .migrate(&sneaky)
                .expect_err("reserved")
                .message
                .contains("reserved")
        );
    }
}
