//! The catalog's alarm index: for each object with an alarm, when the
//! scheduler must next wake it, so that it finds due alarms without
//! opening every object.
//!
//! The object's own database holds the truth. The index may only ever be
//! early: an entry at or before the object's alarm, or one for an alarm
//! that is gone. The scheduler's wake-up then finds the truth and corrects
//! the entry. An entry later than the alarm, or a missing one, would be a
//! missed alarm, so an actor writes an earlier time to the index *before*
//! the commit that sets it, and a later time or a removal only after.

//!
//! Its table is made with the catalog's (`storage::catalog`), which also
//! drops an object's entry when the object is deleted.
//!
//! Writes to it are a deliberate synchronous step of the event path: an
//! actor writes an earlier entry before its batch commits (one upsert in
//! the catalog, `fsync`ed when the catalog's durability is full), so that
//! no crash can leave the index later than the object. It runs on the
//! guest thread, holds the catalog's lock only for that statement, and
//! happens only in batches that change their object's alarm.

use rusqlite::{OptionalExtension, params};

use crate::storage::catalog::Catalog;

/// An object's entry in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedAlarm {
    pub at_ms: i64,
    pub retries: u32,
}

/// A due entry, as the scheduler delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAlarm {
    pub id: String,
    pub class: String,
    pub name: String,
    pub retries: u32,
}

impl Catalog {
    pub fn indexed_alarm(&self, id: &str) -> rusqlite::Result<Option<IndexedAlarm>> {
        self.lock()
            .prepare_cached("SELECT at_ms, retries FROM alarms WHERE id = ?1")?
            .query_row([id], |row| {
                Ok(IndexedAlarm {
                    at_ms: row.get(0)?,
                    retries: row.get(1)?,
                })
            })
            .optional()
    }

    /// Sets object `id`'s entry.
    pub fn index_alarm(
        &self,
        id: &str,
        class: &str,
        name: &str,
        alarm: IndexedAlarm,
    ) -> rusqlite::Result<()> {
        self.lock()
            .prepare_cached(
                "INSERT INTO alarms (id, class, name, at_ms, retries) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms, retries = excluded.retries",
            )?
            .execute(params![id, class, name, alarm.at_ms, alarm.retries])?;
        Ok(())
    }

    pub fn unindex_alarm(&self, id: &str) -> rusqlite::Result<()> {
        self.lock()
            .prepare_cached("DELETE FROM alarms WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// Entries due at `now_ms`, earliest first, at most `limit`, leaving
    /// out those of `skip_classes`.
    pub fn due_alarms(
        &self,
        now_ms: i64,
        limit: usize,
        skip_classes: &[&str],
    ) -> rusqlite::Result<Vec<DueAlarm>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, class, name, retries FROM alarms
             WHERE at_ms <= ?1 AND class NOT IN (SELECT value FROM json_each(?3))
             ORDER BY at_ms LIMIT ?2",
        )?;
        let skip = serde_json::to_string(skip_classes).unwrap_or_else(|_| "[]".into());
        let rows = stmt.query_map(params![now_ms, limit as i64, skip], |row| {
            Ok(DueAlarm {
                id: row.get(0)?,
                class: row.get(1)?,
                name: row.get(2)?,
                retries: row.get(3)?,
            })
        })?;
        rows.collect()
    }

    /// The earliest entry after `now_ms`, if any.
    pub fn next_alarm_after(&self, now_ms: i64) -> rusqlite::Result<Option<i64>> {
        self.lock()
            .prepare_cached("SELECT min(at_ms) FROM alarms WHERE at_ms > ?1")?
            .query_row([now_ms], |row| row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_due_in_time_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog =
            Catalog::open(dir.path(), crate::storage::Durability::Normal).expect("catalog");
        let at = |at_ms| IndexedAlarm { at_ms, retries: 0 };
        catalog
            .index_alarm("b", "c", "bee", at(200))
            .expect("index");
        catalog.index_alarm("a", "c", "ay", at(100)).expect("index");
        catalog
            .index_alarm("z", "c", "zed", at(900))
            .expect("index");
        let due: Vec<String> = catalog
            .due_alarms(500, 10, &[])
            .expect("due")
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(due, ["ay", "bee"]);
        catalog
            .index_alarm("o", "other", "oh", at(300))
            .expect("index");
        let due: Vec<String> = catalog
            .due_alarms(500, 10, &["c"])
            .expect("due")
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(due, ["oh"], "a skipped class's entries wait");
        catalog.unindex_alarm("o").expect("remove");
        assert_eq!(catalog.next_alarm_after(500).expect("next"), Some(900));
        catalog
            .index_alarm(
                "a",
                "c",
                "ay",
                IndexedAlarm {
                    at_ms: 950,
                    retries: 2,
                },
            )
            .expect("retry");
        assert_eq!(
            catalog.indexed_alarm("a").expect("read"),
            Some(IndexedAlarm {
                at_ms: 950,
                retries: 2
            })
        );
        catalog.unindex_alarm("b").expect("remove");
        assert!(catalog.due_alarms(500, 10, &[]).expect("due").is_empty());
        assert_eq!(catalog.next_alarm_after(2000).expect("next"), None);
    }
}
