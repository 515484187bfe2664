//! Reading an object's database from a test, between its events.
//!
//! An object database has one connection at a time (see `storage::claim`),
//! so the object is asked to hibernate first; the harness then opens the
//! file as the actor does, runs one read-only statement and closes it. The
//! next event reopens the object as after any hibernation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rusqlite::types::{Value, ValueRef};

use super::TestObject;
use crate::config::ClassSettings;
use crate::object::ObjectAddr;
use crate::runtime::Runtime;
use crate::storage::Database;

/// How long to wait for a live object to hibernate.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

impl TestObject<'_> {
    /// Runs one read-only statement (`SELECT`, harmless `PRAGMA`s) on the
    /// object's database and returns its rows as JSON objects by column
    /// name. Host tables (`_podhost_*`) are readable too. Integers and
    /// reals become numbers, text strings, blobs arrays of bytes. Send no
    /// request to the object while this runs.
    pub async fn sql(
        &self,
        query: &str,
        params: &[serde_json::Value],
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let query = query.to_string();
        let params: Vec<Value> = params.iter().map(to_sql).collect();
        with_closed_database(self.harness.runtime(), &self.class, &self.name, move |db| {
            read_rows(db, &query, &params)
        })
        .await
    }
}

/// Makes object `name` hibernate, then runs `f` on its database opened by
/// the harness (never created: an object without a database is an error).
pub(super) async fn with_closed_database<T: Send + 'static>(
    runtime: &Arc<Runtime>,
    class: &str,
    name: &str,
    f: impl FnOnce(&mut Database) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let settings: ClassSettings = runtime.class(class)?.settings().clone();
    let object = ObjectAddr::new(class, name);
    let path: PathBuf = runtime
        .data_dir()
        .object_database(object.class(), object.id());
    if !path.exists() {
        bail!("object {name:?} of class {class:?} has no database yet");
    }
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    let mut f = Some(f);
    loop {
        runtime.objects().hibernate(object.id());
        let (path, settings) = (path.clone(), settings.database());
        let opened = tokio::task::spawn_blocking(move || Database::open(&path, &settings))
            .await
            .context("opening the database panicked")?;
        match opened {
            Ok(mut db) => {
                let f = f.take().context("ran once already")?;
                return tokio::task::spawn_blocking(move || f(&mut db))
                    .await
                    .context("reading the database panicked")?;
            }
            // Still open by its actor, which finishes what it has queued
            // before it hibernates.
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(error).context("the object did not hibernate within 10 s");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn read_rows(
    db: &Database,
    query: &str,
    params: &[Value],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut statement = db
        .host()
        .prepare(query)
        .with_context(|| format!("cannot prepare {query:?}"))?;
    if !statement.readonly() {
        bail!("{query:?} would write: the harness only reads an object's database");
    }
    let columns: Vec<String> = statement.column_names().map(str::to_string).collect();
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut object = serde_json::Map::new();
        for (index, column) in columns.iter().enumerate() {
            object.insert(column.clone(), to_json(row.get_ref(index)?));
        }
        out.push(serde_json::Value::Object(object));
    }
    Ok(out)
}

fn to_json(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(n) => n.into(),
        ValueRef::Real(x) => {
            serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
        }
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned().into(),
        ValueRef::Blob(bytes) => bytes.iter().copied().map(serde_json::Value::from).collect(),
    }
}

fn to_sql(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(n) => Value::Integer(n),
            None => n.as_f64().map_or(Value::Null, Value::Real),
        },
        serde_json::Value::String(text) => Value::Text(text.clone()),
        other => Value::Text(other.to_string()),
    }
}
