//! The operator's look inside an object's database, on the object's own
//! connection between batches: what it holds, a read-only query, a
//! consistent copy (the online backup API), and checking a database
//! offered to replace it.
//!
//! An operator's query runs under an authorizer of its own that allows
//! reading only (no writes, ATTACH, transaction control or PRAGMAs that
//! set anything), with `PRAGMA query_only` on, and is refused unless
//! SQLite calls the statement read-only; a progress handler stops it at
//! its deadline. The guest's authorizer is put back afterwards.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use parking_lot::Mutex;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::Database;
use crate::storage::RESERVED_PREFIX;

/// How a query may grow: rows, bytes of values, time.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// A query's result: values as JSON (integers and reals as numbers, text
/// as strings, blobs as `{"base64": "..."}`, NULL as null).
#[derive(Debug, Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// More rows were there than the limits let through.
    pub truncated: bool,
}

/// Why an operator's query produced no rows.
#[derive(Debug, thiserror::Error)]
pub enum QueryFailure {
    /// Refused before it ran: it would write, or is not allowed.
    #[error("{0}")]
    Refused(String),
    #[error("the query ran past its time limit of {0:?} and was stopped")]
    Timeout(Duration),
    /// SQLite's own error (syntax, no such table, ...).
    #[error("{0}")]
    Failed(String),
}

/// A guest table and its row count.
#[derive(Debug, Serialize)]
pub struct TableRows {
    pub name: String,
    pub rows: i64,
}

/// What the database holds, for inspection.
#[derive(Debug, Default, Serialize)]
pub struct Contents {
    /// The guest's tables (not the host's `_podhost_*` ones).
    pub tables: Vec<TableRows>,
    /// The host's own tables (`_podhost_kv`, `_podhost_events`, ...).
    pub internal_tables: Vec<TableRows>,
    /// The stored alarm, ms since the epoch.
    pub alarm: Option<i64>,
    /// First and last id in the event log, if it holds any.
    pub event_log: Option<(i64, i64)>,
    /// How many of the class's migrations the database has had.
    pub migrations: i64,
}

/// At most this many tables are counted by an inspection.
const MAX_TABLES_COUNTED: usize = 1000;

impl Database {
    /// Runs one read-only statement for the operator.
    pub fn operator_query(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: QueryLimits,
    ) -> Result<QueryResult, QueryFailure> {
        let denial = Arc::new(Mutex::new(None));
        self.conn
            .execute_batch("PRAGMA query_only = 1")
            .map_err(|error| QueryFailure::Failed(error.to_string()))?;
        self.conn
            .authorizer(Some(read_only_authorizer(Arc::clone(&denial))))
            .map_err(|error| QueryFailure::Failed(error.to_string()))?;
        let deadline = Instant::now() + limits.timeout;
        let result = self
            .conn
            .progress_handler(1000, Some(move || Instant::now() >= deadline))
            .map_err(|error| QueryFailure::Failed(error.to_string()))
            .and_then(|()| run_query(&self.conn, sql, params, limits, &denial));
        let cleared = self.conn.progress_handler(0, None::<fn() -> bool>);
        let guest_rules = self.guard.callback();
        let restored = cleared
            .and_then(|()| self.conn.authorizer(Some(guest_rules)))
            .and_then(|()| self.conn.execute_batch("PRAGMA query_only = 0"));
        if let Err(error) = restored {
            // The connection would refuse the object's writes: it must go.
            tracing::error!(%error, "cannot restore the connection after a query");
            return Err(QueryFailure::Failed(
                "the host could not restore the object's connection".into(),
            ));
        }
        result.map_err(|failure| match failure {
            QueryFailure::Failed(message) if Instant::now() >= deadline => {
                tracing::debug!(message, "operator query interrupted");
                QueryFailure::Timeout(limits.timeout)
            }
            other => other,
        })
    }

    /// The tables with their row counts, the alarm, the event log's range
    /// and the migrations had, each count under `timeout` in all.
    pub fn contents(&mut self, timeout: Duration) -> rusqlite::Result<Contents> {
        let deadline = Instant::now() + timeout;
        self.conn
            .progress_handler(1000, Some(move || Instant::now() >= deadline))?;
        let contents = self.read_contents();
        self.conn.progress_handler(0, None::<fn() -> bool>)?;
        contents
    }

    fn read_contents(&self) -> rusqlite::Result<Contents> {
        let conn = &self.conn;
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table'
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut contents = Contents::default();
        for name in names.into_iter().take(MAX_TABLES_COUNTED) {
            let rows: i64 =
                conn.query_row(&format!("SELECT count(*) FROM {}", quote(&name)), [], |r| {
                    r.get(0)
                })?;
            let internal = name
                .get(..RESERVED_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX));
            let entry = TableRows { name, rows };
            if internal {
                contents.internal_tables.push(entry);
            } else {
                contents.tables.push(entry);
            }
        }
        let has = |table: &str| contents.internal_tables.iter().any(|t| t.name == table);
        if has("_podhost_meta") {
            contents.alarm = crate::alarms::read_alarm(conn)?;
            contents.migrations = conn
                .query_row(
                    "SELECT value FROM _podhost_meta WHERE key = 'migrations'",
                    [],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(0);
        }
        if has("_podhost_events") {
            let (first, last): (Option<i64>, Option<i64>) =
                conn.query_row("SELECT min(id), max(id) FROM _podhost_events", [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            contents.event_log = first.zip(last);
        }
        Ok(contents)
    }

    /// Copies the database, as of the last commit, into a new file at
    /// `to` with SQLite's online backup API; the copy is in rollback-journal
    /// mode (a single file, no log).
    pub fn back_up_to(&self, to: &Path) -> rusqlite::Result<()> {
        let mut copy = Connection::open(to)?;
        {
            let backup = Backup::new(&self.conn, &mut copy)?;
            // Nothing else uses the source (one connection per file), so
            // one step copies it all; a busy step is only retried.
            loop {
                match backup.step(-1)? {
                    StepResult::Done => break,
                    StepResult::More | StepResult::Busy | StepResult::Locked => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    _ => {}
                }
            }
        }
        // A file that stands alone, as any SQLite tool expects: the copy
        // carries the source's WAL mark, which would have it look for a log.
        copy.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        copy.close().map_err(|(_, error)| error)
    }

    /// Copies the write-ahead log into the database file and empties it,
    /// so the file alone holds every commit.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy != 0 {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("the write-ahead log could not be checkpointed".into()),
            ));
        }
        Ok(())
    }
}

/// What a database offered for import holds, once checked.
#[derive(Debug)]
pub struct ImportCheck {
    /// How many of its class's migrations it has had.
    pub migrations: i64,
}

/// Checks that the file at `path` is an SQLite database that passes
/// `PRAGMA integrity_check`, reading it with the same defences as an
/// object's database (its schema is not trusted). Returns why not.
pub fn check_import(path: &Path) -> Result<ImportCheck, String> {
    let not_sqlite =
        |error: rusqlite::Error| format!("the file is not a usable SQLite database: {error}");
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(not_sqlite)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
        .and_then(|_| conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true))
        .map_err(not_sqlite)?;
    conn.execute_batch("PRAGMA query_only = 1")
        .map_err(not_sqlite)?;
    let mut statement = conn
        .prepare("PRAGMA integrity_check(20)")
        .map_err(not_sqlite)?;
    let problems: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(not_sqlite)?;
    if problems != ["ok"] {
        return Err(format!(
            "the database fails its integrity check: {}",
            problems.join("; ")
        ));
    }
    check_virtual_tables(&conn)?;
    let has_meta = conn
        .table_exists(Some(rusqlite::MAIN_DB), c"_podhost_meta")
        .map_err(not_sqlite)?;
    let migrations = if has_meta {
        conn.query_row(
            "SELECT value FROM _podhost_meta WHERE key = 'migrations'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .optional()
        .map_err(not_sqlite)?
        .unwrap_or(0)
    } else {
        0
    };
    Ok(ImportCheck { migrations })
}

/// Refuses virtual tables of modules a guest could not have created
/// (see the authorizer): the object would use them on the next read.
fn check_virtual_tables(conn: &Connection) -> Result<(), String> {
    let failed = |error: rusqlite::Error| format!("cannot read the schema: {error}");
    let mut statement = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema
             WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'",
        )
        .map_err(failed)?;
    let tables: Vec<(String, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(failed)?;
    for (name, sql) in tables {
        let module = sql
            .split_whitespace()
            .skip_while(|word| !word.eq_ignore_ascii_case("using"))
            .nth(1)
            .map(|word| {
                word.split('(')
                    .next()
                    .unwrap_or_default()
                    .trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']')
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !crate::storage::authorizer::VTABLE_MODULES.contains(&module.as_str()) {
            return Err(format!(
                "its virtual table {name:?} uses module {module:?}, which objects may not use"
            ));
        }
    }
    Ok(())
}

fn run_query(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    limits: QueryLimits,
    denial: &Mutex<Option<String>>,
) -> Result<QueryResult, QueryFailure> {
    let failed = |error: rusqlite::Error| match denial.lock().take() {
        Some(reason) => QueryFailure::Refused(reason),
        None => QueryFailure::Failed(error.to_string()),
    };
    let mut statement = conn.prepare(sql).map_err(|error| match error {
        rusqlite::Error::MultipleStatement => {
            QueryFailure::Refused("one statement at a time: the query has more than one".into())
        }
        other => failed(other),
    })?;
    if !statement.readonly() {
        return Err(QueryFailure::Refused(
            "the query would change the database: only reading is allowed".into(),
        ));
    }
    let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
    let mut rows = statement
        .query(rusqlite::params_from_iter(params))
        .map_err(failed)?;
    let mut result = QueryResult {
        columns,
        rows: Vec::new(),
        truncated: false,
    };
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(failed)? {
        if result.rows.len() >= limits.max_rows {
            result.truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(result.columns.len());
        for index in 0..result.columns.len() {
            let value = row.get_ref(index).map_err(failed)?;
            bytes += value_size(value);
            values.push(to_json(value));
        }
        if bytes > limits.max_bytes {
            result.truncated = true;
            break;
        }
        result.rows.push(values);
    }
    Ok(result)
}

/// About how many bytes a value takes in the answer.
fn value_size(value: ValueRef<'_>) -> usize {
    match value {
        ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => 8,
        ValueRef::Text(text) => text.len() + 2,
        ValueRef::Blob(blob) => blob.len().div_ceil(3) * 4 + 14,
    }
}

/// A value as JSON; see [`QueryResult`].
pub fn to_json(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(n) => n.into(),
        // SQLite has no NaN; an infinity has no JSON number either.
        ValueRef::Real(x) => {
            serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
        }
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned().into(),
        ValueRef::Blob(bytes) => serde_json::json!({ "base64": BASE64.encode(bytes) }),
    }
}

/// A query parameter from JSON: null, a boolean (0 or 1), a number, a
/// string, or `{"base64": "..."}` for a blob.
pub fn from_json(value: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(n) => Value::Integer(n),
            None => Value::Real(n.as_f64().ok_or("a number out of range")?),
        },
        Json::String(text) => Value::Text(text.clone()),
        Json::Object(map) => match (map.get("base64"), map.len()) {
            (Some(Json::String(encoded)), 1) => Value::Blob(
                BASE64
                    .decode(encoded)
                    .map_err(|error| format!("a blob parameter is not base64: {error}"))?,
            ),
            _ => return Err("an object parameter must be {\"base64\": \"...\"} (a blob)".into()),
        },
        Json::Array(_) => return Err("a parameter cannot be an array".into()),
    })
}

/// `name` as an SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PRAGMAs an operator's query may run, with an argument naming a table or
/// index; they only read.
const READING_PRAGMAS_WITH_ARGUMENT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// PRAGMAs an operator's query may run without an argument (with one they
/// would set something).
const READING_PRAGMAS: &[&str] = &[
    "table_list",
    "page_count",
    "page_size",
    "freelist_count",
    "max_page_count",
    "data_version",
    "schema_version",
    "user_version",
    "application_id",
    "foreign_keys",
    "encoding",
    // Not `journal_mode`: SQLite does not count even reading it as
    // read-only.
    "synchronous",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
];

/// The authorizer of an operator's query: reading only.
fn read_only_authorizer(
    denial: Arc<Mutex<Option<String>>>,
) -> impl FnMut(AuthContext<'_>) -> Authorization + Send + 'static {
    move |ctx| match check_read(&ctx.action) {
        Ok(()) => Authorization::Allow,
        Err(reason) => {
            *denial.lock() = Some(reason);
            Authorization::Deny
        }
    }
}

fn check_read(action: &AuthAction<'_>) -> Result<(), String> {
    use AuthAction::*;
    match action {
        Read { .. } | Select | Recursive => Ok(()),
        Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            Err("loading extensions is not allowed".into())
        }
        Function { .. } => Ok(()),
        Attach { .. } | Detach { .. } => Err("ATTACH and DETACH are not allowed".into()),
        Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            if READING_PRAGMAS_WITH_ARGUMENT.contains(&name.as_str())
                || (pragma_value.is_none() && READING_PRAGMAS.contains(&name.as_str()))
            {
                Ok(())
            } else {
                Err(format!(
                    "PRAGMA {name} is not allowed in a query: only PRAGMAs that read are"
                ))
            }
        }
        Transaction { .. } | Savepoint { .. } => {
            Err("transaction control is not allowed in a query".into())
        }
        _ => Err("the query would change the database: only reading is allowed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Durability, test_settings};
    use super::*;

    fn limits() -> QueryLimits {
        QueryLimits {
            max_rows: 100,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(5),
        }
    }

    fn object(dir: &tempfile::TempDir) -> Database {
        let mut db = Database::open(
            &dir.path().join("o.sqlite"),
            &test_settings(Durability::Normal),
        )
        .expect("open");
        db.begin_event().expect("begin");
        db.as_guest_write(|c| {
            c.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, data BLOB);
                 INSERT INTO t VALUES (1, 'one', x'0102'), (2, 'two', NULL), (3, 'three', NULL);",
            )
        })
        .expect("write");
        db.end_event().expect("end");
        db.commit().expect("commit");
        db
    }

    #[test]
    fn a_query_reads_rows_with_typed_values_and_caps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = object(&dir);
        let result = db
            .operator_query(
                "SELECT id, body, data, 1.5 FROM t WHERE id >= ? ORDER BY id",
                &[Value::Integer(1)],
                limits(),
            )
            .expect("query");
        assert_eq!(result.columns, ["id", "body", "data", "1.5"]);
        assert_eq!(result.rows.len(), 3);
        assert_eq!(
            serde_json::json!(result.rows[0]),
            serde_json::json!([1, "one", {"base64": "AQI="}, 1.5])
        );
        assert!(!result.truncated);
        let capped = db
            .operator_query(
                "SELECT * FROM t",
                &[],
                QueryLimits {
                    max_rows: 2,
                    ..limits()
                },
            )
            .expect("query");
        assert_eq!((capped.rows.len(), capped.truncated), (2, true));
    }

    #[test]
    fn a_query_that_would_change_anything_is_refused_and_the_object_still_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = object(&dir);
        for sql in [
            "INSERT INTO t (body) VALUES ('x')",
            "DELETE FROM t",
            "WITH x AS (SELECT 1) DELETE FROM t",
            "UPDATE t SET body = 'y'",
            "DROP TABLE t",
            "CREATE TABLE u (x)",
            "ATTACH DATABASE '/tmp/x.sqlite' AS x",
            "PRAGMA journal_mode = DELETE",
            "PRAGMA foreign_keys = OFF",
            "PRAGMA user_version = 7",
            "PRAGMA query_only = 0",
            "BEGIN",
            "VACUUM",
            "SELECT load_extension('x')",
        ] {
            let failure = db.operator_query(sql, &[], limits()).expect_err(sql);
            assert!(
                matches!(failure, QueryFailure::Refused(_) | QueryFailure::Failed(_)),
                "{sql}: {failure:?}"
            );
        }
        let rows: i64 = db
            .host()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 3, "nothing changed");
        let fk: i64 = db
            .host()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("fk");
        assert_eq!(fk, 1);
        db.begin_event().expect("begin");
        db.as_guest_write(|c| c.execute("INSERT INTO t (body) VALUES ('four')", []))
            .expect("the guest still writes");
        db.end_event().expect("end");
        db.commit().expect("commit");
    }

    #[test]
    fn reading_pragmas_are_allowed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = object(&dir);
        let mut refused = Vec::new();
        for pragma in READING_PRAGMAS {
            if db
                .operator_query(&format!("PRAGMA {pragma}"), &[], limits())
                .is_err()
            {
                refused.push(*pragma);
            }
        }
        for pragma in READING_PRAGMAS_WITH_ARGUMENT {
            if db
                .operator_query(&format!("PRAGMA {pragma}(t)"), &[], limits())
                .is_err()
            {
                refused.push(*pragma);
            }
        }
        assert!(refused.is_empty(), "refused: {refused:?}");
    }

    #[test]
    fn an_endless_query_stops_at_its_deadline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = object(&dir);
        let failure = db
            .operator_query(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
                &[],
                QueryLimits {
                    timeout: Duration::from_millis(200),
                    ..limits()
                },
            )
            .expect_err("endless");
        assert!(matches!(failure, QueryFailure::Timeout(_)), "{failure:?}");
    }

    #[test]
    fn contents_backup_and_import_check() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = object(&dir);
        let contents = db.contents(Duration::from_secs(5)).expect("contents");
        assert_eq!(contents.tables.len(), 1);
        assert_eq!(
            (contents.tables[0].name.as_str(), contents.tables[0].rows),
            ("t", 3)
        );
        assert!(
            contents
                .internal_tables
                .iter()
                .any(|t| t.name == "_podhost_kv")
        );
        let copy = dir.path().join("copy.sqlite");
        db.back_up_to(&copy).expect("backup");
        let header = std::fs::read(&copy).expect("copy");
        assert_eq!(&header[18..20], &[1, 1], "not marked as WAL");
        assert!(!dir.path().join("copy.sqlite-wal").exists());
        let check = check_import(&copy).expect("a good copy");
        assert_eq!(check.migrations, 0);
        let odd = dir.path().join("odd.sqlite");
        Connection::open(&odd)
            .and_then(|c| {
                c.execute_batch(
                    "CREATE VIRTUAL TABLE ok USING fts5(body);
                     CREATE VIRTUAL TABLE odd USING \"dbstat\";",
                )
            })
            .expect("virtual tables");
        let refused = check_import(&odd).expect_err("dbstat is not for objects");
        assert!(refused.contains("dbstat"), "{refused}");
        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, vec![7u8; 8192]).expect("write");
        assert!(check_import(&garbage).is_err());
    }
}
