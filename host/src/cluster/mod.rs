//! Several nodes sharing objects through etcd (`[cluster]`, `podhost serve
//! --cluster etcd://...`). Without it no code of this module runs.
//!
//! - `membership.rs`: the node's lease and its key `<prefix>/nodes/<node>`
//!   (its advertised address), kept alive; whether the node may serve.
//! - `ownership.rs`: which node serves which object (`<prefix>/owners/
//!   <class>/<id>`, created under the owner's lease only if absent; its
//!   create revision is the object's fencing epoch), a cache of other
//!   nodes' objects kept fresh by a watch.
//! - `members.rs`, `placement.rs`: the live nodes that are not draining,
//!   and the one rendezvous hashing prefers for an object nobody serves
//!   (`placement = "rendezvous"`).
//! - `forward.rs`: a request for another node's object, proxied there
//!   (HTTP with streaming bodies, SSE, WebSockets as a byte tunnel).
//! - `drain.rs`: a stopping node marks itself draining
//!   (`<prefix>/draining/<node>`), hands its objects over, then leaves.
//!
//! - `moved.rs`: an object that moved here, restored from the store
//!   before it runs.
//! - `alarm_index.rs`: each object's alarm time mirrored in etcd, and the
//!   due alarms of objects nobody owns run here.
//!
//! The gateway asks `Cluster::route` who serves an object; the runtime
//! asks `ObjectOwnership::claim` before any event activates one, so an
//! object runs only on its owner however the event came.

mod alarm_index;
mod drain;
mod error;
mod forward;
mod keys;
mod members;
mod membership;
mod moved;
mod node_id;
mod ownership;
mod placement;
mod shared;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use etcd_client::{Client, ConnectOptions};
use futures_util::future::BoxFuture;

pub use error::ClusterError;
pub use forward::{Forwarder, Hops};
pub use ownership::{Pin, Route};
pub use shared::SharedCatalog;

use crate::config::{ClusterSettings, Placement};
use crate::object::{EventError, ObjectAddr};
use crate::runtime::Runtime;
use alarm_index::AlarmIndex;
use keys::Keys;
use members::Members;
use membership::Membership;
use ownership::Owners;

/// This node's part in the cluster.
pub struct Cluster {
    node: String,
    membership: Arc<Membership>,
    owners: Arc<Owners>,
    /// Followed with `placement = "rendezvous"` only.
    members: Option<Arc<Members>>,
    forwarder: Forwarder,
    drain_timeout: std::time::Duration,
    /// Set when the node starts draining: until when it may.
    drain_deadline: std::sync::OnceLock<tokio::time::Instant>,
}

/// A client of the cluster's etcd.
pub async fn connect(settings: &ClusterSettings) -> anyhow::Result<Client> {
    let url = settings.etcd_url()?;
    let options = ConnectOptions::new()
        .with_connect_timeout(settings.lease_ttl)
        .with_timeout(settings.lease_ttl);
    Client::connect(&url.endpoints, Some(options))
        .await
        .with_context(|| {
            format!(
                "cannot reach etcd at {}: start it, or serve without --cluster",
                url.endpoints.join(",")
            )
        })
}

impl Cluster {
    /// Joins the cluster: connects to etcd, takes a lease and registers
    /// this node under it (`advertise`, or `listening` when not set), and
    /// keeps the lease alive. Tells `runtime` to hibernate every object
    /// if the lease is lost, and learns from it when an object closes.
    pub async fn join(
        settings: &ClusterSettings,
        data_dir: &Path,
        listening: SocketAddr,
        runtime: &Arc<Runtime>,
    ) -> anyhow::Result<Arc<Cluster>> {
        let url = settings.etcd_url()?;
        let node = match &settings.node {
            Some(node) => node.clone(),
            None => node_id::load_or_create(data_dir)?,
        };
        let advertise = settings
            .advertise
            .clone()
            .unwrap_or_else(|| listening.to_string());
        let client = connect(settings).await?;
        let keys = Keys::new(&url.prefix);
        let owners = Owners::new(client.clone(), keys.clone(), node.clone());
        let members = (settings.placement == Placement::Rendezvous)
            .then(|| Members::start(client.clone(), keys.clone()));
        let alarm_index = AlarmIndex::start(client.clone(), keys.clone());
        // Without a store, an object that moves is served from the new
        // node's own copy: its alarms stay with the node that has them.
        if runtime.replication().is_some() {
            alarm_index::start_takeover(
                client.clone(),
                keys.clone(),
                Arc::clone(&owners),
                Arc::downgrade(runtime),
            );
        }
        let lost = {
            let owners = Arc::clone(&owners);
            let runtime = Arc::clone(runtime);
            move || {
                owners.forget_own();
                runtime.hibernate_all();
            }
        };
        let membership = Membership::start(
            client,
            keys.clone(),
            node.clone(),
            advertise.clone(),
            settings.lease_ttl,
            Box::new(lost),
        )
        .await?;
        owners.start(Arc::clone(&membership));
        runtime.own_objects(Arc::new(Ownership {
            membership: Arc::clone(&membership),
            owners: Arc::clone(&owners),
            alarm_index,
            node: node.clone(),
            runtime: Arc::downgrade(runtime),
        }));
        tracing::info!(%node, %advertise, prefix = %url.prefix, "joined the cluster");
        Ok(Arc::new(Cluster {
            node,
            membership,
            owners,
            members,
            forwarder: Forwarder::new(),
            drain_timeout: settings.drain_timeout,
            drain_deadline: std::sync::OnceLock::new(),
        }))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Who serves object `id` of `class`: this node (taking it if nobody
    /// does, unless placement prefers another node), or another.
    /// `hops`: the nodes that forwarded the request; one forwarded to this
    /// node because it was believed the owner (or the preferred one) must
    /// not travel again, unless this node is draining.
    pub async fn route(&self, class: &str, id: &str, hops: &Hops) -> Result<Route, ClusterError> {
        self.membership.check_serving()?;
        if self.draining() && !self.owners.owns(class, id) {
            // Sent on even when forwarded: the node that sent it believed
            // this one the owner, and it takes nothing while leaving.
            return self.route_draining(class, id, hops).await;
        }
        match self.route_serving(class, id, hops.forwarded()).await {
            // The drain began (or released the object) after the check
            // above: the request goes on like any other on a draining node.
            Err(ClusterError::Stopping { .. }) => self.route_draining(class, id, hops).await,
            route => route,
        }
    }

    /// `route` on a node that takes objects (`Stopping` if it has just
    /// stopped taking them).
    async fn route_serving(
        &self,
        class: &str,
        id: &str,
        forwarded: bool,
    ) -> Result<Route, ClusterError> {
        let prefer = || {
            let members = self.members.as_ref().filter(|_| !forwarded)?;
            let live = members.live();
            placement::preferred(&live, class, id)
                .filter(|(node, _)| *node != self.node)
                .cloned()
        };
        let route = self.owners.route(class, id, prefer).await?;
        if !(forwarded && matches!(route, Route::Remote { .. })) {
            return Ok(route);
        }
        // What this node knows may be older than what the sender knew (an
        // owner that has just let the object go): read again.
        self.owners.forget(class, id);
        match self.owners.route(class, id, || None).await? {
            Route::Remote { .. } => Err(ClusterError::NotOwner {
                node: self.node.clone(),
            }),
            route => Ok(route),
        }
    }

    /// Keeps object `id` here (not released) while a request for it is
    /// handled; take it before `route`.
    pub fn pin(&self, class: &str, id: &str) -> Pin {
        self.owners.pin(class, id)
    }

    /// Drops what this node believes of object `id`'s owner (a forward
    /// to it failed), so the next route reads etcd again.
    pub fn forget_owner(&self, class: &str, id: &str) {
        self.owners.forget(class, id);
    }

    /// Restores object `name` from the store if it moved here and has not
    /// been restored yet (see `moved.rs`).
    pub async fn restore_moved(
        &self,
        runtime: &Arc<Runtime>,
        class: &str,
        name: &str,
    ) -> Result<(), ClusterError> {
        moved::restore_moved(&self.owners, runtime, class, name).await
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }
}

/// What the runtime asks of the ownership: an object's epoch (for each
/// segment it ships), its claim before an event activates it, its alarm
/// index entry, and its release when it closes.
struct Ownership {
    membership: Arc<Membership>,
    owners: Arc<Owners>,
    alarm_index: AlarmIndex,
    node: String,
    /// Weak: the runtime holds this.
    runtime: std::sync::Weak<Runtime>,
}

impl crate::runtime::ObjectOwnership for Ownership {
    fn epoch(&self, class: &str, id: &str) -> Option<u64> {
        self.membership.check_serving().ok()?;
        self.owners.epoch(class, id)
    }

    fn claim(
        &self,
        object: &ObjectAddr,
        restore: bool,
    ) -> BoxFuture<'static, Result<Box<dyn std::any::Any + Send>, EventError>> {
        let (membership, owners) = (Arc::clone(&self.membership), Arc::clone(&self.owners));
        let (runtime, node) = (self.runtime.clone(), self.node.clone());
        let (class, name) = (object.class().to_string(), object.name().to_string());
        let id = object.id().to_string();
        Box::pin(async move {
            let pin = owners.pin(&class, &id);
            membership.check_serving().map_err(EventError::Cluster)?;
            // An event already here (an alarm, a call, a socket's) is
            // not placed elsewhere: it runs here or on the owner.
            match owners
                .route(&class, &id, || None)
                .await
                .map_err(EventError::Cluster)?
            {
                Route::Remote { node: owner, .. } => {
                    Err(EventError::Cluster(ClusterError::OwnedElsewhere {
                        node,
                        owner,
                    }))
                }
                Route::Local { restore: true } if restore => {
                    let runtime = runtime.upgrade().ok_or(EventError::ShuttingDown)?;
                    moved::restore_moved(&owners, &runtime, &class, &name)
                        .await
                        .map_err(EventError::Cluster)?;
                    Ok(Box::new(pin) as Box<dyn std::any::Any + Send>)
                }
                Route::Local { .. } => Ok(Box::new(pin) as Box<dyn std::any::Any + Send>),
            }
        })
    }

    fn alarm_indexed(&self, object: &ObjectAddr, at_ms: Option<i64>) -> BoxFuture<'static, ()> {
        let epoch = self.owners.epoch(object.class(), object.id());
        self.alarm_index.write(object, epoch, at_ms)
    }

    fn closed(&self, object: &ObjectAddr) {
        let (class, id) = (object.class(), object.id());
        let stream = self.runtime.upgrade().and_then(|runtime| {
            let replication = runtime.replication()?;
            let timeout = replication.settings().timeout;
            Some((replication.stream(class, id, object.name()), timeout))
        });
        let shipped = async move {
            match stream {
                Some((stream, timeout)) => stream.wait_durable(stream.last_queued(), timeout).await,
                None => true,
            }
        };
        let runtime = self.runtime.clone();
        let live = id.to_string();
        let live = move || {
            runtime
                .upgrade()
                .is_some_and(|runtime| runtime.is_live(&live))
        };
        self.owners.release(class, id, live, shipped);
    }
}
