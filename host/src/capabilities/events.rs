//! `podhost:object/events`: the object's durable event log. An event is
//! written to `_podhost_events` in the event's transaction (the log keeps
//! the newest `[events] retention`) and goes to SSE subscribers through the
//! outbox once the batch commits.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::bindings::podhost::object::events::Host;
use crate::bindings::{StorageError, StorageErrorCode};
use crate::capabilities::ObjectState;
use crate::config::MAX_EVENT_NAME_BYTES;
use crate::sockets::{LoggedEvent, Outgoing};

/// What an SSE client missed: the logged events after the id it saw.
#[derive(Debug, Default)]
pub struct Backlog {
    pub events: Vec<LoggedEvent>,
    /// Some of the events it missed are no longer in the log.
    pub gap: bool,
}

/// The logged events after `after`, oldest first.
pub(crate) fn read_backlog(conn: &Connection, after: u64) -> rusqlite::Result<Backlog> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    // A database from before the log, not yet written to since.
    let logged: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM sqlite_schema WHERE name = '_podhost_events'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    if logged.is_none() {
        return Ok(Backlog::default());
    }
    let (oldest, newest): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(id), max(id) FROM _podhost_events")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let mut statement = conn
        .prepare_cached("SELECT id, name, data FROM _podhost_events WHERE id > ?1 ORDER BY id")?;
    let events = statement
        .query_map(params![after], |row| {
            Ok(LoggedEvent {
                id: row.get::<_, i64>(0)?.unsigned_abs(),
                name: Arc::from(row.get::<_, String>(1)?),
                data: Arc::from(row.get::<_, String>(2)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Missed events were trimmed, or the client saw ids this log never
    // had (the object was deleted and started over).
    let gap = match (oldest, newest) {
        (Some(oldest), Some(newest)) => oldest > after.saturating_add(1) || after > newest,
        _ => after > 0,
    };
    Ok(Backlog { gap, events })
}

impl Host for ObjectState {
    fn publish(&mut self, name: String, data: String) -> Result<u64, StorageError> {
        let settings = self.sockets.event_settings();
        if name.is_empty() || name.len() > MAX_EVENT_NAME_BYTES || name.contains(['\n', '\r']) {
            return Err(StorageError::new(
                StorageErrorCode::Invalid,
                format!("an event name has 1 to {MAX_EVENT_NAME_BYTES} bytes and no line breaks"),
            ));
        }
        if data.len() > settings.max_data_bytes {
            return Err(StorageError::new(
                StorageErrorCode::TooBig,
                format!(
                    "an event's data has at most {} bytes",
                    settings.max_data_bytes
                ),
            ));
        }
        let retention = i64::try_from(settings.retention).unwrap_or(i64::MAX);
        let id = self.transaction()?.host_write(|conn| {
            conn.prepare_cached("INSERT INTO _podhost_events (name, data) VALUES (?1, ?2)")?
                .execute(params![name, data])?;
            let id = conn.last_insert_rowid();
            conn.prepare_cached("DELETE FROM _podhost_events WHERE id <= ?1")?
                .execute(params![id.saturating_sub(retention)])?;
            Ok(id)
        })?;
        let id = id.unsigned_abs();
        self.outbox.push(Outgoing::Event(LoggedEvent {
            id,
            name: Arc::from(name),
            data: Arc::from(data),
        }));
        Ok(id)
    }
}
