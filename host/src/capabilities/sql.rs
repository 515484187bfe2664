//! `podhost:object/sql`: guest SQL on the object's own database, inside the
//! event's transaction and under the authorizer.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use crate::bindings::podhost::object::sql::{Host, RowSet, Value};
use crate::bindings::{StorageError, StorageErrorCode};
use crate::capabilities::ObjectState;
use crate::storage::{RESERVED_PREFIX, mentions_reserved_name};

/// The most bytes one statement may return to the guest.
const MAX_RESULT_BYTES: usize = 32 << 20;

impl Host for ObjectState {
    fn exec(&mut self, query: String, params: Vec<Value>) -> Result<RowSet, StorageError> {
        refuse_reserved(&query)?;
        let db = self.transaction()?;
        // Preparing is a cache lookup after the first time; a statement
        // that may write runs under the storage limit's guard.
        let read_only = db.as_guest(|conn| Ok(conn.prepare_cached(&query)?.readonly()))?;
        let rows = if read_only {
            db.as_guest(|conn| run(conn, &query, &params))
        } else {
            db.as_guest_write(|conn| run(conn, &query, &params))
        };
        Ok(rows?)
    }

    fn exec_script(&mut self, script: String) -> Result<(), StorageError> {
        refuse_reserved(&script)?;
        let db = self.transaction()?;
        Ok(db.as_guest_write(|conn| conn.execute_batch(&script))?)
    }

    fn database_size(&mut self) -> u64 {
        self.db.size().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the database size");
            0
        })
    }
}

fn refuse_reserved(sql: &str) -> Result<(), StorageError> {
    if mentions_reserved_name(sql) {
        return Err(StorageError::new(
            StorageErrorCode::NotAuthorized,
            format!("names starting with {RESERVED_PREFIX} are reserved for the host"),
        ));
    }
    Ok(())
}

fn run(conn: &Connection, query: &str, params: &[Value]) -> rusqlite::Result<RowSet> {
    let mut stmt = conn.prepare_cached(query)?;
    if stmt.parameter_count() != params.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            params.len(),
            stmt.parameter_count(),
        ));
    }
    for (index, param) in params.iter().enumerate() {
        stmt.raw_bind_parameter(index + 1, Param(param))?;
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
    let changes_before = conn.total_changes();
    let mut rows = Vec::new();
    let mut result_bytes = 0usize;
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            let value = to_value(row.get_ref(index)?);
            result_bytes += value_size(&value);
            values.push(value);
        }
        if result_bytes > MAX_RESULT_BYTES {
            return Err(too_big(format!(
                "the result is larger than {MAX_RESULT_BYTES} bytes: select fewer rows (LIMIT) or columns"
            )));
        }
        rows.push(values);
    }
    drop(cursor);
    Ok(RowSet {
        columns,
        rows,
        rows_written: conn.total_changes() - changes_before,
        last_insert_rowid: conn.last_insert_rowid(),
    })
}

fn too_big(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
        Some(message),
    )
}

struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn to_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::Text(s) => s.len() + 16,
        Value::Blob(b) => b.len() + 16,
        _ => 16,
    }
}
