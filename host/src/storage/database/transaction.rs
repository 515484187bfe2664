//! The batch's transaction: begun by its first event, one savepoint per
//! event (a failed event undoes only its own writes), committed once; and
//! the case where SQLite ends it under the host's feet.

use super::{Database, Durability, INTERNAL_SCHEMA};

// Transaction control, named so that they can go through the statement
// cache: guest SQL that mentions `_podhost_` is refused, so no guest text
// can ever be the key of one of these.
pub(super) const BEGIN: &str = "/* _podhost_ */ BEGIN";
pub(super) const COMMIT: &str = "/* _podhost_ */ COMMIT";
pub(super) const ROLLBACK: &str = "/* _podhost_ */ ROLLBACK";

impl Database {
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
        self.durability != Durability::Normal && self.wrote()
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
        self.commit_statement()?;
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

    /// Whether an event transaction is open. It can close under a guest's
    /// feet when SQLite aborts it, and then no further write may run.
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Runs one of the host's statements through the statement cache. Guest
    /// SQL never reaches these cached statements: they all name
    /// `_podhost_` things, which guest SQL may not mention.
    pub(super) fn run_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }
}

pub(super) fn aborted() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("the transaction was rolled back by an earlier statement or error".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Durability, Settings, test_settings};
    use super::*;

    #[test]
    fn events_commit_or_roll_back_and_guest_rules_apply() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a/b/object.sqlite");
        let settings = test_settings(Durability::Full);
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
        let normal = Settings {
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
    fn a_statement_that_rolls_back_everything_loses_the_batch_visibly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Database::open(
            &dir.path().join("lost.sqlite"),
            &test_settings(Durability::Normal),
        )
        .expect("open");
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
        let mut db = Database::open(
            &dir.path().join("fk.sqlite"),
            &test_settings(Durability::Normal),
        )
        .expect("open");
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
