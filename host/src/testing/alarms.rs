//! Firing alarms from a test without waiting for them.
//!
//! The harness reads the catalog's alarm index as the scheduler does and
//! delivers each due entry through `Runtime::fire_alarm`. An alarm set
//! for later than now is first moved to now in the object's database
//! (while it hibernates), because the object checks its stored alarm
//! against the real clock: the object's clock does not move.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use super::Harness;
use super::sql::with_closed_database;
use crate::alarms::DueAlarm;
use crate::alarms::{read_alarm, write_alarm};
use crate::storage::catalog::now_ms;

/// Due entries read at once.
const BATCH: usize = 1024;

impl Harness {
    /// Fires every alarm due now (retries included). Returns how many
    /// alarm events were delivered.
    pub async fn fire_due_alarms(&self) -> anyhow::Result<usize> {
        self.advance_alarms(SystemTime::now()).await
    }

    /// Fires every alarm set for `after` from now or earlier, as if that
    /// time had come, each once: an alarm a handler sets meanwhile waits
    /// for the next call. Returns how many alarm events were delivered.
    pub async fn advance_alarms_by(&self, after: Duration) -> anyhow::Result<usize> {
        self.advance_alarms(SystemTime::now() + after).await
    }

    /// Fires every alarm due at or before `until` (the retries of failed
    /// ones included), each once, one object at a time. Returns how many
    /// alarm events were delivered.
    pub async fn advance_alarms(&self, until: SystemTime) -> anyhow::Result<usize> {
        let until_ms = until.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
        let catalog = std::sync::Arc::clone(self.runtime.catalog());
        let due = tokio::task::spawn_blocking(move || {
            let due = catalog.due_alarms(until_ms, BATCH, &[])?;
            due.into_iter()
                .map(|alarm| Ok((catalog.indexed_alarm(&alarm.id)?, alarm)))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
        .context("reading the alarm index panicked")?
        .context("cannot read the alarm index")?;
        let mut fired = 0;
        for (entry, alarm) in due {
            if entry.is_some_and(|entry| entry.at_ms > now_ms()) {
                self.bring_forward(&alarm, until_ms).await?;
            }
            match self
                .runtime
                .fire_alarm(&alarm.class, &alarm.name, alarm.retries)
                .await
            {
                Ok(()) => fired += 1,
                Err(error) => {
                    tracing::warn!(object = alarm.name, %error, "cannot deliver an alarm")
                }
            }
        }
        Ok(fired)
    }

    /// Moves the object's stored alarm, if it is due by `until_ms`, to now.
    async fn bring_forward(&self, alarm: &DueAlarm, until_ms: i64) -> anyhow::Result<()> {
        with_closed_database(&self.runtime, &alarm.class, &alarm.name, move |db| {
            let now = now_ms();
            if read_alarm(db.host())?.is_some_and(|at| at > now && at <= until_ms) {
                db.begin_event()?;
                db.host_write(|conn| write_alarm(conn, Some(now)))?;
                db.end_event()?;
                db.commit()?;
            }
            Ok(())
        })
        .await
    }
}
