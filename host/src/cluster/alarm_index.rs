//! The alarm index every node reads, in etcd: `<prefix>/alarms/<class>/
//! <id>` = `{"name", "at_ms"}`, a mirror of the object's entry in its
//! owner's catalog (`alarms::index`) with the same rule, only ever early:
//! the actor waits for an earlier time to be written before the commit
//! that sets it, and writes a later one or a removal only after. It is in
//! etcd rather than the catalog because each node's catalog is its own
//! (replicated to the store, but not readable by the others while they
//! run), while etcd is reachable by every node, keeps small keys
//! consistently and outlives any node. Not under a lease: it must outlive
//! the node that wrote it.
//!
//! Writes are fenced: each is made only while the writer still owns the
//! object (its owner key has the create revision the writer took), so a
//! node that lost the object never overwrites its new owner's entry.
//!
//! Each node lists the entries every second. One due for a second with
//! no owner key (its node died and its lease expired, or it hibernated)
//! is delivered here as an alarm: the delivery takes the object (create
//! if absent, so one node wins), restores it from the store and runs it
//! (`Runtime::deliver`). An object with an owner is left to it: the
//! owner's own scheduler fires it.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::ClusterError;
use super::keys::Keys;
use super::ownership::Owners;
use crate::object::{EventError, ObjectAddr};
use crate::runtime::Runtime;
use crate::storage::catalog::now_ms;

/// How often each node lists the entries.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long an entry is due before a node other than its owner's takes
/// it: the owner's scheduler (which looks at least every second) fires
/// its own objects' alarms first, so nodes rarely race for one.
const GRACE_MS: i64 = 1_000;
/// Alarms taken over from other nodes and not yet finished, at most.
const MAX_IN_FLIGHT: usize = 64;

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    at_ms: i64,
}

struct Write {
    key: String,
    owner_key: String,
    /// The writer's ownership of the object (its key's create revision).
    epoch: u64,
    entry: Option<String>,
    done: oneshot::Sender<()>,
}

/// Writes entries in the order they come (one queue for the node, so a
/// later write never overtakes an earlier one of the same object).
pub(super) struct AlarmIndex {
    keys: Keys,
    writes: mpsc::UnboundedSender<Write>,
}

impl AlarmIndex {
    pub fn start(client: Client, keys: Keys) -> AlarmIndex {
        let (writes, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_all(client, queue));
        AlarmIndex { keys, writes }
    }

    /// Sets (`None`: removes) `object`'s entry, if this node owns it at
    /// `epoch`. Resolves once written or failed (logged: the entry is then
    /// missing or late only if this node dies before it writes it again).
    pub fn write(
        &self,
        object: &ObjectAddr,
        epoch: Option<u64>,
        at_ms: Option<i64>,
    ) -> BoxFuture<'static, ()> {
        let Some(epoch) = epoch else {
            tracing::debug!(
                class = object.class(),
                "not mirroring an alarm of an object this node does not own"
            );
            return Box::pin(async {});
        };
        let entry = at_ms.map(|at_ms| {
            let name = object.name().to_string();
            serde_json::to_string(&Entry { name, at_ms }).unwrap_or_default()
        });
        let (done, written) = oneshot::channel();
        let write = Write {
            key: self.keys.alarm(object.class(), object.id()),
            owner_key: self.keys.owner(object.class(), object.id()),
            epoch,
            entry,
            done,
        };
        if self.writes.send(write).is_err() {
            return Box::pin(async {});
        }
        Box::pin(async move {
            let _ = written.await;
        })
    }
}

async fn write_all(client: Client, mut queue: mpsc::UnboundedReceiver<Write>) {
    while let Some(write) = queue.recv().await {
        let change = match &write.entry {
            Some(entry) => TxnOp::put(write.key.as_str(), entry.as_str(), None),
            None => TxnOp::delete(write.key.as_str(), None),
        };
        let fenced = Txn::new()
            .when([Compare::create_revision(
                write.owner_key.as_str(),
                CompareOp::Equal,
                i64::try_from(write.epoch).unwrap_or(i64::MAX),
            )])
            .and_then([change]);
        match client.clone().txn(fenced).await {
            Ok(response) if !response.succeeded() => {
                tracing::debug!(key = write.key, "an alarm not mirrored: the object moved");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(key = write.key, %error, "cannot mirror an alarm in etcd");
            }
        }
        let _ = write.done.send(());
    }
}

/// Starts the look for due alarms of objects nobody owns.
pub(super) fn start_takeover(
    client: Client,
    keys: Keys,
    owners: Arc<Owners>,
    runtime: Weak<Runtime>,
) {
    tokio::spawn(async move {
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            let Some(runtime) = runtime.upgrade() else {
                return;
            };
            if !owners.taking() {
                // Draining: the other nodes take these alarms.
                return;
            }
            if let Err(error) = take_due(&client, &keys, &runtime, &in_flight).await {
                tracing::warn!(%error, "cannot look for alarms of other nodes' objects");
            }
        }
    });
}

/// A due entry: class, name.
fn due(keys: &Keys, kv: &KeyValue, now: i64) -> Option<(String, String)> {
    let key = kv.key_str().ok()?.strip_prefix(&keys.alarms())?;
    let (class, id) = key.split_once('/')?;
    let entry: Entry = serde_json::from_slice(kv.value()).ok()?;
    let object = ObjectAddr::new(class, &entry.name);
    (object.id() == id && entry.at_ms <= now.saturating_sub(GRACE_MS))
        .then(|| (class.to_string(), entry.name))
}

async fn take_due(
    client: &Client,
    keys: &Keys,
    runtime: &Arc<Runtime>,
    in_flight: &Arc<Mutex<HashSet<String>>>,
) -> Result<(), ClusterError> {
    let mut client = client.clone();
    let listed = client
        .get(keys.alarms(), Some(GetOptions::new().with_prefix()))
        .await?;
    let now = now_ms();
    for kv in listed.kvs() {
        let Some((class, name)) = due(keys, kv, now) else {
            continue;
        };
        let id = ObjectAddr::new(&class, &name).id().to_string();
        {
            let in_flight = in_flight.lock();
            if in_flight.len() >= MAX_IN_FLIGHT || in_flight.contains(&id) {
                continue;
            }
        }
        let owner = client
            .get(
                keys.owner(&class, &id),
                Some(GetOptions::new().with_count_only()),
            )
            .await?;
        if owner.count() > 0 {
            continue;
        }
        in_flight.lock().insert(id.clone());
        let (runtime, in_flight) = (Arc::clone(runtime), Arc::clone(in_flight));
        tokio::spawn(async move {
            match runtime.fire_alarm(&class, &name, 0).await {
                Ok(()) => tracing::info!(class, name, "ran an alarm of an object nobody owned"),
                // Another node took it first: it runs the alarm.
                Err(EventError::Cluster(ClusterError::OwnedElsewhere { .. })) => {}
                Err(EventError::NoSuchClass(_)) => {
                    tracing::debug!(class, name, "an alarm of a class not deployed here");
                }
                Err(error) => {
                    tracing::warn!(class, name, %error, "cannot run an alarm of an object nobody owned");
                }
            }
            in_flight.lock().remove(&id);
        });
    }
    Ok(())
}
