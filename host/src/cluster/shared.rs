//! The catalog's shared tables in a cluster (`storage::shared`): etcd
//! holds their rows, one key each, `<prefix>/catalog/rows/<table>/<key>`
//! = the row as JSON, and every node keeps a copy in its own
//! `catalog.sqlite`, written only by the watch below. Unique columns
//! (an email, a refresh token's hash) have keys of their own,
//! `<prefix>/catalog/unique/<table>/<column>/<value>`, created in the
//! same transaction as their row, so two nodes cannot both take one.
//!
//! A write (`storage::shared_writes`) is one etcd transaction that
//! succeeds only if every row it changes is still at the revision the
//! writer's copy knew; the writer returns once its copy shows it, so the
//! node that took a signup, a logout or a deploy answers with it done,
//! and every other node applies it within the watch's delay.
//!
//! At start a node replaces its copy with etcd's rows (a copy is only a
//! copy); the first node of a new cluster pushes its own rows instead,
//! so a single node's accounts and classes become the cluster's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions,
    WatchRequestSender, WatchResponseStream,
};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use super::keys::Keys;
use crate::config::ClusterSettings;
use crate::storage::Durability;
use crate::storage::shared::{RowChange, SHARED_TABLES, SharedTable, key_params, shared_table};
use crate::storage::shared_writes::{
    Committed, RowStore, RowWrite, SHARED_ROWS_SCHEMA, SharedWriteError, Writes, key_text,
    read_row, unique_values,
};

/// Rows per etcd transaction: each takes up to three operations (the row,
/// a unique key freed and one taken), and etcd allows 128 by default.
const ROWS_PER_TXN: usize = 40;

/// How long a write waits for etcd and for this node's copy.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which cluster catalog this node's copy came from.
const STATE_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS _podhost_shared_state (
        id TEXT NOT NULL
    );
";

/// Changes applied before the runtime listens, kept for it.
enum Listening {
    Waiting(Vec<RowChange>),
    Ready(mpsc::UnboundedSender<Vec<RowChange>>),
}

pub struct SharedCatalog {
    client: Client,
    keys: Keys,
    data_dir: PathBuf,
    handle: tokio::runtime::Handle,
    /// The last etcd revision this node's copy shows.
    applied: watch::Sender<i64>,
    /// Asks the watch for a progress notice (its revision, when nothing
    /// of ours changed).
    progress: tokio::sync::Mutex<Option<WatchRequestSender>>,
    listening: Mutex<Listening>,
    /// One catch-up at a time; when the last one read etcd's revision.
    catching_up: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl SharedCatalog {
    /// Connects to etcd, makes this node's copy of the shared tables
    /// etcd's (or etcd's this node's, for a new cluster) and keeps it so.
    pub async fn start(
        settings: &ClusterSettings,
        data_dir: &Path,
    ) -> anyhow::Result<Arc<SharedCatalog>> {
        let client = super::connect(settings).await?;
        let url = settings.etcd_url()?;
        // Nothing else may write this data directory's catalog meanwhile.
        let _lock = crate::storage::DataDirLock::acquire(data_dir)?;
        let catalog = Arc::new(SharedCatalog {
            client,
            keys: Keys::new(&url.prefix),
            data_dir: data_dir.to_path_buf(),
            handle: tokio::runtime::Handle::current(),
            applied: watch::Sender::new(0),
            progress: tokio::sync::Mutex::new(None),
            listening: Mutex::new(Listening::Waiting(Vec::new())),
            catching_up: tokio::sync::Mutex::new(None),
        });
        let revision = catalog.load().await?;
        catalog.applied.send_replace(revision);
        let follower = Arc::clone(&catalog);
        tokio::spawn(async move { follower.follow(revision).await });
        Ok(catalog)
    }

    /// How stores write the shared tables on this node.
    pub fn writes(self: &Arc<Self>) -> Writes {
        Writes::Shared(Arc::clone(self) as Arc<dyn RowStore>)
    }

    /// Calls `listener` with every batch of rows applied to the copy from
    /// now on (and those applied since start).
    pub fn listen(&self, listener: impl Fn(Vec<RowChange>) + Send + 'static) {
        let (sender, mut batches) = mpsc::unbounded_channel::<Vec<RowChange>>();
        let waiting = {
            let mut listening = self.listening.lock();
            match std::mem::replace(&mut *listening, Listening::Ready(sender.clone())) {
                Listening::Waiting(waiting) => waiting,
                Listening::Ready(_) => Vec::new(),
            }
        };
        if !waiting.is_empty() {
            let _ = sender.send(waiting);
        }
        // On a task of its own: a listener waiting for a lock that a
        // writer holds while it waits for the watch must not stop the
        // watch.
        tokio::spawn(async move {
            while let Some(changes) = batches.recv().await {
                listener(changes);
            }
        });
    }

    fn tell(&self, changes: Vec<RowChange>) {
        let mut listening = self.listening.lock();
        match &mut *listening {
            Listening::Waiting(waiting) => waiting.extend(changes),
            Listening::Ready(sender) => {
                let _ = sender.send(changes);
            }
        }
    }

    fn open_copy(&self) -> anyhow::Result<Connection> {
        let conn = crate::storage::catalog::connect(&self.data_dir, Durability::Full)?;
        conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
        create_schemas(&conn)?;
        Ok(conn)
    }

    /// Replaces the copy with etcd's rows; returns their revision.
    async fn load(&self) -> anyhow::Result<i64> {
        let mut client = self.client.clone();
        let id_key = self.keys.shared_catalog_id();
        loop {
            let found = client.get(id_key.as_str(), None).await?;
            let id = match found.kvs().first() {
                Some(kv) => kv.value_str()?.to_string(),
                None => {
                    if self.push_copy(&id_key).await? {
                        tracing::info!("this node's classes and accounts now are the cluster's");
                    }
                    continue;
                }
            };
            let listing = client
                .get(
                    self.keys.shared_rows(),
                    Some(GetOptions::new().with_prefix()),
                )
                .await?;
            let revision = listing.header().map_or(0, |header| header.revision());
            let mut rows = Vec::with_capacity(listing.kvs().len());
            for kv in listing.kvs() {
                if let Some((table, key)) = self.parse_key(kv.key_str()?) {
                    rows.push((table, key, kv.value_str()?.to_string(), kv.mod_revision()));
                }
            }
            let conn = self.open_copy()?;
            tokio::task::block_in_place(|| replace_copy(conn, &id, &rows))?;
            tracing::info!(rows = rows.len(), revision, "the shared catalog is loaded");
            return Ok(revision);
        }
    }

    /// For a cluster without a catalog: makes this node's rows its
    /// catalog. Refuses when etcd has one and this node's copy holds rows
    /// that are not from it. Returns whether it pushed.
    async fn push_copy(&self, id_key: &str) -> anyhow::Result<bool> {
        let conn = self.open_copy()?;
        let local: Vec<RowWrite> = tokio::task::block_in_place(|| every_row(&conn))?;
        let id = crate::accounts::random_id("catalog_")?;
        let create = Txn::new()
            .when(vec![Compare::create_revision(id_key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(id_key, id.as_str(), None)]);
        if !self.client.clone().txn(create).await?.succeeded() {
            return Ok(false);
        }
        // The catalog is this node's now: its rows follow, in as many
        // transactions as etcd's limit on operations asks. Nodes starting
        // meanwhile get the rest through their watch.
        for rows in local.chunks(ROWS_PER_TXN) {
            let ops: Vec<TxnOp> = rows
                .iter()
                .flat_map(|row| self.row_ops(row, &mut Vec::new()))
                .collect();
            self.client.clone().txn(Txn::new().and_then(ops)).await?;
        }
        // Only now is the copy the cluster's: a node that died before
        // this refuses to start rather than drop rows it did not push.
        conn.execute("DELETE FROM _podhost_shared_state", [])?;
        conn.execute("INSERT INTO _podhost_shared_state (id) VALUES (?1)", [&id])?;
        Ok(true)
    }

    /// Follows etcd's changes from `revision` into the copy, forever.
    async fn follow(self: Arc<Self>, mut revision: i64) {
        loop {
            match self.watch(revision).await {
                Ok(()) => {}
                Err(error) => tracing::warn!("the shared catalog's watch ended: {error:#}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Changes may have been compacted away: load it all again.
            match self.load().await {
                Ok(loaded) => {
                    revision = loaded;
                    self.applied.send_replace(loaded);
                    self.tell(self.every_change());
                }
                Err(error) => tracing::warn!("cannot load the shared catalog: {error:#}"),
            }
        }
    }

    /// Every row of the copy as a change (after a reload).
    fn every_change(&self) -> Vec<RowChange> {
        let Ok(conn) = self.open_copy() else {
            return Vec::new();
        };
        every_row(&conn)
            .map(|rows| {
                rows.into_iter()
                    .map(|row| RowChange {
                        table: row.table.name,
                        key: row.key,
                        row: row.after,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn watch(&self, revision: i64) -> anyhow::Result<()> {
        let stream = self
            .client
            .clone()
            .watch(
                self.keys.shared_rows(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await?;
        let (sender, mut responses): (WatchRequestSender, WatchResponseStream) = stream.split();
        *self.progress.lock().await = Some(sender);
        let mut conn = self.open_copy()?;
        while let Some(response) = futures_util::StreamExt::next(&mut responses).await {
            let response = response?;
            if response.canceled() {
                anyhow::bail!("canceled (compacted at {})", response.compact_revision());
            }
            let mut rows = Vec::new();
            let mut last = 0;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let Some((table, key)) = self.parse_key(kv.key_str()?) else {
                    continue;
                };
                last = last.max(kv.mod_revision());
                let value = match event.event_type() {
                    EventType::Put => Some(kv.value_str()?.to_string()),
                    EventType::Delete => None,
                };
                rows.push((table, key, value, kv.mod_revision()));
            }
            if rows.is_empty() {
                // A progress notice: everything up to it was sent.
                if !response.created()
                    && let Some(header) = response.header()
                {
                    self.applied.send_if_modified(|applied| {
                        let newer = header.revision() > *applied;
                        *applied = (*applied).max(header.revision());
                        newer
                    });
                }
                continue;
            }
            let changes = tokio::task::block_in_place(|| apply(&mut conn, &rows))?;
            self.applied.send_if_modified(|applied| {
                let newer = last > *applied;
                *applied = (*applied).max(last);
                newer
            });
            self.tell(changes);
        }
        anyhow::bail!("etcd closed the watch")
    }

    /// Waits until the copy shows revision `revision`.
    async fn caught_up(&self, revision: i64) -> Result<(), SharedWriteError> {
        let mut applied = self.applied.subscribe();
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        while *applied.borrow_and_update() < revision {
            if let Some(sender) = self.progress.lock().await.as_mut() {
                let _ = sender.request_progress().await;
            }
            let wait = tokio::time::timeout(Duration::from_millis(100), applied.changed());
            if tokio::time::Instant::now() >= deadline {
                return Err(SharedWriteError::Unavailable(format!(
                    "this node's copy did not reach revision {revision} within {WRITE_TIMEOUT:?}"
                )));
            }
            if let Ok(Err(_)) = wait.await {
                return Err(SharedWriteError::Unavailable("the watch stopped".into()));
            }
        }
        Ok(())
    }

    /// Commits `rows`, at most [`ROWS_PER_TXN`] per etcd transaction: a
    /// write of more rows (a user's sessions revoked, expired sessions
    /// deleted) is not atomic, and a conflict part way runs the whole
    /// write again on a copy that has the part made.
    /// Waits until the copy shows etcd's revision as of now. Misses
    /// arriving together share one read of it: one that began after a
    /// miss covers it.
    async fn catch_up_now(&self) -> Result<(), SharedWriteError> {
        let asked = tokio::time::Instant::now();
        let mut last = self.catching_up.lock().await;
        if last.is_some_and(|read_at| read_at >= asked) {
            return Ok(());
        }
        let read_at = tokio::time::Instant::now();
        let response = self
            .client
            .clone()
            .get(
                self.keys.shared_catalog_id(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(|error| SharedWriteError::Unavailable(error.to_string()))?;
        let revision = response.header().map_or(0, |header| header.revision());
        self.caught_up(revision).await?;
        *last = Some(read_at);
        Ok(())
    }

    async fn commit_rows(&self, rows: &[RowWrite]) -> Result<Committed, SharedWriteError> {
        for rows in rows.chunks(ROWS_PER_TXN) {
            if self.commit_chunk(rows).await? == Committed::Conflict {
                return Ok(Committed::Conflict);
            }
        }
        Ok(Committed::Done)
    }

    async fn commit_chunk(&self, rows: &[RowWrite]) -> Result<Committed, SharedWriteError> {
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for row in rows {
            let key = self.keys.shared_row(row.table.name, &key_text(&row.key));
            compares.push(Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                row.known_revision,
            ));
            let mut created = Vec::new();
            ops.extend(self.row_ops(row, &mut created));
            for unique in created {
                compares.push(Compare::create_revision(
                    unique.as_str(),
                    CompareOp::Equal,
                    0,
                ));
            }
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(|error| SharedWriteError::Unavailable(error.to_string()))?;
        // Done, the copy must show the write; conflicting, what it
        // conflicted with (no later than now), before the write runs again.
        let revision = response.header().map_or(0, |header| header.revision());
        self.caught_up(revision).await?;
        Ok(if response.succeeded() {
            Committed::Done
        } else {
            Committed::Conflict
        })
    }

    /// The operations writing `row` (and its unique keys); unique keys it
    /// creates are added to `created` (they must not exist yet).
    fn row_ops(&self, row: &RowWrite, created: &mut Vec<String>) -> Vec<TxnOp> {
        let table = row.table;
        let key = self.keys.shared_row(table.name, &key_text(&row.key));
        let mut ops = Vec::new();
        match &row.after {
            Some(after) => ops.push(TxnOp::put(
                key.as_str(),
                Value::Object(after.clone()).to_string(),
                None,
            )),
            None => ops.push(TxnOp::delete(key.as_str(), None)),
        }
        let before = unique_key_map(table, &row.unique_before);
        let after = unique_key_map(table, &row.unique_after());
        for (column, value) in &after {
            if before.get(column) != Some(value) {
                let unique = self.keys.shared_unique(table.name, column, value);
                ops.push(TxnOp::put(unique.as_str(), key.as_str(), None));
                created.push(unique);
            }
        }
        for (column, value) in &before {
            if after.get(column) != Some(value) {
                let unique = self.keys.shared_unique(table.name, column, value);
                ops.push(TxnOp::delete(unique.as_str(), None));
            }
        }
        ops
    }

    fn parse_key(&self, key: &str) -> Option<(&'static SharedTable, Vec<Value>)> {
        let rest = key.strip_prefix(&self.keys.shared_rows())?;
        let (table, key) = rest.split_once('/')?;
        Some((shared_table(table)?, serde_json::from_str(key).ok()?))
    }
}

impl RowStore for SharedCatalog {
    fn commit(&self, rows: &[RowWrite]) -> Result<Committed, SharedWriteError> {
        self.block_on(self.commit_rows(rows))
    }

    fn catch_up(&self) -> Result<(), SharedWriteError> {
        self.block_on(self.catch_up_now())
    }
}

impl SharedCatalog {
    /// Runs `work` to its end from a blocking thread, for at most
    /// [`WRITE_TIMEOUT`].
    fn block_on<T>(
        &self,
        work: impl Future<Output = Result<T, SharedWriteError>>,
    ) -> Result<T, SharedWriteError> {
        let work = tokio::time::timeout(WRITE_TIMEOUT, work);
        tokio::task::block_in_place(|| self.handle.block_on(work)).unwrap_or_else(|_| {
            Err(SharedWriteError::Unavailable(format!(
                "etcd did not answer within {WRITE_TIMEOUT:?}"
            )))
        })
    }
}

/// A row's unique columns → value text (nulls are not unique).
fn unique_key_map(table: &SharedTable, values: &[Value]) -> BTreeMap<&'static str, String> {
    table
        .unique
        .iter()
        .zip(values)
        .filter(|(_, value)| !value.is_null())
        .map(|(column, value)| (*column, value.to_string()))
        .collect()
}

/// Creates every shared table (a node whose own config has no accounts
/// still keeps the cluster's) and the copy's bookkeeping.
fn create_schemas(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(crate::accounts::SCHEMA)?;
    conn.execute_batch(crate::tenants::SCHEMA)?;
    conn.execute_batch(crate::storage::versions::SCHEMA)?;
    conn.execute_batch(SHARED_ROWS_SCHEMA)?;
    conn.execute_batch(STATE_SCHEMA)
}

/// Every row of the copy's shared tables.
fn every_row(conn: &Connection) -> rusqlite::Result<Vec<RowWrite>> {
    let mut rows = Vec::new();
    for table in SHARED_TABLES {
        let columns = table.key.join(", ");
        let keys: Vec<Vec<Value>> = conn
            .prepare(&format!(
                "SELECT json_array({columns}) FROM main.{}",
                table.name
            ))?
            .query_map([], |row| row.get::<_, String>(0))?
            .filter_map(|key| key.ok().and_then(|key| serde_json::from_str(&key).ok()))
            .collect();
        for key in keys {
            let after = read_row(conn, table, &key)?;
            rows.push(RowWrite {
                table,
                key,
                known_revision: 0,
                unique_before: Vec::new(),
                after,
            });
        }
    }
    Ok(rows)
}

/// Makes the copy etcd's `rows` (table, key, row JSON, revision).
fn replace_copy(
    mut conn: Connection,
    id: &str,
    rows: &[(&'static SharedTable, Vec<Value>, String, i64)],
) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let previous: Option<String> = tx
        .query_row("SELECT id FROM _podhost_shared_state", [], |row| row.get(0))
        .optional()?;
    // A copy from another cluster's catalog is only a copy; rows this
    // node made on its own are not, and are not thrown away.
    if previous.is_none() {
        let local = every_row(&tx)?.len();
        if local > 0 {
            anyhow::bail!(
                "this node's catalog holds {local} rows of classes, tenants or accounts that the \
                 cluster does not have: start it once without --cluster and move them, or give it \
                 an empty data_dir"
            );
        }
    }
    for table in SHARED_TABLES {
        tx.execute(&format!("DELETE FROM main.{}", table.name), [])?;
    }
    tx.execute("DELETE FROM _podhost_shared_rows", [])?;
    tx.execute("DELETE FROM _podhost_shared_state", [])?;
    tx.execute("INSERT INTO _podhost_shared_state (id) VALUES (?1)", [id])?;
    let mut columns = Columns::default();
    for (table, key, value, revision) in rows {
        put_row(&tx, &mut columns, table, key, Some(value), *revision)?;
    }
    tx.commit()?;
    Ok(())
}

/// Applies changes (table, key, row JSON or deleted, revision) to the
/// copy in one transaction; returns them as the runtime is told.
fn apply(
    conn: &mut Connection,
    rows: &[(&'static SharedTable, Vec<Value>, Option<String>, i64)],
) -> anyhow::Result<Vec<RowChange>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut columns = Columns::default();
    let mut changes = Vec::with_capacity(rows.len());
    for (table, key, value, revision) in rows {
        let row = put_row(&tx, &mut columns, table, key, value.as_deref(), *revision)?;
        changes.push(RowChange {
            table: table.name,
            key: key.clone(),
            row,
        });
    }
    tx.commit()?;
    Ok(changes)
}

/// Each shared table's columns in the copy.
#[derive(Default)]
struct Columns(BTreeMap<&'static str, Vec<String>>);

impl Columns {
    fn of(&mut self, conn: &Connection, table: &'static str) -> rusqlite::Result<&[String]> {
        if !self.0.contains_key(table) {
            let names: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            self.0.insert(table, names);
        }
        Ok(self.0.get(table).map_or(&[], Vec::as_slice))
    }
}

/// Writes row `key` of `table` into the copy (`value` its JSON, `None`
/// to delete it) with its revision; returns the row as applied.
fn put_row(
    conn: &Connection,
    columns: &mut Columns,
    table: &'static SharedTable,
    key: &[Value],
    value: Option<&str>,
    revision: i64,
) -> anyhow::Result<Option<Map<String, Value>>> {
    let key_values = key_params(key).map_err(anyhow::Error::msg)?;
    conn.execute(
        &format!(
            "DELETE FROM main.{} WHERE {}",
            table.name,
            table.key_condition()
        ),
        params_from_iter(&key_values),
    )?;
    let text = key_text(key);
    let Some(value) = value else {
        conn.execute(
            "DELETE FROM _podhost_shared_rows WHERE tbl = ?1 AND key = ?2",
            params![table.name, text],
        )?;
        return Ok(None);
    };
    let row: Map<String, Value> = serde_json::from_str(value)
        .with_context(|| format!("a row of {} in etcd is not a JSON object", table.name))?;
    // Only the copy's own columns: a newer node may have added some.
    let known = columns.of(conn, table.name)?;
    let mut names = Vec::new();
    let mut values = Vec::new();
    for (column, value) in &row {
        if known.iter().any(|name| name == column) {
            names.push(format!("\"{column}\""));
            values.push(crate::storage::from_json(value).map_err(anyhow::Error::msg)?);
        }
    }
    let marks: Vec<String> = (1..=values.len())
        .map(|index| format!("?{index}"))
        .collect();
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO main.{} ({}) VALUES ({})",
            table.name,
            names.join(", "),
            marks.join(", ")
        ),
        params_from_iter(&values),
    )?;
    let uniques = Value::Array(unique_values(table, Some(&row))).to_string();
    conn.execute(
        "INSERT OR REPLACE INTO _podhost_shared_rows (tbl, key, revision, uniques)
         VALUES (?1, ?2, ?3, ?4)",
        params![table.name, text, revision, uniques],
    )?;
    Ok(Some(row))
}
