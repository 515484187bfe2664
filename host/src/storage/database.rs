//! One object's SQLite database: opening it with the host's settings, the
//! event transaction, and running guest statements under the authorizer.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::{Connection, FileControl, InterruptHandle, OpenFlags, OptionalExtension};
use serde::Deserialize;

use super::authorizer::{Guard, RESERVED_PREFIX, mentions_reserved_name};
use super::claim::Claim;
use crate::config::ClassSettings;

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

impl Durability {
    /// The `PRAGMA synchronous` value (in WAL mode) that gives it.
    pub(crate) fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// SQLite's unix VFS without file locks; see [`Claim`] for why and what
/// keeps a database to one connection instead.
const UNLOCKED_VFS: &std::ffi::CStr = c"unix-none";

/// Largest string, blob or row.
const MAX_VALUE_LENGTH: i32 = 16 << 20;
/// Longest LIKE or GLOB pattern.
const MAX_LIKE_PATTERN: i32 = 200;
/// A write-ahead log at most this long is left as it is when the database
/// closes. Checkpointing at close costs two `fsync`s, a truncation and, at
/// the next commit, a new log header and its `fsync`; reading a short log
/// back when the object next activates costs far less.
const WAL_KEPT_AT_CLOSE: u64 = 256 << 10;

/// How far past its storage limit one write may take a database before
/// SQLite itself refuses. The host enforces the limit exactly after each
/// write; this backstop exists because SQLite, when it refuses a page,
/// rolls back the whole transaction rather than the one statement.
const STORAGE_BACKSTOP: u64 = 2 * MAX_VALUE_LENGTH as u64;

pub(super) const INTERNAL_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _podhost_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _podhost_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _podhost_events (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL);
";
/// The tables [`INTERNAL_SCHEMA`] makes.
const INTERNAL_TABLES: [&std::ffi::CStr; 3] =
    [c"_podhost_kv", c"_podhost_meta", c"_podhost_events"];

// Transaction control, named so that they can go through the statement
// cache: guest SQL that mentions `_podhost_` is refused, so no guest text
// can ever be the key of one of these.
const BEGIN: &str = "/* _podhost_ */ BEGIN";
const COMMIT: &str = "/* _podhost_ */ COMMIT";
const ROLLBACK: &str = "/* _podhost_ */ ROLLBACK";

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
    page_size: u64,
    durability: Durability,
    max_storage_bytes: u64,
    /// The class's migrations have run on this connection.
    migrated: bool,
    /// An event of the open batch set or cancelled the object's alarm.
    alarm_changed: bool,
    /// Stops a running statement from another thread (the watchdog).
    interrupt: Arc<InterruptHandle>,
    /// The write-ahead log's path, to see its length at close.
    wal: std::path::PathBuf,
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
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, settings: &ClassSettings) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        let claim = Claim::take(path)?;
        super::template::create_database_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags_and_vfs(path, flags, UNLOCKED_VFS)
            .with_context(|| open_failure("open", path))?;
        // Opens the write-ahead log too.
        let page_size =
            configure(&mut conn, settings).with_context(|| open_failure("configure", path))?;
        // Databases made from the template have the internal tables; older
        // ones get them with their first commit.
        let schema_ready = has_internal_tables(&conn)
            .with_context(|| format!("cannot read the schema of {}", path.display()))?;
        let guard = Guard::default();
        conn.authorizer(Some(guard.callback()))?;
        super::functions::replace_quadratic_functions(&conn, MAX_VALUE_LENGTH as usize)?;
        let interrupt = Arc::new(conn.get_interrupt_handle());
        Ok(Database {
            conn,
            guard,
            schema_ready,
            pending: false,
            page_size,
            durability: settings.durability,
            max_storage_bytes: settings.limits.max_storage_bytes,
            migrated: false,
            alarm_changed: false,
            interrupt,
            wal: super::layout::wal_path(path),
            _claim: claim,
        })
    }

    /// Starts an event: opens the batch's transaction if this is its first
    /// event, then a savepoint that the event's writes go to.
    pub fn begin_event(&mut self) -> rusqlite::Result<()> {
        if self.batch_lost() {
            // A SAVEPOINT outside a transaction would start a new one whose
            // RELEASE commits on its own: refuse instead.
            return Err(aborted());
        }
        if !self.pending {
            self.run_cached(BEGIN)?;
            self.pending = true;
            if !self.schema_ready {
                self.conn.execute_batch(INTERNAL_SCHEMA)?;
            }
        }
        self.run_cached("SAVEPOINT _podhost_event")
    }

    /// Keeps the event's writes in the batch. Fails with a constraint
    /// error if they leave a deferred foreign key unsatisfied: that must
    /// fail this event, not the commit of the whole batch.
    pub fn end_event(&mut self) -> rusqlite::Result<()> {
        if self.deferred_violations() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(
                    "the request's writes leave a deferred FOREIGN KEY constraint unsatisfied"
                        .into(),
                ),
            ));
        }
        self.run_cached("RELEASE _podhost_event")
    }

    /// Whether the current transaction holds unresolved deferred foreign
    /// key violations.
    fn deferred_violations(&self) -> bool {
        let (mut current, mut highest) = (0, 0);
        // SAFETY: the handle lives as long as `self.conn`; sqlite3_db_status
        // only reads counters of the connection.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                self.conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_DEFERRED_FKS,
                &mut current,
                &mut highest,
                0,
            )
        };
        rc == rusqlite::ffi::SQLITE_OK && current > 0
    }

    /// What stops this database's running statement from another thread.
    pub fn interrupt_handle(&self) -> Arc<InterruptHandle> {
        Arc::clone(&self.interrupt)
    }

    /// Whether the batch's transaction ended under the host's feet: a guest
    /// statement with `ON CONFLICT ROLLBACK` or `RAISE(ROLLBACK)`, or SQLite
    /// after an I/O error, rolled it all back.
    pub fn batch_lost(&self) -> bool {
        self.pending && !self.in_transaction()
    }

    /// Accepts that the batch is lost, so the next event starts afresh.
    pub fn forget_lost_batch(&mut self) {
        if self.batch_lost() {
            self.pending = false;
        }
    }

    /// Whether the open transaction has written.
    pub fn wrote(&self) -> bool {
        matches!(
            self.conn.transaction_state(Some(rusqlite::MAIN_DB)),
            Ok(rusqlite::TransactionState::Write)
        )
    }

    /// Whether committing the open transaction waits for `fsync`.
    pub fn commit_syncs(&self) -> bool {
        self.durability == Durability::Full && self.wrote()
    }

    /// Notes that an event set or cancelled the alarm (kept in
    /// `_podhost_meta`), so the host updates its index after the batch.
    pub fn note_alarm_change(&mut self) {
        self.alarm_changed = true;
    }

    /// Whether the alarm may have changed since the last call.
    pub fn take_alarm_change(&mut self) -> bool {
        std::mem::take(&mut self.alarm_changed)
    }

    /// Whether the class's migrations have run on this connection.
    pub fn is_migrated(&self) -> bool {
        self.migrated
    }

    /// Undoes the event's writes, keeping the rest of the batch.
    pub fn undo_event(&mut self) {
        if self.in_transaction()
            && let Err(error) = self
                .run_cached("ROLLBACK TO _podhost_event")
                .and_then(|()| self.run_cached("RELEASE _podhost_event"))
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
            return Err(aborted());
        }
        self.run_cached(COMMIT)?;
        self.schema_ready = true;
        Ok(())
    }

    /// Rolls back whatever is open.
    pub fn rollback(&mut self) {
        self.pending = false;
        if self.in_transaction()
            && let Err(error) = self.run_cached(ROLLBACK)
        {
            tracing::error!(%error, "rollback failed");
        }
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
            self.run_cached(COMMIT).map_err(host_failure)?;
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
                    "the object's storage limit of {} bytes is reached; this statement was undone",
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

    /// Runs one of the host's statements through the statement cache. Guest
    /// SQL never reaches these cached statements: they all name
    /// `_podhost_` things, which guest SQL may not mention.
    fn run_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
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

/// Applies the host's settings; returns the page size.
fn configure(conn: &mut Connection, settings: &ClassSettings) -> rusqlite::Result<u64> {
    let synchronous = settings.durability.synchronous();
    // One connection per database, ever (see `Claim`): exclusive mode lets
    // WAL keep its index in memory, with no -shm file (the unlocked VFS has
    // no shared memory). It must be set before the database is first read.
    conn.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |_| Ok(()))?;
    // Keep the WAL file between connections (never deleted; emptied at
    // close when long): reopening a hibernated object then creates no file.
    conn.file_control(Some(rusqlite::MAIN_DB), FileControl::PersistWal(&mut 1))?;
    conn.query_row("PRAGMA journal_size_limit = 4194304", [], |_| Ok(()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the database stays in journal mode {mode}, not WAL"
            )),
        ));
    }
    conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}"))?;
    // Settings through the C API where there is one: each pragma is parsed,
    // and this runs on every activation.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, true)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // `Drop for Database` checkpoints when it is worth it.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    let limits = &settings.limits;
    // A script prepares its remaining text each time, so this also bounds
    // the length of scripts.
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, clamp(limits.max_sql_length))?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_LENGTH)?;
    // LIKE and GLOB take time in one VM step that grows with the pattern's
    // wildcards times the text's length: keep patterns short.
    conn.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN)?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_VARIABLE_NUMBER,
        clamp(limits.max_sql_parameters),
    )?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let page_size = page_size.unsigned_abs().max(512);
    let backstop = limits.max_storage_bytes.saturating_add(STORAGE_BACKSTOP);
    let max_pages = backstop.div_ceil(page_size);
    conn.query_row(&format!("PRAGMA max_page_count = {max_pages}"), [], |_| {
        Ok(())
    })?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(page_size)
}

/// What failed while opening the database at `path`, with the likely
/// cause when the process has run out of file descriptors.
fn open_failure(step: &str, path: &Path) -> String {
    let mut message = format!("cannot {step} the database {}", path.display());
    if crate::os_limits::out_of_files() {
        message.push_str(
            " (the process has as many files open as it may: raise `ulimit -n` or lower max_active)",
        );
    }
    message
}

fn has_internal_tables(conn: &Connection) -> rusqlite::Result<bool> {
    for table in INTERNAL_TABLES {
        if !conn.table_exists(Some(rusqlite::MAIN_DB), table)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn aborted() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("the transaction was rolled back by an earlier statement or error".into()),
    )
}

fn clamp(limit: u32) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_commit_or_roll_back_and_guest_rules_apply() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a/b/object.sqlite");
        let settings = ClassSettings {
            access: crate::config::Access::Public,
            durability: Durability::Full,
            limits: crate::config::Limits::default(),
        };
        let mut db = Database::open(&path, &settings).expect("open");

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
        let normal = ClassSettings {
            access: crate::config::Access::Public,
            durability: Durability::Normal,
            ..settings
        };
        let reopened = Database::open(&path, &normal).expect("reopen");
        let mode: String = reopened
            .host()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_short_log_is_kept_at_close_and_a_long_one_checkpointed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.sqlite");
        let wal = dir.path().join("log.sqlite-wal");
        let settings = ClassSettings {
            access: crate::config::Access::Public,
            durability: Durability::Full,
            limits: crate::config::Limits::default(),
        };
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
    fn writes_past_the_storage_limit_fail_with_disk_full() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = ClassSettings {
            access: crate::config::Access::Public,
            durability: Durability::Normal,
            limits: crate::config::Limits {
                max_storage_bytes: 256 << 10,
                ..crate::config::Limits::default()
            },
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

    #[test]
    fn migrations_run_once_in_order_and_fail_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = ClassSettings {
            access: crate::config::Access::Public,
            durability: Durability::Normal,
            limits: crate::config::Limits::default(),
        };
        let path = dir.path().join("migrated.sqlite");
        let mut db = Database::open(&path, &settings).expect("open");
        let v1 = vec!["CREATE TABLE items (id INTEGER PRIMARY KEY)".to_string()];
        assert_eq!(db.migrate(&v1).expect("v1"), 1);
        assert_eq!(db.migrate(&v1).expect("again"), 0, "nothing runs twice");

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

    fn settings() -> ClassSettings {
        ClassSettings {
            access: crate::config::Access::Public,
            durability: Durability::Normal,
            limits: crate::config::Limits::default(),
        }
    }

    #[test]
    fn a_runaway_statement_stops_when_interrupted_from_another_thread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Database::open(&dir.path().join("slow.sqlite"), &settings()).expect("open");
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

    #[test]
    fn a_statement_that_rolls_back_everything_loses_the_batch_visibly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Database::open(&dir.path().join("lost.sqlite"), &settings()).expect("open");
        db.begin_event().expect("begin");
        db.as_guest(|c| {
            c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
        })
        .expect("setup");
        db.end_event().expect("end");
        db.commit().expect("commit");

        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute("INSERT INTO t VALUES (2)", []))
            .expect("a write");
        db.end_event().expect("end");
        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute("INSERT OR ROLLBACK INTO t VALUES (1)", []))
            .expect_err("the conflict rolls back the whole transaction");
        assert!(db.batch_lost());
        assert!(db.end_event().is_err());
        assert!(
            db.begin_event().is_err(),
            "no event may start a transaction of its own"
        );
        db.forget_lost_batch();
        db.begin_event().expect("a fresh batch");
        db.end_event().expect("end");
        db.commit().expect("commit");
        let rows: i64 = db
            .host()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(
            rows, 1,
            "the lost batch's write is gone, and nothing committed on its own"
        );
    }

    #[test]
    fn a_deferred_foreign_key_violation_fails_its_event_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Database::open(&dir.path().join("fk.sqlite"), &settings()).expect("open");
        db.begin_event().expect("begin");
        db.as_guest(|c| {
            c.execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
                 INSERT INTO parent VALUES (1);",
            )
        })
        .expect("schema");
        db.end_event().expect("end");
        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute("INSERT INTO child VALUES (99)", []))
            .expect("deferred");
        let error = db
            .end_event()
            .expect_err("the orphan is caught at the event's end");
        assert_eq!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        db.undo_event();
        db.begin_event().expect("begin");
        db.as_guest(|c| c.execute("INSERT INTO child VALUES (1)", []))
            .expect("fine");
        db.end_event().expect("end");
        db.commit()
            .expect("the batch commits without the bad event");
    }
}
