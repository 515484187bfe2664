//! Which node serves which object. A node takes an object before serving
//! it by creating `<prefix>/owners/<class>/<id>` = its name under its
//! lease, only if absent (one etcd transaction); the key's create
//! revision is the object's fencing epoch. Closing the object deletes the
//! key if it is still the one created (same revision), so the object can
//! move; a lost lease deletes all of them in etcd at once.
//!
//! Other nodes' objects are cached, and the cache follows a watch of
//! `<prefix>/owners/`: a deleted key is forgotten at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use parking_lot::Mutex;

use super::ClusterError;
use super::keys::Keys;
use super::membership::Membership;

/// Where a request for an object goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node serves it; `restore`: another node served it last, so
    /// its state is restored from the replication store first.
    Local { restore: bool },
    /// Node `node`, reached at `address` (`host:port`), serves it.
    Remote { node: String, address: String },
}

#[derive(Clone, Copy)]
struct Owned {
    epoch: u64,
    /// Taken from another node, and not yet restored from the store.
    restore: bool,
}

pub(super) struct Owners {
    client: Client,
    keys: Keys,
    node: String,
    membership: std::sync::OnceLock<Arc<Membership>>,
    /// Objects this node owns.
    own: Mutex<HashMap<String, Owned>>,
    /// Objects other nodes own: key → (node, address).
    others: Mutex<HashMap<String, (String, String)>>,
    /// Taking and releasing objects one at a time on this node, so a
    /// release never deletes a key a take has just relied on.
    changing: tokio::sync::Mutex<()>,
    /// Requests being handled here, by key: an object with one is not
    /// released (its request may be about to activate it).
    pins: Mutex<HashMap<String, usize>>,
    /// One lock per object being restored here, by owner key.
    restoring: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Releases waiting for their object's last commits to be shipped.
    releasing: AtomicUsize,
    /// The node is stopping: it takes no object any more.
    leaving: AtomicBool,
}

/// Held while a request for an object is handled on this node.
pub struct Pin {
    owners: Arc<Owners>,
    key: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.owners.pins.lock();
        if let Some(count) = pins.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&self.key);
            }
        }
    }
}

impl Owners {
    pub fn new(client: Client, keys: Keys, node: String) -> Arc<Owners> {
        Arc::new(Owners {
            client,
            keys,
            node,
            membership: std::sync::OnceLock::new(),
            own: Mutex::new(HashMap::new()),
            others: Mutex::new(HashMap::new()),
            changing: tokio::sync::Mutex::new(()),
            pins: Mutex::new(HashMap::new()),
            restoring: Mutex::new(HashMap::new()),
            releasing: AtomicUsize::new(0),
            leaving: AtomicBool::new(false),
        })
    }

    /// Starts the watch that keeps the cache of other nodes' objects.
    pub fn start(self: &Arc<Self>, membership: Arc<Membership>) {
        let _ = self.membership.set(membership);
        let owners = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(error) = owners.watch().await {
                    tracing::warn!("the watch of object owners ended: {error}");
                }
                // Whatever changed meanwhile was missed: read again.
                owners.others.lock().clear();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn watch(&self) -> Result<(), ClusterError> {
        let mut client = self.client.clone();
        let mut stream = client
            .watch(self.keys.owners(), Some(WatchOptions::new().with_prefix()))
            .await?;
        while let Some(response) = stream.message().await? {
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let Ok(key) = kv.key_str() else { continue };
                if event.event_type() == EventType::Delete {
                    self.others.lock().remove(key);
                    // A deletion this node's take came after (its own
                    // release, seen late) says nothing of the new key.
                    let deleted_at = u64::try_from(kv.mod_revision()).unwrap_or(u64::MAX);
                    let mut own = self.own.lock();
                    if own.get(key).is_some_and(|owned| deleted_at > owned.epoch) {
                        own.remove(key);
                        // Our own key went (our lease expired in etcd):
                        // the object must not be served here any more.
                        tracing::warn!(key, "an object's ownership ended in etcd");
                    }
                } else if kv.value() != self.node.as_bytes() {
                    // Its address is read when next needed.
                    self.others.lock().remove(key);
                }
            }
        }
        Ok(())
    }

    fn lease(&self) -> Result<i64, ClusterError> {
        match self.membership.get() {
            Some(membership) => membership.lease(),
            None => Err(ClusterError::NoLease {
                node: self.node.clone(),
            }),
        }
    }

    /// Who serves object `id` of `class`; takes it for this node when
    /// nobody does, unless `prefer` names another node (name, address)
    /// for it to go to (that node takes it).
    pub async fn route(
        &self,
        class: &str,
        id: &str,
        prefer: impl FnOnce() -> Option<(String, String)>,
    ) -> Result<Route, ClusterError> {
        let key = self.keys.owner(class, id);
        if let Some(route) = self.cached(&key) {
            return Ok(route);
        }
        let _changing = self.changing.lock().await;
        if let Some(route) = self.cached(&key) {
            return Ok(route);
        }
        if !self.taking() {
            // Whatever would have taken it (an alarm, a call) is refused:
            // the next owner runs it.
            return Err(ClusterError::Stopping {
                node: self.node.clone(),
            });
        }
        let lease = self.lease()?;
        let mut client = self.client.clone();
        if let Some((node, address)) = prefer()
            && client.get(key.as_str(), None).await?.kvs().is_empty()
        {
            // Not cached: if the preferred node never takes it, no change
            // in etcd would tell the watch to correct the entry.
            return Ok(Route::Remote { node, address });
        }
        let last_owner = self.keys.last_owner(class, id);
        let take = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::get(last_owner.as_str(), None),
                TxnOp::put(
                    key.as_str(),
                    self.node.as_str(),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(last_owner.as_str(), self.node.as_str(), None),
            ])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = client.txn(take).await?;
        if response.succeeded() {
            let epoch = response
                .header()
                .map(|header| header.revision())
                .and_then(|revision| u64::try_from(revision).ok())
                .ok_or_else(|| ClusterError::Etcd("a transaction without a revision".into()))?;
            let previous = response.op_responses().into_iter().find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            });
            let restore = previous.is_some_and(|node| node != self.node.as_bytes());
            self.own.lock().insert(key, Owned { epoch, restore });
            return Ok(Route::Local { restore });
        }
        let owner = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        let Some(owner) = owner else {
            return Err(ClusterError::Moving("its owner just let it go".into()));
        };
        self.route_to(key, owner, lease).await
    }

    /// Who serves object `id` of `class`, without taking it: `None` when
    /// nobody does (a stopping node sends it to another node instead).
    pub async fn route_without_taking(
        &self,
        class: &str,
        id: &str,
    ) -> Result<Option<Route>, ClusterError> {
        let key = self.keys.owner(class, id);
        if let Some(route) = self.cached(&key) {
            return Ok(Some(route));
        }
        // After a release under way here: its key is deleted by then.
        let _changing = self.changing.lock().await;
        if let Some(route) = self.cached(&key) {
            return Ok(Some(route));
        }
        let lease = self.lease()?;
        let mut client = self.client.clone();
        let owner = client.get(key.as_str(), None).await?.kvs().first().cloned();
        match owner {
            Some(owner) => self.route_to(key, owner, lease).await.map(Some),
            None => Ok(None),
        }
    }

    /// The route to `owner`, the key `key` holds now.
    async fn route_to(
        &self,
        key: String,
        owner: etcd_client::KeyValue,
        lease: i64,
    ) -> Result<Route, ClusterError> {
        let mut client = self.client.clone();
        let owner_node = owner.value_str().unwrap_or_default().to_string();
        if owner_node == self.node {
            if owner.lease() == lease {
                let epoch = u64::try_from(owner.create_revision()).unwrap_or(0);
                self.own.lock().insert(
                    key,
                    Owned {
                        epoch,
                        restore: false,
                    },
                );
                return Ok(Route::Local { restore: false });
            }
            return Err(ClusterError::Moving(
                "this node held it under a lease that has not expired yet".into(),
            ));
        }
        let address = client
            .get(self.keys.node(&owner_node), None)
            .await?
            .kvs()
            .first()
            .and_then(|kv| kv.value_str().ok().map(str::to_string));
        let Some(address) = address else {
            return Err(ClusterError::Moving(format!(
                "its owner {owner_node} has left the cluster"
            )));
        };
        self.others
            .lock()
            .insert(key, (owner_node.clone(), address.clone()));
        Ok(Route::Remote {
            node: owner_node,
            address,
        })
    }

    fn cached(&self, key: &str) -> Option<Route> {
        if let Some(owned) = self.own.lock().get(key) {
            return Some(Route::Local {
                restore: owned.restore,
            });
        }
        self.others
            .lock()
            .get(key)
            .map(|(node, address)| Route::Remote {
                node: node.clone(),
                address: address.clone(),
            })
    }

    /// Keeps object `id` from being released until the pin is dropped:
    /// taken before its route is read, so a release either sees it or
    /// ran before the route was read (which then takes the object anew).
    pub fn pin(self: &Arc<Self>, class: &str, id: &str) -> Pin {
        let key = self.keys.owner(class, id);
        *self.pins.lock().entry(key.clone()).or_insert(0) += 1;
        Pin {
            owners: Arc::clone(self),
            key,
        }
    }

    /// Held while object `id` is restored here: two events for it must
    /// not restore it twice. Other objects restore meanwhile (a dead
    /// node's objects all move at once; one at a time, the last of them
    /// waited for every other's store round trips).
    pub async fn restoring(&self, class: &str, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let key = self.keys.owner(class, id);
        let lock = {
            let mut locks = self.restoring.lock();
            locks.retain(|_, lock| lock.strong_count() > 0);
            match locks.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    /// From now on this node takes no object (it is draining).
    pub fn stop_taking(&self) {
        self.leaving.store(true, Ordering::Release);
    }

    /// Whether this node may still take objects.
    pub fn taking(&self) -> bool {
        !self.leaving.load(Ordering::Acquire)
    }

    /// Whether this node owns object `id` now.
    pub fn owns(&self, class: &str, id: &str) -> bool {
        self.own.lock().contains_key(&self.keys.owner(class, id))
    }

    /// How many objects this node owns, and how many releases are still
    /// under way (waiting for their last commits to be shipped).
    pub fn holding(&self) -> (usize, usize) {
        (
            self.own.lock().len(),
            self.releasing.load(Ordering::Acquire),
        )
    }

    /// Forgets another node's object (a forward to it failed).
    pub fn forget(&self, class: &str, id: &str) {
        self.others.lock().remove(&self.keys.owner(class, id));
    }

    /// Forgets another node's object if `owner` says yes to the node
    /// cached as its owner.
    pub fn forget_if_owner(&self, class: &str, id: &str, owner: impl Fn(&str) -> bool) {
        let key = self.keys.owner(class, id);
        let mut others = self.others.lock();
        if others.get(&key).is_some_and(|(node, _)| owner(node)) {
            others.remove(&key);
        }
    }

    /// The fencing epoch of an object this node owns.
    pub fn epoch(&self, class: &str, id: &str) -> Option<u64> {
        self.own
            .lock()
            .get(&self.keys.owner(class, id))
            .map(|owned| owned.epoch)
    }

    /// Object `id` has been restored from the store (or needs not be).
    pub fn restored(&self, class: &str, id: &str) {
        if let Some(owned) = self.own.lock().get_mut(&self.keys.owner(class, id)) {
            owned.restore = false;
        }
    }

    /// Forgets every object this node owned (its lease is gone, and their
    /// keys with it).
    pub fn forget_own(&self) {
        self.own.lock().clear();
    }

    /// Lets object `id` go (it closed): once `shipped` says its last
    /// commits are in the store (so the next owner restores them), deletes
    /// its key if it is still the one this node created, unless the
    /// object is `live` again by then (a request took it back; it is let
    /// go at its next close).
    pub fn release(
        self: &Arc<Self>,
        class: &str,
        id: &str,
        live: impl Fn() -> bool + Send + 'static,
        shipped: impl Future<Output = bool> + Send + 'static,
    ) {
        let owners = Arc::clone(self);
        let key = self.keys.owner(class, id);
        owners.releasing.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let _counted = Releasing(Arc::clone(&owners));
            if !shipped.await {
                // Kept: served here again rather than elsewhere without
                // its last commits (the lease ends it if the node dies).
                tracing::warn!(
                    key,
                    "an object's last commits are not in the store yet: it stays on this node"
                );
                return;
            }
            let _changing = owners.changing.lock().await;
            if live() {
                return;
            }
            let owned = {
                let pins = owners.pins.lock();
                if pins.contains_key(&key) {
                    return;
                }
                owners.own.lock().remove(&key)
            };
            let Some(Owned { epoch, .. }) = owned else {
                return;
            };
            let revision = i64::try_from(epoch).unwrap_or(i64::MAX);
            let delete = Txn::new()
                .when([Compare::create_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::delete(key.as_str(), None)]);
            let mut client = owners.client.clone();
            if let Err(error) = client.txn(delete).await {
                // The key stays until the lease ends; the object stays
                // here meanwhile (a later request takes it back).
                tracing::warn!(key, "cannot release an object: {error}");
            }
        });
    }
}

/// Counts a release under way until it ends, however it ends.
struct Releasing(Arc<Owners>);

impl Drop for Releasing {
    fn drop(&mut self) {
        self.0.releasing.fetch_sub(1, Ordering::AcqRel);
    }
}
