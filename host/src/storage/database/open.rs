//! Opening an object's database: the file claimed for this connection,
//! made from the template if new, WAL mode, the host's pragmas and limits,
//! the authorizer, and the replaced functions.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rusqlite::config::DbConfig;
use rusqlite::limits::Limit;
use rusqlite::{Connection, FileControl, OpenFlags};

use super::{Database, INTERNAL_TABLES, Settings};
use crate::storage::Spares;
use crate::storage::authorizer::Guard;
use crate::storage::claim::Claim;

/// SQLite's unix VFS without file locks; see [`Claim`] for why and what
/// keeps a database to one connection instead.
const UNLOCKED_VFS: &std::ffi::CStr = c"unix-none";

/// Largest string, blob or row.
const MAX_VALUE_LENGTH: i32 = 16 << 20;
/// Longest LIKE or GLOB pattern.
const MAX_LIKE_PATTERN: i32 = 200;

/// How far past its storage limit one write may take a database before
/// SQLite itself refuses. The host enforces the limit exactly after each
/// write; this backstop exists because SQLite, when it refuses a page,
/// rolls back the whole transaction rather than the one statement.
const STORAGE_BACKSTOP: u64 = 2 * MAX_VALUE_LENGTH as u64;

impl Database {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, settings: &Settings) -> anyhow::Result<Self> {
        Self::open_with_spares(path, settings, None)
    }

    /// Opens the database at `path`; a new one is a spare put in place if
    /// `spares` has one ready, else made from the template.
    pub fn open_with_spares(
        path: &Path,
        settings: &Settings,
        spares: Option<&Spares>,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        let claim = Claim::take(path)?;
        crate::storage::template::create_database_file(path, spares)?;
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
        crate::storage::functions::replace_quadratic_functions(&conn, MAX_VALUE_LENGTH as usize)?;
        let interrupt = Arc::new(conn.get_interrupt_handle());
        Ok(Database {
            conn,
            guard,
            schema_ready,
            pending: false,
            page_size,
            durability: settings.durability,
            max_storage_bytes: settings.max_storage_bytes,
            migrated: false,
            interrupt,
            wal: crate::storage::layout::wal_path(path),
            replicated: false,
            cursor: Default::default(),
            _claim: claim,
        })
    }
}

/// Applies the host's settings; returns the page size.
fn configure(conn: &mut Connection, settings: &Settings) -> rusqlite::Result<u64> {
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
    // A script prepares its remaining text each time, so this also bounds
    // the length of scripts.
    conn.set_limit(
        Limit::SQLITE_LIMIT_SQL_LENGTH,
        clamp(settings.max_sql_length),
    )?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_LENGTH)?;
    // LIKE and GLOB take time in one VM step that grows with the pattern's
    // wildcards times the text's length: keep patterns short.
    conn.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN)?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_VARIABLE_NUMBER,
        clamp(settings.max_sql_parameters),
    )?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let page_size = page_size.unsigned_abs().max(512);
    let backstop = settings.max_storage_bytes.saturating_add(STORAGE_BACKSTOP);
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

fn clamp(limit: u32) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt as _;

    use super::super::{Durability, test_settings};
    use super::*;

    fn inode(path: &Path) -> u64 {
        std::fs::metadata(path).expect("metadata").ino()
    }

    #[test]
    fn a_new_database_is_a_ready_spare_linked_into_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spares = Spares::new(dir.path().join("spare"));
        spares.fill_for_test();
        let spare_files: HashSet<u64> = std::fs::read_dir(dir.path().join("spare"))
            .expect("spare dir")
            .map(|entry| inode(&entry.expect("entry").path()))
            .collect();

        let path = dir.path().join("objects/c/ab/abcd.sqlite");
        let settings = test_settings(Durability::Normal);
        let mut db = Database::open_with_spares(&path, &settings, Some(&spares)).expect("open");
        assert!(
            spare_files.contains(&inode(&path)),
            "the database is one of the spares, not a copy of the template"
        );
        assert_eq!(std::fs::metadata(&path).expect("database").nlink(), 1);
        db.begin_event().expect("begin");
        db.as_guest_write(|c| c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)"))
            .expect("write");
        db.end_event().expect("end");
        db.commit().expect("commit");
    }
}
