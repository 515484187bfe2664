//! Continuous replication of objects' databases to object storage.
//!
//! Every commit of an object (a group-commit batch) becomes one immutable
//! segment in the store, holding the pages the commit wrote as the
//! write-ahead log had them ([`segment`] has the format and names). A
//! generation starts with a snapshot (the whole file) and continues with
//! segments without a gap; a new one starts the first time an object
//! commits in this process, after a restore or import, when the last
//! snapshot is older than `snapshot_interval` or followed by
//! `snapshot_after_bytes` of segments, and when the shipping queue
//! overflows. Restoring ([`restore`]) is a snapshot plus the segments after
//! it up to the point asked for.
//!
//! Each object has a [`Stream`]: uploads in the order they were queued,
//! one at a time, retried until the store takes them, so nothing is
//! skipped; streams of different objects upload concurrently. The actor
//! queues on its own thread right after each commit (`object/actor/
//! replica.rs`); a `replicated` object waits for its stream to be durable
//! before its batch's outputs leave.

pub mod catalog;
pub mod restore;
pub mod retention;
pub mod segment;
pub mod ship;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::config::ReplicationSettings;
use crate::metrics::{Level, Metrics};
use crate::storage::catalog::now_ms;

/// The replication service: the store, and a stream per object that has
/// committed in this process.
pub struct Replication {
    store: Arc<dyn ObjectStore>,
    settings: ReplicationSettings,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    queued_bytes: Level,
    lag_ms: Level,
    uploads: prometheus_client::metrics::counter::Counter,
    failures: prometheus_client::metrics::counter::Counter,
}

/// Where an object's current generation stands, as its actor knows it.
#[derive(Debug, Clone)]
pub struct Position {
    pub generation: String,
    /// The last transaction queued in this generation.
    pub last_txid: u64,
    pub snapshot_at: Instant,
    pub bytes_since_snapshot: u64,
    /// The fencing epoch of every piece of this generation (0 on one node).
    pub epoch: u64,
}

/// One object's uploads, in order.
pub struct Stream {
    /// `<class>/<object id>`.
    prefix: String,
    /// The object's name, stored with each generation (`name`) so that a
    /// whole data directory can be rebuilt from the store.
    name: String,
    sender: mpsc::UnboundedSender<Upload>,
    /// The sequence number of the last upload queued.
    queued: AtomicU64,
    /// The sequence number of the last upload durable in the store (or
    /// dropped, see `dropped_through`).
    durable: watch::Sender<u64>,
    /// Uploads up to this sequence number are skipped: the queue
    /// overflowed and a snapshot replaces them.
    dropped_through: AtomicU64,
    /// When the oldest upload not yet durable was queued (ms), 0 if none.
    oldest_pending_ms: AtomicI64,
    /// The actor's view of the generation; `None` means the next commit
    /// starts a new one.
    position: Mutex<Option<Position>>,
}

struct Upload {
    seq: u64,
    action: Action,
}

/// What one step of a stream does in the store.
enum Action {
    Put {
        path: StorePath,
        bytes: Bytes,
    },
    /// Remove everything under the object's prefix (`?purge=true`).
    Purge,
}

impl Replication {
    /// Opens the store; the metrics are registered in `metrics`.
    pub fn open(settings: &ReplicationSettings, metrics: &Metrics) -> anyhow::Result<Arc<Self>> {
        let store = store::open(settings)?;
        Ok(Arc::new(Replication {
            store,
            settings: settings.clone(),
            streams: Mutex::default(),
            queued_bytes: metrics.replication_queued_bytes.clone(),
            lag_ms: metrics.replication_lag_ms.clone(),
            uploads: metrics.replication_uploads.clone(),
            failures: metrics.replication_failures.clone(),
        }))
    }

    pub fn settings(&self) -> &ReplicationSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object's stream, made (with its uploader task) on first use.
    /// Must be called within the tokio runtime.
    pub fn stream(self: &Arc<Self>, class: &str, id: &str, name: &str) -> Arc<Stream> {
        let mut streams = self.streams.lock();
        if let Some(stream) = streams.get(id) {
            return Arc::clone(stream);
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let stream = Arc::new(Stream {
            prefix: format!("{class}/{id}"),
            name: name.to_string(),
            sender,
            queued: AtomicU64::new(0),
            durable: watch::Sender::new(0),
            dropped_through: AtomicU64::new(0),
            oldest_pending_ms: AtomicI64::new(0),
            position: Mutex::new(None),
        });
        streams.insert(id.to_string(), Arc::clone(&stream));
        tokio::spawn(Arc::clone(self).upload_loop(Arc::clone(&stream), receiver));
        stream
    }

    /// The object's data changed under its history (a restore, an import,
    /// a deletion): its next commit starts a new generation.
    pub fn forget(&self, id: &str) {
        if let Some(stream) = self.streams.lock().get(id) {
            *stream.position.lock() = None;
        }
    }

    /// Whether the shipping queue is past `max_queue_bytes`.
    pub fn overflowing(&self) -> bool {
        self.queued_bytes.get() > self.settings.max_queue_bytes
    }

    /// Sets the lag gauge: how long the oldest upload not yet durable has
    /// waited, over all objects.
    pub fn update_lag(&self) {
        let now = now_ms();
        let oldest = self
            .streams
            .lock()
            .values()
            .map(|stream| stream.oldest_pending_ms.load(Ordering::Relaxed))
            .filter(|at| *at > 0)
            .min();
        self.lag_ms
            .set(oldest.map_or(0, |at| (now - at).max(0).unsigned_abs()));
    }

    /// Uploads `stream`'s queue in order, each until the store takes it.
    async fn upload_loop(
        self: Arc<Self>,
        stream: Arc<Stream>,
        mut receiver: mpsc::UnboundedReceiver<Upload>,
    ) {
        while let Some(upload) = receiver.recv().await {
            let length = match &upload.action {
                Action::Put { bytes, .. } => bytes.len() as u64,
                Action::Purge => 0,
            };
            let mut backoff = Duration::from_millis(50);
            while upload.seq > stream.dropped_through.load(Ordering::Acquire) {
                let done = match &upload.action {
                    Action::Put { path, bytes } => {
                        let put = self.store.put(path, PutPayload::from_bytes(bytes.clone()));
                        match tokio::time::timeout(self.settings.timeout, put).await {
                            Ok(put) => put.map(drop),
                            Err(_) => Err(timed_out()),
                        }
                    }
                    Action::Purge => {
                        let prefix = StorePath::from(stream.prefix.as_str());
                        retention::delete_under(self.store.as_ref(), &prefix).await
                    }
                };
                match done {
                    Ok(()) => {
                        self.uploads.inc();
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, object = %stream.prefix, "replication upload failed; retrying");
                    }
                }
                self.failures.inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            self.queued_bytes.dec_by(length);
            let pending = stream.queued.load(Ordering::Acquire) > upload.seq;
            stream
                .oldest_pending_ms
                .store(if pending { now_ms() } else { 0 }, Ordering::Relaxed);
            stream.durable.send_replace(upload.seq);
        }
    }
}

fn timed_out() -> object_store::Error {
    object_store::Error::Generic {
        store: "replication",
        source: "the store did not answer within [replication] timeout".into(),
    }
}

impl Stream {
    /// The actor's view of the generation.
    pub fn position(&self) -> parking_lot::MutexGuard<'_, Option<Position>> {
        self.position.lock()
    }

    /// Queues `bytes` under `<generation>/<name>`; returns its sequence
    /// number.
    pub fn queue(
        &self,
        replication: &Replication,
        generation: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> u64 {
        let path = StorePath::from(format!("{}/{generation}/{name}", self.prefix));
        self.queue_at(replication, path, bytes)
    }

    /// Queues `bytes` under `path` (anywhere in the store); returns its
    /// sequence number.
    pub fn queue_at(&self, replication: &Replication, path: StorePath, bytes: Vec<u8>) -> u64 {
        let seq = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        replication.queued_bytes.inc_by(bytes.len() as u64);
        let _ = self.oldest_pending_ms.compare_exchange(
            0,
            now_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.send(Upload {
            seq,
            action: Action::Put {
                path,
                bytes: Bytes::from(bytes),
            },
        });
        seq
    }

    /// Records that the object was deleted (`deleted`, its time in ms):
    /// its history is kept for the retention window, then removed.
    pub fn queue_tombstone(&self, replication: &Replication) -> u64 {
        let path = StorePath::from(format!("{}/{}", self.prefix, retention::TOMBSTONE));
        let seq = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        let bytes = Bytes::from(now_ms().to_string());
        replication.queued_bytes.inc_by(bytes.len() as u64);
        self.send(Upload {
            seq,
            action: Action::Put { path, bytes },
        });
        seq
    }

    /// Removes the object's whole history, after what is queued before.
    pub fn queue_purge(&self) -> u64 {
        let seq = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        self.send(Upload {
            seq,
            action: Action::Purge,
        });
        seq
    }

    fn send(&self, upload: Upload) {
        if self.sender.send(upload).is_err() {
            tracing::error!("the replication uploader has stopped");
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Skips what is queued and not yet uploaded (a snapshot replaces it).
    pub fn drop_queued(&self) {
        let queued = self.queued.load(Ordering::Acquire);
        self.dropped_through.fetch_max(queued, Ordering::AcqRel);
    }

    /// The sequence number of the last upload queued.
    pub fn last_queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Waits until every upload up to `seq` is durable, at most `timeout`.
    pub async fn wait_durable(&self, seq: u64, timeout: Duration) -> bool {
        let mut durable = self.durable.subscribe();
        tokio::time::timeout(timeout, durable.wait_for(|done| *done >= seq))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}
