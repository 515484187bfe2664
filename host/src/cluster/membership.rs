//! The node's lease: its membership key `<prefix>/nodes/<node>` and every
//! object it owns live under it. Kept alive every third of its TTL; when
//! keepalives fail for longer than the TTL allows, the node stops serving
//! (before etcd can let another node take its objects) and tries for a
//! new lease. A stopping node marks itself draining under the same lease
//! (`<prefix>/draining/<node>`), and revokes the lease when it leaves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, PutOptions, TxnOp, TxnOpResponse};
use parking_lot::Mutex;
use std::sync::Arc;

use super::ClusterError;
use super::keys::Keys;

/// The value of a node's draining mark (only the key's presence counts).
const DRAINING: &str = "draining";

/// The lease the node holds, and until when it may trust it.
#[derive(Clone, Copy)]
struct Held {
    id: i64,
    /// Keepalives count from when they were sent (etcd counts from when it
    /// received them, later), minus a margin: past this instant, etcd may
    /// already have expired the lease.
    valid_until: Instant,
}

pub(super) struct Membership {
    node: String,
    held: Mutex<Option<Held>>,
    client: Client,
    keys: Keys,
    /// Set when the node leaves (it is stopping): no new lease is taken.
    left: AtomicBool,
    /// Set when the node starts draining: a new lease gets the mark too.
    draining: AtomicBool,
}

impl Membership {
    /// Takes a lease and registers the node, then keeps both in a task.
    /// `lost` runs (once per loss) when the lease can no longer be trusted.
    pub async fn start(
        client: Client,
        keys: Keys,
        node: String,
        advertise: String,
        ttl: Duration,
        lost: Box<dyn Fn() + Send + Sync>,
    ) -> anyhow::Result<Arc<Membership>> {
        let membership = Arc::new(Membership {
            node: node.clone(),
            held: Mutex::new(None),
            client: client.clone(),
            keys: keys.clone(),
            left: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        });
        let mut keeper = Keeper {
            client,
            key: keys.node(&node),
            advertise,
            ttl,
            membership: Arc::clone(&membership),
        };
        // A restarted node finds its previous lease's key until it expires.
        let deadline = Instant::now() + ttl + Duration::from_secs(2);
        let lease = loop {
            match keeper.register().await {
                Ok(lease) => break lease,
                Err(ClusterError::Moving(reason)) if Instant::now() < deadline => {
                    tracing::info!("waiting to register: {reason}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => anyhow::bail!("cannot register node {node} in etcd: {error}"),
            }
        };
        tokio::spawn(async move {
            let mut lease = lease;
            loop {
                let reason = keeper.keep(lease).await;
                keeper.membership.held.lock().take();
                if keeper.membership.left.load(Ordering::Acquire) {
                    return;
                }
                tracing::error!(
                    node = %keeper.membership.node,
                    "lost the cluster lease ({reason}): serving no objects until a new one is held"
                );
                lost();
                lease = loop {
                    match keeper.register().await {
                        Ok(lease) => break lease,
                        Err(error) => {
                            tracing::warn!("cannot take a new cluster lease yet: {error}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                };
                tracing::info!(node = %keeper.membership.node, "holds a cluster lease again");
            }
        });
        Ok(membership)
    }

    /// Leaves the cluster: revokes the lease, so the node's key (and the
    /// key of any object it still owns) goes at once rather than when the
    /// lease would expire, and takes no new one.
    pub async fn leave(&self) {
        self.left.store(true, Ordering::Release);
        let held = self.held.lock().take();
        let Some(held) = held else { return };
        let mut client = self.client.clone();
        match client.lease_revoke(held.id).await {
            Ok(_) => tracing::info!(node = %self.node, "left the cluster"),
            Err(error) => {
                tracing::warn!(node = %self.node, "cannot revoke the cluster lease (it expires on its own): {error}");
            }
        }
    }

    /// Marks the node draining (`Keys::draining`, under its lease, so the
    /// mark goes when the node leaves): from then on no node that reads
    /// the nodes through `others` or `Members` sends it an object nobody
    /// owns. Awaited before the node refuses to take objects, so that
    /// whoever it sends such an object to sees the mark, and two
    /// draining nodes never send one back and forth.
    pub async fn mark_draining(&self) {
        // Under the lease's lock: a lease registered meanwhile either is
        // seen here or sees the flag (`Keeper::register`).
        let lease = {
            let held = self.held.lock();
            self.draining.store(true, Ordering::Release);
            trusted(*held)
        };
        if let Some(lease) = lease {
            self.put_mark(lease).await;
        }
    }

    async fn put_mark(&self, lease: i64) {
        let key = self.keys.draining(&self.node);
        let mut client = self.client.clone();
        let put = client
            .put(
                key.as_str(),
                DRAINING,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await;
        if let Err(error) = put {
            tracing::warn!(node = %self.node, "cannot mark this node draining in etcd (a request may pass it twice, and is then refused): {error}");
        }
    }

    /// The other nodes registered now and not draining: (name, advertised
    /// address). One read of both lists, so they agree.
    pub async fn others(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let (nodes, draining) = (self.keys.nodes(), self.keys.draining_nodes());
        let read = etcd_client::Txn::new().and_then([
            TxnOp::get(nodes.as_str(), Some(GetOptions::new().with_prefix())),
            TxnOp::get(draining.as_str(), Some(GetOptions::new().with_prefix())),
        ]);
        let mut client = self.client.clone();
        let responses = client.txn(read).await?.op_responses();
        let [TxnOpResponse::Get(registered), TxnOpResponse::Get(stopping)] = &responses[..] else {
            return Err(ClusterError::Etcd(
                "etcd answered a read of the nodes with something else".into(),
            ));
        };
        let stopping: Vec<&str> = stopping
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(draining.as_str()))
            .collect();
        Ok(registered
            .kvs()
            .iter()
            .filter_map(|kv| {
                let node = kv.key_str().ok()?.strip_prefix(nodes.as_str())?;
                let address = kv.value_str().ok()?;
                (node != self.node && !stopping.contains(&node))
                    .then(|| (node.to_string(), address.to_string()))
            })
            .collect())
    }

    /// Whether the node may serve objects now.
    pub fn check_serving(&self) -> Result<(), ClusterError> {
        self.lease().map(|_| ())
    }

    /// The lease objects are owned under, while it can be trusted.
    pub fn lease(&self) -> Result<i64, ClusterError> {
        trusted(*self.held.lock()).ok_or_else(|| ClusterError::NoLease {
            node: self.node.clone(),
        })
    }
}

/// The lease of `held` while it can be trusted.
fn trusted(held: Option<Held>) -> Option<i64> {
    held.filter(|held| Instant::now() < held.valid_until)
        .map(|held| held.id)
}

struct Keeper {
    client: Client,
    key: String,
    advertise: String,
    ttl: Duration,
    membership: Arc<Membership>,
}

impl Keeper {
    /// What the node may trust of a keepalive sent at `sent`.
    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.ttl - self.ttl / 5
    }

    /// A new lease with the node's key under it. Refused while another
    /// live lease holds the key (a node of the same name already runs).
    async fn register(&mut self) -> Result<i64, ClusterError> {
        let sent = Instant::now();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let lease = self.client.lease_grant(ttl, None).await?.id();
        let marked = self.membership.draining.load(Ordering::Acquire);
        let put = etcd_client::Txn::new()
            .when([etcd_client::Compare::create_revision(
                self.key.as_str(),
                etcd_client::CompareOp::Equal,
                0,
            )])
            .and_then(self.puts(lease, marked));
        if !self.client.txn(put).await?.succeeded() {
            let _ = self.client.lease_revoke(lease).await;
            return Err(ClusterError::Moving(format!(
                "{} is held by another live process (a node with this name still runs, or its lease has not expired)",
                self.key
            )));
        }
        let draining = {
            let mut held = self.membership.held.lock();
            *held = Some(Held {
                id: lease,
                valid_until: self.valid_until(sent),
            });
            self.membership.draining.load(Ordering::Acquire)
        };
        // The drain began while the lease was being registered.
        if draining && !marked {
            self.membership.put_mark(lease).await;
        }
        Ok(lease)
    }

    /// The node's key under `lease`, and its draining mark if `marked`
    /// (it began draining under an earlier lease, whose keys went).
    fn puts(&self, lease: i64, marked: bool) -> Vec<TxnOp> {
        let under_lease = || Some(PutOptions::new().with_lease(lease));
        let key = TxnOp::put(self.key.as_str(), self.advertise.as_str(), under_lease());
        let mark = marked.then(|| {
            let mark = self.membership.keys.draining(&self.membership.node);
            TxnOp::put(mark, DRAINING, under_lease())
        });
        std::iter::once(key).chain(mark).collect()
    }

    /// Keeps `lease` alive until it cannot; returns why.
    async fn keep(&mut self, lease: i64) -> String {
        let every = self.ttl / 3;
        let (mut keeper, mut stream) = match self.client.lease_keep_alive(lease).await {
            Ok(pair) => pair,
            Err(error) => return format!("keepalive stream: {error}"),
        };
        // When each unanswered keepalive was sent, oldest first: etcd
        // answers a stream's keepalives in order, so an answer that comes
        // late (after the next keepalive went) is credited to its own send
        // time, not to the newer one etcd may never have received.
        let mut unanswered = VecDeque::new();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            unanswered.push_back(Instant::now());
            let answer = tokio::time::timeout(every, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
            match answer {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {
                    let sent = unanswered.pop_front();
                    if let (Some(held), Some(sent)) = (self.membership.held.lock().as_mut(), sent) {
                        held.valid_until = self.valid_until(sent);
                    }
                }
                Ok(Ok(Some(_))) => return "etcd says the lease expired".to_string(),
                Ok(Ok(None)) => return "etcd closed the keepalive stream".to_string(),
                Ok(Err(error)) => {
                    tracing::warn!("cluster keepalive failed: {error}");
                    if self.membership.lease().is_err() {
                        return format!("keepalives failing: {error}");
                    }
                    // The stream is broken: open a new one for the same lease.
                    match self.client.lease_keep_alive(lease).await {
                        Ok(pair) => {
                            (keeper, stream) = pair;
                            unanswered.clear();
                        }
                        Err(error) if self.membership.lease().is_err() => {
                            return format!("keepalives failing: {error}");
                        }
                        Err(_) => {}
                    }
                }
                Err(_elapsed) => {
                    tracing::warn!("cluster keepalive unanswered after {every:?}");
                    if self.membership.lease().is_err() {
                        return "keepalives unanswered for longer than the lease allows"
                            .to_string();
                    }
                }
            }
        }
    }
}
