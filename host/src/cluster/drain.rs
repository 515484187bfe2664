//! A node stopping (SIGTERM, Ctrl-C) hands its objects over before it
//! leaves, so a rolling restart loses nothing and drops no request:
//!
//! 1. It marks itself draining in etcd (`<prefix>/draining/<node>`), so
//!    no node sends it an object nobody owns, then drains, its listener
//!    still open: WebSockets of its objects close
//!    with 1012 (service restart) after what was queued for them, SSE
//!    streams end (clients resume by `Last-Event-ID` through any node),
//!    and every object hibernates. Each one's close commits its last
//!    batch, waits for it to be shipped, then deletes its owner key (the
//!    `last-owner` key stays, so the next owner restores it from the
//!    store). Requests already being handled finish; a new request for
//!    an object this node still owns waits for that release, and every
//!    request for an object it no longer owns goes to its owner or, when
//!    nobody owns it, to another node, which takes it: a draining node
//!    takes nothing.
//! 2. Once it owns nothing (or `[cluster] drain_timeout` has passed) the
//!    server stops accepting and finishes the requests in flight (event
//!    streams forwarded through it to other nodes end).
//! 3. It leaves: revokes its lease, so its node key (and the key of any
//!    object it could not hand over) goes at once, not after the TTL.

use std::time::Duration;

use tokio::time::Instant;

use super::{Cluster, ClusterError, Hops, Route};
use crate::runtime::Runtime;

/// How often a draining node looks whether its objects are handed over
/// (and asks those a request woke up again to hibernate).
const POLL: Duration = Duration::from_millis(50);

impl Cluster {
    /// Whether this node is stopping and handing its objects over.
    pub fn draining(&self) -> bool {
        self.drain_deadline.get().is_some()
    }

    /// Hands every object over (step 1 above), for at most
    /// `[cluster] drain_timeout`.
    pub async fn drain(&self, runtime: &Runtime) {
        if self.draining() {
            return;
        }
        // Marked before this node refuses anything: see `mark_draining`.
        self.membership.mark_draining().await;
        let deadline = Instant::now() + self.drain_timeout;
        if self.drain_deadline.set(deadline).is_err() {
            return;
        }
        self.owners.stop_taking();
        tracing::info!(node = %self.node, "draining: handing this node's objects over");
        // An alarm would wake an object up on a node that is leaving; the
        // next owner's scheduler runs it.
        runtime.alarms().stop();
        let sockets_within = self.drain_timeout.min(Duration::from_secs(2));
        runtime.sockets().restart_all(sockets_within).await;
        runtime.sockets().end_streams();
        self.hand_over(runtime, deadline).await;
        self.forwarder.end_streams();
    }

    /// Hibernates every object until none is owned here any more.
    async fn hand_over(&self, runtime: &Runtime, deadline: Instant) {
        loop {
            runtime.hibernate_all();
            let (owned, releasing) = self.owners.holding();
            if owned == 0 && releasing == 0 {
                tracing::info!(node = %self.node, "drained: every object handed over");
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    node = %self.node,
                    owned,
                    releasing,
                    "drain_timeout passed with objects not handed over: their keys go with the lease"
                );
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// While draining, waits as long as this node still owns object `id`
    /// (it is hibernating and being released), at most until the drain's
    /// deadline; at once otherwise. Called before the request pins it.
    pub async fn wait_handed_over(&self, class: &str, id: &str) {
        let Some(deadline) = self.drain_deadline.get() else {
            return;
        };
        while self.owners.owns(class, id) && Instant::now() < *deadline {
            tokio::time::sleep(POLL).await;
        }
    }

    /// The route of a request on a draining node for an object it does
    /// not own: its owner, or when nobody owns it another node that is
    /// not draining (which takes it). Each node a request passes through
    /// this way marked itself draining before, so it is not chosen again:
    /// the request reaches a node that takes it, or a 503. Should a mark
    /// be missing (etcd failed the put) or be written just after another
    /// node read the list, the request may come back to a node it passed:
    /// that node then leaves out every node the request passed, so it
    /// never goes around again. An owner cached as one of those nodes is
    /// read again from etcd (the cache may be older than theirs).
    pub(super) async fn route_draining(
        &self,
        class: &str,
        id: &str,
        hops: &Hops,
    ) -> Result<Route, ClusterError> {
        self.owners
            .forget_if_owner(class, id, |owner| hops.passed(owner));
        if let Some(route) = self.owners.route_without_taking(class, id).await? {
            return Ok(route);
        }
        let mut others = self.membership.others().await?;
        if hops.passed(&self.node) {
            others.retain(|(node, _)| !hops.passed(node));
        }
        // The node rendezvous hashing prefers, so the object's requests
        // meet there whichever draining node they reach.
        let Some((node, address)) = super::placement::preferred(&others, class, id).cloned() else {
            // Serving it here would only move it again in a moment, and
            // what this node takes now it may not hand over in time.
            return Err(ClusterError::Moving(
                "this node is stopping and every other node is down or stopping".into(),
            ));
        };
        Ok(Route::Remote { node, address })
    }

    /// Leaves the cluster once the server has stopped (step 3 above):
    /// waits for releases still shipping their object's last commits, then
    /// revokes the lease.
    pub async fn leave(&self) {
        let deadline = Instant::now() + self.drain_timeout;
        while self.owners.holding().1 > 0 && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        self.membership.leave().await;
    }
}
