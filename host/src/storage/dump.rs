//! A JSON dump of chosen tables of a database copy (an export's snapshot,
//! never an object's live file), written as it is read:
//! `{"tables": {"<name>": {"columns": [...], "rows": [[...], ...]}}}`,
//! values as in an operator's query (blobs as `{"base64": "..."}`).

use std::io::Write;
use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::database::{quote, to_json};

/// A copy opened for dumping, with the tables to dump.
pub struct Dump {
    conn: Connection,
    tables: Vec<String>,
}

impl Dump {
    /// Opens the copy at `path` read-only and checks that every table
    /// named exists; none named means the guest's tables (not `_podhost_*`).
    /// `Err(Ok(message))` names a table that is not there.
    pub fn open(path: &Path, tables: Option<Vec<String>>) -> anyhow::Result<Result<Self, String>> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        let existing: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table'
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )?
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let tables = match tables {
            Some(tables) => {
                if let Some(missing) = tables.iter().find(|t| !existing.contains(t)) {
                    return Ok(Err(format!("the object has no table {missing:?}")));
                }
                tables
            }
            None => existing
                .into_iter()
                .filter(|name| !super::authorizer::mentions_reserved_name(name))
                .collect(),
        };
        Ok(Ok(Dump { conn, tables }))
    }

    /// Writes the dump to `out`.
    pub fn write(&self, out: &mut (impl Write + ?Sized)) -> anyhow::Result<()> {
        out.write_all(b"{\"tables\":{")?;
        for (index, table) in self.tables.iter().enumerate() {
            if index > 0 {
                out.write_all(b",")?;
            }
            let mut statement = self
                .conn
                .prepare(&format!("SELECT * FROM {}", quote(table)))?;
            let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
            serde_json::to_writer(&mut *out, table)?;
            out.write_all(b":{\"columns\":")?;
            serde_json::to_writer(&mut *out, &columns)?;
            out.write_all(b",\"rows\":[")?;
            let mut rows = statement.query([])?;
            let mut first = true;
            while let Some(row) = rows.next()? {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                let values = (0..columns.len())
                    .map(|i| row.get_ref(i).map(to_json))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                serde_json::to_writer(&mut *out, &values)?;
            }
            out.write_all(b"]}")?;
        }
        out.write_all(b"}}")?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_chosen_tables_as_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("copy.sqlite");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE a (x, y); INSERT INTO a VALUES (1, 'one'), (2, x'ff');
             CREATE TABLE b (z); CREATE TABLE _podhost_kv (k);",
        )
        .expect("schema");
        drop(conn);
        let mut out = Vec::new();
        Dump::open(&path, None)
            .expect("open")
            .expect("tables")
            .write(&mut out)
            .expect("dump");
        let dump: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(
            dump,
            serde_json::json!({"tables": {
                "a": {"columns": ["x", "y"], "rows": [[1, "one"], [2, {"base64": "/w=="}]]},
                "b": {"columns": ["z"], "rows": []}
            }})
        );
        let missing = Dump::open(&path, Some(vec!["nope".into()])).expect("open");
        assert!(missing.is_err());
    }
}
