//! How a store writes the shared tables ([`super::shared`]): on one node,
//! in a transaction of its own connection; in a cluster, by running the
//! same write on the node's copy to learn which rows it changes, rolling
//! it back, and handing those rows to the cluster ([`RowStore`]), which
//! makes them the truth only if none changed since the copy saw them, and
//! returns once the copy shows them. A conflict runs the write again on
//! the newer copy, so a store's checks (a taken email, a used refresh
//! token) decide on what every node agreed on.

use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde_json::{Map, Value};

use super::shared::{SHARED_TABLES, SharedTable, key_params, shared_table};

/// How many times a write conflicting with other nodes' is run again.
const ATTEMPTS: u32 = 20;

/// The node's record of the revision (and unique values) of each row of
/// its copy, kept by the cluster's applier.
pub const SHARED_ROWS_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _podhost_shared_rows (
        tbl TEXT NOT NULL,
        key TEXT NOT NULL,
        revision INTEGER NOT NULL,
        uniques TEXT NOT NULL,
        PRIMARY KEY (tbl, key)
    ) WITHOUT ROWID;
";

/// One row a write changes, as the cluster gets it.
#[derive(Debug, Clone)]
pub struct RowWrite {
    pub table: &'static SharedTable,
    /// The primary key's values (see [`SharedTable::key`]).
    pub key: Vec<Value>,
    /// The row's revision in the copy the write ran on; 0 when absent.
    pub known_revision: i64,
    /// Its unique columns' values then (see [`SharedTable::unique`]).
    pub unique_before: Vec<Value>,
    /// The row after the write; `None` when it deletes it.
    pub after: Option<Map<String, Value>>,
}

impl RowWrite {
    /// The unique columns' values after the write.
    pub fn unique_after(&self) -> Vec<Value> {
        unique_values(self.table, self.after.as_ref())
    }
}

/// The unique columns' values of `row` (none when there is no row).
pub fn unique_values(table: &SharedTable, row: Option<&Map<String, Value>>) -> Vec<Value> {
    match row {
        Some(row) => table
            .unique
            .iter()
            .map(|column| row.get(*column).cloned().unwrap_or(Value::Null))
            .collect(),
        None => Vec::new(),
    }
}

/// What the cluster did with a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// It is the truth, and this node's copy shows it.
    Done,
    /// A row changed since the copy saw it; the copy has caught up.
    Conflict,
}

/// Why a shared write could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SharedWriteError {
    #[error("the cluster's shared catalog is unavailable: {0}")]
    Unavailable(String),
    #[error("the cluster's shared catalog is too busy: {ATTEMPTS} attempts conflicted")]
    Contended,
}

impl From<SharedWriteError> for rusqlite::Error {
    fn from(error: SharedWriteError) -> Self {
        rusqlite::Error::UserFunctionError(Box::new(error))
    }
}

/// Where a cluster's shared writes go. Called on blocking threads.
pub trait RowStore: Send + Sync {
    fn commit(&self, rows: &[RowWrite]) -> Result<Committed, SharedWriteError>;

    /// Returns once this node's copy shows everything committed before
    /// the call.
    fn catch_up(&self) -> Result<(), SharedWriteError>;
}

/// How a store's writes are made.
#[derive(Clone, Default)]
pub enum Writes {
    /// On this node's catalog.
    #[default]
    Direct,
    /// Through the cluster.
    Shared(Arc<dyn RowStore>),
}

impl Writes {
    /// Runs `write` on `conn` as one transaction (`write` makes nested
    /// ones with savepoints), and returns what it returned. In a cluster
    /// only its changes to shared tables count; `write` may run several
    /// times.
    pub fn run<T, E>(
        &self,
        conn: &Mutex<Connection>,
        mut write: impl FnMut(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<rusqlite::Error> + From<SharedWriteError>,
    {
        let store = match self {
            Writes::Direct => {
                let mut conn = conn.lock();
                conn.execute_batch("BEGIN IMMEDIATE")?;
                return match write(&mut conn) {
                    Ok(value) => {
                        conn.execute_batch("COMMIT")?;
                        Ok(value)
                    }
                    Err(error) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        Err(error)
                    }
                };
            }
            Writes::Shared(store) => store,
        };
        for _ in 0..ATTEMPTS {
            let (value, rows) = {
                let mut conn = conn.lock();
                prepare_capture(&conn)?;
                conn.execute_batch("BEGIN IMMEDIATE; DELETE FROM temp._podhost_touched;")?;
                let outcome = write(&mut conn);
                let captured = match &outcome {
                    Ok(_) => captured(&conn),
                    Err(_) => Ok(Vec::new()),
                };
                conn.execute_batch("ROLLBACK")?;
                (outcome?, captured?)
            };
            if rows.is_empty() {
                return Ok(value);
            }
            match store.commit(&rows)? {
                Committed::Done => return Ok(value),
                Committed::Conflict => continue,
            }
        }
        Err(SharedWriteError::Contended.into())
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Writes::Shared(_))
    }

    /// In a cluster, returns once this node's copy shows everything etcd
    /// had when called; at once on one node.
    pub fn catch_up(&self) -> Result<(), SharedWriteError> {
        match self {
            Writes::Direct => Ok(()),
            Writes::Shared(store) => store.catch_up(),
        }
    }

    /// Runs `read` on `conn`; in a cluster, when it finds nothing, once
    /// more after this node's copy has caught up with etcd: a row another
    /// node wrote a moment ago (a signup, a new key) may not be in the
    /// copy yet, and a client trying it through this node at once must
    /// find it.
    pub fn read_fresh<T, E>(
        &self,
        conn: &Mutex<Connection>,
        read: impl Fn(&Connection) -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E>
    where
        E: From<SharedWriteError>,
    {
        let found = read(&conn.lock())?;
        match (found, self) {
            (None, Writes::Shared(store)) => {
                store.catch_up()?;
                read(&conn.lock())
            }
            (found, _) => Ok(found),
        }
    }
}

/// Makes `conn` note the key of every shared row it changes, in
/// `temp._podhost_touched` (temporary triggers, made once per
/// connection, on the shared tables it has).
fn prepare_capture(conn: &Connection) -> rusqlite::Result<()> {
    let ready: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM temp.sqlite_master WHERE name = '_podhost_touched'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if ready.is_some() {
        return Ok(());
    }
    // A REPLACE deleting a row runs the delete trigger too.
    let mut sql = String::from(
        "PRAGMA recursive_triggers = ON;
         CREATE TEMP TABLE _podhost_touched (tbl TEXT NOT NULL, key TEXT NOT NULL);",
    );
    for table in SHARED_TABLES {
        let exists: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1",
                [table.name],
                |row| row.get(0),
            )
            .optional()?;
        if exists.is_none() {
            continue;
        }
        let key = |row: &str| {
            let columns: Vec<String> = table
                .key
                .iter()
                .map(|column| format!("{row}.{column}"))
                .collect();
            format!(
                "INSERT INTO temp._podhost_touched VALUES ('{}', json_array({}));",
                table.name,
                columns.join(", ")
            )
        };
        let name = table.name;
        sql.push_str(&format!(
            "CREATE TEMP TRIGGER _podhost_touched_{name}_insert AFTER INSERT ON main.{name}
             BEGIN {new} END;
             CREATE TEMP TRIGGER _podhost_touched_{name}_update AFTER UPDATE ON main.{name}
             BEGIN {old} {new} END;
             CREATE TEMP TRIGGER _podhost_touched_{name}_delete AFTER DELETE ON main.{name}
             BEGIN {old} END;",
            new = key("NEW"),
            old = key("OLD"),
        ));
    }
    conn.execute_batch(&sql)
}

/// The rows the transaction open on `conn` changed, as they are now, with
/// what the copy knew of them before.
fn captured(conn: &Connection) -> rusqlite::Result<Vec<RowWrite>> {
    let touched: Vec<(String, String)> = conn
        .prepare("SELECT DISTINCT tbl, key FROM temp._podhost_touched")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut rows = Vec::with_capacity(touched.len());
    for (name, key_text) in touched {
        let Some(table) = shared_table(&name) else {
            continue;
        };
        let key: Vec<Value> = serde_json::from_str(&key_text)
            .map_err(|error| rusqlite::Error::UserFunctionError(Box::new(error)))?;
        let (known_revision, unique_before) = known(conn, table, &key)?;
        let after = read_row(conn, table, &key)?;
        rows.push(RowWrite {
            table,
            key,
            known_revision,
            unique_before,
            after,
        });
    }
    Ok(rows)
}

/// The canonical text of a row's key.
pub fn key_text(key: &[Value]) -> String {
    Value::Array(key.to_vec()).to_string()
}

/// The revision and unique values of a row as the copy last applied it.
fn known(
    conn: &Connection,
    table: &SharedTable,
    key: &[Value],
) -> rusqlite::Result<(i64, Vec<Value>)> {
    let found: Option<(i64, String)> = conn
        .query_row(
            "SELECT revision, uniques FROM main._podhost_shared_rows WHERE tbl = ?1 AND key = ?2",
            [table.name, &key_text(key)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(match found {
        Some((revision, uniques)) => (revision, serde_json::from_str(&uniques).unwrap_or_default()),
        None => (0, Vec::new()),
    })
}

/// Row `key` of `table` as column → value, if it exists.
pub fn read_row(
    conn: &Connection,
    table: &SharedTable,
    key: &[Value],
) -> rusqlite::Result<Option<Map<String, Value>>> {
    let values =
        key_params(key).map_err(|error| rusqlite::Error::UserFunctionError(error.into()))?;
    let mut statement = conn.prepare_cached(&format!(
        "SELECT * FROM main.{} WHERE {}",
        table.name,
        table.key_condition()
    ))?;
    let names: Vec<String> = statement.column_names().map(str::to_string).collect();
    statement
        .query_row(params_from_iter(values), |row| {
            let mut map = Map::new();
            for (index, name) in names.iter().enumerate() {
                map.insert(name.clone(), super::to_json(row.get_ref(index)?));
            }
            Ok(map)
        })
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Durability;

    /// A cluster that takes every write after `conflicts` conflicts, and
    /// keeps what it was given.
    #[derive(Default)]
    struct Recorder {
        conflicts: Mutex<u32>,
        given: Mutex<Vec<Vec<RowWrite>>>,
    }

    impl RowStore for Recorder {
        fn commit(&self, rows: &[RowWrite]) -> Result<Committed, SharedWriteError> {
            self.given.lock().push(rows.to_vec());
            let mut conflicts = self.conflicts.lock();
            if *conflicts > 0 {
                *conflicts -= 1;
                return Ok(Committed::Conflict);
            }
            Ok(Committed::Done)
        }

        fn catch_up(&self) -> Result<(), SharedWriteError> {
            Ok(())
        }
    }

    fn copy() -> (tempfile::TempDir, Mutex<Connection>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = crate::storage::catalog::connect(dir.path(), Durability::Normal).expect("open");
        conn.execute_batch(crate::accounts::SCHEMA).expect("schema");
        conn.execute_batch(SHARED_ROWS_SCHEMA).expect("schema");
        conn.execute_batch(
            "INSERT INTO users VALUES ('u1', 'ada@example.com', 'h', 1);
             INSERT INTO _podhost_shared_rows VALUES ('users', '[\"u1\"]', 7, '[\"ada@example.com\"]');",
        )
        .expect("a row");
        (dir, Mutex::new(conn))
    }

    #[test]
    fn a_shared_write_hands_over_the_rows_it_changed_and_leaves_the_copy_alone() {
        let (_dir, conn) = copy();
        let recorder = Arc::new(Recorder::default());
        let writes = Writes::Shared(Arc::clone(&recorder) as Arc<dyn RowStore>);
        let changed = writes
            .run(&conn, |conn| {
                let tx = conn.savepoint()?;
                tx.execute(
                    "UPDATE users SET email = 'ada@example.org' WHERE id = 'u1'",
                    [],
                )?;
                tx.execute(
                    "INSERT INTO users VALUES ('u2', 'bob@example.com', 'h', 2)",
                    [],
                )?;
                tx.commit()?;
                Ok::<_, anyhow::Error>(2)
            })
            .expect("written");
        assert_eq!(changed, 2);
        let given = recorder.given.lock();
        assert_eq!(given.len(), 1);
        let mut rows = given[0].clone();
        rows.sort_by_key(|row| key_text(&row.key));
        assert_eq!(rows[0].key, vec![Value::from("u1")]);
        assert_eq!(rows[0].known_revision, 7);
        assert_eq!(rows[0].unique_before, vec![Value::from("ada@example.com")]);
        assert_eq!(rows[0].unique_after(), vec![Value::from("ada@example.org")]);
        assert_eq!(rows[1].key, vec![Value::from("u2")]);
        assert_eq!(rows[1].known_revision, 0);
        assert_eq!(
            rows[1].after.as_ref().and_then(|row| row.get("created_at")),
            Some(&Value::from(2))
        );
        // Only the applier writes the copy.
        let emails: Vec<String> = conn
            .lock()
            .prepare("SELECT email FROM users ORDER BY id")
            .expect("query")
            .query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("emails");
        assert_eq!(emails, vec!["ada@example.com".to_string()]);
    }

    #[test]
    fn a_conflicting_write_runs_again_and_a_write_that_changes_nothing_is_not_sent() {
        let (_dir, conn) = copy();
        let recorder = Arc::new(Recorder {
            conflicts: Mutex::new(2),
            ..Recorder::default()
        });
        let writes = Writes::Shared(Arc::clone(&recorder) as Arc<dyn RowStore>);
        let mut runs = 0;
        writes
            .run(&conn, |conn| {
                runs += 1;
                conn.execute("DELETE FROM users WHERE id = 'u1'", [])?;
                Ok::<_, anyhow::Error>(())
            })
            .expect("written");
        assert_eq!(runs, 3);
        let given = recorder.given.lock();
        assert!(
            given
                .iter()
                .all(|rows| rows.len() == 1 && rows[0].after.is_none())
        );
        drop(given);
        let found = writes
            .run(&conn, |conn| {
                Ok::<_, anyhow::Error>(conn.execute("DELETE FROM users WHERE id = 'nobody'", [])?)
            })
            .expect("nothing written");
        assert_eq!(found, 0);
        assert_eq!(recorder.given.lock().len(), 3, "nothing more was sent");
    }

    #[test]
    fn a_failed_write_is_rolled_back_and_sends_nothing() {
        let (_dir, conn) = copy();
        let recorder = Arc::new(Recorder::default());
        let writes = Writes::Shared(Arc::clone(&recorder) as Arc<dyn RowStore>);
        let failed: anyhow::Result<()> = writes.run(&conn, |conn| {
            conn.execute("DELETE FROM users", [])?;
            anyhow::bail!("refused")
        });
        assert!(failed.is_err());
        assert!(recorder.given.lock().is_empty());
        let users: i64 = conn
            .lock()
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .expect("count");
        assert_eq!(users, 1);
    }
}
