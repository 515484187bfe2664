//! One object's SQLite database: opening it with the host's settings, the
//! event transaction, and running guest statements under the authorizer.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;

use super::authorizer::Guard;

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
}

/// Longest SQL text SQLite accepts in one prepare (a script prepares its
/// remaining text each time, so this also bounds scripts).
const MAX_SQL_LENGTH: i32 = 1 << 20;
/// Largest string, blob or row.
const MAX_VALUE_LENGTH: i32 = 16 << 20;
/// Most `?` parameters in one statement.
const MAX_PARAMETERS: i32 = 999;

const INTERNAL_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _podhost_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
";

/// A failed guest statement, with the authorizer's reason if it refused it.
#[derive(Debug)]
pub struct SqlFailure {
    pub error: rusqlite::Error,
    pub denial: Option<String>,
}

pub struct Database {
    conn: Connection,
    guard: Guard,
    /// The internal tables are known to exist (created in a committed
    /// transaction).
    schema_ready: bool,
    /// A batch's transaction was begun and is not yet committed.
    pending: bool,
}

impl Database {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, durability: Durability) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&mut conn, durability)
            .with_context(|| format!("cannot configure the database {}", path.display()))?;
        let guard = Guard::default();
        conn.authorizer(Some(guard.callback()))?;
        Ok(Database {
            conn,
            guard,
            schema_ready: false,
            pending: false,
        })
    }

    /// Starts an event: opens the batch's transaction if this is its first
    /// event, then a savepoint that the event's writes go to.
    pub fn begin_event(&mut self) -> rusqlite::Result<()> {
        if !self.pending {
            self.conn.execute_batch("BEGIN")?;
            self.pending = true;
            if !self.schema_ready {
                self.conn.execute_batch(INTERNAL_SCHEMA)?;
            }
        }
        self.conn.execute_batch("SAVEPOINT podhost_event")
    }

    /// Keeps the event's writes in the batch.
    pub fn end_event(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("RELEASE podhost_event")
    }

    /// Undoes the event's writes, keeping the rest of the batch.
    pub fn undo_event(&mut self) {
        if self.in_transaction()
            && let Err(error) = self
                .conn
                .execute_batch("ROLLBACK TO podhost_event; RELEASE podhost_event")
        {
            tracing::error!(%error, "rolling back an event failed");
        }
    }

    /// Commits the batch, if one was begun. Fails if SQLite already rolled
    /// it back (after an I/O or full-disk error, say): then none of the
    /// batch's writes were kept.
    pub fn commit(&mut self) -> rusqlite::Result<()> {
        if !std::mem::take(&mut self.pending) {
            return Ok(());
        }
        if !self.in_transaction() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the transaction was rolled back by an earlier error".into()),
            ));
        }
        self.conn.execute_batch("COMMIT")?;
        self.schema_ready = true;
        Ok(())
    }

    /// Rolls back whatever is open.
    pub fn rollback(&mut self) {
        self.pending = false;
        if self.in_transaction()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "rollback failed");
        }
    }

    /// Whether an event transaction is open. It can close under a guest's
    /// feet when SQLite aborts it, and then no further write may run.
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// The connection, for the host's own statements.
    pub fn host(&self) -> &Connection {
        &self.conn
    }

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

    /// The database's size in bytes.
    pub fn size(&self) -> rusqlite::Result<u64> {
        let bytes: i64 = self.conn.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |row| row.get(0),
        )?;
        Ok(bytes.unsigned_abs())
    }
}

fn configure(conn: &mut Connection, durability: Durability) -> rusqlite::Result<()> {
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the database stays in journal mode {mode}, not WAL"
            )),
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON;
         PRAGMA trusted_schema = OFF;"
    ))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_LENGTH)?;
    conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMETERS)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_commit_or_roll_back_and_guest_rules_apply() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a/b/object.sqlite");
        let mut db = Database::open(&path, Durability::Full).expect("open");

        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);"))
            .expect("guest DDL");
        db.end_event().expect("end");
        // A second event in the same batch fails: only its writes go.
        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute("INSERT INTO t VALUES (2)", []))
            .expect("insert");
        db.undo_event();
        db.commit().expect("commit");
        assert!(!db.in_transaction());

        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute("INSERT INTO t VALUES (3)", []))
            .expect("insert");
        db.end_event().expect("end");
        db.rollback();

        let failure = db
            .as_guest(|c| c.execute_batch("SELECT * FROM _podhost_kv"))
            .expect_err("reserved table");
        assert!(failure.denial.is_some_and(|d| d.contains("reserved")));

        let count: i64 = db
            .host()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count, 1, "the undone and the rolled-back inserts are gone");
        assert!(db.size().expect("size") > 0);
        drop(db);
        let reopened = Database::open(&path, Durability::Normal).expect("reopen");
        let mode: String = reopened
            .host()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }
}
