//! The alarm as an object's own database holds it: `_podhost_meta`, key
//! `alarm`, in ms since the epoch, so that setting it commits or rolls back
//! with the event that set it.

use rusqlite::{Connection, OptionalExtension};

/// The alarm stored in an object's database, in ms since the epoch.
pub(crate) fn read_alarm(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM _podhost_meta WHERE key = 'alarm'")?
        .query_row([], |row| row.get(0))
        .optional()
}

/// Sets (or with `None`, removes) the alarm stored in an object's database.
pub(crate) fn write_alarm(conn: &Connection, at_ms: Option<i64>) -> rusqlite::Result<()> {
    match at_ms {
        Some(at) => conn
            .prepare_cached(
                "INSERT INTO _podhost_meta (key, value) VALUES ('alarm', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([at])?,
        None => conn
            .prepare_cached("DELETE FROM _podhost_meta WHERE key = 'alarm'")?
            .execute([])?,
    };
    Ok(())
}
