//! `podhost:object/alarms`: the object's one alarm, kept in its own
//! database (`_podhost_meta`, key `alarm`) so that setting it commits or
//! rolls back with the event. The scheduler finds it through the catalog's
//! alarm index, which the actor keeps in step after each batch.

use rusqlite::{Connection, OptionalExtension};

use crate::bindings::StorageError;
use crate::bindings::podhost::object::alarms::Host;
use crate::capabilities::ObjectState;

impl Host for ObjectState {
    fn set(&mut self, at_ms: u64) -> Result<(), StorageError> {
        let at = i64::try_from(at_ms).unwrap_or(i64::MAX);
        self.transaction()?
            .host_write(|conn| write_alarm(conn, Some(at)))?;
        self.db.note_alarm_change();
        Ok(())
    }

    fn get(&mut self) -> Result<Option<u64>, StorageError> {
        Ok(read_alarm(self.transaction()?.host())?.map(i64::unsigned_abs))
    }

    fn cancel(&mut self) -> Result<bool, StorageError> {
        let db = self.transaction()?;
        let was_set = read_alarm(db.host())?.is_some();
        db.host_write(|conn| write_alarm(conn, None))?;
        self.db.note_alarm_change();
        Ok(was_set)
    }
}

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
