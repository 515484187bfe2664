//! Many named timers on one object, on its single alarm.
//!
//! Tasks live in the object's table `podhost_schedule` (created on first
//! use); the alarm is kept at the earliest one. Each call is one line:
//!
//! ```ignore
//! schedule::after("expire:s1", Duration::from_secs(3600), &session_id)?;
//! schedule::cancel("expire:s1")?;
//!
//! fn alarm(&mut self, _retry: u32) -> Result<()> {
//!     for task in schedule::take_due()? {
//!         let id: String = task.payload()?;
//!         // ...
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Like everything in an event, changes commit with it: if the alarm
//! handler fails, the tasks it took are back, and it is retried. A class
//! using this module owns its alarm: don't set it by hand as well.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::time::{from_ms, to_ms};
use crate::{StorageError, StorageErrorCode, alarms, sql};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS podhost_schedule (
    name TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS podhost_schedule_by_time ON podhost_schedule (at_ms);";

/// A scheduled task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub name: String,
    pub at: SystemTime,
    /// JSON, as given to [`at`] or [`after`].
    pub payload: Vec<u8>,
}

impl Task {
    /// The payload, decoded.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, StorageError> {
        serde_json::from_slice(&self.payload).map_err(|error| StorageError {
            code: StorageErrorCode::Invalid,
            message: format!(
                "task {:?} has a payload of another shape: {error}",
                self.name
            ),
        })
    }
}

/// Schedules (or reschedules) task `name` at `when`, with `payload`.
pub fn at<T: Serialize + ?Sized>(
    name: &str,
    when: SystemTime,
    payload: &T,
) -> Result<(), StorageError> {
    let payload = serde_json::to_vec(payload).map_err(|error| StorageError {
        code: StorageErrorCode::Invalid,
        message: format!("task {name:?}: cannot encode the payload: {error}"),
    })?;
    ensure_table()?;
    sql::execute(
        "INSERT INTO podhost_schedule (name, at_ms, payload) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET at_ms = excluded.at_ms, payload = excluded.payload",
        (name, to_ms(when), payload),
    )?;
    rearm()
}

/// Schedules (or reschedules) task `name` to run `delay` from now.
pub fn after<T: Serialize + ?Sized>(
    name: &str,
    delay: Duration,
    payload: &T,
) -> Result<(), StorageError> {
    at(name, SystemTime::now() + delay, payload)
}

/// Cancels task `name`; returns whether it was scheduled.
pub fn cancel(name: &str) -> Result<bool, StorageError> {
    ensure_table()?;
    let removed = sql::execute("DELETE FROM podhost_schedule WHERE name = ?", (name,))? > 0;
    if removed {
        rearm()?;
    }
    Ok(removed)
}

/// When task `name` is scheduled, if it is.
pub fn when(name: &str) -> Result<Option<SystemTime>, StorageError> {
    ensure_table()?;
    let at: Option<i64> =
        sql::query_one("SELECT at_ms FROM podhost_schedule WHERE name = ?", (name,))?;
    Ok(at.map(from_ms))
}

/// Every scheduled task, earliest first.
pub fn list() -> Result<Vec<Task>, StorageError> {
    ensure_table()?;
    tasks(
        "SELECT name, at_ms, payload FROM podhost_schedule ORDER BY at_ms, name",
        (),
    )
}

/// Removes and returns the tasks that are due, earliest first, and sets
/// the alarm to the next one. Call it from [`Object::alarm`](crate::Object::alarm).
pub fn take_due() -> Result<Vec<Task>, StorageError> {
    ensure_table()?;
    let now = crate::time::now_ms();
    let due = tasks(
        "SELECT name, at_ms, payload FROM podhost_schedule WHERE at_ms <= ? ORDER BY at_ms, name",
        (now,),
    )?;
    sql::execute("DELETE FROM podhost_schedule WHERE at_ms <= ?", (now,))?;
    rearm()?;
    Ok(due)
}

fn tasks(query: &str, params: impl sql::Params) -> Result<Vec<Task>, StorageError> {
    let rows: Vec<(String, i64, Vec<u8>)> = sql::query(query, params)?;
    Ok(rows
        .into_iter()
        .map(|(name, at, payload)| Task {
            name,
            at: from_ms(at),
            payload,
        })
        .collect())
}

/// Keeps the alarm at the earliest task, or off.
fn rearm() -> Result<(), StorageError> {
    let earliest: Option<Option<i64>> =
        sql::query_one("SELECT min(at_ms) FROM podhost_schedule", ())?;
    match earliest.flatten() {
        Some(at) => alarms::set_at(from_ms(at)),
        None => alarms::cancel().map(drop),
    }
}

fn ensure_table() -> Result<(), StorageError> {
    thread_local! {
        static READY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !READY.get() {
        sql::script(TABLE)?;
        READY.set(true);
    }
    Ok(())
}
