//! The catalog (classes and their versions, tenants, accounts, sessions,
//! keys, handles, the alarm and object indexes) and the deployed
//! components, in the store under `_catalog/`.
//!
//! The catalog is shipped like an object: its own stream
//! `_catalog/db/<generation>/`, a snapshot then a segment (same format)
//! per shipment of the commits found in its write-ahead log. Several
//! connections write `catalog.sqlite` (the catalog's, the accounts', the
//! tenants'); none checkpoints by itself (`wal_autocheckpoint = 0`, see
//! `storage::catalog::connect`). One shipper, [`CatalogLog`], reads new
//! frames straight from the `-wal` file (whoever wrote them) and is the
//! only one to checkpoint, holding the write lock while it reads the last
//! frames and checkpoints, so no frame leaves the log unshipped. Routes
//! that write the catalog ship right after their commit and, when the
//! catalog is `replicated`, wait for the store before answering
//! (`gateway::catalog_durable`); commits no route waits for (the object
//! and alarm indexes) go every `catalog_interval`. A segment's
//! transaction ids count shipments, not SQLite commits: the catalog keeps
//! no counter of its own, so it is always restored to its latest state.
//! Each component goes once (`_catalog/classes/<sha256>.wasm`,
//! immutable), queued before the segment that names it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::TryStreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parking_lot::Mutex;
use rusqlite::Connection;
use sha2::{Digest as _, Sha256};

use super::restore::{Point, RestoreError};
use super::segment::{self, Header, Named};
use super::{Position, Replication, Stream};
use crate::storage::Durability;
use crate::storage::catalog::now_ms;
use crate::storage::wal::WalCursor;

/// The store's folder for the catalog and components.
pub const CATALOG: &str = "_catalog";
/// The catalog's stream: `_catalog/db/<generation>/...`.
pub const CATALOG_STREAM: &str = "db";

/// Where the component named `file` (`<sha256>.wasm`) is kept in the
/// store.
pub fn component_path(file: &str) -> StorePath {
    StorePath::from(format!("{CATALOG}/classes/{file}"))
}

/// The one shipper of `catalog.sqlite`'s commits.
pub struct CatalogLog {
    replication: Arc<Replication>,
    stream: Arc<Stream>,
    data_dir: PathBuf,
    wal: PathBuf,
    /// Held while shipping: one reader of the log at a time.
    state: Mutex<State>,
}

struct State {
    cursor: WalCursor,
    /// `None`: the next shipment starts a new generation.
    position: Option<Position>,
    /// Bytes shipped since the last checkpoint.
    unchecked: u64,
    /// Components already in the store (or queued).
    components: HashSet<String>,
    /// Holds the write lock while the last frames are read (a snapshot,
    /// a checkpoint): no commit can slip in between.
    gate: Connection,
    /// Checkpoints and copies the catalog while `gate` holds the write
    /// lock.
    checkpointer: Connection,
}

impl CatalogLog {
    /// The shipper of the catalog in `data_dir`; nothing shipped yet.
    pub fn open(replication: &Arc<Replication>, data_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let connect = || crate::storage::catalog::connect(data_dir, Durability::Full);
        Ok(Arc::new(CatalogLog {
            replication: Arc::clone(replication),
            stream: replication.stream(CATALOG, CATALOG_STREAM, "catalog"),
            data_dir: data_dir.to_path_buf(),
            wal: data_dir.join("catalog.sqlite-wal"),
            state: Mutex::new(State {
                cursor: WalCursor::default(),
                position: None,
                unchecked: 0,
                components: HashSet::new(),
                gate: connect()?,
                checkpointer: connect()?,
            }),
        }))
    }

    /// Queues what the catalog committed since the last call (and the
    /// components not yet shipped). Returns the stream's last sequence
    /// number: once it is durable, so is every catalog commit so far.
    /// Blocking: reads files.
    pub fn ship(&self) -> anyhow::Result<u64> {
        let mut state = self.state.lock();
        let shipped = self.ship_locked(&mut state);
        if shipped.is_err() {
            state.position = None;
        }
        shipped
    }

    /// Waits until upload `seq` is durable, at most `[replication] timeout`.
    pub async fn wait_durable(&self, seq: u64) -> bool {
        self.stream
            .wait_durable(seq, self.replication.settings().timeout)
            .await
    }

    fn ship_locked(&self, state: &mut State) -> anyhow::Result<u64> {
        self.queue_components(state)?;
        let settings = self.replication.settings();
        let due = state.position.as_ref().is_none_or(|current| {
            current.snapshot_at.elapsed() >= settings.snapshot_interval
                || current.bytes_since_snapshot >= settings.snapshot_after_bytes
        });
        if due {
            self.snapshot_locked(state)?;
        } else {
            self.segment_locked(state)?;
        }
        if state.unchecked > settings.checkpoint_wal_bytes {
            self.checkpoint_locked(state)?;
        }
        Ok(self.stream.last_queued())
    }

    /// Queues the commits after the cursor as one segment, if any.
    fn segment_locked(&self, state: &mut State) -> anyhow::Result<()> {
        let Some(committed) = state.cursor.read_committed(&self.wal)? else {
            return Ok(());
        };
        let Some(current) = state.position.as_mut() else {
            anyhow::bail!("no generation to ship the catalog's commits in");
        };
        let txid = current.last_txid + 1;
        let header = Header {
            snapshot: false,
            page_size: committed.page_size,
            epoch: 0,
            first_txid: txid,
            last_txid: txid,
            committed_ms: now_ms(),
            database_pages: committed.database_pages,
        };
        let bytes = segment::encode_segment(&header, &committed.pages);
        current.bytes_since_snapshot += bytes.len() as u64;
        current.last_txid = txid;
        state.unchecked += bytes.len() as u64;
        let name = segment::file_name(&Named::Segment {
            first: txid,
            last: txid,
        });
        self.stream
            .queue(&self.replication, &current.generation, &name, bytes);
        Ok(())
    }

    /// Starts a new generation with a copy of the catalog as of now: the
    /// write lock held while the log is read to its end and the copy
    /// made, so the copy is exactly what the cursor has passed.
    fn snapshot_locked(&self, state: &mut State) -> anyhow::Result<()> {
        let scratch = self.data_dir.join("tmp");
        std::fs::create_dir_all(&scratch)?;
        let copy = tempfile::Builder::new()
            .prefix("catalog-")
            .suffix(".sqlite")
            .tempfile_in(&scratch)?
            .into_temp_path();
        state.gate.execute_batch("BEGIN IMMEDIATE")?;
        let copied =
            (|| -> anyhow::Result<()> {
                state.cursor.reset();
                state.cursor.read_committed(&self.wal)?;
                let mut target = Connection::open(&copy)?;
                // From the other connection: SQLite backs up nothing from one
                // in a write transaction; with the lock held, its read sees
                // the last commit.
                rusqlite::backup::Backup::new(&state.checkpointer, &mut target)?
                    .run_to_completion(4096, std::time::Duration::from_millis(5), None)?;
                target.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
                Ok(())
            })();
        state.gate.execute_batch("ROLLBACK")?;
        copied?;
        let file = std::fs::read(&copy)?;
        let page_size = u32::from_be_bytes([0, 0, file[16], file[17]]);
        let page_size = if page_size == 1 { 65536 } else { page_size };
        let header = Header {
            snapshot: true,
            page_size,
            epoch: 0,
            first_txid: 0,
            last_txid: 0,
            committed_ms: now_ms(),
            database_pages: (file.len() / page_size.max(1) as usize) as u32,
        };
        let generation = segment::new_generation(now_ms());
        self.stream.queue(
            &self.replication,
            &generation,
            segment::NAME_FILE,
            b"catalog".to_vec(),
        );
        self.stream.queue(
            &self.replication,
            &generation,
            &segment::file_name(&Named::Snapshot { txid: 0 }),
            segment::encode_snapshot(&header, &file),
        );
        state.position = Some(Position {
            generation,
            last_txid: 0,
            snapshot_at: Instant::now(),
            bytes_since_snapshot: 0,
            epoch: 0,
        });
        Ok(())
    }

    /// Empties the log into the database file, after shipping its last
    /// commits with the write lock held (none can come in between; the
    /// log restarts, with new salts, at the next commit).
    fn checkpoint_locked(&self, state: &mut State) -> anyhow::Result<()> {
        state.gate.execute_batch("BEGIN IMMEDIATE")?;
        let done = (|| -> anyhow::Result<()> {
            self.segment_locked(state)?;
            state
                .checkpointer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })();
        state.gate.execute_batch("ROLLBACK")?;
        done?;
        state.unchecked = 0;
        Ok(())
    }

    /// Queues every component in `classes/` not yet in the store.
    fn queue_components(&self, state: &mut State) -> anyhow::Result<()> {
        for component in list_components(&self.data_dir.join("classes"))? {
            let name = file_name(&component);
            if state.components.contains(&name) {
                continue;
            }
            let bytes = std::fs::read(&component)?;
            let path = component_path(&name);
            self.stream.queue_at(&self.replication, path, bytes);
            state.components.insert(name);
        }
        Ok(())
    }
}

/// Ships the catalog now (its first generation), then every
/// `catalog_interval` the commits no route waited for, while the
/// replication service lives.
pub fn start(log: &Arc<CatalogLog>) {
    let interval = log.replication.settings().catalog_interval;
    let weak = Arc::downgrade(log);
    tokio::spawn(async move {
        if let Some(log) = weak.upgrade() {
            // Components already stored are not uploaded again.
            let store = Arc::clone(log.replication.store());
            let prefix = StorePath::from(format!("{CATALOG}/classes"));
            let stored: Vec<String> = store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
                .try_collect()
                .await
                .unwrap_or_default();
            log.state.lock().components.extend(stored);
        }
        loop {
            let Some(log) = weak.upgrade() else {
                return;
            };
            let shipping = Arc::clone(&log);
            match tokio::task::spawn_blocking(move || shipping.ship()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!("cannot ship the catalog: {error:#}"),
                Err(error) => tracing::warn!("shipping the catalog panicked: {error}"),
            }
            drop(log);
            tokio::time::sleep(interval).await;
        }
    });
}

fn list_components(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whole-catalog snapshots (`_catalog/<ms:016x>.snap`) that earlier
/// versions shipped every `catalog_interval`, oldest first: still read by
/// a restore from a store without the catalog's stream.
async fn legacy_snapshots(store: &dyn ObjectStore) -> Result<Vec<StorePath>, object_store::Error> {
    let mut found: Vec<StorePath> = store
        .list(Some(&StorePath::from(CATALOG)))
        .map_ok(|meta| meta.location)
        .try_filter(|path| {
            let keep = path.parts().count() == 2 && path.as_ref().ends_with(".snap");
            async move { keep }
        })
        .try_collect()
        .await?;
    found.sort();
    Ok(found)
}

/// Writes the catalog as of its last shipped commit to
/// `data_dir/catalog.sqlite` and every component to `data_dir/classes/`.
/// Returns whether the store had a catalog.
pub async fn restore(store: &dyn ObjectStore, data_dir: &Path) -> anyhow::Result<bool> {
    std::fs::create_dir_all(data_dir.join("classes"))?;
    let components: Vec<StorePath> = store
        .list(Some(&StorePath::from(format!("{CATALOG}/classes"))))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await?;
    for path in components {
        let Some(name) = path.filename().map(str::to_string) else {
            continue;
        };
        let bytes = store.get(&path).await?.bytes().await?;
        // Components are stored by their content's hash: check it.
        let expected = name.strip_suffix(".wasm").unwrap_or_default();
        if hex::encode(Sha256::digest(&bytes)) != expected {
            anyhow::bail!("{path} is corrupt: its content does not match its hash");
        }
        std::fs::write(data_dir.join("classes").join(&name), &bytes)?;
    }
    let target = data_dir.join("catalog.sqlite");
    match super::restore::restore_uncounted(store, CATALOG, CATALOG_STREAM, Point::Latest, &target)
        .await
    {
        Ok(_) => return Ok(true),
        Err(RestoreError::NoHistory) => {}
        Err(error) => {
            let _ = std::fs::remove_file(&target);
            return Err(anyhow::Error::new(error).context("the catalog was not restored"));
        }
    }
    let Some(newest) = legacy_snapshots(store).await?.pop() else {
        return Ok(false);
    };
    let bytes = store.get(&newest).await?.bytes().await?;
    let piece = segment::decode(&bytes)
        .map_err(|reason| anyhow::anyhow!("{newest} is corrupt: {reason}"))?;
    std::fs::write(&target, &piece.file)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicationSettings;
    use crate::metrics::Metrics;
    use crate::storage::catalog::{Catalog, connect};

    /// The store and data directory of a catalog checkpointed every few
    /// commits.
    fn setup(dir: &Path) -> (Arc<Replication>, PathBuf, Catalog) {
        let data = dir.join("data");
        let settings = ReplicationSettings {
            url: Some(format!("file://{}", dir.join("store").display())),
            checkpoint_wal_bytes: 8 << 10,
            ..ReplicationSettings::default()
        };
        let replication = Replication::open(&settings, &Metrics::default()).expect("store");
        let catalog = Catalog::open(&data, Durability::Full).expect("catalog");
        catalog
            .lock()
            .execute_batch("CREATE TABLE t (x INTEGER, pad BLOB)")
            .expect("create");
        (replication, data, catalog)
    }

    /// `x` of table `t` in the catalog restored from `replication`'s store.
    async fn restored_rows(replication: &Replication, dir: &Path) -> Vec<i64> {
        let restored = dir.join("restored");
        std::fs::create_dir_all(&restored).expect("dir");
        let store = replication.store().as_ref();
        assert!(restore(store, &restored).await.expect("restore"));
        let conn = Connection::open(restored.join("catalog.sqlite")).expect("open");
        conn.prepare("SELECT x FROM t ORDER BY x")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .map(|row| row.expect("row"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_made_while_shipping_and_checkpointing_are_never_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (replication, data, _catalog) = setup(dir.path());
        let log = CatalogLog::open(&replication, &data).expect("log");
        log.ship().expect("the first generation");
        let writers: Vec<_> = (0..2_i64)
            .map(|writer| {
                let conn = connect(&data, Durability::Normal).expect("writer");
                std::thread::spawn(move || {
                    for n in 0..150 {
                        conn.execute(
                            "INSERT INTO t VALUES (?1, zeroblob(3000))",
                            [writer * 1000 + n],
                        )
                        .expect("insert");
                        // Pauses let checkpoints complete and the log
                        // restart while the others write.
                        std::thread::sleep(std::time::Duration::from_millis(3));
                    }
                })
            })
            .collect();
        let shipper = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut last = 0;
                while !writers.iter().all(std::thread::JoinHandle::is_finished) {
                    last = log.ship().expect("ship");
                }
                for writer in writers {
                    writer.join().expect("writer");
                }
                last.max(log.ship().expect("ship"))
            })
        };
        let last = tokio::task::spawn_blocking(move || shipper.join().expect("shipper"))
            .await
            .expect("joined");
        assert!(log.wait_durable(last).await, "shipped");
        let expected: Vec<i64> = (0..150).chain(1000..1150).collect();
        assert_eq!(restored_rows(&replication, dir.path()).await, expected);
    }

    /// The catalog's write-ahead log header's salts.
    fn salts(data: &Path) -> Vec<u8> {
        let wal = std::fs::read(data.join("catalog.sqlite-wal")).expect("the log");
        wal[16..24].to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_connections_commits_are_shipped_across_checkpoints_and_restored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let settings = ReplicationSettings {
            url: Some(format!("file://{}", dir.path().join("store").display())),
            // Small enough that the log is checkpointed (and restarts)
            // every few commits.
            checkpoint_wal_bytes: 8 << 10,
            ..ReplicationSettings::default()
        };
        let replication = Replication::open(&settings, &Metrics::default()).expect("store");
        let _catalog = Catalog::open(&data, Durability::Full).expect("catalog");
        let writers = [
            connect(&data, Durability::Full).expect("writer"),
            connect(&data, Durability::Full).expect("writer"),
        ];
        writers[0]
            .execute_batch("CREATE TABLE t (x INTEGER, pad BLOB)")
            .expect("create");
        let log = CatalogLog::open(&replication, &data).expect("log");
        let mut last = log.ship().expect("the first generation");
        let first_salts = salts(&data);
        for x in 1..=30_i64 {
            writers[(x % 2) as usize]
                .execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [x])
                .expect("insert");
            last = log.ship().expect("ship");
        }
        assert!(log.wait_durable(last).await, "shipped");
        // The rows reached the database file (checkpoints), and the log
        // restarted (new salts) over frames already shipped.
        let file = std::fs::metadata(data.join("catalog.sqlite")).expect("file");
        assert!(file.len() > 30 * 3000, "checkpointed: {} bytes", file.len());
        assert_ne!(salts(&data), first_salts, "the log restarted");

        let restored = dir.path().join("restored");
        std::fs::create_dir_all(&restored).expect("dir");
        let store = replication.store().as_ref();
        assert!(restore(store, &restored).await.expect("restore"));
        let conn = Connection::open(restored.join("catalog.sqlite")).expect("open");
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .map(|row| row.expect("row"))
            .collect();
        assert_eq!(rows, (1..=30).collect::<Vec<_>>());
    }
}
