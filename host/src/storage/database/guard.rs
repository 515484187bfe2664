//! Guest statements run under the authorizer's guest rules, and writes
//! under the storage limit: a write that takes the database past it is
//! undone alone, and the guest gets SQLite's error for a full database.

use rusqlite::Connection;

use super::Database;

/// A failed guest statement, with the authorizer's reason if it refused it.
#[derive(Debug)]
pub struct SqlFailure {
    pub error: rusqlite::Error,
    pub denial: Option<String>,
}

impl Database {
    /// Runs `f` with the authorizer applying guest rules to every statement
    /// it prepares.
    pub fn as_guest<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SqlFailure> {
        self.guard.set_guest_mode(true);
        let result = f(&self.conn);
        self.guard.set_guest_mode(false);
        result.map_err(|error| SqlFailure {
            denial: self.guard.take_denial(),
            error,
        })
    }

    /// Runs a guest statement that may write: if it takes the database past
    /// its storage limit, only that statement is undone, and the guest gets
    /// SQLite's error for a full database.
    pub fn as_guest_write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SqlFailure> {
        self.guarded_write(|db| db.as_guest(f))
    }

    /// [`as_guest_write`](Self::as_guest_write) for the host's own writes
    /// on a guest's behalf (KV).
    pub fn host_write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.guarded_write(|db| {
            f(&db.conn).map_err(|error| SqlFailure {
                error,
                denial: None,
            })
        })
        .map_err(|failure| failure.error)
    }

    fn guarded_write<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, SqlFailure>,
    ) -> Result<T, SqlFailure> {
        let host = |error| SqlFailure {
            error,
            denial: None,
        };
        self.run_cached("SAVEPOINT _podhost_write").map_err(host)?;
        let result = f(self).and_then(|value| match self.size() {
            Ok(size) if size > self.max_storage_bytes => Err(host(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some(format!(
                    "the object's storage limit of {} bytes (its class's max_storage_bytes, or what its tenant's max_storage_bytes leaves it) is reached; this statement was undone",
                    self.max_storage_bytes
                )),
            ))),
            Ok(_) => Ok(value),
            Err(error) => Err(host(error)),
        });
        // SQLite may have rolled the whole transaction back on its own.
        if self.in_transaction() {
            let undo = result.is_err().then_some("ROLLBACK TO _podhost_write");
            for sql in undo.into_iter().chain(["RELEASE _podhost_write"]) {
                if let Err(error) = self.run_cached(sql) {
                    tracing::error!(%error, "ending a write's savepoint failed");
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Durability, Settings, test_settings};
    use super::*;

    #[test]
    fn writes_past_the_storage_limit_fail_with_disk_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = Settings {
            max_storage_bytes: 256 << 10,
            ..test_settings(Durability::Normal)
        };
        let mut db = Database::open(&dir.path().join("full.sqlite"), &settings).expect("open");
        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute_batch("CREATE TABLE blobs (b BLOB)"))
            .expect("table");
        let insert = |db: &Database| {
            db.as_guest_write(|c| c.execute("INSERT INTO blobs VALUES (zeroblob(32768))", []))
        };
        let fitted = (0..100).take_while(|_| insert(&db).is_ok()).count();
        assert!(
            (1..8).contains(&fitted),
            "{fitted} blobs of 32 KiB fitted in 256 KiB"
        );
        let failure = insert(&db).expect_err("still full");
        assert_eq!(
            failure.error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DiskFull)
        );
        db.end_event()
            .expect("only the failed statements were undone; the event goes on");
        db.commit().expect("what fitted commits");
        let count: i64 = db
            .host()
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count as usize, fitted);
        assert!(db.size().expect("size") <= 256 << 10);
    }
}
