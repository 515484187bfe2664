//! The actor's side of alarms: firing them, retrying failed ones with
//! backoff, and keeping the catalog's alarm index in step with the alarm
//! in the object's database (early entries are harmless, late ones are
//! missed alarms: see `alarms::index`).

use super::{Actor, dispatch};
use crate::alarms::{IndexedAlarm, read_alarm};
use crate::logs::Level;
use crate::object::EventError;
use crate::storage::Database;
use crate::storage::catalog::now_ms;

/// The object's alarm after a batch: `None` if no event touched it.
pub(super) type AlarmAfterBatch = Option<Option<i64>>;

impl Actor {
    /// Runs the alarm handler if the stored alarm is due, then commits and
    /// updates the index; a failure schedules a retry or drops the alarm.
    pub(super) async fn fire_alarm(&mut self, retries: u32) {
        let now = now_ms();
        let watch = self.watch();
        let activated = self.activate(&watch).await;
        drop(watch);
        if let Err(error) = activated {
            self.alarm_failed(retries, &error.to_string());
            return;
        }
        let stored = match self.state.database() {
            Some(db) => read_alarm(db.host()),
            None => Ok(None),
        };
        let scheduled = match stored {
            Ok(Some(at)) if at <= now => at,
            // Cancelled, or moved later, since the entry was written.
            Ok(other) => return self.index_exactly(other),
            Err(error) => {
                self.alarm_failed(retries, &error.to_string());
                return;
            }
        };
        self.runtime.metrics().events.inc();
        let failure = match self.run_event(dispatch::Alarm(retries)).await {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(error) => Some(error.to_string()),
        };
        if let Some(message) = failure {
            if let Some(db) = self.database() {
                db.rollback();
            }
            self.batch.lose();
            self.alarm_failed(retries, &message);
            return;
        }
        let after = self.alarm_before_commit();
        self.alarm_mirrored().await;
        if let Err(error) = self.commit() {
            if let Some(db) = self.database() {
                db.rollback();
            }
            self.state.discard();
            self.batch.lose();
            self.alarm_failed(retries, &format!("its writes could not be saved: {error}"));
            return;
        }
        if self.replicate_commit().await {
            self.batch.release(self.runtime.sockets(), self.object.id());
        } else {
            // Not durable in the store: its messages are not sent.
            self.batch.refuse(|| EventError::ReplicationUnavailable);
        }
        let lag_ms = self.runtime.metrics().alarm_fired(scheduled, now_ms());
        self.metrics.alarm_lag.observe(lag_ms as f64 / 1000.0);
        // The handler cleared the alarm, unless it set another.
        self.index_exactly(after.flatten());
    }

    /// After the database opens: makes sure its alarm is in the index.
    pub(super) fn reconcile_alarm(&mut self, db: &Database) {
        self.indexed_alarm = None;
        let at = match read_alarm(db.host()) {
            Ok(Some(at)) => at,
            // A leftover entry wakes the object once and is removed then.
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, "cannot read the alarm");
                return;
            }
        };
        match self.runtime.catalog().indexed_alarm(self.object.id()) {
            // Being retried, or early: either way it wakes the object.
            Ok(Some(entry)) if entry.retries > 0 || entry.at_ms <= at => {
                self.indexed_alarm = Some(entry.at_ms);
                // The other nodes' copy may have missed a write.
                self.mirror_alarm(Some(entry.at_ms));
            }
            Ok(_) => self.index(at, 0),
            Err(error) => {
                tracing::error!(%error, "cannot read the alarm index");
            }
        }
    }

    /// Before a batch commits: the alarm its events left, if they touched
    /// it, already in the index if it is earlier than what is there.
    pub(super) fn alarm_before_commit(&mut self) -> AlarmAfterBatch {
        if !self.batch.take_alarm_change() {
            return None;
        }
        let db = self.database()?;
        let stored = match read_alarm(db.host()) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(%error, "cannot read the alarm");
                return None;
            }
        };
        if let Some(at) = stored
            && self.indexed_alarm.is_none_or(|indexed| at < indexed)
        {
            self.index(at, 0);
        }
        Some(stored)
    }

    /// After the batch committed: the index holds exactly its alarm.
    pub(super) fn alarm_after_commit(&mut self, after: AlarmAfterBatch) {
        if let Some(stored) = after
            && stored != self.indexed_alarm
        {
            self.index_exactly(stored);
        }
    }

    /// A failed attempt: retry after a backoff, or give up after the last.
    fn alarm_failed(&mut self, retries: u32, why: &str) {
        let settings = &self.runtime.config().alarms;
        if retries < settings.max_retries {
            let retry = retries + 1;
            let delay = settings.backoff(retry);
            tracing::warn!(retry, ?delay, "alarm failed, will retry: {why}");
            self.host_log(
                Level::Warn,
                format!("alarm failed, retry {retry} in {delay:?}: {why}"),
            );
            self.runtime.metrics().alarm_retries.inc();
            let at = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            self.index(at, retry);
            return;
        }
        tracing::error!(
            attempts = retries + 1,
            "alarm dropped after its last attempt failed: {why}"
        );
        self.host_log(
            Level::Error,
            format!("alarm dropped after its last attempt failed: {why}"),
        );
        self.runtime.metrics().alarms_dropped.inc();
        if let Some(db) = self.database()
            && let Err(error) = clear_alarm(db)
        {
            // It stays stored, and fires again when the object next opens.
            tracing::error!(%error, "cannot clear a dropped alarm");
        }
        self.index_exactly(None);
    }

    fn index_exactly(&mut self, stored: Option<i64>) {
        match stored {
            Some(at) => self.index(at, 0),
            None => {
                self.indexed_alarm = None;
                if let Err(error) = self.runtime.catalog().unindex_alarm(self.object.id()) {
                    tracing::error!(%error, "cannot update the alarm index");
                }
                self.mirror_alarm(None);
            }
        }
    }

    fn index(&mut self, at_ms: i64, retries: u32) {
        let object = &self.object;
        let entry = IndexedAlarm { at_ms, retries };
        match self
            .runtime
            .catalog()
            .index_alarm(object.id(), object.class(), object.name(), entry)
        {
            Ok(()) => {
                self.indexed_alarm = Some(at_ms);
                self.runtime.alarms().wake();
                self.mirror_alarm(Some(at_ms));
            }
            Err(error) => {
                tracing::error!(%error, "cannot update the alarm index");
            }
        }
    }
}

impl Actor {
    /// In a cluster: the index entry, written to etcd too, in order, so
    /// any node can run the alarm if this one dies.
    pub(super) fn mirror_alarm(&mut self, at_ms: Option<i64>) {
        if let Some(ownership) = self.runtime.ownership() {
            self.alarm_mirrored = Some(ownership.alarm_indexed(&self.object, at_ms));
        }
    }

    /// Waits until the last entry written to etcd is there: before a
    /// commit that sets an earlier alarm (writes are in order, so every
    /// earlier one is there too).
    pub(super) async fn alarm_mirrored(&mut self) {
        if let Some(written) = self.alarm_mirrored.take() {
            written.await;
        }
    }
}

/// Removes the stored alarm in a transaction of its own.
fn clear_alarm(db: &mut Database) -> rusqlite::Result<()> {
    db.begin_event()?;
    let cleared = db
        .host_write(|conn| crate::alarms::write_alarm(conn, None))
        .and_then(|()| db.end_event());
    match cleared {
        Ok(()) => db.commit(),
        Err(error) => {
            db.rollback();
            Err(error)
        }
    }
}
