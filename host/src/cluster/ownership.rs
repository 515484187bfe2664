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
use std::sync::Arc;
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
    /// This node serves it.
    Local,
    /// Node `node`, reached at `address` (`host:port`), serves it.
    Remote { node: String, address: String },
}

pub(super) struct Owners {
    client: Client,
    keys: Keys,
    node: String,
    membership: std::sync::OnceLock<Arc<Membership>>,
    /// Objects this node owns: key → fencing epoch.
    own: Mutex<HashMap<String, u64>>,
    /// Objects other nodes own: key → (node, address).
    others: Mutex<HashMap<String, (String, String)>>,
    /// Taking and releasing objects one at a time on this node, so a
    /// release never deletes a key a take has just relied on.
    changing: tokio::sync::Mutex<()>,
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
                    if self.own.lock().remove(key).is_some() {
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
    /// nobody does.
    pub async fn route(&self, class: &str, id: &str) -> Result<Route, ClusterError> {
        let key = self.keys.owner(class, id);
        if let Some(route) = self.cached(&key) {
            return Ok(route);
        }
        let _changing = self.changing.lock().await;
        if let Some(route) = self.cached(&key) {
            return Ok(route);
        }
        let lease = self.lease()?;
        let mut client = self.client.clone();
        let take = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                self.node.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = client.txn(take).await?;
        if response.succeeded() {
            let epoch = response
                .header()
                .map(|header| header.revision())
                .and_then(|revision| u64::try_from(revision).ok())
                .ok_or_else(|| ClusterError::Etcd("a transaction without a revision".into()))?;
            self.own.lock().insert(key, epoch);
            return Ok(Route::Local);
        }
        let owner = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        let Some(owner) = owner else {
            return Err(ClusterError::Moving("its owner just let it go".into()));
        };
        let owner_node = owner.value_str().unwrap_or_default().to_string();
        if owner_node == self.node {
            if owner.lease() == lease {
                let epoch = u64::try_from(owner.create_revision()).unwrap_or(0);
                self.own.lock().insert(key, epoch);
                return Ok(Route::Local);
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
        if self.own.lock().contains_key(key) {
            return Some(Route::Local);
        }
        self.others
            .lock()
            .get(key)
            .map(|(node, address)| Route::Remote {
                node: node.clone(),
                address: address.clone(),
            })
    }

    /// Forgets another node's object (a forward to it failed).
    pub fn forget(&self, class: &str, id: &str) {
        self.others.lock().remove(&self.keys.owner(class, id));
    }

    /// The fencing epoch of an object this node owns.
    pub fn epoch(&self, class: &str, id: &str) -> Option<u64> {
        self.own.lock().get(&self.keys.owner(class, id)).copied()
    }

    /// Forgets every object this node owned (its lease is gone, and their
    /// keys with it).
    pub fn forget_own(&self) {
        self.own.lock().clear();
    }

    /// Lets object `id` go (it closed): deletes its key if it is still the
    /// one this node created, unless the object is `live` again by then
    /// (a request took it back; it is let go at its next close).
    pub fn release(
        self: &Arc<Self>,
        class: &str,
        id: &str,
        live: impl Fn() -> bool + Send + 'static,
    ) {
        let owners = Arc::clone(self);
        let key = self.keys.owner(class, id);
        tokio::spawn(async move {
            let _changing = owners.changing.lock().await;
            if live() {
                return;
            }
            let Some(epoch) = owners.own.lock().remove(&key) else {
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
