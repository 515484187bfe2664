//! One object's SQLite database, split by concern:
//!
//! - [`open`](self::open): opening a file with the host's pragmas and limits;
//! - [`transaction`]: the batch's transaction, each event's savepoint,
//!   commit and rollback, and a batch lost under the host's feet;
//! - [`guard`]: guest statements under the authorizer, and writes under the
//!   storage limit;
//! - [`migrations`]: the class's migrations, run once per database;
//! - [`inspect`]: the operator's view: contents, read-only queries,
//!   backups, and checking a database offered for import.
//!
//! This file has the type itself, its settings, and closing.

mod guard;
mod inspect;
mod migrations;
mod open;
mod replica;
mod transaction;

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{Connection, InterruptHandle};
use serde::Deserialize;

use super::authorizer::Guard;
use super::claim::Claim;

pub use guard::SqlFailure;
pub use inspect::{
    Contents, ImportCheck, QueryFailure, QueryLimits, QueryResult, TableRows, check_import,
    from_json, quote, to_json,
};
pub use migrations::MigrationFailed;

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `fsync` on every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// No `fsync` on commit: an acknowledged write survives a crash of the
    /// host process, not of the machine.
    Normal,
    /// `fsync` on every commit, and the commit's segment durable in the
    /// replication store before its events are answered: an acknowledged
    /// write survives the loss of the machine and its disk.
    Replicated,
}

impl Durability {
    /// The `PRAGMA synchronous` value (in WAL mode) that gives it.
    pub(crate) fn synchronous(self) -> &'static str {
        match self {
            Durability::Full | Durability::Replicated => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// What a database needs to know of its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub durability: Durability,
    /// The database's largest size; writes beyond it fail.
    pub max_storage_bytes: u64,
    /// Longest SQL text of one statement.
    pub max_sql_length: u32,
    /// Most `?` parameters of one statement.
    pub max_sql_parameters: u32,
}

/// A write-ahead log at most this long is left as it is when the database
/// closes. Checkpointing at close costs two `fsync`s, a truncation and, at
/// the next commit, a new log header and its `fsync`; reading a short log
/// back when the object next activates costs far less.
const WAL_KEPT_AT_CLOSE: u64 = 256 << 10;

pub(super) const INTERNAL_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _podhost_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _podhost_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _podhost_events (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL);
";
/// The tables [`INTERNAL_SCHEMA`] makes.
const INTERNAL_TABLES: [&std::ffi::CStr; 3] =
    [c"_podhost_kv", c"_podhost_meta", c"_podhost_events"];

pub struct Database {
    conn: Connection,
    guard: Guard,
    /// The internal tables are known to exist (created in a committed
    /// transaction).
    schema_ready: bool,
    /// A batch's transaction was begun and is not yet committed.
    pending: bool,
    page_size: u64,
    durability: Durability,
    max_storage_bytes: u64,
    /// The class's migrations have run on this connection.
    migrated: bool,
    /// Stops a running statement from another thread (the watchdog).
    interrupt: Arc<InterruptHandle>,
    /// The write-ahead log's path, to see its length at close.
    wal: PathBuf,
    /// Replication is on: commits are counted, frames read (`replica`).
    replicated: bool,
    /// How far the log has been read for replication.
    cursor: crate::storage::wal::WalCursor,
    /// Released after `conn` closes (fields drop in order).
    _claim: Claim,
}

impl Drop for Database {
    /// Closes without a checkpoint when the log is short (see
    /// [`WAL_KEPT_AT_CLOSE`]). A long one is copied into the database and
    /// emptied first, so no object reads back megabytes of log when it
    /// wakes.
    fn drop(&mut self) {
        let long = std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > WAL_KEPT_AT_CLOSE);
        if long
            && let Err(error) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(%error, wal = %self.wal.display(), "checkpoint at close failed");
        }
    }
}

impl Database {
    /// What stops this database's running statement from another thread.
    pub fn interrupt_handle(&self) -> Arc<InterruptHandle> {
        Arc::clone(&self.interrupt)
    }

    /// The connection, for the host's own statements.
    pub fn host(&self) -> &Connection {
        &self.conn
    }

    /// Gives back the page cache's memory (the object waits without an
    /// instance; its pages are read again from the OS's cache if needed).
    pub fn release_memory(&self) {
        if let Err(error) = self.conn.release_memory() {
            tracing::debug!(%error, "cannot release the page cache");
        }
    }

    /// The database's size in bytes.
    pub fn size(&self) -> rusqlite::Result<u64> {
        // Cached although it names no `_podhost_` thing: a guest sending
        // the same text may read the page count anyway.
        let pages: i64 = self
            .conn
            .prepare_cached("PRAGMA main.page_count")?
            .query_row([], |row| row.get(0))?;
        Ok(pages.unsigned_abs() * self.page_size)
    }
}

#[cfg(test)]
pub(super) fn test_settings(durability: Durability) -> Settings {
    Settings {
        durability,
        max_storage_bytes: 1 << 30,
        max_sql_length: 100_000,
        max_sql_parameters: 999,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_log_is_kept_at_close_and_a_long_one_checkpointed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.sqlite");
        let wal = dir.path().join("log.sqlite-wal");
        let settings = test_settings(Durability::Full);
        let write = |sql: &str| {
            let mut db = Database::open(&path, &settings).expect("open");
            db.begin_event().expect("begin");
            db.as_guest_write(|c| c.execute_batch(sql)).expect("write");
            db.end_event().expect("end");
            db.commit().expect("commit");
        };
        let rows = || {
            let db = Database::open(&path, &settings).expect("reopen");
            db.host()
                .query_row("SELECT count(*), sum(length(b)) FROM t", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })
                .expect("count")
        };
        let wal_len = || std::fs::metadata(&wal).expect("the log is kept").len();

        write("CREATE TABLE t (b BLOB); INSERT INTO t VALUES (x'01')");
        let kept = wal_len();
        assert!(
            (1..=WAL_KEPT_AT_CLOSE).contains(&kept),
            "a short log stays as it is: {kept} bytes"
        );
        assert_eq!(rows(), (1, Some(1)), "read back from the log");

        write("INSERT INTO t VALUES (zeroblob(1048576))");
        assert_eq!(wal_len(), 0, "a long log is checkpointed and emptied");
        assert_eq!(rows(), (2, Some(1 + 1048576)));
        let check: String = Database::open(&path, &settings)
            .expect("open")
            .host()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
    }

    #[test]
    fn a_runaway_statement_stops_when_interrupted_from_another_thread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Database::open(
            &dir.path().join("slow.sqlite"),
            &test_settings(Durability::Normal),
        )
        .expect("open");
        db.begin_event().expect("begin");
        let interrupt = db.interrupt_handle();
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            interrupt.interrupt();
        });
        let failure = db
            .as_guest(|c| {
                c.query_row(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .expect_err("an endless query");
        watchdog.join().expect("interrupted");
        assert_eq!(
            failure.error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::OperationInterrupted)
        );
        db.undo_event();
        db.commit().expect("the host's statements run after it");
    }
}
