//! Several nodes sharing objects through etcd (`[cluster]`, `podhost serve
//! --cluster etcd://...`). Without it no code of this module runs.
//!
//! - `membership.rs`: the node's lease and its key `<prefix>/nodes/<node>`
//!   (its advertised address), kept alive; whether the node may serve.
//! - `ownership.rs`: which node serves which object (`<prefix>/owners/
//!   <class>/<id>`, created under the owner's lease only if absent; its
//!   create revision is the object's fencing epoch), a cache of other
//!   nodes' objects kept fresh by a watch.
//! - `forward.rs`: a request for another node's object, proxied there
//!   (HTTP with streaming bodies, SSE, WebSockets as a byte tunnel).
//! - `drain.rs`: a stopping node hands its objects over, then leaves.
//!
//! The gateway only asks `Cluster::route` who serves an object.

mod drain;
mod error;
mod forward;
mod keys;
mod membership;
mod node_id;
mod ownership;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use etcd_client::{Client, ConnectOptions};

pub use error::ClusterError;
pub use forward::{FORWARDED_HEADER, Forwarder};
pub use ownership::{Pin, Route};

use crate::config::ClusterSettings;
use crate::object::ObjectAddr;
use crate::runtime::Runtime;
use keys::Keys;
use membership::Membership;
use ownership::Owners;

/// This node's part in the cluster.
pub struct Cluster {
    node: String,
    membership: Arc<Membership>,
    owners: Arc<Owners>,
    forwarder: Forwarder,
    restoring: tokio::sync::Mutex<()>,
    drain_timeout: std::time::Duration,
    /// Set when the node starts draining: until when it may.
    drain_deadline: std::sync::OnceLock<tokio::time::Instant>,
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
        let options = ConnectOptions::new()
            .with_connect_timeout(settings.lease_ttl)
            .with_timeout(settings.lease_ttl);
        let client = Client::connect(&url.endpoints, Some(options))
            .await
            .with_context(|| {
                format!(
                    "cannot reach etcd at {}: start it, or serve without --cluster",
                    url.endpoints.join(",")
                )
            })?;
        let keys = Keys::new(&url.prefix);
        let owners = Owners::new(client.clone(), keys.clone(), node.clone());
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
            keys,
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
            runtime: Arc::downgrade(runtime),
        }));
        tracing::info!(%node, %advertise, prefix = %url.prefix, "joined the cluster");
        Ok(Arc::new(Cluster {
            node,
            membership,
            owners,
            forwarder: Forwarder::new(),
            restoring: tokio::sync::Mutex::new(()),
            drain_timeout: settings.drain_timeout,
            drain_deadline: std::sync::OnceLock::new(),
        }))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Who serves object `id` of `class`: this node (taking it if nobody
    /// does), or another. `forwarded`: the request came from a node that
    /// believed this one the owner, so it must not travel again.
    pub async fn route(
        &self,
        class: &str,
        id: &str,
        forwarded: bool,
    ) -> Result<Route, ClusterError> {
        self.membership.check_serving()?;
        if self.draining() && !self.owners.owns(class, id) {
            // Sent on even when forwarded: the node that sent it believed
            // this one the owner, and it takes nothing while leaving.
            return self.route_draining(class, id).await;
        }
        let mut route = self.owners.route(class, id).await?;
        if forwarded && matches!(route, Route::Remote { .. }) {
            // What this node knows may be older than what the sender
            // knew (an owner that has just let the object go): read again.
            self.owners.forget(class, id);
            route = self.owners.route(class, id).await?;
            if matches!(route, Route::Remote { .. }) {
                return Err(ClusterError::NotOwner {
                    node: self.node.clone(),
                });
            }
        }
        Ok(route)
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

    /// Object `id` has been restored from the store after it moved here.
    pub fn restored(&self, class: &str, id: &str) {
        self.owners.restored(class, id);
    }

    /// Restores run one at a time on a node (a takeover is rare; two
    /// requests for the same object must not restore it twice).
    pub fn restoring(&self) -> &tokio::sync::Mutex<()> {
        &self.restoring
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }
}

/// What the runtime asks of the ownership: an object's epoch (for each
/// segment it ships), and its release when it closes.
struct Ownership {
    membership: Arc<Membership>,
    owners: Arc<Owners>,
    /// Weak: the runtime holds this.
    runtime: std::sync::Weak<Runtime>,
}

impl crate::runtime::ObjectOwnership for Ownership {
    fn epoch(&self, class: &str, id: &str) -> Option<u64> {
        self.membership.check_serving().ok()?;
        self.owners.epoch(class, id)
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
