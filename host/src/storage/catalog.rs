//! The host's own database, `data/catalog.sqlite`: the deployed classes and
//! every object that has existed, with when it was created, when it was
//! last active and its size. A background writer applies updates in
//! batches (sent when objects activate and hibernate), so no event waits
//! for the catalog and no event costs it an `fsync`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use parking_lot::{Mutex, MutexGuard};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::Durability;
use super::shared_writes::Writes;

const SCHEMA: &str = "
    -- Before deploys, one row per configured class; `class_versions`
    -- (storage::versions) holds every version now.
    DROP TABLE IF EXISTS classes;
    CREATE TABLE IF NOT EXISTS objects (
        id TEXT PRIMARY KEY,
        class TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_active_at INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS objects_by_class ON objects (class, name);
";

/// The alarm index, read and written by `alarms::index`.
const ALARM_INDEX_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS alarms (
        id TEXT PRIMARY KEY,
        class TEXT NOT NULL,
        name TEXT NOT NULL,
        -- When to deliver next: the alarm's time, or a retry's.
        at_ms INTEGER NOT NULL,
        -- Failed attempts so far at delivering this alarm.
        retries INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS alarms_by_time ON alarms (at_ms);
";

/// An object as the catalog knows it. Times are milliseconds since the
/// Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRecord {
    pub id: String,
    pub class: String,
    pub name: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub size_bytes: u64,
}

/// What an actor tells the catalog.
#[derive(Debug, Clone)]
pub struct ObjectSeen {
    pub id: String,
    pub class: String,
    pub name: String,
    pub at: i64,
    /// Known when the object closes its database.
    pub size_bytes: Option<u64>,
}

pub struct Catalog {
    conn: Mutex<Connection>,
    /// How the shared tables in it (class versions) are written.
    writes: Writes,
}

/// A read-write connection to the catalog's database in `data_dir`, with
/// the settings every writer of it uses. None checkpoints by itself: the
/// runtime does, through [`Catalog::checkpoint`] or, when the catalog is
/// replicated, its shipper (`replication::catalog`) only, once it has read
/// the frames (a checkpoint by anyone else could let the log restart over
/// frames not yet shipped).
pub fn connect(data_dir: &Path, durability: Durability) -> anyhow::Result<Connection> {
    let path = data_dir.join("catalog.sqlite");
    let conn =
        Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA busy_timeout = 5000;",
        durability.synchronous()
    ))?;
    conn.query_row("PRAGMA wal_autocheckpoint = 0", [], |_| Ok(()))?;
    Ok(conn)
}

/// Checkpoints the catalog every `interval` while it lives: its
/// connections do not (see [`connect`]). Not when it is replicated.
pub fn start_checkpoints(catalog: &Arc<Catalog>, interval: std::time::Duration) {
    let weak = Arc::downgrade(catalog);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(catalog) = weak.upgrade() else {
                return;
            };
            match tokio::task::spawn_blocking(move || catalog.checkpoint()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "cannot checkpoint the catalog"),
                Err(error) => tracing::warn!(%error, "checkpointing the catalog panicked"),
            }
        }
    });
}

impl Catalog {
    /// Opens (creating if needed) the catalog in `data_dir`, with the
    /// durability of the most durable class: it holds the alarm index,
    /// which must survive whatever the objects' alarms survive.
    pub fn open(data_dir: &Path, durability: Durability) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let conn = connect(data_dir, durability)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(ALARM_INDEX_SCHEMA)?;
        conn.execute_batch(super::versions::SCHEMA)?;
        Ok(Catalog {
            conn: Mutex::new(conn),
            writes: Writes::Direct,
        })
    }

    /// The catalog writing its shared tables with `writes` (a cluster's).
    pub fn with_writes(mut self, writes: Writes) -> Self {
        self.writes = writes;
        self
    }

    /// How the shared tables are written here.
    pub fn writes(&self) -> &Writes {
        &self.writes
    }

    pub(crate) fn connection(&self) -> &Mutex<Connection> {
        &self.conn
    }

    /// Opens an existing catalog for reading, alongside a running server.
    pub fn open_read_only(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("catalog.sqlite");
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| {
                format!(
                    "cannot open {}: has a server run with this data directory?",
                    path.display()
                )
            })?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        Ok(Catalog {
            conn: Mutex::new(conn),
            writes: Writes::Direct,
        })
    }

    /// The connection, for the catalog's tables kept by other modules (the
    /// alarm index: `alarms::index`).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// Empties the catalog's write-ahead log into its file, as far as
    /// readers allow.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        self.lock()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }

    /// Applies a batch of updates in one transaction, in order.
    pub fn apply(&self, updates: &[CatalogUpdate]) -> rusqlite::Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO objects (id, class, name, created_at, last_active_at, size_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?4, coalesce(?5, 0))
                 ON CONFLICT (id) DO UPDATE SET
                     last_active_at = max(objects.last_active_at, excluded.last_active_at),
                     size_bytes = coalesce(?5, objects.size_bytes)",
            )?;
            let mut remove = tx.prepare_cached("DELETE FROM objects WHERE id = ?1")?;
            let mut remove_alarm = tx.prepare_cached("DELETE FROM alarms WHERE id = ?1")?;
            for update in updates {
                match update {
                    CatalogUpdate::Seen(object) => {
                        let size = object.size_bytes.map(|s| s as i64);
                        upsert.execute(params![
                            object.id,
                            object.class,
                            object.name,
                            object.at,
                            size
                        ])?;
                    }
                    CatalogUpdate::Removed { id } => {
                        remove.execute([id])?;
                        remove_alarm.execute([id])?;
                    }
                }
            }
        }
        tx.commit()
    }

    /// Objects, by class and name; of one class if given.
    pub fn objects(&self, class: Option<&str>) -> rusqlite::Result<Vec<ObjectRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, class, name, created_at, last_active_at, size_bytes FROM objects
             WHERE ?1 IS NULL OR class = ?1 ORDER BY class, name",
        )?;
        let rows = stmt.query_map([class], |row| {
            Ok(ObjectRecord {
                id: row.get(0)?,
                class: row.get(1)?,
                name: row.get(2)?,
                created_at: row.get(3)?,
                last_active_at: row.get(4)?,
                size_bytes: row.get::<_, i64>(5)?.unsigned_abs(),
            })
        })?;
        rows.collect()
    }

    /// Up to `limit` names of `class`'s objects that start with `prefix`,
    /// after `after`, in order (by bytes, as SQLite compares text).
    pub fn names(
        &self,
        class: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> rusqlite::Result<Vec<String>> {
        let conn = self.lock();
        // `name >= prefix` lets the index find the start; `substr` keeps
        // the prefix exact (no LIKE wildcards to escape).
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM objects
             WHERE class = ?1 AND name >= ?2 AND substr(name, 1, length(?2)) = ?2
               AND (?3 IS NULL OR name > ?3)
             ORDER BY name LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![class, prefix, after, limit], |row| row.get(0))?;
        rows.collect()
    }

    /// Object `id`, if the catalog knows it yet (updates reach it in
    /// batches, shortly after an object first opens).
    pub fn object(&self, id: &str) -> rusqlite::Result<Option<ObjectRecord>> {
        self.lock()
            .prepare_cached(
                "SELECT id, class, name, created_at, last_active_at, size_bytes FROM objects
                 WHERE id = ?1",
            )?
            .query_row([id], |row| {
                Ok(ObjectRecord {
                    id: row.get(0)?,
                    class: row.get(1)?,
                    name: row.get(2)?,
                    created_at: row.get(3)?,
                    last_active_at: row.get(4)?,
                    size_bytes: row.get::<_, i64>(5)?.unsigned_abs(),
                })
            })
            .optional()
    }

    /// Forgets an object; returns whether it was known.
    pub fn remove(&self, id: &str) -> rusqlite::Result<bool> {
        let conn = self.lock();
        conn.execute("DELETE FROM alarms WHERE id = ?1", [id])?;
        Ok(conn.execute("DELETE FROM objects WHERE id = ?1", [id])? > 0)
    }
}

/// A change for the background writer; applied in the order sent.
#[derive(Debug, Clone)]
pub enum CatalogUpdate {
    Seen(ObjectSeen),
    Removed { id: String },
}

/// Sends updates to the background writer.
#[derive(Clone)]
pub struct CatalogWriter {
    sender: mpsc::UnboundedSender<CatalogUpdate>,
    /// Updates sent so far, and (watched) applied so far: a reader that
    /// must see what was sent before it waits for the second to catch up.
    sent: Arc<AtomicU64>,
    applied: watch::Receiver<u64>,
}

impl CatalogWriter {
    /// Starts the writer task. It ends when every `CatalogWriter` is gone,
    /// after applying what it was sent.
    pub fn start(catalog: Arc<Catalog>) -> (CatalogWriter, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = mpsc::unbounded_channel::<CatalogUpdate>();
        let (done, applied) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < 4096 {
                    match receiver.try_recv() {
                        Ok(seen) => batch.push(seen),
                        Err(_) => break,
                    }
                }
                let catalog = Arc::clone(&catalog);
                let count = batch.len() as u64;
                match tokio::task::spawn_blocking(move || catalog.apply(&batch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "cannot update the catalog"),
                    Err(error) => tracing::warn!(%error, "updating the catalog panicked"),
                }
                // Applied or failed: either way, readers need not wait.
                done.send_modify(|applied| *applied += count);
            }
        });
        let writer = CatalogWriter {
            sender,
            sent: Arc::new(AtomicU64::new(0)),
            applied,
        };
        (writer, task)
    }

    pub fn send(&self, update: CatalogUpdate) {
        // Counted before it is sent, so `flushed` never waits for less.
        self.sent.fetch_add(1, Ordering::AcqRel);
        // Only fails when the writer is gone, at the very end of shutdown.
        let _ = self.sender.send(update);
    }

    /// Waits until every update sent before this call is applied (or the
    /// writer is gone).
    pub fn flushed(&self) -> impl Future<Output = ()> + Send + 'static {
        let target = self.sent.load(Ordering::Acquire);
        let mut applied = self.applied.clone();
        async move {
            let _ = applied.wait_for(|applied| *applied >= target).await;
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, at: i64, size: Option<u64>) -> CatalogUpdate {
        CatalogUpdate::Seen(ObjectSeen {
            id: id.into(),
            class: "counter".into(),
            name: format!("name-{id}"),
            at,
            size_bytes: size,
        })
    }

    #[test]
    fn records_objects_and_classes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = Catalog::open(dir.path(), Durability::Normal).expect("open");
        catalog
            .apply(&[seen("a", 10, None), seen("b", 20, None)])
            .expect("apply");
        catalog
            .apply(&[seen("a", 30, Some(4096)), seen("a", 25, None)])
            .expect("apply");
        let objects = catalog.objects(Some("counter")).expect("list");
        assert_eq!(objects.len(), 2);
        assert_eq!(
            (
                objects[0].created_at,
                objects[0].last_active_at,
                objects[0].size_bytes
            ),
            (10, 30, 4096)
        );
        assert!(catalog.objects(Some("other")).expect("list").is_empty());
        assert!(catalog.remove("a").expect("remove"));
        assert!(!catalog.remove("a").expect("remove again"));
        catalog
            .apply(&[
                seen("c", 40, None),
                CatalogUpdate::Removed { id: "c".into() },
            ])
            .expect("apply in order");

        let reader = Catalog::open_read_only(dir.path()).expect("read only");
        assert_eq!(reader.objects(None).expect("list").len(), 1);
    }
}
