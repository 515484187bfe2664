//! New object databases start as a copy of one prepared image: already in
//! WAL mode and holding the host's internal tables.
//!
//! Letting SQLite create each file itself costs about six `fsync`s before
//! the object's first commit: switching a new file to WAL goes through a
//! rollback journal (journal, its directory, its header, the database,
//! then the WAL and its directory). Writing the image costs one, and the
//! first commit adds the WAL's two.

use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;
use rusqlite::Connection;

use super::Spares;
use super::database::INTERNAL_SCHEMA;

/// Header bytes 18 and 19: the file format's write and read versions,
/// 2 for WAL. This is all `PRAGMA journal_mode = WAL` changes in the file.
const FORMAT_VERSIONS: std::ops::Range<usize> = 18..20;
const WAL_FORMAT: u8 = 2;

/// Creates the database file at `path`, unless a file is there already:
/// a spare if `spares` has one, else a copy of the image. Either was
/// synced before it got its name, so a crash leaves either no file or the
/// whole image (an empty or torn file would make SQLite ignore, or delete,
/// a WAL committed after it).
pub(crate) fn create_database_file(path: &Path, spares: Option<&Spares>) -> anyhow::Result<()> {
    if path.exists() || spares.is_some_and(|spares| spares.place(path)) {
        return Ok(());
    }
    let image = image()?;
    let partial = &super::layout::partial_path(path);
    remove_orphan_wal(path)?;
    let mut file = std::fs::File::create(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    file.write_all(image)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    drop(file);
    // The directory entry is synced by the first commit: SQLite syncs the
    // directory when it creates the WAL, which lives in the same one.
    std::fs::rename(partial, path)
        .with_context(|| format!("cannot rename {} into place", partial.display()))
}

/// Removes a write-ahead log left without its database (a crash while the
/// object was being deleted, which removes the database first). Databases
/// close without a checkpoint, so it may hold frames, and SQLite would
/// apply them to the new database. The directory is synced before the new
/// file gets its name, so no crash brings the log back next to it.
fn remove_orphan_wal(path: &Path) -> anyhow::Result<()> {
    let wal = &super::layout::wal_path(path);
    match std::fs::remove_file(wal) {
        Ok(()) => {
            tracing::warn!(wal = %wal.display(), "removed a write-ahead log whose database was gone");
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|dir| dir.sync_all())
                    .with_context(|| format!("cannot sync {}", dir.display()))?;
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", wal.display())),
    }
}

/// The image, made once per process by SQLite itself.
pub(super) fn image() -> anyhow::Result<&'static [u8]> {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    if let Some(image) = IMAGE.get() {
        return Ok(image);
    }
    let made = make_image(INTERNAL_SCHEMA).context("cannot prepare the template database")?;
    Ok(IMAGE.get_or_init(|| made))
}

fn make_image(schema: &str) -> rusqlite::Result<Vec<u8>> {
    let mut conn = Connection::open_in_memory()?;
    conn.execute_batch(schema)?;
    let mut image = conn.serialize(rusqlite::MAIN_DB)?.to_vec();
    image[FORMAT_VERSIONS].fill(WAL_FORMAT);
    Ok(image)
}

/// Checks that `path` is a new object database: WAL mode, whole, with
/// the internal tables; writes one row to `_podhost_kv`.
#[cfg(test)]
pub(super) fn assert_new_database(path: &Path) {
    let conn = Connection::open(path).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    conn.execute("INSERT INTO _podhost_kv VALUES ('k', x'00')", [])
        .expect("the schema is there");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_opens_in_wal_mode_with_its_schema() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("new.sqlite");
        create_database_file(&path, None).expect("create");
        assert!(!dir.path().join("new.sqlite.new").exists());
        assert_new_database(&path);
        // An existing file is never overwritten.
        create_database_file(&path, None).expect("again");
        let conn = Connection::open(&path).expect("reopen");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM _podhost_kv", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 1);
    }

    #[test]
    fn a_log_left_without_its_database_is_not_applied_to_a_new_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.sqlite");
        create_database_file(&path, None).expect("create");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;
             CREATE TABLE stale (x); INSERT INTO stale VALUES (1);",
        )
        .expect("write");
        // Keep the log's frames, as podhost's databases do at close.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .expect("no checkpoint");
        drop(conn);
        let wal = dir.path().join("old.sqlite-wal");
        assert!(std::fs::metadata(&wal).expect("log").len() > 0);
        // A deletion that crashed after removing the database.
        std::fs::remove_file(&path).expect("remove");

        create_database_file(&path, None).expect("create again");
        let conn = Connection::open(&path).expect("open");
        let stale: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'stale'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(stale, 0, "the old object's writes did not come back");
    }
}
